"""When the trainer saves, and a writer that saves in the background.

Two questions the training loop asks about checkpoints, answered here so the loop stays short:

- **When is one due?** :class:`CheckpointSchedule`: every ``checkpoint_interval`` steps
  (when set) and every ``checkpoint_minutes`` of wall-clock time since the last one,
  whichever comes first. The loop adds its own reasons (a new best validation loss, the end,
  a stop). A clock suits runs whose steps take seconds: a step count that is right for a
  small model on a GPU writes a 1.9 GB checkpoint every half-minute for GPT-2 on a CPU.
- **Who writes it?** :class:`CheckpointWriter`: the caller copies the state to CPU memory at
  the step boundary (:func:`~.state.snapshot`) and hands over a function that writes that
  copy; the writer runs it in a background thread while training goes on, the way PyTorch's
  asynchronous distributed checkpointing (``torch.distributed.checkpoint.async_save``) does
  (by default with a GPU only: :func:`writes_in_background`). At most one write is in
  flight: the next save waits for it (and says so), so there are never two copies of the
  state in memory. The write itself is unchanged: a hidden
  directory, fsynced, renamed into place, so a kill during a background write leaves the
  previous checkpoint intact and no half-written one visible.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import distributed
from .runs import prune_checkpoints, step_dir
from .state import write_state
from .task import Task

log = logging.getLogger(__name__)


def _now() -> float:
    """Seconds on a clock that never goes back (tests replace this)."""
    return time.monotonic()


class CheckpointSchedule:
    """Every ``steps`` steps (None: no step interval) or every ``minutes`` of wall-clock
    time since the last save (0: no clock), whichever comes first.

    Processes of one run must agree on when to save (an FSDP save gathers the shards from all
    of them), but their clocks differ: with several, the clock is consulted only every
    ``agree_every`` steps, and it is due for all when it is due for any.
    """

    def __init__(
        self,
        *,
        steps: int | None,
        minutes: float,
        world: distributed.World | None = None,
        device: torch.device | None = None,
        agree_every: int = 1,
    ) -> None:
        self.steps, self.minutes = steps, minutes
        self.world, self.device, self.agree_every = world, device, agree_every
        self.last = _now()

    def due(self, step: int) -> bool:
        """Whether to save after ``step``; every process must call this at every step."""
        if self.steps and step % self.steps == 0:  # a multiple: a resumed run saves there too
            return True
        if not self.minutes:
            return False
        late = _now() - self.last >= 60 * self.minutes
        if self.world is None or not self.world.distributed:
            return late
        if step % self.agree_every:
            return False
        assert self.device is not None
        return distributed.any_true(late, self.world, self.device)

    def saved(self) -> None:
        """A checkpoint was taken now (or the run started): the clock starts over."""
        self.last = _now()


def writes_in_background(setting: bool | None, device: torch.device) -> bool:
    """Whether to write in the background: as set, or (None) when training on an
    accelerator. A CPU run keeps every core busy, so there the write's own work (copying the
    state into the page cache) slows the steps it overlaps by about what it would have cost
    in the loop, and the snapshot costs the state's size again in memory: measured on a 2-core
    VM, a GPT-2-sized checkpoint cost the same wall time either way. With a GPU the host's
    cores are idle while it computes."""
    return setting if setting is not None else device.type != "cpu"


class CheckpointWriter:
    """Runs checkpoint writes one at a time: in a background thread (``background``; None:
    :func:`writes_in_background` on ``device``) or inline. A background write's error is
    raised on the training thread at the next :meth:`check`, :meth:`submit` or :meth:`wait`."""

    def __init__(self, *, background: bool | None, device: torch.device | None = None) -> None:
        self.background = writes_in_background(background, device or torch.device("cpu"))
        self.landed: tuple[int, Path] | None = None  # the newest checkpoint on disk
        self.in_flight: tuple[int, Path] | None = None  # the one being written
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def newest(self) -> Path | None:
        """The checkpoint being written, else the newest on disk: the one a run that stops
        now ends with (stopping waits for the write)."""
        current = self.in_flight or self.landed
        return current[1] if current else None

    @property
    def unlanded(self) -> tuple[int, Path] | None:
        """The checkpoint submitted but not (yet) on disk: what quitting now abandons."""
        pending, landed = self.in_flight, self.landed
        if pending is None or (landed is not None and landed[0] == pending[0]):
            return None
        return pending

    @contextlib.contextmanager
    def landing(self) -> Iterator[None]:
        """Around a run: the write in flight lands before the run returns or raises, so
        nothing is lost; except on ``KeyboardInterrupt`` (a third stop signal: quit at once).
        A failed write raises, unless another error is on its way out already."""
        try:
            yield
        except KeyboardInterrupt:
            raise
        except BaseException:
            with contextlib.suppress(Exception):  # logged by wait(); the first error wins
                self.wait()
            raise
        self.wait()

    def submit(self, step: int, directory: Path, write: Callable[[], Path]) -> None:
        """Write the checkpoint of ``step`` into ``directory`` with ``write()`` (which returns
        where it landed). Waits first for a write still in flight."""
        self.wait(before=step)
        self.in_flight = (step, directory)
        if not self.background:
            self._write(step, write)
            self._finish()
            return
        # A daemon thread: a run told to quit at once (a third Ctrl-C) does not wait for it;
        # the hidden directory it leaves is removed when the run resumes.
        self._thread = threading.Thread(
            target=self._write, args=(step, write), name=f"checkpoint-{step}", daemon=True
        )
        self._thread.start()

    def _write(self, step: int, write: Callable[[], Path]) -> None:
        try:
            self.landed = (step, write())
        except BaseException as exc:  # raised on the training thread, not lost in this one
            self._error = exc

    def check(self) -> None:
        """Raise the error of a background write that failed; never waits."""
        if self._thread is not None and not self._thread.is_alive():
            self.wait()

    def wait(self, *, before: int | None = None) -> None:
        """Block until the write in flight has landed; raise its error if it failed.
        ``before``: the step about to be saved, named in the log line when it must wait."""
        if self._thread is not None:
            if self._thread.is_alive() and before is not None and self.in_flight:
                log.info(
                    "the checkpoint of step %d is still being written: saving step %d waits "
                    "for it (writes take longer than the time between checkpoints)",
                    self.in_flight[0],
                    before,
                )
            start = _now()
            self._thread.join()
            self._thread = None
            if before is not None:
                log.debug("waited %.1f s for the checkpoint write", _now() - start)
        self._finish()

    def _finish(self) -> None:
        step = self.in_flight[0] if self.in_flight else None
        self.in_flight = None
        error, self._error = self._error, None
        if error is not None:
            if self.background:  # raised steps later: say which write it was
                log.error("writing the checkpoint of step %s failed: %s", step, error)
            raise error


def write_checkpoint(
    task: Task,
    model: nn.Module,
    run_dir: Path,
    step: int,
    *,
    weights: dict[str, torch.Tensor] | None,
    state: dict[str, Any],
    metadata: dict[str, Any],
    keep_last: int,
    best_step: int | None,
) -> Path:
    """Write the checkpoint of ``step`` into ``run_dir``: ``task``'s files for ``model``
    (``weights`` in its place where given: a snapshot, or FSDP's gathered state) and the
    training ``state``; then prune the old checkpoints, once the new one has landed. On the
    writer's thread ``model`` is read for its structure and config only, never its tensors."""
    path = task.save(
        step_dir(run_dir, step),
        model,
        weights=weights,
        metadata=metadata,
        extra=lambda tmp: write_state(tmp, state),
    )
    prune_checkpoints(run_dir, keep_last=keep_last, best_step=best_step)
    return path
