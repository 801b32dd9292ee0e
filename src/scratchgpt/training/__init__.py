"""Training: the optimiser and schedule, and the loop that turns a text into a checkpoint."""

from .optim import lr_at, make_optimizer
from .trainer import TrainConfig, TrainResult, evaluate, latest_run, pick_device, train

__all__ = [
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "latest_run",
    "lr_at",
    "make_optimizer",
    "pick_device",
    "train",
]
