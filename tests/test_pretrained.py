"""GPT-2 loading: ours == transformers on tiny random models, from every source; no network."""

from __future__ import annotations

import http.server
import itertools
import json
import logging
import os
import socket
import sys
import threading

import pytest
import torch
import yaml
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

from scratchgpt.checkpoint import CheckpointError, save_checkpoint
from scratchgpt.cli import main
from scratchgpt.config import ConfigError
from scratchgpt.errors import MissingExtraError, TokenizerError
from scratchgpt.generation import generate
from scratchgpt.model import GPTModel, crop_context as model_crop_context, num_parameters
from scratchgpt.pretrained import (
    HF_KEYS_OUTSIDE,
    HF_KEYS_PER_BLOCK,
    IGNORED,
    config_from_hf,
    convert_from_hf,
    crop_context,
    download_gpt2,
    hf_keys,
    load_gpt2,
    load_pretrained,
    openai_to_hf_name,
)
from scratchgpt.pretrained.hub import failure
from scratchgpt.tokenizers import CharTokenizer, TiktokenTokenizer
from scratchgpt.training import TrainConfig, train

from .hf_models import (
    SHAPES,
    copy_gpt2_tokenizer,
    hf_greedy,
    random_hf_model,
    save_openai_hub_layout,
    tiktoken_gpt2_cache,
)

pytestmark = pytest.mark.hf

PROMPT = "Hello, I am a language model, and"


@pytest.fixture(scope="module")
def gpt2_files(shared_data):
    return shared_data("gpt2-encoder.json"), shared_data("gpt2-vocab.bpe")


def _assert_same_model(ours, hf, tok, hf_tok=None, n_new=20):
    """Logits close in fp32, 20 greedy tokens identical, the decoded text identical."""
    ids = torch.tensor([tok.encode(PROMPT)])
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), hf(ids).logits)
    expected = hf_greedy(hf, ids, n_new)
    got = generate(ours, ids, n_new, temperature=0.0)
    assert torch.equal(got, expected)
    if hf_tok is not None:
        assert tok.decode(got[0].tolist()) == hf_tok.decode(expected[0].tolist())
        assert hf_tok.encode(PROMPT) == tok.encode(PROMPT)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_hf_directory_matches_transformers(tmp_path, gpt2_files, shape):
    hf = random_hf_model(**SHAPES[shape])
    hf.save_pretrained(tmp_path)  # "transformer." prefix, lm_head only when untied
    copy_gpt2_tokenizer(tmp_path, *gpt2_files)
    ours, tok = load_gpt2(tmp_path)
    assert not ours.training
    assert ours.cfg.tie_weights == hf.config.tie_word_embeddings
    assert (ours.out_head.weight is ours.tok_emb.weight) == ours.cfg.tie_weights
    assert ours.cfg.qkv_bias and ours.cfg.ln_eps == 1e-5
    assert ours.cfg.context_length == hf.config.n_positions
    assert num_parameters(ours) == sum(p.numel() for p in hf.parameters())
    assert not any(p.is_meta for p in ours.parameters())
    _assert_same_model(ours, hf, tok, GPT2TokenizerFast.from_pretrained(tmp_path))


def test_openai_hub_layout_with_mask_buffers(tmp_path, gpt2_files):
    hf = random_hf_model(**SHAPES["odd-vocab-ctx64"])
    save_openai_hub_layout(hf, tmp_path)
    copy_gpt2_tokenizer(tmp_path, *gpt2_files)
    ours, tok = load_gpt2(tmp_path, attn_impl="explicit")
    assert ours.cfg.attn_impl == "explicit"
    _assert_same_model(ours, hf, tok)


def test_the_mapping_table_on_openais_four_shapes():
    """OpenAI's four sizes on the meta device: Hugging Face's parameter counts, and every
    tensor converted to exactly the shape our model has (no weights needed)."""
    shapes = {
        "gpt2": (768, 12, 12, 124_439_808),
        "gpt2-medium": (1024, 24, 16, 354_823_168),
        "gpt2-large": (1280, 36, 20, 774_030_080),
        "gpt2-xl": (1600, 48, 25, 1_557_611_200),
    }
    for name, (C, layers, heads, count) in shapes.items():
        hf_cfg = GPT2Config(n_embd=C, n_layer=layers, n_head=heads)
        cfg = config_from_hf({**hf_cfg.to_dict(), "model_type": "gpt2"})
        with torch.device("meta"):
            hf = GPT2LMHeadModel(hf_cfg)
            ours = GPTModel(cfg)
        assert sum(p.numel() for p in hf.parameters()) == count, name
        assert num_parameters(ours) == count, name
        assert cfg.qkv_bias and cfg.tie_weights and cfg.ln_eps == 1e-5
        assert cfg.context_length == 1024 and cfg.vocab_size == 50257
        keys = hf_keys(cfg)
        assert len(keys) == HF_KEYS_PER_BLOCK * layers + HF_KEYS_OUTSIDE
        converted = dict(convert_from_hf(hf.transformer.state_dict(), cfg))
        expected = {k: v.shape for k, v in ours.state_dict().items()}
        expected.pop("out_head.weight")  # tied: it is tok_emb.weight
        assert {k: v.shape for k, v in converted.items()} == expected, name


def test_irregular_parts_are_the_listed_ones():
    cfg = config_from_hf(GPT2Config(n_embd=8, n_layer=1, n_head=2, vocab_size=11).to_dict())
    state = random_hf_model(n_embd=8, n_layer=1, n_head=2, vocab_size=11).transformer.state_dict()
    converted = dict(convert_from_hf(state, cfg))
    C = 8
    w = state["h.0.attn.c_attn.weight"]  # (C, 3C), Conv1D (in, out)
    assert torch.equal(converted["trf_blocks.0.att.W_query.weight"], w[:, :C].t())
    assert torch.equal(converted["trf_blocks.0.att.W_key.weight"], w[:, C : 2 * C].t())
    assert torch.equal(converted["trf_blocks.0.att.W_value.weight"], w[:, 2 * C :].t())
    b = state["h.0.attn.c_attn.bias"]
    assert torch.equal(converted["trf_blocks.0.att.W_value.bias"], b[2 * C :])
    c_fc = state["h.0.mlp.c_fc.weight"]
    assert torch.equal(converted["trf_blocks.0.ff.layers.0.weight"], c_fc.t())
    assert torch.equal(converted["final_norm.scale"], state["ln_f.weight"])
    assert IGNORED == ("h.{i}.attn.bias", "h.{i}.attn.masked_bias")


def test_bad_directories_say_what_is_wrong(tmp_path, gpt2_files):
    hf = random_hf_model(n_layer=2, n_embd=16, n_head=2, vocab_size=50257, n_positions=32)
    good = tmp_path / "good"
    hf.save_pretrained(good)
    copy_gpt2_tokenizer(good, *gpt2_files)

    with pytest.raises(CheckpointError, match=r"neither a directory nor a GPT-2 name.*'gpt2-xl'"):
        load_gpt2("gpt2-xxl")
    with pytest.raises(CheckpointError, match="neither a Hugging Face"):
        load_gpt2(tmp_path)

    config = json.loads((good / "config.json").read_text())
    for change, message in (
        ({"model_type": "llama"}, "only GPT-2"),
        ({"activation_function": "gelu"}, "activation_function='gelu'"),
        ({"n_layer": 3}, r"missing h\.2\.ln_1\.weight"),
        ({"n_embd": 32, "n_head": 4}, "shape"),
        ({"n_head": 3}, "divisible"),
    ):
        (good / "config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(CheckpointError, match=message):
            load_gpt2(good)
    (good / "config.json").write_text(json.dumps(config))

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text(json.dumps(config))
    (pickled / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(CheckpointError, match="pickle"):
        load_gpt2(pickled)

    corrupt = tmp_path / "corrupt"
    hf.save_pretrained(corrupt)
    (corrupt / "config.json").write_text('{"model_type": "gpt2", "n_layer": ')  # cut short
    for load in (load_gpt2, load_pretrained):
        with pytest.raises(CheckpointError) as info:
            load(corrupt)
        message = str(info.value)
        assert message.startswith(f"{corrupt / 'config.json'} is corrupt: not valid JSON")
        assert "neither" not in message and "\n" not in message

    bare = tmp_path / "bare"  # no tokenizer files: test_directory_without_tokenizer_files
    hf.save_pretrained(bare)
    model, tok = load_gpt2(bare, tokenizer=good)  # a directory with GPT-2's files
    assert tok.encode("Hello") == [15496]

    ck = tmp_path / "ck"
    save_checkpoint(ck, model, tok)
    with pytest.raises(CheckpointError, match="scratchgpt checkpoint"):
        load_gpt2(ck)
    assert torch.equal(load_pretrained(ck)[0].tok_emb.weight, model.tok_emb.weight)


def test_tied_head_must_be_the_embedding(tmp_path, gpt2_files):
    hf = random_hf_model(n_layer=1, n_embd=16, n_head=2, vocab_size=50257, n_positions=32)
    tensors = {k: v.clone() for k, v in hf.state_dict().items()}
    tensors["lm_head.weight"] = torch.randn_like(tensors["transformer.wte.weight"])
    from safetensors.torch import save_file

    save_file(tensors, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(hf.config.to_dict()))
    copy_gpt2_tokenizer(tmp_path, *gpt2_files)
    with pytest.raises(CheckpointError, match="tie_word_embeddings to false"):
        load_gpt2(tmp_path)


def test_dtype_device_and_crop(tmp_path, gpt2_files):
    hf = random_hf_model(**SHAPES["gpt2-vocab-ctx1024"])
    hf.save_pretrained(tmp_path)
    copy_gpt2_tokenizer(tmp_path, *gpt2_files)
    full, tok = load_gpt2(tmp_path)
    half, _ = load_gpt2(tmp_path, dtype=torch.bfloat16, device="cpu")
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    cropped, _ = load_gpt2(tmp_path, context_length=16)
    assert cropped.cfg.context_length == 16 and cropped.pos_emb.weight.shape == (16, 32)
    ids = torch.tensor([tok.encode(PROMPT)])[:, :16]
    with torch.no_grad():
        assert torch.equal(cropped(ids), full(ids))  # exact for every sequence that fits
        with pytest.raises(ValueError, match="exceeds context_length=16"):
            cropped(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ConfigError, match="only be cropped"):
        crop_context(cropped, 17)
    assert crop_context is model_crop_context  # its home is the model; re-exported here
    with pytest.raises(ConfigError, match="cannot override emb_dim"):
        load_gpt2(tmp_path, emb_dim=64)


def _populate_hub_cache(cache, source, repo="openai-community/gpt2"):
    """What huggingface_hub's cache holds after a download: blobs, a snapshot of links to
    them, and refs/main naming the snapshot."""
    root = cache / ("models--" + repo.replace("/", "--"))
    revision = "0123456789abcdef0123456789abcdef01234567"
    snapshot = root / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (root / "blobs").mkdir()
    for i, f in enumerate(sorted(source.iterdir())):
        blob = root / "blobs" / f"{i:064x}"
        blob.write_bytes(f.read_bytes())
        (snapshot / f.name).symlink_to(os.path.relpath(blob, snapshot))
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(revision)


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_offline_hub_cache_loads_and_an_empty_one_says_how(
    tmp_path, gpt2_files, offline_hub, capsys, monkeypatch
):
    with pytest.raises(CheckpointError, match=r"scratchgpt download gpt2.*HF_HUB_OFFLINE"):
        load_gpt2("gpt2")
    assert main(["generate", "--init-from", "gpt2-124M", "--prompt", "Hi"]) == 2
    err = capsys.readouterr().err
    assert "is not in the Hugging Face cache" in err and "Traceback" not in err

    source = tmp_path / "source"
    hf = random_hf_model(n_layer=2, n_embd=16, n_head=4, vocab_size=50257, n_positions=64)
    hf.save_pretrained(source)
    copy_gpt2_tokenizer(source, *gpt2_files)
    _populate_hub_cache(offline_hub, source)
    for name in ("gpt2", "gpt2-124M", "openai-community/gpt2"):
        ours, tok = load_gpt2(name)
        _assert_same_model(ours, hf, tok, n_new=5)

    assert main(["download", "gpt2"]) == 0
    assert "snapshots/0123456789abcdef" in capsys.readouterr().out
    prompt = "Hello, I am"
    args = ["generate", "--init-from", "gpt2", "--prompt", prompt, "--max-tokens", "5"]
    assert main([*args, "--temperature", "0"]) == 0
    text = capsys.readouterr().out
    ids = torch.tensor([tok.encode(prompt)])
    assert text.rstrip("\n") == tok.decode(hf_greedy(hf, ids, 5)[0].tolist())

    # Not in the cache: a different size.
    with pytest.raises(CheckpointError, match="scratchgpt download gpt2-xl"):
        load_gpt2("gpt2-xl")


def test_missing_huggingface_hub_says_which_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import now raises ImportError
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MissingExtraError, match=r"pip install -e '\.\[hf\]'"):
        load_gpt2("gpt2")


def _one_line_with_fix(error: BaseException, *needles: str) -> str:
    """The CLI prints an error as one line: short, saying how to fix it, the cause kept."""
    message = str(error)
    assert "\n" not in message and len(message) < 250, message
    for needle in needles:
        assert needle in message, (needle, message)
    assert error.__cause__ is not None  # huggingface_hub's own error, for debugging
    return message


@pytest.fixture
def unreachable_hub(tmp_path, monkeypatch):
    """An empty cache and a hub endpoint on a loopback port nothing listens on."""
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # a free port, closed again below: connections are refused
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")


def test_unreachable_hub_is_one_line(unreachable_hub, capsys):
    with pytest.raises(CheckpointError) as info:
        load_gpt2("gpt2")
    message = _one_line_with_fix(
        info.value,
        "(offline: connection refused)",
        f"check HF_ENDPOINT={os.environ['HF_ENDPOINT']} and rerun `scratchgpt download gpt2`",
        "--init-from DIR",
    )
    assert message.startswith("could not download gpt2 from the Hugging Face hub")
    assert "Traceback" not in message and "ConnectError" not in message
    assert main(["download", "gpt2-124M"]) == 2
    err = capsys.readouterr().err
    assert "connection refused" in err and "Traceback" not in err


def test_hub_http_errors_are_one_line(unreachable_hub, monkeypatch):
    """A loopback "hub" answering every request with an HTTP error."""

    class Refusing(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(self.server.status)  # type: ignore[attr-defined]
            self.end_headers()

        do_HEAD = do_GET  # noqa: N815  (http.server dispatches on this name)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        for status in (404, 500, 401):
            server.status = status  # type: ignore[attr-defined]
            with pytest.raises(CheckpointError) as info:
                download_gpt2("gpt2")
            _one_line_with_fix(info.value, f"(HTTP {status})", "check HF_ENDPOINT=", "DIR")
    finally:
        server.shutdown()
        thread.join()


def test_offline_with_an_empty_cache_is_one_line(offline_hub):
    with pytest.raises(CheckpointError) as info:
        load_gpt2("gpt2-medium")
    _one_line_with_fix(
        info.value,
        "not in the Hugging Face cache",
        "scratchgpt download gpt2-medium",
        "HF_HUB_OFFLINE",
        "--init-from DIR",
    )


def test_hub_failures_in_a_few_words():
    def chain(*errors: BaseException) -> BaseException:  # outermost first
        for outer, inner in itertools.pairwise(errors):
            outer.__cause__ = inner
        return errors[0]

    wrapped = "An error happened while trying to locate the files on the Hub.\nPlease check"
    no_dns = socket.gaierror(-2, "Name or service not known")
    assert failure(chain(OSError(wrapped), RuntimeError("ConnectError"), no_dns)) == (
        "offline: host name not found"
    )
    assert failure(chain(OSError(wrapped), TimeoutError("read"))) == "offline: timed out"
    assert failure(chain(OSError(wrapped), ConnectionResetError())) == (
        "offline: connection failed"
    )

    class Response:
        status_code = 404

    http = RuntimeError("404 Client Error. (Request ID: ...)\n\nRepository Not Found")
    http.response = Response()  # type: ignore[attr-defined]
    assert failure(chain(OSError(wrapped), http)) == "HTTP 404"
    assert failure(ValueError("first line\nsecond line")) == "ValueError: first line"
    long = failure(ValueError("x" * 500))
    assert len(long) == 60 and long.endswith("...")


# ---------------------------------------------------------------------------------------------
# A Hugging Face directory without tokenizer files (save_pretrained of the model alone)


@pytest.fixture
def tiktoken_cache(tmp_path, monkeypatch, gpt2_files):
    cache = tiktoken_gpt2_cache(tmp_path / "tiktoken", *gpt2_files)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    return cache


def test_directory_without_tokenizer_files(tmp_path, tiktoken_cache, caplog):
    # GPT-2's 50,257 ids: GPT-2's tokenizer.
    hf = random_hf_model(n_layer=1, n_embd=16, n_head=2, vocab_size=50257, n_positions=32)
    hf.save_pretrained(tmp_path / "gpt2-vocab")
    names = {p.name for p in (tmp_path / "gpt2-vocab").iterdir()}
    assert not names & {"vocab.json", "merges.txt", "tokenizer.json", "encoder.json"}
    ours, tok = load_gpt2(tmp_path / "gpt2-vocab")
    assert isinstance(tok, TiktokenTokenizer) and tok.encode("Hello") == [15496]
    _assert_same_model(ours, hf, tok, n_new=3)

    # Any other vocabulary: no tokenizer, a warning, and ids in, logits out still work.
    hf = random_hf_model(n_layer=1, n_embd=16, n_head=2, vocab_size=1000, n_positions=32)
    hf.save_pretrained(tmp_path / "other")
    with caplog.at_level(logging.WARNING, logger="scratchgpt"):
        ours, tok = load_gpt2(tmp_path / "other")
        _, tok_too = load_pretrained(tmp_path / "other")
    assert tok is None and tok_too is None
    assert "no tokenizer files" in caplog.text and "1000-id vocabulary" in caplog.text
    ids = torch.tensor([[1, 2, 3, 999]])
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), hf(ids).logits)
    # A tokenizer passed in still wins.
    _, char = load_gpt2(tmp_path / "other", tokenizer=CharTokenizer.from_text("abc"))
    assert isinstance(char, CharTokenizer)


def test_gpt2_vocabulary_without_tiktoken_files_says_how(tmp_path, monkeypatch):
    def unreachable(cls, name):
        raise TokenizerError(f"tiktoken could not load the {name!r} vocabulary (offline)")

    monkeypatch.setattr(TiktokenTokenizer, "from_name", classmethod(unreachable))
    hf = random_hf_model(n_layer=1, n_embd=16, n_head=2, vocab_size=50257, n_positions=32)
    hf.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="TIKTOKEN_CACHE_DIR") as info:
        load_gpt2(tmp_path)
    assert "\n" not in str(info.value) and "tokenizer=DIR" in str(info.value)
    assert isinstance(info.value.__cause__, TokenizerError)


# ---------------------------------------------------------------------------------------------
# OpenAI's original TensorFlow release


def _openai_name(hf_name: str) -> str:
    """Hugging Face's name -> OpenAI's variable name, written out independently of ours."""
    name = hf_name.removeprefix("transformer.")
    if name in ("wte.weight", "wpe.weight"):
        return "model/" + name.split(".")[0]
    parts = name.split(".")
    leaf = {"weight": "w", "bias": "b"}[parts[-1]]
    if parts[-2].startswith("ln_"):
        leaf = "g" if leaf == "w" else "b"
    if parts[0] == "h":
        parts = [f"h{parts[1]}", *parts[2:]]
    return "model/" + "/".join([*parts[:-1], leaf])


def test_openai_names():
    assert _openai_name("transformer.h.11.attn.c_attn.weight") == "model/h11/attn/c_attn/w"
    cases = {
        "model/h11/attn/c_attn/w": "h.11.attn.c_attn.weight",
        "model/h0/ln_1/g": "h.0.ln_1.weight",
        "model/h3/mlp/c_proj/b": "h.3.mlp.c_proj.bias",
        "model/ln_f/b": "ln_f.bias",
        "model/wte": "wte.weight",
        "model/wpe": "wpe.weight",
        "optimizer/beta1_power": "optimizer/beta1_power",
    }
    for openai, hf in cases.items():
        assert openai_to_hf_name(openai) == hf


def _tensorflow():
    if os.environ.get("CI", "").lower() == "true":
        import tensorflow as tf  # CI installs the tf extra: this test must run there

        return tf
    return pytest.importorskip("tensorflow")


def _write_openai_release(tf, hf, directory, gpt2_files):
    """A checkpoint the way OpenAI's release has it: tf.compat.v1 Saver, OpenAI's names,
    Conv1D weights as (1, in, out), hparams.json, encoder.json and vocab.bpe."""
    directory.mkdir()
    variables = {}
    for k, v in hf.state_dict().items():
        if k == "lm_head.weight":
            continue
        name = _openai_name(k)
        array = v.numpy()
        if name.endswith("/w") and array.ndim == 2:
            array = array[None]  # (in, out) -> (1, in, out)
        variables[name] = tf.Variable(array, name=name)
    saver = tf.compat.v1.train.Saver(var_list=variables)
    saver.save(None, str(directory / "model.ckpt"), write_meta_graph=False)
    c = hf.config
    hparams = {"n_vocab": c.vocab_size, "n_ctx": c.n_positions, "n_embd": c.n_embd}
    hparams |= {"n_head": c.n_head, "n_layer": c.n_layer}
    (directory / "hparams.json").write_text(json.dumps(hparams))
    copy_gpt2_tokenizer(directory, *gpt2_files, openai=True)


def test_openai_tensorflow_checkpoint(tmp_path, gpt2_files):
    tf = _tensorflow()
    hf = random_hf_model(n_layer=3, n_embd=32, n_head=4, vocab_size=50257, n_positions=128)
    release = tmp_path / "124M"
    _write_openai_release(tf, hf, release, gpt2_files)
    names = {n for n, _ in tf.train.list_variables(str(release / "model.ckpt"))}
    assert "model/h2/attn/c_attn/w" in names and "model/ln_f/g" in names
    ours, tok = load_gpt2(release)
    assert ours.cfg.context_length == 128 and ours.cfg.tie_weights
    _assert_same_model(ours, hf, tok)


def test_openai_release_without_tensorflow_says_which_extra(tmp_path, monkeypatch):
    hparams = {"n_vocab": 50257, "n_ctx": 1024, "n_embd": 768, "n_head": 12, "n_layer": 12}
    (tmp_path / "hparams.json").write_text(json.dumps(hparams))
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    with pytest.raises(MissingExtraError, match=r"pip install -e '\.\[tf\]'"):
        load_gpt2(tmp_path)


# ---------------------------------------------------------------------------------------------
# Fine-tuning and the command line


def test_train_init_from_a_gpt2_directory(tmp_path, gpt2_files, shared_data, capsys):
    hf = random_hf_model(n_layer=2, n_embd=16, n_head=2, vocab_size=50257, n_positions=64)
    hf.save_pretrained(tmp_path / "gpt2")
    copy_gpt2_tokenizer(tmp_path / "gpt2", *gpt2_files)
    args = ["train", "--init-from", str(tmp_path / "gpt2"), "--data"]
    args += [str(shared_data("the-verdict.txt")), "--max-steps", "2", "--batch-size", "4"]
    args += ["--context-length", "32", "--sample-interval", "0", "--out", str(tmp_path / "run")]
    assert main([*args, "--lr", "1e-4", "--min-lr", "1e-5"]) == 0
    capsys.readouterr()
    tuned, tok = load_pretrained(tmp_path / "run")
    assert tuned.cfg.context_length == 32 and tuned.cfg.vocab_size == 50257
    assert tok.encode("Hello") == [15496]  # GPT-2's tokenizer came along
    wte = hf.transformer.wte.weight
    delta = (tuned.tok_emb.weight - wte).abs().max().item()
    assert 0 < delta < 1e-3  # started from the pretrained weights and moved a little
    settings = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert settings["model"]["init_from"] == str(tmp_path / "gpt2")
    assert settings["model"]["context_length"] == 32 and settings["model"]["n_layers"] == 2
    assert main([*args, "--preset", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "model.init_from fixes the model's shape" in err and "drop model.preset" in err


def test_every_new_command_has_help():
    for command in ("download", "eval", "export"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0


def test_char_tokenizer_override(tmp_path):
    hf = random_hf_model(n_layer=1, n_embd=8, n_head=2, vocab_size=101, n_positions=16)
    hf.save_pretrained(tmp_path)
    tok = CharTokenizer.from_text("abc def")
    ours, got = load_gpt2(tmp_path, tokenizer=tok)
    assert got is tok
    ids = torch.tensor([tok.encode("abc")])
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), hf(ids).logits)


def test_sharded_safetensors(tmp_path, gpt2_files):
    hf = random_hf_model(**SHAPES["odd-vocab-ctx64"])
    hf.save_pretrained(tmp_path, max_shard_size="2MB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert not (tmp_path / "model.safetensors").exists()
    copy_gpt2_tokenizer(tmp_path, *gpt2_files)
    ours, tok = load_gpt2(tmp_path)
    _assert_same_model(ours, hf, tok, n_new=3)


def test_train_api_init_from_a_name_or_directory(tmp_path, gpt2_files, shared_data):
    hf = random_hf_model(n_layer=1, n_embd=16, n_head=2, vocab_size=50257, n_positions=32)
    hf.save_pretrained(tmp_path / "gpt2")
    copy_gpt2_tokenizer(tmp_path / "gpt2", *gpt2_files)
    config = TrainConfig(max_steps=1, batch_size=2, eval_batches=1, sample_interval=0)
    verdict = shared_data("the-verdict.txt")
    with pytest.raises(ConfigError, match="init_from fixes the model's shape"):
        train(data=verdict, init_from=tmp_path / "gpt2", model="tiny", config=config)
    result = train(
        data=verdict, init_from=str(tmp_path / "gpt2"), config=config, out_dir=tmp_path / "run"
    )
    settings = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert settings["model"]["init_from"] == str(tmp_path / "gpt2")
    assert settings["model"]["context_length"] == 32 and settings["tokenizer"]["name"] is None
    assert result.checkpoint.is_dir() and load_pretrained(result.run_dir)[1].encode("Hi")
