"""Causal multi-head self-attention, with the attention math as a swappable function.

Attention (Vaswani et al. 2017, "Attention Is All You Need", §3.2): every position builds a
query, a key and a value; a query's scores against all keys, scaled and softmax-normalised,
weight a sum of the values. "Causal" masks the future so position t only sees positions <= t,
which is what lets a GPT predict the next token (Raschka, "Build a LLM from Scratch", ch. 3).

The math lives in two functions with one signature, ``(q, k, v, *, mask, dropout_p) -> out``:
:func:`explicit_attention` writes every step out for a reader; :func:`sdpa_attention` calls
PyTorch's fused kernel (flash attention on a GPU). The module picks one by its ``attn_impl``
(the config's value) and both use the same parameters, so a checkpoint runs on either path.

Shapes: B batch, T query length, S key length, C = emb_dim, nh = n_heads, nkv = key/value
heads (nh unless grouped-query attention), hs = head size.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..config import AttentionImpl
from ..errors import did_you_mean
from .layers import RMSNorm
from .positional import apply_rope

# mask: bool (T, S) or broadcastable, True where a query may attend a key; None means "causal
# with T == S", which lets the fused kernel use its own, faster causal path.
AttentionFn = Callable[..., torch.Tensor]


def explicit_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: torch.Tensor | None,
    dropout_p: float,
) -> torch.Tensor:
    """Scaled dot-product attention, one step per line. q (B, nh, T, hs), k/v (B, nh, S, hs)."""
    T, S = q.size(-2), k.size(-2)
    # Similarity of every query with every key: (B, nh, T, hs) @ (B, nh, hs, S) -> (B, nh, T, S)
    scores = q @ k.transpose(-2, -1)
    # Divide by sqrt(hs): dot products of hs-dim vectors grow like sqrt(hs), and large scores
    # saturate the softmax into near one-hot weights with vanishing gradients.
    scores = scores / math.sqrt(q.size(-1))
    if mask is None:
        # Causal: query i may attend keys 0..i (lower triangle, diagonal included).
        mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril()
    # A masked score of -inf becomes exactly 0 weight after the softmax.
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # each row sums to 1 over the keys
    # Dropout on the weights (as in GPT-2): randomly ignore some keys during training.
    weights = F.dropout(weights, p=dropout_p)
    return weights @ v  # (B, nh, T, S) @ (B, nh, S, hs) -> (B, nh, T, hs)


def sdpa_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: torch.Tensor | None,
    dropout_p: float,
) -> torch.Tensor:
    """The same function through torch's fused kernel (flash / memory-efficient / math)."""
    if mask is None:
        # is_causal lets the kernel skip the masked half; valid only because T == S here.
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)


class KVCache(nn.Module):
    """Keys and values of past positions, so a decode step computes only the new token's.

    Preallocated once at a static shape (B, nh, S, hs) and written in place at the given
    positions: no tensor grows step by step (which would copy the whole cache every token) and
    a compiled decode step sees the same shapes every call. Buffers are not persistent, so the
    cache never enters a state dict or a checkpoint.
    """

    def __init__(
        self,
        batch_size: int,
        n_heads: int,
        max_seq_len: int,
        head_dim: int,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        shape = (batch_size, n_heads, max_seq_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    @classmethod
    def of(cls, k: torch.Tensor, v: torch.Tensor) -> KVCache:
        """A cache over existing tensors (B, nh, S, hs), typically views of a larger cache:
        writes go through to that cache's storage. A server keeps one large cache and hands
        the model views of the rows and slots each step needs (see ``GPTModel.attach_cache``).
        """
        cache = cls.__new__(cls)
        nn.Module.__init__(cache)
        cache.register_buffer("k", k, persistent=False)
        cache.register_buffer("v", v, persistent=False)
        return cache

    def update(
        self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, nh, T, hs) at slots ``input_pos``; return the whole cache.

        ``input_pos`` is (T,), the same slots for every row, or (B, T), each row its own
        slots: rows of a served batch joined at different times and stand at different
        positions.
        """
        B = k.size(0)
        if input_pos.dim() == 1:
            self.k[:B, :, input_pos] = k
            self.v[:B, :, input_pos] = v
        else:
            rows = torch.arange(B, device=k.device).view(-1, 1)  # (B, 1), against (B, T) slots
            # Two index tensors around a slice put the indexed dims first: the target is
            # (B, T, nh, hs), so the new values go in as (B, nh, T, hs) -> (B, T, nh, hs).
            self.k[rows, :, input_pos] = k.transpose(1, 2)
            self.v[rows, :, input_pos] = v.transpose(1, 2)
        return self.k[:B], self.v[:B]  # (B, nh, S, hs) each


ATTENTION_FUNCTIONS: dict[str, AttentionFn] = {
    "explicit": explicit_attention,
    "sdpa": sdpa_attention,
}


class MultiHeadAttention(nn.Module):
    """nh heads of self-attention computed at once by splitting C into nh * hs.

    One big projection per Q, K and V (instead of nh small ones) gives the same function with
    a single matrix multiply each; the heads are then a reshape, not separate modules. Causal
    unless given a mask: the GPT relies on that default, the encoder passes a padding mask.
    It takes plain sizes, not a model config, so the GPT, the encoder and the teaching code
    all build this one module.

    Options of later models, all off by default: ``n_kv_heads`` < nh shares each key/value
    head among nh / n_kv_heads query heads (grouped-query attention: W_key and W_value, and
    the KV cache, shrink by that factor); ``qk_norm`` RMS-normalises each head's queries and
    keys; ``rope`` in :meth:`forward` rotates them by position; ``bias=False`` drops the
    output projection's bias.
    """

    def __init__(
        self,
        emb_dim: int,
        n_heads: int,
        *,
        n_kv_heads: int | None = None,
        drop_rate: float = 0.0,
        qkv_bias: bool = False,
        bias: bool = True,
        qk_norm: bool = False,
        norm_eps: float = 1e-5,
        attn_impl: AttentionImpl = "sdpa",
    ) -> None:
        super().__init__()
        if n_heads < 1 or emb_dim % n_heads != 0:
            raise ValueError(f"emb_dim={emb_dim} must be divisible by n_heads={n_heads}")
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        if n_kv_heads < 1 or n_heads % n_kv_heads != 0:
            raise ValueError(f"n_kv_heads={n_kv_heads} must divide n_heads={n_heads}")
        if attn_impl not in ATTENTION_FUNCTIONS:
            raise ValueError(
                f"attn_impl={attn_impl!r}: must be one of {', '.join(ATTENTION_FUNCTIONS)}"
                f"{did_you_mean(attn_impl, ATTENTION_FUNCTIONS)}"
            )
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads
        self.head_dim = emb_dim // n_heads
        self.dropout_p = drop_rate
        self.attend = ATTENTION_FUNCTIONS[attn_impl]
        kv_dim = n_kv_heads * self.head_dim
        self.W_query = nn.Linear(emb_dim, emb_dim, bias=qkv_bias)
        self.W_key = nn.Linear(emb_dim, kv_dim, bias=qkv_bias)
        self.W_value = nn.Linear(emb_dim, kv_dim, bias=qkv_bias)
        # Mixes the heads' outputs back into one C-dim vector per position.
        self.out_proj = nn.Linear(emb_dim, emb_dim, bias=bias)
        # One gain vector over hs, shared by the heads (as OLMo 2 and Qwen 3 do).
        self.q_norm = RMSNorm(self.head_dim, norm_eps) if qk_norm else None
        self.k_norm = RMSNorm(self.head_dim, norm_eps) if qk_norm else None
        self.kv_cache: KVCache | None = None  # opt-in, set by GPTModel.setup_cache

    def _split_heads(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        B, T, _ = x.shape
        # (B, T, heads * hs) -> (B, T, heads, hs) -> (B, heads, T, hs): heads attend independently.
        return x.view(B, T, heads, self.head_dim).transpose(1, 2)

    def project(
        self, x: torch.Tensor, *, rope: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries (B, nh, T, hs), keys and values (B, nkv, T, hs) of x (B, T, C), normed and
        rotated as configured: what attention compares (also read by ``analysis``)."""
        q = self._split_heads(self.W_query(x), self.n_heads)  # (B, nh, T, hs)
        k = self._split_heads(self.W_key(x), self.n_kv_heads)  # (B, nkv, T, hs)
        v = self._split_heads(self.W_value(x), self.n_kv_heads)  # (B, nkv, T, hs)
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            # Rotated before caching: a cached key keeps the rotation of its own position.
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        return q, k, v

    def expand_kv(self, x: torch.Tensor) -> torch.Tensor:
        """Keys or values (B, nkv, S, hs) -> (B, nh, S, hs): with grouped-query attention each
        key/value head serves nh / nkv consecutive query heads; otherwise x itself."""
        if self.n_kv_heads == self.n_heads:
            return x
        return x.repeat_interleave(self.n_heads // self.n_kv_heads, dim=1)  # (B, nh, S, hs)

    def forward(
        self,
        x: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        input_pos: torch.Tensor | None = None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C); ``mask`` as in :func:`explicit_attention` (None: causal).

        With a KV cache, the new keys and values are written at cache slots ``input_pos`` (T,)
        or per row (B, T), and the queries attend over all S slots; ``mask`` (B or 1, 1, T, S)
        must then say which slots each query may see. ``rope`` is RoPE's (cos, sin) for these
        positions (see ``positional.RotaryEmbedding``).
        """
        B, T, C = x.shape
        q, k, v = self.project(x, rope=rope)
        if self.kv_cache is not None:
            if input_pos is None or mask is None:
                raise ValueError("with a KV cache, pass input_pos and a mask over the cache slots")
            k, v = self.kv_cache.update(input_pos, k, v)  # (B, nkv, S, hs) each
        k, v = self.expand_kv(k), self.expand_kv(v)  # (B, nh, S, hs) each
        out = self.attend(q, k, v, mask=mask, dropout_p=self.dropout_p if self.training else 0.0)
        # (B, nh, T, hs) -> (B, T, nh, hs) -> (B, T, C): concatenate the heads.
        out = out.transpose(1, 2).contiguous().view(B, T, C)
        return self.out_proj(out)
