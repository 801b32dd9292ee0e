"""What differs between kinds of training: the small object the :class:`Trainer` is handed.

The trainer owns everything every run needs (the device, precision, wrapping the model for
activation checkpointing, FSDP, compilation and DDP, the optimiser and schedule, gradient
accumulation and clipping, metrics, checkpoints, resume, signals). A task owns what is
particular to one kind of model: which model, which batches, which loss, which metrics,
what a checkpoint holds beside the weights. Language modelling (:mod:`.lm`) and text
classification (:mod:`.classify`) are two tasks over one loop, so both get its guarantees:
exact resume, atomic checkpoints, keep-last-K + best, a clean stop on SIGINT.

Two rules make resume exact, and every task keeps them:

- a training batch is a pure function of its number (``batch(i)`` is always the same), so
  the data position a checkpoint stores is one integer;
- an evaluation reads the same batches every time, so its results are comparable.

A batch is a tuple of CPU tensors whose **last element holds the targets**: the trainer
moves the tuple to the device and counts the targets' elements as what the run has "seen"
(tokens for a language model, examples for a classifier).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from ..config import TrainConfig

Batch = tuple[torch.Tensor, ...]
# The trainer's evaluation loop, handed to Task.evaluate: it moves each batch to the device,
# advances the progress bar, and stops the evaluation (raising EvaluationStopped) when the
# run is asked to stop.
Feed = Callable[[Iterable[Batch]], Iterator[Batch]]


class EvaluationStopped(Exception):  # noqa: N818 (control flow, not an error)
    """Raised out of :meth:`Task.evaluate` (by its feed) when a stop signal arrives: the
    estimate is abandoned, and the run saves its last completed step."""


class Task(Protocol):
    """A kind of training, as the trainer sees it. Implementations: ``LanguageModelTask``,
    ``ClassificationTask``."""

    unit: str
    """What a batch's targets count, in metrics rows: "tokens" or "examples"."""
    batches_per_epoch: int
    """Training batches in one pass over the data (``training.epochs`` -> steps)."""
    eval_size: int
    """Batches one evaluation reads, all splits together (the progress bar's length)."""
    flops_per_unit: float | None
    """Training FLOPs per unit, for MFU; None where unknown (MFU is then not reported)."""

    def build_model(self) -> nn.Module:
        """The raw model to train (called once, after the trainer seeds the RNGs)."""
        ...

    def batch(self, index: int) -> Batch:
        """Training micro-batch number ``index``, on the CPU: a pure function of ``index``."""
        ...

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The mean training loss of ``batch`` (on the device) under ``model`` (perhaps a
        compiled or DDP wrapper of the raw model); ``training.compile`` compiles this."""
        ...

    def evaluate(self, model: nn.Module, feed: Feed) -> dict[str, float]:
        """Metrics of ``model`` on the fixed evaluation batches: ``val_loss`` always, more as
        the task has them (``val_acc``, ``eval_train_loss``, ...). Every batch goes through
        ``feed``; the trainer has already set eval mode, no_grad and autocast."""
        ...

    def sample(self, model: nn.Module, generator: torch.Generator) -> str | None:
        """A text showing what the model does now, for the log (None: this task has none).
        With FSDP every process calls it; only process 0's text is logged."""
        ...

    def save(
        self,
        directory: Path,
        model: nn.Module,
        *,
        weights: dict[str, torch.Tensor] | None,
        metadata: dict[str, Any],
        extra: Callable[[Path], None],
    ) -> Path:
        """Write a checkpoint of ``model`` (or ``weights``, gathered from FSDP shards or a
        snapshot) with what it needs beside the weights (a tokenizer, labels), atomically;
        ``extra(tmp)`` adds the trainer's state files before the directory is moved into
        place. With ``weights`` given this may run on a background thread while training
        goes on: read ``model`` for its structure and config only, never its tensors."""
        ...

    def load(self, checkpoint: Path) -> dict[str, torch.Tensor]:
        """The weights :meth:`save` wrote, as a state dict of :meth:`build_model`'s model;
        an error if that checkpoint holds another model than this run's."""
        ...

    def describe(self) -> str:
        """One line about the data, for the log at the start."""
        ...

    def hints(self, run_dir: Path) -> tuple[str, str]:
        """Two commands for the summary: how to use the trained model, and how to resume."""
        ...


class RunSpec(Protocol):
    """A run's whole config (:class:`~scratchgpt.config.RunConfig`, a classifier's): the
    trainer reads its training section and saves it in the run directory."""

    @property
    def training(self) -> TrainConfig: ...

    def to_dict(self) -> dict[str, Any]: ...

    def to_yaml(self) -> str: ...
