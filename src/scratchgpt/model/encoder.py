"""A Transformer encoder (post-norm, bidirectional) and a text classifier built on it.

The original Transformer's encoder (Vaswani et al. 2017, "Attention Is All You Need", §3.1)
is a stack of N identical blocks, each two sub-layers wrapped as ``x = LN(x + Sublayer(x))``:

    x = LayerNorm(x + MultiHeadAttention(x))      every token reads every other token
    x = LayerNorm(x + FeedForward(x))             then each token is transformed on its own

It differs from the GPT's blocks (``gpt.py``) in two ways, and only those:

- **no causal mask**: an encoder reads the whole text at once, so each token attends to the
  tokens after it too; only padding is masked, so a short text in a padded batch gives the
  same result as alone;
- **post-norm**: the LayerNorm comes after the residual sum (the paper's and BERT's layout),
  where GPT-2 normalises each sub-layer's input instead (pre-norm). Post-norm keeps every
  block's output normalised, but puts a LayerNorm on the residual path, which is why deep
  post-norm stacks need learning-rate warmup (Xiong et al. 2020, "On Layer Normalization in
  the Transformer Architecture").

Everything else is the project's own parts: :class:`MultiHeadAttention` (the same split-heads
attention and attention functions as the GPT, given a padding mask instead of a causal one),
:class:`LayerNorm`, :class:`GELU`, and the positional encodings of ``positional.py``.

:class:`TransformerClassifier` puts a linear head on the pooled encoder output: seed 001's
"mini LLM" classifier, with its parameters (vocab_size, d_model, num_heads, d_ff, num_layers,
num_classes); BERT (Devlin et al. 2018) fine-tunes the same shape for classification.
``scratchgpt.classifier`` trains it on the SMS Spam Collection.

Shapes: B batch, T tokens, C = d_model, nh = num_heads, K = num_classes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ..config import (
    ATTENTION_IMPLS,
    POS_ENCODINGS,
    AttentionImpl,
    GPTConfig,
    PosEncoding,
    strict_from_dict,
)
from ..errors import ConfigError, did_you_mean
from .attention import MultiHeadAttention
from .layers import GELU, LayerNorm
from .positional import positional_encoding

Pooling = Literal["mean", "first"]
POOLINGS: tuple[str, ...] = ("mean", "first")


@dataclass(frozen=True)
class EncoderConfig:
    """The shape of an encoder and its classification head (seed 001's parameter names).

    Frozen and plain data like :class:`~scratchgpt.config.GPTConfig`: saved as JSON beside
    the weights and the model rebuilt from it. The defaults are a small model that trains on
    the SMS spam corpus in seconds on two CPU cores.
    """

    vocab_size: int
    d_model: int = 64
    num_heads: int = 4
    d_ff: int = 128
    num_layers: int = 2
    num_classes: int = 2
    max_len: int = 64  # the longest input, in tokens (the positional encoding's range)
    dropout: float = 0.1
    # The original Transformer's fixed waves by default: no parameters to learn from a small
    # labelled set. "learned" is BERT's choice.
    pos_encoding: PosEncoding = "sinusoidal"
    # "mean": average the real tokens' vectors; "first": the first token's vector (BERT puts
    # a [CLS] token there and trains it to summarise).
    pooling: Pooling = "mean"
    attn_impl: AttentionImpl = "sdpa"
    ln_eps: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "num_heads", "d_ff", "num_layers", "max_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r}: must be an integer >= 1")
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int):
            raise ConfigError(f"num_classes={self.num_classes!r}: must be an integer >= 2")
        if self.num_classes < 2:
            raise ConfigError(f"num_classes={self.num_classes}: a classifier needs >= 2 classes")
        if self.d_model % self.num_heads != 0:
            raise ConfigError(
                f"d_model={self.d_model}: must be divisible by num_heads={self.num_heads}"
            )
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)):
            raise ConfigError(f"dropout={self.dropout!r}: must be a number in [0, 1)")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout={self.dropout}: must be in [0, 1)")
        for name, allowed in (
            ("pos_encoding", POS_ENCODINGS),
            ("pooling", POOLINGS),
            ("attn_impl", ATTENTION_IMPLS),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(
                    f"{name}={value!r}: must be one of {', '.join(allowed)}"
                    f"{did_you_mean(str(value), allowed)}"
                )
        if self.pos_encoding == "sinusoidal" and self.d_model % 2 != 0:
            raise ConfigError(
                f"d_model={self.d_model}: the sinusoidal encoding needs an even d_model"
            )
        self.attention_config()  # the GPTConfig view validates the rest (ln_eps)

    def attention_config(self) -> GPTConfig:
        """The same shape as a GPTConfig: what MultiHeadAttention and the encodings read.

        The attention module and the positional encodings take a GPTConfig; an encoder layer
        has the same attention shape, so it builds them from this view instead of copies.
        The QKV biases are on, as in the original Transformer and BERT.
        """
        return GPTConfig(
            vocab_size=self.vocab_size,
            context_length=self.max_len,
            emb_dim=self.d_model,
            n_heads=self.num_heads,
            n_layers=self.num_layers,
            drop_rate=self.dropout,
            qkv_bias=True,
            attn_impl=self.attn_impl,
            ln_eps=self.ln_eps,
            pos_encoding=self.pos_encoding,
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EncoderConfig:
        """Build from plain data; an unknown key is an error (a typo would change the model)."""
        return strict_from_dict(cls, d, what="encoder config")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class PositionwiseFeedForward(nn.Module):
    """Linear C -> d_ff, GELU, Linear d_ff -> C, applied to each token on its own.

    The GPT's :class:`~scratchgpt.model.layers.FeedForward` with the hidden width as a
    parameter (the encoder's ``d_ff``; the GPT fixes it at 4C). GELU, as in BERT and GPT-2;
    the 2017 paper used ReLU.
    """

    def __init__(self, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(d_model, d_ff), GELU(), nn.Linear(d_ff, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # (B, T, C) -> (B, T, d_ff) -> (B, T, C)


class EncoderBlock(nn.Module):
    """x = LN(x + Dropout(MHA(x))); x = LN(x + Dropout(FFN(x))): one post-norm encoder layer."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.att = MultiHeadAttention(cfg.attention_config())
        self.norm1 = LayerNorm(cfg.d_model, cfg.ln_eps)
        self.ff = PositionwiseFeedForward(cfg.d_model, cfg.d_ff)
        self.norm2 = LayerNorm(cfg.d_model, cfg.ln_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, *, mask: torch.Tensor) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C); ``mask`` (B or 1, 1, 1, T): True for the keys to read."""
        # Post-norm: add the sub-layer's output to x first, normalise the sum after.
        x = self.norm1(x + self.dropout(self.att(x, mask=mask)))
        return self.norm2(x + self.dropout(self.ff(x)))


def key_padding_mask(
    padding_mask: torch.Tensor | None, *, seq_len: int, device: torch.device
) -> torch.Tensor:
    """The attention mask for a padded batch: bool (B or 1, 1, 1, T), True = a real token.

    ``padding_mask`` (B, T) is True for real tokens and False for padding (None: no padding).
    Every query may read every real key; the mask is never None, because None means
    "causal" to the attention functions.
    """
    if padding_mask is None:
        return torch.ones(1, 1, 1, seq_len, dtype=torch.bool, device=device)
    if padding_mask.dim() != 2 or padding_mask.size(1) != seq_len:
        raise ValueError(
            f"padding_mask must be (batch, {seq_len}) booleans, got shape "
            f"{tuple(padding_mask.shape)}"
        )
    if not padding_mask.any(dim=1).all():
        # A row with no real token would softmax over nothing but -inf: NaN.
        raise ValueError("every sequence needs at least one real (unpadded) token")
    return padding_mask.bool()[:, None, None, :]  # (B, T) -> (B, 1, 1, T)


class TransformerEncoder(nn.Module):
    """Token ids (B, T) -> contextual vectors (B, T, C): embeddings + N post-norm blocks."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # nn.Embedding's N(0, 1) init keeps token vectors on the same scale as the sinusoids
        # (values in [-1, 1]); the paper gets there by scaling its embeddings by sqrt(C).
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = positional_encoding(cfg.attention_config())
        self.drop_emb = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(EncoderBlock(cfg) for _ in range(cfg.num_layers))

    def forward(
        self, idx: torch.Tensor, *, padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if idx.dim() != 2:
            raise ValueError(f"expected token ids (batch, seq_len), got shape {tuple(idx.shape)}")
        T = idx.size(1)
        if self.cfg.max_len < T:
            raise ValueError(
                f"sequence length {T} exceeds max_len={self.cfg.max_len}; truncate the input"
            )
        mask = key_padding_mask(padding_mask, seq_len=T, device=idx.device)
        tok = self.tok_emb(idx)  # (B, T, C)
        x = tok + self.pos_emb(torch.arange(T, device=idx.device)).to(tok.dtype)  # + (T, C)
        x = self.drop_emb(x)
        for block in self.blocks:
            x = block(x, mask=mask)
        return x


class TransformerClassifier(nn.Module):
    """Token ids (B, T) -> class logits (B, K): an encoder, pooling, and a linear head."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = TransformerEncoder(cfg)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.d_model, cfg.num_classes)

    def pool(self, h: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """One vector per text from the encoder's (B, T, C) output: (B, C)."""
        if self.cfg.pooling == "first":
            return h[:, 0]
        if padding_mask is None:
            return h.mean(dim=1)
        # Average over real tokens only: padding must not dilute a short text's vector.
        weights = padding_mask.to(h.dtype).unsqueeze(-1)  # (B, T) -> (B, T, 1)
        return (h * weights).sum(dim=1) / weights.sum(dim=1)  # (B, C) / (B, 1)

    def forward(
        self, idx: torch.Tensor, *, padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``padding_mask`` (B, T): True for real tokens, False for padding (None: no padding)."""
        h = self.encoder(idx, padding_mask=padding_mask)  # (B, T, C)
        return self.head(self.dropout(self.pool(h, padding_mask)))  # (B, C) -> (B, K)
