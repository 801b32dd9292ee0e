"""The one way scratchgpt downloads a file: pinned to a sha256, cached, never half-written.

Every public file the project fetches by URL (the-verdict, tiny Shakespeare, the SMS Spam
Collection) is pinned to the sha256 of the bytes it must have. The bytes go to a temporary
sibling of the target and are renamed into place only after the length and the checksum
matched, so an interrupted transfer, a changed upstream or a proxy's error page never leaves a
file that looks valid. The cache is ``$SCRATCHGPT_CACHE``, else ``$XDG_CACHE_HOME/scratchgpt``,
else ``~/.cache/scratchgpt``; every function also takes an explicit ``cache_dir``.

(OpenAI's GPT-2 weights come from the Hugging Face hub through ``huggingface_hub``, which
verifies and caches them itself; see :mod:`scratchgpt.pretrained`.)
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .errors import DownloadError
from .files import atomic_write_bytes, file_sha256

log = logging.getLogger(__name__)

CACHE_ENV = "SCRATCHGPT_CACHE"
BLOCK = 1 << 16


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


def fetch_url(url: str, *, name: str, hint: str, timeout: float = 60.0) -> bytes:
    """The whole body of ``url``; any network failure or short read is a one-line
    :class:`DownloadError` that names ``name`` and ends with ``hint`` (what to do offline)."""
    log.info("downloading %s from %s", name, url)
    chunks: list[bytes] = []
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            expected = response.headers.get("Content-Length")
            for block in iter(lambda: response.read(BLOCK), b""):
                chunks.append(block)
                received += len(block)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DownloadError(f"could not download {name} from {url} ({reason}). {hint}") from None
    # http.client returns a short read when the server hangs up early, without an error.
    if expected is not None and received != int(expected):
        raise DownloadError(
            f"the download of {name} from {url} was cut short: {received} of {expected} bytes "
            f"arrived; nothing was cached. Try again. {hint}"
        )
    return b"".join(chunks)


def download(
    url: str,
    target: str | Path,
    *,
    sha256: str,
    name: str,
    hint: str | None = None,
    extract: Callable[[bytes], bytes] | None = None,
    timeout: float = 60.0,
) -> Path:
    """Fetch ``url`` into ``target`` if the bytes hash to ``sha256``; else raise, caching nothing.

    ``extract`` turns the downloaded bytes into the file's bytes (a member of a zip, say); the
    pin is always the sha256 of what is written to ``target``, so the check covers the file a
    user will read, whatever the server wraps it in.
    """
    target = Path(target)
    hint = hint or (
        f"Offline? Download it elsewhere and copy it to {target} (it is checked against its sha256)"
    )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(
            f"cannot create the cache directory {target.parent} ({exc}); choose another with "
            f"--cache-dir or ${CACHE_ENV}"
        ) from None
    data = fetch_url(url, name=name, hint=hint, timeout=timeout)
    if extract is not None:
        data = extract(data)
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise DownloadError(
            f"the file downloaded from {url} has sha256 {digest}, but {name} is pinned to "
            f"{sha256}; nothing was cached. The server sent different bytes (a changed "
            f"upstream or a proxy error page). {hint}"
        )
    atomic_write_bytes(target, data)
    return target


def cached_download(
    url: str,
    target: str | Path,
    *,
    sha256: str,
    name: str,
    hint: str | None = None,
    extract: Callable[[bytes], bytes] | None = None,
    force: bool = False,
) -> Path:
    """``target`` if it is already there with the pinned sha256, else :func:`download` it.

    A cached copy is re-hashed on every call (a megabyte takes milliseconds) and fetched again
    when it no longer matches, so a damaged cache repairs itself.
    """
    target = Path(target)
    if target.is_file() and not force:
        if file_sha256(target) == sha256:
            return target
        log.warning("%s does not match its pinned sha256; downloading it again", target)
    return download(url, target, sha256=sha256, name=name, hint=hint, extract=extract)
