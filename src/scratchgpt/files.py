"""Writing files and directories so that a crash never leaves half of one.

Every file scratchgpt writes (checkpoints, tokenizers, configs, metrics, shards, downloads)
goes through here. The recipe is the same for a file and a directory: write a hidden sibling
of the target, flush it to disk (fsync), then rename it over the target. A rename within one
directory is atomic on POSIX and Windows, so a reader (or a process killed at any instant)
sees the old version or the new one, never a mix; fsyncing the parent directory makes the
rename itself survive a power loss.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from .errors import CheckpointError


def current_umask() -> int:
    """The process umask (read by setting and restoring it; there is no getter)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(binary_file)`` on a temporary sibling of ``path``, fsync it, rename it into
    place; on any error (or Ctrl-C) the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; use the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def fsync_directory(path: str | Path) -> None:
    """Flush a directory's entries to disk, so a rename inside it survives a power loss."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open a directory; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_directory(
    directory: str | Path,
    write: Callable[[Path], None],
    *,
    replaceable: Callable[[Path], bool],
    what: str,
) -> Path:
    """Fill a fresh directory with ``write(tmp)`` and move it to ``directory`` atomically.

    The files are written beside the target, fsynced and renamed into place, so a crash leaves
    the old directory or the new one, never a mix. An existing ``directory`` is replaced only
    when it is empty or ``replaceable(directory)`` says it holds ``what`` (an earlier save), so
    a typo in an output path never deletes someone's unrelated files.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.tmp-"))
    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700; use the usual mode
    try:
        write(tmp)
        for f in tmp.iterdir():
            if f.is_file():
                os.chmod(f, 0o666 & ~current_umask())
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        _replace_directory(tmp, directory, replaceable=replaceable, what=what)
        fsync_directory(directory.parent)  # make the rename itself durable
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _replace_directory(
    new: Path, target: Path, *, replaceable: Callable[[Path], bool], what: str
) -> None:
    """Move the finished directory ``new`` to ``target``, replacing an old save there."""
    if not target.exists():
        os.replace(new, target)
        return
    if not (target.is_dir() and (replaceable(target) or not any(target.iterdir()))):
        raise CheckpointError(
            f"{target} exists and is not {what}; refusing to overwrite it (choose another "
            "output path, or delete it first)"
        )
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(target, old)  # rename(2) cannot replace a non-empty directory: two steps
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def remove_tree(path: str | Path) -> None:
    """Delete a directory, renaming it first: a crash in the middle of deleting never leaves
    half a checkpoint under a name that looks complete."""
    path = Path(path)
    doomed = path.with_name(f".{path.name}.deleting")
    with contextlib.suppress(OSError):
        os.replace(path, doomed)
        path = doomed
    shutil.rmtree(path, ignore_errors=True)


def point_symlink(link: str | Path, target: str) -> None:
    """Make ``link`` a symlink to ``target``, atomically (a new link renamed over the old).

    Where symlinks are unavailable (some Windows setups) nothing happens: the link is a
    convenience, never the only way to find what it points to.
    """
    link = Path(link)
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}")
    try:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(target)
        os.replace(tmp, link)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (shards can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
