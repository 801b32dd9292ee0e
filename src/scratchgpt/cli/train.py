"""``scratchgpt train``: every setting of a run config is one flag, spelt once.

Settings come from the defaults, then ``--config FILE``, then the flags. A flag is the field's
name (``--lr``, ``--max-steps``, ``--emb-dim``), or a documented short name where the field's
own would be unclear (``--data`` for ``data.source``, ``--tokenizer`` for ``tokenizer.name``).
A run config's key written as a flag (``--training.lr``) is accepted as well, so scripts that
use the config's spelling keep working; it is not listed twice in ``--help``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import (
    DataConfig,
    GPTConfig,
    LoRAConfig,
    ModelSource,
    TokenizerConfig,
    TrainConfig,
    preset_fields,
)
from .flags import add_config_flags, given, short_usage

# (section, dataclass, flag names that differ from the field names, fields not offered)
SECTIONS: tuple[tuple[str, type, dict[str, str], tuple[str, ...]], ...] = (
    # vocab_size is the tokenizer's: training sets it.
    ("model", GPTConfig, {}, ("vocab_size",)),
    ("model", ModelSource, {}, ()),
    ("data", DataConfig, {"source": "data"}, ()),
    ("tokenizer", TokenizerConfig, {"name": "tokenizer"}, ()),
    ("training", TrainConfig, {}, ()),
    # --lora.rank, not --rank: the section's name says what the numbers size.
    ("lora", LoRAConfig, {f: f"lora.{f}" for f in ("rank", "alpha", "dropout", "targets")}, ()),
)
TITLES = {
    "model": "model (the model: section of a run config)",
    "data": "data (the data: section)",
    "tokenizer": "tokenizer (the tokenizer: section)",
    "training": "training (the training: section)",
    "lora": "lora (the lora: section; any of these alone switches --trainable to lora)",
}


def register(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (no flags: a char-level model on the built-in pydocs corpus)",
        description="Train a GPT and save checkpoints in its run directory. Settings come from "
        "the defaults, then --config FILE, then these flags; each flag names its run-config "
        "key in brackets.",
        usage=short_usage("train"),
    )
    p.add_argument(
        "--config",
        type=Path,
        help="a run config: YAML or JSON with the sections model, data, tokenizer, training "
        "(see configs/), or a file of bare model fields",
    )
    p.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its latest checkpoint, exactly where it stopped "
        "(or from step 0, with its saved config, if it stopped before its first checkpoint)",
    )
    p.add_argument(
        "--stop-at",
        type=int,
        metavar="STEP",
        help="save and exit at this step (carry on later with --resume)",
    )
    p.add_argument("--out", type=Path, help="run directory (default: runs/<date>-<time>)")
    p.add_argument(
        "--merge",
        type=Path,
        metavar="DIR",
        help="a LoRA run: also write base + adapter as one plain checkpoint in DIR",
    )
    keys: list[str] = []
    # A model field's default is what the default preset sets, not GPTConfig's own default.
    defaults = {GPTConfig: preset_fields(ModelSource().preset or "mini")}
    for section, cls, names, skip in SECTIONS:
        group = _group(p, TITLES[section])
        keys += add_config_flags(
            group, cls, section=section, names=names, skip=skip, defaults=defaults.get(cls)
        )
    p.set_defaults(run=run, config_keys=keys)


def _group(p: argparse.ArgumentParser, title: str) -> argparse._ArgumentGroup:
    for group in p._action_groups:
        if group.title == title:
            return group
    return p.add_argument_group(title)


def flag_names() -> dict[str, str]:
    """{config key: flag} for every run-config setting (``training.max_steps``: ``--max-steps``)."""
    import dataclasses

    out = {}
    for section, cls, names, skip in SECTIONS:
        for field in dataclasses.fields(cls):
            if field.name not in skip:
                flag = names.get(field.name, field.name).replace("_", "-")
                out[f"{section}.{field.name}"] = f"--{flag}"
    return out


def expand_aliases(argv: Sequence[str]) -> list[str]:
    """``--training.max-steps 3`` -> ``--max-steps 3`` (see the module docstring); a boolean
    key takes a value as in the config file: ``--training.compile true`` -> ``--compile``."""
    flags = flag_names()
    switches = {key for key, cls in _field_types().items() if cls is bool}
    out: list[str] = []
    words = list(argv)
    while words:
        arg = words.pop(0)
        name, eq, value = arg.partition("=")
        key = name[2:].replace("-", "_") if name.startswith("--") else ""
        if key in flags and "." in key:
            flag = flags[key]
            if key in switches:
                if not eq and words and words[0].lower() in TRUTH:
                    value = words.pop(0)
                if value and TRUTH.get(value.lower()) is False:
                    flag = "--no-" + flag[2:]
                arg = flag
            else:
                arg = flag + eq + value
        out.append(arg)
    return out


# How a boolean is written in a config file or after a config key used as a flag.
TRUTH = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _field_types() -> dict[str, type]:
    """{config key: field type} of the settings train offers (``X | None`` as X)."""
    import dataclasses
    import typing

    out = {}
    for section, cls, _, skip in SECTIONS:
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if field.name not in skip:
                out[f"{section}.{field.name}"] = hints[field.name]
    return out


def run(args: argparse.Namespace) -> int:
    from ..config import load_run_config
    from ..errors import ConfigError
    from ..training import train

    overrides = given(args, args.config_keys)
    if args.resume is not None:
        if args.config is not None:
            raise ConfigError(
                "--resume continues a run with its own config.yaml: drop --config (flags still "
                "override single settings)"
            )
        result = train(
            resume=args.resume, overrides=overrides, stop_at=args.stop_at, merge=args.merge
        )
    else:
        run_config = load_run_config(args.config, overrides=overrides)
        result = train(run_config, out_dir=args.out, stop_at=args.stop_at, merge=args.merge)
    print(result.summary())
    if args.merge is not None and args.merge.is_dir():
        print(f"merged model (base + adapter): {args.merge}")
    return 130 if result.interrupted else 0
