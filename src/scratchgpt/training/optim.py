"""The optimiser and the learning-rate schedule.

AdamW (Loshchilov & Hutter 2019) with weight decay only on matrices: decaying biases and
LayerNorm scales toward zero only fights the normalisation and helps nothing. The learning
rate is one pure function of the step, linear warmup then cosine decay (GPT-3 paper, §B), so a
resumed run gets exactly the rate it would have had.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from ..config import TrainConfig
from ..errors import ConfigError

log = logging.getLogger(__name__)


def lr_at(step: int, *, lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> float:
    """The learning rate for optimiser step ``step`` (0-based).

    Warmup ramps linearly from lr / warmup_steps to lr (a large rate on random weights makes
    Adam's early, poorly estimated moments throw the model around); then cosine from lr to
    min_lr at ``max_steps``.
    """
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


def run_length(t: TrainConfig, *, batches_per_epoch: int) -> tuple[int, int]:
    """(max_steps, warmup steps) of a run: ``max_steps``, or ``epochs`` passes of
    ``batches_per_epoch`` batches at ``grad_accum`` per step, whichever ends first when both
    are set (a quick --training.max-steps 3 trial of an epoch-based config); warmup as given,
    or 10% of the run capped at 100."""
    max_steps = t.max_steps or 1
    if t.epochs is not None:
        epoch_steps = max(1, math.ceil(t.epochs * batches_per_epoch / t.grad_accum))
        max_steps = min(max_steps, epoch_steps) if t.max_steps else epoch_steps
        log.info("%g epochs of %d batches: %d steps", t.epochs, batches_per_epoch, max_steps)
    warmup = t.warmup_steps if t.warmup_steps is not None else min(100, max_steps // 10)
    if warmup > max_steps:
        raise ConfigError(
            f"training.warmup_steps={warmup}: longer than the run ({max_steps} steps); use "
            "fewer warmup steps"
        )
    return max_steps, warmup


def make_optimizer(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.95),
    device_type: str = "cpu",
) -> torch.optim.AdamW:
    """AdamW with decay on parameters of dim >= 2 (weights, embeddings) and none on the rest."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # The fused kernel updates all parameters in one pass instead of one op per tensor: on
    # CUDA one launch; on a CPU (torch >= 2.4) a step of 81M parameters in 0.06 s, not 0.27.
    fused = device_type in ("cuda", "cpu")
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused)
