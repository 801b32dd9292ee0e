"""Tokenizing on every core: batches of text out to worker processes, token bytes back in order.

:func:`scratchgpt.data.prepare` reads a corpus as numbered batches of about a megabyte of
text; this module turns them into token bytes per split, in a pool of processes when there
is more than one batch, and in this process otherwise. The batch number is what makes an
interrupted run resumable: ``prepare`` restarts at the first batch whose tokens are not on
disk yet.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from pathlib import Path

import numpy as np

from ..tokenizers import Tokenizer, load_tokenizer

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val")
Batch = list[tuple[int, str, bool]]  # (split index, text, starts a document after another)


def cpu_count() -> int:
    """Cores this process may use (its affinity mask, where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def encode_batch(
    tokenizer: Tokenizer, dtype: str, separator: Sequence[int], batch: Batch
) -> tuple[bytes, ...]:
    """The token bytes of one batch, per split; the separator goes before each document but
    the first of its split."""
    parts: tuple[list[np.ndarray], ...] = tuple([] for _ in SPLITS)
    sep = np.asarray(separator, dtype=dtype)
    for split, text, separate in batch:
        if separate:
            parts[split].append(sep)
        parts[split].append(np.asarray(tokenizer.encode(text), dtype=dtype))
    return tuple(np.concatenate(p).tobytes() if p else b"" for p in parts)


# The encoder of a worker process, built once from the saved tokenizer by _init_worker.
_worker_encode: Callable[[Batch], tuple[bytes, ...]] | None = None


def _init_worker(tokenizer_dir: str, dtype: str, separator: list[int]) -> None:
    global _worker_encode
    # Ctrl-C reaches the whole process group: let the main process alone handle it (it drops
    # the unfinished shard and stops the pool), rather than every worker printing a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_encode = partial(encode_batch, load_tokenizer(tokenizer_dir), dtype, separator)


def _encode_in_worker(batch: Batch) -> tuple[bytes, ...]:
    assert _worker_encode is not None, "the worker was not initialised"
    return _worker_encode(batch)


def encode_all(
    batches: Iterator[Batch],
    first: int,
    workers: int,
    tokenizer: Tokenizer,
    tokenizer_dir: Path,
    dtype: str,
    separator: list[int],
) -> Iterator[tuple[int, tuple[bytes, ...]]]:
    """(batch number, token bytes per split) for every batch from number ``first`` on, in order.

    With several workers the batches go to a process pool a few at a time and come back in
    submission order (like ``Pool.imap``, but ``imap`` would read the whole corpus into its
    task queue ahead of the workers). Workers rebuild the tokenizer from its saved files and
    are started with "spawn": forking a process that may hold threads (PyTorch, datasets'
    streaming) can deadlock. A pool whose workers cannot start (spawn re-imports the main
    script, which fails for code typed into ``python -``) falls back to this process.
    """
    todo: Iterator[tuple[int, Batch]] = ((n, b) for n, b in enumerate(batches) if n >= first)
    head = list(itertools.islice(todo, 2))  # one batch of work is not worth starting a pool
    todo = itertools.chain(head, todo)
    many = workers > 1 and len(head) > 1
    pool = _start_pool(workers, tokenizer_dir, dtype, separator) if many else None
    if pool is None:
        encode = partial(encode_batch, tokenizer, dtype, separator)
        for n, batch in todo:
            yield n, encode(batch)
        return
    with pool:
        pending: deque[tuple[int, Future[tuple[bytes, ...]]]] = deque()
        try:
            for n, batch in todo:
                pending.append((n, pool.submit(_encode_in_worker, batch)))
                if len(pending) > 2 * workers:
                    m, result = pending.popleft()
                    yield m, result.result()
            while pending:
                m, result = pending.popleft()
                yield m, result.result()
        finally:  # an error or Ctrl-C: drop the queued work instead of finishing it
            for _, result in pending:
                result.cancel()


def _start_pool(
    workers: int, tokenizer_dir: Path, dtype: str, separator: list[int]
) -> ProcessPoolExecutor | None:
    """A pool of ``workers`` started processes with the tokenizer loaded, or None if they fail."""
    context = multiprocessing.get_context("spawn")
    init = (str(tokenizer_dir), dtype, separator)
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=init)
    try:
        # The pool starts a process per task submitted while none is idle: ask all at once so
        # they start together, and wait for them (this raises if a worker cannot start).
        for started in [pool.submit(_encode_in_worker, []) for _ in range(workers)]:
            started.result()
    except BrokenProcessPool as exc:
        pool.shutdown(cancel_futures=True)
        log.warning(
            "could not start %d worker processes (%s); tokenizing in this process instead. "
            "Run from a script file or a module, not code typed into 'python -', to use "
            "every core",
            workers,
            exc,
        )
        return None
    return pool


def progress_bar(
    encoded: Iterator[tuple[int, tuple[bytes, ...]]], itemsize: int
) -> Iterator[tuple[int, tuple[bytes, ...]]]:
    """Pass the results through, counting tokens on a progress bar (tokens/s) in a terminal."""
    from tqdm.auto import tqdm

    with tqdm(unit="tok", unit_scale=True, desc="prepare", disable=None) as bar:
        for item in encoded:
            bar.update(sum(map(len, item[1])) // itemsize)
            yield item
