"""Every error a user can fix from its message alone, under one base class.

The library raises these for bad input (a wrong config value, a missing file, a corrupt
checkpoint, an unreachable server): the message says what was wrong and how to fix it. The
command line catches :class:`ScratchGPTError` and prints it as one line with exit code 2; any
other exception is a bug in scratchgpt and keeps its traceback.

Most also derive from :class:`ValueError` (and :class:`MissingExtraError` from
:class:`ImportError`), so code written against the built-in exceptions keeps working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ScratchGPTError(Exception):
    """Base class: bad input or an unmet precondition, explained in the message."""


class ConfigError(ScratchGPTError, ValueError):
    """A bad configuration value; the message names the field, the value and what is allowed."""


class DataError(ScratchGPTError, ValueError):
    """Unusable training or evaluation data (missing, too short, malformed)."""


class DownloadError(DataError):
    """A download failed or its bytes did not match their pinned checksum; nothing was kept."""


class TokenizerError(ScratchGPTError, ValueError):
    """A tokenizer cannot be built, loaded or applied to this input."""


class CheckpointError(ScratchGPTError, ValueError):
    """A checkpoint or model directory is missing, incomplete, corrupt or of another kind."""


class TrainingError(ScratchGPTError, ValueError):
    """Training cannot go on (a non-finite loss, out of memory); the message says what to do."""


class MissingExtraError(ScratchGPTError, ImportError):
    """An optional dependency is not installed; the message names the pip extra to install."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A " (did you mean 'x'?)" suffix for the closest of ``choices``, or "" when none is close,
    so a typo in a key or a name is fixed at a glance."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def missing_extra(package: str, extra: str, purpose: str) -> MissingExtraError:
    """The error for an optional ``package`` that is not installed, naming the extra that
    brings it (installed from the checkout: the name scratchgpt on PyPI is another project)."""
    return MissingExtraError(
        f"{purpose} needs {package}, which is not installed: run pip install -e '.[{extra}]' in "
        f"the scratchgpt checkout (the extra scratchgpt[{extra}]), or pip install {package}"
    )
