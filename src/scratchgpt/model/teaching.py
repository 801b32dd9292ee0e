"""Attention, built up one idea at a time: the teaching variants behind the GPT's attention.

Raschka, "Build a Large Language Model (From Scratch)", ch. 3 takes four steps from a plain
weighted average to the attention a GPT uses; each step is one class here, small enough to
read in a minute (the notebooks ``1_self_attention`` and ``2_multi_head_attention`` walk
through them):

1. :class:`SelfAttentionNoWeights`: scores are dot products of the input vectors themselves;
   nothing is learned. Shows the core: a softmax over similarities weights a sum.
2. :class:`SelfAttention`: trainable query, key and value projections (Vaswani et al. 2017,
   "Attention Is All You Need", §3.2.1), and the 1/sqrt(d_k) scale.
3. :class:`CausalAttention`: a mask hides future tokens, and dropout on the weights
   regularises; what a decoder needs to predict the next token.
4. :class:`MultiHeadAttentionWrapper`: several causal heads side by side, concatenated and
   mixed by an output projection (Vaswani §3.2.2: Concat(head_1..head_h) W^O).

The GPT itself uses :class:`~scratchgpt.model.attention.MultiHeadAttention`, which computes
the same function as step 4 with one projection per Q, K and V and a reshape into heads.
:meth:`MultiHeadAttentionWrapper.to_multi_head_attention` copies a wrapper's weights into one,
and the tests check the two (and the textbook causal head against the model's attention
function) give the same outputs.

These classes are for learning and testing; nothing in the GPT depends on them.

Shapes: B batch, T tokens, d_in input size, d_out output size, nh heads, hs = d_out / nh.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import AttentionImpl
from .attention import MultiHeadAttention


class SelfAttentionNoWeights(nn.Module):
    """Step 1: each output is an average of all inputs, weighted by their similarity.

    The score of token i for token j is the dot product x_i . x_j; a softmax over j turns
    each row of scores into weights that are positive and sum to 1, and the output for i is
    the weighted sum of the inputs. No parameters: the model could not learn *what* makes two
    tokens relevant to each other, which is what step 2 adds.
    """

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, d_in) or (T, d_in) -> weights (B, T, T) or (T, T); rows sum to 1."""
        scores = x @ x.transpose(-2, -1)  # (.., T, d_in) @ (.., d_in, T) -> (.., T, T)
        return torch.softmax(scores, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, d_in) or (T, d_in) -> context vectors of the same shape."""
        return self.attention_weights(x) @ x  # (.., T, T) @ (.., T, d_in) -> (.., T, d_in)


class SelfAttention(nn.Module):
    """Step 2: scaled dot-product attention with trainable query, key and value projections.

    Each token asks a question (its query), advertises what it holds (its key) and offers
    content (its value); the three are separate learned views of the same input, so "what I
    look for" can differ from "what I am". Scores are divided by sqrt(d_out) because the dot
    product of two d-dim vectors with unit-variance entries has variance d: without the scale,
    large d pushes the softmax towards one-hot weights whose gradients vanish.
    """

    def __init__(self, d_in: int, d_out: int, *, qkv_bias: bool = False) -> None:
        super().__init__()
        self.d_out = d_out
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, d_in) -> weights (B, T, T); row i says how much token i reads token j."""
        queries = self.W_query(x)  # (B, T, d_out)
        keys = self.W_key(x)  # (B, T, d_out)
        scores = queries @ keys.transpose(-2, -1)  # (B, T, d_out) @ (B, d_out, T) -> (B, T, T)
        return torch.softmax(scores / math.sqrt(self.d_out), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, d_in) -> context vectors (B, T, d_out)."""
        return self.attention_weights(x) @ self.W_value(x)  # (B, T, T) @ (B, T, d_out)


class CausalAttention(nn.Module):
    """Step 3: one head of self-attention that cannot see the future, with dropout.

    A language model predicts token t+1 from tokens <= t, and it trains on every position of
    a sequence at once; so position t must not read positions > t, or it would copy the
    answer. The mask sets those scores to -inf, which the softmax turns into weight 0 while
    each row still sums to 1. Dropout then zeroes random weights during training (and scales
    the others by 1/(1-p)), so no output leans on one single key.
    """

    mask: torch.Tensor

    def __init__(
        self,
        d_in: int,
        d_out: int,
        *,
        context_length: int,
        dropout: float = 0.0,
        qkv_bias: bool = False,
    ) -> None:
        super().__init__()
        self.d_out = d_out
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.dropout = nn.Dropout(dropout)
        # True above the diagonal: the future. A buffer, so it follows the module's device;
        # not persistent, since it is fixed by context_length and needs no saving.
        future = torch.ones(context_length, context_length, dtype=torch.bool).triu(diagonal=1)
        self.register_buffer("mask", future, persistent=False)

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, d_in) -> causal weights (B, T, T), before dropout; zero above the diagonal."""
        T = x.size(1)
        queries = self.W_query(x)  # (B, T, d_out)
        keys = self.W_key(x)  # (B, T, d_out)
        scores = queries @ keys.transpose(1, 2)  # (B, T, d_out) @ (B, d_out, T) -> (B, T, T)
        scores = scores.masked_fill(self.mask[:T, :T], float("-inf"))  # hide the future
        return torch.softmax(scores / math.sqrt(self.d_out), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, d_in) -> context vectors (B, T, d_out)."""
        weights = self.dropout(self.attention_weights(x))
        return weights @ self.W_value(x)  # (B, T, T) @ (B, T, d_out) -> (B, T, d_out)


class MultiHeadAttentionWrapper(nn.Module):
    """Step 4: nh causal heads run side by side, concatenated, then mixed by W^O.

    One head can only form one weighted average per token; several heads can each attend by
    a different criterion (the previous token, the same word earlier, the start of the
    sentence). Each head works in hs = d_out / nh dimensions, so nh heads cost what one
    d_out-wide head does. The output projection W^O lets the heads' results combine.

    This is the slow, literal version: nh separate modules, run one after the other.
    :meth:`to_multi_head_attention` gives the split-heads module the GPT uses, with the same
    weights and the same outputs.
    """

    def __init__(
        self,
        d_in: int,
        d_out: int,
        *,
        num_heads: int,
        context_length: int,
        dropout: float = 0.0,
        qkv_bias: bool = False,
    ) -> None:
        super().__init__()
        if d_out % num_heads != 0:
            raise ValueError(f"d_out={d_out} must be divisible by num_heads={num_heads}")
        self.d_in, self.d_out = d_in, d_out
        self.num_heads = num_heads
        self.context_length = context_length
        self.dropout_p = dropout
        self.qkv_bias = qkv_bias
        head_dim = d_out // num_heads
        self.heads = nn.ModuleList(
            CausalAttention(
                d_in, head_dim, context_length=context_length, dropout=dropout, qkv_bias=qkv_bias
            )
            for _ in range(num_heads)
        )
        self.out_proj = nn.Linear(d_out, d_out)

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, d_in) -> every head's weights, stacked: (B, nh, T, T)."""
        return torch.stack([head.attention_weights(x) for head in self.heads], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, d_in) -> (B, T, d_out)."""
        # nh x (B, T, hs) -> concatenated on the feature axis -> (B, T, nh * hs = d_out)
        heads = torch.cat([head(x) for head in self.heads], dim=-1)
        return self.out_proj(heads)

    def to_multi_head_attention(
        self, *, attn_impl: AttentionImpl = "explicit"
    ) -> MultiHeadAttention:
        """The split-heads :class:`MultiHeadAttention` computing this same function.

        Head h's projection is rows h*hs .. (h+1)*hs of the big one (a Linear's weight is
        (out_features, in_features)), so stacking the heads' weights along dim 0 gives the
        big matrices; the reshape into heads inside MultiHeadAttention undoes exactly that
        stacking. Needs d_in == d_out, as in a transformer block.
        """
        if self.d_in != self.d_out:
            raise ValueError(
                f"MultiHeadAttention maps C -> C; this wrapper maps {self.d_in} -> {self.d_out}"
            )
        mha = MultiHeadAttention(
            self.d_out,
            self.num_heads,
            drop_rate=self.dropout_p,
            qkv_bias=self.qkv_bias,
            attn_impl=attn_impl,
        )
        with torch.no_grad():
            for name in ("W_query", "W_key", "W_value"):
                big: nn.Linear = getattr(mha, name)
                parts = [getattr(head, name) for head in self.heads]
                # nh x (hs, C) -> (nh * hs, C) = (C, C)
                big.weight.copy_(torch.cat([p.weight for p in parts], dim=0))
                if big.bias is not None:
                    big.bias.copy_(torch.cat([p.bias for p in parts], dim=0))  # (C,)
            mha.out_proj.load_state_dict(self.out_proj.state_dict())
        return mha.to(self.out_proj.weight.device)
