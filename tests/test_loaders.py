"""Window loaders: batches addressed by number, shifted targets, nothing past a shard's end."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from scratchgpt.data import DataError, RandomWindows, SequentialWindows


def shards_of(lengths: list[int]) -> list[np.ndarray]:
    """Shards whose tokens encode (shard, position), so a window says where it came from."""
    return [np.arange(n, dtype=np.int64) + 1000 * i for i, n in enumerate(lengths)]


def check_batch(x: torch.Tensor, y: torch.Tensor, lengths: list[int], T: int) -> None:  # noqa: N803
    assert x.shape == y.shape and x.shape[1] == T and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one
    for row_x, row_y in zip(x, y, strict=True):
        shard = int(row_x[0]) // 1000
        start = int(row_x[0]) % 1000
        assert start + T < lengths[shard]  # the last target exists: no crossing the end
        expected = torch.arange(start, start + T + 1) + 1000 * shard
        assert torch.equal(row_x, expected[:-1]) and torch.equal(row_y, expected[1:])


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(2, 300), min_size=1, max_size=4),
    T=st.integers(1, 40),
    B=st.integers(1, 6),
    index=st.integers(0, 10_000),
)
def test_random_windows_stay_inside_their_shard(lengths, T, B, index):  # noqa: N803
    if all(n <= T for n in lengths):
        with pytest.raises(DataError, match="no shard holds one window"):
            RandomWindows(shards_of(lengths), batch_size=B, context_length=T)
        return
    loader = RandomWindows(shards_of(lengths), batch_size=B, context_length=T, seed=3)
    x, y = loader.batch(index)
    assert x.shape[0] == B
    check_batch(x, y, lengths, T)


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(2, 300), min_size=1, max_size=4),
    T=st.integers(1, 40),
    stride=st.integers(1, 50),
    B=st.integers(1, 6),
)
def test_sequential_windows_cover_each_window_once_per_epoch(lengths, T, stride, B):  # noqa: N803
    if all(n <= T for n in lengths):
        with pytest.raises(DataError, match="too few for one window"):
            SequentialWindows(shards_of(lengths), batch_size=B, context_length=T)
        return
    loader = SequentialWindows(
        shards_of(lengths), batch_size=B, context_length=T, stride=stride, seed=1
    )
    expected = {
        1000 * i + s for i, n in enumerate(lengths) for s in range(0, max(0, n - T), stride)
    }
    assert loader.num_windows == len(expected)
    seen = []
    for i in range(loader.batches_per_epoch):
        x, y = loader.batch(i)
        check_batch(x, y, lengths, T)
        seen.extend(int(v) for v in x[:, 0])
    assert len(seen) == len(set(seen))  # no window twice in an epoch
    assert set(seen) <= expected
    assert len(expected) - len(seen) < B or len(expected) < B  # only the last partial dropped


def test_same_number_same_batch_any_order():
    data = np.arange(5000)
    for cls, kw in ((SequentialWindows, {"stride": 7}), (RandomWindows, {})):
        a = cls(data, batch_size=4, context_length=16, seed=11, **kw)
        b = cls(data, batch_size=4, context_length=16, seed=11, **kw)
        forward = [a.batch(i) for i in range(30)]
        # "resuming" at position 17: a fresh loader asked for batch 17 on gives the same
        for i in [*range(17, 30), 3, 0]:
            assert torch.equal(b.batch(i)[0], forward[i][0])
        other = cls(data, batch_size=4, context_length=16, seed=12, **kw)
        assert not torch.equal(other.batch(0)[0], forward[0][0])  # the seed matters


def test_sequential_reshuffles_each_epoch_and_can_keep_order():
    loader = SequentialWindows(np.arange(1000), batch_size=5, context_length=10, seed=0)
    per_epoch = loader.batches_per_epoch
    assert not torch.equal(loader.batch(0)[0], loader.batch(per_epoch)[0])
    fixed = SequentialWindows(np.arange(1000), batch_size=5, context_length=10, shuffle=False)
    assert fixed.batch(0)[0][:, 0].tolist() == [0, 10, 20, 30, 40]
    assert torch.equal(fixed.batch(0)[0], fixed.batch(fixed.batches_per_epoch)[0])


def test_short_text_gives_one_short_batch():
    loader = SequentialWindows(np.arange(30), batch_size=8, context_length=10)
    x, _ = loader.batch(0)
    assert loader.batches_per_epoch == 1 and x.shape == (2, 10)  # windows at 0 and 10


def test_memmapped_uint16_shards(tmp_path):
    path = tmp_path / "shard.bin"
    np.arange(2000, dtype=np.uint16).tofile(path)
    shard = np.memmap(path, dtype=np.uint16, mode="r")
    x, y = RandomWindows([shard], batch_size=3, context_length=32, seed=0).batch(5)
    assert x.dtype == torch.long and torch.equal(x[:, 1:], y[:, :-1])
