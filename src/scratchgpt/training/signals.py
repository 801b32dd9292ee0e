"""Stopping a run on SIGINT (Ctrl-C) or SIGTERM without losing work.

A run asked to stop should end with a checkpoint a ``--resume`` continues from, and should
end soon: nobody waits eight minutes for an evaluation to finish after pressing Ctrl-C. So:

1. the first signal stops the run after the current optimiser step; an evaluation in
   progress is abandoned between two batches. The run saves and returns as interrupted;
2. a second signal stops it at the next safe point: between two micro-batches (the step in
   progress is abandoned and its gradients dropped) or two evaluation batches, never inside
   an optimiser step or a checkpoint write. The last completed step is still saved;
3. a third signal quits at once (``KeyboardInterrupt``), after saying exactly which steps
   are lost and where the last checkpoint is: for a run stuck where no safe point comes.

Only the main thread may install signal handlers; elsewhere (a run started from a worker
thread) this does nothing and signals keep their usual meaning.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)


class StopSignals:
    """Counts SIGINT / SIGTERM while installed (a context manager); the trainer polls
    :attr:`received` and :attr:`urgent` at its safe points. ``lost()`` describes what quitting
    now would lose (said on the third signal)."""

    def __init__(self, *, lost: Callable[[], str]) -> None:
        self.received: str | None = None  # the first signal's name
        self.count = 0
        self._lost = lost
        self._old: dict[int, Any] = {}

    @property
    def urgent(self) -> bool:
        """Asked twice: stop at the next safe point, even inside a step."""
        return self.count >= 2

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        self.count += 1
        if self.count == 1:
            self.received = name
            log.warning(
                "%s received: saving a checkpoint after this step and stopping (again: stop "
                "sooner, at the next batch)",
                name,
            )
        elif self.count == 2:
            log.warning(
                "%s again: stopping at the next batch and saving the last completed step "
                "(a third time: quit without saving)",
                name,
            )
        else:
            log.error("%s a third time: quitting without saving. %s", name, self._lost())
            raise KeyboardInterrupt

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()
