"""GPT-2 by name: the Hugging Face hub's copies, fetched once into its cache, and what a name means.

The hub (``openai-community/gpt2*``) carries OpenAI's four sizes as safetensors. Downloads go
through huggingface_hub's own cache (extra ``hf``), so a model fetched once is found again
offline, by scratchgpt and by transformers alike. :func:`locate` decides what a
``name_or_path`` is: a Hugging Face directory, OpenAI's release, or a name to fetch.

A failed download says in one line what failed and how to fix it; the exception
huggingface_hub raised stays attached as ``__cause__`` for debugging.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
from pathlib import Path

from ..checkpoint import is_checkpoint
from ..errors import CheckpointError, did_you_mean, missing_extra
from .mapping import HF_CONFIG, HF_WEIGHTS
from .weights import OPENAI_HPARAMS

log = logging.getLogger(__name__)

# The four released sizes, by the hub's names, and our presets' names for them.
HUB_REPOS: dict[str, str] = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
}
ALIASES: dict[str, str] = {
    "gpt2-124M": "gpt2",
    "gpt2-355M": "gpt2-medium",
    "gpt2-774M": "gpt2-large",
    "gpt2-1558M": "gpt2-xl",
}
GPT2_NAMES: tuple[str, ...] = (*HUB_REPOS, *ALIASES)
# What a download fetches: the weights in safetensors and the tokenizer, nothing else (the
# repositories also hold TensorFlow, Flax, ONNX and pickled PyTorch copies of the weights).
HUB_FILES: tuple[str, ...] = ("config.json", "model.safetensors", "vocab.json", "merges.txt")

# The way out of every download failure, for the library and the command line alike.
LOCAL_FIX = "or pass a local directory with config.json + model.safetensors (--init-from DIR)"
OFFLINE = "offline: "  # how failure() starts a reason that means the network is down


def hub_repo(name: str) -> str | None:
    """The hub repository of a GPT-2 name or alias ("gpt2-124M" -> "openai-community/gpt2")."""
    name = ALIASES.get(name, name)
    if name in HUB_REPOS:
        return HUB_REPOS[name]
    return name if name in HUB_REPOS.values() else None


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as set now (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE", "").upper()
    return value in {"1", "ON", "YES", "TRUE"} or bool(constants.HF_HUB_OFFLINE)


def download_gpt2(name: str, *, cache_dir: str | Path | None = None) -> Path:
    """Fetch GPT-2 ``name`` (weights in safetensors + tokenizer) into the hub cache.

    Returns the local snapshot directory. huggingface_hub keeps partial downloads and resumes
    them, and an already cached model costs one metadata request (none with
    ``HF_HUB_OFFLINE=1``). ``cache_dir`` defaults to ``HF_HUB_CACHE`` (~/.cache/huggingface/hub);
    ``HF_ENDPOINT`` (a mirror) is read at each call, like ``HF_HUB_OFFLINE``.

    Raises :class:`~scratchgpt.errors.CheckpointError` with a one-line message when the model
    is neither cached nor downloadable (offline, no DNS, refused, HTTP errors); the error from
    huggingface_hub is its ``__cause__``.
    """
    repo = hub_repo(name)
    if repo is None:
        raise CheckpointError(
            f"unknown GPT-2 name {name!r}{did_you_mean(name, GPT2_NAMES)}: use one of "
            f"{', '.join(GPT2_NAMES)}, or a local directory"
        )
    try:
        import huggingface_hub
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    except ImportError as exc:
        raise missing_extra(
            "huggingface_hub",
            "hf",
            f"downloading {name!r} (or pass a local directory with config.json + "
            "model.safetensors)",
        ) from exc
    offline = hub_offline()
    cache = cache_dir or os.environ.get("HF_HUB_CACHE") or None
    where = Path(cache or huggingface_hub.constants.HF_HUB_CACHE).expanduser()
    log.debug("looking for %s in the Hugging Face cache %s (offline: %s)", repo, where, offline)
    try:
        path = Path(
            huggingface_hub.snapshot_download(
                repo,
                allow_patterns=list(HUB_FILES),
                cache_dir=cache,
                local_files_only=offline,
                endpoint=os.environ.get("HF_ENDPOINT") or None,
            )
        )
    except LocalEntryNotFoundError as exc:
        if offline:
            raise CheckpointError(
                f"GPT-2 {name!r} is not in the Hugging Face cache: run `scratchgpt download "
                f"{name}` once with a network and HF_HUB_OFFLINE unset, {LOCAL_FIX}"
            ) from exc
        # Not cached, and the hub could not be asked (no network, no DNS, a dead mirror).
        raise CheckpointError(_download_failed(name, exc)) from exc
    except (HfHubHTTPError, OSError) as exc:
        raise CheckpointError(_download_failed(name, exc)) from exc
    missing = [f for f in (HF_CONFIG, HF_WEIGHTS) if not (path / f).is_file()]
    if missing:
        raise CheckpointError(
            f"the cached copy of {repo} in {path} lacks {', '.join(missing)}: run "
            f"`scratchgpt download {name}` with network access to complete it"
        )
    return path


def _download_failed(name: str, exc: BaseException) -> str:
    """One line: what failed, why in a few words, and the way out that fits the reason."""
    reason = failure(exc)
    endpoint = os.environ.get("HF_ENDPOINT")
    if endpoint:  # a mirror: it, not the internet, is what to check
        fix = f"check HF_ENDPOINT={endpoint} and rerun `scratchgpt download {name}`"
    elif reason.startswith(OFFLINE):
        fix = f"connect to the internet and rerun `scratchgpt download {name}`"
    else:
        fix = f"rerun `scratchgpt download {name}` later (it resumes)"
    return f"could not download {name} from the Hugging Face hub ({reason}): {fix}, {LOCAL_FIX}"


def failure(exc: BaseException, *, limit: int = 60) -> str:
    """What went wrong underneath a hub error, in a few words.

    huggingface_hub wraps the network library's error, which wraps the socket's: the message
    at the top is a paragraph, and the useful fact (refused, no DNS, timed out, HTTP 404) is
    at the bottom of the chain. Anything unrecognised is its type and first line, cut short.
    """
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and all(cur is not seen for seen in chain):
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    for e in chain:
        status = getattr(getattr(e, "response", None), "status_code", None)
        if isinstance(status, int):
            return f"HTTP {status}"
    for e in reversed(chain):  # the innermost cause first
        if isinstance(e, socket.gaierror):
            return OFFLINE + "host name not found"
        if isinstance(e, ConnectionRefusedError):
            return OFFLINE + "connection refused"
        if isinstance(e, TimeoutError):
            return OFFLINE + "timed out"
        if isinstance(e, ssl.SSLError):
            return "TLS handshake failed"
        if isinstance(e, ConnectionError):
            return OFFLINE + "connection failed"
    root = chain[-1]
    first = " ".join(str(root).split("\n", 1)[0].split())
    text = f"{type(root).__name__}: {first}" if first else type(root).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def locate(name_or_path: str | Path) -> tuple[Path, str]:
    """The local directory of ``name_or_path`` and its layout, "hf" or "openai".

    An existing directory wins over a name; a GPT-2 name is fetched through the hub cache.
    """
    path = Path(name_or_path)
    if path.is_dir():
        if (path / OPENAI_HPARAMS).is_file():
            return path, "openai"
        if is_checkpoint(path) or is_checkpoint(path / "checkpoint"):
            raise CheckpointError(
                f"{path} is a scratchgpt checkpoint, not a GPT-2 release: load it with "
                "load_checkpoint (--checkpoint), or load_pretrained"
            )
        if (path / HF_CONFIG).is_file():
            return path, "hf"
        raise CheckpointError(
            f"{path} is neither a Hugging Face GPT-2 directory (config.json + "
            "model.safetensors) nor OpenAI's release (hparams.json, checkpoint, model.ckpt.*)"
        )
    if path.exists():
        raise CheckpointError(f"{path} is a file; pass the directory that holds it")
    if hub_repo(str(name_or_path)) is None:
        raise CheckpointError(
            f"{str(name_or_path)!r} is neither a directory nor a GPT-2 name"
            f"{did_you_mean(str(name_or_path), GPT2_NAMES)}: use one of {', '.join(GPT2_NAMES)}"
        )
    return download_gpt2(str(name_or_path)), "hf"
