"""Training: one loop (:class:`Trainer`) over tasks (language modelling, classification),
the optimiser and schedule, metrics, checkpoints of runs, distributed setup."""

from ..checkpoint import latest_run
from ..config import RunConfig, TrainConfig
from ..errors import TrainingError
from .lm import LanguageModelTask, evaluate, train
from .optim import lr_at, make_optimizer
from .task import Task
from .trainer import Trainer, TrainResult, TrainState

__all__ = [
    "LanguageModelTask",
    "RunConfig",
    "Task",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "Trainer",
    "TrainingError",
    "evaluate",
    "latest_run",
    "lr_at",
    "make_optimizer",
    "train",
]
