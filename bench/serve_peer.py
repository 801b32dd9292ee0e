"""The peer of bench/serve.py: a plain FastAPI endpoint that calls transformers' ``generate``
once per request, speaking the subset of OpenAI's ``POST /v1/completions`` the load generator
uses.

What "plain" means here, on purpose:

- one ``GPT2LMHeadModel.generate`` call per request, batch 1, no batching across requests
  (that is what the benchmark measures); fp32, ``torch.inference_mode``, Hugging Face's default
  KV cache, ``do_sample=False`` for temperature 0;
- streaming the way Hugging Face documents it: ``generate`` runs in a thread of its own with
  a streamer (here a ``BaseStreamer`` that hands token ids to the event loop, so the server
  can count them and decode incrementally), and the response is a ``StreamingResponse``;
- concurrency: the ``generate`` calls run in a thread pool, as FastAPI runs a sync endpoint.
  With ``--serialize`` (the default) the pool has one thread: one ``generate`` at a time, the
  others queued first come, first served; with ``--no-serialize`` it has 64 and concurrent
  requests share the cores. bench/serve.py's results say which was used, and its docstring
  which was faster.

Request fields: ``model`` (not checked), ``prompt`` (a string or a list of token ids),
``max_tokens``, ``temperature`` (0 = greedy), ``top_p``, ``seed``, ``stream`` and
``stream_options.include_usage``; ``n`` must be 1; ``stop`` is not supported. Text is decoded
incrementally: a chunk is sent once the text so far no longer ends in an incomplete UTF-8
sequence, so a chunk may carry several tokens (the usage chunk gives the exact count).

    python bench/serve_peer.py --model DIR --port 8001   # DIR: a Hugging Face GPT-2 directory
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
import transformers
import uvicorn
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel
from transformers.generation.streamers import BaseStreamer


class StreamOptions(BaseModel):
    include_usage: bool = False


class CompletionRequest(BaseModel):
    model: str | None = None
    prompt: str | list[int]
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None


class IdStreamer(BaseStreamer):
    """Hands each new token id from the generate thread to the event loop's queue; ``None``
    marks the end. generate's first ``put`` is the prompt, which is skipped."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any]) -> None:
        self.loop, self.queue, self.prompt_seen = loop, queue, False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        for token in value.flatten().tolist():  # (1,) or (1, 1) -> ids
            self.loop.call_soon_threadsafe(self.queue.put_nowait, token)

    def end(self) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, None)


def make_app(model_dir: Path, *, name: str, serialize: bool) -> FastAPI:
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    model = transformers.GPT2LMHeadModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    eos = model.generation_config.eos_token_id
    pool = ThreadPoolExecutor(max_workers=1 if serialize else 64, thread_name_prefix="generate")
    stats = {"in_flight": 0, "max_in_flight": 0, "requests": 0}
    app = FastAPI()

    def run_generate(ids: list[int], req: CompletionRequest, streamer: IdStreamer) -> None:
        """One generate call (in the pool); errors end the stream instead of hanging it."""
        greedy = req.temperature == 0
        options: dict[str, Any] = {"do_sample": not greedy}
        if not greedy:
            options.update(temperature=req.temperature, top_p=req.top_p)
        input_ids = torch.tensor([ids], dtype=torch.long)  # (1, T)
        try:
            with torch.inference_mode():
                if req.seed is not None:
                    torch.manual_seed(req.seed)
                model.generate(
                    input_ids,
                    attention_mask=torch.ones_like(input_ids),
                    max_new_tokens=req.max_tokens,
                    pad_token_id=eos,
                    streamer=streamer,
                    **options,
                )
        except Exception:
            logging.exception("generate failed")  # the pool would keep it to itself
            raise
        finally:
            streamer.end()

    async def texts(ids: list[int], req: CompletionRequest) -> AsyncIterator[tuple[str, int]]:
        """(new text, tokens so far) as tokens arrive; the last item flushes what is left."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stats["in_flight"] += 1  # counted on the event loop's thread: no lock needed
        stats["max_in_flight"] = max(stats["max_in_flight"], stats["in_flight"])
        pool.submit(run_generate, ids, req, IdStreamer(loop, queue))
        out: list[int] = []
        sent = ""
        try:
            while (token := await queue.get()) is not None:
                out.append(token)
                text = tokenizer.decode(out, clean_up_tokenization_spaces=False)
                if not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
                    yield text[len(sent) :], len(out)
                    sent = text
        finally:
            stats["in_flight"] -= 1
        text = tokenizer.decode(out, clean_up_tokenization_spaces=False) if out else ""
        yield text[len(sent) :], len(out)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "largest_batch": 1, "serialize": serialize, **stats}

    @app.post("/v1/completions", response_model=None)
    async def completions(req: CompletionRequest) -> JSONResponse | StreamingResponse:
        if req.n != 1 or req.max_tokens < 1:
            raise HTTPException(400, "this peer serves n=1 and max_tokens >= 1 only")
        stats["requests"] += 1
        ids = req.prompt if isinstance(req.prompt, list) else tokenizer.encode(req.prompt)
        head = {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": req.model or name,
        }

        def usage(n: int) -> dict[str, int]:
            return {"prompt_tokens": len(ids), "completion_tokens": n, "total_tokens": len(ids) + n}

        def choice(text: str, n: int | None) -> dict[str, Any]:
            finish = None if n is None else ("length" if n >= req.max_tokens else "stop")
            return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}

        if not req.stream:
            parts, n = [], 0
            async for text, count in texts(ids, req):
                parts.append(text)
                n = count
            body = {**head, "choices": [choice("".join(parts), n)], "usage": usage(n)}
            return JSONResponse(body)

        async def events() -> AsyncIterator[str]:
            n = 0
            async for text, count in texts(ids, req):
                n = count
                if text:
                    yield f"data: {json.dumps({**head, 'choices': [choice(text, None)]})}\n\n"
            yield f"data: {json.dumps({**head, 'choices': [choice('', n)]})}\n\n"
            if req.stream_options is not None and req.stream_options.include_usage:
                yield f"data: {json.dumps({**head, 'choices': [], 'usage': usage(n)})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a Hugging Face GPT-2 directory")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--served-model-name", default="gpt2")
    parser.add_argument(
        "--serialize",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one generate call at a time (default: on; faster on a few CPU cores)",
    )
    args = parser.parse_args(argv)
    app = make_app(args.model, name=args.served_model_name, serialize=args.serialize)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
