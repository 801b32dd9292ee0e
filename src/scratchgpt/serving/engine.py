"""Continuous batching: many requests share one decode loop over a batch of KV-cache rows.

Decoding one token reads every weight of the model, whatever the batch size; on a CPU (and
at small batches on a GPU) that read is the cost, so a step for eight sequences costs little
more than a step for one. Serving requests one at a time would waste that. Instead the engine
keeps one KV cache of ``max_batch`` rows and a loop of steps (the scheme of Orca, Yu et al.
2022, "iteration-level scheduling"):

1. **admit**: waiting requests take free rows; their prompts run together in one prefill
   (right-padded, so each prompt's tokens sit at slots 0..L-1 of its row) and each gets its
   first token;
2. **decode**: every active row feeds its last token at its own position (rows joined at
   different times, so positions differ per row) and gets its next one;
3. **release**: finished or cancelled requests leave; the last active row moves into the
   freed one, so active rows are always rows 0..B-1 and a step's cache is a plain view.

A decode step attends only over the slots in use (rounded up to ``SLOT_MULTIPLE``), not the
whole context, so short requests do not pay for a long cache. The loop runs in one thread
that alone touches the model; requests come in and results go out through thread-safe calls
(:meth:`BatchEngine.submit`, :meth:`BatchEngine.cancel`, the job's ``on_event``).

Each request's tokens equal what :func:`scratchgpt.generation.generate` gives for it alone
(greedy; a test pins it). Shapes: B active rows, T tokens, V vocabulary, S cache slots.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from ..config import SamplingConfig
from ..errors import ScratchGPTError
from ..generation import (
    COMPILED_CACHE_MULTIPLE,
    TextStream,
    apply_repetition_penalty,
    compile_decode_step,
    decode_step,
    next_token,
)
from ..model import GPTModel, KVCache
from ..tokenizers import Tokenizer

log = logging.getLogger(__name__)

FinishReason = Literal["stop", "length", "cancelled", "error"]

# Decode steps attend over the used slots rounded up to this: few distinct shapes, little waste.
SLOT_MULTIPLE = 64


class QueueFullError(ScratchGPTError):
    """Every row is busy and the waiting line is at its bound: try again later."""


@dataclass(frozen=True)
class Event:
    """What one step produced for one job: new text, and why it ended once it has."""

    text: str
    finish_reason: FinishReason | None = None
    completion_tokens: int = 0


@dataclass(eq=False)
class Job:
    """One sequence to generate. ``on_event`` is called from the engine's thread with each
    :class:`Event`; the last one has a ``finish_reason``."""

    prompt: Sequence[int]
    max_tokens: int
    on_event: Callable[[Event], None]
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(temperature=0.0))
    stop: Sequence[str] = ()
    seed: int | None = None
    cancelled: bool = False  # set by BatchEngine.cancel, from any thread


@dataclass(eq=False)
class _Row:
    """An admitted job's state: its tokens so far and its text."""

    job: Job
    length: int  # tokens in this row's cache
    text: TextStream
    generator: torch.Generator | None
    tokens: list[int]  # prompt and generated ids, for the repetition penalty
    last: int = 0  # the newest token, fed to the next decode step
    generated: int = 0
    finish: FinishReason | None = None


@dataclass
class EngineStats:
    """Counters a server reports (``GET /health``)."""

    active: int = 0
    queued: int = 0
    largest_batch: int = 0  # the most rows one decode step has run
    steps: int = 0
    tokens: int = 0
    cancelled: int = 0  # jobs dropped before their end (a client that went away)


class BatchEngine:
    """Generate for many jobs at once on one model (see the module docstring).

    ``max_batch`` rows of KV cache are allocated up front (``max_batch`` x layers x 2 x
    context x emb_dim numbers); ``max_queue`` bounds the jobs waiting for a row, beyond which
    :meth:`submit` raises :class:`QueueFullError`. ``compile=True`` runs the decode step
    through :func:`~scratchgpt.generation.compile_decode_step` (one graph per 256 slots of
    context, compiled when first needed). Call :meth:`start` to run the loop in a thread, or
    :meth:`step` to drive it by hand.
    """

    def __init__(
        self,
        model: GPTModel,
        tokenizer: Tokenizer,
        *,
        max_batch: int = 8,
        max_queue: int = 64,
        compile: bool = False,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch={max_batch}: must be >= 1")
        if max_queue < 0:
            raise ValueError(f"max_queue={max_queue}: must be >= 0")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.context_length = model.cfg.context_length
        weight = model.tok_emb.weight
        self.device = weight.device
        # One cache for the engine's lifetime; the model only ever sees views of it.
        model.setup_cache(max_batch, self.context_length)
        caches = model.kv_caches
        assert caches is not None
        self._caches: list[KVCache] = caches
        model.clear_cache()
        self._queue: collections.deque[Job] = collections.deque()
        self._rows: list[_Row] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._running = threading.Event()  # set while some thread is in run()
        self._stopping = False
        self.stats = EngineStats()
        self._compiled = compile_decode_step(self.device.type) if compile else None
        # Decode steps' cache views by (rows, slots), made once each: a compiled step needs
        # the very tensors it was compiled with, and an eager one is spared rebuilding them.
        self._decode_views: dict[tuple[int, int], list[KVCache]] = {}

    # --- the outside: any thread ---

    def submit(self, job: Job) -> None:
        """Queue ``job``; it joins the batch at the next step with a free row."""
        if job.max_tokens < 1:
            raise ValueError(f"max_tokens={job.max_tokens}: must be >= 1")
        if not job.prompt:
            raise ValueError("the prompt has no tokens")
        if len(job.prompt) + job.max_tokens > self.context_length:
            raise ValueError(
                f"{len(job.prompt)} prompt tokens + {job.max_tokens} new ones exceed the "
                f"context of {self.context_length}"
            )
        with self._cond:
            if self._stopping:
                raise QueueFullError("the engine is shutting down")
            # Free rows take jobs at the next step; beyond them, max_queue may wait.
            free = max(0, self.max_batch - len(self._rows))
            if len(self._queue) >= self.max_queue + free:
                raise QueueFullError(f"{len(self._queue)} requests are already waiting")
            self._queue.append(job)
            self.stats.queued = len(self._queue)
            self._cond.notify()

    def cancel(self, job: Job) -> None:
        """Drop ``job``: its row is freed at the next step, and it gets no more events."""
        with self._cond:
            job.cancelled = True
            self._cond.notify()

    def start(self) -> BatchEngine:
        """Run the loop (:meth:`run`) in a daemon thread until :meth:`stop`.

        On a CPU, prefer :meth:`run` on the thread that built the model where you can: in
        PyTorch 2.13 with OpenMP, a thread other than the first to run parallel kernels runs
        GPT-2's small matrix products about 25% slower (measured: 25 against 31 tokens/s for
        the gpt2-124M shape on 2 cores), which is why ``scratchgpt serve`` keeps the engine
        on the main thread and puts the HTTP server in a thread instead.
        """
        if self._thread is None and not self._running.is_set():
            self._thread = threading.Thread(target=self.run, name="scratchgpt-engine")
            self._thread.daemon = True
            self._thread.start()
        return self

    def run(self) -> None:
        """The loop, on the calling thread, until :meth:`stop` (from another thread)."""
        self._running.set()
        try:
            self._loop()
        finally:
            self._running.clear()

    def stop(self, timeout: float | None = None) -> None:
        """End the loop after its current step; every unfinished job gets a "cancelled"
        event, so no caller waits forever."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        else:  # a loop some other thread runs (serve's main thread): let its step end
            deadline = time.monotonic() + (timeout if timeout is not None else 3600.0)
            while self._running.is_set() and time.monotonic() < deadline:
                time.sleep(0.005)
        with self._cond:
            left = [r.job for r in self._rows] + list(self._queue)
            self._rows.clear()
            self._queue.clear()
        for job in left:
            if not job.cancelled:
                job.on_event(Event("", "cancelled"))

    @property
    def busy(self) -> bool:
        """Whether any job is running or waiting."""
        with self._cond:
            return bool(self._rows or self._queue)

    # --- the loop: the engine's thread only ---

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not (self._stopping or self._queue or self._rows):
                    self._cond.wait()
                if self._stopping:
                    return
            try:
                self.step()
            except Exception as exc:  # a failed step fails its jobs, never the server
                log.exception("a generation step failed")
                self._fail_all(f"{type(exc).__name__}: {exc}")

    def step(self) -> None:
        """One iteration: admit waiting jobs, decode one token for every row, release."""
        with torch.inference_mode():
            self._release()  # cancelled jobs leave before they cost a step
            admitted = self._admit()
            if admitted:
                self._prefill(admitted)
                self._release()  # a job can end at its first token
            if self._rows:
                self._decode()
                self._release()

    def _admit(self) -> list[_Row]:
        with self._cond:
            room = self.max_batch - len(self._rows)
            jobs = []
            while self._queue and len(jobs) < room:
                job = self._queue.popleft()
                if not job.cancelled:
                    jobs.append(job)
            self.stats.queued = len(self._queue)
        rows = [
            _Row(
                job=job,
                length=len(job.prompt),
                text=TextStream(self.tokenizer, stop=job.stop),
                generator=None
                if job.seed is None
                else torch.Generator(device=self.device).manual_seed(job.seed),
                tokens=list(job.prompt),
            )
            for job in jobs
        ]
        self._rows.extend(rows)
        return rows

    def _attach(self, rows: slice, slots: int) -> None:
        """Give the model views of the cache: these rows, the first ``slots`` slots."""
        self.model.attach_cache(
            [KVCache.of(c.k[rows, :, :slots], c.v[rows, :, :slots]) for c in self._caches]
        )

    def _prefill(self, rows: list[_Row]) -> None:
        """Run the new prompts together, right-padded; each gets its first token."""
        first = len(self._rows) - len(rows)
        lengths = torch.tensor([r.length for r in rows], device=self.device)  # (k,)
        width = int(max(r.length for r in rows))
        idx = torch.zeros(len(rows), width, dtype=torch.long, device=self.device)  # (k, T)
        for i, r in enumerate(rows):
            idx[i, : r.length] = torch.tensor(r.tokens, device=self.device)
        # Right padding keeps every prompt at slots 0..L-1; causal attention never looks
        # right, so a prompt never sees its padding, and decoding overwrites those slots.
        last = torch.arange(width, device=self.device) == (lengths - 1).view(-1, 1)  # (k, T)
        self._attach(slice(first, first + len(rows)), width)
        try:
            input_pos = torch.arange(width, device=self.device)
            logits = self.model(idx, input_pos=input_pos, logits_at=last)  # (k, V)
        finally:
            self.model.clear_cache()
        self._choose(rows, logits)

    def _decode(self) -> None:
        """One token for every active row, each at its own position."""
        rows = self._rows
        used = max(r.length for r in rows) + 1
        tokens = [[r.last] for r in rows]
        positions = [[r.length] for r in rows]
        batch, multiple, decode = len(rows), SLOT_MULTIPLE, decode_step
        if self._compiled is not None:
            # A compiled step is specialised to its shapes, so it always runs every row (a
            # free row reads token 0 into its slot 0, which its next job's prefill
            # overwrites) over one of a few slot counts.
            batch, multiple, decode = self.max_batch, COMPILED_CACHE_MULTIPLE, self._compiled
            free = self.max_batch - len(rows)
            tokens, positions = tokens + [[0]] * free, positions + [[0]] * free
        slots = min(self.context_length, -(-used // multiple) * multiple)
        views = self._decode_views.get((batch, slots))
        if views is None:
            views = [
                KVCache.of(c.k[:batch, :, :slots], c.v[:batch, :, :slots]) for c in self._caches
            ]
            self._decode_views[(batch, slots)] = views
        self.model.attach_cache(views)
        token_ids = torch.tensor(tokens, device=self.device)  # (B, 1)
        input_pos = torch.tensor(positions, device=self.device)  # (B, 1)
        try:
            logits = decode(self.model, token_ids, input_pos)[: len(rows)]  # (B, V)
        finally:
            self.model.clear_cache()
        for r in rows:
            r.length += 1
        self.stats.steps += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(rows))
        self._choose(rows, logits)

    def _choose(self, rows: Sequence[_Row], logits: torch.Tensor) -> None:
        """Each row's next token from its logits (B, V), by its own settings; emit text."""
        greedy = logits.argmax(dim=-1).tolist()  # one host sync for the plain rows
        for i, r in enumerate(rows):
            s = r.job.sampling
            if s.temperature == 0 and s.repetition_penalty == 1.0:
                token = greedy[i]
            else:
                row = logits[i : i + 1]  # (1, V)
                if s.repetition_penalty != 1.0:
                    seen = torch.tensor([r.tokens], device=self.device)  # (1, T)
                    row = apply_repetition_penalty(row, seen, s.repetition_penalty)
                token = int(
                    next_token(
                        row,
                        temperature=s.temperature,
                        top_k=s.top_k,
                        top_p=s.top_p,
                        generator=r.generator,
                    )
                )
            self._advance(r, token)

    def _advance(self, r: _Row, token: int) -> None:
        r.last = token
        r.tokens.append(token)
        r.generated += 1
        self.stats.tokens += 1
        if r.job.cancelled:
            return
        if token == self.tokenizer.eot_id:
            r.finish = "stop"
            piece = r.text.finish()
        else:
            piece = r.text.add(token)
            if r.text.stopped:
                r.finish = "stop"
            elif r.generated >= r.job.max_tokens:
                r.finish = "length"
                piece += r.text.finish()
                if r.text.stopped:  # the held-back tail held a stop string after all
                    r.finish = "stop"
        if piece or r.finish is not None:
            r.job.on_event(Event(piece, r.finish, r.generated))

    def _release(self) -> None:
        """Drop finished and cancelled rows; the last row moves into each freed one."""
        for i in reversed(range(len(self._rows))):
            r = self._rows[i]
            if r.finish is None and not r.job.cancelled:
                continue
            if r.finish is None:
                self.stats.cancelled += 1
            last = len(self._rows) - 1
            if i != last:
                moved = self._rows[last]
                for c in self._caches:  # only the slots it has written
                    c.k[i, :, : moved.length] = c.k[last, :, : moved.length]
                    c.v[i, :, : moved.length] = c.v[last, :, : moved.length]
                self._rows[i] = moved
            self._rows.pop()
        self.stats.active = len(self._rows)

    def _fail_all(self, message: str) -> None:
        rows, self._rows = self._rows, []
        self.model.clear_cache()
        for r in rows:
            if not r.job.cancelled:
                r.job.on_event(Event(message, "error", r.generated))
        self.stats.active = 0
