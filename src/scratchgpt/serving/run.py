"""Run the server: uvicorn around :func:`~scratchgpt.serving.app.create_app`, stopping cleanly.

On SIGTERM (or Ctrl-C) uvicorn stops accepting connections, lets requests in flight finish
for up to ``shutdown_timeout`` seconds, cancels the rest (their clients see the connection
close, never a hang), then stops the engine. A SIGTERM that ends this way is a clean exit, so
the process exits 0; uvicorn's default of raising the signal again after shutting down would
make every orchestrated restart look like a crash.
"""

from __future__ import annotations

import logging
import signal
from types import FrameType

import uvicorn

from ..model import GPTModel
from ..templates import Template
from ..tokenizers import Tokenizer
from .app import create_app
from .engine import BatchEngine

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn's server, except that a SIGTERM it shut down for is not raised again."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        captured = getattr(self, "_captured_signals", [])  # uvicorn >= 0.29 raises them again
        if sig == signal.SIGTERM and sig in captured:
            captured.remove(sig)


def serve(
    model: GPTModel,
    tokenizer: Tokenizer,
    *,
    model_name: str,
    template: Template | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_batch: int = 8,
    max_queue: int = 64,
    compile: bool = False,
    shutdown_timeout: float = 30.0,
) -> None:
    """Serve ``model`` with OpenAI's API at http://host:port/v1 until SIGTERM or Ctrl-C.

    ``max_batch`` requests decode together (each holds a row of KV cache for the whole
    context); up to ``max_queue`` more wait, and beyond that requests get 503. ``compile``
    compiles the decode step (see :class:`BatchEngine`).
    """
    engine = BatchEngine(
        model, tokenizer, max_batch=max_batch, max_queue=max_queue, compile=compile
    )
    app = create_app(engine, model_name=model_name, template=template)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        timeout_graceful_shutdown=shutdown_timeout,
        log_level=logging.getLevelName(logging.getLogger("scratchgpt").getEffectiveLevel())
        .lower()
        .replace("notset", "info"),
    )
    log.info("serving %s at http://%s:%d/v1 (max batch %d)", model_name, host, port, max_batch)
    _Server(config).run()
