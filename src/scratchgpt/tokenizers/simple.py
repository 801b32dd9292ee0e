"""Word-level tokenizers from the first steps of Raschka's "Build a Large Language Model (From
Scratch)" (2024), chapter 2: split text on whitespace and punctuation, number the distinct pieces.

They show why real models use subword tokenizers: :class:`SimpleTokenizerV1` cannot encode a
word it has not seen, and :class:`SimpleTokenizerV2`'s fix, one ``<|unk|>`` id for every unknown
word, throws the word away. Neither keeps the exact whitespace, so decoding normalises it. Use
them to learn; use byte-level BPE (:mod:`.bpe`) to train.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import TokenizerError
from .base import Tokenizer
from .gpt2_files import ENDOFTEXT

UNK = "<|unk|>"

# The book's splitting regex: the capturing group keeps each punctuation mark (and "--") as a
# piece of its own, while whitespace pieces are dropped afterwards.
SPLIT_PATTERN = re.compile(r"""([,.:;?_!"()\']|--|\s)""")

# Decoding joins the pieces with spaces, then takes the space back out before punctuation so
# "Hello , world ." reads "Hello, world." (the book removes it before the same marks).
_SPACE_BEFORE_PUNCTUATION = re.compile(r"""\s+([,.:;?_!"()\'])""")


def split_words(text: str) -> list[str]:
    """The book's pre-processing: words and punctuation marks; whitespace and empty pieces go."""
    if not isinstance(text, str):
        raise TokenizerError(f"expected a str, got {type(text).__name__}")
    return [piece for piece in (p.strip() for p in SPLIT_PATTERN.split(text)) if piece]


class SimpleTokenizerV1(Tokenizer):
    """One id per distinct word of a training text; an unknown word is an error."""

    kind = "simple-v1"

    def __init__(self, vocab: Sequence[str]) -> None:
        vocab = list(vocab)
        if not vocab:
            raise TokenizerError("a word tokenizer needs at least one word")
        if len(set(vocab)) != len(vocab):
            raise TokenizerError("the vocabulary must be a list of distinct words")
        self.vocab = vocab
        self._str_to_int = {word: i for i, word in enumerate(vocab)}

    @classmethod
    def from_text(cls, text: str) -> SimpleTokenizerV1:
        """The sorted distinct words of ``text`` (sorted, so a text always gives the same ids)."""
        words = sorted(set(split_words(text)))
        if not words:
            raise TokenizerError("building a word tokenizer needs a text with at least one word")
        return cls(words)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for word in split_words(text):
            i = self._str_to_int.get(word)
            if i is None:
                i = self._unknown(word)
            ids.append(i)
        return ids

    def _unknown(self, word: str) -> int:
        """The id for a word outside the vocabulary: none here, so say which word."""
        raise TokenizerError(
            f"word {word!r} is not in this tokenizer's {self.vocab_size}-word vocabulary; "
            "SimpleTokenizerV2 maps unknown words to <|unk|>, and BPE has no unknown words"
        )

    def decode(self, ids: Sequence[int]) -> str:
        text = " ".join(self.vocab[i] for i in self.check_ids(ids))
        return _SPACE_BEFORE_PUNCTUATION.sub(r"\1", text)

    def to_dict(self) -> dict[str, Any]:
        return {"vocab": list(self.vocab)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], directory: Path) -> SimpleTokenizerV1:
        vocab = data.get("vocab")
        if not isinstance(vocab, list) or not all(isinstance(w, str) for w in vocab):
            raise TokenizerError("malformed word tokenizer file: 'vocab' must be a list of words")
        return cls(vocab)


class SimpleTokenizerV2(SimpleTokenizerV1):
    """V1 plus ``<|endoftext|>`` (document separator) and ``<|unk|>`` (any unknown word).

    The two special tokens take the last two ids, in the book's order, so the words keep the
    ids V1 gives them.
    """

    kind = "simple-v2"

    def __init__(self, vocab: Sequence[str]) -> None:
        super().__init__(vocab)
        for token in (ENDOFTEXT, UNK):
            if token not in self._str_to_int:
                raise TokenizerError(f"a SimpleTokenizerV2 vocabulary must contain {token!r}")
        self.unk_id = self._str_to_int[UNK]

    @classmethod
    def from_text(cls, text: str) -> SimpleTokenizerV2:
        words = sorted(set(split_words(text)) - {ENDOFTEXT, UNK})
        return cls([*words, ENDOFTEXT, UNK])

    @property
    def eot_id(self) -> int | None:
        return self._str_to_int[ENDOFTEXT]

    def _unknown(self, word: str) -> int:
        return self.unk_id
