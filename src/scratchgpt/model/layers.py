"""The layers of a transformer block besides attention: LayerNorm, GELU, FeedForward.

Each layer's math is written out once, step by step, in a ``*_formula`` function a reader can
follow (Raschka, "Build a LLM from Scratch", ch. 4); the module's ``forward`` computes the same
function through PyTorch's fused kernel, which is several times faster on CPU and GPU. A test
pins each pair together.

Shapes: B batch, T sequence length, C = emb_dim, H = the feed-forward hidden width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def layer_norm_formula(
    x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, eps: float
) -> torch.Tensor:
    """Normalise each position's C features to mean 0, variance 1, then scale and shift."""
    mean = x.mean(dim=-1, keepdim=True)
    # The biased variance (divide by C, not C - 1): we normalise a vector of features, we are
    # not estimating a population variance from a sample.
    var = x.var(dim=-1, keepdim=True, unbiased=False)
    norm = (x - mean) / torch.sqrt(var + eps)  # eps keeps a constant vector from dividing by 0
    return scale * norm + shift


def gelu_formula(x: torch.Tensor) -> torch.Tensor:
    """GELU with GPT-2's tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


class LayerNorm(nn.Module):
    """Layer normalisation (Ba et al. 2016) with a learnable scale and shift per feature.

    Normalising keeps activations in a stable range however deep the stack grows; the
    learnable scale/shift (initialised to 1 and 0) let the model undo it where that helps.
    """

    def __init__(self, emb_dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Same function as layer_norm_formula, in one fused kernel.
        return F.layer_norm(x, (x.size(-1),), self.scale, self.shift, self.eps)


class GELU(nn.Module):
    """Gaussian Error Linear Unit (Hendrycks & Gimpel 2016), tanh-approximated as in GPT-2.

    A smooth ReLU: small negative inputs give small negative outputs instead of a hard zero,
    so gradients flow everywhere. The tanh form is what OpenAI trained GPT-2 with, so it is
    the one that reproduces their checkpoints exactly.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate="tanh")  # == gelu_formula(x)


class FeedForward(nn.Module):
    """Position-wise MLP: expand C -> H, GELU, project back H -> C (H = 4C unless given).

    Attention mixes information across positions; this layer then transforms each position on
    its own. The 4x wider hidden layer is GPT-2's ratio (and the original Transformer's, 2048 /
    512); the encoder picks its own ``hidden_dim``. Plain sizes, not a model config, so the GPT
    and the encoder build the very same layer.
    """

    def __init__(self, emb_dim: int, *, hidden_dim: int | None = None) -> None:
        super().__init__()
        hidden = 4 * emb_dim if hidden_dim is None else hidden_dim
        self.layers = nn.Sequential(nn.Linear(emb_dim, hidden), GELU(), nn.Linear(hidden, emb_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # (B, T, C) -> (B, T, H) -> (B, T, C)
