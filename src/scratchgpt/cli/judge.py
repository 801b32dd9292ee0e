"""``scratchgpt judge``: score a model's responses 0-100 with a larger model as the judge.

The book's ch. 7.8 evaluation: each record's response is compared with its reference output
by a model served behind an OpenAI-compatible endpoint (Ollama by default). The library does
the work (:func:`scratchgpt.judge.judge_responses`); this prints the summary and writes the
per-record scores beside the input.

The judge's model is ``--judge-model``: ``--model`` is not used by any command, since a
trained model is always ``--checkpoint``, and here it would read as the model being judged.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ..judge import OLLAMA_ENDPOINT  # standard library and templates only: --help stays light
from .flags import short_usage


def register(sub: Any) -> None:
    p = sub.add_parser(
        "judge",
        help="score model responses 0-100 against references with a judge model (Ollama, ...)",
        description="Ask a larger model, served behind an OpenAI-compatible chat endpoint, to "
        "score each response against its reference output from 0 to 100 (the book's ch. 7 "
        "evaluation), and report the mean and its standard error.",
        usage=short_usage("judge", "--responses FILE --judge-model NAME"),
    )
    p.add_argument(
        "--responses",
        type=Path,
        required=True,
        metavar="FILE",
        help="a JSON list (or JSON Lines) of records: instruction, input, output and the "
        "model's response",
    )
    p.add_argument(
        "--endpoint",
        default=OLLAMA_ENDPOINT,
        metavar="URL",
        help=f"the OpenAI-compatible API's base URL [default: {OLLAMA_ENDPOINT}, Ollama's]",
    )
    p.add_argument(
        "--judge-model",
        required=True,
        metavar="NAME",
        help="the judge model's name on that server (e.g. llama3)",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="where to write the per-record scores (default: FILE-scores.json beside FILE)",
    )
    p.add_argument(
        "--key-response",
        default="model_response",
        metavar="KEY",
        help="the record field holding the response to judge [default: model_response]",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=3,
        metavar="N",
        help="retries after a transient failure or an answer that is not a number [default: 3]",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds to wait for one reply [default: 60]",
    )
    p.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        metavar="NAME",
        help="the environment variable holding an API key, sent as a Bearer token when set "
        "[default: OPENAI_API_KEY]",
    )
    p.set_defaults(run=run)


def default_out(responses: Path) -> Path:
    """``data.json`` -> ``data-scores.json`` in the same directory."""
    return responses.with_name(f"{responses.stem}-scores.json")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from ..errors import ConfigError
    from ..files import atomic_write_text
    from ..judge import judge_responses, load_records

    api_key = os.environ.get(args.api_key_env) or None
    if api_key is None and args.api_key_env != "OPENAI_API_KEY":
        raise ConfigError(f"--api-key-env {args.api_key_env}: that variable is not set")
    records = load_records(args.responses)
    out = args.out if args.out is not None else default_out(args.responses)
    with (
        tqdm(
            total=len(records), desc="judging", unit="record", file=sys.stderr, disable=None
        ) as bar,
        logging_redirect_tqdm(),
    ):
        result = judge_responses(
            records,
            endpoint=args.endpoint,
            model=args.judge_model,
            response_key=args.key_response,
            retries=args.retries,
            timeout=args.timeout,
            api_key=api_key,
            on_item=lambda _: bar.update(1),
        )
    atomic_write_text(out, result.to_json() + "\n")
    if result.mean is None:
        summary = "no response scored"
    else:
        se = "n/a" if result.stderr is None else f"{result.stderr:.2f}"
        summary = f"mean {result.mean:.2f} ± {se}"
    print(
        f"judge {args.judge_model}: {summary} over {result.scored} scored, {result.failed} failed"
    )
    print(f"scores: {out}")
    return 0
