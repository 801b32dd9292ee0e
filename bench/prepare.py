"""Throughput of ``scratchgpt prepare`` with GPT-2's BPE, on one core and on all, against a
plain single-process tiktoken loop in the same run.

The corpus is tiny shakespeare repeated to about 100 MB, one 1.1 MB document per file (a
directory of .txt files), so both sides see the same documents. The peer is the loop of
nanoGPT's OpenWebText/FineWeb preparation: for each document ``encode_ordinary``, the
end-of-text id between documents, ``np.uint16`` ids appended to one file. Ours reads the same
files through :func:`scratchgpt.data.prepare` (shards, checksums, validation split and
metadata included). The ids must be identical (ours: train then val shards), or the run fails.

GPT-2's tokenizer is built offline from OpenAI's two files in ../shared/data. Run from the
repository root:

    python bench/prepare.py [--data PATH] [--mb 100] [--repeats 1] [--workers N]

It prints one JSON line per setting and writes ``bench/results/prepare-cpu-<date>.json``.
MB/s counts the UTF-8 bytes of text per second of wall time, reading and writing included.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def peer_tiktoken(encoding: Any, files: list[Path], out: Path, eot: int) -> int:
    """The plain loop: encode each document in this process and append its uint16 ids."""
    count = 0
    with open(out, "wb") as f:
        for n, file in enumerate(files):
            ids = encoding.encode_ordinary(file.read_text(encoding="utf-8"))
            if n:
                ids = [eot, *ids]
            f.write(np.asarray(ids, dtype=np.uint16).tobytes())
            count += len(ids)
    return count


def main() -> None:
    # Imported here, not at the top: spawned workers re-import this file as their main module.
    import tiktoken
    from common import best_time, header, write_results  # bench/common.py

    from scratchgpt.data import load_prepared, prepare
    from scratchgpt.data.parallel import cpu_count
    from scratchgpt.tokenizers import TiktokenTokenizer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=ROOT.parent / "shared" / "data" / "tinyshakespeare.txt",
        help="the text to repeat (default: ../shared/data/tinyshakespeare.txt); OpenAI's "
        "gpt2-encoder.json and gpt2-vocab.bpe must sit beside it",
    )
    parser.add_argument("--mb", type=float, default=100.0, help="corpus size in MB")
    parser.add_argument("--repeats", type=int, default=1, help="best of this many runs")
    parser.add_argument("--workers", type=int, default=None, help="all cores (default: all)")
    args = parser.parse_args()

    shared = args.data.parent
    tokenizer = TiktokenTokenizer.from_gpt2_files(
        shared / "gpt2-encoder.json", shared / "gpt2-vocab.bpe"
    )
    text = args.data.read_text(encoding="utf-8")
    copies = max(1, round(args.mb * 1e6 / len(text.encode("utf-8"))))
    all_cores = args.workers or cpu_count()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        files = []
        for i in range(copies):
            files.append(corpus / f"{i:04d}.txt")
            files[-1].write_text(text, encoding="utf-8")
        mb = copies * len(text.encode("utf-8")) / 1e6

        def row(setting: str, workers: int, seconds: float, tokens: int) -> dict[str, Any]:
            result = {
                "name": "prepare",
                "setting": setting,
                "workers": workers,
                "seconds": round(seconds, 3),
                "mb": round(mb, 1),
                "mb_per_s": round(mb / seconds, 2),
                "tokens": tokens,
                "tokens_per_s": round(tokens / seconds),
            }
            print(json.dumps(result), flush=True)
            rows.append(result)
            return result

        peer_out = Path(tmp) / "peer.bin"
        encoding = tokenizer.encoding
        eot = tokenizer.eot_id
        seconds, tokens = best_time(
            lambda: peer_tiktoken(encoding, files, peer_out, eot), args.repeats
        )
        row("tiktoken_loop", 1, seconds, tokens)
        peer_ids = np.fromfile(peer_out, dtype=np.uint16)

        runs = iter(range(1_000_000))
        for workers in sorted({1, all_cores}):

            def run(workers: int = workers) -> Path:
                # A fresh directory each time: an existing one would be reused, not rebuilt.
                out = Path(tmp) / f"out-{next(runs)}"
                return prepare(corpus, tokenizer=tokenizer, out_dir=out, num_workers=workers)

            seconds, out = best_time(run, args.repeats)
            data = load_prepared(out)
            ids = np.concatenate(data.shards("train") + data.shards("val"))
            if not np.array_equal(ids, peer_ids):
                sys.exit(f"scratchgpt prepare with {workers} workers gives other ids than tiktoken")
            row("scratchgpt_prepare", workers, seconds, len(ids))

    peer_s = rows[0]["seconds"]
    result: dict[str, Any] = {
        **header("prepare"),
        "cores": cpu_count(),
        "python": platform.python_version(),
        "peers": {"tiktoken": tiktoken.__version__},
        "data": f"{args.data} x {copies} files",
        "data_mb": round(mb, 1),
        "repeats": args.repeats,
        "ids_equal": True,
        "rows": rows,
        # Speed as a multiple of the plain tiktoken loop's (> 1: faster than the peer).
        "speed_vs_tiktoken_loop": {
            f"scratchgpt_{r['workers']}_workers": round(peer_s / r["seconds"], 2) for r in rows[1:]
        },
    }
    write_results(result)


if __name__ == "__main__":
    main()
