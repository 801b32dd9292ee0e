"""``scratchgpt chat``: talk with an instruction-tuned model, one line in, one answer out.

The model, its template (the one saved with the checkpoint unless ``--template`` names
another) and a :class:`~scratchgpt.chat.ChatSession` that keeps the turns within the context;
each answer streams to stdout as it is generated. Lines come from stdin, so a conversation
can be piped in as well as typed; the ``you>`` prompt (on stderr) appears only at a terminal,
keeping piped output to the answers alone.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..config import SamplingConfig
from .flags import add_config_flags, short_usage
from .generate import (
    DEFAULT_TEMPERATURE,
    add_inference_options,
    add_model_source,
    chosen_template,
    load,
    sampling_from,
)

PROMPT = "you> "
# The room kept for an answer unless --max-tokens says otherwise; a model with a short context
# keeps half of it for the conversation instead.
DEFAULT_MAX_TOKENS = 200


def register(sub: Any) -> None:
    p = sub.add_parser(
        "chat",
        help="chat with an instruction-tuned checkpoint",
        description="A conversation with an instruction-tuned model: each line you type is a "
        "turn, framed by the model's prompt template; the earlier turns are kept as long as "
        "they fit the context (the oldest are dropped first). Commands: /reset forgets the "
        "conversation, /system TEXT sets the system message (and resets), /help lists them. "
        "Ctrl-C stops an answer (the part written so far is kept), Ctrl-D exits.",
        usage=short_usage("chat"),
    )
    add_model_source(p)
    p.add_argument(
        "--template",
        metavar="NAME_OR_FILE",
        help="the prompt template: alpaca, phi3, chatml or a JSON file [default: the one saved "
        "with the checkpoint]",
    )
    p.add_argument("--system", metavar="TEXT", help="a system message for the conversation")
    p.add_argument(
        "--max-tokens",
        type=int,
        help=f"most tokens per answer [default: {DEFAULT_MAX_TOKENS}, or half the model's "
        "context if that is less]",
    )
    keys = add_config_flags(p, SamplingConfig, defaults={"temperature": DEFAULT_TEMPERATURE})
    p.add_argument("--seed", type=int, help="random seed, for reproducible answers")
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="compile the decode step with torch.compile",
    )
    add_inference_options(p)
    p.set_defaults(run=run, sampling_keys=keys)


def run(args: argparse.Namespace) -> int:
    from ..chat import ChatSession, stop_strings
    from ..errors import ConfigError
    from ..generation import Generator

    sampling = sampling_from(args)  # before loading: a typo costs no model load
    if args.max_tokens is not None and args.max_tokens < 1:
        raise ConfigError(f"--max-tokens {args.max_tokens}: must be >= 1")
    template = chosen_template(args, saved_by_default=True)
    assert template is not None  # saved_by_default: a missing template was refused
    model, tokenizer = load(args)
    if tokenizer is None:
        raise ConfigError("this model has no tokenizer to read your messages: pass --tokenizer")
    context = model.cfg.context_length
    max_tokens = args.max_tokens or min(DEFAULT_MAX_TOKENS, context // 2)
    session = ChatSession(
        template, tokenizer, context_length=context, max_new_tokens=max_tokens, system=args.system
    )
    gen = Generator(model, tokenizer, compile=args.compile)
    options: dict[str, Any] = {"sampling": sampling, "stop": stop_strings(template)}
    return _loop(session, gen, args, options, max_tokens)


def _read_line(interactive: bool) -> str | None:
    """The next line of input, None at its end (Ctrl-D); the prompt only at a terminal."""
    if interactive:
        print(PROMPT, end="", file=sys.stderr, flush=True)
    try:
        return input()
    except EOFError:
        if interactive:
            print(file=sys.stderr)  # the shell prompt starts on a fresh line
        return None


def _loop(
    session: Any, gen: Any, args: argparse.Namespace, options: dict[str, Any], max_tokens: int
) -> int:
    """Read, answer, repeat until the input ends. A message the tokenizer cannot read is
    reported and skipped, not fatal: the conversation so far is worth keeping."""
    from ..errors import ScratchGPTError

    interactive = sys.stdin.isatty()
    if interactive:
        print("Type a message and press Enter; /help lists the commands.", file=sys.stderr)
    n = 0
    while True:
        try:
            line = _read_line(interactive)
        except KeyboardInterrupt:  # at the prompt: start a fresh line, like a shell
            print(file=sys.stderr)
            continue
        if line is None:
            return 0
        if not line.strip():
            continue
        reply = session.command(line)
        if reply is not None:
            print(reply, file=sys.stderr)
            continue
        try:
            prompt = session.prompt_text(line)
        except ScratchGPTError as exc:
            print(f"scratchgpt chat: {exc}", file=sys.stderr)
            continue
        seed = None if args.seed is None else args.seed + n
        n += 1
        pieces: list[str] = []
        try:
            for piece in gen.stream_text(prompt, max_tokens, seed=seed, **options):
                pieces.append(piece)
                print(piece, end="", flush=True)  # each piece as soon as it is made
        except KeyboardInterrupt:
            print()  # end the cut answer's line
            print("[stopped]", file=sys.stderr)
        else:
            print()
        session.add_answer("".join(pieces))  # a stopped answer is kept as far as it went
