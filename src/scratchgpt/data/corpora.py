"""Text corpora by name, and reading a user's text file with clear errors.

``pydocs`` is the English text of the Python documentation that ships inside every CPython
(``pydoc_data.topics``, about 465 KB): a real corpus that needs no download, so the built-in
training run works on a fresh machine with no network.
"""

from __future__ import annotations

from pathlib import Path

from .windows import DataError

CORPORA: tuple[str, ...] = ("pydocs",)


def pydocs_text() -> str:
    """The pydoc topic pages, in a fixed (sorted) order so every machine builds the same text."""
    try:
        from pydoc_data.topics import topics
    except ImportError as exc:  # some distributions split pydoc_data into its own package
        raise DataError(
            "the built-in 'pydocs' corpus needs the standard library module pydoc_data, which "
            "this Python lacks; install your distribution's full Python standard library or "
            "pass --data FILE"
        ) from exc
    return "\n\n".join(topics[name].strip("\n") for name in sorted(topics)) + "\n"


def load_text(source: str | Path) -> str:
    """The text of a named corpus ("pydocs") or a UTF-8 file."""
    if str(source) == "pydocs":
        return pydocs_text()
    path = Path(source)
    if not path.exists():
        raise DataError(
            f"data {str(source)!r} is neither a named corpus ({', '.join(CORPORA)}) nor an "
            "existing file"
        )
    if path.is_dir():
        raise DataError(f"data {str(path)!r} is a directory; pass a text file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not UTF-8 text (invalid byte at offset {exc.start}); convert it to "
            "UTF-8 or pass another file"
        ) from None
    if not text.strip():
        raise DataError(f"{path} is empty: there is nothing to train on")
    return text
