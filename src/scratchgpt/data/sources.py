"""Where training text comes from: one ``--data`` spec for a short story or for FineWeb.

A spec is one of

- a named corpus: ``pydocs`` (built in), ``the-verdict`` or ``tinyshakespeare`` (downloaded
  once, verified and cached; see :mod:`.corpora`). Names win over files of the same name;
- a file: ``.txt`` (the whole file is one document), ``.jsonl`` (one JSON object per line, its
  text in a field, ``"text"`` by default) or ``.parquet`` (one row per document, a text column;
  needs pyarrow, in the ``data`` extra). Any other suffix is read as plain text;
- a directory (its .txt, .jsonl and .parquet files, recursively, in sorted order, hidden ones
  skipped) or a glob (``shards/*.parquet``, ``**`` recurses);
- ``hf:NAME[:CONFIG][@SPLIT]``: a Hugging Face dataset through the optional ``datasets``
  library (the ``data`` extra), streamed by default so ten billion tokens
  never have to fit on disk: ``hf:HuggingFaceFW/fineweb-edu:sample-10BT``,
  ``hf:roneneldan/TinyStories@validation``. NAME may also be a local file or directory, which
  ``datasets`` then reads with its json / parquet / text builders.

Everything is read as a stream of documents in a fixed order, so the same spec always gives
the same text. A file that is not UTF-8, or is binary, is reported with its name and the byte
offset of the first bad byte, before anything deeper in the stack can fail on it.
"""

from __future__ import annotations

import glob
import itertools
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import DataError, missing_extra
from .corpora import CORPORA, DOWNLOADS, corpus_path, pydocs_text

log = logging.getLogger(__name__)

DataSpec = str | Path | Sequence[str | Path]

HF_PREFIX = "hf:"
# The suffixes a directory or glob contributes; an explicitly named file may have any suffix.
DATA_SUFFIXES: tuple[str, ...] = (".txt", ".jsonl", ".parquet")
# datasets' packaged builder for a local file given as hf:PATH.
_HF_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".txt": "text"}
# Text is read and handed on in pieces of about this many bytes/characters, so a 10 GB .txt
# file streams through in bounded memory and one huge document still spreads over every core.
PIECE_CHARS = 1 << 20


@dataclass(frozen=True)
class Source:
    """One concrete thing to read: a named corpus, a file, or a Hugging Face dataset."""

    kind: Literal["corpus", "txt", "jsonl", "parquet", "hf"]
    location: str  # corpus name, file path, or Hugging Face dataset name (or local path)
    origin: str | None = None  # the directory or glob the file was found through
    config: str | None = None  # Hugging Face dataset config
    split: str = "train"  # Hugging Face dataset split

    @property
    def where(self) -> str:
        """The file's name for an error message, with the directory or glob that found it."""
        return f"{self.location} (found in {self.origin})" if self.origin else self.location

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this source's content, to tell whether a prepared run is stale."""
        if self.kind == "corpus":
            pin = DOWNLOADS[self.location].sha256 if self.location in DOWNLOADS else "builtin"
            return {"kind": "corpus", "name": self.location, "sha256": pin}
        if self.kind == "hf":
            return {"kind": "hf", "name": self.location, "config": self.config, "split": self.split}
        stat = os.stat(self.location)
        return {
            "kind": self.kind,
            "path": str(Path(self.location).resolve()),
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
        }


def _spec_list(source: DataSpec) -> list[str | Path]:
    if isinstance(source, str | Path):
        return [source]
    specs = list(source)
    if not specs:
        raise DataError("no data given: pass at least one --data spec")
    return specs


def resolve_sources(source: DataSpec) -> list[Source]:
    """The concrete sources a spec (or a list of specs) stands for, in reading order."""
    resolved: list[Source] = []
    for spec in _spec_list(source):
        resolved.extend(_resolve_one(spec))
    return resolved


def _resolve_one(spec: str | Path) -> list[Source]:
    text = str(spec)
    if text in CORPORA:
        return [Source("corpus", text)]
    if text.startswith(HF_PREFIX):
        return [_parse_hf(text)]
    path = Path(text).expanduser()
    if path.is_file():
        return [_file_source(path)]
    if path.is_dir():
        files = _data_files_under(path)
        if not files:
            raise DataError(f"data directory {text!r} holds no {', '.join(DATA_SUFFIXES)} files")
        return [_file_source(f, origin=f"directory {text}") for f in files]
    if glob.has_magic(text):
        matches = sorted(glob.glob(os.path.expanduser(text), recursive=True))
        files = []
        for match in map(Path, matches):
            if match.is_dir():
                files.extend(_data_files_under(match))
            elif match.is_file():
                files.append(match)
        if not files:
            raise DataError(f"the glob {text!r} matched no files")
        return [_file_source(f, origin=f"glob {text}") for f in files]
    raise DataError(
        f"data {text!r} is neither a named corpus ({', '.join(CORPORA)}), an hf:NAME dataset, "
        "nor an existing file, directory or glob"
    )


def _data_files_under(root: Path) -> list[Path]:
    """The data files below ``root``, sorted by path, skipping hidden files and folders."""
    found = [
        p
        for p in root.rglob("*")
        if p.suffix.lower() in DATA_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    return sorted(found, key=lambda p: p.relative_to(root).parts)


def _file_source(path: Path, *, origin: str | None = None) -> Source:
    suffix = path.suffix.lower()
    kind = "jsonl" if suffix == ".jsonl" else "parquet" if suffix == ".parquet" else "txt"
    return Source(kind, str(path), origin=origin)


def _parse_hf(spec: str) -> Source:
    """``hf:NAME[:CONFIG][@SPLIT]`` -> a Source; SPLIT defaults to "train"."""
    rest, split = spec[len(HF_PREFIX) :], "train"
    if "@" in rest:
        rest, split = rest.rsplit("@", 1)
    name, _, config = rest.partition(":")
    if not name or not split:
        raise DataError(
            f"{spec!r}: a Hugging Face dataset is hf:NAME[:CONFIG][@SPLIT], e.g. "
            "hf:HuggingFaceFW/fineweb-edu:sample-10BT or hf:roneneldan/TinyStories@validation"
        )
    return Source("hf", name, config=config or None, split=split)


def iter_documents(
    source: DataSpec,
    *,
    text_field: str = "text",
    cache_dir: str | Path | None = None,
    streaming: bool = True,
) -> Iterator[str]:
    """Every document of ``source`` in order: a .txt file or named corpus is one document; a
    jsonl line, parquet row or dataset row is one. Blank documents are skipped."""
    for pieces in iter_document_pieces(
        source, text_field=text_field, cache_dir=cache_dir, streaming=streaming
    ):
        yield "".join(pieces)


def load_text(
    source: DataSpec, *, text_field: str = "text", cache_dir: str | Path | None = None
) -> str:
    """All the text of ``source`` as one string, its documents joined by a blank line.

    A single .txt file comes back exactly as it is on disk, and ``pydocs`` exactly as
    :func:`pydocs_text`. For corpora larger than memory, use :func:`iter_documents` or
    prepare the data into shards (:func:`scratchgpt.data.prepare`).
    """
    docs = list(iter_documents(source, text_field=text_field, cache_dir=cache_dir))
    if not docs:
        label = ", ".join(map(str, _spec_list(source)))
        raise DataError(f"{label} is empty: there is nothing to train on")
    return "\n\n".join(docs)


def iter_document_pieces(
    source: DataSpec,
    *,
    text_field: str = "text",
    cache_dir: str | Path | None = None,
    streaming: bool = True,
) -> Iterator[Iterator[str]]:
    """Each non-blank document as an iterator of consecutive pieces of at most about
    :data:`PIECE_CHARS` characters (consume one before asking for the next).

    Pieces are cut only where a newline sits between two non-space characters: for GPT-2's
    and GPT-4's pre-tokenisation regexes (and the character and word tokenizers) that is always
    a token boundary, so tokenizing the pieces one by one gives exactly the ids of the whole
    document, while a single 10 GB document still splits over every core.
    """
    for src in resolve_sources(source):
        for pieces in _documents(
            src, text_field=text_field, cache_dir=cache_dir, streaming=streaming
        ):
            head: list[str] = []
            for piece in pieces:
                head.append(piece)
                if piece and not piece.isspace():
                    break
            else:
                continue  # an empty or blank document: nothing to learn, no separator either
            yield itertools.chain(head, pieces)


def _documents(
    src: Source, *, text_field: str, cache_dir: str | Path | None, streaming: bool
) -> Iterator[Iterator[str]]:
    if src.kind == "corpus":
        if src.location == "pydocs":
            yield split_text(pydocs_text())
        else:
            yield _txt_pieces(corpus_path(src.location, cache_dir=cache_dir), src.location)
    elif src.kind == "txt":
        yield _txt_pieces(Path(src.location), src.where)
    elif src.kind == "jsonl":
        yield from map(split_text, _jsonl_texts(src, text_field))
    elif src.kind == "parquet":
        yield from map(split_text, _parquet_texts(src, text_field))
    else:
        yield from map(split_text, _hf_texts(src, text_field, cache_dir, streaming))


def safe_cut(text: str, lo: int, hi: int) -> int | None:
    """The largest cut position p in (lo, hi] with text[p-2], "\\n", text[p] = non-space,
    newline, non-space; None if there is none."""
    i = text.rfind("\n", lo + 1, hi)
    while i > lo:
        p = i + 1
        if p < len(text) and not text[p].isspace() and not text[i - 1].isspace():
            return p
        i = text.rfind("\n", lo + 1, i)
    return None


def split_text(text: str, limit: int | None = None) -> Iterator[str]:
    """``text`` in consecutive pieces of about ``limit`` characters, cut at safe newlines only
    (see :func:`iter_document_pieces`); a text with no safe newline stays whole."""
    limit = limit or PIECE_CHARS
    start = 0
    while len(text) - start > limit:
        # The last safe cut before the limit, else (a long stretch without one) the first after.
        cut = safe_cut(text, start, start + limit) or _safe_cut_after(text, start + limit)
        if cut is None:
            break
        yield text[start:cut]
        start = cut
    yield text[start:]


def _safe_cut_after(text: str, pos: int) -> int | None:
    i = text.find("\n", max(pos, 1))
    while i != -1:
        p = i + 1
        if p < len(text) and not text[p].isspace() and not text[i - 1].isspace():
            return p
        i = text.find("\n", p)
    return None


def _txt_pieces(path: Path, where: str) -> Iterator[str]:
    """A UTF-8 text file in pieces, read in blocks: memory stays bounded for any file size.

    A byte that is not UTF-8 or a NUL byte (binary data) is a DataError with its offset.
    """
    offset = 0  # bytes of the file decoded so far
    pending = b""  # an incomplete multi-byte character at the end of the last block
    buffer = ""
    with _open_binary(path, where) as f:
        while True:
            block = f.read(PIECE_CHARS)
            data = pending + block
            try:
                text, pending = data.decode("utf-8"), b""
            except UnicodeDecodeError as exc:
                # A character cut by the block boundary is completed by the next block.
                if block and exc.end == len(data) and exc.reason == "unexpected end of data":
                    text, pending = data[: exc.start].decode("utf-8"), data[exc.start :]
                else:
                    raise DataError(
                        f"{where} is not UTF-8 text (invalid byte at offset "
                        f"{offset + exc.start}); convert it to UTF-8 or pass another file"
                    ) from None
            nul = text.find("\x00")
            if nul != -1:
                raise DataError(
                    f"{where} looks like a binary file, not text (NUL byte at offset "
                    f"{offset + len(text[:nul].encode('utf-8'))}); pass UTF-8 text files"
                )
            offset += len(data) - len(pending)
            buffer += text
            if not block:
                break
            if len(buffer) >= PIECE_CHARS and (cut := safe_cut(buffer, 0, len(buffer))):
                yield buffer[:cut]
                buffer = buffer[cut:]
    if buffer:
        yield buffer


def _open_binary(path: Path, where: str) -> Any:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise DataError(f"cannot read {where}: {exc.strerror or exc}") from None


def _jsonl_texts(src: Source, text_field: str) -> Iterator[str]:
    """The ``text_field`` of each JSON object line; blank lines and null texts are skipped."""
    where, offset = src.where, 0
    with _open_binary(Path(src.location), where) as f:
        for lineno, raw in enumerate(f, 1):
            start, offset = offset, offset + len(raw)
            nul = raw.find(b"\x00")
            if nul != -1:
                raise DataError(
                    f"{where} looks like a binary file, not JSON lines (NUL byte at offset "
                    f"{start + nul})"
                )
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{where} is not UTF-8 text (invalid byte at offset {start + exc.start}, "
                    f"line {lineno}); convert it to UTF-8"
                ) from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{where}, line {lineno}: not JSON ({exc.msg}); a .jsonl file holds one "
                    "JSON object per line"
                ) from None
            yield from _field(record, text_field, f"{where}, line {lineno}")


def _field(record: Any, text_field: str, where: str) -> Iterator[str]:
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object with a {text_field!r} field")
    if text_field not in record:
        raise DataError(
            f"{where}: no {text_field!r} field (it has {', '.join(map(repr, record)) or 'none'});"
            " choose the field with --text-field"
        )
    text = record[text_field]
    if text is None:
        return
    if not isinstance(text, str):
        raise DataError(
            f"{where}: the {text_field!r} field is a {type(text).__name__}, not text; choose a "
            "text field with --text-field"
        )
    yield text


def _parquet_texts(src: Source, text_field: str) -> Iterator[str]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise missing_extra("pyarrow", "data", f"reading {src.where}") from None
    try:
        parquet = pq.ParquetFile(src.location)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{src.where} is not a readable Parquet file ({exc})") from None
    schema = parquet.schema_arrow
    if text_field not in schema.names:
        raise DataError(
            f"{src.where}: no {text_field!r} column (it has {', '.join(schema.names)}); choose "
            "the column with --text-field"
        )
    kind = schema.field(text_field).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise DataError(
            f"{src.where}: the {text_field!r} column holds {kind}, not text; choose a text "
            "column with --text-field"
        )
    with parquet:
        for batch in parquet.iter_batches(columns=[text_field], batch_size=1024):
            yield from (t for t in batch.column(0).to_pylist() if t is not None)


def _hf_texts(
    src: Source, text_field: str, cache_dir: str | Path | None, streaming: bool
) -> Iterator[str]:
    """Rows of a Hugging Face dataset (hub name, or local file/directory), streamed by default."""
    try:
        import datasets
    except ImportError:
        raise missing_extra("datasets", "data", f"hf:{src.location}") from None
    options: dict[str, Any] = {"split": src.split, "streaming": streaming}
    if cache_dir is not None:  # an explicit cache holds everything, datasets' files included
        options["cache_dir"] = str(Path(cache_dir) / "huggingface")
    local = Path(src.location).expanduser()
    if local.is_file():
        builder = _HF_BUILDERS.get(local.suffix.lower())
        if builder is None:
            raise DataError(
                f"hf:{src.location}: datasets reads local {', '.join(_HF_BUILDERS)} files"
            )
        args: tuple[str, ...] = (builder,)
        options["data_files"] = str(local)
    else:
        args = (str(local),) if local.is_dir() else (src.location,)
        if src.config:
            args += (src.config,)
    label = f"hf:{src.location}" + (f":{src.config}" if src.config else "") + f"@{src.split}"
    try:
        dataset = datasets.load_dataset(*args, **options)
    except Exception as exc:  # datasets raises many types (hub, network, builder errors)
        raise DataError(
            f"could not open the Hugging Face dataset {label} ({type(exc).__name__}: {exc}). "
            "Check the name, config and split; offline, set HF_DATASETS_OFFLINE=1 to use a "
            "cached copy, or pass local .jsonl/.parquet files"
        ) from exc
    for n, row in enumerate(dataset):
        yield from _field(row, text_field, f"{label}, row {n}")


def sources_fingerprint(source: DataSpec) -> list[dict[str, Any]]:
    """JSON-ready identities of every concrete source (used to detect stale prepared data)."""
    return [src.fingerprint() for src in resolve_sources(source)]
