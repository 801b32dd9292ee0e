"""Run directories: where a run's files go, which checkpoints it keeps, which run is latest.

::

    RUN/config.yaml        the effective config (every field explicit): --resume reads it
    RUN/metrics.jsonl      one JSON row per log interval (val_loss on evaluation rows)
    RUN/train.log          the log
    RUN/checkpoints/step-00000800/  weights + what the task saves beside them + training state
    RUN/checkpoints/best -> step-...  the best by validation loss
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..checkpoint import (
    RUNS_DIR,
    STEP_PREFIX,
    run_checkpoints,
)
from ..files import point_symlink, remove_tree

CONFIG_FILE = "config.yaml"


def new_run_dir(root: Path = RUNS_DIR) -> Path:
    """A fresh run directory named by the start time."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path, n = root / stamp, 1
    while path.exists():
        n += 1
        path = root / f"{stamp}-{n}"
    return path


def step_dir(run_dir: Path, step: int) -> Path:
    """Where the checkpoint of ``step`` goes (zero-padded, so names sort by step)."""
    return run_dir / "checkpoints" / f"{STEP_PREFIX}{step:08d}"


def remove_stale_saves(run_dir: Path) -> None:
    """Delete the hidden temporary directories of saves a kill cut short."""
    for stale in (run_dir / "checkpoints").glob(f".{STEP_PREFIX}*"):
        remove_tree(stale)


def prune_checkpoints(run_dir: Path, *, keep_last: int, best_step: int | None) -> None:
    """Delete old checkpoints: keep the newest ``keep_last`` and the best one (linked as
    ``checkpoints/best``)."""
    steps = run_checkpoints(run_dir, format=None)
    keep = {s for s, _ in steps[-keep_last:]}
    if best_step is not None:
        keep.add(best_step)
        point_symlink(run_dir / "checkpoints" / "best", step_dir(run_dir, best_step).name)
    for s, path in steps:
        if s not in keep:
            remove_tree(path)


@dataclass
class TrainResult:
    """What a run produced: where it is, this session's metrics rows, and how it ended."""

    run_dir: Path
    checkpoint: Path
    history: list[dict[str, Any]]
    steps: int  # the step the run reached
    max_steps: int = 0
    interrupted: bool = False
    stopped_early: bool = False
    best_checkpoint: Path | None = None
    start_step: int = 0  # where this session started (a resumed checkpoint's step)
    start_val_loss: float | None = None  # the resumed checkpoint's validation loss
    use_hint: str = ""  # e.g. "generate with: scratchgpt generate --checkpoint RUN ..."
    resume_command: str = ""

    @property
    def evaluations(self) -> list[dict[str, Any]]:
        """The rows that carry a validation loss."""
        return [row for row in self.history if "val_loss" in row]

    @property
    def final_val_loss(self) -> float:
        return self.evaluations[-1]["val_loss"]

    def summary(self) -> str:
        """What this session did, and what to do next (what ``scratchgpt train`` prints)."""
        vals = [row["val_loss"] for row in self.evaluations]
        if self.start_step and self.start_val_loss is not None:
            vals.insert(0, self.start_val_loss)
        first, last = (vals[0], vals[-1]) if vals else (math.nan, math.nan)
        how = (
            ", interrupted" if self.interrupted else ", stopped early" if self.stopped_early else ""
        )
        lines = [
            f"trained {self.steps - self.start_step} steps (from step {self.start_step} to "
            f"{self.steps}{how}): val loss {first:.3f} -> {last:.3f}",
            f"checkpoint: {self.checkpoint}",
        ]
        if self.best_checkpoint:
            lines.append(f"best: {self.best_checkpoint}")
        if self.use_hint:
            lines.append(self.use_hint)
        if self.resume_command and (self.interrupted or self.steps < self.max_steps):
            lines.append(f"resume with: {self.resume_command}")
        return "\n".join(lines)
