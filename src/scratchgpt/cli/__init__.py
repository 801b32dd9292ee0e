"""The ``scratchgpt`` command: parse flags, build a config, call one library function.

One module per command group (``train``, ``generate``, ``classify``, ...); each registers its
parser and a ``run(args)`` that calls the library and prints the result. Nothing here trains,
samples or loads by itself, so everything the command line does can be done from Python.

Flags come from the typed config dataclasses through one function
(:func:`scratchgpt.cli.flags.add_config_flags`): a field's type, default and help text are
written once, on the field. Building the parser imports the configs (plain dataclasses) and
argparse, never torch, so ``--help`` answers in a tenth of a second.

Why argparse and not a library built for this: jsonargparse makes a boolean take a value
(``--compile true``) where a switch is wanted, and costs ~85 ms of imports; tyro (~50 ms plus
~60 ms to build a parser) turns ``model: GPTConfig | None`` into subcommands, needs
annotations inside the configs to rename a flag (``--data`` for ``data.source``), and prints
help and errors as boxed panels without the usage line. Over dataclasses that carry their own
help, argparse needs one short function (``add_config_flags``) to do the same.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ..errors import ScratchGPTError
from . import (
    chat,
    classify,
    configs,
    evaluate,
    finetune,
    generate,
    info,
    judge,
    lora,
    models,
    prepare,
    serve,
    tokenizer,
    train,
    viz,
)
from .flags import Parser

log = logging.getLogger("scratchgpt")

# Each group's module, in the order `scratchgpt --help` lists them.
GROUPS = (
    train,
    configs,
    generate,
    chat,
    serve,
    evaluate,
    info,
    models,
    tokenizer,
    classify,
    finetune,
    lora,
    judge,
    viz,
    prepare,
)


def build_parser() -> Parser:
    """The whole command line (exposed so tests can walk every flag)."""
    parser = Parser(
        prog="scratchgpt",
        description="A GPT built from scratch: train it, generate with it, inspect it.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for group in GROUPS:
        group.register(sub)
    return parser


def _command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Parser:
    """The parser of the (sub)command that ``args`` were parsed by."""
    while True:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        chosen = getattr(args, sub.dest, None) if sub is not None else None
        if sub is None or chosen is None:
            return parser  # type: ignore[return-value]
        parser = sub.choices[chosen]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a user's mistake is one line on stderr and exit code 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(train.expand_aliases(argv))
    if extra:  # reported by the command's own parser: its usage line, not the top level's
        _command_parser(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    if args.version:
        from .. import __version__

        print(__version__)
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.run(args))
    except (ScratchGPTError, OSError) as exc:
        # A file system error (permission denied, disk full) is the user's to fix too.
        print(f"scratchgpt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
