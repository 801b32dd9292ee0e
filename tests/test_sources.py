"""Data specs -> documents: verified downloads (from a loopback server), local files, hf: specs.

No test touches the network or ~/.cache: downloads go to an http.server on 127.0.0.1 started
here, into a cache under tmp_path.
"""

import contextlib
import dataclasses
import hashlib
import http.server
import json
import socket
import threading
from pathlib import Path

import pytest

from scratchgpt.data import (
    DOWNLOADS,
    DataError,
    cache_directory,
    corpus_path,
    iter_documents,
    load_text,
    resolve_sources,
    sources as sources_module,
)
from scratchgpt.data.sources import split_text
from scratchgpt.tokenizers import TiktokenTokenizer

BODY = "A short story.\nIt has two lines, and one more: é ☃ 🎉\n".encode()


@contextlib.contextmanager
def serve(routes: dict[str, tuple[bytes, int]]):
    """An HTTP server on 127.0.0.1:<free port>: ``routes[path] = (body, bytes_to_send)``.

    It always announces the whole body's Content-Length, so sending fewer bytes is a transfer
    cut short. Yields (base URL, list of requested paths).
    """
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            if self.path not in routes:
                self.send_error(404)
                return
            body, sent = routes[self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[:sent])  # HTTP/1.0: the connection closes after this

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    finally:
        httpd.shutdown()
        httpd.server_close()


def pin(monkeypatch, name: str, url: str, body: bytes) -> None:
    """Point the named corpus at ``url`` with ``body``'s sha256 as its pin."""
    corpus = dataclasses.replace(
        DOWNLOADS[name], url=url, sha256=hashlib.sha256(body).hexdigest(), size=len(body)
    )
    monkeypatch.setitem(DOWNLOADS, name, corpus)


def test_pins_match_the_vendored_copies(shared_data):
    for name, file in [
        ("the-verdict", "the-verdict.txt"),
        ("tinyshakespeare", "tinyshakespeare.txt"),
    ]:
        data = shared_data(file).read_bytes()
        assert hashlib.sha256(data).hexdigest() == DOWNLOADS[name].sha256
        assert len(data) == DOWNLOADS[name].size
        assert DOWNLOADS[name].url.startswith("https://raw.githubusercontent.com/")


def test_download_verifies_caches_and_reuses(tmp_path, monkeypatch, shared_data):
    body = shared_data("the-verdict.txt").read_bytes()  # the real pin, served locally
    cache = tmp_path / "cache"
    with serve({"/v.txt": (body, len(body))}) as (base, hits):
        monkeypatch.setitem(
            DOWNLOADS,
            "the-verdict",
            dataclasses.replace(DOWNLOADS["the-verdict"], url=base + "/v.txt"),
        )
        text = load_text("the-verdict", cache_dir=cache)
        assert text == body.decode("utf-8") and text.startswith("I HAD always thought")
        assert (cache / "the-verdict.txt").read_bytes() == body
        assert sorted(p.name for p in cache.iterdir()) == ["the-verdict.txt"]  # no temp file
        assert load_text("the-verdict", cache_dir=cache) == text
        assert hits == ["/v.txt"]  # the second read came from the cache
        # A damaged cache entry is noticed and downloaded again.
        (cache / "the-verdict.txt").write_bytes(body[:-10] + b"XXXXXXXXXX")
        assert load_text("the-verdict", cache_dir=cache) == text
        assert hits == ["/v.txt", "/v.txt"]


def test_checksum_mismatch_caches_nothing(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    with serve({"/t.txt": (b"an error page from a proxy", 26)}) as (base, _):
        pin(monkeypatch, "tinyshakespeare", base + "/t.txt", BODY)
        with pytest.raises(DataError, match=r"sha256.*pinned.*nothing was cached") as info:
            corpus_path("tinyshakespeare", cache_dir=cache)
    assert base + "/t.txt" in str(info.value)
    assert list(cache.iterdir()) == []


def test_truncated_transfer_caches_nothing(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    with serve({"/t.txt": (BODY, len(BODY) // 2)}) as (base, _):
        pin(monkeypatch, "tinyshakespeare", base + "/t.txt", BODY)
        with pytest.raises(DataError, match=rf"cut short: {len(BODY) // 2} of {len(BODY)} bytes"):
            corpus_path("tinyshakespeare", cache_dir=cache)
    assert list(cache.iterdir()) == []  # neither the final file nor a .part file


def test_server_down_names_url_and_local_file_option(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/the-verdict.txt"
    pin(monkeypatch, "the-verdict", url, BODY)
    with pytest.raises(DataError) as info:
        load_text("the-verdict", cache_dir=tmp_path / "cache")
    message = str(info.value)
    assert f"could not download the-verdict from {url}" in message
    assert "--data path/to/the-verdict.txt" in message
    assert not any((tmp_path / "cache").iterdir())


def test_cache_directory_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("SCRATCHGPT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_directory() == tmp_path / "xdg" / "scratchgpt"
    monkeypatch.setenv("SCRATCHGPT_CACHE", str(tmp_path / "mine"))
    assert cache_directory() == tmp_path / "mine"
    assert cache_directory(tmp_path / "flag") == tmp_path / "flag"
    monkeypatch.delenv("SCRATCHGPT_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_directory() == Path.home() / ".cache" / "scratchgpt"


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_files_directories_and_globs(tmp_path):
    root = tmp_path / "corpus"
    (root / "b").mkdir(parents=True)
    (root / ".hidden").mkdir()
    (root / "a.txt").write_text("first file\n")
    write_jsonl(root / "b" / "c.jsonl", [{"text": "line one"}, {"text": ""}, {"text": "line two"}])
    (root / "b" / "notes.md").write_text("not data")  # other suffixes are skipped in a directory
    (root / ".hidden" / "x.txt").write_text("hidden")
    (root / "blank.txt").write_text(" \n\n")  # a blank document is skipped
    expected = ["first file\n", "line one", "line two"]
    assert list(iter_documents(root)) == expected
    assert list(iter_documents(str(root / "**" / "*.jsonl"))) == expected[1:]  # ** recurses
    assert list(iter_documents(str(root / "*.txt"))) == expected[:1]
    assert load_text(root) == "\n\n".join(expected)
    # Several specs are read in order; an explicit file of any suffix is text.
    assert list(iter_documents([root / "b" / "notes.md", root / "a.txt"])) == [
        "not data",
        "first file\n",
    ]
    with pytest.raises(DataError, match="matched no files"):
        load_text(str(tmp_path / "*.nothing"))
    with pytest.raises(DataError, match="neither a named corpus"):
        load_text(tmp_path / "missing.txt")


def test_text_field_and_jsonl_errors(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"body": "x", "id": 1}, {"body": "y", "id": 2}])
    assert list(iter_documents(path, text_field="body")) == ["x", "y"]
    with pytest.raises(
        DataError, match=r"d\.jsonl, line 1: no 'text' field \(it has 'body', 'id'\).*--text-field"
    ):
        list(iter_documents(path))
    with pytest.raises(DataError, match=r"'id' field is a int, not text"):
        list(iter_documents(path, text_field="id"))
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(
        DataError, match=r"bad\.jsonl is not UTF-8 text \(invalid byte at offset 28, line 2\)"
    ):
        list(iter_documents(bad))
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(DataError, match=r"broken\.jsonl, line 2: not JSON"):
        list(iter_documents(broken))


def test_binary_and_non_utf8_files_name_file_and_offset(tmp_path, monkeypatch):
    binary = tmp_path / "model.bin.txt"
    binary.write_bytes(b"looks fine\x00\x01\x02")
    with pytest.raises(DataError, match=r"model\.bin\.txt looks like a binary file.*offset 10"):
        load_text(binary)
    # Read in tiny blocks: the bad byte's offset is still counted from the file's start, and a
    # multi-byte character cut by a block boundary is not an error.
    monkeypatch.setattr(sources_module, "PIECE_CHARS", 5)
    good = "é☃🎉 line\nnext line\n" * 3
    (tmp_path / "good.txt").write_text(good, encoding="utf-8")
    assert load_text(tmp_path / "good.txt") == good
    (tmp_path / "bad.txt").write_bytes(good.encode() + b"tail \xff")
    with pytest.raises(
        DataError,
        match=rf"bad\.txt \(found in directory .*\) is not UTF-8 text \(invalid byte at "
        rf"offset {len(good.encode()) + 5}\)",
    ):
        list(iter_documents(tmp_path))


def test_split_text_is_a_token_boundary_for_gpt2(shared_data):
    text = shared_data("tinyshakespeare.txt").read_text(encoding="utf-8")[:200_000]
    pieces = list(split_text(text, 3_000))
    assert "".join(pieces) == text and len(pieces) > 60
    assert max(map(len, pieces)) <= 3_000
    data = shared_data("gpt2-encoder.json").parent
    gpt2 = TiktokenTokenizer.from_gpt2_files(data / "gpt2-encoder.json", data / "gpt2-vocab.bpe")
    assert [i for p in pieces for i in gpt2.encode(p)] == gpt2.encode(text)
    # Runs of blank lines or spaces are never cut: they would tokenize differently.
    assert list(split_text("a\n\nb\n\nc " * 10, 5)) == ["a\n\nb\n\nc " * 10]
    assert list(split_text("aa\nbb\ncc\ndd", 4)) == ["aa\n", "bb\n", "cc\n", "dd"]


def test_parquet_file(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"content": ["alpha", None, "beta"], "n": [1, 2, 3]}), path)
    assert list(iter_documents(path, text_field="content")) == ["alpha", "beta"]
    with pytest.raises(DataError, match=r"no 'text' column \(it has content, n\)"):
        list(iter_documents(path))
    with pytest.raises(DataError, match="'n' column holds int64, not text"):
        list(iter_documents(path, text_field="n"))
    (tmp_path / "fake.parquet").write_text("not parquet")
    with pytest.raises(DataError, match=r"fake\.parquet is not a readable Parquet file"):
        list(iter_documents(tmp_path / "fake.parquet"))


def test_hf_spec_parsing():
    (src,) = resolve_sources("hf:HuggingFaceFW/fineweb-edu:sample-10BT")
    assert (src.kind, src.location, src.config, src.split) == (
        "hf",
        "HuggingFaceFW/fineweb-edu",
        "sample-10BT",
        "train",
    )
    (src,) = resolve_sources("hf:roneneldan/TinyStories@validation")
    assert (src.location, src.config, src.split) == ("roneneldan/TinyStories", None, "validation")
    with pytest.raises(DataError, match=r"hf:NAME\[:CONFIG\]\[@SPLIT\]"):
        resolve_sources("hf:")


@pytest.mark.parametrize("streaming", [True, False])
def test_hf_datasets_reads_local_jsonl_and_parquet(tmp_path, monkeypatch, streaming):
    pytest.importorskip("datasets")
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    jsonl = write_jsonl(
        tmp_path / "d.jsonl", [{"story": "Once upon a time."}, {"story": "The end."}]
    )
    parquet = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["row one", "row two", "row three"]}), parquet)
    cache = tmp_path / "cache"
    read = {"cache_dir": cache, "streaming": streaming}
    assert list(iter_documents(f"hf:{jsonl}", text_field="story", **read)) == [
        "Once upon a time.",
        "The end.",
    ]
    assert list(iter_documents(f"hf:{parquet}", **read)) == ["row one", "row two", "row three"]
    with pytest.raises(DataError, match=r"row 0: no 'text' field \(it has 'story'\)"):
        list(iter_documents(f"hf:{jsonl}", **read))
    with pytest.raises(DataError, match=r"could not open the Hugging Face dataset hf:.*@nope"):
        list(iter_documents(f"hf:{parquet}@nope", **read))
