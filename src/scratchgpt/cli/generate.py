"""``scratchgpt generate``: continue a prompt, streaming each piece as soon as it is made."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import SamplingConfig
from .flags import add_config_flags, given, short_usage

if TYPE_CHECKING:
    from ..templates import Template

# The command line samples a little cooler than SamplingConfig's neutral 1.0.
DEFAULT_TEMPERATURE = 0.8
# scratchgpt.inference.DTYPES and scratchgpt.quantization.QUANTIZATIONS, written out so that
# building the parser imports no torch (a test holds them equal).
DTYPES = ("float32", "bfloat16", "float16")
QUANTIZATIONS = ("int8",)


def add_model_source(p: Any, *, latest: bool = True) -> None:
    """--checkpoint / --init-from: which weights a command runs (one of the two)."""
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--checkpoint",
        type=Path,
        metavar="DIR",
        help="a checkpoint or run directory"
        + (" (default: the latest run under runs/)" if latest else ""),
    )
    group.add_argument(
        "--init-from",
        metavar="NAME_OR_DIR",
        help="pretrained weights instead: gpt2, gpt2-medium, gpt2-large, gpt2-xl (OpenAI's "
        "GPT-2 through the Hugging Face cache), a Hugging Face or OpenAI GPT-2 directory, or a "
        "scratchgpt checkpoint",
    )


def add_inference_options(p: Any) -> None:
    """--dtype, --quantize, --device, --tokenizer: how the loaded weights run."""
    p.add_argument(
        "--dtype",
        choices=DTYPES,
        help="cast the weights as they load (default: as saved); at batch 1 decoding reads "
        "every weight per token, so bfloat16 halves the bytes (see docs/benchmarks.md)",
    )
    p.add_argument(
        "--quantize",
        choices=QUANTIZATIONS,
        help="int8: Linear weights as int8 with bfloat16 activations, a quarter of fp32's "
        "bytes (the quant extra; fastest with --compile)",
    )
    p.add_argument(
        "--device", default="auto", help="auto, cpu, cuda, cuda:N or mps [default: auto]"
    )
    p.add_argument(
        "--tokenizer",
        metavar="NAME_OR_PATH",
        help="use this tokenizer instead of the model's (its ids must fit the vocabulary)",
    )


def load(args: argparse.Namespace) -> tuple[Any, Any]:
    """The model and tokenizer the flags of :func:`add_model_source` and
    :func:`add_inference_options` ask for."""
    from ..inference import load_model

    return load_model(
        args.checkpoint,
        init_from=args.init_from,
        device=args.device,
        dtype=getattr(args, "dtype", None),
        quantize=getattr(args, "quantize", None),
        context_length=getattr(args, "context_length", None),
        tokenizer=args.tokenizer,
    )


def register(sub: Any) -> None:
    p = sub.add_parser(
        "generate",
        help="generate text from a checkpoint or GPT-2",
        description="Continue a prompt with a trained model, printing each piece as it is made.",
        usage=short_usage("generate"),
    )
    add_model_source(p)
    p.add_argument(
        "--prompt", default="", help="text to continue (default: start from end-of-text)"
    )
    p.add_argument("--max-tokens", type=int, default=200, help="tokens to generate [default: 200]")
    keys = add_config_flags(p, SamplingConfig, defaults={"temperature": DEFAULT_TEMPERATURE})
    p.add_argument("--seed", type=int, help="random seed, for a reproducible sample")
    p.add_argument(
        "--stop",
        action="append",
        metavar="TEXT",
        help="stop before this text (repeat the flag for several stop strings)",
    )
    p.add_argument(
        "--template",
        metavar="NAME_OR_FILE",
        help="frame --prompt as one user turn of a prompt template (alpaca, phi3, chatml, a "
        "JSON file, or 'saved': the one stored with the checkpoint) and stop where the "
        "template's answer ends; the output starts with the framed prompt [default: none, the "
        "prompt as is]",
    )
    p.add_argument(
        "--num-samples", type=int, default=1, help="independent samples of the prompt [default: 1]"
    )
    p.add_argument(
        "--interactive",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="a prompt loop: Ctrl-C stops the current answer, Ctrl-D exits",
    )
    p.add_argument(
        "--cache",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the KV cache; --no-cache is the textbook loop that re-reads the whole context "
        "for every token (slow) [default: on]",
    )
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="compile the decode step with torch.compile",
    )
    add_inference_options(p)
    p.set_defaults(run=run, sampling_keys=keys)


def sampling_from(args: argparse.Namespace) -> SamplingConfig:
    """The sampling settings given as flags, validated once, by SamplingConfig."""
    from ..config import from_data

    values = {"temperature": DEFAULT_TEMPERATURE, **given(args, args.sampling_keys)}
    return from_data(SamplingConfig, values)


def _weights_source(args: argparse.Namespace) -> Path | None:
    """The directory the model comes from, where a saved template would be; None for a
    GPT-2 name."""
    if args.checkpoint is not None:
        return Path(args.checkpoint)
    if args.init_from is not None:
        return Path(args.init_from) if Path(args.init_from).is_dir() else None
    from ..checkpoint import latest_run

    return latest_run()


def chosen_template(args: argparse.Namespace, *, saved_by_default: bool) -> Template | None:
    """The template ``--template`` names ("saved": the checkpoint's own), or with
    ``saved_by_default`` and no flag, the checkpoint's own; only JSON is read, so a missing
    template is refused before any weights load."""
    from ..errors import ConfigError
    from ..templates import get_template

    name = args.template
    if name is None and not saved_by_default:
        return None
    if name is not None and name != "saved":
        return get_template(name)
    from ..inference import saved_template

    source = _weights_source(args)
    template = saved_template(source) if source is not None else None
    if template is None:
        raise ConfigError(
            f"{source or args.init_from} has no saved prompt template: pass --template "
            "alpaca, phi3, chatml or a template JSON file"
        )
    return template


def run(args: argparse.Namespace) -> int:
    from ..chat import stop_strings
    from ..errors import ConfigError
    from ..generation import Generator

    sampling = sampling_from(args)  # before loading: a typo costs no model load
    if args.max_tokens < 0:
        raise ConfigError(f"--max-tokens {args.max_tokens}: must be >= 0")
    if args.num_samples < 1:
        raise ConfigError(f"--num-samples {args.num_samples}: must be >= 1")
    template = chosen_template(args, saved_by_default=False)
    model, tokenizer = load(args)
    if tokenizer is None:
        raise ConfigError(
            "this model has no tokenizer to turn the prompt into ids: pass --tokenizer"
        )
    gen = Generator(model, tokenizer, compile=args.compile)
    stop = tuple(args.stop or ())
    frame: Callable[[str], str] = str  # the prompt as is
    if template is not None:
        stop += stop_strings(template)
        frame = functools.partial(_framed, template)
    options: dict[str, Any] = {"sampling": sampling, "use_cache": args.cache, "stop": stop}
    if args.interactive:
        return _interactive(gen, args, options, frame)
    prompt = frame(args.prompt)
    for n in range(args.num_samples):
        if args.num_samples > 1:
            print(f"--- sample {n + 1} ---")
        seed = None if args.seed is None else args.seed + n
        print(prompt, end="", flush=True)
        for piece in gen.stream_text(prompt, args.max_tokens, seed=seed, **options):
            print(piece, end="", flush=True)  # each piece as soon as it is made
        print()  # the text ends with a newline, so the shell prompt starts on its own line
    return 0


def _framed(template: Template, text: str) -> str:
    """``text`` as the one user turn of a prompt that ends where the answer starts."""
    from ..templates import Message

    return template.prompt([Message("user", text)])


def _interactive(
    gen: Any, args: argparse.Namespace, options: dict[str, Any], frame: Callable[[str], str]
) -> int:
    """A prompt loop: Ctrl-C stops the current answer, Ctrl-D (end of input) exits. Each
    prompt is answered alone (``scratchgpt chat`` keeps a conversation)."""
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
            for piece in gen.stream_text(frame(prompt), args.max_tokens, seed=seed, **options):
                print(piece, end="", flush=True)
        except KeyboardInterrupt:
            print()  # end the cut answer's line
            print("[stopped]", file=sys.stderr)
            continue
        print()
