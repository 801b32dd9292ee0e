"""Export: a model trained here -> Hugging Face's GPT-2 format -> transformers, same logits."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest
import torch
from transformers import AutoTokenizer, GPT2LMHeadModel, GPT2TokenizerFast

from scratchgpt.checkpoint import CheckpointError, save_checkpoint
from scratchgpt.cli import main
from scratchgpt.config import GPTConfig, preset
from scratchgpt.model import GPTModel
from scratchgpt.pretrained import convert_to_hf, export_hf, load_gpt2, mapping
from scratchgpt.tokenizers import CharTokenizer, TiktokenTokenizer

pytestmark = pytest.mark.hf

TEXT = "Every effort moves you, and the quick brown fox jumps over 12 lazy dogs."


@pytest.fixture(scope="module")
def gpt2_tok(shared_data):
    return TiktokenTokenizer.from_gpt2_files(
        shared_data("gpt2-encoder.json"), shared_data("gpt2-vocab.bpe")
    )


def random_model(**overrides) -> GPTModel:
    """A model of ours with every parameter random (biases and LayerNorms too)."""
    cfg = preset("tiny", vocab_size=50257, n_layers=3, n_heads=2, **overrides)
    model = GPTModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(1.0 if name.endswith(".scale") else 0.0, 0.1)
    return model


@pytest.mark.parametrize(
    ("tie", "qkv_bias"), [(True, True), (False, False)], ids=["gpt2-like", "book-like"]
)
def test_export_loads_in_transformers_with_the_same_logits(tmp_path, gpt2_tok, tie, qkv_bias):
    model = random_model(tie_weights=tie, qkv_bias=qkv_bias)
    out = export_hf(model, gpt2_tok, tmp_path / "hf")
    hf = GPT2LMHeadModel.from_pretrained(out).eval()
    ids = torch.tensor([gpt2_tok.encode(TEXT)])
    with torch.no_grad():
        ours = model(ids)
        torch.testing.assert_close(hf(ids).logits, ours)
    # Untied stays untied in transformers (it ties by default unless the config says not to).
    head, wte = hf.lm_head.weight, hf.transformer.wte.weight
    assert (head.data_ptr() == wte.data_ptr()) == tie
    assert torch.equal(head, model.out_head.weight)
    assert json.loads((out / "config.json").read_text())["tie_word_embeddings"] == tie
    if not qkv_bias:
        assert not hf.transformer.h[0].attn.c_attn.bias.any()  # exact zeros: the same function

    # ours -> HF -> ours: the same weights, bit for bit, and the same logits.
    back, tok = load_gpt2(out)
    assert back.cfg == dataclasses.replace(model.cfg, qkv_bias=True)
    theirs = back.state_dict()
    for name, tensor in model.state_dict().items():
        assert torch.equal(theirs[name], tensor), name
    assert tok.encode(TEXT) == gpt2_tok.encode(TEXT)
    with torch.no_grad():
        if qkv_bias:
            assert torch.equal(back(ids), ours)
        else:
            torch.testing.assert_close(back(ids), ours, rtol=0, atol=1e-6)


def test_gpt2_tokenizer_files_are_gpt2s_own(tmp_path, gpt2_tok, shared_data):
    out = export_hf(random_model(), gpt2_tok, tmp_path / "hf")
    # The merges recovered from tiktoken's ranks are OpenAI's file, line for line.
    original = shared_data("gpt2-vocab.bpe").read_text(encoding="utf-8").split("\n")[1:]
    exported = (out / "merges.txt").read_text(encoding="utf-8").split("\n")[1:]
    assert [m for m in exported if m] == [m for m in original if m]
    vocab = json.loads((out / "vocab.json").read_text(encoding="utf-8"))
    assert vocab == json.loads(shared_data("gpt2-encoder.json").read_text(encoding="utf-8"))
    hf_tok = GPT2TokenizerFast.from_pretrained(out)
    auto = AutoTokenizer.from_pretrained(out)
    for text in (TEXT, "  spaces\n\nand\ttabs 1234 ünïcödé 🚀", "<|endoftext|>"):
        assert hf_tok.encode(text) == gpt2_tok.encode(text, allowed_special="all")
        assert auto(text)["input_ids"] == gpt2_tok.encode(text, allowed_special="all")
        assert auto.decode(auto(text)["input_ids"]) == text


def test_other_tokenizers_travel_as_hf_and_scratchgpt_files(tmp_path, caplog):
    """Not GPT-2's: Hugging Face's tokenizer.json for transformers, ours under its own name."""
    tok = CharTokenizer.from_text(TEXT)
    model = GPTModel(preset("tiny", vocab_size=tok.vocab_size))
    with caplog.at_level(logging.WARNING, logger="scratchgpt"):
        out = export_hf(model, tok, tmp_path / "hf")
    warned = [r for r in caplog.records if r.name.startswith("scratchgpt") and r.levelno >= 30]
    assert not warned  # nothing was left out
    assert not (out / "vocab.json").exists()
    assert "added_tokens" in json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))
    assert AutoTokenizer.from_pretrained(out)("quick fox")["input_ids"] == tok.encode("quick fox")
    back, back_tok = load_gpt2(out)
    assert isinstance(back_tok, CharTokenizer)
    assert back_tok.encode("quick fox") == tok.encode("quick fox")
    assert json.loads((out / "config.json").read_text())["eos_token_id"] is None
    ids = torch.tensor([tok.encode("quick fox")])
    hf = GPT2LMHeadModel.from_pretrained(out).eval()
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, back(ids))


def test_refuses_what_gpt2_cannot_express(tmp_path, monkeypatch, gpt2_tok):
    model = random_model(ln_eps=1e-6)
    # A config field GPT-2 has no equivalent for (as a new position encoding would be):
    fields = {k: v for k, v in mapping.EXPORTED_FIELDS.items() if k != "ln_eps"}
    monkeypatch.setattr(mapping, "EXPORTED_FIELDS", fields)  # where config_to_hf reads it
    with pytest.raises(CheckpointError, match="no equivalent of ln_eps=1e-06"):
        export_hf(model, gpt2_tok, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    # A parameter the mapping table has no row for is refused, never dropped.
    state = {**model.state_dict(), "rope.freqs": torch.zeros(4)}
    with pytest.raises(CheckpointError, match=r"no place for the parameters rope\.freqs"):
        convert_to_hf(state, model.cfg)


def test_export_overwrites_only_an_export(tmp_path, gpt2_tok):
    model = random_model()
    export_hf(model, gpt2_tok, tmp_path / "hf")
    export_hf(model, gpt2_tok, tmp_path / "hf")  # replacing an earlier export is fine
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(CheckpointError, match="refusing to overwrite"):
        export_hf(model, gpt2_tok, mine)
    assert (mine / "notes.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf", "mine"]


def test_export_command(tmp_path, gpt2_tok, capsys):
    model = random_model()
    save_checkpoint(tmp_path / "ck", model, gpt2_tok)
    args = ["export", "--checkpoint", str(tmp_path / "ck"), "--format", "hf"]
    assert main([*args, "--out", str(tmp_path / "out")]) == 0
    assert "GPT2LMHeadModel.from_pretrained" in capsys.readouterr().out
    hf = GPT2LMHeadModel.from_pretrained(tmp_path / "out").eval()
    ids = torch.tensor([gpt2_tok.encode(TEXT)])
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids))
    assert main([*args, "--out", str(tmp_path / "ck" / "model.safetensors")]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err


@pytest.mark.skipif(
    "pos_encoding" not in {f.name for f in dataclasses.fields(GPTConfig)},
    reason="this GPTConfig has no pos_encoding field",
)
def test_sinusoidal_positions_export_as_their_table(tmp_path, gpt2_tok):
    """GPT-2 has no fixed positions, but a learned table holding the sin/cos values is the
    same function: the export carries them in wpe."""
    model = random_model(pos_encoding="sinusoidal", context_length=32)
    assert "pos_emb.weight" not in model.state_dict()
    out = export_hf(model, gpt2_tok, tmp_path / "hf")
    hf = GPT2LMHeadModel.from_pretrained(out).eval()
    ids = torch.tensor([gpt2_tok.encode(TEXT)])
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids))
        back, _ = load_gpt2(out)
        assert back.cfg.pos_encoding == "learned"
        assert torch.equal(back(ids), model(ids))
