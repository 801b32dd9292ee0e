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

from .errors import ConfigError, MissingExtraError

log = logging.getLogger("scratchgpt")

# Errors a user can fix from the message alone: shown as one line, without a traceback.
# (ConfigError, DataError, TokenizerError and CheckpointError are all ValueErrors; a missing
# optional dependency is a MissingExtraError, which names the extra to install.)
USER_ERRORS = (ValueError, OSError, MissingExtraError)
# Weight dtypes for inference (names of torch dtypes: torch is imported only when a command runs).
DTYPES = ("float32", "bfloat16", "float16")
QUANTIZATIONS = ("int8",)  # scratchgpt.quantization.QUANTIZATIONS, without importing torch here


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# The training settings `classify train` offers as flags (the rest keep the defaults).
CLASSIFY_TRAINING_FLAGS = (
    "epochs",
    "batch_size",
    "lr",
    "min_lr",
    "warmup_steps",
    "weight_decay",
    "grad_clip",
    "eval_interval",
    "keep_last",
    "seed",
)


def _add_section_flags(
    parser: argparse.ArgumentParser,
    cls: Any,
    section: str,
    names: Sequence[str],
    defaults: dict[str, Any],
) -> None:
    """--NAME flags for fields of a config section, setting "section.name" overrides."""
    kinds = {"int": int, "float": float, "str": str}
    for f in dataclasses.fields(cls):
        if f.name in names:
            default = defaults.get(f.name, f.default)
            parser.add_argument(
                _flag(f.name),
                dest=f"{section}.{f.name}",
                type=kinds[str(f.type).replace(" | None", "")],
                metavar=f.name.upper(),
                help=f"{section}.{f.name}: {f.metadata.get('help', '')} (default: {default})",
            )


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed so tests can check every flag is documented)."""
    from .config import PRESETS
    from .pretrained import GPT2_NAMES

    parser = argparse.ArgumentParser(
        prog="scratchgpt",
        description="A GPT built from scratch: train it, generate with it, inspect it.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    _add_train_command(sub)
    _add_config_command(sub)

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
    _add_init_from(p)
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
    _add_precision_flags(p)
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
    p.add_argument(
        "--breakdown",
        action="store_true",
        help="where the parameters are: embeddings, each block's attention, feed-forward and "
        "norms, final norm, output head, with the formulas (alone: the book's GPT_CONFIG_124M)",
    )

    p = sub.add_parser(
        "download",
        help="download OpenAI's GPT-2 weights into the Hugging Face cache",
        description="Download a GPT-2 (safetensors weights + tokenizer) from the Hugging Face "
        "hub into its cache (HF_HUB_CACHE); an interrupted download resumes.",
    )
    p.add_argument("name", metavar="NAME", help=f"one of {', '.join(GPT2_NAMES)}")

    p = sub.add_parser(
        "eval",
        help="loss and perplexity of a model over a text",
        description="Score a text with a model by a strided sliding window: every token after "
        "the first is scored once, with up to context-length tokens of left context.",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--checkpoint",
        type=Path,
        help="checkpoint or run directory (default: the latest run under runs/)",
    )
    _add_init_from(group)
    p.add_argument(
        "--data", required=True, help="a UTF-8 text file, or the built-in corpus 'pydocs'"
    )
    p.add_argument(
        "--stride",
        type=int,
        help="tokens between window starts, 1 to the context length (default: half the "
        "context); smaller gives each token more context and costs more passes",
    )
    p.add_argument("--context-length", type=int, help="crop the model to a shorter context window")
    p.add_argument("--batch-size", type=int, default=1, help="windows per forward pass")
    _add_precision_flags(p)
    p.add_argument(
        "--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)"
    )
    p.add_argument("--tokenizer", help="use this tokenizer instead of the model's")

    p = sub.add_parser(
        "export",
        help="export a checkpoint for the Hugging Face ecosystem",
        description="Write a checkpoint as Hugging Face GPT-2 (config.json, model.safetensors, "
        "tokenizer files) that transformers.GPT2LMHeadModel.from_pretrained loads.",
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint or run directory")
    p.add_argument("--format", choices=["hf"], default="hf", help="output format (default: hf)")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    _add_learning_commands(sub)
    _add_plot_command(sub)
    _add_prepare_command(sub)
    return parser


def _add_init_from(parser: Any) -> None:
    from .pretrained import GPT2_NAMES

    parser.add_argument(
        "--init-from",
        metavar="NAME_OR_DIR",
        help=f"pretrained weights instead of a checkpoint: {', '.join(GPT2_NAMES[:4])} "
        "(OpenAI's GPT-2 through the Hugging Face cache), a Hugging Face or OpenAI GPT-2 "
        "directory, or a scratchgpt checkpoint",
    )


# Help for the model section's flags (GPTConfig documents its fields in comments).
MODEL_HELP = {
    "vocab_size": "vocabulary size (training sets it to the tokenizer's)",
    "context_length": "longest sequence the model reads (positions)",
    "emb_dim": "width of the token vectors",
    "n_heads": "attention heads per layer (must divide emb_dim)",
    "n_layers": "transformer blocks",
    "drop_rate": "dropout probability",
    "qkv_bias": "bias in the query/key/value projections (GPT-2: true)",
    "tie_weights": "share the token embedding with the output head (GPT-2: true)",
    "attn_impl": "attention math: explicit (textbook) or sdpa (fused)",
    "ln_eps": "LayerNorm epsilon",
    "pos_encoding": "learned (GPT-2) or sinusoidal positions",
    "vocab_multiple": "round the vocabulary rows up to a multiple of this (64: faster matmuls)",
    "init": "how new weights start: gpt2 (N(0, 0.02), GPT-2) or torch (PyTorch defaults, the book)",
    "preset": "the preset the model section starts from (default: mini)",
    "init_from": "pretrained weights to start from (a GPT-2 name or directory, a checkpoint)",
}


def _section_fields() -> dict[str, list[tuple[str, str]]]:
    """(field, help) of every run-config section, for the --section.field flags."""
    from .config import DataConfig, GPTConfig, TokenizerConfig, TrainConfig

    out: dict[str, list[tuple[str, str]]] = {
        "model": [(f.name, MODEL_HELP[f.name]) for f in dataclasses.fields(GPTConfig)]
        + [("preset", MODEL_HELP["preset"]), ("init_from", MODEL_HELP["init_from"])]
    }
    for section, cls in (
        ("data", DataConfig),
        ("tokenizer", TokenizerConfig),
        ("training", TrainConfig),
    ):
        out[section] = [(f.name, f.metadata.get("help", "")) for f in dataclasses.fields(cls)]
    return out


def _add_train_command(sub: Any) -> None:
    from .config import PRESETS
    from .pretrained import GPT2_NAMES

    p = sub.add_parser(
        "train",
        help="train a model (no flags: a char-level model on the built-in pydocs corpus)",
        description="Train a GPT and save checkpoints in its run directory. Settings come "
        "from the defaults, then --config FILE, then the flags; every setting of the config "
        "file is a flag --section.field (e.g. --training.lr 3e-4), and the most used ones "
        "also have the short forms below.",
    )
    p.add_argument(
        "--config",
        type=Path,
        help="a run config (YAML or JSON with sections model/data/tokenizer/training, like "
        "configs/*.yaml), or a file of bare model fields",
    )
    p.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its latest checkpoint, exactly where it stopped",
    )
    p.add_argument(
        "--stop-at",
        type=int,
        metavar="STEP",
        help="save and exit at this step (carry on later with --resume)",
    )
    p.add_argument("--out", type=Path, help="run directory (default: runs/<date>-<time>)")
    short = p.add_argument_group("short forms")
    short.add_argument(
        "--data",
        help="data.source: a named corpus (pydocs, the-verdict, tinyshakespeare), text "
        "files, a directory made by scratchgpt prepare, ... (default: pydocs)",
    )
    short.add_argument(
        "--tokenizer",
        help="tokenizer.name: 'char' (built from the data), 'bpe' (trained on the data, see "
        "--vocab-size), 'simple' (the book's word tokenizer), 'gpt2', a saved tokenizer, or a "
        "directory with OpenAI's encoder.json + vocab.bpe (default: char, or the --init-from "
        "model's)",
    )
    short.add_argument("--vocab-size", type=int, help="tokenizer.vocab_size of a bpe tokenizer")
    short.add_argument(
        "--init-from",
        metavar="NAME_OR_DIR",
        help="model.init_from: fine-tune from these weights and their tokenizer: "
        f"{', '.join(GPT2_NAMES[:4])} (OpenAI's GPT-2), a Hugging Face or OpenAI GPT-2 "
        "directory, or a scratchgpt checkpoint; --context-length crops it",
    )
    short.add_argument(
        "--preset",
        choices=list(PRESETS),
        metavar="NAME",
        help=f"model.preset: one of {', '.join(PRESETS)} (default: mini)",
    )
    short.add_argument("--context-length", type=int, help="model.context_length")
    short.add_argument("--drop-rate", type=float, help="model.drop_rate")
    short.add_argument("--attn-impl", choices=["explicit", "sdpa"], help="model.attn_impl")
    fields = _section_fields()
    taken = {
        "source",
        "name",
        "vocab_size",
        "context_length",
        "drop_rate",
        "attn_impl",
        "preset",
        "init_from",
    }
    for section in ("data", "training"):
        for name, help_text in fields[section]:
            if name not in taken:
                short.add_argument(
                    _flag(name),
                    dest=f"{section}.{name}",
                    metavar=name.upper(),
                    help=f"{section}.{name}: {help_text}",
                )
    for section, entries in fields.items():
        group = p.add_argument_group(f"{section} section")
        for name, help_text in entries:
            group.add_argument(
                f"--{section}.{name.replace('_', '-')}",
                dest=f"{section}.{name}",
                metavar="VALUE",
                nargs="?",
                const="true",  # a bare boolean flag (--training.compile) means true
                help=help_text,
            )


def _add_config_command(sub: Any) -> None:
    c = sub.add_parser(
        "config",
        help="check, show or convert run configs",
        description="Run configs are YAML files with the sections model, data, tokenizer and "
        "training (see configs/).",
    )
    csub = c.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    show = csub.add_parser(
        "show", help="validate a run config and print it with every field explicit"
    )
    show.add_argument("path", type=Path, help="a YAML or JSON run config")
    conv = csub.add_parser(
        "convert",
        help="convert an older JSON config (flat, or seed 002's sections) to a YAML run config",
    )
    conv.add_argument("source", type=Path, help="the JSON (or YAML) config to convert")
    conv.add_argument("target", type=Path, help="the YAML file to write")


def _train_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line, as {"section.field": value}."""
    overrides = {k: v for k, v in vars(args).items() if "." in k and v is not None}
    shortcuts = {
        "data.source": args.data,
        "tokenizer.name": args.tokenizer,
        "tokenizer.vocab_size": args.vocab_size,
        "model.preset": args.preset,
        "model.init_from": args.init_from,
        "model.context_length": args.context_length,
        "model.drop_rate": args.drop_rate,
        "model.attn_impl": args.attn_impl,
    }
    for key, value in shortcuts.items():
        if value is not None:
            overrides.setdefault(key, value)
    return overrides


def cmd_train(args: argparse.Namespace) -> int:
    from .config import load_run_config
    from .training import train

    overrides = _train_overrides(args)
    if args.resume is not None:
        if args.config is not None:
            raise ConfigError(
                "--resume continues a run with its own config.yaml: drop --config (flags "
                "still override single settings)"
            )
        result = train(resume=args.resume, overrides=overrides, stop_at=args.stop_at)
    else:
        init_from = overrides.get("model.init_from")
        clash = [k for k in overrides if k in ("model.preset", "tokenizer.vocab_size")]
        if init_from and clash:
            raise ConfigError(
                f"--init-from fixes the model's shape and vocabulary; drop "
                f"{', '.join(clash)} (--context-length crops it)"
            )
        run = load_run_config(args.config, overrides)
        result = train(run, out_dir=args.out, stop_at=args.stop_at)
    print(result.summary())
    return 130 if result.interrupted else 0


def cmd_config(args: argparse.Namespace) -> int:
    from .config import convert_config, load_run_config, read_config_file
    from .files import atomic_write_text

    if args.config_command == "show":
        print(load_run_config(args.path).to_yaml(), end="")
        return 0
    run = convert_config(read_config_file(args.source))
    args.target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.target, run.to_yaml())
    print(f"wrote {args.target} (check it with: scratchgpt config show {args.target})")
    return 0


def _add_precision_flags(p: argparse.ArgumentParser) -> None:
    """--dtype and --quantize, for the commands that run a model for inference."""
    p.add_argument(
        "--dtype",
        choices=DTYPES,
        help="cast the weights for inference (default: as saved). At batch 1 decoding reads "
        "every weight per token, so bfloat16 halves the bytes; see docs/benchmarks.md",
    )
    p.add_argument(
        "--quantize",
        choices=QUANTIZATIONS,
        help="int8: Linear weights as int8 with bfloat16 activations, a quarter of fp32's "
        "bytes (needs scratchgpt[quant]; fastest with --compile)",
    )


def _load_model(args: argparse.Namespace, device: Any) -> tuple[Any, Any]:
    """The model and tokenizer a command asked for: --init-from, --checkpoint, or the latest
    run; cropped to --context-length and cast to --dtype where the command has those flags."""
    import torch

    from .checkpoint import load_checkpoint
    from .pretrained import crop_context, load_pretrained
    from .tokenizers import get_tokenizer
    from .training import latest_run

    init_from = getattr(args, "init_from", None)
    dtype = getattr(torch, args.dtype) if getattr(args, "dtype", None) else None
    if getattr(args, "quantize", None) and args.dtype not in (None, "bfloat16"):
        raise ValueError(
            f"--quantize {args.quantize} runs with bfloat16 activations: drop --dtype {args.dtype}"
        )
    if init_from and args.checkpoint:
        raise ValueError("give either --checkpoint or --init-from, not both")
    if init_from:
        # The tokenizer goes in with the weights: a GPT-2 directory may lack its own.
        model, tokenizer = load_pretrained(
            init_from, device=device, dtype=dtype, tokenizer=getattr(args, "tokenizer", None)
        )
        path = init_from
    else:
        path = args.checkpoint or latest_run()
        model, tokenizer = load_checkpoint(path, device=device, dtype=dtype)
    log.info("loaded %s", path)
    if getattr(args, "context_length", None) is not None:
        crop_context(model, args.context_length)
    if getattr(args, "quantize", None):
        from .quantization import quantize

        quantize(model, args.quantize)
    if getattr(args, "tokenizer", None) and not init_from:
        tokenizer = get_tokenizer(args.tokenizer)
        if tokenizer.vocab_size > model.cfg.vocab_size:
            raise ValueError(
                f"--tokenizer {args.tokenizer}: {tokenizer.vocab_size} ids, more than the model's "
                f"vocab_size={model.cfg.vocab_size}"
            )
    return model, tokenizer


def cmd_generate(args: argparse.Namespace) -> int:
    from .config import SamplingConfig
    from .device import pick_device
    from .generation import Generator

    sampling = SamplingConfig(
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
        "sampling": sampling,
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

    if args.breakdown and args.preset is None and args.config is None and args.checkpoint is None:
        print("The book's GPT_CONFIG_124M (untied output head, no QKV bias):")
        return _print_breakdown(GPTConfig(), count(GPTConfig()))
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
    if args.breakdown:
        return _print_breakdown(cfg, count(cfg))
    print(f"parameters: {count(cfg):,}")
    return 0


def _print_breakdown(cfg: Any, counted: int) -> int:
    from .params import format_breakdown, parameter_breakdown

    breakdown = parameter_breakdown(cfg)
    print(format_breakdown(breakdown))
    check = "matches" if breakdown.count == counted else "DOES NOT MATCH"
    print(f"parameters: {counted:,} (sum(p.numel() for p in model.parameters()); {check})")
    return 0 if breakdown.count == counted else 1


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


def cmd_download(args: argparse.Namespace) -> int:
    from .pretrained import download_gpt2

    path = download_gpt2(args.name)
    print(f"{args.name}: {path}\nuse it with: scratchgpt generate --init-from {args.name}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .data import load_text
    from .device import pick_device
    from .evaluation import perplexity

    device = pick_device(args.device)
    model, tokenizer = _load_model(args, device)
    ids = tokenizer.encode(load_text(args.data))
    r = perplexity(model, ids, stride=args.stride, batch_size=args.batch_size)
    print(
        f"loss {r.loss:.4f}, perplexity {r.perplexity:.2f} over {r.tokens_scored:,} tokens "
        f"({r.windows} windows of up to {r.context_length} tokens, stride {r.stride})"
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint
    from .pretrained import export_hf

    model, tokenizer = load_checkpoint(args.checkpoint)
    out = export_hf(model, tokenizer, args.out)
    print(
        f"exported {args.checkpoint} to {out}\nload it with: "
        f"transformers.GPT2LMHeadModel.from_pretrained({str(out)!r})"
    )
    return 0


def _add_learning_commands(sub: Any) -> None:
    """The `classify` and `viz` subcommands (the teaching tools: notebooks 4, 5 and plots)."""
    from .config import CLASSIFIER_TRAINING, ClassifierDataConfig, TrainConfig

    p = sub.add_parser(
        "classify",
        help="train a Transformer-encoder text classifier, or classify texts with one",
        description="Train the encoder classifier on LABEL<TAB>TEXT lines (by default the SMS "
        "Spam Collection, downloaded once from UCI) and report its held-out accuracy; or "
        "classify texts with a trained one.",
    )
    csub = p.add_subparsers(dest="classify_command", metavar="ACTION", required=True)
    c = csub.add_parser(
        "train",
        help="train on labelled texts (a run directory, like scratchgpt train's)",
        description="Train the encoder classifier; the run directory holds config.yaml, "
        "metrics.jsonl and resumable checkpoints, like a GPT run's.",
    )
    c.add_argument(
        "--data",
        type=Path,
        metavar="FILE",
        help="a file of LABEL<TAB>TEXT lines (default: the SMS Spam Collection, downloaded "
        "from UCI into the cache, $SCRATCHGPT_CACHE or ~/.cache/scratchgpt)",
    )
    c.add_argument(
        "--out", type=Path, metavar="DIR", help="run directory (default: runs/<date>-<time>)"
    )
    c.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue the classification run in RUN_DIR from its latest checkpoint",
    )
    c.add_argument("--d-model", type=int, help="width of the token vectors (default: 64)")
    c.add_argument("--num-heads", type=int, help="attention heads per layer (default: 4)")
    c.add_argument("--d-ff", type=int, help="hidden width of the feed-forward layer (default: 128)")
    c.add_argument("--num-layers", type=int, help="encoder blocks (default: 2)")
    c.add_argument("--max-len", type=int, help="longest input in tokens, rest cut (default: 64)")
    c.add_argument("--dropout", type=float, help="dropout rate (default: 0.1)")
    c.add_argument(
        "--pos-encoding",
        choices=["sinusoidal", "learned"],
        help="positional encoding (default: sinusoidal)",
    )
    c.add_argument("--pooling", choices=["mean", "first"], help="text vector (default: mean)")
    c.add_argument("--device", help="training.device: cpu, cuda, cuda:N or mps (default: cpu)")
    _add_section_flags(c, ClassifierDataConfig, "data", ("test_ratio", "min_freq"), {})
    _add_section_flags(c, TrainConfig, "training", CLASSIFY_TRAINING_FLAGS, CLASSIFIER_TRAINING)
    c = csub.add_parser("predict", help="classify texts with a trained classifier")
    c.add_argument(
        "--model",
        type=Path,
        required=True,
        metavar="DIR",
        help="a directory saved by classify train",
    )
    c.add_argument("texts", nargs="+", metavar="TEXT", help="the texts to classify")

    p = sub.add_parser(
        "viz",
        help="plot attention maps, positional encodings, training curves, layer statistics",
        description="Draw a figure as a PNG (needs matplotlib: pip install 'scratchgpt[plot]').",
    )
    vsub = p.add_subparsers(dest="viz_command", metavar="PLOT", required=True)
    v = vsub.add_parser(
        "attention",
        help="attention heatmap of a text at one layer and head (or all heads)",
        description="Attention weights of a model on a text: rows are the tokens attending, "
        "columns the tokens attended to. Works with a GPT checkpoint, GPT-2 (--init-from) "
        "or a classifier saved by `classify train`.",
    )
    _add_viz_model(v)
    v.add_argument("--layer", type=int, default=0, help="block index, from 0 (default: 0)")
    which = v.add_mutually_exclusive_group()
    which.add_argument("--head", type=int, default=0, help="head index, from 0 (default: 0)")
    which.add_argument("--all-heads", action="store_true", help="a grid of every head of the layer")
    v = vsub.add_parser(
        "positions",
        help="the sinusoidal encoding's patterns and similarity against distance",
    )
    v.add_argument("--out", type=Path, required=True, metavar="PNG", help="output PNG file")
    v.add_argument("--n-positions", type=int, default=64, help="positions shown (default: 64)")
    v.add_argument("--dim", type=int, default=64, help="encoding dimension (default: 64)")
    v.add_argument(
        "--checkpoint",
        type=Path,
        help="also plot this GPT checkpoint's learned position table's similarity curve",
    )
    v = vsub.add_parser("curves", help="train and validation loss (and accuracy) of a run")
    v.add_argument(
        "run", type=Path, metavar="RUN_DIR", help="a run or classifier directory (metrics.jsonl)"
    )
    v.add_argument("--out", type=Path, required=True, metavar="PNG", help="output PNG file")
    v = vsub.add_parser(
        "layers",
        help="hidden-state norms and layer-to-layer cosine similarity on a text",
    )
    _add_viz_model(v)


def _add_viz_model(v: argparse.ArgumentParser) -> None:
    group = v.add_mutually_exclusive_group()
    group.add_argument(
        "--checkpoint",
        type=Path,
        metavar="DIR",
        help="checkpoint, run or classifier directory (default: the latest run under runs/)",
    )
    _add_init_from(group)
    v.add_argument("--text", required=True, help="the text to look at")
    v.add_argument("--out", type=Path, required=True, metavar="PNG", help="output PNG file")


def cmd_classify(args: argparse.Namespace) -> int:
    from .classifier import TextClassifier
    from .training.classify import train_classifier

    if args.classify_command == "predict":
        classifier = TextClassifier.load(args.model)
        probs = classifier.predict_proba(args.texts)
        for text, row in zip(args.texts, probs, strict=True):
            best = int(row.argmax())
            print(f"{classifier.labels[best]}\t{row[best].item():.3f}\t{text}")
        return 0
    overrides = {k: v for k, v in vars(args).items() if "." in k and v is not None}
    model_flags = {"d_model": "emb_dim", "num_heads": "n_heads", "d_ff": "hidden_dim"}
    model_flags |= {"num_layers": "n_layers", "max_len": "context_length", "dropout": "drop_rate"}
    model_flags |= {"pos_encoding": "pos_encoding", "pooling": "pooling"}  # flag -> field
    for flag, field in model_flags.items():
        if getattr(args, flag) is not None:
            overrides[f"model.{field}"] = getattr(args, flag)
    if args.data is not None:
        overrides["data.source"] = str(args.data)
    if args.resume is not None:
        result = train_classifier(resume=args.resume, overrides=overrides, device=args.device)
    else:
        result = train_classifier(overrides=overrides, out_dir=args.out, device=args.device)
    print(result.summary())
    return 130 if result.run is not None and result.run.interrupted else 0


def _add_plot_command(sub: Any) -> None:
    """`scratchgpt plot RUN_DIR`: a training run's loss curves by step and by tokens seen."""
    p = sub.add_parser(
        "plot",
        help="plot a training run's loss curves (by step and by tokens seen) as a PNG",
        description="Draw the train and validation loss of a run directory's metrics.jsonl "
        "against the step and against the tokens seen (needs matplotlib: pip install "
        "'scratchgpt[plot]').",
    )
    p.add_argument(
        "run_dir", type=Path, metavar="RUN_DIR", help="a run directory holding metrics.jsonl"
    )
    p.add_argument(
        "--out", type=Path, metavar="PNG", help="output PNG file (default: RUN_DIR/loss.png)"
    )


def cmd_plot(args: argparse.Namespace) -> int:
    from .viz import plot_run

    print(f"wrote {plot_run(args.run_dir, out=args.out)}")
    return 0


def cmd_viz(args: argparse.Namespace) -> int:
    from . import viz

    if args.viz_command == "positions":
        learned = None
        if args.checkpoint:
            from .checkpoint import load_checkpoint

            model, _ = load_checkpoint(args.checkpoint)
            if model.cfg.pos_encoding != "learned":
                raise ValueError(f"{args.checkpoint} has no learned position table to compare")
            learned = model.pos_emb.weight[: args.n_positions]
        viz.plot_positional_encoding(
            n_positions=args.n_positions, dim=args.dim, learned=learned, out=args.out
        )
    elif args.viz_command == "curves":
        viz.plot_training_curves(args.run, title=args.run.name, out=args.out)
    else:
        from .classifier import TextClassifier, is_classifier

        head = None if getattr(args, "all_heads", False) else getattr(args, "head", 0)
        if args.checkpoint and is_classifier(args.checkpoint):
            classifier = TextClassifier.load(args.checkpoint)
            if args.viz_command == "attention":
                viz.plot_classifier_attention(
                    classifier, args.text, layer=args.layer, head=head, out=args.out
                )
            else:
                viz.plot_classifier_layers(classifier, args.text, out=args.out)
        else:
            model, tokenizer = _load_model(args, "cpu")
            if args.viz_command == "attention":
                viz.plot_model_attention(
                    model, tokenizer, args.text, layer=args.layer, head=head, out=args.out
                )
            else:
                viz.plot_model_layers(model, tokenizer, args.text, out=args.out)
    print(f"wrote {args.out}")
    return 0


def _add_prepare_command(sub: Any) -> None:
    """`scratchgpt prepare`: any data, tokenized into binary shards on every core."""
    p = sub.add_parser(
        "prepare",
        help="tokenize data into binary token shards (a short story or ten billion tokens)",
        description="Tokenize text into flat binary shards (uint16 ids when the vocabulary "
        "fits, else uint32) plus meta.json and the tokenizer, on every core, with an "
        "end-of-text token between documents and a validation split. Running the same command "
        "again resumes an interrupted run.",
    )
    p.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="SPEC",
        help="a named corpus (pydocs, the-verdict, tinyshakespeare), a .txt/.jsonl/.parquet "
        "file, a directory, a glob, or hf:NAME[:CONFIG][@SPLIT] (a Hugging Face dataset; pip "
        "install 'scratchgpt[data]'); repeat the flag for several",
    )
    p.add_argument(
        "--tokenizer",
        required=True,
        metavar="NAME_OR_PATH",
        help="gpt2, char or simple (built from the data), bpe (trained on the data, see "
        "--vocab-size), a saved tokenizer, or a directory with OpenAI's encoder.json + vocab.bpe",
    )
    p.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="output directory for the shards"
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.01,
        help="share of the documents kept for validation; with too few documents, the last "
        "share of the tokens (default: 0.01)",
    )
    p.add_argument(
        "--workers", type=int, help="tokenizing processes (default: one per available core)"
    )
    p.add_argument(
        "--shard-tokens",
        type=int,
        default=100_000_000,
        help="tokens per shard file (default: 100000000)",
    )
    p.add_argument(
        "--text-field",
        default="text",
        help="the field holding the text in .jsonl, .parquet and hf: rows (default: text)",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        help="where downloads are cached (default: $SCRATCHGPT_CACHE, else "
        "$XDG_CACHE_HOME/scratchgpt, else ~/.cache/scratchgpt)",
    )
    p.add_argument(
        "--vocab-size", type=int, help="vocabulary size of a --tokenizer bpe trained on the data"
    )
    p.add_argument(
        "--no-streaming",
        dest="streaming",
        action="store_false",
        help="download hf: datasets whole into the Hugging Face cache instead of streaming",
    )


def cmd_prepare(args: argparse.Namespace) -> int:
    import time

    from .data import load_prepared, load_text, prepare
    from .tokenizers import get_tokenizer

    text = None
    if args.tokenizer in ("char", "simple", "bpe"):  # these learn their vocabulary from the data
        text = load_text(args.data, text_field=args.text_field, cache_dir=args.cache_dir)
    tokenizer = get_tokenizer(args.tokenizer, text=text, vocab_size=args.vocab_size)
    start = time.perf_counter()
    out = prepare(
        args.data,
        tokenizer=tokenizer,
        out_dir=args.out,
        val_fraction=args.val_fraction,
        num_workers=args.workers,
        shard_tokens=args.shard_tokens,
        text_field=args.text_field,
        cache_dir=args.cache_dir,
        streaming=args.streaming,
    )
    seconds = time.perf_counter() - start
    meta = load_prepared(out, verify=False).meta
    tokens, docs = meta["tokens"], meta["documents"]
    print(
        f"prepared {out}: {tokens['train']:,} train + {tokens['val']:,} val tokens, "
        f"{docs['train'] + docs['val']:,} documents, {len(meta['shards'])} shards of "
        f"{meta['dtype']} ({meta['tokenizer']['type']} tokenizer, "
        f"{meta['tokenizer']['vocab_size']:,} ids) in {seconds:.1f} s"
    )
    return 0


COMMANDS = {
    "train": cmd_train,
    "config": cmd_config,
    "generate": cmd_generate,
    "info": cmd_info,
    "tokenizer": cmd_tokenizer,
    "download": cmd_download,
    "eval": cmd_eval,
    "export": cmd_export,
    "classify": cmd_classify,
    "viz": cmd_viz,
    "plot": cmd_plot,
    "prepare": cmd_prepare,
}


def _normalise(argv: Sequence[str]) -> list[str]:
    """``--training.max_steps`` and ``--training.max-steps`` are the same flag."""
    out = []
    for arg in argv:
        if arg.startswith("--") and "." in arg.partition("=")[0]:
            name, eq, value = arg.partition("=")
            arg = name.replace("_", "-") + eq + value
        out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_normalise(sys.argv[1:] if argv is None else argv))
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
