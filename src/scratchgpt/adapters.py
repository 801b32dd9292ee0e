"""LoRA adapters on disk: saved alone, pinned to their base model, loaded back onto it, merged.

A LoRA run trains a few megabytes of low-rank matrices on top of frozen pretrained weights
(:mod:`scratchgpt.lora`), so its checkpoints hold only those and say which base they belong
to; the base is loaded again from where the run found it. An adapter directory::

    config.json        {"format": "scratchgpt-lora", "version": 1, "task": "lm" | "classifier",
                        "model": {GPTConfig of the base}, "lora": {rank, alpha, dropout,
                        targets}, "base": {"init_from", "context_length", "sha256"},
                        "labels": [...] (a classifier), "metadata": {...}}
    model.safetensors  the lora_A / lora_B matrices, and a classifier's new head
    tokenizer.json     the base model's tokenizer

The same layout as every saved model here (:func:`~scratchgpt.checkpoint.write_model_directory`,
written atomically), so a run's ``checkpoints/step-N`` can be an adapter plus the training
state, and resume finds it like any checkpoint. ``base.sha256`` is a checksum of the base's
weights (:func:`~scratchgpt.lora.weights_sha256`): an adapter put on other weights than it
was trained on would load without complaint and answer nonsense, so loading checks it.

:func:`scratchgpt.merge.merge_adapter` writes the plain model (base + scale * B @ A in every
targeted weight): a checkpoint or classifier any scratchgpt command, or ``export --format
hf``, takes as is.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    corrupt_config,
    corrupt_error,
    run_checkpoints,
    save_checkpoint,
    tensors_writer,
    write_model_directory,
)
from .config import GPTConfig
from .errors import CheckpointError, ConfigError, TokenizerError
from .lora import adapter_state, apply_lora, lora_settings, merge_lora, weights_sha256
from .model import GPTModel, add_class_head
from .tokenizers import Tokenizer, load_tokenizer

log = logging.getLogger(__name__)

ADAPTER_FORMAT = "scratchgpt-lora"
VERSION = 1
HEAD_PREFIX = "out_head."  # a classifier's new head is saved with its adapter


def base_reference(
    model: GPTModel, *, init_from: str, context_length: int | None
) -> dict[str, Any]:
    """What an adapter records about its base: where it was loaded from, the context crop,
    and a checksum of its weights (taken before any adapter or new head is added)."""
    return {
        "init_from": init_from,
        "context_length": context_length,
        "sha256": weights_sha256(model.state_dict()),
    }


def save_adapter(
    directory: str | Path,
    model: GPTModel,
    tokenizer: Tokenizer,
    *,
    base: Mapping[str, Any],
    labels: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    weights: Mapping[str, torch.Tensor] | None = None,
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write ``model``'s adapter (and, with ``labels``, its classification head) alone.

    ``base`` is :func:`base_reference` of the weights the adapter sits on; ``weights``
    replaces ``model.state_dict()`` (a sharded model's gathered state); ``extra(tmp)`` adds
    files (a run's training state) before the directory is moved into place.
    """
    state = weights if weights is not None else model.state_dict()
    lora_keys = set(adapter_state(model))
    if not lora_keys:
        raise ConfigError("the model has no LoRA adapter to save (scratchgpt.lora.apply_lora)")
    keep = {
        k: v
        for k, v in state.items()
        if k in lora_keys or (labels is not None and k.startswith(HEAD_PREFIX))
    }
    info = {
        "format": ADAPTER_FORMAT,
        "version": VERSION,
        "task": "classifier" if labels is not None else "lm",
        "model": model.cfg.to_dict(),
        "lora": lora_settings(model),
        "base": dict(base),
        "labels": list(labels) if labels is not None else None,
        "metadata": dict(metadata or {}),
    }

    return write_model_directory(
        directory,
        tensors_writer(keep, ADAPTER_FORMAT),
        tokenizer=tokenizer,
        info=info,
        extra=extra,
        replaceable=is_adapter,
        what="a LoRA adapter",
    )


def save_lm_checkpoint(
    directory: Path,
    model: GPTModel,
    tokenizer: Tokenizer,
    *,
    base: Mapping[str, Any] | None,
    metadata: Mapping[str, Any],
    weights: Mapping[str, torch.Tensor] | None,
    extra: Callable[[Path], None],
) -> Path:
    """A language model's run checkpoint: the adapter alone for a LoRA run (``base`` is its
    :func:`base_reference`), else the whole model."""
    if base is not None:
        return save_adapter(
            directory, model, tokenizer, base=base, metadata=metadata, weights=weights, extra=extra
        )
    return save_checkpoint(
        directory,
        model,
        tokenizer,
        metadata=dict(metadata),
        weights=None if weights is None else dict(weights),
        extra=extra,
    )


def _adapter_info(path: Path) -> dict[str, Any] | None:
    try:
        info = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and info.get("format") == ADAPTER_FORMAT else None


def is_adapter(path: str | Path) -> bool:
    """True for an adapter directory, or a run whose checkpoints are adapters."""
    path = Path(path)
    return _adapter_info(path) is not None or bool(run_checkpoints(path, format=ADAPTER_FORMAT))


def adapter_task(path: str | Path) -> str | None:
    """ "lm" or "classifier" for an adapter (or a LoRA run), None for anything else."""
    path = Path(path)
    info = _adapter_info(path)
    if info is None:
        steps = run_checkpoints(path, format=ADAPTER_FORMAT)
        info = _adapter_info(steps[-1][1]) if steps else None
    return None if info is None else str(info.get("task"))


def resolve_adapter(path: str | Path) -> Path:
    """The adapter directory for ``path``: itself, or a LoRA run's latest checkpoint."""
    path = Path(path)
    if _adapter_info(path) is not None:
        return path
    steps = run_checkpoints(path, format=ADAPTER_FORMAT)
    if steps:
        return steps[-1][1]
    reason = corrupt_config(path)
    if reason is not None:
        raise corrupt_error(path, reason)
    raise CheckpointError(
        f"{str(path)!r} is not a LoRA adapter: expected a directory with {CONFIG_FILE} of "
        f"format {ADAPTER_FORMAT!r} (a LoRA run's checkpoint) or the run directory"
    )


def read_adapter(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(config.json, weights) of the adapter at ``path`` (a run: its latest checkpoint)."""
    directory = resolve_adapter(path)
    info = _adapter_info(directory)
    assert info is not None
    if info.get("version") != VERSION:
        raise CheckpointError(f"{directory}: unsupported adapter version {info.get('version')}")
    try:
        weights = load_file(str(directory / WEIGHTS_FILE))
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise CheckpointError(f"{directory / WEIGHTS_FILE}: unreadable: {exc}") from exc
    info["directory"] = str(directory)
    return info, weights


def resume_weights(
    checkpoint: Path, model: torch.nn.Module, base: Mapping[str, Any]
) -> dict[str, torch.Tensor]:
    """The state dict a LoRA run resumes from: ``model``'s own (its base, loaded afresh)
    with the adapter saved in ``checkpoint`` over it; refused if the base has changed."""
    info, weights = read_adapter(checkpoint)
    if info["base"]["sha256"] != base["sha256"]:
        raise CheckpointError(
            f"{checkpoint}: its adapter was trained on other base weights than "
            f"{base['init_from']!r} holds now"
        )
    return {**model.state_dict(), **weights}


def load_base(
    info: Mapping[str, Any], *, device: str | torch.device | None = None
) -> tuple[GPTModel, Tokenizer | None]:
    """The base model an adapter was trained on, loaded from where the run found it and
    checked against the adapter's checksum."""
    from .pretrained import load_pretrained

    base = info["base"]
    options = (
        {} if base.get("context_length") is None else {"context_length": base["context_length"]}
    )
    model, tokenizer = load_pretrained(base["init_from"], device=device, **options)
    found = weights_sha256(model.state_dict())
    if found != base["sha256"]:
        raise CheckpointError(
            f"the adapter in {info.get('directory', 'this directory')} was trained on other "
            f"weights than {base['init_from']!r} holds now (sha256 {base['sha256'][:12]}..., "
            f"found {found[:12]}...): point model.init_from at the original base"
        )
    return model, tokenizer


def attach_adapter(
    model: GPTModel, info: Mapping[str, Any], weights: Mapping[str, torch.Tensor]
) -> GPTModel:
    """Put a saved adapter (and a classifier's head) onto its base ``model``, in place."""
    settings = info["lora"]
    if info.get("labels") is not None:
        add_class_head(model, len(info["labels"]))
    apply_lora(
        model,
        rank=settings["rank"],
        alpha=settings["alpha"],
        dropout=settings["dropout"],
        targets=",".join(settings["targets"]),
    )
    expected = set(adapter_state(model)) | {
        k
        for k in model.state_dict()
        if info.get("labels") is not None and k.startswith(HEAD_PREFIX)
    }
    if set(weights) != expected:
        missing, unexpected = sorted(expected - set(weights)), sorted(set(weights) - expected)
        raise CheckpointError(
            f"{info.get('directory', 'the adapter')}: its weights do not fit its config "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    model.load_state_dict(dict(weights), strict=False)
    return model


def load_adapter_model(
    path: str | Path, *, merge: bool = True, device: str | torch.device | None = None
) -> tuple[GPTModel, Tokenizer, dict[str, Any]]:
    """The base model with the adapter at ``path`` on it: merged into plain Linear weights
    (``merge``, the fast way to run it) or kept as LoRA layers (to train on, or export)."""
    info, weights = read_adapter(path)
    model, _ = load_base(info, device=device)
    saved = GPTConfig.from_dict(info["model"])
    if model.cfg != saved:
        raise CheckpointError(
            f"{info['directory']}: the base at {info['base']['init_from']!r} has another shape "
            "than the adapter was trained on"
        )
    attach_adapter(model, info, {k: v.to(model.tok_emb.weight.device) for k, v in weights.items()})
    if merge:
        merge_lora(model)
    try:
        tokenizer = load_tokenizer(info["directory"])
    except TokenizerError as exc:
        raise CheckpointError(f"{info['directory']}: {exc}") from exc
    return model.eval(), tokenizer, info
