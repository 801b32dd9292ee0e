"""``scratchgpt eval``: loss and perplexity of a model over a text."""

from __future__ import annotations

import argparse
from typing import Any

from .flags import short_usage
from .generate import add_inference_options, add_model_source, load


def register(sub: Any) -> None:
    p = sub.add_parser(
        "eval",
        help="loss and perplexity of a model over a text",
        description="Score a text with a model by a strided sliding window: every token after "
        "the first is scored once, with up to context-length tokens of left context.",
        usage=short_usage("eval"),
    )
    add_model_source(p)
    p.add_argument(
        "--data",
        required=True,
        help="a UTF-8 text file, or a named corpus (pydocs, the-verdict, tinyshakespeare)",
    )
    p.add_argument(
        "--stride",
        type=int,
        help="tokens between window starts, 1 to the context length (default: half the "
        "context); smaller gives each token more context and costs more passes",
    )
    p.add_argument("--context-length", type=int, help="crop the model to a shorter context window")
    p.add_argument(
        "--batch-size", type=int, default=1, help="windows per forward pass [default: 1]"
    )
    add_inference_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..data import load_text
    from ..errors import ConfigError
    from ..evaluation import perplexity

    model, tokenizer = load(args)
    if tokenizer is None:
        raise ConfigError("this model has no tokenizer to turn the text into ids: pass --tokenizer")
    ids = tokenizer.encode(load_text(args.data))
    r = perplexity(model, ids, stride=args.stride, batch_size=args.batch_size)
    print(
        f"loss {r.loss:.4f}, perplexity {r.perplexity:.2f} over {r.tokens_scored:,} tokens "
        f"({r.windows} windows of up to {r.context_length} tokens, stride {r.stride})"
    )
    return 0
