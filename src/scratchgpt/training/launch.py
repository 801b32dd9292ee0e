"""Starting a run, whatever its task: the device, the process group, which checkpoint to
resume, then the :class:`~.trainer.Trainer`. :func:`scratchgpt.train` (a GPT) and
:func:`scratchgpt.train_classifier` both start here, so they resume, restart and stop alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch

from ..checkpoint import CheckpointError, run_checkpoints
from ..device import pick_device
from . import distributed
from .runs import CONFIG_FILE, TrainResult
from .task import RunSpec, Task
from .trainer import Trainer

log = logging.getLogger(__name__)

# Builds the task, given the checkpoint it resumes from (None: a fresh start) and the device;
# returns it with the effective run config (what the data fixed: vocabulary, labels).
TaskFactory = Callable[[Path | None, torch.device], tuple[Task, RunSpec]]


def saved_config(run_dir: Path) -> Path:
    """``RUN/config.yaml``, which ``--resume`` continues with; an error if it is missing."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(
            f"cannot resume {str(run_dir)!r}: it has no {CONFIG_FILE} (is it a run directory "
            "made by scratchgpt train or scratchgpt classify train?)"
        )
    return path


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint a resume continues from; None for a run killed before its first (it
    starts over from step 0 with its config.yaml)."""
    steps = run_checkpoints(run_dir, format=None, strict=True)
    if steps:
        return steps[-1][1]
    log.warning(
        "%s has no complete checkpoint (it stopped before its first): starting it over from "
        "step 0 with its %s",
        run_dir,
        CONFIG_FILE,
    )
    return None


def launch(
    run: RunSpec,
    make_task: TaskFactory,
    *,
    run_dir: Path,
    resume: bool = False,
    stop_at: int | None = None,
) -> tuple[TrainResult, Task]:
    """Train ``make_task``'s task into ``run_dir`` (continuing it with ``resume``); returns
    the result and the task."""
    device = pick_device(run.training.device)
    world = distributed.setup(device.type)
    if world.distributed and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    try:
        resume_from = latest_checkpoint(run_dir) if resume else None
        task, effective = make_task(resume_from, device)
        trainer = Trainer(
            task,
            effective,
            run_dir=run_dir,
            device=device,
            world=world,
            resume_from=resume_from,
            restart=resume and resume_from is None,
            stop_at=stop_at,
        )
        return trainer.run(), task
    finally:
        distributed.teardown(world)
