"""Text generation: from next-token logits to a continuation, one token at a time.

A GPT scores every vocabulary entry as the next token; generating is a loop of "run the model,
turn the last position's logits into a choice, append it" (Raschka, "Build a LLM from
Scratch", ch. 4.7 and 5.3). The choice is built from small functions: temperature rescales
the logits, top-k and top-p (nucleus, Holtzman et al. 2020) cut off the unlikely tail, and a
sample is drawn; temperature 0 means greedy, always the most likely token.

Shapes: B batch, T sequence length, V vocabulary.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


def check_sampling(
    *, temperature: float, top_k: int | None = None, top_p: float | None = None
) -> None:
    """Reject sampling settings with no meaning, naming the setting and the allowed range."""
    if not temperature >= 0:
        raise ValueError(f"temperature={temperature}: must be >= 0 (0 means greedy)")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k={top_k}: must be >= 1, or None to keep every token")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p={top_p}: must be in (0, 1], or None to keep every token")


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


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Dropout off while generating, then the caller's mode back."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def generate(
    model: nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Extend the prompts ``idx`` (B, T) by up to ``max_new_tokens``; returns (B, T + n).

    The model sees at most its last ``context_length`` tokens, so generation can run past the
    context window. With ``eos_id``, a sequence that produced it is padded with ``eos_id`` from
    then on, and the loop stops once every sequence has; the end-of-text id is kept in the
    output so callers can see why it stopped.
    """
    check_sampling(temperature=temperature, top_k=top_k, top_p=top_p)
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens={max_new_tokens}: must be >= 0")
    if idx.dim() != 2 or idx.size(1) == 0:
        raise ValueError(f"idx must be (batch, seq_len) with seq_len >= 1, got {tuple(idx.shape)}")
    context_length: int = model.cfg.context_length  # type: ignore[union-attr]
    done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
    with _eval_mode(model):
        for _ in range(max_new_tokens):
            logits = model(idx[:, -context_length:])[:, -1, :]  # (B, T, V) -> last position (B, V)
            nxt = next_token(
                logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator
            )
            if eos_id is not None:
                nxt = nxt.masked_fill(done.unsqueeze(1), eos_id)
                done |= nxt.squeeze(1) == eos_id
            idx = torch.cat([idx, nxt], dim=1)  # (B, T) -> (B, T + 1)
            if eos_id is not None and bool(done.all()):
                break
    return idx
