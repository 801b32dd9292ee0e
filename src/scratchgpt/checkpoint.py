"""Checkpoints: a directory with the model config (JSON), the tokenizer and the weights.

::

    my-model/
      config.json        {"format": "scratchgpt", "version": 1, "model": {...}, "metadata": {...}}
      tokenizer.json     the exact tokenizer (+ its side files, e.g. gpt2.tiktoken)
      model.safetensors  the weights

Safetensors and JSON only: loading a checkpoint never unpickles, so a file from a stranger
cannot run code. The model is rebuilt from the saved config, never from code defaults.
A save is atomic: it is written beside the target and renamed into place, so a crash leaves
either the previous checkpoint or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from .config import ConfigError, GPTConfig
from .model import GPTModel
from .tokenizers import Tokenizer, TokenizerError, load_tokenizer
from .tokenizers.base import current_umask

FORMAT = "scratchgpt"
VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class CheckpointError(ValueError):
    """A path that is not a readable checkpoint; the message says what is missing."""


def save_checkpoint(
    directory: str | Path,
    model: GPTModel,
    tokenizer: Tokenizer,
    *,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (the raw one: not compiled, not DDP-wrapped) and ``tokenizer``.

    ``metadata`` is any JSON-ready dict (step, losses, training config) stored in config.json.
    Returns the checkpoint directory.
    """
    if not isinstance(model, GPTModel):
        raise TypeError(
            f"save_checkpoint expects the raw GPTModel, got {type(model).__name__}: pass the "
            "model you built, not its torch.compile / DDP wrapper (whose keys carry prefixes)"
        )
    if tokenizer.vocab_size > model.cfg.vocab_size:
        raise CheckpointError(
            f"the tokenizer has {tokenizer.vocab_size} ids but the model only "
            f"{model.cfg.vocab_size}: they do not belong together"
        )
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.tmp-"))
    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700; use the usual mode
    try:
        # save_model stores a tied weight once and load_model restores the tie.
        save_model(model, str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT})
        tokenizer.save(tmp)
        info = {
            "format": FORMAT,
            "version": VERSION,
            "model": model.cfg.to_dict(),
            "metadata": metadata or {},
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        for f in tmp.iterdir():
            os.chmod(f, 0o666 & ~current_umask())
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        _replace_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _replace_dir(new: Path, target: Path) -> None:
    """Move the finished directory ``new`` to ``target``, replacing an old checkpoint there."""
    if not target.exists():
        os.replace(new, target)
        return
    if not is_checkpoint(target):
        raise CheckpointError(
            f"{target} exists and is not a scratchgpt checkpoint; refusing to overwrite it"
        )
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(target, old)  # rename(2) cannot replace a non-empty directory: two steps
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def is_checkpoint(path: str | Path) -> bool:
    """True if ``path`` is a directory holding a scratchgpt config.json."""
    try:
        info = json.loads((Path(path) / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("format") == FORMAT


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint directory for ``path``: the checkpoint itself or a run directory.

    A training run keeps its latest checkpoint in ``RUN/checkpoint``, so either path works.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    for candidate in (path, path / "checkpoint"):
        if is_checkpoint(candidate):
            return candidate
    raise CheckpointError(
        f"{str(path)!r} is not a scratchgpt checkpoint: expected a directory with {CONFIG_FILE}, "
        f"{WEIGHTS_FILE} and tokenizer.json (as written by save_checkpoint or scratchgpt "
        "train), or a run directory containing one in checkpoint/"
    )


def read_checkpoint_info(path: str | Path) -> tuple[GPTConfig, dict[str, Any]]:
    """The model config and the metadata of a checkpoint, without loading weights."""
    directory = resolve_checkpoint(path)
    info = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    if info.get("version") != VERSION:
        raise CheckpointError(
            f"{directory}: checkpoint format version {info.get('version')!r}; this scratchgpt "
            f"reads version {VERSION}"
        )
    try:
        cfg = GPTConfig.from_dict(info["model"])
    except (KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{directory}/{CONFIG_FILE}: invalid model config: {exc}") from exc
    return cfg, info.get("metadata") or {}


def load_checkpoint(
    path: str | Path,
    *,
    device: str | torch.device | None = None,
    **overrides: Any,
) -> tuple[GPTModel, Tokenizer]:
    """Rebuild the model and tokenizer saved in ``path`` (a checkpoint or run directory).

    ``overrides`` change config fields that do not alter the weights, e.g.
    ``attn_impl="explicit"`` to run a checkpoint on the textbook attention path.
    """
    directory = resolve_checkpoint(path)
    cfg, _ = read_checkpoint_info(directory)
    if overrides:
        cfg = GPTConfig.from_dict({**cfg.to_dict(), **overrides})
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{directory}: the weights file {WEIGHTS_FILE} is missing")
    model = GPTModel(cfg)
    try:
        missing, unexpected = load_model(model, str(weights), strict=False)
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise CheckpointError(f"{weights}: unreadable or does not fit the config: {exc}") from exc
    if missing or unexpected:
        raise CheckpointError(
            f"{weights} does not match its config: missing {sorted(missing)}, unexpected "
            f"{sorted(unexpected)}"
        )
    try:
        tokenizer = load_tokenizer(directory)
    except TokenizerError as exc:
        raise CheckpointError(f"{directory}: {exc}") from exc
    if device is not None:
        model.to(device)
    model.eval()
    return model, tokenizer


def unwrap_model(model: nn.Module) -> nn.Module:
    """The raw module inside torch.compile (``_orig_mod``) and DDP (``module``) wrappers."""
    while True:
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner
