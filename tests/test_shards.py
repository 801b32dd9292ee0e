"""prepare() -> token shards: exact contents, dtype, checksums, worker-count independence,
resumption, and the directory rules."""

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scratchgpt.data import (
    DataError,
    is_prepared,
    iter_documents,
    load_prepared,
    load_text,
    parallel as parallel_module,
    prepare,
    shards as shards_module,
    sources as sources_module,
    token_dtype,
)
from scratchgpt.tokenizers import CharTokenizer, TiktokenTokenizer, Tokenizer

EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def gpt2(shared_data):
    data = shared_data("gpt2-encoder.json").parent
    return TiktokenTokenizer.from_gpt2_files(data / "gpt2-encoder.json", data / "gpt2-vocab.bpe")


@pytest.fixture
def corpus(tmp_path) -> Path:
    """60 documents of different lengths (some non-ASCII) as JSON lines."""
    words = [
        "the",
        "cat",
        "sat",
        "on",
        "a",
        "mat;",
        "café,",
        "naïve,",
        "🎉",
        "and",
        "<|endoftext|>",
        "typed",
        "by",
        "a",
        "user",
    ]
    docs = [" ".join(words[(i * 7) % len(words) :] * (1 + i % 5)) + f" #{i}" for i in range(60)]
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    return path


def joined(data, split: str) -> np.ndarray:
    return np.concatenate(data.shards(split)) if data.shards(split) else np.array([], np.int64)


def is_val(i: int, fraction: float) -> bool:
    """The documented rule: document i validates when floor((i + 1) f) > floor(i f)."""
    return int((i + 1) * fraction) > int(i * fraction)


def test_shards_decode_to_documents_joined_by_eot(tmp_path, corpus, gpt2):
    out = prepare(
        corpus, tokenizer=gpt2, out_dir=tmp_path / "out", val_fraction=0.1, shard_tokens=97
    )
    data = load_prepared(out)
    docs = list(iter_documents(corpus))
    train = [d for i, d in enumerate(docs) if not is_val(i, 0.1)]
    val = [d for i, d in enumerate(docs) if is_val(i, 0.1)]
    assert len(val) == 6 and data.meta["documents"] == {"train": 54, "val": 6}
    # A user's literal "<|endoftext|>" stays text; only the separators are the special id.
    train_ids = joined(data, "train")
    assert gpt2.decode(train_ids.tolist()) == EOT.join(train)
    assert train_ids.tolist() == [
        i for n, d in enumerate(train) for i in ([gpt2.eot_id] if n else []) + gpt2.encode(d)
    ]
    assert (train_ids == gpt2.eot_id).sum() == len(train) - 1
    assert gpt2.decode(joined(data, "val").tolist()) == EOT.join(val)
    # Exact shard sizes, uint16 files, read-only maps, counts that add up.
    sizes = [len(s) for s in data.shards("train")]
    assert len(sizes) > 3 and set(sizes[:-1]) == {97} and 0 < sizes[-1] <= 97
    assert data.dtype == np.dtype("<u2") and data.meta["dtype"] == "uint16"
    assert data.num_tokens("train") == len(train_ids) == data.meta["tokens"]["train"]
    for entry in data.meta["shards"]:
        assert (out / entry["file"]).stat().st_size == 2 * entry["tokens"]
    with pytest.raises(ValueError, match="read-only"):
        data.shards("train")[0][0] = 1
    assert data.tokenizer.encode("hello world") == gpt2.encode("hello world")
    assert is_prepared(out) and not is_prepared(tmp_path)


class WideTokenizer(Tokenizer):
    """A toy tokenizer whose ids need more than 16 bits: character code + 65,536."""

    kind = "test-wide"
    vocab_size = 70_000

    @property
    def eot_id(self) -> int:
        return 69_999

    def encode(self, text: str) -> list[int]:
        return [65_536 + ord(c) for c in text]

    def decode(self, ids) -> str:
        return "".join("|" if i == 69_999 else chr(i - 65_536) for i in ids)

    def to_dict(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_dict(cls, data: dict[str, Any], directory: Path) -> "WideTokenizer":
        return cls()


def test_uint16_or_uint32_by_vocabulary(tmp_path, corpus):
    assert token_dtype(65_536) == np.uint16 and token_dtype(65_537) == np.uint32
    wide = WideTokenizer()
    out = prepare(corpus, tokenizer=wide, out_dir=tmp_path / "wide", val_fraction=0.0)
    data = load_prepared(out)
    assert data.meta["dtype"] == "uint32" and data.dtype == np.dtype("<u4")
    ids = joined(data, "train")
    assert ids.min() >= 65_536  # would have wrapped around in 16 bits
    assert wide.decode(ids.tolist()) == "|".join(iter_documents(corpus))
    assert (out / "train-000000.bin").stat().st_size == 4 * len(ids)
    char = prepare(
        corpus, tokenizer=CharTokenizer.from_text(load_text(corpus)), out_dir=tmp_path / "c"
    )
    assert load_prepared(char).meta["dtype"] == "uint16"


def test_tokenizer_without_eot_separates_like_load_text(tmp_path, corpus):
    char = CharTokenizer.from_text(load_text(corpus))
    assert char.eot_id is None
    data = load_prepared(prepare(corpus, tokenizer=char, out_dir=tmp_path / "o", val_fraction=0))
    assert data.meta["separator"] == char.encode("\n\n")
    assert char.decode(joined(data, "train").tolist()) == load_text(corpus)
    assert data.shards("val") == [] and data.num_tokens("val") == 0


def test_corrupted_or_truncated_shard_is_detected(tmp_path, corpus, gpt2):
    out = prepare(corpus, tokenizer=gpt2, out_dir=tmp_path / "o", shard_tokens=200)
    shard = out / "train-000001.bin"
    raw = bytearray(shard.read_bytes())
    raw[10] ^= 0xFF
    shard.write_bytes(bytes(raw))
    with pytest.raises(
        DataError, match=r"train-000001\.bin is corrupted.*re-run scratchgpt prepare"
    ):
        load_prepared(out)
    assert load_prepared(out, verify=False).num_tokens("train") > 0  # sizes still match
    shard.write_bytes(bytes(raw[:-2]))
    with pytest.raises(DataError, match=r"train-000001\.bin has \d+ bytes.*truncated"):
        load_prepared(out, verify=False)
    # Preparing again notices the damage and rebuilds the shard.
    prepare(corpus, tokenizer=gpt2, out_dir=out, shard_tokens=200)
    assert load_prepared(out).num_tokens("train") > 0


def small_batches(monkeypatch) -> None:
    """Many small batches and pieces, so a small corpus exercises every multi-batch path."""
    monkeypatch.setattr(shards_module, "BATCH_CHARS", 700)
    monkeypatch.setattr(sources_module, "PIECE_CHARS", 500)


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_workers_write_byte_identical_shards(tmp_path, corpus, gpt2, shared_data, monkeypatch):
    small_batches(monkeypatch)
    story = shared_data("the-verdict.txt")  # one long document, cut into pieces
    spec = [corpus, story]
    one = prepare(spec, tokenizer=gpt2, out_dir=tmp_path / "one", num_workers=1, shard_tokens=500)
    two = prepare(spec, tokenizer=gpt2, out_dir=tmp_path / "two", num_workers=2, shard_tokens=500)
    assert files(one) == files(two)
    assert len(load_prepared(one).meta["shards"]) > 10
    # The long document's pieces tokenize exactly like the whole text.
    text = story.read_text(encoding="utf-8")
    data = load_prepared(one)
    ids = np.concatenate([joined(data, "train"), joined(data, "val")])  # val: the last 1%
    tail = gpt2.encode(text)
    assert ids[-len(tail) :].tolist() == tail and ids[-len(tail) - 1] == gpt2.eot_id


class SimulatedCrashError(Exception):
    pass


def counting_encoder(monkeypatch, *, fail_at: int | None = None) -> list[int]:
    """Count encoded batches; raise SimulatedCrashError at call number ``fail_at`` (1-based)."""
    calls: list[int] = []
    real = parallel_module.encode_batch

    def encode(*args):
        calls.append(1)
        if fail_at is not None and len(calls) == fail_at:
            raise SimulatedCrashError
        return real(*args)

    monkeypatch.setattr(parallel_module, "encode_batch", encode)
    return calls


def test_interrupted_run_resumes_to_identical_shards(tmp_path, corpus, gpt2, monkeypatch):
    small_batches(monkeypatch)
    options = {"tokenizer": gpt2, "num_workers": 1, "shard_tokens": 300, "val_fraction": 0.1}
    calls = counting_encoder(monkeypatch)
    reference = prepare(corpus, out_dir=tmp_path / "ref", **options)
    total = len(calls)
    assert total > 8

    out = tmp_path / "out"
    counting_encoder(monkeypatch, fail_at=total - 2)
    with pytest.raises(SimulatedCrashError):
        prepare(corpus, out_dir=out, **options)
    progress = json.loads((out / "progress.json").read_text())
    done = [s["file"] for s in progress["shards"]]
    assert len(done) >= 3 and not is_prepared(out)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # no half-written shard
    kept = {name: os.stat(out / name).st_ino for name in done}
    # Damage one finished shard: it and the shards after it in its split are made again.
    damaged = done[2]
    (out / damaged).write_bytes(
        b"\0\0" * json.loads((out / "progress.json").read_text())["shards"][2]["tokens"]
    )

    calls = counting_encoder(monkeypatch)
    prepare(corpus, out_dir=out, **options)
    assert 0 < len(calls) < total  # resumed, not started over
    assert files(out) == files(reference)
    assert not (out / "progress.json").exists()
    assert all(os.stat(out / n).st_ino == kept[n] for n in done[:2])  # kept, not rewritten

    calls = counting_encoder(monkeypatch)
    prepare(corpus, out_dir=out, **options)  # complete and intact: nothing to do
    assert calls == []
    prepare(corpus, out_dir=out, **{**options, "shard_tokens": 1000})  # new settings: redo
    assert len(calls) == total
    assert sorted(p.name for p in out.glob("*.bin")) == sorted(
        s["file"] for s in load_prepared(out).meta["shards"]
    )  # no stale shards from the old settings


def test_single_document_gets_a_tail_validation_split(tmp_path, shared_data, gpt2):
    story = shared_data("the-verdict.txt")
    data = load_prepared(prepare(story, tokenizer=gpt2, out_dir=tmp_path / "o", val_fraction=0.1))
    ids = gpt2.encode(story.read_text(encoding="utf-8"))
    assert len(ids) == 5145  # the book's count for the-verdict
    assert data.meta["val_split"] == "tail" and data.meta["documents"] == {"train": 1, "val": 0}
    assert data.num_tokens("val") == 515  # 514.5 rounded up
    assert joined(data, "train").tolist() + joined(data, "val").tolist() == ids


def test_output_directory_rules_and_argument_errors(tmp_path, corpus, gpt2):
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(DataError, match="not a prepared data directory; refusing"):
        prepare(corpus, tokenizer=gpt2, out_dir=foreign)
    assert (foreign / "cat.jpg").read_bytes() == b"\xff\xd8"
    with pytest.raises(DataError, match=r"val_fraction=1\.0"):
        prepare(corpus, tokenizer=gpt2, out_dir=tmp_path / "o", val_fraction=1.0)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n \n")
    with pytest.raises(DataError, match="no text to tokenize"):
        prepare(blank, tokenizer=gpt2, out_dir=tmp_path / "o")
    blank.write_text("now there is text")  # the failed run's directory is reused, not refused
    assert is_prepared(prepare(blank, tokenizer=gpt2, out_dir=tmp_path / "o"))
    with pytest.raises(DataError, match="not a prepared data directory"):
        load_prepared(tmp_path)
