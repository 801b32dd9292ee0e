"""``scratchgpt download`` and ``scratchgpt export``: GPT-2 weights in, Hugging Face out."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .flags import short_usage


def register(sub: Any) -> None:
    p = sub.add_parser(
        "download",
        help="download OpenAI's GPT-2 weights into the Hugging Face cache",
        description="Download a GPT-2 (safetensors weights + tokenizer) from the Hugging Face "
        "hub into its cache (HF_HUB_CACHE); an interrupted download resumes.",
    )
    p.add_argument("name", metavar="NAME", help="gpt2, gpt2-medium, gpt2-large or gpt2-xl")
    p.set_defaults(run=run_download)

    p = sub.add_parser(
        "export",
        help="export a checkpoint for the Hugging Face ecosystem",
        description="Write a checkpoint as Hugging Face GPT-2 (config.json, model.safetensors, "
        "tokenizer files) that transformers' GPT2LMHeadModel and AutoTokenizer load.",
        usage=short_usage("export"),
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        required=True,
        metavar="DIR",
        help="a checkpoint or run directory",
    )
    p.add_argument("--format", choices=["hf"], default="hf", help="output format [default: hf]")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    p.set_defaults(run=run_export)


def run_download(args: argparse.Namespace) -> int:
    from ..pretrained import download_gpt2

    path = download_gpt2(args.name)
    print(f"{args.name}: {path}\nuse it with: scratchgpt generate --init-from {args.name}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from ..checkpoint import load_checkpoint
    from ..pretrained import export_hf

    model, tokenizer = load_checkpoint(args.checkpoint)
    out = export_hf(model, tokenizer, args.out)
    print(
        f"exported {args.checkpoint} to {out}\nload it with: "
        f"transformers.GPT2LMHeadModel.from_pretrained({str(out)!r})"
    )
    return 0
