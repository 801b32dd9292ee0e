"""Look inside a trained model: its attention weights and its hidden states, layer by layer.

The model's ``forward`` returns logits only (one output shape, always) and its fused attention
path never forms the weight matrix at all, so nothing here changes the model: forward hooks
watch the inputs each attention module and each block receives, and the weights are
recomputed from them with the textbook formula softmax(QK^T / sqrt(hs)) and the same mask
the model used. This works for any model built from the project's
:class:`~scratchgpt.model.attention.MultiHeadAttention`: a GPT (causal), the encoder
classifier (padding mask), a loaded GPT-2. (Vig & Belinkov 2019, "Analyzing the Structure of
Attention in a Transformer Language Model", is the classic tour of what such maps show.)

Shapes: L layers, B batch, nh heads, T query tokens, S key tokens, C = emb_dim, hs head size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .model.attention import MultiHeadAttention
from .model.gpt import eval_mode


def attention_modules(model: nn.Module) -> list[MultiHeadAttention]:
    """The model's attention modules, first layer first."""
    found = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    if not found:
        raise ValueError(f"{type(model).__name__} has no MultiHeadAttention module to inspect")
    return found


def weights_from_input(
    att: MultiHeadAttention,
    x: torch.Tensor,
    *,
    mask: torch.Tensor | None,
    rope: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """The attention weights ``att`` forms for input x (B, T, C): (B, nh, T, T).

    ``mask`` as the attention functions take it (None: causal); ``rope`` the rotation the
    model passed, if it uses RoPE. Dropout is left out: these are the weights the model
    means, not one random draw of them.
    """
    q, k, _ = att.project(x, rope=rope)  # (B, nh, T, hs), (B, nkv, T, hs)
    k = att.expand_kv(k)  # (B, nkv, T, hs) -> (B, nh, T, hs)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, nh, T, T)
    if mask is None:
        T = x.size(1)
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)


@torch.no_grad()
def attention_weights(model: nn.Module, idx: torch.Tensor, **forward_kwargs: Any) -> torch.Tensor:
    """Every layer's attention weights for token ids ``idx`` (B, T): (L, B, nh, T, T).

    Row t of a head's (T, T) map holds how much query token t reads each key token; every
    row sums to 1, and a causal model's maps are zero above the diagonal. ``forward_kwargs``
    go to the model's forward (e.g. ``padding_mask=`` for the classifier). The model runs in
    eval mode, as it would at inference, and is put back in its previous mode.
    """
    modules = attention_modules(model)
    if any(m.kv_cache is not None for m in modules):
        raise ValueError("the model has a KV cache attached: call model.clear_cache() first")
    captured: list[torch.Tensor] = []

    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        assert isinstance(module, MultiHeadAttention)
        captured.append(
            weights_from_input(module, args[0], mask=kwargs.get("mask"), rope=kwargs.get("rope"))
        )

    _run_hooked(
        model,
        idx,
        forward_kwargs,
        [m.register_forward_pre_hook(hook, with_kwargs=True) for m in modules],
    )
    return torch.stack(captured)  # L x (B, nh, T, T) -> (L, B, nh, T, T)


def _run_hooked(
    model: nn.Module, idx: torch.Tensor, forward_kwargs: dict[str, Any], handles: list[Any]
) -> None:
    """One forward pass in eval mode for the hooks to record, then remove the hooks."""
    try:
        with eval_mode(model):
            model(idx, **forward_kwargs)
    finally:
        for h in handles:
            h.remove()


def _blocks(model: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks: a GPT's ``trf_blocks`` or an encoder's ``blocks``."""
    for owner in (model, getattr(model, "encoder", None)):
        for name in ("trf_blocks", "blocks"):
            blocks = getattr(owner, name, None)
            if isinstance(blocks, nn.ModuleList):
                return blocks
    raise ValueError(f"{type(model).__name__} has no trf_blocks or blocks to inspect")


@torch.no_grad()
def hidden_states(model: nn.Module, idx: torch.Tensor, **forward_kwargs: Any) -> torch.Tensor:
    """The residual stream before the first block and after each block: (L + 1, B, T, C).

    Entry 0 is what the blocks receive (token + position embeddings); entry l is block l's
    output. A GPT's final LayerNorm and head come after the last entry.
    """
    blocks = _blocks(model)
    states: list[torch.Tensor] = []
    handles = [
        blocks[0].register_forward_pre_hook(lambda m, args: states.append(args[0])),
        *(b.register_forward_hook(lambda m, args, out: states.append(out)) for b in blocks),
    ]
    _run_hooked(model, idx, forward_kwargs, handles)
    return torch.stack(states)  # (L + 1) x (B, T, C) -> (L + 1, B, T, C)


@dataclass(frozen=True)
class LayerStats:
    """How the token vectors change through the stack (seed 001's "layer analysis").

    ``norms`` (L + 1,): the mean L2 norm of a token's vector after each layer; in a pre-norm
    GPT it grows with depth, since each block adds to the residual stream. ``similarity``
    (L + 1, L + 1): the mean cosine similarity of the same token's vectors at two depths;
    neighbouring layers are close (each block makes a small correction), distant ones less.
    """

    norms: torch.Tensor
    similarity: torch.Tensor


def layer_statistics(states: torch.Tensor, *, mask: torch.Tensor | None = None) -> LayerStats:
    """Norms and layer-to-layer cosine similarities of ``states`` (L + 1, B, T, C).

    ``mask`` (B, T), True for the tokens to count (e.g. not padding); default all of them.
    """
    B, T = states.shape[1:3]
    keep = torch.ones(B, T, dtype=torch.bool) if mask is None else mask.bool().cpu()
    tokens = states.float().cpu()[:, keep]  # (L + 1, B, T, C) -> (L + 1, N, C), N real tokens
    norms = tokens.norm(dim=-1)  # (L + 1, N)
    unit = tokens / norms.clamp_min(1e-12).unsqueeze(-1)  # (L + 1, N, C)
    # cos(h_i, h_j) per token, averaged: (L+1, N, C) x (L+1, N, C) -> (L+1, L+1)
    similarity = torch.einsum("inc,jnc->ij", unit, unit) / tokens.size(1)
    return LayerStats(norms=norms.mean(dim=1), similarity=similarity)
