"""Text corpora by name: the built-in ``pydocs``, and small public texts downloaded on first use.

``pydocs`` is the English text of the Python documentation that ships inside every CPython
(``pydoc_data.topics``, about 465 KB): a real corpus that needs no download, so the built-in
training run works on a fresh machine with no network.

``the-verdict`` (Edith Wharton's short story, the text of Raschka's "Build a Large Language
Model (From Scratch)", ch. 2) and ``tinyshakespeare`` (Karpathy's char-rnn corpus, nanoGPT's
first dataset) are downloaded once from their canonical URLs, checked against a pinned sha256
and cached by :mod:`scratchgpt.download`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..download import cache_directory, cached_download
from ..errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemoteCorpus:
    """A public text pinned by its sha256: where it lives and what it must hash to."""

    name: str
    url: str
    sha256: str
    size: int
    filename: str


# The canonical copies (the book's and nanoGPT's download URLs). The pins are the sha256 of
# the bytes these URLs served when they were vendored in ../shared/data (see its SOURCES.md).
DOWNLOADS: dict[str, RemoteCorpus] = {
    "the-verdict": RemoteCorpus(
        name="the-verdict",
        url="https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch02/"
        "01_main-chapter-code/the-verdict.txt",
        sha256="b41e41a68f0398a3154ae69e2e4c0e2694e17fe0d66730536837f1b01935b31f",
        size=20_479,
        filename="the-verdict.txt",
    ),
    "tinyshakespeare": RemoteCorpus(
        name="tinyshakespeare",
        url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/"
        "input.txt",
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        size=1_115_394,
        filename="tinyshakespeare.txt",
    ),
}

CORPORA: tuple[str, ...] = ("pydocs", *DOWNLOADS)


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


def corpus_path(name: str, *, cache_dir: str | Path | None = None, url: str | None = None) -> Path:
    """The verified local file of the downloadable corpus ``name``, downloading it if needed.

    A cached copy is re-hashed on every call (a megabyte takes milliseconds) and replaced if
    it no longer matches its pin. ``url`` overrides the canonical address (a mirror); the
    file must still hash to the pinned sha256.
    """
    corpus = DOWNLOADS.get(name)
    if corpus is None:
        raise DataError(f"unknown corpus {name!r}: the named corpora are {', '.join(CORPORA)}")
    target = cache_directory(cache_dir) / corpus.filename
    hint = (
        f"Offline? Download it elsewhere and pass the file with --data path/to/{target.name}, "
        f"or copy it to {target} (it is checked against its sha256)"
    )
    return cached_download(url or corpus.url, target, sha256=corpus.sha256, name=name, hint=hint)


def corpus_text(name: str, *, cache_dir: str | Path | None = None) -> str:
    """The text of a named corpus (downloaded and verified first, where it is not built in)."""
    if name == "pydocs":
        return pydocs_text()
    return corpus_path(name, cache_dir=cache_dir).read_text(encoding="utf-8")
