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

Everything else is the GPT's own layers, built from the same plain sizes:
:class:`MultiHeadAttention` (the same split-heads attention and attention functions, given a
padding mask instead of a causal one), :class:`FeedForward` (with the encoder's hidden width),
:class:`LayerNorm`, and the positional encodings of ``positional.py``.

:class:`TransformerClassifier` puts a linear head on the pooled encoder output: seed 001's
"mini LLM" classifier (its d_model, num_heads, d_ff, num_layers are ``emb_dim``, ``n_heads``,
``hidden_dim``, ``n_layers`` here, the GPT's names); BERT (Devlin et al. 2018) fine-tunes the
same shape for classification. ``scratchgpt.classifier`` trains it on the SMS Spam Collection.

Shapes: B batch, T tokens, C = emb_dim, nh = n_heads, H = hidden_dim, K = num_classes.
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
    PosEncoding,
    strict_from_dict,
)
from ..errors import ConfigError, did_you_mean
from .attention import MultiHeadAttention
from .layers import FeedForward, LayerNorm
from .positional import positional_encoding

Pooling = Literal["mean", "first"]
POOLINGS: tuple[str, ...] = ("mean", "first")

# The names EncoderConfig's fields had before they took the GPT's (seed 001's names): a
# classifier saved then has them in its config.json, so from_dict still reads them.
OLD_KEYS: dict[str, str] = {
    "d_model": "emb_dim",
    "num_heads": "n_heads",
    "d_ff": "hidden_dim",
    "num_layers": "n_layers",
    "max_len": "context_length",
    "dropout": "drop_rate",
}


@dataclass(frozen=True)
class EncoderConfig:
    """The shape of an encoder and its classification head, in the GPT's field names.

    Frozen and plain data like :class:`~scratchgpt.config.GPTConfig`: saved as JSON beside
    the weights and the model rebuilt from it. A field that means what a GPTConfig field
    means has its name. The defaults are a small model that trains on the SMS spam corpus in
    seconds on two CPU cores.
    """

    vocab_size: int
    emb_dim: int = 64
    n_heads: int = 4
    hidden_dim: int = 128  # the feed-forward layer's width (the GPT fixes it at 4 * emb_dim)
    n_layers: int = 2
    num_classes: int = 2
    context_length: int = 64  # the longest input, in tokens (the positional encoding's range)
    drop_rate: float = 0.1
    # The original Transformer's fixed waves by default: no parameters to learn from a small
    # labelled set. "learned" is BERT's choice.
    pos_encoding: PosEncoding = "sinusoidal"
    # "mean": average the real tokens' vectors; "first": the first token's vector (BERT puts
    # a [CLS] token there and trains it to summarise).
    pooling: Pooling = "mean"
    attn_impl: AttentionImpl = "sdpa"
    ln_eps: float = 1e-5

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "emb_dim",
            "n_heads",
            "hidden_dim",
            "n_layers",
            "context_length",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r}: must be an integer >= 1")
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int):
            raise ConfigError(f"num_classes={self.num_classes!r}: must be an integer >= 2")
        if self.num_classes < 2:
            raise ConfigError(f"num_classes={self.num_classes}: a classifier needs >= 2 classes")
        if self.emb_dim % self.n_heads != 0:
            raise ConfigError(
                f"emb_dim={self.emb_dim}: must be divisible by n_heads={self.n_heads}"
            )
        if isinstance(self.drop_rate, bool) or not isinstance(self.drop_rate, (int, float)):
            raise ConfigError(f"drop_rate={self.drop_rate!r}: must be a number in [0, 1)")
        if not 0.0 <= self.drop_rate < 1.0:
            raise ConfigError(f"drop_rate={self.drop_rate}: must be in [0, 1)")
        if isinstance(self.ln_eps, bool) or not isinstance(self.ln_eps, (int, float)):
            raise ConfigError(f"ln_eps={self.ln_eps!r}: must be a positive number")
        if not self.ln_eps > 0:
            raise ConfigError(f"ln_eps={self.ln_eps}: must be a positive number")
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
        if self.pos_encoding == "sinusoidal" and self.emb_dim % 2 != 0:
            raise ConfigError(
                f"emb_dim={self.emb_dim}: the sinusoidal encoding needs an even emb_dim"
            )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EncoderConfig:
        """Build from plain data; an unknown key is an error (a typo would change the model).

        The fields' old names (``OLD_KEYS``: d_model, num_heads, ...) are read as the new ones,
        so a classifier saved before the rename still loads.
        """
        if not isinstance(d, dict):
            return strict_from_dict(cls, d, what="encoder config")  # its error for a non-mapping
        both = [old for old, new in OLD_KEYS.items() if old in d and new in d]
        if both:
            raise ConfigError(
                "encoder config gives both the old and the new name of "
                + ", ".join(f"{old!r} / {OLD_KEYS[old]!r}" for old in both)
                + ": keep only the new one"
            )
        return strict_from_dict(
            cls, {OLD_KEYS.get(k, k): v for k, v in d.items()}, what="encoder config"
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class EncoderBlock(nn.Module):
    """x = LN(x + Dropout(MHA(x))); x = LN(x + Dropout(FFN(x))): one post-norm encoder layer.

    The GPT's attention and feed-forward layers, arranged post-norm (the paper's and BERT's
    layout: every block's output is normalised; the module docstring says what that costs).
    The QKV biases are on, as in the original Transformer and BERT. Plain sizes, like the
    GPT's ``TransformerBlock``, so the block is usable without an :class:`EncoderConfig`.
    """

    def __init__(
        self,
        emb_dim: int,
        n_heads: int,
        *,
        hidden_dim: int | None = None,
        drop_rate: float = 0.0,
        attn_impl: AttentionImpl = "sdpa",
        ln_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.att = MultiHeadAttention(
            emb_dim, n_heads, drop_rate=drop_rate, qkv_bias=True, attn_impl=attn_impl
        )
        self.norm1 = LayerNorm(emb_dim, ln_eps)
        self.ff = FeedForward(emb_dim, hidden_dim=hidden_dim)
        self.norm2 = LayerNorm(emb_dim, ln_eps)
        self.dropout = nn.Dropout(drop_rate)

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
    """Token ids (B, T) -> contextual vectors (B, T, C): embeddings + N post-norm blocks.

    Takes the whole :class:`EncoderConfig` (it is the model: saved beside the weights and
    rebuilt from it) and hands its layers plain sizes. No final LayerNorm, unlike the GPT:
    a post-norm block already ends with one.
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # nn.Embedding's N(0, 1) init keeps token vectors on the same scale as the sinusoids
        # (values in [-1, 1]); the paper gets there by scaling its embeddings by sqrt(C).
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.emb_dim)
        self.pos_emb = positional_encoding(
            cfg.pos_encoding, context_length=cfg.context_length, emb_dim=cfg.emb_dim
        )
        self.drop_emb = nn.Dropout(cfg.drop_rate)
        self.blocks = nn.ModuleList(
            EncoderBlock(
                cfg.emb_dim,
                cfg.n_heads,
                hidden_dim=cfg.hidden_dim,
                drop_rate=cfg.drop_rate,
                attn_impl=cfg.attn_impl,
                ln_eps=cfg.ln_eps,
            )
            for _ in range(cfg.n_layers)
        )

    def forward(
        self, idx: torch.Tensor, *, padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if idx.dim() != 2:
            raise ValueError(f"expected token ids (batch, seq_len), got shape {tuple(idx.shape)}")
        T = idx.size(1)
        if self.cfg.context_length < T:
            raise ValueError(
                f"sequence length {T} exceeds context_length={self.cfg.context_length}; "
                "truncate the input"
            )
        mask = key_padding_mask(padding_mask, seq_len=T, device=idx.device)
        tok = self.tok_emb(idx)  # (B, T, C)
        x = tok + self.pos_emb(torch.arange(T, device=idx.device)).to(tok.dtype)  # + (T, C)
        x = self.drop_emb(x)
        for block in self.blocks:
            x = block(x, mask=mask)
        return x


class TransformerClassifier(nn.Module):
    """Token ids (B, T) -> class logits (B, K): an encoder, pooling, and a linear head.

    BERT's shape for classification: the encoder gives one vector per token, pooling one per
    text, and a single linear layer scores the classes, so nearly everything the classifier
    knows is in the encoder. Dropout before the head regularises a small labelled set.
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = TransformerEncoder(cfg)
        self.dropout = nn.Dropout(cfg.drop_rate)
        self.head = nn.Linear(cfg.emb_dim, cfg.num_classes)

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
