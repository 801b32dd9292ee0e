"""Tokenized corpora on disk: flat binary shards of token ids and a JSON description.

:func:`prepare` turns any data spec (:mod:`.sources`) into a directory::

    out/
      meta.json                      format, tokenizer, dtype, document and token counts,
                                     the shard list with each shard's sha256
      tokenizer.json (+ side files)  the exact tokenizer, in its own save format
      train-000000.bin ...           little-endian token ids: uint16 when the vocabulary fits
      val-000000.bin ...             in 16 bits (GPT-2's 50,257 does), else uint32

the layout of nanoGPT's ``train.bin``/``val.bin`` and llm.c's FineWeb shards: training
memory-maps the files (:func:`load_prepared`) and reads windows anywhere without loading the
corpus into memory. JSON and raw integers only, never pickle, so a prepared directory from a
stranger cannot run code.

How it scales:

- documents are read in order by this process and cut into batches of about a megabyte of
  text; a pool of worker processes tokenizes the batches and this process writes the results
  in submission order, so the shards are byte-identical whatever the number of workers;
- the tokenizer's end-of-text id goes between documents (a tokenizer without one gets the
  ids of a blank line, like :func:`load_text`);
- document i goes to validation when floor((i + 1) f) > floor(i f), for the validation
  fraction f: a fixed, evenly spread 1-in-1/f choice. A corpus with too few documents for
  that (a single short story) gives its last f of tokens to validation instead;
- each finished shard is recorded in ``progress.json`` with its sha256 and where it starts
  and ends in the batch stream; an interrupted run keeps the shards that still verify and
  starts again at the first missing or damaged one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, TokenizerError
from ..files import atomic_write, atomic_write_text, file_sha256
from ..tokenizers import LEARNED_TOKENIZERS, Tokenizer, get_tokenizer, load_tokenizer
from .parallel import SPLITS, Batch, cpu_count, encode_all, progress_bar
from .sources import DataSpec, iter_document_pieces, load_text, sources_fingerprint

log = logging.getLogger(__name__)

FORMAT = "scratchgpt-tokens"
VERSION = 1
META_FILE = "meta.json"
PROGRESS_FILE = "progress.json"
# Characters of text per worker task: large enough that sending it costs little next to
# tokenizing it, small enough to keep every core busy. It fixes the batch boundaries, so it
# is part of the settings a resumed run must share.
BATCH_CHARS = 1 << 20

Position = tuple[int, int]  # (batch number, token offset in that batch's output for a split)


def token_dtype(vocab_size: int) -> np.dtype:
    """Little-endian uint16 when every id fits in 16 bits, else uint32."""
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


@dataclass(frozen=True)
class PreparedData:
    """A prepared directory: its metadata, tokenizer, and token shards as read-only memmaps."""

    path: Path
    meta: dict[str, Any]
    tokenizer: Tokenizer
    dtype: np.dtype

    def shards(self, split: str) -> list[np.memmap]:
        """The 1-D token arrays of ``split`` ("train" or "val"), in order."""
        return [
            np.memmap(self.path / s["file"], dtype=self.dtype, mode="r")
            for s in self._shard_entries(split)
        ]

    def num_tokens(self, split: str) -> int:
        """Tokens in ``split`` over all its shards."""
        return sum(int(s["tokens"]) for s in self._shard_entries(split))

    def _shard_entries(self, split: str) -> list[dict[str, Any]]:
        if split not in SPLITS:
            raise DataError(f"split {split!r}: use one of {', '.join(SPLITS)}")
        return [s for s in self.meta["shards"] if s["split"] == split]


def is_prepared(path: str | Path) -> bool:
    """True if ``path`` is a directory holding a finished :func:`prepare` output."""
    meta = _read_json(Path(path) / META_FILE)
    return meta is not None and meta.get("format") == FORMAT


def load_prepared(path: str | Path, *, verify: bool = True) -> PreparedData:
    """Open a prepared directory. ``verify`` re-hashes every shard against meta.json (about a
    second per gigabyte); sizes are always checked."""
    path = Path(path)
    meta = _read_json(path / META_FILE)
    if meta is None or meta.get("format") != FORMAT:
        raise DataError(
            f"{path} is not a prepared data directory (no scratchgpt {META_FILE}); make one with "
            f"scratchgpt prepare --data ... --tokenizer ... --out {path}"
        )
    if meta.get("version") != VERSION:
        raise DataError(
            f"{path / META_FILE} has format version {meta.get('version')}, this scratchgpt "
            f"reads version {VERSION}; prepare the data again"
        )
    dtype = np.dtype(meta["dtype"]).newbyteorder("<")
    for shard in meta["shards"]:
        problem = _shard_problem(path, shard, dtype, verify=verify)
        if problem:
            raise DataError(
                f"shard {path / shard['file']} {problem}: re-run scratchgpt prepare with the same "
                f"--data and --tokenizer and --out {path} to rebuild it"
            )
    try:
        tokenizer = load_tokenizer(path)
    except TokenizerError as exc:
        raise DataError(f"{path}: cannot load its tokenizer ({exc})") from None
    return PreparedData(path=path, meta=meta, tokenizer=tokenizer, dtype=dtype)


def _shard_problem(directory: Path, shard: dict[str, Any], dtype: np.dtype, *, verify: bool) -> str:
    """Why a shard file does not match its record ("" if it does)."""
    file = directory / shard["file"]
    if not file.is_file():
        return "is missing"
    expected = int(shard["tokens"]) * dtype.itemsize
    if file.stat().st_size != expected:
        return f"has {file.stat().st_size} bytes, not the {expected} recorded (truncated?)"
    if verify and file_sha256(file) != shard["sha256"]:
        return f"is corrupted (its sha256 differs from the {shard['sha256']} recorded)"
    return ""


def prepare(
    source: DataSpec,
    *,
    tokenizer: Tokenizer | str,
    out_dir: str | Path,
    val_fraction: float = 0.01,
    num_workers: int | None = None,
    shard_tokens: int = 100_000_000,
    text_field: str = "text",
    cache_dir: str | Path | None = None,
    streaming: bool = True,
    vocab_size: int | None = None,
) -> Path:
    """Tokenize ``source`` into shards of ``shard_tokens`` ids in ``out_dir``; returns it.

    ``tokenizer`` is a Tokenizer or a name/path for :func:`get_tokenizer` ("gpt2", a saved
    tokenizer, a directory with OpenAI's two files), or "char", "simple" or "bpe" (of
    ``vocab_size`` ids), which are first built from the whole of ``source``. ``num_workers``
    processes tokenize (default: every core). Re-running with the same arguments resumes an
    interrupted run, or returns at once when the output is complete and intact; other
    arguments start it over.
    """
    if not isinstance(tokenizer, Tokenizer):
        text = None
        if str(tokenizer) in LEARNED_TOKENIZERS:  # these learn their vocabulary from the data
            text = load_text(source, text_field=text_field, cache_dir=cache_dir)
        tokenizer = get_tokenizer(tokenizer, text=text, vocab_size=vocab_size)
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction={val_fraction}: must be at least 0 and less than 1")
    if shard_tokens < 1:
        raise DataError(f"shard_tokens={shard_tokens}: must be at least 1")
    if num_workers is not None and num_workers < 1:
        raise DataError(f"num_workers={num_workers}: must be at least 1")
    workers = num_workers or cpu_count()
    out = Path(out_dir)
    dtype = token_dtype(tokenizer.vocab_size)
    separator = _separator(tokenizer)
    settings = {
        "format": FORMAT,
        "version": VERSION,
        "sources": sources_fingerprint(source),
        "tokenizer_sha256": _tokenizer_sha256(tokenizer),
        "text_field": text_field,
        "val_fraction": val_fraction,
        "shard_tokens": shard_tokens,
        "batch_chars": BATCH_CHARS,
    }
    settings_sha256 = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    kept = _claim_output(out, settings_sha256, dtype)
    if kept is None:  # already prepared with these settings, every shard intact
        log.info("%s is already prepared with these settings", out)
        return out
    progress: dict[str, Any] = {"format": FORMAT, "settings_sha256": settings_sha256}

    def save_progress() -> None:
        progress["shards"] = [s for w in writers for s in w.shards]
        atomic_write_text(out / PROGRESS_FILE, json.dumps(progress, indent=1))

    writers = [
        _ShardWriter(out, split, dtype, shard_tokens, kept[i], on_shard=save_progress)
        for i, split in enumerate(SPLITS)
    ]
    save_progress()  # first, so a run that fails at once still leaves a directory we own
    tokenizer.save(out)  # before the pool starts: the workers load it from here
    documents = [0, 0]
    batches = _batches(
        source,
        val_fraction=val_fraction,
        documents=documents,
        text_field=text_field,
        cache_dir=cache_dir,
        streaming=streaming,
    )
    first = min(w.resume[0] for w in writers)
    if first:
        log.info("resuming %s at batch %d (%d shards kept)", out, first, sum(map(len, kept)))
    start = time.perf_counter()
    encoded = encode_all(batches, first, workers, tokenizer, out, dtype.str, separator)
    try:
        for number, outputs in progress_bar(encoded, dtype.itemsize):
            for writer, data in zip(writers, outputs, strict=True):
                writer.add(number, data)
        for writer in writers:
            writer.finish()
    finally:
        encoded.close()  # stops the worker pool at once after an error or Ctrl-C
        for writer in writers:
            writer.abort()
    seconds = time.perf_counter() - start

    train, val = writers[0].shards, writers[1].shards
    val_split = "documents" if val else "none"
    if not train and not val:
        raise DataError(f"{', '.join(map(str, _as_list(source)))} has no text to tokenize")
    if not val and val_fraction > 0:
        train, val = _carve_tail(out, train, val_fraction, dtype, shard_tokens)
        val_split = "tail" if val else "none"
    shards = [{k: s[k] for k in ("file", "split", "tokens", "sha256")} for s in train + val]
    tokens = {split: sum(s["tokens"] for s in shards if s["split"] == split) for split in SPLITS}
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "dtype": dtype.name,
        "byteorder": "little",
        "tokenizer": {
            "type": tokenizer.kind,
            "vocab_size": tokenizer.vocab_size,
            "eot_id": tokenizer.eot_id,
            "sha256": settings["tokenizer_sha256"],
        },
        "separator": separator,
        "sources": [str(s) for s in _as_list(source)],
        "text_field": text_field,
        "val_fraction": val_fraction,
        "val_split": val_split,
        "shard_tokens": shard_tokens,
        "documents": dict(zip(SPLITS, documents, strict=True)),
        "tokens": tokens,
        "shards": shards,
        "settings_sha256": settings_sha256,
    }
    atomic_write_text(out / META_FILE, json.dumps(meta, indent=1) + "\n")
    (out / PROGRESS_FILE).unlink(missing_ok=True)
    total = tokens["train"] + tokens["val"]
    log.info(
        "prepared %s: %d train + %d val tokens, %d documents, %d shards, %s, %.0f tokens/s",
        out,
        tokens["train"],
        tokens["val"],
        sum(documents),
        len(shards),
        dtype.name,
        total / max(seconds, 1e-9),
    )
    return out


def _as_list(source: DataSpec) -> list[str | Path]:
    return [source] if isinstance(source, str | Path) else list(source)


def _separator(tokenizer: Tokenizer) -> list[int]:
    """The ids placed between documents: end-of-text, else a blank line, else nothing."""
    if tokenizer.eot_id is not None:
        return [int(tokenizer.eot_id)]
    try:
        return [int(i) for i in tokenizer.encode("\n\n")]
    except (TokenizerError, KeyError, ValueError):
        log.warning(
            "%r has no end-of-text token and cannot encode a newline: documents "
            "will be joined with no separator",
            tokenizer,
        )
        return []


def _tokenizer_sha256(tokenizer: Tokenizer) -> str:
    """A hash of the tokenizer's saved files: the same files encode the same way."""
    digest = hashlib.sha256()
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save(tmp)
        for file in sorted(Path(tmp).iterdir()):
            digest.update(file.name.encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _claim_output(out: Path, settings_sha256: str, dtype: np.dtype) -> list[list[dict]] | None:
    """Make ``out`` ready for a run: the shards to keep per split, or None when ``out`` is
    already complete with these settings.

    Only a directory that is empty or was made by :func:`prepare` is used, so a mistyped
    output path never deletes someone's files.
    """
    meta, progress = _read_json(out / META_FILE), _read_json(out / PROGRESS_FILE)
    ours = [d for d in (meta, progress) if d is not None and d.get("format") == FORMAT]
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file; choose a directory")
    if out.is_dir() and any(out.iterdir()) and not ours:
        raise DataError(
            f"{out} exists and is not a prepared data directory; refusing to write into it "
            "(choose another --out, or delete it first)"
        )
    out.mkdir(parents=True, exist_ok=True)
    kept: list[list[dict]] = [[], []]
    if meta is not None and meta.get("settings_sha256") == settings_sha256:
        if not any(_shard_problem(out, s, dtype, verify=True) for s in meta["shards"]):
            return None
        log.warning("%s has damaged shards; preparing it again", out)
    elif progress is not None and progress.get("settings_sha256") == settings_sha256:
        for i, split in enumerate(SPLITS):
            for shard in (s for s in progress.get("shards", []) if s["split"] == split):
                if _shard_problem(out, shard, dtype, verify=True):
                    log.warning("%s is damaged or missing; re-making it", shard["file"])
                    break
                kept[i].append(shard)
    elif ours:
        log.warning("%s was prepared with other settings; preparing it again", out)
    # Anything that is not a kept shard is rebuilt: drop it, with stale metadata and temp files.
    keep = {s["file"] for split in kept for s in split}
    (out / META_FILE).unlink(missing_ok=True)
    for file in out.iterdir():
        is_shard = file.suffix == ".bin" and file.name.split("-")[0] in SPLITS
        if (is_shard and file.name not in keep) or file.name.endswith(".bin.tmp"):
            file.unlink()
    return kept


def _batches(
    source: DataSpec,
    *,
    val_fraction: float,
    documents: list[int],
    **read: Any,
) -> Iterator[Batch]:
    """Batches of about BATCH_CHARS characters of (split, text piece, needs separator);
    ``documents`` counts the documents of each split as they are read."""
    fraction = Fraction(val_fraction).limit_denominator(1_000_000)
    p, q = fraction.numerator, fraction.denominator
    seen = [False, False]
    batch: Batch = []
    size = 0
    for i, pieces in enumerate(iter_document_pieces(source, **read)):
        split = 1 if (i + 1) * p // q > i * p // q else 0
        documents[split] += 1
        separate, seen[split] = seen[split], True
        for piece in pieces:
            batch.append((split, piece, separate))
            separate = False
            size += len(piece)
            if size >= BATCH_CHARS:
                yield batch
                batch, size = [], 0
    if batch:
        yield batch


class _ShardWriter:
    """Cuts one split's token stream into shards of exactly ``shard_tokens`` ids (the last one
    shorter), each written to a temporary file and renamed into place once complete."""

    def __init__(
        self,
        out: Path,
        split: str,
        dtype: np.dtype,
        shard_tokens: int,
        kept: list[dict[str, Any]],
        *,
        on_shard: Callable[[], None],
    ) -> None:
        self.out, self.split, self.dtype, self.shard_tokens = out, split, dtype, shard_tokens
        self.shards = list(kept)
        self.on_shard = on_shard
        # Where the first token not in a kept shard is: skip everything before it.
        self.resume: Position = tuple(kept[-1]["end"]) if kept else (0, 0)  # type: ignore[assignment]
        self.position: Position = self.resume
        self.file: Any = None
        self.tmp: Path | None = None

    def add(self, number: int, data: bytes) -> None:
        size = self.dtype.itemsize
        n = len(data) // size
        if number < self.resume[0]:
            return
        offset = self.resume[1] if number == self.resume[0] else 0
        while offset < n:
            if self.file is None:
                self._open((number, offset))
            take = min(n - offset, self.shard_tokens - self.count)
            chunk = data[offset * size : (offset + take) * size]
            self.file.write(chunk)
            self.digest.update(chunk)
            self.count += take
            offset += take
            if self.count == self.shard_tokens:
                self._close((number, offset))
        self.position = (number, n)

    def finish(self) -> None:
        if self.file is not None:
            self._close(self.position)

    def abort(self) -> None:
        """Drop an unfinished shard (after an error or interruption)."""
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)
            self.tmp = None

    def _open(self, start: Position) -> None:
        name = f"{self.split}-{len(self.shards):06d}.bin"
        self.tmp = self.out / f".{name}.tmp"
        self.file = open(self.tmp, "wb")  # noqa: SIM115 (closed in _close or abort)
        self.digest = hashlib.sha256()
        self.count = 0
        self.start = start
        self.name = name

    def _close(self, end: Position) -> None:
        assert self.file is not None and self.tmp is not None
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        self.file = None
        os.replace(self.tmp, self.out / self.name)
        self.tmp = None
        self.shards.append(
            {
                "file": self.name,
                "split": self.split,
                "tokens": self.count,
                "sha256": self.digest.hexdigest(),
                "start": list(self.start),
                "end": list(end),
            }
        )
        self.on_shard()


def _carve_tail(
    out: Path, train: list[dict[str, Any]], val_fraction: float, dtype: np.dtype, shard_tokens: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Too few documents for a validation document: move the last ``val_fraction`` of the
    training tokens (at least one, and never all) to validation shards."""
    total = sum(s["tokens"] for s in train)
    need = min(max(1, int(total * val_fraction + 0.5)), total - 1)  # half rounds up
    if need < 1:
        return train, []
    train = [dict(s) for s in train]
    tail: list[np.ndarray] = []
    while need:
        last = train[-1]
        ids = np.fromfile(out / last["file"], dtype=dtype)
        if len(ids) <= need:
            tail.insert(0, ids)
            need -= len(ids)
            (out / last["file"]).unlink()
            train.pop()
            continue
        keep, moved = ids[: len(ids) - need], ids[len(ids) - need :]
        tail.insert(0, moved)
        atomic_write(out / last["file"], lambda f, keep=keep: f.write(keep.tobytes()))
        last.update(tokens=len(keep), sha256=file_sha256(out / last["file"]))
        need = 0
    ids = np.concatenate(tail)
    val = []
    for k, begin in enumerate(range(0, len(ids), shard_tokens)):
        chunk = ids[begin : begin + shard_tokens]
        name = f"val-{k:06d}.bin"
        atomic_write(out / name, lambda f, chunk=chunk: f.write(chunk.tobytes()))
        digest = hashlib.sha256(chunk.tobytes()).hexdigest()
        val.append({"file": name, "split": "val", "tokens": len(chunk), "sha256": digest})
    return train, val
