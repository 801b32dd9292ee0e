"""Batches of training windows, addressed by number: ``loader.batch(i)`` is always the same.

A training run that stops and resumes must see exactly the batches it would have seen, and
DDP processes must split one stream of micro-batches between them without talking. Both are
easy when a batch is a pure function of (seed, batch number): the data position a checkpoint
stores is then one integer, and process r of W simply asks for its own numbers. So neither
loader keeps an iterator's hidden state.

- :class:`SequentialWindows`: every window of the token stream (the book's sliding window,
  Raschka ch. 2.6), in a fresh random order each epoch. For small and medium texts, where
  each window should be seen once per epoch.
- :class:`RandomWindows`: windows at uniformly random offsets (nanoGPT's sampler). For large
  prepared corpora, where an epoch is longer than the run and a full permutation would not fit
  in memory.

Both read from one or more 1-D token arrays ("shards": lists, tensors, NumPy arrays or
memory-maps). A window never crosses the end of its shard, and the targets are the inputs
shifted one token to the right. Shapes: B batch_size, T context_length.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

from ..errors import DataError

TokenArray = np.ndarray | torch.Tensor | Sequence[int]


class WindowLoader(Protocol):
    """What the trainer needs from a loader."""

    batch_size: int
    context_length: int

    def batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch number ``index``: inputs and targets, both (B, T) int64."""
        ...


def _as_arrays(shards: TokenArray | Sequence[TokenArray]) -> list[np.ndarray]:
    """One or several token arrays as a list of 1-D NumPy arrays (memory-maps stay maps)."""
    if isinstance(shards, (np.ndarray, torch.Tensor)) or (
        isinstance(shards, Sequence) and (not shards or isinstance(shards[0], (int, np.integer)))
    ):
        shards = [shards]  # type: ignore[list-item]
    arrays = []
    for shard in shards:  # type: ignore[union-attr]
        if isinstance(shard, torch.Tensor):
            shard = shard.numpy()
        array = shard if isinstance(shard, np.ndarray) else np.asarray(shard, dtype=np.int64)
        if array.ndim != 1:
            raise DataError(f"token arrays must be 1-D, got shape {array.shape}")
        arrays.append(array)
    return arrays


def _gather(
    arrays: list[np.ndarray], shard_ids: np.ndarray, starts: np.ndarray, length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows of ``length + 1`` tokens -> (inputs, targets), each (B, length) int64."""
    rows = np.stack(
        [
            arrays[s][o : o + length + 1].astype(np.int64)
            for s, o in zip(shard_ids, starts, strict=True)
        ]
    )  # (B, T + 1)
    window = torch.from_numpy(rows)
    return window[:, :-1], window[:, 1:]  # (B, T), (B, T) shifted by one


class SequentialWindows:
    """Every window ``ids[s : s + T]`` with s = 0, stride, 2*stride, ...; shuffled per epoch.

    Epoch e's order is a permutation drawn from (seed, e), so batch i is fixed by its number.
    A text with fewer windows than one batch gives one short batch per epoch rather than none.
    """

    def __init__(
        self,
        shards: TokenArray | Sequence[TokenArray],
        *,
        batch_size: int,
        context_length: int,
        stride: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        if batch_size < 1 or context_length < 1:
            raise DataError(
                f"batch_size={batch_size}, context_length={context_length}: both must be >= 1"
            )
        stride = stride or context_length
        if stride < 1:
            raise DataError(f"stride={stride}: must be >= 1")
        self.arrays = _as_arrays(shards)
        self.batch_size, self.context_length, self.stride = batch_size, context_length, stride
        self.shuffle, self.seed = shuffle, seed
        # Whole windows only: the last target token must exist, so s + T < len(shard).
        per_shard = [np.arange(0, max(0, len(a) - context_length), stride) for a in self.arrays]
        self.starts = np.concatenate(per_shard) if per_shard else np.zeros(0, dtype=np.int64)
        self.shard_ids = np.concatenate(
            [np.full(len(p), i) for i, p in enumerate(per_shard)]
        ).astype(np.int64)
        if len(self.starts) == 0:
            n = sum(len(a) for a in self.arrays)
            raise DataError(
                f"the text has {n} tokens, too few for one window of {context_length} tokens "
                f"plus its 1-token-shifted target ({context_length + 1} needed): use a longer "
                "text or a smaller context length"
            )
        self._order: tuple[int, np.ndarray] | None = None

    @property
    def num_windows(self) -> int:
        return len(self.starts)

    @property
    def batches_per_epoch(self) -> int:
        """Full batches per pass (the incomplete last one is dropped), at least one."""
        return max(1, self.num_windows // self.batch_size)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if self._order is None or self._order[0] != epoch:
            order = (
                np.random.default_rng([self.seed, epoch]).permutation(self.num_windows)
                if self.shuffle
                else np.arange(self.num_windows)
            )
            self._order = (epoch, order)
        return self._order[1]

    def batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, i = divmod(index, self.batches_per_epoch)
        chosen = self._epoch_order(epoch)[i * self.batch_size : (i + 1) * self.batch_size]
        return _gather(
            self.arrays, self.shard_ids[chosen], self.starts[chosen], self.context_length
        )


class RandomWindows:
    """Windows at offsets drawn uniformly over all shards, from (seed, batch number).

    Every valid start of every shard is equally likely, so a shard twice as long is sampled
    twice as often and no window crosses a shard's end.
    """

    def __init__(
        self,
        shards: TokenArray | Sequence[TokenArray],
        *,
        batch_size: int,
        context_length: int,
        seed: int = 0,
    ) -> None:
        if batch_size < 1 or context_length < 1:
            raise DataError(
                f"batch_size={batch_size}, context_length={context_length}: both must be >= 1"
            )
        self.arrays = _as_arrays(shards)
        self.batch_size, self.context_length, self.seed = batch_size, context_length, seed
        counts = np.array([max(0, len(a) - context_length) for a in self.arrays], dtype=np.int64)
        if counts.sum() == 0:
            longest = max((len(a) for a in self.arrays), default=0)
            raise DataError(
                f"no shard holds one window of {context_length} tokens plus its target (the "
                f"longest has {longest}): use more data or a smaller context length"
            )
        self.ends = np.cumsum(counts)  # valid starts of shards 0..k, in all

    @property
    def num_windows(self) -> int:
        """Distinct non-overlapping windows: what one epoch of this data means."""
        return int(sum(len(a) - 1 for a in self.arrays) // self.context_length)

    @property
    def batches_per_epoch(self) -> int:
        return max(1, self.num_windows // self.batch_size)

    def batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        flat = rng.integers(0, int(self.ends[-1]), size=self.batch_size)
        shard_ids = np.searchsorted(self.ends, flat, side="right")
        starts = flat - np.concatenate([[0], self.ends[:-1]])[shard_ids]
        return _gather(self.arrays, shard_ids, starts, self.context_length)
