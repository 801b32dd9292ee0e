import pytest
import torch

from scratchgpt.data import (
    DataError,
    SlidingWindowDataset,
    create_dataloader,
    load_text,
    pydocs_text,
    split_ids,
)


def test_windows_stride_and_targets():
    ids = list(range(20))
    ds = SlidingWindowDataset(ids, max_length=4, stride=3)
    # starts 0, 3, ..., 15: the last window's target ends at id 19, the last id
    assert len(ds) == 6
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.tolist() == list(range(3 * i, 3 * i + 4))
        assert torch.equal(y, x + 1)  # targets are the inputs shifted by one
    assert ds[len(ds) - 1][1][-1].item() == 19  # no window crosses the end


@pytest.mark.parametrize(("n", "max_length", "stride"), [(5, 4, 1), (100, 7, 7), (64, 8, 3)])
def test_window_count(n, max_length, stride):
    ds = SlidingWindowDataset(list(range(n)), max_length=max_length, stride=stride)
    assert len(ds) == (n - max_length - 1) // stride + 1
    assert all(ds[i][1][-1].item() < n for i in range(len(ds)))


def test_too_short_text_gives_counts():
    with pytest.raises(DataError, match=r"has 4 tokens.*window of 4 tokens.*5 needed"):
        SlidingWindowDataset([1, 2, 3, 4], max_length=4, stride=4)


def test_loader_batches_and_never_empty():
    loader = create_dataloader(list(range(1000)), max_length=16, batch_size=8, seed=0)
    x, y = next(iter(loader))
    assert x.shape == y.shape == (8, 16)
    few = create_dataloader(list(range(40)), max_length=16, batch_size=8)  # 2 windows < 1 batch
    batches = list(few)
    assert len(batches) == 1 and batches[0][0].shape == (2, 16)


def test_loader_is_seeded():
    a = [x.tolist() for x, _ in create_dataloader(list(range(500)), max_length=8, seed=3)]
    b = [x.tolist() for x, _ in create_dataloader(list(range(500)), max_length=8, seed=3)]
    c = [x.tolist() for x, _ in create_dataloader(list(range(500)), max_length=8, seed=4)]
    assert a == b and a != c


def test_split_ids():
    train, val = split_ids(list(range(100)), train_ratio=0.9)
    assert train == list(range(90)) and val == list(range(90, 100))
    with pytest.raises(DataError, match=r"train_ratio=1\.0"):
        split_ids([1, 2], train_ratio=1.0)


def test_pydocs_corpus_is_real_and_stable():
    text = pydocs_text()
    assert len(text) > 300_000
    assert "lambda" in text and "exception" in text
    assert load_text("pydocs") == text


def test_load_text_errors(tmp_path):
    with pytest.raises(DataError, match="neither a named corpus"):
        load_text(tmp_path / "nope.txt")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"hello \xff world")
    with pytest.raises(DataError, match=r"not UTF-8.*offset 6"):
        load_text(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    with pytest.raises(DataError, match="empty"):
        load_text(empty)
    with pytest.raises(DataError, match="directory"):
        load_text(tmp_path)
