"""Tokenizers behind one interface (:class:`Tokenizer`), and :func:`get_tokenizer` to pick one.

- ``"gpt2"``: OpenAI's GPT-2 BPE through tiktoken (:class:`TiktokenTokenizer`);
- ``"char"``: one id per character of a text (:class:`CharTokenizer`);
- ``"simple"``: the book's word-level tokenizer with ``<|unk|>`` (:class:`SimpleTokenizerV2`);
- ``"bpe"``: a byte-level BPE trained here on a text (:class:`BPETokenizer`);
- a path: a saved tokenizer (directory or tokenizer.json), or a directory holding OpenAI's
  ``encoder.json`` + ``vocab.bpe``.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import TokenizerError
from .base import TOKENIZER_FILE, Tokenizer, load_tokenizer
from .bpe import BPETokenizer
from .char import CharTokenizer
from .simple import SimpleTokenizerV1, SimpleTokenizerV2
from .tiktoken_bpe import TiktokenTokenizer
from .tools import explain_encoding, train_bpe_files

TOKENIZER_NAMES: tuple[str, ...] = ("gpt2", "char", "simple", "bpe")
# The names whose vocabulary is learnt from the training text itself.
LEARNED_TOKENIZERS: tuple[str, ...] = ("char", "simple", "bpe")
# OpenAI's names for GPT-2's two files, Hugging Face's names for the same data, and the
# prefixed names some copies use.
GPT2_FILE_NAMES = (
    ("encoder.json", "vocab.bpe"),
    ("vocab.json", "merges.txt"),
    ("gpt2-encoder.json", "gpt2-vocab.bpe"),
)

__all__ = [
    "LEARNED_TOKENIZERS",
    "TOKENIZER_NAMES",
    "BPETokenizer",
    "CharTokenizer",
    "SimpleTokenizerV1",
    "SimpleTokenizerV2",
    "TiktokenTokenizer",
    "Tokenizer",
    "TokenizerError",
    "explain_encoding",
    "get_tokenizer",
    "load_tokenizer",
    "train_bpe_files",
]


def get_tokenizer(
    name_or_path: str | Path, *, text: str | None = None, vocab_size: int | None = None
) -> Tokenizer:
    """The tokenizer called ``name_or_path`` (an exact name or an existing path).

    ``text`` is what a tokenizer learns its vocabulary from (required for ``"char"``,
    ``"simple"`` and ``"bpe"``); ``vocab_size`` is the exact size of a ``"bpe"`` vocabulary.
    """
    if isinstance(name_or_path, Tokenizer):
        return name_or_path
    key = str(name_or_path)
    if key == "gpt2":
        return TiktokenTokenizer.from_name("gpt2")
    if key in ("char", "simple", "bpe"):
        if text is None:
            raise TokenizerError(f"the {key!r} tokenizer is built from a text: pass text=...")
        if key == "char":
            return CharTokenizer.from_text(text)
        if key == "simple":
            return SimpleTokenizerV2.from_text(text)
        if vocab_size is None:
            raise TokenizerError(
                "the 'bpe' tokenizer is trained to an exact size: pass vocab_size=... (at least "
                "257: 256 byte tokens and <|endoftext|>)"
            )
        return BPETokenizer.train(text, vocab_size)
    path = Path(key)
    if path.is_dir():
        for encoder, merges in GPT2_FILE_NAMES:
            if (path / encoder).is_file() and (path / merges).is_file():
                return TiktokenTokenizer.from_gpt2_files(path / encoder, path / merges)
    if path.is_file() or (path.is_dir() and (path / TOKENIZER_FILE).is_file()):
        return load_tokenizer(path)
    raise TokenizerError(
        f"unknown tokenizer {key!r}: use one of {', '.join(TOKENIZER_NAMES)}, a saved tokenizer "
        f"(a directory with {TOKENIZER_FILE}, or the file), or a directory holding OpenAI's "
        "encoder.json and vocab.bpe"
    )
