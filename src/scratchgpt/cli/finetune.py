"""``scratchgpt finetune instruct``: instruction tuning (the book's ch. 7) on the one trainer.

The flags come from the config dataclasses, as for ``train`` and ``classify train``: the data
section from :class:`InstructDataConfig`, the training section from :class:`TrainConfig` with
the book's defaults for this task, and :class:`LoRAConfig`; the model is ``--init-from`` (or
``--checkpoint``, a run of ours) to tune, or ``--preset`` to train from scratch.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..config import (
    INSTRUCT_TRAINING,
    GPTConfig,
    InstructDataConfig,
    LoRAConfig,
    TrainConfig,
)
from .flags import add_config_flags, given, short_usage

# (section, dataclass, flag names that differ from the field names, fields not offered)
SECTIONS: tuple[tuple[str, type, dict[str, str], tuple[str, ...]], ...] = (
    ("data", InstructDataConfig, {"source": "data"}, ()),
    (
        "training",
        TrainConfig,
        {},
        ("sample_interval", "sample_tokens", "sample_prompt", "fsdp"),
    ),
    ("lora", LoRAConfig, {f: f"lora.{f}" for f in ("rank", "alpha", "dropout", "targets")}, ()),
)
TITLES = {
    "data": "data",
    "training": "training (the book's defaults for this task; evaluated once per epoch unless "
    "--eval-interval is given)",
    "lora": "lora (any of these alone switches --trainable to lora)",
}


def register(sub: Any) -> None:
    p = sub.add_parser(
        "finetune",
        help="instruction-tune a GPT (the book's ch. 7): Alpaca or chat records, templates",
        description="Fine-tune a GPT to follow instructions.",
    )
    fsub = p.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=type(p))
    c = fsub.add_parser(
        "instruct",
        help="instruction tuning on {instruction, input, output} or chat records",
        description="Instruction-tune a GPT: records rendered with a prompt template, split "
        "85/5/10 in file order, the validation loss once per epoch, and at the end the test "
        "records answered into RUN/test-responses.json (scratchgpt judge scores them). The "
        "template is saved with every checkpoint, so chat and generate --template saved "
        "format prompts the same way. Each flag names its run-config key in brackets.",
        usage=short_usage("finetune instruct"),
    )
    c.add_argument("--config", type=Path, help="a run config (YAML or JSON) with these sections")
    c.add_argument(
        "--out", type=Path, metavar="DIR", help="run directory (default: runs/<date>-<time>)"
    )
    c.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR")
    c.add_argument("--stop-at", type=int, metavar="STEP", help="save and exit at this step")
    c.add_argument(
        "--merge",
        type=Path,
        metavar="DIR",
        help="a LoRA run: also write base + adapter as one plain checkpoint in DIR",
    )
    model = c.add_argument_group("model")
    start = model.add_mutually_exclusive_group()
    start.add_argument(
        "--init-from",
        dest="model.init_from",
        metavar="NAME_OR_DIR",
        help="the GPT to tune: gpt2, gpt2-medium (the book's), ..., a Hugging Face or OpenAI "
        "directory, or a scratchgpt checkpoint or run [model.init_from]",
    )
    start.add_argument(
        "--checkpoint",
        dest="model.init_from",
        metavar="DIR",
        help="a GPT trained here to tune; the same as --init-from DIR",
    )
    start.add_argument(
        "--preset",
        dest="model.preset",
        metavar="NAME",
        help="train a GPT of this shape from scratch on the records instead [model.preset]",
    )
    keys: list[str] = ["model.init_from", "model.preset"]
    # A GPT from scratch: its shape (over the preset); with --init-from only --context-length
    # (a crop) is allowed.
    keys += add_config_flags(model, GPTConfig, section="model", skip=("vocab_size",))
    for section, cls, names, skip in SECTIONS:
        group = c.add_argument_group(TITLES[section])
        defaults = INSTRUCT_TRAINING if cls is TrainConfig else None
        keys += add_config_flags(
            group, cls, section=section, names=names, skip=skip, defaults=defaults
        )
    c.set_defaults(run=run_instruct, config_keys=keys)


def run_instruct(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..training.instruct import train_instruct

    overrides = given(args, args.config_keys)
    if args.resume is not None:
        if args.config is not None:
            raise ConfigError("--resume continues a run with its own config.yaml: drop --config")
        result = train_instruct(
            resume=args.resume, overrides=overrides, stop_at=args.stop_at, merge=args.merge
        )
    else:
        result = train_instruct(
            args.config,
            overrides=overrides,
            out_dir=args.out,
            stop_at=args.stop_at,
            merge=args.merge,
        )
    print(result.summary())
    return 130 if result.run.interrupted else 0
