"""A character-level tokenizer: one id per distinct character of a training text.

The simplest tokenizer there is (Karpathy's char-rnn, nanoGPT's shakespeare_char): the
vocabulary is the sorted set of characters, so it is tiny, loses nothing, and a small model
learns spelling before words. It is the built-in default because it needs no download.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import TokenizerError
from .base import Tokenizer


class CharTokenizer(Tokenizer):
    """Maps each character to its index in a fixed, sorted alphabet."""

    kind = "char"

    def __init__(self, chars: Sequence[str]) -> None:
        chars = list(chars)
        if not chars:
            raise TokenizerError("a character tokenizer needs at least one character")
        if any(len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
            raise TokenizerError("the alphabet must be a list of distinct single characters")
        self.chars = chars
        self._stoi = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """The alphabet of ``text``, sorted so the same text always gives the same ids."""
        if not isinstance(text, str) or not text:
            raise TokenizerError("building a character tokenizer needs a non-empty text")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TokenizerError(f"encode expects a str, got {type(text).__name__}")
        try:
            return [self._stoi[c] for c in text]
        except KeyError:
            bad = next(c for c in text if c not in self._stoi)
            raise TokenizerError(
                f"character {bad!r} (position {text.index(bad)}) is not in this tokenizer's "
                f"{self.vocab_size}-character alphabet; remove it from the text or build the "
                "tokenizer from a text that contains it"
            ) from None

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.chars[i] for i in self.check_ids(ids))

    def to_dict(self) -> dict[str, Any]:
        return {"chars": "".join(self.chars)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], directory: Path) -> CharTokenizer:
        return cls(list(data["chars"]))
