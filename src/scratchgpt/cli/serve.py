"""``scratchgpt serve``: a model behind OpenAI's HTTP API, batching concurrent requests.

Thin, like every command: it loads the model as ``generate`` does, settles the chat template
(``--template``, else the checkpoint's own, else none: chat requests then get a 400 that says
so) and calls :func:`scratchgpt.serving.run.serve`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .flags import short_usage
from .generate import (
    _weights_source,
    add_inference_options,
    add_model_source,
    chosen_template,
    load,
)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a model with OpenAI's API (completions, chat, streaming)",
        description="Serve a model over HTTP with OpenAI's API: POST /v1/completions, POST "
        "/v1/chat/completions (with the model's chat template), GET /v1/models, GET /health. "
        "Concurrent requests share one decode loop. Needs the serve extra: "
        'pip install -e ".[serve]".',
        usage=short_usage("serve"),
    )
    add_model_source(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on [default: 127.0.0.1]")
    p.add_argument(
        "--port", type=int, default=8000, metavar="PORT", help="port to listen on [default: 8000]"
    )
    p.add_argument(
        "--served-model-name",
        metavar="NAME",
        help="the model's name in requests and GET /v1/models [default: the --init-from name, "
        "or the checkpoint directory's name]",
    )
    p.add_argument(
        "--template",
        metavar="NAME_OR_FILE",
        help="the chat template for /v1/chat/completions: alpaca, phi3, chatml or a JSON file "
        "[default: the one saved with the checkpoint; without one, chat requests are refused]",
    )
    p.add_argument(
        "--max-batch",
        type=int,
        metavar="N",
        default=8,
        help="requests decoded together; each holds a row of KV cache as long as the context "
        "[default: 8]",
    )
    p.add_argument(
        "--max-queue",
        type=int,
        metavar="N",
        default=64,
        help="requests that may wait for a free row; more get 503 with Retry-After [default: 64]",
    )
    p.add_argument(
        "--shutdown-timeout",
        type=float,
        metavar="SECONDS",
        default=30.0,
        help="on SIGTERM, seconds to let requests in flight finish before cancelling them "
        "[default: 30]",
    )
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="compile the decode step with torch.compile (a graph per 256 slots of context, "
        "compiled when first needed: the first requests wait for it)",
    )
    add_inference_options(p)
    p.set_defaults(run=run)


def served_name(args: argparse.Namespace) -> str:
    """``--served-model-name``, else what the weights are called: the --init-from name or the
    checkpoint (or run) directory's name."""
    if args.served_model_name:
        return str(args.served_model_name)
    if args.init_from is not None and not Path(args.init_from).is_dir():
        return str(args.init_from)
    source = _weights_source(args)
    assert source is not None
    path = Path(source).resolve()
    return path.parent.name if path.name.startswith("step-") else path.name


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError, missing_extra

    try:
        from ..serving.run import serve
    except ModuleNotFoundError as exc:
        raise missing_extra(str(exc.name), "serve", "scratchgpt serve") from None
    if args.max_batch < 1:
        raise ConfigError(f"--max-batch {args.max_batch}: must be >= 1")
    if args.max_queue < 0:
        raise ConfigError(f"--max-queue {args.max_queue}: must be >= 0")
    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: must be in 1-65535")
    template = _template(args)
    name = served_name(args)
    model, tokenizer = load(args)
    if tokenizer is None:
        raise ConfigError("this model has no tokenizer to read prompts with: pass --tokenizer")
    serve(
        model,
        tokenizer,
        model_name=name,
        template=template,
        host=args.host,
        port=args.port,
        max_batch=args.max_batch,
        max_queue=args.max_queue,
        compile=args.compile,
        shutdown_timeout=args.shutdown_timeout,
    )
    return 0


def _template(args: argparse.Namespace) -> Any:
    """--template's, else the checkpoint's own if it has one, else None."""
    if args.template is not None:
        return chosen_template(args, saved_by_default=False)
    from ..inference import saved_template

    source = _weights_source(args)
    return saved_template(source) if source is not None else None
