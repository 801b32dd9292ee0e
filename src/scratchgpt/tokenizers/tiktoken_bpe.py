"""GPT-2's byte-level BPE through tiktoken (OpenAI's fast Rust implementation).

The ids are exactly OpenAI's, so a model trained here can load GPT-2 weights and vice versa.
tiktoken normally downloads the vocabulary on first use; :meth:`TiktokenTokenizer.from_gpt2_files`
builds the same encoding from local ``encoder.json`` + ``vocab.bpe`` with no network, and a
saved tokenizer carries its own vocabulary file, so checkpoints load offline.
"""

from __future__ import annotations

import base64
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Literal

import tiktoken

from ..errors import TokenizerError
from ..files import atomic_write_text
from .base import Tokenizer
from .gpt2_files import ENDOFTEXT, read_gpt2_files

# GPT-2's pre-tokenisation regex: contractions, letters, numbers, other symbols, whitespace;
# each with an optional leading space so " the" is one piece (Radford et al. 2019).
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


class TiktokenTokenizer(Tokenizer):
    """Wraps a ``tiktoken.Encoding``; special-token text in user input is ordinary text."""

    kind = "tiktoken"

    def __init__(self, encoding: tiktoken.Encoding) -> None:
        self.encoding = encoding

    @classmethod
    def from_gpt2_files(cls, encoder_json: str | Path, vocab_bpe: str | Path) -> TiktokenTokenizer:
        """GPT-2's encoding from OpenAI's two files, offline."""
        ranks, _, special = read_gpt2_files(encoder_json, vocab_bpe)
        return cls(_make_encoding("gpt2", ranks, special, GPT2_PATTERN))

    @classmethod
    def from_name(cls, name: str) -> TiktokenTokenizer:
        """A named tiktoken encoding ("gpt2", ...); tiktoken downloads and caches it once."""
        try:
            return cls(tiktoken.get_encoding(name))
        except ValueError as exc:  # unknown name
            raise TokenizerError(str(exc)) from exc
        except Exception as exc:  # network failure: say how to work offline
            raise TokenizerError(
                f"tiktoken could not load the {name!r} vocabulary ({type(exc).__name__}: {exc}). "
                "Offline, pass a directory holding OpenAI's encoder.json and vocab.bpe instead "
                "(e.g. --tokenizer path/to/gpt2-files), or set TIKTOKEN_CACHE_DIR to a cache "
                "that already has it"
            ) from exc

    @property
    def vocab_size(self) -> int:
        return self.encoding.n_vocab

    @property
    def eot_id(self) -> int | None:
        return self.encoding._special_tokens.get(ENDOFTEXT)

    def encode(
        self, text: str, *, allowed_special: Literal["all"] | Collection[str] = ()
    ) -> list[int]:
        """Ids for ``text``; special tokens are recognised only if listed in ``allowed_special``.

        The default treats "<|endoftext|>" typed by a user as plain characters, so untrusted
        text can never inject a document boundary.
        """
        if not isinstance(text, str):
            raise TokenizerError(f"encode expects a str, got {type(text).__name__}")
        allowed = set(allowed_special) if allowed_special != "all" else "all"
        return self.encoding.encode(text, allowed_special=allowed, disallowed_special=())

    def decode(self, ids: Sequence[int]) -> str:
        return self.encoding.decode(self.check_ids(ids))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.encoding.name,
            "pattern": self.encoding._pat_str,
            "special_tokens": self.encoding._special_tokens,
            "ranks_file": f"{self.encoding.name}.tiktoken",
        }

    def save_files(self, directory: Path) -> list[str]:
        # tiktoken's own vocabulary format: one "base64(token) rank" line per token.
        name = f"{self.encoding.name}.tiktoken"
        ranks = self.encoding._mergeable_ranks
        lines = (f"{base64.b64encode(t).decode()} {r}" for t, r in sorted(ranks.items(), key=_rank))
        atomic_write_text(directory / name, "\n".join(lines) + "\n")
        return [name]

    @classmethod
    def from_dict(cls, data: dict[str, Any], directory: Path) -> TiktokenTokenizer:
        path = directory / data["ranks_file"]
        if not path.is_file():
            raise TokenizerError(f"tokenizer vocabulary file {str(path)!r} is missing")
        ranks: dict[bytes, int] = {}
        for n, line in enumerate(path.read_text(encoding="ascii").splitlines(), 1):
            try:
                token, rank = line.split(" ")
                ranks[base64.b64decode(token, validate=True)] = int(rank)
            except ValueError as exc:
                raise TokenizerError(f"{path}:{n}: not a 'base64 rank' line") from exc
        return cls(_make_encoding(data["name"], ranks, data["special_tokens"], data["pattern"]))


def _rank(item: tuple[bytes, int]) -> int:
    return item[1]


def _make_encoding(
    name: str, ranks: dict[bytes, int], special: dict[str, int], pattern: str
) -> tiktoken.Encoding:
    return tiktoken.Encoding(
        name=name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=dict(special)
    )
