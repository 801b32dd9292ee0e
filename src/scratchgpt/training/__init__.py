"""Training: the optimiser and schedule, the resumable loop, metrics, distributed setup."""

from ..config import RunConfig, TrainConfig
from ..errors import TrainingError
from .optim import lr_at, make_optimizer
from .trainer import TrainResult, evaluate, latest_run, train

__all__ = [
    "RunConfig",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "evaluate",
    "latest_run",
    "lr_at",
    "make_optimizer",
    "train",
]
