"""``scratchgpt lora merge|export``: what to do with a trained LoRA adapter.

A LoRA run's checkpoints are adapters alone (megabytes, pinned to their base by a checksum;
see :mod:`scratchgpt.adapters`). ``merge`` writes base + adapter as one plain model any
command takes (``generate``, ``export --format hf``, ``classify predict``); ``export
--format peft`` writes the adapter as Hugging Face PEFT reads it, for
``PeftModel.from_pretrained(<the base exported with scratchgpt export --format hf>, DIR)``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .flags import short_usage


def register(sub: Any) -> None:
    p = sub.add_parser(
        "lora",
        help="merge a LoRA adapter into its base, or export it for PEFT",
        description="Work with a LoRA run's adapter (a run directory or one checkpoint).",
    )
    lsub = p.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=type(p))
    m = lsub.add_parser(
        "merge",
        help="write base + adapter as one plain checkpoint (or classifier)",
        usage=short_usage("lora merge", "ADAPTER --out DIR"),
    )
    m.add_argument("adapter", type=Path, metavar="ADAPTER", help="a LoRA run or checkpoint")
    m.add_argument("--out", type=Path, required=True, metavar="DIR", help="where to write it")
    m.set_defaults(run=run_merge)
    e = lsub.add_parser(
        "export",
        help="write the adapter in Hugging Face PEFT's format",
        usage=short_usage("lora export", "ADAPTER --out DIR"),
    )
    e.add_argument("adapter", type=Path, metavar="ADAPTER", help="a LoRA run or checkpoint")
    e.add_argument("--out", type=Path, required=True, metavar="DIR", help="where to write it")
    e.add_argument(
        "--format", choices=("peft",), default="peft", help="the adapter format [default: peft]"
    )
    e.add_argument(
        "--base",
        metavar="NAME_OR_DIR",
        help="what adapter_config.json names as the base model (default: the adapter's "
        "init_from); PEFT loads the adapter onto the model you pass it either way",
    )
    e.set_defaults(run=run_export)


def run_merge(args: argparse.Namespace) -> int:
    from ..merge import merge_adapter

    out = merge_adapter(args.adapter, args.out)
    print(f"merged: {out}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from ..adapters import load_adapter_model
    from ..errors import ConfigError
    from ..lora import export_peft

    model, _, info = load_adapter_model(args.adapter, merge=False)
    if info.get("labels") is not None:
        raise ConfigError(
            f"{args.adapter} is a classifier's adapter: PEFT export is for language models' "
            f"adapters (merge it with scratchgpt lora merge {args.adapter} --out DIR)"
        )
    out = export_peft(
        model, args.out, base_model_name_or_path=args.base or info["base"]["init_from"]
    )
    print(f"PEFT adapter: {out}")
    return 0
