"""Text corpora by name: the built-in ``pydocs``, and small public texts downloaded on first use.

``pydocs`` is the English text of the Python documentation that ships inside every CPython
(``pydoc_data.topics``, about 465 KB): a real corpus that needs no download, so the built-in
training run works on a fresh machine with no network.

``the-verdict`` (Edith Wharton's short story, the text of Raschka's "Build a Large Language
Model (From Scratch)", ch. 2) and ``tinyshakespeare`` (Karpathy's char-rnn corpus, nanoGPT's
first dataset) are downloaded once from their canonical URLs, checked against a pinned sha256
and cached. A download goes to a temporary file beside its final place and is renamed into
place only after its checksum matched, so an interrupted or corrupted transfer never leaves a
file that looks valid. The cache is ``$SCRATCHGPT_CACHE``, else ``$XDG_CACHE_HOME/scratchgpt``,
else ``~/.cache/scratchgpt``; every function also takes an explicit ``cache_dir``.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .windows import DataError

log = logging.getLogger(__name__)

CACHE_ENV = "SCRATCHGPT_CACHE"


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


def cache_directory(cache_dir: str | Path | None = None) -> Path:
    """Where downloads are kept: ``cache_dir``, $SCRATCHGPT_CACHE, $XDG_CACHE_HOME/scratchgpt
    or ~/.cache/scratchgpt, first one set wins."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "scratchgpt"


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (shards can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    if target.is_file():
        if file_sha256(target) == corpus.sha256:
            return target
        log.warning("%s does not match its pinned sha256; downloading it again", target)
    return download(url or corpus.url, target, sha256=corpus.sha256, name=name)


def download(
    url: str, target: str | Path, *, sha256: str, name: str, timeout: float = 60.0
) -> Path:
    """Fetch ``url`` into ``target`` if its bytes hash to ``sha256``; else raise, caching nothing.

    The bytes go to a temporary sibling of ``target`` that is fsynced and renamed into place
    only after the length and checksum matched, so no failure can leave a plausible file.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create the cache directory {target.parent} ({exc}); pass another with "
            f"--cache-dir or ${CACHE_ENV}"
        ) from None
    hint = (
        f"Offline? Download it elsewhere and pass the file with --data path/to/{target.name}, "
        f"or copy it to {target} (it is checked against its sha256)"
    )
    log.info("downloading %s from %s", name, url)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        digest = hashlib.sha256()
        received = 0
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    expected = response.headers.get("Content-Length")
                    for block in iter(lambda: response.read(1 << 16), b""):
                        out.write(block)
                        digest.update(block)
                        received += len(block)
            except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                reason = getattr(exc, "reason", None) or exc
                raise DataError(
                    f"could not download {name} from {url} ({reason}). {hint}"
                ) from None
            # http.client returns a short read when the server hangs up early, without an error.
            if expected is not None and received != int(expected):
                raise DataError(
                    f"the download of {name} from {url} was cut short: {received} of {expected} "
                    f"bytes arrived; nothing was cached. Try again. {hint}"
                )
            if digest.hexdigest() != sha256:
                raise DataError(
                    f"the file downloaded from {url} has sha256 {digest.hexdigest()}, but {name} "
                    f"is pinned to {sha256}; nothing was cached. The server sent different "
                    f"bytes (a changed upstream or a proxy error page). {hint}"
                )
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a cache is readable like any download
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def corpus_text(name: str, *, cache_dir: str | Path | None = None) -> str:
    """The text of a named corpus (downloaded and verified first, where it is not built in)."""
    if name == "pydocs":
        return pydocs_text()
    return corpus_path(name, cache_dir=cache_dir).read_text(encoding="utf-8")
