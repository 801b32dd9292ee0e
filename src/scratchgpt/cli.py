"""The ``scratchgpt`` command: parse flags, build configs, call one library function.

Nothing here trains, samples or counts by itself; every subcommand is a thin shell over the
Python API so anything the CLI does can be done (and tested) from Python.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("scratchgpt")

# Errors a user can fix from the message alone: shown as one line, without a traceback.
# (ConfigError, DataError, TokenizerError and CheckpointError are all ValueErrors.)
USER_ERRORS = (ValueError, OSError)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_dataclass_flags(parser: argparse.ArgumentParser, cls: Any) -> None:
    """One flag per dataclass field, typed from its annotation, help from its metadata."""
    kinds = {"int": int, "float": float, "str": str, "bool": bool}
    for f in dataclasses.fields(cls):
        kind = kinds[str(f.type).replace(" | None", "")]
        default = f.default
        help_text = f.metadata.get("help", "")
        if default is not None:
            help_text += f" (default: {default})"
        if kind is bool:
            parser.add_argument(
                _flag(f.name), action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            parser.add_argument(
                _flag(f.name), type=kind, default=None, metavar=f.name.upper(), help=help_text
            )


def _dataclass_from_args(cls: Any, args: argparse.Namespace) -> Any:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if v is not None})


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed so tests can check every flag is documented)."""
    from .config import PRESETS
    from .training import TrainConfig

    parser = argparse.ArgumentParser(
        prog="scratchgpt",
        description="A GPT built from scratch: train it, generate with it, inspect it.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "train",
        help="train a model (no flags: a char-level model on the built-in pydocs corpus)",
        description="Train a GPT on a text and save a checkpoint in its run directory.",
    )
    p.add_argument(
        "--data",
        default="pydocs",
        help="a UTF-8 text file, or the built-in corpus 'pydocs' (default: pydocs)",
    )
    p.add_argument(
        "--tokenizer",
        default="char",
        help="'char' (built from the data), 'bpe' (trained on the data, see --vocab-size), "
        "'simple' (the book's word tokenizer), 'gpt2', a saved tokenizer, or a directory with "
        "OpenAI's encoder.json + vocab.bpe (default: char)",
    )
    p.add_argument(
        "--vocab-size", type=int, help="vocabulary size of a --tokenizer bpe trained on the data"
    )
    p.add_argument(
        "--preset",
        default=None,
        choices=list(PRESETS),
        metavar="NAME",
        help=f"model shape: one of {', '.join(PRESETS)} (default: mini)",
    )
    p.add_argument(
        "--config", type=Path, help="model config file (JSON or YAML) instead of a preset"
    )
    p.add_argument("--context-length", type=int, help="override the model's context length")
    p.add_argument("--drop-rate", type=float, help="override the model's dropout rate")
    p.add_argument(
        "--attn-impl", choices=["explicit", "sdpa"], help="attention math (default: sdpa)"
    )
    p.add_argument("--out", type=Path, help="run directory (default: runs/<date>-<time>)")
    _add_dataclass_flags(p, TrainConfig)

    p = sub.add_parser(
        "generate",
        help="generate text from a checkpoint",
        description="Continue a prompt with a trained model.",
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        help="checkpoint or run directory (default: the latest run under runs/)",
    )
    p.add_argument(
        "--prompt",
        default="",
        help="text to continue (default: start from end-of-text or a newline)",
    )
    p.add_argument("--max-tokens", type=int, default=200, help="tokens to generate (default: 200)")
    p.add_argument(
        "--temperature",
        type=float,
        default=0.8,
        help="0 is greedy; higher is more random (default: 0.8)",
    )
    p.add_argument("--top-k", type=int, help="sample only among the k most likely tokens")
    p.add_argument("--top-p", type=float, help="sample only in the nucleus of mass p (0 < p <= 1)")
    p.add_argument("--seed", type=int, help="random seed, for a reproducible sample")
    p.add_argument(
        "--repetition-penalty",
        type=float,
        default=1.0,
        help="> 1 makes tokens already in the text less likely (default: 1, off)",
    )
    p.add_argument(
        "--stop",
        action="append",
        metavar="TEXT",
        help="stop before this text (repeat the flag for several stop strings)",
    )
    p.add_argument(
        "--num-samples", type=int, default=1, help="independent samples of the prompt (default: 1)"
    )
    p.add_argument(
        "--interactive",
        action="store_true",
        help="a prompt loop: Ctrl-C stops the current answer, Ctrl-D exits",
    )
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="the textbook loop that re-reads the whole context for every token (slow)",
    )
    p.add_argument(
        "--compile", action="store_true", help="compile the decode step with torch.compile"
    )
    p.add_argument(
        "--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)"
    )
    p.add_argument(
        "--tokenizer",
        help="use this tokenizer instead of the checkpoint's (same vocabulary size or smaller)",
    )

    p = sub.add_parser(
        "tokenizer",
        help="train a BPE tokenizer, or show how a tokenizer cuts a text",
        description="Train a byte-level BPE tokenizer, or show the ids and pieces of a text.",
    )
    tsub = p.add_subparsers(dest="tokenizer_command", metavar="ACTION", required=True)
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
        "(default: <|endoftext|>)",
    )
    t.add_argument(
        "--pattern",
        default="gpt2",
        help="pre-tokenisation regex: gpt2, cl100k or a raw regex (default: gpt2)",
    )
    t = tsub.add_parser("encode", help="print the ids of a text and the piece each one covers")
    t.add_argument("text", help="the text to encode")
    t.add_argument(
        "--tokenizer",
        default="gpt2",
        help="gpt2, a saved tokenizer (tok.json or a directory), a checkpoint directory, or a "
        "directory with OpenAI's encoder.json + vocab.bpe (default: gpt2)",
    )

    p = sub.add_parser(
        "info",
        help="show a model config and its parameter count",
        description="Show a model config and its parameter count (no flag: list the presets).",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--preset", choices=list(PRESETS), metavar="NAME", help="a preset name")
    group.add_argument("--config", type=Path, help="a JSON or YAML model config file")
    group.add_argument("--checkpoint", type=Path, help="a checkpoint or run directory")
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    from .config import GPTConfig, load_model_config, preset
    from .training import TrainConfig, train

    cfg: GPTConfig = (
        load_model_config(args.config) if args.config else preset(args.preset or "mini")
    )
    overrides = {
        "context_length": args.context_length,
        "drop_rate": args.drop_rate,
        "attn_impl": args.attn_impl,
    }
    cfg = GPTConfig.from_dict(
        {**cfg.to_dict(), **{k: v for k, v in overrides.items() if v is not None}}
    )
    result = train(
        data=args.data,
        tokenizer=args.tokenizer,
        vocab_size=args.vocab_size,
        model=cfg,
        config=_dataclass_from_args(TrainConfig, args),
        out_dir=args.out,
    )
    first, last = result.history[0], result.history[-1]
    print(
        f"trained {result.steps} steps: val loss {first['val_loss']:.3f} -> {last['val_loss']:.3f}"
        f"\ncheckpoint: {result.checkpoint}\n"
        f"generate with: scratchgpt generate --checkpoint {result.run_dir} --prompt '...'"
    )
    return 0


def _load_model(args: argparse.Namespace, device: Any) -> tuple[Any, Any]:
    """The model and tokenizer a command asked for: --checkpoint, or the latest run."""
    from .checkpoint import load_checkpoint
    from .tokenizers import get_tokenizer
    from .training import latest_run

    path = args.checkpoint or latest_run()
    model, tokenizer = load_checkpoint(path, device=device)
    log.info("loaded %s", path)
    if getattr(args, "tokenizer", None):
        tokenizer = get_tokenizer(args.tokenizer)
        if tokenizer.vocab_size > model.cfg.vocab_size:
            raise ValueError(
                f"--tokenizer {args.tokenizer}: {tokenizer.vocab_size} ids, more than the model's "
                f"vocab_size={model.cfg.vocab_size}"
            )
    return model, tokenizer


def cmd_generate(args: argparse.Namespace) -> int:
    from .generation import Generator, check_sampling
    from .training import pick_device

    check_sampling(
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        repetition_penalty=args.repetition_penalty,
    )
    if args.max_tokens < 0:
        raise ValueError(f"--max-tokens {args.max_tokens}: must be >= 0")
    if args.num_samples < 1:
        raise ValueError(f"--num-samples {args.num_samples}: must be >= 1")
    device = pick_device(args.device)
    model, tokenizer = _load_model(args, device)
    gen = Generator(model, tokenizer, compile=args.compile)
    options: dict[str, Any] = {
        "temperature": args.temperature,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "repetition_penalty": args.repetition_penalty,
        "use_cache": not args.no_cache,
        "stop": args.stop or (),
    }
    if args.interactive:
        return _interactive(gen, args, options)
    for n in range(args.num_samples):
        if args.num_samples > 1:
            print(f"--- sample {n + 1} ---")
        seed = None if args.seed is None else args.seed + n
        print(args.prompt, end="", flush=True)
        for piece in gen.stream_text(args.prompt, args.max_tokens, seed=seed, **options):
            print(piece, end="", flush=True)  # each piece as soon as it is made
        print()
    return 0


def _interactive(gen: Any, args: argparse.Namespace, options: dict[str, Any]) -> int:
    """A prompt loop: Ctrl-C stops the current answer, Ctrl-D (end of input) exits."""
    print("Type a prompt and press Enter. Ctrl-C stops an answer, Ctrl-D exits.", file=sys.stderr)
    n = 0
    while True:
        try:
            prompt = input(">>> ")
        except EOFError:
            print(file=sys.stderr)
            return 0
        except KeyboardInterrupt:  # at the prompt: start a fresh line, like a shell
            print(file=sys.stderr)
            continue
        if not prompt.strip():
            continue
        seed = None if args.seed is None else args.seed + n
        n += 1
        try:
            for piece in gen.stream_text(prompt, args.max_tokens, seed=seed, **options):
                print(piece, end="", flush=True)
        except KeyboardInterrupt:
            print()  # end the cut answer's line
            print("[stopped]", file=sys.stderr)
            continue
        print()


def cmd_info(args: argparse.Namespace) -> int:
    import torch

    from .checkpoint import read_checkpoint_info
    from .config import PRESETS, GPTConfig, load_model_config, preset
    from .model import GPTModel, num_parameters

    def count(cfg: GPTConfig) -> int:
        with torch.device("meta"):  # shapes only: no memory or init time, even for 1.5B
            return num_parameters(GPTModel(cfg))

    if args.preset is None and args.config is None and args.checkpoint is None:
        for name in PRESETS:
            print(f"{name:<12} {count(preset(name)):>15,} parameters")
        return 0
    if args.checkpoint:
        cfg, meta = read_checkpoint_info(args.checkpoint)
    else:
        cfg, meta = (preset(args.preset) if args.preset else load_model_config(args.config)), {}
    print(json.dumps(cfg.to_dict(), indent=2))
    if meta.get("step") is not None:
        print(f"trained steps: {meta['step']}, val loss: {meta.get('val_loss')}")
    print(f"parameters: {count(cfg):,}")
    return 0


def cmd_tokenizer(args: argparse.Namespace) -> int:
    from .checkpoint import is_checkpoint, load_checkpoint
    from .tokenizers import explain_encoding, get_tokenizer, train_bpe_files

    if args.tokenizer_command == "train":
        roles = [s.split("=", 1) for s in args.special_tokens if "=" in s]
        if roles and len(roles) != len(args.special_tokens):
            raise ValueError("--special-tokens: give either all ROLE=TOKEN pairs or none")
        special = {r: t for r, t in roles} if roles else list(args.special_tokens)
        tok = train_bpe_files(
            args.data, args.vocab_size, special_tokens=special, pattern=args.pattern
        )
        path = tok.save(args.out)
        print(f"trained a {tok.vocab_size}-token BPE vocabulary: {path}")
        return 0
    if is_checkpoint(args.tokenizer):
        _, tokenizer = load_checkpoint(args.tokenizer)
    else:
        tokenizer = get_tokenizer(args.tokenizer)
    pieces = explain_encoding(tokenizer, args.text)
    print(f"{len(pieces)} tokens: {[i for i, _ in pieces]}")
    for i, piece in pieces:
        print(f"{i:>8}  {piece!r}")
    return 0


COMMANDS = {
    "train": cmd_train,
    "generate": cmd_generate,
    "info": cmd_info,
    "tokenizer": cmd_tokenizer,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

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
        return COMMANDS[args.command](args)
    except USER_ERRORS as exc:
        print(f"scratchgpt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
