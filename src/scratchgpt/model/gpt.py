"""The GPT model: embeddings, a stack of pre-norm transformer blocks, and an output head.

GPT-2 (Radford et al. 2019) is a decoder-only transformer: the token at each position is
embedded, its position's embedding added, and N identical blocks of causal self-attention and
a feed-forward layer refine the vectors; a final projection scores every vocabulary entry as
the next token (Raschka, "Build a LLM from Scratch", ch. 4). This is the only model class:
the textbook and fused attention paths, and every later feature, run on these parameters.

The model knows nothing of devices, precision, compilation or distribution: the caller applies
those (see ``scratchgpt.training``), so a saved state dict is always the plain one.

Shapes: B batch, T sequence length, C = emb_dim, V = vocab_size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import GPTConfig
from .attention import MultiHeadAttention
from .layers import FeedForward, LayerNorm


class TransformerBlock(nn.Module):
    """x + Attention(LN(x)), then x + FeedForward(LN(x)).

    Pre-norm (normalise the input of each sub-layer, GPT-2's choice, unlike the original
    post-norm Transformer) leaves the residual path an untouched sum from input to output, so
    gradients reach the first layers undamped and deep stacks train without warmup tricks.
    """

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.norm1 = LayerNorm(cfg.emb_dim, cfg.ln_eps)
        self.att = MultiHeadAttention(cfg)
        self.norm2 = LayerNorm(cfg.emb_dim, cfg.ln_eps)
        self.ff = FeedForward(cfg)
        self.drop_shortcut = nn.Dropout(cfg.drop_rate)

    def forward(self, x: torch.Tensor, *, mask: torch.Tensor | None = None) -> torch.Tensor:
        # The residual ("shortcut") connections: each sub-layer adds a correction to x.
        x = x + self.drop_shortcut(self.att(self.norm1(x), mask=mask))
        return x + self.drop_shortcut(self.ff(self.norm2(x)))


class GPTModel(nn.Module):
    """Token ids (B, T) -> next-token logits (B, T, V), always that one shape."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.emb_dim)
        # Learned absolute positions (GPT-2): attention itself is blind to order.
        self.pos_emb = nn.Embedding(cfg.context_length, cfg.emb_dim)
        self.drop_emb = nn.Dropout(cfg.drop_rate)
        self.trf_blocks = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.n_layers))
        self.final_norm = LayerNorm(cfg.emb_dim, cfg.ln_eps)
        self.out_head = nn.Linear(cfg.emb_dim, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            # Weight tying (Press & Wolf 2017): reading a token in and writing it out use the
            # same vectors; GPT-2 does this and it saves V * C parameters (38.6M for GPT-2).
            self.out_head.weight = self.tok_emb.weight
        self.apply(self._init_weights)
        # GPT-2's scaled init: each block adds two projections to the residual stream, so
        # scale their weights by 1/sqrt(2 * n_layers) to keep its variance flat with depth.
        for name, p in self.named_parameters():
            if name.endswith(("att.out_proj.weight", "ff.layers.2.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # GPT-2's N(0, 0.02): small enough that the initial logits are near zero, so the
        # first loss is about ln(V), the loss of a uniform guess.
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) int64 token ids, T <= context_length -> logits (B, T, V)."""
        if idx.dim() != 2:
            raise ValueError(f"expected token ids (batch, seq_len), got shape {tuple(idx.shape)}")
        T = idx.size(1)
        if self.cfg.context_length < T:
            raise ValueError(
                f"sequence length {T} exceeds context_length={self.cfg.context_length}; "
                "crop the input to its last context_length tokens"
            )
        pos = torch.arange(T, device=idx.device)
        x = self.tok_emb(idx) + self.pos_emb(pos)  # (B, T, C) + (T, C) broadcasts over B
        x = self.drop_emb(x)
        for block in self.trf_blocks:
            x = block(x)
        x = self.final_norm(x)
        return self.out_head(x)  # (B, T, C) -> (B, T, V)


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of next-token prediction: logits (B, T, V), targets (B, T).

    Kept outside the model so ``forward`` has one output shape and the loss can change
    (masking, label smoothing) without touching the architecture.
    """
    # (B, T, V) -> (B*T, V) and (B, T) -> (B*T,): cross_entropy wants classes in dim 1.
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def num_parameters(model: nn.Module) -> int:
    """Trainable parameters, a tied weight counted once (as ``model.parameters()`` yields it)."""
    return sum(p.numel() for p in model.parameters())
