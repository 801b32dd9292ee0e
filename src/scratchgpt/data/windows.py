"""From one token stream to training examples: the sliding window.

A language model learns to predict token t+1 from tokens <= t at every position at once, so a
training example is a window of ``max_length`` ids and its target is the same window shifted
one token to the right (Raschka, "Build a LLM from Scratch", ch. 2.6). Windows start every
``stride`` tokens: stride == max_length tiles the text without overlap, a smaller stride
overlaps windows (more examples, more correlated).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import DataError


class SlidingWindowDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Windows ``ids[s : s + max_length]`` with targets ``ids[s + 1 : s + max_length + 1]``.

    Only whole windows are made: the last target must exist, so a stream of N ids gives
    ``(N - max_length - 1) // stride + 1`` windows and none crosses the end.
    """

    def __init__(self, ids: Sequence[int] | torch.Tensor, *, max_length: int, stride: int) -> None:
        if max_length < 1:
            raise DataError(f"max_length={max_length}: must be >= 1")
        if stride < 1:
            raise DataError(f"stride={stride}: must be >= 1")
        self.ids = torch.as_tensor(ids, dtype=torch.long)
        self.max_length = max_length
        self.stride = stride
        n = self.ids.numel()
        if n < max_length + 1:
            raise DataError(
                f"the text has {n} tokens, too few for one window of {max_length} tokens plus "
                f"its 1-token-shifted target ({max_length + 1} needed): use a longer text or a "
                "smaller context length (--context-length, or a smaller preset)"
            )
        self.starts = range(0, n - max_length, stride)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.starts[i]
        window = self.ids[s : s + self.max_length + 1]
        return window[:-1], window[1:]


def split_ids(ids: Sequence[int], *, train_ratio: float = 0.9) -> tuple[list[int], list[int]]:
    """Split a token stream in two at ``train_ratio``: the first part trains, the rest validates.

    A contiguous split (not a shuffle) keeps validation text unseen: shuffled overlapping
    windows would leak the same tokens into both sides.
    """
    if not 0.0 < train_ratio < 1.0:
        raise DataError(f"train_ratio={train_ratio}: must be strictly between 0 and 1")
    ids = list(ids)
    cut = int(len(ids) * train_ratio)
    return ids[:cut], ids[cut:]


def create_dataloader(
    ids: Sequence[int] | torch.Tensor,
    *,
    max_length: int,
    stride: int | None = None,
    batch_size: int = 8,
    shuffle: bool = True,
    drop_last: bool = True,
    seed: int | None = None,
    num_workers: int = 0,
) -> DataLoader[tuple[torch.Tensor, torch.Tensor]]:
    """A DataLoader of (inputs, targets) batches, each (batch_size, max_length).

    ``stride`` defaults to ``max_length`` (no overlap). ``drop_last`` is ignored when the data
    has fewer windows than one batch: the loader then yields that one short batch rather than
    nothing, because an empty loader fails much later and far less clearly.
    """
    dataset = SlidingWindowDataset(ids, max_length=max_length, stride=stride or max_length)
    if batch_size < 1:
        raise DataError(f"batch_size={batch_size}: must be >= 1")
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last and len(dataset) >= batch_size,
        generator=generator,
        num_workers=num_workers,
    )
