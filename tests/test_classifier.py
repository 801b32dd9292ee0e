"""The post-norm encoder, the text classifier, the SMS spam data and `scratchgpt classify`."""

import http.server
import io
import json
import re
import threading
import zipfile
from collections import Counter

import pytest
import torch
from safetensors.torch import save_file

from scratchgpt.analysis import attention_weights, hidden_states
from scratchgpt.checkpoint import CheckpointError, run_checkpoints
from scratchgpt.classifier import TextClassifier
from scratchgpt.cli import main
from scratchgpt.config import ConfigError
from scratchgpt.data import DataError
from scratchgpt.data.labelled import (
    LabelledText,
    build_vocabulary,
    download_sms_spam,
    parse_labelled_lines,
    read_labelled_file,
    split_examples,
    split_three,
    toy_sentiment_examples,
)
from scratchgpt.download import cache_directory as default_cache_dir
from scratchgpt.model.encoder import EncoderConfig, TransformerClassifier
from scratchgpt.training.classify import train_classifier
from scratchgpt.training.state import read_state


def _model(**kw):
    cfg = EncoderConfig(
        vocab_size=50, emb_dim=16, n_heads=4, hidden_dim=32, context_length=12, **kw
    )
    return TransformerClassifier(cfg).eval()


def test_encoder_block_is_post_norm():
    model = _model(n_layers=2, drop_rate=0.0)
    idx = torch.randint(0, 50, (2, 9))
    states = hidden_states(model, idx)  # (L + 1, B, T, C)
    assert states.shape == (3, 2, 9, 16)
    block = model.encoder.blocks[0]
    everything = torch.ones(1, 1, 1, 9, dtype=torch.bool)
    with torch.no_grad():
        x = states[0]
        x = block.norm1(x + block.att(x, mask=everything))  # LN(x + MHA(x))
        x = block.norm2(x + block.ff(x))  # LN(x + FFN(x))
    torch.testing.assert_close(states[1], x)
    # A LayerNorm is the last thing each block does: every output token has mean 0, std 1.
    out = states[1:]
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 2, 9), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(-1, unbiased=False), torch.ones(2, 2, 9), atol=1e-3, rtol=0)


def test_encoder_attention_is_bidirectional_and_ignores_padding():
    model = _model()
    idx = torch.randint(1, 50, (1, 6))
    weights = attention_weights(model, idx)  # (L, B, nh, T, T)
    assert (weights.triu(diagonal=1) > 0).any()  # tokens read later tokens too
    changed = idx.clone()
    changed[0, -1] = (idx[0, -1] + 1) % 50
    h1, h2 = (model.encoder(i)[0, 0] for i in (idx, changed))
    assert not torch.allclose(h1, h2)  # the first token's vector depends on the last token
    for pooling in ("mean", "first"):
        model = _model(pooling=pooling)
        padded = torch.cat([idx, torch.zeros(1, 4, dtype=torch.long)], dim=1)  # (1, 10)
        mask = torch.tensor([[True] * 6 + [False] * 4])
        with torch.no_grad():
            torch.testing.assert_close(model(padded, padding_mask=mask), model(idx))
        w = attention_weights(model, padded, padding_mask=mask)
        assert torch.equal(w[..., 6:], torch.zeros_like(w[..., 6:]))  # no weight on padding
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]))
    with pytest.raises(ValueError, match="at least one real"):
        model(padded, padding_mask=torch.zeros(1, 10, dtype=torch.bool))
    with pytest.raises(ValueError, match="context_length=12"):
        model(torch.zeros(1, 13, dtype=torch.long))


def test_encoder_config_validation():
    with pytest.raises(ConfigError, match="pooling='max'"):
        EncoderConfig(vocab_size=10, pooling="max")
    with pytest.raises(ConfigError, match="divisible"):
        EncoderConfig(vocab_size=10, emb_dim=30, n_heads=4)
    with pytest.raises(ConfigError, match=r"model\.num_head \(did you mean 'n_heads'\?\)"):
        EncoderConfig.from_dict({"vocab_size": 10, "num_head": 4})
    with pytest.raises(ConfigError, match="2 classes"):
        EncoderConfig(vocab_size=10, num_classes=1)
    # The GPT's parameter names, and a learned positional table when asked.
    cfg = EncoderConfig(vocab_size=100, emb_dim=32, n_heads=4, hidden_dim=64, n_layers=3)
    assert EncoderConfig.from_dict(cfg.to_dict()) == cfg
    n_pos = sum(p.numel() for p in TransformerClassifier(cfg).parameters())
    learned = TransformerClassifier(EncoderConfig(**{**cfg.to_dict(), "pos_encoding": "learned"}))
    assert (
        sum(p.numel() for p in learned.parameters()) - n_pos == 64 * 32
    )  # context_length x emb_dim


def test_labelled_lines_keep_quotes_and_report_bad_lines(tmp_path):
    text = 'ham\t"Quoted" start\nspam\tFREE "prize\n\nham\tlast'
    assert parse_labelled_lines(text) == [
        LabelledText('"Quoted" start', "ham"),
        LabelledText('FREE "prize', "spam"),
        LabelledText("last", "ham"),
    ]
    with pytest.raises(DataError, match="line 2: expected LABEL<TAB>TEXT"):
        parse_labelled_lines("ham\tok\nno tab here")
    with pytest.raises(DataError, match="does not exist"):
        read_labelled_file(tmp_path / "missing.tsv")


def test_sms_spam_reads_all_5574_messages(shared_data):
    examples = read_labelled_file(shared_data("sms-spam.tsv"))
    assert len(examples) == 5574
    assert Counter(ex.label for ex in examples) == {"ham": 4827, "spam": 747}
    train, test = split_examples(examples, test_ratio=0.2, seed=0)
    assert len(train) + len(test) == 5574
    assert Counter(ex.label for ex in test) == {"ham": 965, "spam": 149}  # stratified: 20% each
    assert split_examples(examples, seed=0) == (train, test)  # deterministic


def test_vocabulary_keeps_frequent_words_and_maps_the_rest_to_unk():
    tok = build_vocabulary(["free prize now", "free call", "call me"], min_freq=2)
    assert tok.vocab == ["call", "free", "<|endoftext|>", "<|unk|>"]
    assert tok.encode("free prize") == [1, tok.unk_id]


TOY = {"training": {"epochs": 8, "batch_size": 16, "eval_interval": 20},
       "data": {"min_freq": 1, "test_ratio": 0.25, "val_ratio": 0.1}}  # fmt: skip


def rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_train_save_load_predict_on_toy_data(tmp_path):
    examples = toy_sentiment_examples(300, seed=1)
    result = train_classifier(
        examples, config=TOY, model_config={"emb_dim": 32, "n_layers": 1}, out_dir=tmp_path / "r"
    )
    assert result.test_accuracy >= 0.95 and result.path == tmp_path / "r"
    assert (result.n_train, result.n_val, result.n_test) == (195, 30, 75)  # 65 / 10 / 25 %
    # A run like every run: config.yaml, metrics rows, resumable checkpoints, a log.
    assert sorted(p.name for p in result.path.iterdir()) == [
        "checkpoints",
        "config.yaml",
        "metrics.jsonl",
        "train.log",
    ]
    logged = rows(result.path)
    steps = result.run.max_steps  # 8 epochs of 195 / 16 -> 13 batches
    assert steps == 8 * 13 and result.run.steps == steps
    evaluations = [r for r in logged if "val_acc" in r and not r.get("final")]
    assert [r["step"] for r in evaluations] == [0, 20, 40, 60, 80, 100, 104]
    assert all({"train_acc", "eval_train_loss", "val_loss"} <= set(r) for r in evaluations)
    assert all({"train_loss", "examples", "examples_per_sec", "lr"} <= set(r) for r in logged[1:-1])
    final = logged[-1]  # the last row: every split's accuracy, the test split's only here
    assert final["final"] and final["step"] == steps
    assert (final["train_acc"], final["val_acc"], final["test_acc"]) == (
        result.train_accuracy,
        result.val_accuracy,
        result.test_accuracy,
    )
    assert evaluations[-1]["val_acc"] == result.val_accuracy
    assert logged[-2]["examples"] == 8 * 195 and result.history == logged[:-1]
    assert [s for s, _ in run_checkpoints(result.path, format=None)][-1] == steps
    assert read_state(result.run.checkpoint)["step"] == steps
    # The classifier loads from the run, from a checkpoint, and predicts the same.
    loaded = TextClassifier.load(result.path)
    texts = ["the film was wonderful", "what a dreadful meal !", ""]
    torch.testing.assert_close(loaded.predict_proba(texts), result.classifier.predict_proba(texts))
    torch.testing.assert_close(
        TextClassifier.load(result.run.checkpoint).predict_proba(texts), loaded.predict_proba(texts)
    )
    assert loaded.predict(texts[:2]) == ["positive", "negative"]
    test = split_three(examples, val_ratio=0.1, test_ratio=0.25, seed=0)[2]
    assert loaded.accuracy(test) == pytest.approx(result.test_accuracy)
    # Batched == one by one: padding changes nothing.
    one_by_one = torch.cat([loaded.predict_proba([t]) for t in texts])
    torch.testing.assert_close(loaded.predict_proba(texts), one_by_one)
    with pytest.raises(CheckpointError, match="not a scratchgpt classifier"):
        TextClassifier.load(tmp_path / "nowhere")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="refusing"):
        loaded.save(tmp_path / "other")
    assert TextClassifier.load(loaded.save(tmp_path / "export")).predict(texts) == loaded.predict(
        texts
    )
    with pytest.raises(DataError, match="two labels"):
        train_classifier([LabelledText("a", "x")] * 10, out_dir=tmp_path / "bad")


def test_classifier_resume_is_exact_and_keeps_the_last_checkpoints(tmp_path):
    examples = toy_sentiment_examples(300, seed=1)
    config = {**TOY, "training": {**TOY["training"], "epochs": 2, "log_interval": 1,
                                  "checkpoint_interval": 5, "keep_last": 2}}  # fmt: skip
    straight = train_classifier(examples, config=config, out_dir=tmp_path / "straight")
    half = train_classifier(examples, config=config, out_dir=tmp_path / "half", stop_at=13)
    assert half.run.steps == 13 and "resume with: scratchgpt classify train --resume" in (
        half.summary()
    )
    resumed = train_classifier(examples, resume=tmp_path / "half")
    assert (resumed.run.start_step, resumed.run.steps) == (13, 26)
    losses = [{r["step"]: r["train_loss"] for r in rows(d) if r["step"] and "train_loss" in r}
              for d in (straight.path, resumed.path)]  # fmt: skip
    assert sorted(losses[0]) == list(range(1, 27)) and losses[0] == losses[1]  # bit for bit
    assert resumed.test_accuracy == straight.test_accuracy
    kept = [s for s, _ in run_checkpoints(resumed.path, format=None)]
    assert kept[-2:] == [25, 26] and len(kept) <= 3  # the last 2, and the best
    # a run of other data refuses to resume
    with pytest.raises(CheckpointError, match="trained on other data"):
        train_classifier(toy_sentiment_examples(300, seed=2), resume=tmp_path / "half")


def test_a_classifier_saved_in_the_old_format_still_loads(tmp_path):
    """Before classification ran on the trainer, `classify train --out DIR` wrote one
    directory: config.json (seed 001's field names), tokenizer.json, model.safetensors."""
    tok = build_vocabulary(["free prize now", "call me later", "free call"], min_freq=1)
    cfg = EncoderConfig(vocab_size=tok.vocab_size, emb_dim=16, n_heads=2, hidden_dim=32,
                        n_layers=1, context_length=8)  # fmt: skip
    model = TransformerClassifier(cfg).eval()
    old = tmp_path / "old-classifier"
    old.mkdir()
    tok.save(old)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(old / "model.safetensors"),
        metadata={"format": "scratchgpt-classifier"},
    )
    old_names = {"d_model": 16, "num_heads": 2, "d_ff": 32, "num_layers": 1, "max_len": 8,
                 "dropout": 0.1}  # fmt: skip
    rest = {k: v for k, v in cfg.to_dict().items()
            if k not in ("emb_dim", "n_heads", "hidden_dim", "n_layers", "context_length",
                         "drop_rate")}  # fmt: skip
    info = {"format": "scratchgpt-classifier", "version": 1, "model": {**rest, **old_names},
            "labels": ["ham", "spam"], "metadata": {"test_accuracy": 0.97}}  # fmt: skip
    (old / "config.json").write_text(json.dumps(info, indent=2))
    loaded = TextClassifier.load(old)
    assert loaded.model.cfg == cfg and loaded.labels == ["ham", "spam"]
    ids, mask = loaded.encode(["free prize", "call me"])
    with torch.no_grad():
        expected = torch.softmax(model(ids, padding_mask=mask), dim=-1)
    torch.testing.assert_close(loaded.predict_proba(["free prize", "call me"]), expected)


# --- the UCI download, against a loopback server ------------------------------------------------


@pytest.fixture
def http_server(tmp_path):
    """A local HTTP server over tmp_path/www; yields its base URL."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def test_download_extracts_verifies_caches_and_reuses(
    http_server, tmp_path, monkeypatch, shared_data
):
    url, root = http_server
    data = shared_data("sms-spam.tsv").read_bytes()  # UCI's SMSSpamCollection, byte for byte

    def zipped(member: bytes) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as z:
            z.writestr("SMSSpamCollection", member)
            z.writestr("readme", "the corpus readme")
        return buffer.getvalue()

    (root / "sms.zip").write_bytes(zipped(data))
    (root / "broken.zip").write_bytes(b"not a zip")
    # A zip whose member was changed (one message edited) must not pass its pin.
    (root / "changed.zip").write_bytes(zipped(data.replace(b"Ok lar", b"OK lar", 1)))

    monkeypatch.setenv("SCRATCHGPT_CACHE", str(tmp_path / "cache"))
    assert default_cache_dir() == tmp_path / "cache"
    path = download_sms_spam(url=f"{url}/sms.zip")
    assert path == tmp_path / "cache" / "sms-spam" / "SMSSpamCollection"
    assert path.read_bytes() == data
    assert len(read_labelled_file(path)) == 5574
    (root / "sms.zip").unlink()  # the cached copy is used: no request is made
    assert download_sms_spam(url=f"{url}/sms.zip") == path
    with pytest.raises(DataError, match="could not download"):
        download_sms_spam(url=f"{url}/sms.zip", force=True)  # 404
    assert path.read_bytes() == data  # a failed download leaves the cached file alone
    with pytest.raises(DataError, match="not a zip"):
        download_sms_spam(url=f"{url}/broken.zip", cache_dir=tmp_path / "c2")
    with pytest.raises(DataError, match="pinned to"):
        download_sms_spam(url=f"{url}/changed.zip", cache_dir=tmp_path / "c3")
    assert not (tmp_path / "c3" / "sms-spam" / "SMSSpamCollection").exists()
    monkeypatch.delenv("SCRATCHGPT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "scratchgpt"


# --- the real thing: SMS spam through the command line ----------------------------------------


@pytest.fixture(scope="module")
def spam_classifier(tmp_path_factory, shared_data):
    """Train on the SMS Spam Collection once, through the CLI; yields (dir, printed output)."""
    out = tmp_path_factory.mktemp("spam") / "classifier"
    data = shared_data("sms-spam.tsv")
    import contextlib

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["-q", "classify", "train", "--data", str(data), "--out", str(out)])
    assert code == 0
    return out, buffer.getvalue(), data


@pytest.mark.slow
def test_classify_train_reaches_95_percent_on_held_out_spam(spam_classifier):
    out, printed, data = spam_classifier
    accuracy = float(re.search(r"test accuracy: ([\d.]+)%", printed).group(1)) / 100
    majority = float(re.search(r"most common label: ([\d.]+)%", printed).group(1)) / 100
    assert majority == pytest.approx(965 / 1114, abs=1e-4)  # always "ham" on the held-out fifth
    assert accuracy >= 0.95
    # The saved classifier, reloaded, scores the same on the same held-out split.
    test = split_three(read_labelled_file(data), val_ratio=0.1, test_ratio=0.2, seed=0)[2]
    assert TextClassifier.load(out).accuracy(test) == pytest.approx(accuracy, abs=1e-4)


@pytest.mark.slow
def test_classify_predict_and_viz(spam_classifier, capsys, tmp_path):
    out, _, _ = spam_classifier
    texts = [
        "WINNER!! You have been selected to receive a £900 prize reward! Call 09061701461 now",
        "Sorry, I'll call you later, I am in a meeting",
    ]
    assert main(["classify", "predict", "--checkpoint", str(out), *texts]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["spam", "ham"]
    png = tmp_path / "cls.png"
    args = ["viz", "attention", "--checkpoint", str(out), "--text", texts[0]]
    assert main([*args, "--layer", "1", "--all-heads", "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["viz", "curves", str(out), "--out", str(tmp_path / "curves.png")]) == 0
    assert main(["classify", "predict", "--checkpoint", str(tmp_path), "hi"]) == 2
    assert "not a scratchgpt classifier" in capsys.readouterr().err


def test_classify_train_resume_through_the_command_line(tmp_path, capsys):
    data = tmp_path / "toy.tsv"
    data.write_text("".join(f"{ex.label}\t{ex.text}\n" for ex in toy_sentiment_examples(200)))
    run = tmp_path / "run"
    args = ["classify", "train", "--data", str(data), "--out", str(run), "--min-freq", "1",
            "--batch-size", "16"]  # fmt: skip
    assert main([*args, "--epochs", "1", "--warmup-steps", "2", "--eval-interval", "5"]) == 0
    first = capsys.readouterr().out
    assert "test accuracy:" in first and f"run: {run}" in first
    assert [s for s, _ in run_checkpoints(run, format=None)][-1] == 9  # 140 texts / 16
    assert main(["classify", "train", "--resume", str(run), "--epochs", "2"]) == 0
    assert [s for s, _ in run_checkpoints(run, format=None)][-1] == 18
    saved = (run / "config.yaml").read_text()
    assert "epochs: 2.0" in saved and f"source: {data}" in saved and "min_freq: 1" in saved
    assert main(["classify", "predict", "--checkpoint", str(run), "a superb film"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].split("\t")[0] in ("positive", "negative")


def test_train_resume_of_a_classifier_run_points_at_classify(tmp_path, capsys):
    data = tmp_path / "toy.tsv"
    data.write_text("".join(f"{ex.label}\t{ex.text}\n" for ex in toy_sentiment_examples(80)))
    run = tmp_path / "run"
    args = ["classify", "train", "--data", str(data), "--out", str(run), "--min-freq", "1"]
    assert main([*args, "--epochs", "1", "--batch-size", "16", "--warmup-steps", "1"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"scratchgpt classify train --resume {run}" in err and err.count("\n") == 1
