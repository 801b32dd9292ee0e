"""``scratchgpt viz ...`` and ``scratchgpt plot``: the pictures (the plot extra)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .generate import add_model_source


def register(sub: Any) -> None:
    p = sub.add_parser(
        "viz",
        help="plot attention maps, positional encodings, training curves, layer statistics",
        description="Draw a figure as a PNG (needs matplotlib: the plot extra).",
    )
    vsub = p.add_subparsers(dest="plot", metavar="PLOT", required=True, parser_class=type(p))
    v = vsub.add_parser(
        "attention",
        help="attention heatmap of a text at one layer and head (or all heads)",
        description="Attention weights of a model on a text: rows are the tokens attending, "
        "columns the tokens attended to. Works with a GPT checkpoint, GPT-2 (--init-from) "
        "or a classifier trained by `classify train`.",
    )
    _model_and_text(v)
    v.add_argument("--layer", type=int, default=0, help="block index, from 0 [default: 0]")
    which = v.add_mutually_exclusive_group()
    which.add_argument("--head", type=int, default=0, help="head index, from 0 [default: 0]")
    which.add_argument(
        "--all-heads",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="a grid of every head of the layer",
    )
    v = vsub.add_parser(
        "positions", help="the sinusoidal encoding's patterns and similarity against distance"
    )
    v.add_argument("--out", type=Path, required=True, metavar="PNG", help="output PNG file")
    v.add_argument("--n-positions", type=int, default=64, help="positions shown [default: 64]")
    v.add_argument("--dim", type=int, default=64, help="encoding dimension [default: 64]")
    v.add_argument(
        "--checkpoint",
        type=Path,
        metavar="DIR",
        help="also plot this GPT checkpoint's learned position table's similarity curve",
    )
    v = vsub.add_parser("curves", help="train and validation loss (and accuracy) of a run")
    v.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory (metrics.jsonl)")
    v.add_argument("--out", type=Path, required=True, metavar="PNG", help="output PNG file")
    v = vsub.add_parser(
        "layers", help="hidden-state norms and layer-to-layer cosine similarity on a text"
    )
    _model_and_text(v)
    p.set_defaults(run=run_viz)

    p = sub.add_parser(
        "plot",
        help="plot a training run's loss curves (by step and by tokens seen) as a PNG",
        description="Draw the train and validation loss of a run directory's metrics.jsonl "
        "against the step and against the tokens seen (needs matplotlib: the plot extra).",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory (metrics.jsonl)")
    p.add_argument(
        "--out", type=Path, metavar="PNG", help="output PNG file [default: RUN_DIR/loss.png]"
    )
    p.set_defaults(run=run_plot)


def _model_and_text(v: argparse.ArgumentParser) -> None:
    add_model_source(v)
    v.add_argument("--text", required=True, help="the text to look at")
    v.add_argument("--out", type=Path, required=True, metavar="PNG", help="output PNG file")


def run_plot(args: argparse.Namespace) -> int:
    from ..viz import plot_run

    print(f"wrote {plot_run(args.run_dir, out=args.out)}")
    return 0


def run_viz(args: argparse.Namespace) -> int:
    from .. import viz

    if args.plot == "positions":
        viz.plot_positional_encoding(
            n_positions=args.n_positions, dim=args.dim, checkpoint=args.checkpoint, out=args.out
        )
    elif args.plot == "curves":
        viz.plot_training_curves(args.run_dir, title=args.run_dir.name, out=args.out)
    elif args.plot == "attention":
        viz.plot_attention_of(
            args.checkpoint,
            args.text,
            init_from=args.init_from,
            layer=args.layer,
            head=None if args.all_heads else args.head,
            out=args.out,
        )
    else:
        viz.plot_layers_of(args.checkpoint, args.text, init_from=args.init_from, out=args.out)
    print(f"wrote {args.out}")
    return 0
