"""The one tokenizer interface every implementation follows, and its save/load format.

A tokenizer turns text into integer ids and back. The model only ever sees the ids, so a
checkpoint must carry the exact tokenizer it was trained with: each implementation saves itself
as a ``tokenizer.json`` (plain JSON, never pickle) plus, where needed, side files in the same
directory, and :func:`load_tokenizer` rebuilds it from the ``"type"`` field.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ..errors import TokenizerError
from ..files import atomic_write_text

TOKENIZER_FILE = "tokenizer.json"

T = TypeVar("T", bound="Tokenizer")


class Tokenizer(ABC):
    """Text <-> ids. Subclasses register themselves under ``kind`` for :func:`load_tokenizer`."""

    kind: ClassVar[str]
    _registry: ClassVar[dict[str, type[Tokenizer]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if kind is not None:
            Tokenizer._registry[kind] = cls

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of ids (the model's ``vocab_size`` must be at least this)."""

    @property
    def eot_id(self) -> int | None:
        """The end-of-text id placed between documents and used to stop generation, if any."""
        return None

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Text to ids."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Ids to text."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state, without the ``type`` field (added by :meth:`save`)."""

    @classmethod
    @abstractmethod
    def from_dict(cls, data: dict[str, Any], directory: Path) -> Tokenizer:
        """Inverse of :meth:`to_dict`; side files written by :meth:`save` are in ``directory``."""

    def save_files(self, directory: Path) -> list[str]:
        """Write side files next to tokenizer.json; return their names. None by default."""
        return []

    def save(self, directory: str | Path) -> Path:
        """Write ``tokenizer.json`` (and side files) into ``directory``; returns the JSON path.

        A path ending in ``.json`` that is not an existing directory names the JSON file
        itself (``tok.json``); side files, if any, then go beside it, where :func:`load_tokenizer`
        looks for them.
        """
        directory = Path(directory)
        if directory.suffix.lower() == ".json" and not directory.is_dir():
            directory, path = directory.parent, directory
        else:
            path = directory / TOKENIZER_FILE
        directory.mkdir(parents=True, exist_ok=True)
        self.save_files(directory)
        atomic_write_text(path, json.dumps({"type": self.kind, **self.to_dict()}, indent=1))
        return path

    @classmethod
    def load(cls: type[T], path: str | Path) -> T:
        """Load a saved tokenizer of this class (a directory or a JSON file path).

        ``Tokenizer.load`` accepts any kind, like :func:`load_tokenizer`; a subclass checks
        that the file holds its own kind, so a type mix-up fails here, not at the first encode.
        """
        tokenizer = load_tokenizer(path)
        if not isinstance(tokenizer, cls):
            raise TokenizerError(
                f"{path} holds a {tokenizer.kind!r} tokenizer, not a {cls.__name__}"
            )
        return tokenizer

    def check_ids(self, ids: Sequence[int]) -> list[int]:
        """Ids as a list of ints, with a clear error for one outside the vocabulary."""
        out = [int(i) for i in ids]
        for i in out:
            if not 0 <= i < self.vocab_size:
                raise TokenizerError(
                    f"id {i} is outside this tokenizer's vocabulary [0, {self.vocab_size}); was "
                    "the model trained with a larger vocabulary than its tokenizer?"
                )
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a tokenizer saved by :meth:`Tokenizer.save` (a directory or its tokenizer.json)."""
    path = Path(path)
    file = path / TOKENIZER_FILE if path.is_dir() else path
    if not file.is_file():
        raise TokenizerError(
            f"no tokenizer at {str(path)!r}: expected a directory holding {TOKENIZER_FILE} or "
            "the path of such a file"
        )
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TokenizerError(f"{file}: not a valid tokenizer JSON file ({exc})") from exc
    if not isinstance(data, dict) or "type" not in data:
        raise TokenizerError(f"{file}: missing the 'type' field naming the tokenizer kind")
    kind = data.pop("type")
    cls = Tokenizer._registry.get(kind)
    if cls is None:
        raise TokenizerError(
            f"{file}: unknown tokenizer type {kind!r}; known types: "
            f"{', '.join(sorted(Tokenizer._registry))}"
        )
    return cls.from_dict(data, file.parent)
