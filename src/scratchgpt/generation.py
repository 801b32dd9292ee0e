"""Text generation: from next-token logits to a continuation, one token at a time.

A GPT scores every vocabulary entry as the next token; generating is a loop of "run the model,
turn the last position's logits into a choice, append it" (Raschka, "Build a LLM from
Scratch", ch. 4.7 and 5.3). The loop is built from small functions, each one step:

- :func:`next_token`: logits -> (repetition penalty, temperature, top-k, top-p) -> a sample;
  temperature 0 is greedy, always the most likely token (Holtzman et al. 2020 for top-p);
  the settings are one :class:`~scratchgpt.config.SamplingConfig`, checked where it is built;
- :func:`prefill`: run the whole prompt once, filling the KV cache;
- :func:`decode_step`: run one new token against the cache (gpt-fast's static-cache design);
- :func:`stream`: yields each new token as it is made; :func:`generate` collects them.

``use_cache=False`` runs the textbook loop that re-reads the whole context at every step; a
test pins the two paths to the same ids. :class:`Generator` adds text in and out, stop strings,
batches of prompts of different lengths, and an optionally compiled decode step.

Shapes: B batch, T sequence length, V vocabulary.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from .config import SamplingConfig
from .errors import ConfigError
from .model import GPTModel, eval_mode
from .tokenizers import Tokenizer


def filter_logits(
    logits: torch.Tensor, *, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """Set to -inf every logit outside the top-k and outside the top-p nucleus. logits (B, V)."""
    if top_k is not None and top_k < logits.size(-1):
        # Keep the k largest: everything below the k-th value is cut.
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        # Keep the smallest set of most likely tokens whose probabilities sum to >= top_p:
        # a token is cut when the tokens ranked above it already reach top_p.
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V) each
        probs = torch.softmax(sorted_logits, dim=-1)
        mass_before = torch.cumsum(probs, dim=-1) - probs
        cut_sorted = mass_before >= top_p  # the most likely token has 0 before it: always kept
        cut = cut_sorted.scatter(-1, order, cut_sorted)  # back to vocabulary order
        logits = logits.masked_fill(cut, float("-inf"))
    return logits


def apply_repetition_penalty(
    logits: torch.Tensor, seen: torch.Tensor, penalty: float
) -> torch.Tensor:
    """Make tokens already in ``seen`` (B, T) less likely (Keskar et al. 2019, CTRL).

    A positive logit is divided by ``penalty``, a negative one multiplied, so a seen token's
    logit always moves down for penalty > 1, whatever its sign.
    """
    if penalty == 1.0:
        return logits
    scores = logits.gather(-1, seen)  # (B, T): the logits of the tokens seen so far
    scores = torch.where(scores > 0, scores / penalty, scores * penalty)
    return logits.scatter(-1, seen, scores)


def next_token(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Choose the next token from the last position's logits (B, V) -> ids (B, 1)."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)  # greedy: no randomness at all
    # Dividing by a temperature < 1 sharpens the distribution, > 1 flattens it.
    logits = filter_logits(logits.float() / temperature, top_k=top_k, top_p=top_p)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)


def prefill(
    model: GPTModel, idx: torch.Tensor, *, pad_offset: torch.Tensor | None = None
) -> torch.Tensor:
    """Run a whole prompt (B, T) through a model with a fresh cache; last logits (B, V)."""
    input_pos = torch.arange(idx.size(1), device=idx.device)
    return model(idx, input_pos=input_pos, pad_offset=pad_offset)[:, -1]


def decode_step(
    model: GPTModel,
    token: torch.Tensor,
    input_pos: torch.Tensor,
    pad_offset: torch.Tensor | None = None,
) -> torch.Tensor:
    """One token per row (B, 1) at cache slot ``input_pos`` (1,), or each row at its own
    (B, 1) -> its logits (B, V).

    Everything here has a fixed shape from step to step, which is what lets torch.compile
    (and CUDA graphs) capture it once and replay it.
    """
    return model(token, input_pos=input_pos, pad_offset=pad_offset)[:, -1]


@contextlib.contextmanager
def _inference(model: GPTModel) -> Iterator[None]:
    """Dropout off and no autograd while generating, then the caller's mode back."""
    with eval_mode(model), torch.inference_mode():
        yield


DecodeFn = Callable[..., torch.Tensor]


def _sampling_settings(sampling: SamplingConfig | None, **keywords: Any) -> SamplingConfig:
    """``sampling``, or a SamplingConfig of the keywords (which checks them) when it is None.

    Both at once is refused rather than merged: which one wins would be a guess.
    """
    if sampling is None:
        return SamplingConfig(**keywords)
    if not isinstance(sampling, SamplingConfig):
        raise ConfigError(f"sampling={sampling!r}: must be a SamplingConfig")
    also = [
        f"{f.name}={keywords[f.name]!r}"
        for f in dataclasses.fields(SamplingConfig)
        if keywords[f.name] != f.default
    ]
    if also:
        raise ConfigError(
            f"sampling= and {', '.join(also)} given together: put every sampling setting in "
            "the SamplingConfig, or pass only keywords"
        )
    return sampling


# Cache slots are allocated in multiples of this when the decode step is compiled (see stream).
COMPILED_CACHE_MULTIPLE = 256


def stream(
    model: GPTModel,
    idx: torch.Tensor,
    max_new_tokens: int,
    *,
    sampling: SamplingConfig | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    pad_offset: torch.Tensor | None = None,
    decode_fn: DecodeFn | None = None,
) -> Iterator[torch.Tensor]:
    """Yield the next token of every row, (B,) int64, as soon as it is chosen.

    ``idx`` (B, T) are the prompts; rows of different lengths are left-padded and
    ``pad_offset`` (B,) gives each row's number of pads. The model sees at most its last
    ``context_length`` tokens: once the context is full the window slides, which moves every
    learned position, so each further token needs a fresh prefill of the window.
    Generation stops after ``max_new_tokens``, or once every row has produced ``eos_id``
    (a finished row yields ``eos_id`` from then on). ``decode_fn`` replaces
    :func:`decode_step` (a compiled copy, from :func:`compile_decode_step`); the cache is then
    sized in multiples of ``COMPILED_CACHE_MULTIPLE`` slots and kept for the next call, so
    the compiled graph is reused.

    The sampling settings are ``sampling`` or the keywords ``temperature``, ``top_k``,
    ``top_p`` and ``repetition_penalty`` (the same fields), not both.
    """
    settings = _sampling_settings(
        sampling,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        repetition_penalty=repetition_penalty,
    )
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens={max_new_tokens}: must be >= 0")
    if idx.dim() != 2 or idx.size(1) == 0:
        raise ValueError(f"idx must be (batch, seq_len) with seq_len >= 1, got {tuple(idx.shape)}")
    context = model.cfg.context_length
    decode = decode_fn or decode_step
    done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
    seq = idx  # everything so far, for the repetition penalty and for re-prefills
    with _inference(model):
        if use_cache:
            slots = idx.size(1) + max_new_tokens
            if decode_fn is not None:
                # A compiled step is specialised to the cache's shape: round the slots up so
                # prompts of similar lengths share one compiled graph instead of one each.
                slots = -(-slots // COMPILED_CACHE_MULTIPLE) * COMPILED_CACHE_MULTIPLE
            model.setup_cache(idx.size(0), min(context, slots))
        try:
            pos = 0  # the next cache slot; a Python int, so no device sync to track it
            # The last token as a tensor of its own (not a view into the growing sequence),
            # so a compiled decode step sees the same strides on every call.
            last = idx[:, -1].clone()  # (B,)
            for step in range(max_new_tokens):
                if not use_cache or step == 0 or pos == model.cache_len:
                    # Full pass over the (last context_length tokens of the) sequence.
                    window = seq[:, -context:]
                    offset = pad_offset
                    if offset is not None and seq.size(1) > context:
                        offset = (offset - (seq.size(1) - context)).clamp_min(0)
                    if use_cache:
                        logits = prefill(model, window, pad_offset=offset)
                        pos = window.size(1)
                    else:
                        logits = model(window, pad_offset=offset)[:, -1]
                else:
                    slot = torch.tensor([pos], device=idx.device)
                    logits = decode(model, last.view(-1, 1), slot, pad_offset)  # (B,) -> (B, 1)
                    pos += 1
                logits = apply_repetition_penalty(logits, seq, settings.repetition_penalty)
                token = next_token(
                    logits,
                    temperature=settings.temperature,
                    top_k=settings.top_k,
                    top_p=settings.top_p,
                    generator=generator,
                ).squeeze(1)  # (B, 1) -> (B,)
                if eos_id is not None:
                    token = token.masked_fill(done, eos_id)
                    done |= token == eos_id
                seq = torch.cat([seq, token.unsqueeze(1)], dim=1)  # (B, T) -> (B, T + 1)
                last = token
                yield token
                if eos_id is not None and bool(done.all()):
                    return
        finally:
            # A compiled step is tied to its cache tensors (see GPTModel.clear_cache).
            model.clear_cache(keep=decode_fn is not None)


def generate(
    model: GPTModel,
    idx: torch.Tensor,
    max_new_tokens: int,
    *,
    sampling: SamplingConfig | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    pad_offset: torch.Tensor | None = None,
    decode_fn: DecodeFn | None = None,
) -> torch.Tensor:
    """The prompts ``idx`` (B, T) followed by up to ``max_new_tokens`` new ids: (B, T + n).

    Built on :func:`stream` (see there for the options). With ``eos_id``, generation ends once
    every row has produced it; the end-of-text id is kept so callers can see why it stopped,
    and rows that finished earlier are padded with it.
    """
    tokens = list(
        stream(
            model,
            idx,
            max_new_tokens,
            sampling=sampling,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            repetition_penalty=repetition_penalty,
            eos_id=eos_id,
            generator=generator,
            use_cache=use_cache,
            pad_offset=pad_offset,
            decode_fn=decode_fn,
        )
    )
    if not tokens:
        return idx
    return torch.cat([idx, torch.stack(tokens, dim=1)], dim=1)  # (B, T) + (B, n) -> (B, T + n)


def left_pad(
    prompts: Sequence[Sequence[int]], *, pad_id: int, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts of different lengths as one (B, T_max) batch padded on the left, and pad counts.

    Left, not right: every row's last real token then sits in the same, final column, so one
    decode step serves the whole batch.
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    width = max(len(p) for p in prompts)
    rows = [[pad_id] * (width - len(p)) + list(p) for p in prompts]
    offsets = [width - len(p) for p in prompts]
    return (
        torch.tensor(rows, dtype=torch.long, device=device),
        torch.tensor(offsets, dtype=torch.long, device=device),
    )


def compile_decode_step(device_type: str) -> DecodeFn:
    """:func:`decode_step` through torch.compile, set up for decoding on ``device_type``.

    On a GPU the step is small kernels launched one after another, so CUDA graphs (mode
    "reduce-overhead") replay the whole step as one launch. On a CPU the step is bound by
    reading the weights, and inductor's freezing pays: the weights become constants of the
    compiled graph, repacked once into the blocked layouts that oneDNN (bf16) and MKL (fp32)
    multiply fastest, instead of every call. That makes the compiled step a snapshot: weights
    changed after its first call are not seen, so compile again after changing them.
    """
    # dynamic=False: a new batch size gets a graph of its own. A graph generic in the batch
    # size could neither be replayed as a CUDA graph nor use weights packed for one shape.
    if device_type == "cuda":
        return torch.compile(decode_step, mode="reduce-overhead", fullgraph=True, dynamic=False)
    compiled = torch.compile(decode_step, fullgraph=True, dynamic=False)
    inductor_config = torch._inductor.config

    def frozen_decode_step(*args: Any) -> torch.Tensor:
        # Freezing is read when a graph is traced, which is the first call (and any recompile
        # for new shapes), so it is set around every call, not around torch.compile: neither
        # `options=` nor a wrapping backend is consulted early enough. A plain set and restore,
        # not config.patch(), which costs about 145 us per call against 4 us on this CPU.
        previous = inductor_config.freezing
        inductor_config.freezing = True
        try:
            return compiled(*args)
        finally:
            inductor_config.freezing = previous

    return frozen_decode_step


class Generator:
    """Text in, text out: a model with its tokenizer, an optional compiled decode step.

    ``compile=True`` compiles :func:`decode_step` once (see :func:`compile_decode_step`) and
    keeps the compiled function on this object; module globals are never rebound, so other
    callers keep the plain function. On a CPU the compiled step freezes the weights: make a new
    Generator after changing them.
    """

    def __init__(self, model: GPTModel, tokenizer: Tokenizer, *, compile: bool = False) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.decode_fn: DecodeFn = decode_step
        if compile:
            self.decode_fn = compile_decode_step(next(model.parameters()).device.type)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def stream_text(
        self,
        prompt: str,
        max_new_tokens: int,
        *,
        sampling: SamplingConfig | None = None,
        stop: Sequence[str] = (),
        seed: int | None = None,
        use_cache: bool = True,
        **keywords: Any,
    ) -> Iterator[str]:
        """Yield the continuation of ``prompt`` piece by piece, as readable text.

        A byte-level token can end in the middle of a UTF-8 character; such bytes are held
        back until the character is complete. Stops at end-of-text, at the first stop string
        (which is not yielded), or after ``max_new_tokens``. The sampling settings are
        ``sampling``, or :func:`stream`'s keywords (``temperature=0``, ``top_k=...``).
        """
        ids = self._encode(prompt)
        idx = torch.tensor([ids], dtype=torch.long, device=self.device)
        text = TextStream(self.tokenizer, stop=stop)
        for token in stream(
            self.model,
            idx,
            max_new_tokens,
            eos_id=self.tokenizer.eot_id,
            generator=self._generator(seed),
            decode_fn=self.decode_fn,
            sampling=sampling,
            use_cache=use_cache,
            **keywords,
        ):
            tid = int(token[0])
            if tid == self.tokenizer.eot_id:
                break
            if piece := text.add(tid):
                yield piece
            if text.stopped:
                return
        if piece := text.finish():
            yield piece

    def generate_text(
        self,
        prompts: str | Sequence[str],
        max_new_tokens: int,
        *,
        sampling: SamplingConfig | None = None,
        stop: Sequence[str] = (),
        seed: int | None = None,
        use_cache: bool = True,
        **keywords: Any,
    ) -> str | list[str]:
        """Continuations of one prompt (a str) or of a batch of prompts (a list), in one pass.

        A batch is left-padded and generated together; each row gives the same tokens as the
        prompt alone (for greedy decoding; a test pins it). The prompt is not repeated in the
        result, which ends before end-of-text or the first stop string. Sampling settings as
        in :meth:`stream_text`.
        """
        single = isinstance(prompts, str)
        batch = [prompts] if single else list(prompts)
        encoded = [self._encode(p) for p in batch]
        pad_id = self.tokenizer.eot_id if self.tokenizer.eot_id is not None else 0
        idx, offsets = left_pad(encoded, pad_id=pad_id, device=self.device)
        tokens = list(
            stream(
                self.model,
                idx,
                max_new_tokens,
                eos_id=self.tokenizer.eot_id,
                generator=self._generator(seed),
                pad_offset=offsets if bool(offsets.any()) else None,
                decode_fn=self.decode_fn,
                sampling=sampling,
                use_cache=use_cache,
                **keywords,
            )
        )
        out = torch.stack(tokens, dim=1).tolist() if tokens else [[] for _ in batch]
        texts = []
        for row in out:
            if self.tokenizer.eot_id in row:
                row = row[: row.index(self.tokenizer.eot_id)]
            text = self.tokenizer.decode(row)
            cut = _find_stop(text, stop)
            texts.append(text if cut is None else text[:cut])
        return texts[0] if single else texts

    def _encode(self, prompt: str) -> list[int]:
        ids = self.tokenizer.encode(prompt) if prompt else []
        if ids:
            return ids
        # Nothing to condition on: start where documents start, after an end-of-text (as
        # GPT-2 was trained) or, for tokenizers without one, after a newline.
        if self.tokenizer.eot_id is not None:
            return [self.tokenizer.eot_id]
        try:
            return self.tokenizer.encode("\n")
        except ValueError:
            raise ConfigError(
                "the prompt is empty and this tokenizer has neither an end-of-text token nor a "
                "newline to start from: give a prompt"
            ) from None

    def _generator(self, seed: int | None) -> torch.Generator | None:
        if seed is None:
            return None
        return torch.Generator(device=self.device).manual_seed(seed)


class TextStream:
    """One sequence's new tokens in, readable text out, piece by piece.

    Two things make "decode each token alone" wrong. A byte-level token can end in the
    middle of a UTF-8 character, so bytes wait until the character is complete (decoding
    them alone would give U+FFFD). And a stop string can span tokens, so text that could
    still be the start of one is held back until it is not; once a stop string appears,
    the text before it is the rest and :attr:`stopped` is set. ``generate``'s streaming and
    the server's streamed responses both read text through this.
    """

    def __init__(self, tokenizer: Tokenizer, *, stop: Sequence[str] = ()) -> None:
        self.tokenizer = tokenizer
        self.stop = tuple(s for s in stop if s)
        self.ids: list[int] = []
        self.stopped = False
        self._emitted = 0  # characters of the decoded text handed out so far
        self._hold = max((len(s) for s in self.stop), default=1) - 1

    def add(self, token_id: int) -> str:
        """Append one token; the text that became safe to show ("" while waiting)."""
        if self.stopped:
            return ""
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids)
        if text.endswith("\ufffd"):  # an incomplete UTF-8 character: wait for the rest
            return ""
        cut = _find_stop(text, self.stop)
        if cut is not None:
            self.stopped = True
            return self._take(text, cut)
        # Hold back what could still be the start of a stop string.
        return self._take(text, len(text) - self._hold)

    def finish(self) -> str:
        """Everything still held back, up to a stop string: the sequence has ended."""
        if self.stopped:
            return ""
        text = self.tokenizer.decode(self.ids)
        cut = _find_stop(text, self.stop)
        self.stopped = cut is not None
        return self._take(text, len(text) if cut is None else cut)

    def _take(self, text: str, end: int) -> str:
        if end <= self._emitted:
            return ""
        piece = text[self._emitted : end]
        self._emitted = end
        return piece


def _find_stop(text: str, stop: Sequence[str]) -> int | None:
    """Index of the earliest stop string in ``text``, or None."""
    hits = [i for s in stop if s and (i := text.find(s)) >= 0]
    return min(hits) if hits else None
