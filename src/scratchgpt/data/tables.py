"""Labelled-text files in the shapes people keep them in: headerless ``LABEL<TAB>TEXT`` lines
(the SMS Spam Collection's format), CSV or TSV tables with a header row, JSON lines
(``.jsonl``/``.ndjson``) and a JSON list of objects (``.json``).

The format follows from the suffix; whether a CSV/TSV's first row is a header is sniffed: it
is one when a cell names the text or the label column (case-insensitive; ``text`` and
``label`` unless the caller names others). A ``.tsv``/``.txt`` file (or one without a suffix)
whose first row names neither is read as headerless ``LABEL<TAB>TEXT`` lines, so the SMS file
reads as it always did. Every malformed input is a :class:`DataError` of one line naming the
file, the line when there is one, and what to change; a row without text is skipped (one
warning counts them), since a blank message carries nothing to learn, but a row without a
label is an error: guessing one would corrupt the training set silently.

CSV is read with quoting (a field may hold commas, quotes and newlines, as pandas writes it);
TSV is not (a tab ends a field, quotes are text): the SMS messages start with quotes often
enough that a quoting reader would join lines and lose messages.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from ..errors import DataError

log = logging.getLogger(__name__)

DEFAULT_TEXT_COLUMN = "text"
DEFAULT_LABEL_COLUMN = "label"
JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")
_FLAGS = {"text": "--text-column / data.text_column", "label": "--label-column / data.label_column"}

# One raw row: where it is ("line 3", "item 3"), its text, its label (both as read).
_Row = tuple[str, str, str]


class LabelledText(NamedTuple):
    """One example: a text and its label."""

    text: str
    label: str


def parse_labelled_lines(text: str, *, source: str = "<text>") -> list[LabelledText]:
    """``LABEL<TAB>TEXT`` lines -> examples; blank lines are skipped, quotes are plain text.

    Split by hand rather than with a CSV reader: a message starting with a double quote would
    make a CSV reader join lines (pandas' default reads 5,572 of the 5,574 SMS messages).
    Lines whose text is empty are skipped with one warning; an empty label is an error.
    """
    return _collect(_label_tab_text(text, source), source, text_name=None)


def read_labelled_file(
    path: str | Path, *, text_column: str | None = None, label_column: str | None = None
) -> list[LabelledText]:
    """Examples from a labelled-text file, in file order (see the module docstring for the
    formats). ``text_column``/``label_column`` name the columns (or JSON keys) to read;
    ``text`` and ``label`` by default, matched case-insensitively when no exact match."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"labelled data {str(path)!r} "
            f"{'is a directory' if path.is_dir() else 'does not exist'}: pass a file of "
            "LABEL<TAB>TEXT lines, a CSV/TSV with a header row, or JSON lines"
        )
    for given, kind in ((text_column, "text"), (label_column, "label")):
        if given is not None and not given.strip():
            raise DataError(f"an empty {kind} column name: name it with {_FLAGS[kind]}")
    text_name = text_column or DEFAULT_TEXT_COLUMN
    label_name = label_column or DEFAULT_LABEL_COLUMN
    if text_name.lower() == label_name.lower():
        raise DataError(
            f"the text and the label column are both {text_name!r}: name two different "
            f"columns with {_FLAGS['text']} and {_FLAGS['label']}"
        )
    source, text, suffix = str(path), _decode(path), path.suffix.lower()
    names = (text_name, label_name)
    if suffix in JSON_LINES_SUFFIXES or suffix == ".json":
        rows = _json_rows(text, source, names, lines=suffix != ".json")
        return _collect(rows, source, text_name=text_name)
    named = text_column is not None or label_column is not None
    rows, headerless = _table_rows(text, source, names, csv_file=suffix == ".csv", named=named)
    return _collect(rows, source, text_name=None if headerless else text_name)


def _decode(path: Path) -> str:
    """The file's text: UTF-8 (a byte-order mark dropped, as spreadsheets write one), else
    Latin-1, in which every byte is a character, so nothing is lost."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        log.warning("%s is not UTF-8; reading it as Latin-1", path)
        return raw.decode("latin-1")


def _collect(rows: Iterator[_Row], source: str, *, text_name: str | None) -> list[LabelledText]:
    """Raw rows -> examples: labels stripped and required, rows without text skipped."""
    examples, empty = [], 0
    for where, text, label in rows:
        label = label.strip()
        if not label:
            raise DataError(
                f"{source}, {where}: the label is empty: give every row a label, or delete the row"
            )
        if not text.strip():
            empty += 1
            continue
        examples.append(LabelledText(text, label))
    if not examples and empty:
        what = f"the text column {text_name!r}" if text_name else "the text after the tab"
        hint = f": name the column of texts with {_FLAGS['text']}" if text_name else ""
        raise DataError(f"{source}: {what} is empty in all {empty} rows{hint}")
    if not examples:
        raise DataError(f"{source} holds no examples: give it rows of a text and its label")
    if empty:
        log.warning("%s: skipped %d row(s) whose text is empty", source, empty)
    return examples


def _label_tab_text(text: str, source: str) -> Iterator[_Row]:
    """Headerless ``LABEL<TAB>TEXT`` lines; the first tab ends the label, later ones are text."""
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        label, tab, body = line.partition("\t")
        if not tab:
            raise DataError(f"{source}, line {lineno}: expected LABEL<TAB>TEXT, got {line[:60]!r}")
        yield f"line {lineno}", body, label


def _cells(text: str, source: str, *, csv_file: bool) -> Iterator[tuple[int, list[str]]]:
    """(line number where the record starts, its fields) for each non-blank record."""
    if not csv_file:
        for lineno, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                yield lineno, line.split("\t")
        return
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataError(f"{source}, line {reader.line_num}: not valid CSV ({exc})") from None
        if any(c.strip() for c in cells):
            yield start, cells
        start = reader.line_num + 1


def _table_rows(
    text: str, source: str, names: tuple[str, str], *, csv_file: bool, named: bool
) -> tuple[Iterator[_Row], bool]:
    """A CSV/TSV's rows, and whether it was read as headerless ``LABEL<TAB>TEXT`` lines."""
    records = _cells(text, source, csv_file=csv_file)
    first = next(records, None)
    if first is None:
        raise DataError(f"{source} holds no examples: give it rows of a text and its label")
    header = [c.strip() for c in first[1]]
    if not {n.lower() for n in names} & {c.lower() for c in header}:
        if not csv_file and not named:
            return _label_tab_text(text, source), True
        raise DataError(
            f"{source}: the first row names no {names[0]!r} or {names[1]!r} column (it has "
            f"{_show(header)}): give the file a header row, or name the columns with "
            f"{_FLAGS['text']} and {_FLAGS['label']}"
        )
    t = _find_column(header, names[0], "text", source)
    k = _find_column(header, names[1], "label", source)

    def rows() -> Iterator[_Row]:
        for lineno, cells in records:
            if len(cells) != len(header):
                tab = "" if csv_file else " (a tab inside a text?)"
                raise DataError(
                    f"{source}, line {lineno}: {len(cells)} fields where the header has "
                    f"{len(header)}{tab}: give every row one field per column"
                )
            yield f"line {lineno}", cells[t], cells[k]

    return rows(), False


def _json_rows(text: str, source: str, names: tuple[str, str], *, lines: bool) -> Iterator[_Row]:
    """Rows of JSON lines (``lines``) or of a JSON list of objects."""
    if lines:
        objects = _json_lines(text, source)
    else:
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{source}, line {exc.lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(items, list):
            raise DataError(
                f"{source} holds a JSON {type(items).__name__}: expected a list of objects "
                "(or write one object per line in a .jsonl file)"
            )
        objects = ((f"item {i}", item) for i, item in enumerate(items, start=1))
    for where, obj in objects:
        if not isinstance(obj, dict):
            raise DataError(
                f"{source}, {where}: a JSON {type(obj).__name__}, not an object with "
                f"{names[0]!r} and {names[1]!r} keys"
            )
        keys = [str(key) for key in obj]
        text_value = obj[keys[_find_column(keys, names[0], "text", source, where, "key")]]
        label_value = obj[keys[_find_column(keys, names[1], "label", source, where, "key")]]
        yield where, _json_text(text_value, source, where), _json_label(label_value, source, where)


def _json_lines(text: str, source: str) -> Iterator[tuple[str, object]]:
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield f"line {lineno}", json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{source}, line {lineno}: not valid JSON ({exc.msg}): write one object per "
                'line, like {"text": "...", "label": "..."}'
            ) from None


def _json_text(value: object, source: str, where: str) -> str:
    if value is None or isinstance(value, str):
        return value or ""
    raise DataError(f"{source}, {where}: the text is a {type(value).__name__}, not a string")


def _json_label(value: object, source: str, where: str) -> str:
    """Labels are strings; integers (class numbers, ``0``/``1``) are accepted as their digits."""
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise DataError(
        f"{source}, {where}: the label is a {type(value).__name__}: write labels as strings "
        "or integers"
    )


def _find_column(
    header: Sequence[str],
    name: str,
    kind: str,
    source: str,
    where: str | None = None,
    noun: str = "column",
) -> int:
    """The index of ``name`` in ``header``: the exact name, else the one case-insensitive match."""
    exact = [i for i, cell in enumerate(header) if cell == name]
    loose = [i for i, cell in enumerate(header) if cell.lower() == name.lower()]
    place = f"{source}, {where}" if where else source
    if len(exact) == 1 or (not exact and len(loose) == 1):
        return (exact or loose)[0]
    if loose:
        raise DataError(
            f"{place}: {len(exact or loose)} {noun}s are named {name!r}: rename all but one, "
            f"or name the {kind} {noun} with {_FLAGS[kind]}"
        )
    raise DataError(
        f"{place}: no {kind} {noun} {name!r} (the {noun}s are {_show(header)}): name the "
        f"{kind} {noun} with {_FLAGS[kind]}"
    )


def _show(cells: Sequence[str], most: int = 12) -> str:
    """A row's cells for an error message, each cut short, at most ``most`` of them."""
    shown = [repr(c if len(c) <= 30 else c[:27] + "...") for c in cells[:most]]
    more = f" and {len(cells) - most} more" if len(cells) > most else ""
    return (", ".join(shown) or "nothing") + more
