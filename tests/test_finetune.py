"""Fine-tuning a GPT: as a classifier (the book's ch. 6), with frozen layers or LoRA adapters
(its appendix E), for classification and language modelling alike.

The base model is a tiny GPT saved as a scratchgpt checkpoint (random weights: what is tested
is what moves, what stays, and what loads back, not what a pretrained model knows).
"""

from __future__ import annotations

import json
import random

import pytest
import torch
from safetensors.torch import load_file

from scratchgpt.adapters import load_adapter_model, read_adapter
from scratchgpt.checkpoint import load_checkpoint, run_checkpoints, save_checkpoint
from scratchgpt.classifier import TextClassifier, class_logits
from scratchgpt.cli import main
from scratchgpt.config import GPTConfig, LoRAConfig
from scratchgpt.data.labelled import LabelledText, pad_rows, toy_sentiment_examples
from scratchgpt.errors import ConfigError
from scratchgpt.lora import LoRALinear
from scratchgpt.model import GPTModel, add_class_head, last_token_logits
from scratchgpt.tokenizers import get_tokenizer
from scratchgpt.training import train
from scratchgpt.training.classify import train_classifier
from scratchgpt.training.finetune import prepare_for_training

TOY = toy_sentiment_examples(300, seed=1)
TEXT = " ".join(ex.text for ex in toy_sentiment_examples(400))


def tiny_gpt(vocab_size: int, **changes) -> GPTModel:
    torch.manual_seed(0)
    fields = dict(context_length=64, emb_dim=32, n_heads=4, n_layers=2, drop_rate=0.0)
    return GPTModel(GPTConfig(vocab_size=vocab_size, **{**fields, **changes}))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny GPT with a character tokenizer, saved as a checkpoint to fine-tune from."""
    tok = get_tokenizer("char", text=TEXT)
    directory = tmp_path_factory.mktemp("base") / "base"
    return save_checkpoint(directory, tiny_gpt(tok.vocab_size), tok)


def finetune(base, out, trainable: str, **training):
    config = {
        "model": {"init_from": str(base)},
        "training": {"epochs": 1, "batch_size": 16, "lr": 3e-3, "min_lr": 3e-3,
                     "trainable": trainable, **training},
    }  # fmt: skip
    return train_classifier(TOY, config=config, out_dir=out)


# --- the model -----------------------------------------------------------------------------


def test_padding_on_the_right_never_changes_a_texts_logits():
    model = add_class_head(tiny_gpt(50), 3).eval()
    rows = [[5, 6, 7], [1, 2, 3, 4, 5, 6, 7, 8, 9], [9]]
    ids, mask = pad_rows(rows, pad_id=0)
    together = class_logits(model, ids, mask, backbone="gpt")  # (3, K)
    for i, row in enumerate(rows):
        alone = last_token_logits(model, torch.tensor([row]), torch.tensor([len(row)]))
        torch.testing.assert_close(together[i], alone[0], rtol=0, atol=1e-6)
    # packed (several texts per row) == the plain padded forward read at each last token
    with torch.no_grad():
        plain = model(ids)[torch.arange(3), torch.tensor([3, 9, 1]) - 1]  # (B, T, K) -> (B, K)
    torch.testing.assert_close(together, plain, rtol=0, atol=1e-6)
    # and the pad id itself does not matter either
    other, _ = pad_rows(rows, pad_id=42)
    torch.testing.assert_close(class_logits(model, other, mask, backbone="gpt"), together)


@pytest.mark.parametrize(
    ("trainable", "blocks"), [("head", []), ("last-block", [1]), ("last-2", [0, 1]), ("all", None)]
)
def test_what_trains(trainable, blocks):
    model = add_class_head(tiny_gpt(50), 2)
    prepare_for_training(model, trainable, LoRAConfig(), new_head=True)
    trains = {n for n, p in model.named_parameters() if p.requires_grad}
    if blocks is None:
        assert trains == {n for n, _ in model.named_parameters()}
        return
    expected = {n for n, _ in model.named_parameters() if n.startswith("out_head.")}
    for i in blocks:
        expected |= {n for n, _ in model.named_parameters() if n.startswith(f"trf_blocks.{i}.")}
    if blocks:
        expected |= {"final_norm.scale", "final_norm.shift"}
    assert trains == expected


def test_lora_trains_only_adapters_and_the_new_head_under_3_percent_at_gpt2_size():
    with torch.device("meta"):
        model = add_class_head(GPTModel(GPTConfig(vocab_size=50257)), 2)  # gpt2-124M's shape
    line = prepare_for_training(model, "lora", LoRAConfig(rank=16), new_head=True)
    trains = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all(".lora_" in n or n.startswith("out_head.") for n in trains)
    total = sum(p.numel() for p in model.parameters())
    share = sum(p.numel() for p in model.parameters() if p.requires_grad) / total
    assert 0.01 < share < 0.03 and f"({share:.2%})" in line


# --- classifier runs ------------------------------------------------------------------------


def test_frozen_layers_are_bit_identical_after_training(base, tmp_path):
    result = finetune(base, tmp_path / "run", "last-block")
    before, _ = load_checkpoint(base)
    after = load_file(str(result.run.checkpoint / "model.safetensors"))
    changed = {
        k for k, v in before.state_dict().items() if k in after and not torch.equal(v, after[k])
    }
    trained = ("trf_blocks.1.", "final_norm.", "out_head.")  # out_head: a new shape, (K, C)
    assert changed and all(k.startswith(trained) for k in changed)
    assert all(torch.equal(before.state_dict()[k], after[k]) for k in after if k.startswith(
        ("tok_emb.", "pos_emb.", "trf_blocks.0.")))  # fmt: skip
    config = json.loads((result.run.checkpoint / "config.json").read_text())
    assert config["backbone"] == "gpt" and config["labels"] == ["negative", "positive"]
    # metrics rows: train and validation accuracy at each evaluation; test once, at the end
    rows = [json.loads(x) for x in (result.path / "metrics.jsonl").read_text().splitlines()]
    assert all("train_acc" in r and "val_acc" in r for r in rows if "val_loss" in r)
    assert rows[-1]["final"] and rows[-1]["test_acc"] == result.test_accuracy


def test_lora_run_changes_only_the_adapter_and_head_and_merges_exactly(base, tmp_path):
    result = train_classifier(
        TOY,
        config={"model": {"init_from": str(base)}, "training": {"epochs": 1, "batch_size": 16,
                "lr": 3e-3, "min_lr": 3e-3}, "lora": {"rank": 4, "alpha": 8}},
        out_dir=tmp_path / "run",
        merge=tmp_path / "merged",
    )  # fmt: skip
    info, weights = read_adapter(result.path)
    assert info["task"] == "classifier" and info["lora"]["rank"] == 4
    assert all(".lora_" in k or k.startswith("out_head.") for k in weights)
    assert any(".lora_B" in k and v.abs().sum() > 0 for k, v in weights.items())  # B trained
    # the adapter file holds only those: a small fraction of the model
    size = (result.run.checkpoint / "model.safetensors").stat().st_size
    assert size < (base / "model.safetensors").stat().st_size / 2
    # loaded unmerged onto its base: the base weights are the checkpoint's, bit for bit
    model, _, _ = load_adapter_model(result.path, merge=False)
    plain, _ = load_checkpoint(base)
    for name, value in plain.state_dict().items():
        if not name.startswith("out_head."):
            assert torch.equal(model.state_dict()[name], value), name
    assert any(isinstance(m, LoRALinear) for m in model.modules())
    # merged (a plain classifier directory) == base + adapter
    texts = ["the film was wonderful", "what a dreadful meal !", "x"]
    merged = TextClassifier.load(tmp_path / "merged")
    adapted = TextClassifier.load(result.path)
    ids, mask = adapted.encode(texts)
    with torch.no_grad():
        unmerged = class_logits(model.eval(), ids, mask, backbone="gpt")
        torch.testing.assert_close(
            class_logits(merged.model, ids, mask, backbone="gpt"), unmerged, rtol=0, atol=1e-5
        )
    assert not any(isinstance(m, LoRALinear) for m in merged.model.modules())
    # the CLI's merge writes the same
    assert main(["-q", "lora", "merge", str(result.path), "--out", str(tmp_path / "m2")]) == 0
    torch.testing.assert_close(
        TextClassifier.load(tmp_path / "m2").predict_proba(texts), merged.predict_proba(texts)
    )


def test_a_lora_classifier_run_resumes_bit_exactly(base, tmp_path):
    config = {
        "model": {"init_from": str(base)},
        "training": {"epochs": 1, "batch_size": 16, "lr": 3e-3, "min_lr": 3e-4,
                     "log_interval": 1, "checkpoint_interval": 4},
        "lora": {"rank": 4, "dropout": 0.1},  # dropout: the RNG state must resume too
    }  # fmt: skip
    straight = train_classifier(TOY, config=config, out_dir=tmp_path / "straight")
    train_classifier(TOY, config=config, out_dir=tmp_path / "half", stop_at=6)
    resumed = train_classifier(TOY, resume=tmp_path / "half")
    assert resumed.run.start_step == 6 and resumed.run.steps == straight.run.steps

    def losses(run):
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        return {r["step"]: r["train_loss"] for r in rows if r["step"] and "train_loss" in r}

    assert losses(straight.path) == losses(tmp_path / "half")  # bit for bit
    a, b = read_adapter(straight.path)[1], read_adapter(tmp_path / "half")[1]
    assert all(torch.equal(a[k], b[k]) for k in a) and resumed.test_accuracy == (
        straight.test_accuracy
    )


def test_a_tiny_gpt_classifier_learns_a_rule_perfectly(tmp_path):
    """Label: does the text contain the word "spam"? A GPT from scratch learns it."""
    rng = random.Random(0)
    words = ["tea", "cup", "red", "sun", "map", "owl", "fig", "ink"]
    examples = []
    for i in range(200):
        text = [rng.choice(words) for _ in range(rng.randint(2, 6))]
        if i % 2:
            text.insert(rng.randrange(len(text) + 1), "spam")
        examples.append(LabelledText(" ".join(text), "yes" if i % 2 else "no"))
    data = tmp_path / "rule.jsonl"
    data.write_text(
        "".join(json.dumps({"text": e.text, "label": e.label}) + "\n" for e in examples)
    )
    result = train_classifier(
        config={
            "model": {"backbone": "gpt", "preset": "tiny", "n_layers": 2},
            "data": {"source": str(data), "tokenizer": "simple"},
            "training": {"epochs": 15, "batch_size": 16, "lr": 1e-2, "min_lr": 1e-3,
                         "trainable": "all", "eval_interval": 1000},
        },
        out_dir=tmp_path / "run",
    )  # fmt: skip
    classifier = TextClassifier.load(result.path)
    predicted = classifier.predict([e.text for e in examples])
    right = sum(p == e.label for p, e in zip(predicted, examples, strict=True))
    assert right == len(examples)  # every text, train and held-out alike
    assert result.test_accuracy == 1.0


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("one-class", "at least two labels"),
        ("empty-texts", "text"),
        ("no-label-column", "--label-column"),
        ("rank-0", "lora.rank=0: must be an integer >= 1"),
        ("no-such-target", "nothing"),
    ],
)
def test_bad_input_is_one_clear_line(base, tmp_path, capsys, setup, message):
    data = tmp_path / "data.jsonl"
    rows = [{"text": ex.text, "label": ex.label} for ex in TOY[:40]]
    extra: list[str] = []
    if setup == "one-class":
        rows = [{**r, "label": "same"} for r in rows]
    elif setup == "empty-texts":
        rows = [{**r, "text": ""} for r in rows]
    elif setup == "no-label-column":
        rows = [{"text": r["text"], "category": r["label"]} for r in rows]
    elif setup == "rank-0":
        extra = ["--lora.rank", "0"]
    else:
        extra = ["--lora.targets", "att.nothing"]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = main(["classify", "train", "--init-from", str(base), "--data", str(data),
                 "--out", str(tmp_path / "run"), *extra])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_predict_scores_a_file_and_refuses_foreign_labels(base, tmp_path, capsys):
    result = finetune(base, tmp_path / "run", "head")
    good = tmp_path / "good.csv"
    good.write_text("text,label\nthe film was wonderful,positive\nwhat a dull show,0\n")
    assert main(["classify", "predict", "--checkpoint", str(result.path), "--data", str(good),
                 "a lovely book"]) == 0  # fmt: skip
    out = capsys.readouterr().out.splitlines()
    assert out[0].split("\t")[0] in ("positive", "negative") and out[-1].startswith("accuracy:")
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nthe film was wonderful,great\n")
    assert main(["classify", "predict", "--checkpoint", str(result.path), "--data", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "'great'" in err and "training labels" in err and err.count("\n") == 1


# --- language modelling with LoRA -------------------------------------------------------------


def lm_lora(base, text_file, out, **extra):
    return train(
        data=text_file,
        init_from=base,
        out_dir=out,
        overrides={
            "training.max_steps": 8,
            "training.batch_size": 4,
            "training.eval_interval": 4,
            "training.eval_batches": 2,
            "training.sample_interval": 0,
            "training.log_interval": 1,
            "training.checkpoint_interval": 4,
            "training.device": "cpu",
            "lora.rank": 4,
            "lora.targets": "qv",
            "lora.dropout": 0.1,
        },
        **extra,
    )


def test_lora_language_model_resume_is_bit_exact(base, tmp_path):
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    straight = lm_lora(base, text, tmp_path / "straight")
    lm_lora(base, text, tmp_path / "half", stop_at=4)
    resumed = train(resume=tmp_path / "half")
    assert resumed.start_step == 4 and resumed.steps == 8

    def losses(run):
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        return {r["step"]: r["train_loss"] for r in rows if "train_loss" in r and r["step"]}

    assert losses(straight.run_dir) == losses(tmp_path / "half")  # bit for bit
    a, b = read_adapter(straight.run_dir)[1], read_adapter(tmp_path / "half")[1]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(k.endswith(("W_query.lora_A", "W_query.lora_B", "W_value.lora_A",
                           "W_value.lora_B")) for k in a)  # fmt: skip
    assert [s for s, _ in run_checkpoints(straight.run_dir, format=None)][-1] == 8


def test_lora_language_model_generates_merges_and_exports_for_peft(base, tmp_path, capsys):
    pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    from peft import PeftModel

    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    run = tmp_path / "run"
    args = ["-q", "train", "--data", str(text), "--init-from", str(base), "--out", str(run),
            "--max-steps", "4", "--batch-size", "4", "--eval-interval", "4", "--eval-batches",
            "1", "--sample-interval", "0", "--device", "cpu", "--lora.rank", "4",
            "--merge", str(tmp_path / "merged")]  # fmt: skip
    assert main(args) == 0
    assert "merged model (base + adapter)" in capsys.readouterr().out
    # generate reads the LoRA run (base + adapter, merged as it loads), greedy == the merged
    gen = ["-q", "generate", "--prompt", "the film", "--max-tokens", "8", "--temperature", "0"]
    assert main([*gen, "--checkpoint", str(run)]) == 0
    from_run = capsys.readouterr().out
    assert main([*gen, "--checkpoint", str(tmp_path / "merged")]) == 0
    assert capsys.readouterr().out == from_run
    # PEFT on our HF export of the base gives our logits
    assert main(["-q", "export", "--checkpoint", str(base), "--format", "hf",
                 "--out", str(tmp_path / "hf")]) == 0  # fmt: skip
    assert main(["-q", "lora", "export", str(run), "--out", str(tmp_path / "peft")]) == 0
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf")
    peft_model = PeftModel.from_pretrained(hf, tmp_path / "peft").eval()
    ours, _, _ = load_adapter_model(run, merge=False)
    ids = torch.randint(0, ours.cfg.vocab_size, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(peft_model(ids).logits, ours(ids), rtol=0, atol=1e-5)
    # the merged model, exported for transformers, gives the merged logits
    assert main(["-q", "export", "--checkpoint", str(tmp_path / "merged"), "--format", "hf",
                 "--out", str(tmp_path / "merged-hf")]) == 0  # fmt: skip
    merged, _ = load_checkpoint(tmp_path / "merged")
    exported = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "merged-hf").eval()
    with torch.no_grad():
        torch.testing.assert_close(exported(ids).logits, merged.eval()(ids), rtol=0, atol=1e-5)
        torch.testing.assert_close(merged(ids), ours(ids), rtol=0, atol=1e-5)
    # a LoRA run cannot start from scratch, and --merge needs LoRA
    with pytest.raises(ConfigError, match="adapts pretrained weights"):
        train(data=text, out_dir=tmp_path / "x", overrides={"lora.rank": 4, "model.preset": "tiny"})
    with pytest.raises(ConfigError, match="needs --trainable lora"):
        train(data=text, init_from=base, out_dir=tmp_path / "y", merge=tmp_path / "z")
