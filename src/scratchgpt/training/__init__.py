"""Training: the optimiser and schedule, the resumable loop, metrics, distributed setup."""

from ..config import RunConfig, TrainConfig
from .optim import lr_at, make_optimizer
from .trainer import (
    TrainingError,
    TrainResult,
    evaluate,
    latest_run,
    pick_device,
    resolve_precision,
    train,
)

__all__ = [
    "RunConfig",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "evaluate",
    "latest_run",
    "lr_at",
    "make_optimizer",
    "pick_device",
    "resolve_precision",
    "train",
]
