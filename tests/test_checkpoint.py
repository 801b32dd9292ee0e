import json

import pytest
import torch

from scratchgpt.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint_info,
    save_checkpoint,
)
from scratchgpt.config import preset
from scratchgpt.model import GPTModel
from scratchgpt.tokenizers import CharTokenizer, TiktokenTokenizer


@pytest.fixture
def char_tok():
    return CharTokenizer.from_text("hello world, the quick brown fox")


@pytest.mark.parametrize("tie", [True, False])
def test_round_trip_is_bit_exact(tmp_path, char_tok, tie):
    cfg = preset("tiny", vocab_size=char_tok.vocab_size, tie_weights=tie, qkv_bias=True)
    model = GPTModel(cfg)
    save_checkpoint(tmp_path / "ck", model, char_tok, metadata={"step": 7})
    loaded, tok = load_checkpoint(tmp_path / "ck")
    assert loaded.cfg == cfg
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (loaded.out_head.weight is loaded.tok_emb.weight) == tie
    assert tok.encode("the fox") == char_tok.encode("the fox")
    assert read_checkpoint_info(tmp_path / "ck")[1]["step"] == 7
    idx = torch.tensor([tok.encode("hello")])
    with torch.no_grad():
        assert torch.equal(model.eval()(idx), loaded(idx))


def test_gpt2_tokenizer_travels_with_the_checkpoint(tmp_path, shared_data):
    tok = TiktokenTokenizer.from_gpt2_files(
        shared_data("gpt2-encoder.json"), shared_data("gpt2-vocab.bpe")
    )
    model = GPTModel(preset("tiny", vocab_size=tok.vocab_size))
    save_checkpoint(tmp_path / "ck", model, tok)
    _, loaded = load_checkpoint(tmp_path / "ck")
    text = "Hello, world. Is this-- a test? <|endoftext|>"
    assert loaded.encode(text) == tok.encode(text)
    assert loaded.eot_id == 50256


def test_overwrite_replaces_atomically(tmp_path, char_tok):
    cfg = preset("tiny", vocab_size=char_tok.vocab_size)
    save_checkpoint(tmp_path / "ck", GPTModel(cfg), char_tok, metadata={"step": 1})
    second = GPTModel(cfg)
    save_checkpoint(tmp_path / "ck", second, char_tok, metadata={"step": 2})
    loaded, _ = load_checkpoint(tmp_path / "ck")
    assert torch.equal(loaded.tok_emb.weight, second.tok_emb.weight)
    assert read_checkpoint_info(tmp_path / "ck")[1]["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no temporary leftovers


def test_not_a_checkpoint_errors(tmp_path, char_tok):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a scratchgpt checkpoint"):
        load_checkpoint(tmp_path / "empty")
    model = GPTModel(preset("tiny", vocab_size=char_tok.vocab_size))
    save_checkpoint(tmp_path / "ck", model, char_tok)
    (tmp_path / "ck" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model\.safetensors is missing"):
        load_checkpoint(tmp_path / "ck")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="refusing to overwrite"):
        save_checkpoint(tmp_path / "other", model, char_tok)
    assert (tmp_path / "other" / "keep.txt").read_text() == "mine"


def test_corrupt_weights_and_wrong_shapes(tmp_path, char_tok):
    model = GPTModel(preset("tiny", vocab_size=char_tok.vocab_size))
    save_checkpoint(tmp_path / "ck", model, char_tok)
    config = tmp_path / "ck" / "config.json"
    info = json.loads(config.read_text())
    info["model"]["emb_dim"] = 64
    config.write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="does not fit the config"):
        load_checkpoint(tmp_path / "ck")
    (tmp_path / "ck" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "ck")


def test_run_directory_resolves_to_its_checkpoint(tmp_path, char_tok):
    model = GPTModel(preset("tiny", vocab_size=char_tok.vocab_size))
    save_checkpoint(tmp_path / "run" / "checkpoint", model, char_tok)
    loaded, _ = load_checkpoint(tmp_path / "run", attn_impl="explicit")
    assert loaded.cfg.attn_impl == "explicit"


def test_refuses_wrapped_models(tmp_path, char_tok):
    model = GPTModel(preset("tiny", vocab_size=char_tok.vocab_size))
    with pytest.raises(TypeError, match="raw GPTModel"):
        save_checkpoint(tmp_path / "ck", torch.nn.Sequential(model), char_tok)  # type: ignore[arg-type]


def test_a_corrupt_config_json_is_named_as_such(tmp_path, char_tok, capsys):
    from scratchgpt.cli import main

    model = GPTModel(preset("tiny", vocab_size=char_tok.vocab_size))
    save_checkpoint(tmp_path / "run" / "checkpoints" / "step-00000004", model, char_tok)
    config = tmp_path / "run" / "checkpoints" / "step-00000004" / "config.json"
    config.write_text('{"format": "scratchgpt", "version": 1, "mod')  # cut short
    pattern = r"step-00000004/config\.json is corrupt \(not valid JSON: .*\): restore the file"
    with pytest.raises(CheckpointError, match=pattern):
        load_checkpoint(config.parent)  # the checkpoint itself
    with pytest.raises(CheckpointError, match=pattern):
        load_checkpoint(tmp_path / "run")  # its run directory
    assert main(["generate", "--checkpoint", str(config.parent), "--max-tokens", "1"]) == 2
    err = capsys.readouterr().err
    assert f"{config} is corrupt (not valid JSON" in err and "Traceback" not in err
    config.write_text("[1, 2]")
    with pytest.raises(CheckpointError, match=r"config\.json is corrupt \(a JSON list"):
        load_checkpoint(config.parent)
