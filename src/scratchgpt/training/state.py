"""The resumable part of a checkpoint: optimiser, loss scaler, random generators, position.

A checkpoint the trainer writes is an ordinary scratchgpt checkpoint (config.json, tokenizer,
model.safetensors: what ``generate`` needs) plus two files that let training continue exactly
where it stopped::

    training_state.safetensors   every tensor: AdamW's moments, RNG states
    training_state.json          everything else: step, tokens seen, data position, the
                                 optimiser's hyperparameters, best validation loss, ...

Nested state (an optimiser's ``state_dict()``) is split in two by :func:`flatten`: tensors go
to safetensors under a path-like key, and the JSON keeps the structure with a reference where
each tensor was. Nothing is pickled, so resuming from a stranger's run cannot run code.
:class:`TrainState` is the training loop's own part of that state.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError

STATE_TENSORS = "training_state.safetensors"
STATE_JSON = "training_state.json"
_REF = "__tensor__"


def flatten(obj: Any, tensors: dict[str, torch.Tensor], prefix: str = "") -> Any:
    """``obj`` with each tensor moved into ``tensors`` and replaced by ``{"__tensor__": key}``."""
    if isinstance(obj, torch.Tensor):
        key = prefix or "_"
        tensors[key] = obj.detach().cpu().contiguous()
        return {_REF: key}
    if isinstance(obj, dict):
        # JSON keys are strings: remember int keys (an optimiser's parameter ids) as such.
        return {
            "__dict__": [
                [k, flatten(v, tensors, f"{prefix}.{k}" if prefix else str(k))]
                for k, v in obj.items()
            ]
        }
    if isinstance(obj, (list, tuple)):
        return [flatten(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a training checkpoint")


def unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of :func:`flatten`."""
    if isinstance(obj, dict):
        if _REF in obj:
            return tensors[obj[_REF]]
        return {k: unflatten(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [unflatten(v, tensors) for v in obj]
    return obj


def snapshot(obj: Any, memo: dict[tuple[Any, ...], torch.Tensor] | None = None) -> Any:
    """``obj`` (nested dicts, lists and tuples of tensors and plain values) with every tensor
    replaced by a CPU copy taken now, so a background thread can write it while training
    changes the originals in place (AdamW updates its moments and step count in place).

    Tensors that share memory (a tied embedding and output head) stay shared in the copy:
    one copy each, not one per name. On a GPU the copy is a device-to-host transfer.
    """
    memo = {} if memo is None else memo
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        where = (t.device, t.untyped_storage().data_ptr(), t.storage_offset())
        key = (*where, t.shape, t.stride(), t.dtype)
        if t.numel() == 0 or key not in memo:
            memo[key] = t.to("cpu", copy=True)
        return memo[key]
    if isinstance(obj, dict):
        return {k: snapshot(v, memo) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(snapshot(v, memo) for v in obj)
    return obj  # a plain value: immutable, or (a string, a number) shared safely


def snapshot_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` as :func:`snapshot` copies it, except frozen CPU parameters
    (a LoRA run's base model), which never change and are referred to, not copied."""
    memo: dict[tuple[Any, ...], torch.Tensor] = {}
    weights = {}
    for name, t in model.state_dict(keep_vars=True).items():
        frozen = isinstance(t, torch.nn.Parameter) and not t.requires_grad
        weights[name] = t.detach() if frozen and t.device.type == "cpu" else snapshot(t, memo)
    return weights


def write_state(directory: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (nested dicts of tensors and plain values) into ``directory``."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = flatten(state, tensors)
    save_file(tensors, str(directory / STATE_TENSORS))
    (directory / STATE_JSON).write_text(json.dumps(skeleton) + "\n", encoding="utf-8")


def read_state(directory: str | Path) -> dict[str, Any]:
    """The state :func:`write_state` wrote; a clear error if the checkpoint has none."""
    directory = Path(directory)
    files = (directory / STATE_JSON, directory / STATE_TENSORS)
    if not all(f.is_file() for f in files):
        raise CheckpointError(
            f"{directory} holds model weights but no training state ({STATE_JSON}): it cannot "
            "be resumed; start a new run from it with --init-from instead"
        )
    try:
        skeleton = json.loads(files[0].read_text(encoding="utf-8"))
        tensors = load_file(str(files[1]))
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{directory}: unreadable training state: {exc}") from exc
    return unflatten(skeleton, tensors)


@dataclass
class TrainState:
    """Where a run is: everything the loop changes as it goes; saved in every checkpoint."""

    step: int = 0
    seen: int = 0  # tokens (examples, ...) trained on, all processes together
    best_val: float = math.inf
    best_step: int | None = None  # None: no evaluation better than the untrained model's yet
    bad_evals: int = 0  # evaluations in a row without a better validation loss
    last_val: float | None = None  # the latest validation loss (None: never evaluated)
    interrupted: bool = False
    stopped_early: bool = False

    def observe(self, val_loss: float, *, min_delta: float, patience: int) -> None:
        """Take an evaluation's validation loss: better than the best by more than
        ``min_delta`` is a new best and resets the count of evaluations without one;
        ``patience`` of those in a row (0: never) stops the run early."""
        if val_loss < self.best_val - min_delta:
            # Step 0 (the untrained model) sets the bar but is never saved as "best".
            self.best_val, self.best_step, self.bad_evals = val_loss, self.step or None, 0
        else:
            self.bad_evals += 1
        self.last_val = val_loss
        self.stopped_early = bool(patience) and self.bad_evals >= patience

    def to_dict(self, unit: str) -> dict[str, Any]:
        """The loop's part of training_state.json (``unit``: what ``seen`` counts)."""
        return {
            "step": self.step,
            f"{unit}_seen": self.seen,
            "best_val_loss": self.best_val if math.isfinite(self.best_val) else None,
            "best_step": self.best_step,
            "bad_evals": self.bad_evals,
            "val_loss": self.last_val,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], unit: str) -> TrainState:
        """The state :meth:`to_dict` saved (older checkpoints lack the newer keys)."""
        best = d.get("best_val_loss")
        return cls(
            step=d["step"],
            seen=d.get(f"{unit}_seen", 0),
            best_val=math.inf if best is None else best,
            best_step=d.get("best_step"),
            bad_evals=d.get("bad_evals", 0),
            last_val=d.get("val_loss"),
        )


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """The global random generators' states (dropout draws from them): CPU, and CUDA's."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor] | None, device: torch.device) -> None:
    """Put back what :func:`rng_state` took (None: leave the generators alone)."""
    if state is not None:
        torch.set_rng_state(state["cpu"])
        if "cuda" in state:
            torch.cuda.set_rng_state(state["cuda"], device)
