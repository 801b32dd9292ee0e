"""`scratchgpt prepare`: the same command for a local file, a named corpus or many files."""

import dataclasses
import json

import numpy as np

from scratchgpt.cli import build_parser, main
from scratchgpt.data import DOWNLOADS, load_prepared

from .test_sources import serve


def test_prepare_named_corpus_with_gpt2_files_and_cache_dir(
    tmp_path, shared_data, monkeypatch, capsys
):
    body = shared_data("the-verdict.txt").read_bytes()
    gpt2_dir = shared_data("gpt2-encoder.json").parent  # OpenAI's two files: offline GPT-2
    cache, out = tmp_path / "cache", tmp_path / "verdict"
    args = ["prepare", "--data", "the-verdict", "--tokenizer", str(gpt2_dir), "--out", str(out)]
    args += ["--cache-dir", str(cache), "--val-fraction", "0.1", "--workers", "1"]
    with serve({"/v.txt": (body, len(body))}) as (base, hits):
        corpus = dataclasses.replace(DOWNLOADS["the-verdict"], url=base + "/v.txt")
        monkeypatch.setitem(DOWNLOADS, "the-verdict", corpus)
        assert main(args) == 0
        assert hits == ["/v.txt"] and (cache / "the-verdict.txt").read_bytes() == body
    line = capsys.readouterr().out
    assert line.count("\n") == 1
    assert line.startswith(f"prepared {out}: 4,630 train + 515 val tokens, 1 documents")
    assert "uint16 (tiktoken tokenizer, 50,257 ids)" in line
    data = load_prepared(out)
    assert data.meta["sources"] == ["the-verdict"] and data.num_tokens("val") == 515
    # The same command again: the cached download and the finished shards are reused.
    assert main(args) == 0
    assert "4,630 train + 515 val tokens" in capsys.readouterr().out


def test_prepare_many_sources_with_a_char_tokenizer(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("hello there\n")
    rows = [{"body": f"document number {i}"} for i in range(20)]
    (tmp_path / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    code = main(
        [
            "prepare",
            "--data",
            str(tmp_path / "a.txt"),
            "--data",
            str(tmp_path / "b.jsonl"),
            "--text-field",
            "body",
            "--tokenizer",
            "char",
            "--out",
            str(out),
            "--val-fraction",
            "0.25",
            "--shard-tokens",
            "64",
        ]
    )
    assert code == 0
    assert "21 documents" in capsys.readouterr().out
    data = load_prepared(out)
    assert data.meta["documents"] == {"train": 16, "val": 5}
    assert all(len(s) <= 64 for s in data.shards("train")) and len(data.shards("train")) > 3
    val = data.tokenizer.decode(np.concatenate(data.shards("val")).tolist())
    assert val.split("\n\n") == [f"document number {i}" for i in (2, 6, 10, 14, 18)]


def test_prepare_user_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("fa\u00e7ade".encode("latin-1"))
    out = str(tmp_path / "o")
    assert main(["prepare", "--data", str(bad), "--tokenizer", "char", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "latin1.txt is not UTF-8 text (invalid byte at offset 2)" in err
    assert "Traceback" not in err and err.count("\n") == 1
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"content": "x"}\n')
    assert main(["prepare", "--data", str(rows), "--tokenizer", "char", "--out", out]) == 2
    assert "--text-field" in capsys.readouterr().err


def test_prepare_help_lists_every_option():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a.choices, dict))
    text = sub.choices["prepare"].format_help()
    for flag in [
        "--data",
        "--tokenizer",
        "--out",
        "--val-fraction",
        "--workers",
        "--shard-tokens",
        "--text-field",
        "--cache-dir",
        "hf:NAME[:CONFIG][@SPLIT]",
    ]:
        assert flag in text
