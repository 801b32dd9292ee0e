"""The optimisers and the learning-rate schedule.

AdamW (Loshchilov & Hutter 2019) with weight decay only on matrices: decaying biases and
LayerNorm scales toward zero only fights the normalisation and helps nothing.

Muon (Keller Jordan 2024, "Muon: An optimizer for hidden layers in neural networks"; the
modded-nanogpt speedrun's optimiser) replaces each hidden weight matrix's momentum by the
nearest semi-orthogonal matrix (a few Newton-Schulz iterations), so every direction of the
update moves by about the same amount instead of the few dominant ones taking it all. It is
meant for the matrices inside the transformer blocks only: embeddings are lookups (one row per
token, not a linear map over a space) and the output head's rows are read one token at a time,
so those, the biases and the norm gains stay with AdamW, as in the speedrun. With
``training.optimizer=muon`` the two run side by side as one :class:`Optimizers` object.

The learning rate is one pure function of the step, linear warmup then cosine decay (GPT-3
paper, §B) or warmup-stable-decay, so a resumed run gets exactly the rate it would have had.
Every parameter group follows the same schedule, scaled to its own peak (lr or muon_lr).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import nn

from ..config import TrainConfig
from ..config.sections import SCHEDULES
from ..config.validate import one_of
from ..errors import CheckpointError, ConfigError
from .distributed import blocks

log = logging.getLogger(__name__)

# The first release with torch.optim.Muon (pytorch/pytorch#160213, August 2025).
MUON_TORCH = "2.9"


def lr_at(
    step: int,
    *,
    lr: float,
    min_lr: float,
    warmup_steps: int,
    max_steps: int,
    schedule: str = "cosine",
    cooldown_fraction: float = 0.2,
) -> float:
    """The learning rate for optimiser step ``step`` (0-based).

    Warmup ramps linearly from lr / warmup_steps to lr (a large rate on random weights makes
    Adam's early, poorly estimated moments throw the model around). Then, for ``cosine``, a
    half cosine from lr to min_lr at ``max_steps``; for ``wsd`` (warmup-stable-decay, the
    "trapezoid"), lr held constant until the last ``round(cooldown_fraction * max_steps)``
    steps (never before warmup ends), then a straight line down to min_lr at ``max_steps``.
    WSD's constant middle means a run can be extended, or branched into a cooldown at any
    point, without the schedule having committed to a length from the start.
    """
    if schedule not in SCHEDULES:
        raise ConfigError(one_of("training.schedule", schedule, SCHEDULES))
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    if schedule == "wsd":
        cooldown = max(1, round(cooldown_fraction * max_steps))
        decay_start = max(warmup_steps, max_steps - cooldown)
        if step < decay_start:
            return lr
        return min_lr + (lr - min_lr) * (max_steps - step) / (max_steps - decay_start)
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


def group_lr(step: int, t: TrainConfig, *, peak: float, warmup_steps: int, max_steps: int) -> float:
    """The rate at ``step`` of a parameter group whose peak rate is ``peak``: ``t``'s schedule
    scaled by peak / lr, so Muon's group (peak muon_lr) warms up and decays in step with
    AdamW's, to the same fraction min_lr / lr of its peak. For peak == t.lr it is exactly
    :func:`lr_at`'s rate (the factor is 1.0), so AdamW-only runs are unchanged to the bit."""
    scale = peak / t.lr
    return lr_at(
        step,
        lr=peak,
        min_lr=t.min_lr * scale,
        warmup_steps=warmup_steps,
        max_steps=max_steps,
        schedule=t.schedule,
        cooldown_fraction=t.cooldown_fraction,
    )


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


def _adamw(
    params: list[nn.Parameter],
    *,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
    device_type: str,
) -> torch.optim.AdamW:
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # The fused kernel updates all parameters in one pass instead of one op per tensor: on
    # CUDA one launch; on a CPU (torch >= 2.4) a step of 81M parameters in 0.06 s, not 0.27.
    fused = device_type in ("cuda", "cpu")
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused)


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
    return _adamw(params, lr=lr, weight_decay=weight_decay, betas=betas, device_type=device_type)


def split_parameters(
    model: nn.Module,
) -> tuple[list[tuple[str, nn.Parameter]], list[tuple[str, nn.Parameter]]]:
    """(Muon's, AdamW's) trainable parameters by name: Muon takes the weights of the Linear
    layers inside the repeated blocks (attention's query/key/value/output projections, the
    feed-forward layers); AdamW the rest. A tied output head is the token embedding, outside
    the blocks, so it stays with AdamW either way. Frozen parameters go to neither."""
    hidden = {
        id(m.weight)
        for block in blocks(model)
        for m in block.modules()
        if isinstance(m, nn.Linear) and m.weight.dim() == 2
    }
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    muon = [(n, p) for n, p in named if id(p) in hidden]
    adamw = [(n, p) for n, p in named if id(p) not in hidden]
    return muon, adamw


class Optimizers:
    """Several optimisers over disjoint parameters, used as one: what the trainer, the loss
    scaler and checkpointing call (``param_groups``, ``step``, ``zero_grad``,
    ``state_dict``, ``load_state_dict``) reaches all of them.

    ``param_groups`` lists every optimiser's groups in order (the first optimiser's first
    group is the rate the metrics report), and they are the optimisers' own dicts, so setting
    a group's ``lr`` sets it for the optimiser that owns it. The state is one dict keyed by
    optimiser name, each value that optimiser's own ``state_dict()``.
    """

    def __init__(self, **optimizers: torch.optim.Optimizer) -> None:
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [g for opt in self.optimizers.values() for g in opt.param_groups]

    def step(self) -> None:
        for opt in self.optimizers.values():
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {name: opt.state_dict() for name, opt in self.optimizers.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_optimizer_state(self, state)
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state[name])


def check_optimizer_state(optimizer: torch.optim.Optimizer | Optimizers, state: Any) -> None:
    """Refuse, in one line, a saved optimiser state made by another ``training.optimizer``
    (a run resumed with a different --optimizer) before torch fails on it deep inside."""
    want = sorted(optimizer.optimizers) if isinstance(optimizer, Optimizers) else ["adamw"]
    have = ["adamw"] if isinstance(state, dict) and "param_groups" in state else None
    if have is None and isinstance(state, dict):
        have = sorted(state)
    if have != want:
        raise CheckpointError(
            f"the checkpoint's optimiser state is for {' + '.join(have or ['?'])}, but this run "
            f"uses {' + '.join(want)}: resume with the run's own training.optimizer, or start a "
            "new run from the checkpoint with --init-from"
        )


def build_optimizer(
    model: nn.Module, t: TrainConfig, *, device_type: str = "cpu"
) -> torch.optim.Optimizer | Optimizers:
    """The optimiser ``t.optimizer`` names, over ``model``'s trainable parameters: fused AdamW
    (:func:`make_optimizer`), or Muon on the blocks' weight matrices beside AdamW on the rest
    (:func:`split_parameters`) as one :class:`Optimizers`."""
    betas = (t.beta1, t.beta2)
    if t.optimizer == "adamw":
        return make_optimizer(
            model, lr=t.lr, weight_decay=t.weight_decay, betas=betas, device_type=device_type
        )
    muon_class = getattr(torch.optim, "Muon", None)
    if muon_class is None:
        raise ConfigError(
            f"training.optimizer=muon needs torch >= {MUON_TORCH} (torch.optim.Muon); this is "
            f"torch {torch.__version__}: upgrade torch or use training.optimizer=adamw"
        )
    muon, adamw = split_parameters(model)
    if not muon:
        raise ConfigError(
            f"training.optimizer=muon: no trainable weight matrix inside the transformer blocks "
            f"(training.trainable={t.trainable}), so Muon has nothing to train; use "
            "training.optimizer=adamw"
        )
    log.info(
        "muon on %d matrices (%s parameters), adamw on %d tensors (%s)",
        len(muon),
        f"{sum(p.numel() for _, p in muon):,}",
        len(adamw),
        f"{sum(p.numel() for _, p in adamw):,}",
    )
    # torch's Muon scales each matrix's rate by sqrt(max(1, rows / cols)) (Keller Jordan's
    # "original" adjustment, its default), so a tall matrix's update has the RMS of a square
    # one's; its weight decay is decoupled (times the rate), like AdamW's.
    return Optimizers(
        adamw=_adamw(
            [p for _, p in adamw],
            lr=t.lr,
            weight_decay=t.weight_decay,
            betas=betas,
            device_type=device_type,
        ),
        muon=muon_class(
            [p for _, p in muon],
            lr=t.muon_lr,
            momentum=t.muon_momentum,
            weight_decay=t.weight_decay,
        ),
    )
