"""``scratchgpt info``: a model's config and parameter count, without building its weights."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .flags import short_usage


def register(sub: Any) -> None:
    p = sub.add_parser(
        "info",
        help="show a model config and its parameter count",
        description="Show a model config and its parameter count (no flag: list the presets).",
        usage=short_usage("info"),
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--preset", metavar="NAME", help="a preset name (scratchgpt info lists them)"
    )
    group.add_argument("--config", type=Path, help="a JSON or YAML model config file")
    group.add_argument(
        "--checkpoint", type=Path, metavar="DIR", help="a checkpoint or run directory"
    )
    p.add_argument(
        "--breakdown",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="where the parameters are: embeddings, each block's attention, feed-forward and "
        "norms, final norm, output head, with the formulas (alone: the book's GPT_CONFIG_124M)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import read_checkpoint_info
    from ..config import PRESETS, GPTConfig, load_model_config, preset
    from ..params import count_parameters

    if args.preset is None and args.config is None and args.checkpoint is None:
        if args.breakdown:
            print("The book's GPT_CONFIG_124M (untied output head, no QKV bias):")
            return _print_breakdown(GPTConfig())
        for name in PRESETS:
            print(f"{name:<12} {count_parameters(preset(name)):>15,} parameters")
        return 0
    meta: dict[str, Any] = {}
    if args.checkpoint:
        cfg, meta = read_checkpoint_info(args.checkpoint)
    else:
        cfg = preset(args.preset) if args.preset else load_model_config(args.config)
    print(json.dumps(cfg.to_dict(), indent=2))
    if meta.get("step") is not None:
        print(f"trained steps: {meta['step']}, val loss: {meta.get('val_loss')}")
    if args.breakdown:
        return _print_breakdown(cfg)
    print(f"parameters: {count_parameters(cfg):,}")
    return 0


def _print_breakdown(cfg: Any) -> int:
    from ..params import count_parameters, format_breakdown, parameter_breakdown

    breakdown = parameter_breakdown(cfg)
    counted = count_parameters(cfg)
    print(format_breakdown(breakdown))
    check = "matches" if breakdown.count == counted else "DOES NOT MATCH"
    print(f"parameters: {counted:,} (sum(p.numel() for p in model.parameters()); {check})")
    return 0 if breakdown.count == counted else 1
