"""Export, every tokenizer kind: transformers' AutoTokenizer gives our ids, and decodes as ours."""

from __future__ import annotations

import json
import logging
import sys

import pytest
import torch
from transformers import AutoTokenizer, GPT2LMHeadModel

from scratchgpt.config import preset
from scratchgpt.errors import MissingExtraError, TokenizerError
from scratchgpt.model import GPTModel
from scratchgpt.pretrained import SCRATCHGPT_TOKENIZER, export_hf, hf_tokenizer, load_gpt2
from scratchgpt.tokenizers import (
    BPETokenizer,
    CharTokenizer,
    SimpleTokenizerV1,
    SimpleTokenizerV2,
    TiktokenTokenizer,
    Tokenizer,
)

pytestmark = pytest.mark.hf

# Beyond the-verdict's ASCII: accents, CJK, an emoji (4 UTF-8 bytes), tabs, a no-break space.
EXTRA = "ünïcödé 中文 🚀\tx\u00a0y"
EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def verdict(shared_data):
    return shared_data("the-verdict.txt").read_text(encoding="utf-8")


def _texts(verdict: str) -> list[str]:
    """Prose, whitespace runs, unicode, special tokens alone, glued and repeated."""
    return [
        verdict[:2000],
        "I HAD always thought Jack Gisburn rather a cheap genius--though a good fellow enough.",
        "  lots   of\n\n\n spaces\t\tand tabs  \n",
        f"ünïcödé 中文 🚀 x\u00a0y {EOT}",
        f"{EOT} the end {EOT}{EOT}",
        f"glued{EOT}to words, and (quoted) 'single' \"double\" -- dashes---",
        "",
    ]


def _build(kind: str, verdict: str) -> Tokenizer:
    if kind == "char":
        return CharTokenizer.from_text(verdict + EXTRA)
    if kind == "simple-v1":
        return SimpleTokenizerV1.from_text(verdict)
    if kind == "simple-v2":
        return SimpleTokenizerV2.from_text(verdict)
    if kind == "bpe-gpt2":
        return BPETokenizer.train(verdict, 400)
    if kind == "bpe-cl100k-roles":
        roles = {"bos": "<|bos|>", "eos": EOT, "pad": "<|pad|>"}
        return BPETokenizer.train(verdict, 420, pattern="cl100k", special_tokens=roles)
    raise AssertionError(kind)


def _ours(tok: Tokenizer, text: str) -> list[int] | type[Exception]:
    """Our ids, special tokens recognised as Hugging Face's added tokens are; or the error."""
    try:
        if isinstance(tok, (BPETokenizer, TiktokenTokenizer)):
            return tok.encode(text, allowed_special="all")
        return tok.encode(text)
    except TokenizerError:
        return TokenizerError


def _theirs(hf_tok, text: str) -> list[int] | type[Exception]:
    try:
        return hf_tok(text)["input_ids"]
    except Exception as exc:  # tokenizers raises a bare Exception for an unknown piece
        assert "UNK" in str(exc) or "unk" in str(exc), exc
        return TokenizerError


def _export(tok: Tokenizer, directory) -> tuple[GPTModel, object]:
    model = GPTModel(preset("tiny", vocab_size=tok.vocab_size, n_layers=1)).eval()
    out = export_hf(model, tok, directory)
    return model, out


KINDS = ["char", "simple-v1", "simple-v2", "bpe-gpt2", "bpe-cl100k-roles"]


@pytest.mark.parametrize("kind", KINDS)
def test_autotokenizer_gives_our_ids(tmp_path, verdict, kind):
    tok = _build(kind, verdict)
    model, out = _export(tok, tmp_path / "hf")
    # Hugging Face's format under Hugging Face's name; ours beside it, under its own.
    data = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))
    assert "model" in data and "added_tokens" in data and "type" not in data
    assert (out / SCRATCHGPT_TOKENIZER).is_file() and not (out / "vocab.json").exists()
    hf_tok = AutoTokenizer.from_pretrained(out)
    assert len(hf_tok) == tok.vocab_size

    texts = _texts(verdict)
    compared = 0
    for text in texts:
        ours, theirs = _ours(tok, text), _theirs(hf_tok, text)
        assert theirs == ours, (kind, text[:60])
        if isinstance(ours, list):
            compared += 1
            # Decoding: the same text as ours, which is the input wherever ours round-trips.
            assert hf_tok.decode(ours) == tok.decode(ours), (kind, text[:60])
    assert compared >= 3  # most texts encode: the comparison is not of two errors

    # Unknown input: an error on both sides, or <|unk|> on both.
    unknown = "zebra ☃"
    assert _theirs(hf_tok, unknown) == _ours(tok, unknown)
    if kind == "simple-v2":
        assert hf_tok(unknown)["input_ids"] == [tok.unk_id, tok.unk_id]
        assert hf_tok.unk_token == "<|unk|>"
    if kind in ("char", "simple-v1"):
        assert _ours(tok, unknown) is TokenizerError
    if tok.eot_id is not None:
        assert hf_tok.eos_token_id == tok.eot_id
    if kind == "bpe-cl100k-roles":
        assert (hf_tok.bos_token, hf_tok.pad_token) == ("<|bos|>", "<|pad|>")
        # Neither side adds BOS/EOS on its own.
        assert hf_tok("Hi there")["input_ids"] == tok.encode("Hi there")

    # The weights behind the tokenizer: transformers and ours give the same logits.
    ids = torch.tensor([tok.encode("I HAD always thought")])
    hf_model = GPT2LMHeadModel.from_pretrained(out).eval()
    with torch.no_grad():
        torch.testing.assert_close(hf_model(ids).logits, model(ids))
    # And load_gpt2 gives back our own tokenizer, class and all.
    back_model, back = load_gpt2(out)
    assert type(back) is type(tok) and back.encode(texts[1]) == tok.encode(texts[1])
    with torch.no_grad():
        # tiny has no QKV bias: the round trip adds exact zero biases (another matmul path).
        torch.testing.assert_close(back_model(ids), model(ids), rtol=0, atol=1e-6)


def test_decode_round_trips_where_ours_does(tmp_path, verdict):
    """Byte-level BPE and characters lose nothing: decode(encode(text)) == text on both sides."""
    for kind in ("char", "bpe-gpt2"):
        tok = _build(kind, verdict)
        _, out = _export(tok, tmp_path / kind)
        hf_tok = AutoTokenizer.from_pretrained(out)
        for text in (verdict[:1500], "  x\n\n\t y  ", EXTRA, f"a{EOT}b" if kind != "char" else ""):
            ids = hf_tok(text)["input_ids"]
            assert hf_tok.decode(ids) == text == tok.decode(ids)
        if kind == "bpe-gpt2":
            # Half a character: both decode the broken bytes to U+FFFD alike.
            ids = tok.encode("🚀")[:1]
            assert hf_tok.decode(ids) == tok.decode(ids) == "\ufffd"
            assert (
                hf_tok.decode(
                    tok.encode(f"x{EOT}", allowed_special="all"), skip_special_tokens=True
                )
                == "x"
            )


def test_openai_bpe_exports_as_gpt2(tmp_path, shared_data):
    """Our BPE loaded from OpenAI's files (GPT-2's byte order) is written with GPT-2's ids."""
    tok = BPETokenizer.from_openai(shared_data("gpt2-encoder.json"), shared_data("gpt2-vocab.bpe"))
    ref = TiktokenTokenizer.from_gpt2_files(
        shared_data("gpt2-encoder.json"), shared_data("gpt2-vocab.bpe")
    )
    built, settings = hf_tokenizer(tok)
    assert settings == {"eos_token": EOT}
    for text in ("Hello, world! It's 2024.", "  spaces\n\nünïcödé 🚀", f"a{EOT}b"):
        want = ref.encode(text, allowed_special="all")
        assert built.encode(text, add_special_tokens=False).ids == want


def test_what_cannot_be_written_exactly_is_not_written(tmp_path, caplog):
    # Two merges that make the same bytes: Hugging Face's vocabulary maps strings to ids.
    dup = BPETokenizer([(97, 98), (98, 99), (256, 99), (97, 257)])
    with pytest.raises(TokenizerError, match=r"same bytes b'abc'"):
        hf_tokenizer(dup)
    # A pattern that skips characters: Hugging Face would keep what ours refuses to encode.
    with pytest.raises(TokenizerError, match="does not match every character"):
        hf_tokenizer(BPETokenizer([], pattern=r"[a-z]+"))

    class Shifted(Tokenizer):
        """A kind transformers has no equivalent for (not registered: no class-body kind)."""

        vocab_size = 300  # type: ignore[assignment]

        def encode(self, text):
            return [ord(c) % 300 for c in text]

        def decode(self, ids):
            return "".join(map(chr, ids))

        def to_dict(self):
            return {}

        @classmethod
        def from_dict(cls, data, directory):
            return cls()

    Shifted.kind = "test-shifted"  # type: ignore[misc]
    with pytest.raises(TokenizerError, match="no Hugging Face equivalent"):
        hf_tokenizer(Shifted())
    model = GPTModel(preset("tiny", vocab_size=300, n_layers=1))
    with caplog.at_level(logging.WARNING, logger="scratchgpt"):
        out = export_hf(model, Shifted(), tmp_path / "hf")
    assert "no tokenizer for transformers" in caplog.text
    assert not (out / "tokenizer.json").exists() and (out / SCRATCHGPT_TOKENIZER).is_file()


def test_missing_tokenizers_package_names_the_extra(tmp_path, monkeypatch, verdict, shared_data):
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # import tokenizers now fails
    tok = CharTokenizer.from_text(verdict)
    model = GPTModel(preset("tiny", vocab_size=tok.vocab_size, n_layers=1))
    with pytest.raises(MissingExtraError, match=r"tokenizers.*scratchgpt\[hf\]"):
        export_hf(model, tok, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    # GPT-2's own files need no package.
    gpt2 = TiktokenTokenizer.from_gpt2_files(
        shared_data("gpt2-encoder.json"), shared_data("gpt2-vocab.bpe")
    )
    out = export_hf(GPTModel(preset("tiny", vocab_size=50257, n_layers=1)), gpt2, tmp_path / "gpt2")
    assert (out / "vocab.json").is_file() and not (out / "tokenizer.json").exists()
    assert not (out / SCRATCHGPT_TOKENIZER).exists()  # GPT-2's files say it all


def test_export_without_tokenizer_writes_the_model_alone(tmp_path):
    model = GPTModel(preset("tiny", vocab_size=50, n_layers=1))
    out = export_hf(model, None, tmp_path / "hf")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]


def test_an_older_export_with_scratchgpts_tokenizer_json_still_loads(tmp_path, verdict):
    """Exports before tokenizer.json became Hugging Face's held ours under that name."""
    tok = CharTokenizer.from_text(verdict)
    _, out = _export(tok, tmp_path / "hf")
    (out / "tokenizer.json").unlink()
    (out / "tokenizer_config.json").unlink()
    (out / SCRATCHGPT_TOKENIZER).rename(out / "tokenizer.json")
    _, back = load_gpt2(out)
    assert isinstance(back, CharTokenizer) and back.chars == tok.chars
