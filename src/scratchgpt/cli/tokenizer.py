"""``scratchgpt tokenizer train|encode``: a byte-level BPE from scratch; how a text is cut."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "tokenizer",
        help="train a BPE tokenizer, or show how a tokenizer cuts a text",
        description="Train a byte-level BPE tokenizer, or show the ids and pieces of a text.",
    )
    tsub = p.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=type(p))
    t = tsub.add_parser("train", help="train a byte-level BPE on text files")
    t.add_argument("--data", nargs="+", required=True, type=Path, help="UTF-8 text files")
    t.add_argument("--vocab-size", type=int, required=True, help="exact vocabulary size")
    t.add_argument("--out", type=Path, required=True, help="output JSON file (e.g. tok.json)")
    t.add_argument(
        "--special-tokens",
        nargs="*",
        default=["<|endoftext|>"],
        metavar="TOKEN",
        help="special tokens, or ROLE=TOKEN pairs for roles bos, eos, pad, unk "
        "[default: <|endoftext|>]",
    )
    t.add_argument(
        "--pattern",
        default="gpt2",
        help="pre-tokenisation regex: gpt2, cl100k or a raw regex [default: gpt2]",
    )
    t.set_defaults(run=run_train)
    t = tsub.add_parser("encode", help="print the ids of a text and the piece each one covers")
    t.add_argument("text", help="the text to encode")
    t.add_argument(
        "--tokenizer",
        default="gpt2",
        help="gpt2, a saved tokenizer (tok.json or a directory), a checkpoint directory, or a "
        "directory with OpenAI's encoder.json + vocab.bpe [default: gpt2]",
    )
    t.set_defaults(run=run_encode)


def run_train(args: argparse.Namespace) -> int:
    from ..errors import TokenizerError
    from ..tokenizers import train_bpe_files

    roles = [s.split("=", 1) for s in args.special_tokens if "=" in s]
    if roles and len(roles) != len(args.special_tokens):
        raise TokenizerError("--special-tokens: give either all ROLE=TOKEN pairs or none")
    special = {r: t for r, t in roles} if roles else list(args.special_tokens)
    tok = train_bpe_files(args.data, args.vocab_size, special_tokens=special, pattern=args.pattern)
    path = tok.save(args.out)
    print(f"trained a {tok.vocab_size}-token BPE vocabulary: {path}")
    return 0


def run_encode(args: argparse.Namespace) -> int:
    from ..checkpoint import is_checkpoint, load_checkpoint
    from ..tokenizers import explain_encoding, get_tokenizer

    if is_checkpoint(args.tokenizer):
        _, tokenizer = load_checkpoint(args.tokenizer)
    else:
        tokenizer = get_tokenizer(args.tokenizer)
    pieces = explain_encoding(tokenizer, args.text)
    print(f"{len(pieces)} tokens: {[i for i, _ in pieces]}")
    for i, piece in pieces:
        print(f"{i:>8}  {piece!r}")
    return 0
