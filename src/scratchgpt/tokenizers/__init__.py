"""Tokenizers behind one interface (:class:`Tokenizer`), and :func:`get_tokenizer` to pick one.

- ``"gpt2"``: OpenAI's GPT-2 BPE through tiktoken (:class:`TiktokenTokenizer`);
- ``"char"``: one id per character of a text (:class:`CharTokenizer`);
- a path: a saved tokenizer (directory or tokenizer.json), or a directory holding OpenAI's
  ``encoder.json`` + ``vocab.bpe``.
"""

from __future__ import annotations

from pathlib import Path

from .base import TOKENIZER_FILE, Tokenizer, TokenizerError, load_tokenizer
from .char import CharTokenizer
from .tiktoken_bpe import TiktokenTokenizer

TOKENIZER_NAMES: tuple[str, ...] = ("gpt2", "char")

__all__ = [
    "TOKENIZER_NAMES",
    "CharTokenizer",
    "TiktokenTokenizer",
    "Tokenizer",
    "TokenizerError",
    "get_tokenizer",
    "load_tokenizer",
]


def get_tokenizer(name_or_path: str | Path, *, text: str | None = None) -> Tokenizer:
    """The tokenizer called ``name_or_path`` (an exact name or an existing path).

    ``text`` is what a tokenizer learns its vocabulary from (required for ``"char"``).
    """
    if isinstance(name_or_path, Tokenizer):
        return name_or_path
    key = str(name_or_path)
    if key == "gpt2":
        return TiktokenTokenizer.from_name("gpt2")
    if key == "char":
        if text is None:
            raise TokenizerError("the 'char' tokenizer is built from a text: pass text=...")
        return CharTokenizer.from_text(text)
    path = Path(key)
    if path.is_dir() and (path / "encoder.json").is_file() and (path / "vocab.bpe").is_file():
        return TiktokenTokenizer.from_gpt2_files(path / "encoder.json", path / "vocab.bpe")
    if path.is_file() or (path.is_dir() and (path / TOKENIZER_FILE).is_file()):
        return load_tokenizer(path)
    raise TokenizerError(
        f"unknown tokenizer {key!r}: use one of {', '.join(TOKENIZER_NAMES)}, a saved tokenizer "
        f"(a directory with {TOKENIZER_FILE}, or the file), or a directory holding OpenAI's "
        "encoder.json and vocab.bpe"
    )
