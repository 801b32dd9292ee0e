"""``scratchgpt prepare``: any data, tokenized into binary token shards on every core."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .flags import short_usage


def register(sub: Any) -> None:
    p = sub.add_parser(
        "prepare",
        help="tokenize data into binary token shards (a short story or ten billion tokens)",
        description="Tokenize text into flat binary shards (uint16 ids when the vocabulary "
        "fits, else uint32) plus meta.json and the tokenizer, on every core, with an "
        "end-of-text token between documents and a validation split. Running the same command "
        "again resumes an interrupted run.",
        usage=short_usage("prepare"),
    )
    p.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="SPEC",
        help="a named corpus (pydocs, the-verdict, tinyshakespeare), a .txt/.jsonl/.parquet "
        "file, a directory, a glob, or hf:NAME[:CONFIG][@SPLIT] (a Hugging Face dataset: the "
        "data extra); repeat the flag for several",
    )
    p.add_argument(
        "--tokenizer",
        required=True,
        metavar="NAME_OR_PATH",
        help="gpt2, char or simple (built from the data), bpe (trained on the data, see "
        "--vocab-size), a saved tokenizer, or a directory with OpenAI's encoder.json + vocab.bpe",
    )
    p.add_argument("--vocab-size", type=int, help="vocabulary size of a --tokenizer bpe")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.01,
        help="share of the documents kept for validation; with too few documents, the last "
        "share of the tokens [default: 0.01]",
    )
    p.add_argument("--workers", type=int, help="tokenizing processes (default: one per core)")
    p.add_argument(
        "--shard-tokens",
        type=int,
        default=100_000_000,
        help="tokens per shard file [default: 100000000]",
    )
    p.add_argument(
        "--text-field",
        default="text",
        help="the field holding the text in .jsonl, .parquet and hf: rows [default: text]",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        help="where downloads are cached (default: $SCRATCHGPT_CACHE, else "
        "$XDG_CACHE_HOME/scratchgpt, else ~/.cache/scratchgpt)",
    )
    p.add_argument(
        "--streaming",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="stream hf: datasets (--no-streaming downloads them whole into the Hugging Face "
        "cache) [default: on]",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import time

    from ..data import load_prepared, prepare

    start = time.perf_counter()
    out = prepare(
        args.data,
        tokenizer=args.tokenizer,
        vocab_size=args.vocab_size,
        out_dir=args.out,
        val_fraction=args.val_fraction,
        num_workers=args.workers,
        shard_tokens=args.shard_tokens,
        text_field=args.text_field,
        cache_dir=args.cache_dir,
        streaming=args.streaming,
    )
    seconds = time.perf_counter() - start
    meta = load_prepared(out, verify=False).meta
    tokens, docs = meta["tokens"], meta["documents"]
    print(
        f"prepared {out}: {tokens['train']:,} train + {tokens['val']:,} val tokens, "
        f"{docs['train'] + docs['val']:,} documents, {len(meta['shards'])} shards of "
        f"{meta['dtype']} ({meta['tokenizer']['type']} tokenizer, "
        f"{meta['tokenizer']['vocab_size']:,} ids) in {seconds:.1f} s"
    )
    return 0
