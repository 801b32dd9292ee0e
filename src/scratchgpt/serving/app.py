"""The HTTP side of the server: OpenAI's endpoints on FastAPI, over one :class:`BatchEngine`.

``POST /v1/completions`` and ``POST /v1/chat/completions`` turn a request into jobs (one per
prompt and choice), hand them to the engine, and answer with the whole result or, with
``"stream": true``, with server-sent events in OpenAI's chunk format ending in
``data: [DONE]``. ``GET /v1/models`` names the one model served; ``GET /health`` reports the
engine's state (active and queued requests, the largest batch it has run).

Every failure answers in OpenAI's error shape (``{"error": {message, type, param, code}}``)
with a 4xx status for a bad request, 503 with ``Retry-After`` when the waiting line is full,
and never a traceback. A client that goes away cancels its jobs, which frees their rows at
the engine's next step. The engine runs in its own thread; results come back to the event
loop through ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from ..chat import stop_strings
from ..config import SamplingConfig
from ..errors import ConfigError, DataError
from ..templates import Message, Template
from .engine import BatchEngine, Event, Job, QueueFullError
from .protocol import ApiError, ChatRequest, CompletionRequest, parse

log = logging.getLogger(__name__)

# How long a client told "the queue is full" should wait before trying again, in seconds.
RETRY_AFTER = 1
# While waiting for a whole (non-streamed) result, check this often whether the client left.
DISCONNECT_POLL = 0.25
# The largest `n` one request may ask for, beside the engine's batch size.
MAX_CHOICES = 128


@dataclass
class _Choice:
    """One job of a request and what it has produced so far."""

    index: int
    job: Job
    text: str = ""
    finish_reason: str | None = None
    completion_tokens: int = 0


class _Session:
    """A request's jobs, and the queue their events arrive on (from the engine's thread)."""

    def __init__(self, engine: BatchEngine) -> None:
        self.engine = engine
        self.loop = asyncio.get_running_loop()
        self.events: asyncio.Queue[tuple[int, Event]] = asyncio.Queue()
        self.choices: list[_Choice] = []

    def add(
        self,
        prompt: list[int],
        max_tokens: int,
        sampling: SamplingConfig,
        stop: tuple[str, ...],
        seed: int | None,
    ) -> None:
        index = len(self.choices)

        def deliver(event: Event) -> None:  # called in the engine's thread
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody listens
                self.loop.call_soon_threadsafe(self.events.put_nowait, (index, event))

        job = Job(prompt, max_tokens, deliver, sampling=sampling, stop=stop, seed=seed)
        self.choices.append(_Choice(index, job))

    def submit(self) -> None:
        """All jobs or none: a full queue cancels the ones already in."""
        submitted: list[Job] = []
        try:
            for choice in self.choices:
                if choice.job.max_tokens == 0:  # nothing to generate (an echo only)
                    choice.finish_reason = "length"
                    continue
                self.engine.submit(choice.job)
                submitted.append(choice.job)
        except QueueFullError as exc:
            for job in submitted:
                self.engine.cancel(job)
            raise ApiError(
                503,
                f"the server is busy ({exc}): retry in {RETRY_AFTER} s",
                kind="server_error",
                code="queue_full",
                headers={"Retry-After": str(RETRY_AFTER)},
            ) from None

    @property
    def done(self) -> bool:
        return all(c.finish_reason is not None for c in self.choices)

    async def next_event(self) -> tuple[_Choice, Event]:
        index, event = await self.events.get()
        choice = self.choices[index]
        choice.text += event.text
        choice.completion_tokens = event.completion_tokens or choice.completion_tokens
        if event.finish_reason is not None:
            choice.finish_reason = event.finish_reason
            if event.finish_reason in ("cancelled", "error"):
                raise ApiError(
                    503 if event.finish_reason == "cancelled" else 500,
                    "the server is shutting down"
                    if event.finish_reason == "cancelled"
                    else f"generation failed: {event.text}",
                    kind="server_error",
                )
        return choice, event

    def cancel(self) -> None:
        for c in self.choices:
            if c.finish_reason is None:
                self.engine.cancel(c.job)

    def usage(self, prompt_tokens: int) -> dict[str, int]:
        completion = sum(c.completion_tokens for c in self.choices)
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
        }


class Server:
    """What the endpoints need: the engine, the model's name and context, its template."""

    def __init__(
        self, engine: BatchEngine, *, model_name: str, template: Template | None = None
    ) -> None:
        self.engine = engine
        self.model_name = model_name
        self.template = template
        self.tokenizer = engine.tokenizer
        self.context = engine.context_length
        self.created = int(time.time())
        self.draining = False

    # --- turning requests into jobs ---

    def check_model(self, name: str) -> None:
        if name != self.model_name:
            raise ApiError(
                404,
                f"The model {name!r} does not exist: this server serves {self.model_name!r} "
                "(GET /v1/models)",
                param="model",
                code="model_not_found",
            )

    def sampling(self, req: Any) -> SamplingConfig:
        try:
            return SamplingConfig(
                temperature=req.temperature,
                top_k=req.top_k,
                top_p=None if req.top_p == 1.0 else req.top_p,
                repetition_penalty=req.repetition_penalty,
            )
        except ConfigError as exc:
            raise ApiError(400, str(exc), param=str(exc).split("=")[0]) from None

    def encode(self, prompt: str | list[int]) -> list[int]:
        if isinstance(prompt, list):
            vocab = self.engine.model.cfg.vocab_size
            bad = [t for t in prompt if not 0 <= t < vocab]
            if bad:
                raise ApiError(
                    400,
                    f"token id {bad[0]} is outside the vocabulary [0, {vocab})",
                    param="prompt",
                )
            ids = prompt
        else:
            ids = self.tokenizer.encode(prompt) if prompt else []
        if not ids:  # nothing to condition on: start where documents start
            eot = self.tokenizer.eot_id
            ids = [eot if eot is not None else 0]
        return ids

    def budget(self, ids: list[int], max_tokens: int | None, default: int | None) -> int:
        """New tokens for a prompt: ``max_tokens``, or the default that fits; an error when
        the prompt and the request do not fit in the context."""
        room = self.context - len(ids)
        if room < 1:
            raise ApiError(
                400,
                f"the prompt is {len(ids)} tokens, and this model's context is {self.context} "
                f"tokens: shorten the prompt to at most {self.context - 1} tokens to leave "
                "room for an answer",
                param="prompt" if self.template is None else "messages",
                code="context_length_exceeded",
            )
        if max_tokens is None:
            return room if default is None else min(default, room)
        if max_tokens > room:
            raise ApiError(
                400,
                f"max_tokens={max_tokens} with a {len(ids)}-token prompt needs "
                f"{len(ids) + max_tokens} tokens, past this model's context of {self.context}: "
                f"set max_tokens to at most {room}",
                param="max_tokens",
                code="context_length_exceeded",
            )
        return max_tokens

    def check_choices(self, prompts: int, n: int) -> None:
        total = prompts * n
        if total > min(self.engine.max_batch, MAX_CHOICES) and n > 1:
            raise ApiError(
                400,
                f"n={n} for {prompts} prompt(s) asks for {total} sequences at once; this "
                f"server runs at most {self.engine.max_batch} together (--max-batch)",
                param="n",
            )

    def chat_prompt(self, req: ChatRequest) -> str:
        if self.template is None:
            raise ApiError(
                400,
                "this model has no chat template, so it cannot take messages: use "
                "/v1/completions with a plain prompt, or start the server with --template "
                "NAME (alpaca, phi3, chatml or a template file)",
                param="messages",
                code="no_chat_template",
            )
        role = {"developer": "system"}
        messages = [Message(role.get(m.role, m.role), m.text) for m in req.messages]
        try:
            return self.template.prompt(messages)
        except (DataError, ConfigError) as exc:
            raise ApiError(400, f"messages: {exc}", param="messages") from None


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None


async def _wait_all(session: _Session, request: Request) -> None:
    """Collect every job's result; stop (and cancel) if the client disconnects."""
    while not session.done:
        try:
            await asyncio.wait_for(session.next_event(), DISCONNECT_POLL)
        except asyncio.TimeoutError:
            if await request.is_disconnected():
                session.cancel()
                return


def create_app(
    engine: BatchEngine,
    *,
    model_name: str,
    template: Template | None = None,
    start_engine: bool = True,
) -> FastAPI:
    """The FastAPI application serving ``engine`` as ``model_name``.

    The engine stops with the application (FastAPI's lifespan) and, with ``start_engine``,
    starts with it in a thread of its own, so tests can mount the app in any ASGI server;
    ``start_engine=False`` is for a caller that runs ``engine.run()`` itself (see
    :func:`scratchgpt.serving.run.serve`). ``template`` frames chat messages; without one,
    chat requests are refused with a 400 that says what to do.
    """
    server = Server(engine, model_name=model_name, template=template)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if start_engine:
            engine.start()
        try:
            yield
        finally:
            server.draining = True
            engine.stop()

    app = FastAPI(title="scratchgpt", lifespan=lifespan)
    app.state.server = server

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        error = ApiError(exc.status_code, str(exc.detail), code=None)
        return JSONResponse(error.body(), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed")
        error = ApiError(500, f"internal error: {type(exc).__name__}", kind="server_error")
        return JSONResponse(error.body(), status_code=500)

    @app.get("/health")
    async def health() -> JSONResponse:
        stats = engine.stats
        body = {
            "status": "shutting down" if server.draining else "ok",
            "model": model_name,
            "active": stats.active,
            "queued": stats.queued,
            "max_batch": engine.max_batch,
            "largest_batch": stats.largest_batch,
            "steps": stats.steps,
            "tokens": stats.tokens,
        }
        return JSONResponse(body, status_code=503 if server.draining else 200)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(server)]}

    @app.get("/v1/models/{name:path}")
    async def model(name: str) -> dict[str, Any]:
        server.check_model(name)
        return _model_card(server)

    @app.post("/v1/completions", response_model=None)
    async def completions(request: Request) -> Any:
        req: CompletionRequest = parse(CompletionRequest, await _body(request))
        server.check_model(req.model)
        prompts = [server.encode(p) for p in req.prompts]
        if not prompts:
            raise ApiError(400, "prompt: the list of prompts is empty", param="prompt")
        server.check_choices(len(prompts), req.n)
        sampling = server.sampling(req)
        session = _Session(engine)
        for ids in prompts:
            budget = server.budget(ids, req.max_tokens, default=16)  # OpenAI's default
            for j in range(req.n):
                seed = None if req.seed is None else req.seed + j
                session.add(ids, budget, sampling, req.stops, seed)
        echoes = [server.tokenizer.decode(ids) if req.echo else "" for ids in prompts]
        return await _respond(
            session,
            request,
            req,
            kind="text_completion",
            prompt_tokens=sum(len(p) for p in prompts),
            echo=[echoes[i // req.n] for i in range(len(session.choices))],
        )

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> Any:
        req: ChatRequest = parse(ChatRequest, await _body(request))
        server.check_model(req.model)
        server.check_choices(1, req.n)
        ids = server.encode(server.chat_prompt(req))
        budget = server.budget(ids, req.max_tokens, default=None)
        sampling = server.sampling(req)
        assert server.template is not None
        stop = req.stops + stop_strings(server.template)
        session = _Session(engine)
        for j in range(req.n):
            session.add(ids, budget, sampling, stop, None if req.seed is None else req.seed + j)
        return await _respond(
            session, request, req, kind="chat.completion", prompt_tokens=len(ids), echo=None
        )

    return app


def _model_card(server: Server) -> dict[str, Any]:
    return {
        "id": server.model_name,
        "object": "model",
        "created": server.created,
        "owned_by": "scratchgpt",
        "context_length": server.context,
    }


async def _respond(
    session: _Session,
    request: Request,
    req: Any,
    *,
    kind: str,
    prompt_tokens: int,
    echo: list[str] | None,
) -> Any:
    """Submit the jobs, then answer with the whole result or a stream of chunks."""
    session.submit()
    chat = kind == "chat.completion"
    head = {
        "id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}",
        "object": kind,
        "created": int(time.time()),
        "model": req.model,
    }
    if req.stream:
        chunks = _stream(session, req, head, prompt_tokens=prompt_tokens, echo=echo)
        return StreamingResponse(chunks, media_type="text/event-stream")
    try:
        await _wait_all(session, request)
    finally:
        session.cancel()
    choices = []
    for c in session.choices:
        if chat:
            message = {"role": "assistant", "content": c.text}
            choices.append(
                {
                    "index": c.index,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": c.finish_reason,
                }
            )
        else:
            text = (echo[c.index] if echo else "") + c.text
            choices.append(
                {"index": c.index, "text": text, "logprobs": None, "finish_reason": c.finish_reason}
            )
    return {**head, "choices": choices, "usage": session.usage(prompt_tokens)}


async def _stream(
    session: _Session,
    req: Any,
    head: dict[str, Any],
    *,
    prompt_tokens: int,
    echo: list[str] | None,
) -> AsyncIterator[str]:
    """Server-sent events: a chunk per new piece of text, the finish reasons, [DONE].

    Starlette cancels this generator when the client disconnects; ``finally`` then cancels
    the jobs, which frees their rows at the engine's next step.
    """
    chat = head["object"] == "chat.completion"
    chunk_head = {**head, "object": "chat.completion.chunk" if chat else "text_completion"}
    if req.include_usage:
        chunk_head["usage"] = None

    def chunk(index: int, text: str | None, finish: str | None, *, role: bool = False) -> str:
        if chat:
            delta: dict[str, Any] = {"role": "assistant"} if role else {}
            if text is not None:
                delta["content"] = text
            choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish}
        return _sse({**chunk_head, "choices": [choice]})

    try:
        for c in session.choices:  # opening chunks: the role (chat), the prompt (echo)
            if chat:
                yield chunk(c.index, "", None, role=True)
            elif echo and echo[c.index]:
                yield chunk(c.index, echo[c.index], None)
            if c.finish_reason is not None:  # max_tokens 0: ends before it starts
                yield chunk(c.index, None if chat else "", c.finish_reason)
        while not session.done:
            try:
                choice, event = await session.next_event()
            except ApiError as exc:
                yield _sse(exc.body())
                return
            text = event.text if event.text else (None if chat else "")
            yield chunk(choice.index, text, event.finish_reason)
        if req.include_usage:
            yield _sse({**chunk_head, "choices": [], "usage": session.usage(prompt_tokens)})
        yield "data: [DONE]\n\n"
    finally:
        session.cancel()
