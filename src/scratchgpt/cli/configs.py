"""``scratchgpt config show|convert``: check a run config, or translate another project's."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    c = sub.add_parser(
        "config",
        help="check, show or convert run configs",
        description="Run configs are YAML files with the sections model, data, tokenizer and "
        "training (see configs/).",
    )
    csub = c.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=type(c))
    show = csub.add_parser(
        "show", help="validate a run config and print it with every field explicit"
    )
    show.add_argument("path", type=Path, help="a YAML or JSON run config")
    show.set_defaults(run=run_show)
    conv = csub.add_parser(
        "convert",
        help="convert an older JSON config (flat, or seed 002's sections) to a YAML run config",
    )
    conv.add_argument("source", type=Path, help="the JSON (or YAML) config to convert")
    conv.add_argument("target", type=Path, help="the YAML file to write")
    conv.set_defaults(run=run_convert)


def run_show(args: argparse.Namespace) -> int:
    from ..config import load_run_config

    print(load_run_config(args.path).to_yaml(), end="")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from ..config import convert_config, read_config_file
    from ..files import atomic_write_text

    run = convert_config(read_config_file(args.source))
    args.target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.target, run.to_yaml())
    print(f"wrote {args.target} (check it with: scratchgpt config show {args.target})")
    return 0
