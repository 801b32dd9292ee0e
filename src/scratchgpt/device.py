"""Where a model runs and in which number format: one home for device and precision choices.

The model itself knows nothing of devices or precision (torchtitan's rule); training,
generation and evaluation ask here, so "auto" means the same thing in every command.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from .errors import ConfigError


def pick_device(name: str = "auto") -> torch.device:
    """ "auto" picks CUDA, then Apple's MPS, then the CPU."""
    if name != "auto":
        try:
            device = torch.device(name)
        except RuntimeError as exc:
            raise ConfigError(
                f"device={name!r}: {exc} (use auto, cpu, cuda, cuda:N or mps)"
            ) from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device={name!r}: CUDA is not available on this machine")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The autocast dtype for ``training.precision`` on ``device`` (float32: no autocast).

    "auto" is bf16 on GPUs that have it (same exponent range as fp32: no loss scaling
    needed), fp16 with a GradScaler on older GPUs, and fp32 elsewhere.
    """
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(
            "training.precision=bf16: this GPU has no bf16 support; use fp16 (with loss "
            "scaling) or auto"
        )
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager[Any]:
    """Run the enclosed forward pass in ``dtype`` where it is safe (matmuls), fp32 elsewhere
    (reductions, softmax); float32 means no autocast at all, not an fp32 autocast region."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
