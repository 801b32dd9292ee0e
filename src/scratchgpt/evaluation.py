"""Loss and perplexity of a language model over a text, with a strided sliding window.

A text longer than the context window cannot be scored in one pass. Cutting it into disjoint
windows starves the first tokens of every window of context, and the score gets worse than
the model is; sliding the window one token at a time gives every token its full context but
costs one forward pass per token. The strided window sits between the two (the method of
Hugging Face's perplexity guide, after the GPT-2 paper's evaluation): windows of up to
``context_length`` tokens start every ``stride`` tokens, and each window scores only the
tokens that no earlier window scored. So:

- every token but the first is scored exactly once: ``tokens_scored = len(ids) - 1``;
- a token scored in a later window sees at least ``context_length - stride + 1`` tokens of
  left context (the ones near the start see all there are);
- it takes ``windows = 1 + ceil(max(0, len(ids) - 1 - context_length) / stride)`` passes.

``stride = context_length`` is the disjoint split, ``stride = 1`` the one-token slide.
Perplexity is ``exp(loss)``, the loss being the mean negative log-likelihood per scored token
in nats. Shapes: B windows in a batch, T window length, V vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import ConfigError, DataError
from .model import GPTModel, eval_mode


@dataclass(frozen=True)
class PerplexityResult:
    """What :func:`perplexity` measured, and how."""

    loss: float  # mean negative log-likelihood per scored token (nats)
    perplexity: float  # exp(loss)
    tokens_scored: int  # len(ids) - 1: every token after the first, once
    windows: int  # forward passes of up to context_length tokens
    context_length: int
    stride: int


def plan_windows(n_tokens: int, *, context_length: int, stride: int) -> list[tuple[int, int, int]]:
    """The windows as (begin, end, n_new): inputs ids[begin:end], targets ids[begin+1:end+1],
    of which the last n_new are scored (the earlier ones were, by an earlier window)."""
    n_targets = n_tokens - 1
    plan, begin, scored = [], 0, 0
    while True:
        end = min(begin + context_length, n_targets)
        plan.append((begin, end, end - scored))
        scored = end
        if end == n_targets:
            return plan
        begin += stride


@torch.inference_mode()
def perplexity(
    model: GPTModel,
    ids: Sequence[int] | torch.Tensor,
    *,
    stride: int | None = None,
    batch_size: int = 1,
) -> PerplexityResult:
    """Score ``ids`` with ``model`` by the strided sliding window (see the module docstring).

    ``stride`` defaults to half the context, so every token is predicted from at least half a
    window of text. ``batch_size`` windows run in one forward pass (more is faster on a GPU).
    """
    L = model.cfg.context_length
    stride = max(1, L // 2) if stride is None else stride
    if isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride <= L:
        raise ConfigError(
            f"stride={stride!r}: must be an integer from 1 to the context length {L} (a larger "
            "stride would skip tokens)"
        )
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size}: must be >= 1")
    device = next(model.parameters()).device
    tokens = torch.as_tensor(ids, dtype=torch.long).flatten()
    if tokens.numel() < 2:
        raise DataError(
            f"the text has {tokens.numel()} token(s); scoring needs at least 2 (one to predict "
            "from, one to predict)"
        )
    plan = plan_windows(tokens.numel(), context_length=L, stride=stride)
    total = 0.0
    with eval_mode(model):  # no dropout: the score of the model itself
        for batch in _batches(plan, batch_size):
            T = batch[0][1] - batch[0][0]
            x = torch.stack([tokens[b:e] for b, e, _ in batch]).to(device)  # (B, T)
            y = torch.stack([tokens[b + 1 : e + 1] for b, e, _ in batch]).to(device)  # (B, T)
            logits = model(x).float()  # (B, T, V)
            # (B, T, V) -> (B*T, V) against (B*T,), then back to (B, T) per-token losses.
            nll = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
            nll = nll.view(len(batch), T)
            new = torch.tensor([n for _, _, n in batch], device=device)  # (B,)
            scored = torch.arange(T, device=device) >= (T - new)[:, None]  # (B, T): the last n
            total += nll[scored].sum().item()  # one sync per batch; float64 sum across batches
    n = tokens.numel() - 1
    loss = total / n
    return PerplexityResult(
        loss=loss,
        perplexity=math.exp(loss),
        tokens_scored=n,
        windows=len(plan),
        context_length=L,
        stride=stride,
    )


def _batches(plan: list[tuple[int, int, int]], batch_size: int) -> list[list[tuple[int, int, int]]]:
    """Consecutive windows of equal length, at most ``batch_size`` per batch (they stack)."""
    out: list[list[tuple[int, int, int]]] = []
    for window in plan:
        last = out[-1] if out else None
        if (
            last is not None
            and len(last) < batch_size
            and last[0][1] - last[0][0] == window[1] - window[0]
        ):
            last.append(window)
        else:
            out.append([window])
    return out
