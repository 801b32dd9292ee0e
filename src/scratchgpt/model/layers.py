"""The layers of a transformer block besides attention: norms, activations, FeedForward.

GPT-2's LayerNorm, GELU and 4x MLP, and the choices later models made (RMSNorm, ReLU
squared, SwiGLU), each selected by a config value on the same FeedForward and block.

Each layer's math is written out once, step by step, in a ``*_formula`` function a reader can
follow (Raschka, "Build a LLM from Scratch", ch. 4); the module's ``forward`` computes the same
function through PyTorch's fused kernel, which is several times faster on CPU and GPU. A test
pins each pair together.

Shapes: B batch, T sequence length, C = emb_dim, H = the feed-forward hidden width.
"""

from __future__ import annotations

import math
from typing import Literal

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


def rms_norm_formula(x: torch.Tensor, scale: torch.Tensor, eps: float) -> torch.Tensor:
    """Divide each position's C features by their root mean square, then scale.

    No mean is subtracted and nothing is shifted: re-centring turned out not to matter, and
    dropping it saves a reduction (Zhang & Sennrich 2019).
    """
    rms = torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)
    return scale * (x / rms)


def gelu_formula(x: torch.Tensor) -> torch.Tensor:
    """GELU with GPT-2's tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


class LayerNorm(nn.Module):
    """Layer normalisation (Ba et al. 2016) with a learnable scale and shift per feature.

    Normalising keeps activations in a stable range however deep the stack grows; the
    learnable scale/shift (initialised to 1 and 0) let the model undo it where that helps.
    """

    def __init__(self, emb_dim: int, eps: float = 1e-5, *, bias: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(emb_dim))
        # bias=False (nanoGPT's option): no shift, the normalised vector is only scaled.
        self.shift = nn.Parameter(torch.zeros(emb_dim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Same function as layer_norm_formula, in one fused kernel.
        return F.layer_norm(x, (x.size(-1),), self.scale, self.shift, self.eps)


class RMSNorm(nn.Module):
    """Root-mean-square normalisation (Zhang & Sennrich 2019) with a learnable scale.

    Equal to ``torch.nn.RMSNorm`` (a test pins it); the parameter is called ``scale`` like
    LayerNorm's, so the two swap without renaming anything else.
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Same function as rms_norm_formula, in one fused kernel.
        return F.rms_norm(x, (x.size(-1),), self.scale, self.eps)


def make_norm(
    kind: Literal["layernorm", "rmsnorm"], dim: int, *, eps: float = 1e-5, bias: bool = True
) -> nn.Module:
    """The norm a config names: GPT-2's LayerNorm (with a shift when ``bias``) or RMSNorm."""
    if kind == "rmsnorm":
        return RMSNorm(dim, eps)
    return LayerNorm(dim, eps, bias=bias)


class GELU(nn.Module):
    """Gaussian Error Linear Unit (Hendrycks & Gimpel 2016), tanh-approximated as in GPT-2.

    A smooth ReLU: small negative inputs give small negative outputs instead of a hard zero,
    so gradients flow everywhere. The tanh form is what OpenAI trained GPT-2 with, so it is
    the one that reproduces their checkpoints exactly.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate="tanh")  # == gelu_formula(x)


class ReLUSquared(nn.Module):
    """max(0, x)^2 (So et al. 2021, "Primer"): as cheap as ReLU, and in the search that found
    it, better than GELU for language models; the modded-nanogpt speedrun uses it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x).square()


class SwiGLU(nn.Module):
    """silu(a) * b for the two halves of its input (Shazeer 2020, "GLU Variants"): one half
    gates the other, which trains to a lower loss than a plain activation at equal size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=-1)  # (B, T, 2H) -> 2 x (B, T, H)
        return F.silu(a) * b


# The activation module of each MLP kind, and how many H-wide outputs its input layer makes.
ACTIVATIONS: dict[str, tuple[type[nn.Module], int]] = {
    "gelu": (GELU, 1),
    "relu2": (ReLUSquared, 1),
    "swiglu": (SwiGLU, 2),  # the gate and the value, side by side in one matrix
}


class FeedForward(nn.Module):
    """Position-wise MLP: expand C -> H, an activation, project back H -> C (H = 4C unless given).

    Attention mixes information across positions; this layer then transforms each position on
    its own. The 4x wider hidden layer is GPT-2's ratio (and the original Transformer's, 2048 /
    512); the encoder picks its own ``hidden_dim``. ``activation`` is GPT-2's GELU, ReLU
    squared or SwiGLU, whose input layer makes the gate and the value at once (C -> 2H).
    Plain sizes, not a model config, so the GPT and the encoder build the very same layer.
    """

    def __init__(
        self,
        emb_dim: int,
        *,
        hidden_dim: int | None = None,
        activation: Literal["gelu", "relu2", "swiglu"] = "gelu",
        bias: bool = True,
    ) -> None:
        super().__init__()
        hidden = 4 * emb_dim if hidden_dim is None else hidden_dim
        act, widths = ACTIVATIONS[activation]
        self.layers = nn.Sequential(
            nn.Linear(emb_dim, widths * hidden, bias=bias),
            act(),
            nn.Linear(hidden, emb_dim, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # (B, T, C) -> (B, T, H) -> (B, T, C)
