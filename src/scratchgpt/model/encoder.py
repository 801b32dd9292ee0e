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

import torch
from torch import nn

from ..config import AttentionImpl, EncoderConfig
from .attention import MultiHeadAttention
from .layers import FeedForward, LayerNorm
from .positional import positional_encoding


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
