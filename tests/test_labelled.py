"""Labelled-text files (LABEL<TAB>TEXT, CSV/TSV with a header, JSON lines, a JSON list), their
errors, class balancing, the three-way stratified split, label checks and truncation."""

from __future__ import annotations

import json
import logging
from collections import Counter

import pytest

from scratchgpt.data import DataError
from scratchgpt.data.labelled import (
    LabelledText,
    balance_classes,
    check_labels,
    map_labels,
    read_labelled_file,
    split_examples,
    split_three,
    truncate_rows,
)
from scratchgpt.errors import ConfigError

EXAMPLES = [
    LabelledText('Free "prize", call now', "spam"),
    LabelledText("see you at 5\tok?", "ham"),
    LabelledText("ok", "ham"),
]


def _write(tmp_path, name: str, content: str):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


# --- readers -----------------------------------------------------------------------------------


def test_headerless_label_tab_text_is_the_default(tmp_path):
    lines = 'spam\tFree "prize", call now\nham\tsee you at 5\tok?\n\nham\tok\n'
    for name in ("sms.tsv", "sms.txt", "SMSSpamCollection"):
        assert read_labelled_file(_write(tmp_path, name, lines)) == EXAMPLES


def test_csv_with_header_round_trips_quotes_commas_and_newlines(tmp_path):
    import csv

    examples = [*EXAMPLES, LabelledText("two\nlines", "ham")]
    path = tmp_path / "data.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "Label", "Text"])  # header matched case-insensitively
        writer.writerows([i, ex.label, ex.text] for i, ex in enumerate(examples))
    assert read_labelled_file(path) == examples


def test_tsv_with_header_in_any_column_order(tmp_path):
    path = _write(tmp_path, "data.tsv", 'text\tlabel\n"quoted" start\tham\nwin cash\tspam\n')
    assert read_labelled_file(path) == [
        LabelledText('"quoted" start', "ham"),  # TSV is not quoted: quotes stay text
        LabelledText("win cash", "spam"),
    ]


def test_utf8_byte_order_mark_does_not_hide_the_header(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("label,text\r\nham,caf\u00e9\r\n".encode("utf-8-sig"))
    assert read_labelled_file(path) == [LabelledText("caf\u00e9", "ham")]


def test_custom_column_names(tmp_path):
    csv_path = _write(tmp_path, "d.csv", "Category,Message\nspam,win\nham,hi\n")
    got = read_labelled_file(csv_path, text_column="Message", label_column="Category")
    assert got == [LabelledText("win", "spam"), LabelledText("hi", "ham")]
    tsv = _write(tmp_path, "d.tsv", "sms\tlabel\nhi\tham\n")  # one named, one default
    assert read_labelled_file(tsv, text_column="sms") == [LabelledText("hi", "ham")]
    jsonl = _write(tmp_path, "d.jsonl", '{"body": "hi", "y": "ham"}\n')
    assert read_labelled_file(jsonl, text_column="body", label_column="y") == [
        LabelledText("hi", "ham")
    ]


def test_json_lines_and_json_list(tmp_path):
    objects = [{"text": ex.text, "label": ex.label, "id": i} for i, ex in enumerate(EXAMPLES)]
    for name in ("d.jsonl", "d.ndjson"):
        lines = "\n".join(json.dumps(o) for o in objects) + "\n\n"
        assert read_labelled_file(_write(tmp_path, name, lines)) == EXAMPLES
    assert read_labelled_file(_write(tmp_path, "d.json", json.dumps(objects, indent=1))) == EXAMPLES
    numbered = _write(tmp_path, "n.jsonl", '{"text": "a", "label": 0}\n{"text": "b", "label": 1}')
    assert [ex.label for ex in read_labelled_file(numbered)] == ["0", "1"]


def test_header_sniffing(tmp_path):
    # No cell names text or label: headerless LABEL<TAB>TEXT, the first row is an example.
    path = _write(tmp_path, "a.tsv", "ham\tlabel me\nspam\twin\n")
    assert read_labelled_file(path)[0] == LabelledText("label me", "ham")
    # A cell named "label" makes the first row a header, and then "text" must be there too.
    with pytest.raises(DataError, match=r"no text column 'text' \(the columns are 'label', 'msg'"):
        read_labelled_file(_write(tmp_path, "b.tsv", "label\tmsg\nham\thi\n"))
    # Named columns need a header: a headerless file is not guessed at.
    with pytest.raises(DataError, match="first row names no 'sms' or 'label' column"):
        read_labelled_file(path, text_column="sms")


# --- reader errors -----------------------------------------------------------------------------


def test_missing_columns_list_the_columns_and_name_the_flag(tmp_path):
    path = _write(tmp_path, "d.csv", "text,category\nhi,ham\n")
    with pytest.raises(DataError) as err:
        read_labelled_file(path)
    message = str(err.value)
    assert "d.csv" in message and "no label column 'label'" in message
    assert "'text', 'category'" in message and "--label-column / data.label_column" in message
    assert "\n" not in message
    with pytest.raises(DataError, match=r"no text column 'body'.*--text-column / data.text_column"):
        read_labelled_file(path, text_column="body", label_column="category")
    with pytest.raises(DataError, match=r"line 2: no label key 'label'.*'text', 'y'"):
        read_labelled_file(
            _write(tmp_path, "d.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "y": 1}')
        )
    with pytest.raises(DataError, match=r"first row names no 'text' or 'label'.*'ham', 'hi'"):
        read_labelled_file(_write(tmp_path, "headerless.csv", "ham,hi\n"))


def test_empty_texts_are_skipped_with_one_warning_unless_all_are(tmp_path, caplog):
    path = _write(tmp_path, "d.csv", "label,text\nham,hi\nham,\nspam,  \nspam,win\n")
    with caplog.at_level(logging.WARNING, logger="scratchgpt.data.tables"):
        got = read_labelled_file(path)
    assert got == [LabelledText("hi", "ham"), LabelledText("win", "spam")]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped 2 row(s)" in warnings[0]
    empty = _write(tmp_path, "e.csv", "label,text,other\nham,,x\nspam,,y\n")
    with pytest.raises(
        DataError, match=r"text column 'text' is empty in all 2 rows.*--text-column"
    ):
        read_labelled_file(empty)
    with pytest.raises(DataError, match="text after the tab is empty in all 2 rows"):
        read_labelled_file(_write(tmp_path, "e.tsv", "ham\t\nspam\t \n"))


def test_an_empty_label_names_its_line(tmp_path):
    with pytest.raises(DataError, match=r"d\.csv, line 3: the label is empty"):
        read_labelled_file(_write(tmp_path, "d.csv", "label,text\nham,hi\n ,lost\n"))
    with pytest.raises(DataError, match=r"d\.tsv, line 2: the label is empty"):
        read_labelled_file(_write(tmp_path, "d.tsv", "ham\thi\n\tlost\n"))
    with pytest.raises(DataError, match="line 1: the label is empty"):
        read_labelled_file(_write(tmp_path, "d.jsonl", '{"text": "a", "label": null}\n'))


def test_malformed_json_names_its_line(tmp_path):
    bad = _write(tmp_path, "d.jsonl", '{"text": "a", "label": "x"}\n\n{"text": "b", "label": \n')
    with pytest.raises(DataError, match=r"d\.jsonl, line 3: not valid JSON"):
        read_labelled_file(bad)
    with pytest.raises(DataError, match=r"d\.json, line 2: not valid JSON"):
        read_labelled_file(_write(tmp_path, "d.json", '[{"text": "a", "label": "x"},\n oops]'))
    with pytest.raises(DataError, match="holds a JSON dict: expected a list of objects"):
        read_labelled_file(_write(tmp_path, "o.json", '{"text": "a", "label": "x"}'))
    with pytest.raises(DataError, match="line 1: a JSON list, not an object"):
        read_labelled_file(_write(tmp_path, "l.jsonl", '["a", "x"]\n'))


def test_files_without_rows(tmp_path):
    for name, content in [("e.tsv", ""), ("h.csv", "label,text\n"), ("e.jsonl", "\n\n")]:
        with pytest.raises(DataError, match=f"{name} holds no examples"):
            read_labelled_file(_write(tmp_path, name, content))
    with pytest.raises(DataError, match="2 fields where the header has 3"):
        read_labelled_file(_write(tmp_path, "r.csv", "label,text,id\nham,hi\n"))


# --- balancing, splitting, labels ---------------------------------------------------------------


def _skewed(n_ham: int = 40, n_spam: int = 9) -> list[LabelledText]:
    return [LabelledText(f"h{i}", "ham") for i in range(n_ham)] + [
        LabelledText(f"s{i}", "spam") for i in range(n_spam)
    ]


def test_balance_classes_undersamples_to_the_rarest_label():
    examples = _skewed()
    balanced = balance_classes(examples, seed=0)
    assert Counter(ex.label for ex in balanced) == {"ham": 9, "spam": 9}
    assert len(set(balanced)) == 18 and set(balanced) <= set(examples)
    assert balance_classes(examples, seed=0) == balanced  # deterministic
    other = balance_classes(examples, seed=1)
    assert {ex for ex in other if ex.label == "ham"} != {ex for ex in balanced if ex.label == "ham"}
    assert [ex.label for ex in balanced] != sorted(ex.label for ex in balanced)  # shuffled


def test_split_three_on_the_sms_file_is_stratified_disjoint_and_deterministic(shared_data):
    examples = read_labelled_file(shared_data("sms-spam.tsv"))
    train, val, test = split_three(examples, val_ratio=0.1, test_ratio=0.2, seed=0)
    assert sorted(train + val + test) == sorted(examples)  # disjoint and complete
    for label, n in Counter(ex.label for ex in examples).items():
        counts = [sum(ex.label == label for ex in part) for part in (train, val, test)]
        assert counts[2] == round(n * 0.2) and counts[1] == round(n * 0.1)
        assert abs(counts[0] / n - 0.7) < 0.01
    assert split_three(examples, val_ratio=0.1, test_ratio=0.2, seed=0) == (train, val, test)
    assert split_three(examples, val_ratio=0.1, test_ratio=0.2, seed=1)[2] != test


def test_split_three_keeps_every_label_in_every_split_and_validates_ratios():
    few = [LabelledText(f"r{i}", "rare") for i in range(3)] + _skewed(20, 0)
    train, val, test = split_three(few, val_ratio=0.1, test_ratio=0.2, seed=0)
    for part in (train, val, test):
        assert "rare" in {ex.label for ex in part}
    train, val, test = split_three(few, val_ratio=0.0, test_ratio=0.2, seed=0)
    assert val == [] and len(train) + len(test) == 23
    # Without validation it is the two-way split, example for example.
    assert (
        split_examples(few, test_ratio=0.2, seed=3)
        == (split_three(few, val_ratio=0.0, test_ratio=0.2, seed=3)[0::2])
    )
    for val_ratio, test_ratio in [(-0.1, 0.2), (0.1, 1.0), (0.5, 0.5)]:
        with pytest.raises(ConfigError, match="ratio"):
            split_three(few, val_ratio=val_ratio, test_ratio=test_ratio, seed=0)


def test_check_labels_needs_two():
    assert check_labels(EXAMPLES, source="d.tsv") == ["ham", "spam"]
    with pytest.raises(DataError, match=r"needs at least two labels; d\.tsv has only 'ham'"):
        check_labels(EXAMPLES[1:], source="d.tsv")


def test_map_labels_by_name_and_by_class_number():
    labels = ["ham", "spam"]
    examples = [*EXAMPLES, LabelledText("x", "1"), LabelledText("y", "0")]
    assert map_labels(examples, labels, source="t") == [1, 0, 0, 1, 0]
    for bad in ("eggs", "2", "-1"):
        with pytest.raises(DataError) as err:
            map_labels([*EXAMPLES, LabelledText("x", bad)], labels, source="t.csv")
        assert str(err.value) == (
            f"t.csv: label {bad!r} (example 4) is not one of the training labels "
            "['ham', 'spam'] nor a class number 0..1"
        )


def test_truncate_rows_counts_the_cut_rows():
    rows = [[1, 2, 3], [4], [5, 6, 7, 8, 9]]
    cut, n = truncate_rows(rows, 3)
    assert cut == [[1, 2, 3], [4], [5, 6, 7]] and n == 1
    assert rows[2] == [5, 6, 7, 8, 9]  # the input is left alone
    assert truncate_rows(rows, 2)[1] == 2
    with pytest.raises(ConfigError, match="max_length=0"):
        truncate_rows(rows, 0)
