"""Run the server: the engine on the main thread, uvicorn's HTTP server in a thread beside it.

Why this way round: PyTorch's CPU kernels run fastest on the thread that first ran them (the
one that loaded the model); on another thread, GPT-2's small matrix products take about 25%
longer (see :meth:`BatchEngine.start`). The HTTP side is light (parsing, a chunk per token)
and runs anywhere.

Signals reach only the main thread, so it passes SIGTERM and SIGINT on to uvicorn, which then
stops accepting connections, lets requests in flight finish for up to ``shutdown_timeout``
seconds, cancels the rest (their clients see the connection close, never a hang) and shuts the
application down, which stops the engine's loop. A stop asked for this way is a clean exit:
:func:`serve` returns and the command exits 0.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import uvicorn

from ..errors import ConfigError
from ..model import GPTModel
from ..templates import Template
from ..tokenizers import Tokenizer
from .app import create_app
from .engine import BatchEngine

log = logging.getLogger(__name__)


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
    compiles the decode step (see :class:`BatchEngine`). Call it from the main thread.
    """
    engine = BatchEngine(
        model, tokenizer, max_batch=max_batch, max_queue=max_queue, compile=compile
    )
    app = create_app(engine, model_name=model_name, template=template, start_engine=False)
    level = logging.getLogger("scratchgpt").getEffectiveLevel()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        timeout_graceful_shutdown=shutdown_timeout,
        log_level="warning" if level > logging.INFO else "info",
    )
    server = uvicorn.Server(config)

    def http() -> None:
        try:
            server.run()
        except SystemExit:  # uvicorn's way to fail at startup (a port in use): told below
            pass
        finally:  # however the HTTP side ends (a port in use, a stop), the loop ends too
            engine.stop(timeout=shutdown_timeout + 5)

    def pass_on(sig: int, frame: FrameType | None) -> None:
        server.handle_exit(sig, frame)

    previous = {sig: signal.signal(sig, pass_on) for sig in (signal.SIGINT, signal.SIGTERM)}
    thread = threading.Thread(target=http, name="scratchgpt-http")
    thread.start()
    log.info("serving %s at http://%s:%d/v1 (max batch %d)", model_name, host, port, max_batch)
    try:
        engine.run()
    finally:
        thread.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        raise ConfigError(
            f"could not serve on {host}:{port} (is the port in use? the log above says why): "
            "pick another with --port"
        )
