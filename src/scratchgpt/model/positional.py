"""Positional encodings: how a transformer learns where each token is.

Attention is a weighted sum over a set: shuffle the input tokens and every output is shuffled
the same way, nothing else changes. Word order has to be put into the vectors themselves, by
adding a position vector to each token embedding. Two classic ways:

- **learned** (GPT-2, Radford et al. 2019; Raschka, "Build a LLM from Scratch", ch. 2.8): an
  ``nn.Embedding(context_length, C)`` trained with the rest of the model. Flexible, costs
  ``context_length * C`` parameters, and knows nothing of positions it never saw.
- **sinusoidal** (Vaswani et al. 2017, "Attention Is All You Need", §3.5): fixed waves,
  ``PE(pos, 2i) = sin(pos / 10000^(2i/C))`` and ``PE(pos, 2i+1) = cos(pos / 10000^(2i/C))``.
  No parameters; every value lies in [-1, 1]; and for each offset k there is one matrix M_k
  with ``PE(pos + k) = M_k PE(pos)`` for every pos (:func:`sinusoidal_shift_matrix`), which the
  paper gives as the reason attention can learn to look "k tokens back".

A third way changes attention instead of the input:

- **rope** (Su et al. 2021, "RoFormer"; LLaMA and most models since): each head's query and
  key vectors are rotated, pair of dimensions by pair, by the angle ``pos * w_i`` with the
  same frequencies as the sinusoids. The score of query p and key s then depends on their
  rotations only through ``p - s`` (a rotation by a then by -b is a rotation by a - b), so
  attention sees relative positions, and nothing is added to the token vectors.
  :class:`RotaryEmbedding` makes the angles, :func:`apply_rope` rotates.

``GPTConfig.pos_encoding`` (and ``EncoderConfig.pos_encoding``) picks one;
:func:`positional_encoding` builds the additive ones for ``GPTModel`` and the encoder.

Shapes: T positions (any leading shape ``...`` of the position tensor), C = emb_dim.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import POS_ENCODINGS, PosEncoding
from ..errors import ConfigError, did_you_mean

# The paper's base: wavelengths grow geometrically from 2*pi (dimension pair 0) to
# 10000 * 2*pi (the last pair), so the slowest waves never repeat within any real context.
SINUSOID_BASE = 10000.0


def sinusoid_frequencies(
    dim: int,
    *,
    base: float = SINUSOID_BASE,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The angular frequency of each (sin, cos) pair: ``base^(-2i/dim)``, shape (dim / 2,)."""
    if dim < 2 or dim % 2 != 0:
        raise ConfigError(f"dim={dim}: a sinusoidal encoding needs an even dimension >= 2")
    two_i = torch.arange(0, dim, 2, dtype=dtype, device=device)  # 0, 2, 4, ..., dim - 2
    # base^(-2i/dim) as exp(-2i ln(base) / dim): one exp per pair, no large powers.
    return torch.exp(two_i * (-math.log(base) / dim))


def sinusoidal_encoding(
    positions: torch.Tensor, dim: int, *, base: float = SINUSOID_BASE
) -> torch.Tensor:
    """PE of integer ``positions`` of any shape ``(...)`` -> float32 ``(..., dim)``.

    Even dimensions hold the sines and odd ones the cosines, interleaved as in the paper's
    formula, so dimensions (2i, 2i+1) are one wave's (sin, cos) pair.
    """
    freqs = sinusoid_frequencies(dim, base=base, device=positions.device)  # (C/2,)
    angles = positions.float().unsqueeze(-1) * freqs  # (..., 1) * (C/2,) -> (..., C/2)
    # stack -> (..., C/2, 2), flatten -> (..., C): sin, cos, sin, cos, ...
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)


def sinusoidal_table(n_positions: int, dim: int, *, base: float = SINUSOID_BASE) -> torch.Tensor:
    """The encoding of positions 0..n_positions-1: a (T, C) table, one row per position."""
    return sinusoidal_encoding(torch.arange(n_positions), dim, base=base)


def sinusoidal_shift_matrix(offset: int, dim: int, *, base: float = SINUSOID_BASE) -> torch.Tensor:
    """The (C, C) matrix M_k with ``PE(pos + k) = M_k @ PE(pos)`` for every position.

    By the angle-addition formulas, sin(w(p + k)) = sin(wp)cos(wk) + cos(wp)sin(wk) and
    cos(w(p + k)) = cos(wp)cos(wk) - sin(wp)sin(wk): each (sin, cos) pair is rotated by the
    angle w*k, whatever p is. M_k is block diagonal, one 2x2 rotation per frequency.
    """
    angles = offset * sinusoid_frequencies(dim, base=base, dtype=torch.float64)  # (C/2,)
    cos, sin = angles.cos(), angles.sin()
    m = torch.zeros(dim, dim, dtype=torch.float64)
    idx = torch.arange(0, dim, 2)
    m[idx, idx] = cos  # new sin = cos(wk) * sin + sin(wk) * cos
    m[idx, idx + 1] = sin
    m[idx + 1, idx] = -sin  # new cos = -sin(wk) * sin + cos(wk) * cos
    m[idx + 1, idx + 1] = cos
    return m.float()


class RotaryEmbedding(nn.Module):
    """Positions (B or 1, T) -> the (cos, sin) of RoPE's angles, each (B or 1, 1, T, hs / 2).

    No parameters and no table: the angles are computed from the positions at each call, in
    float32 (positions in the thousands times frequencies near 1 need the precision), so any
    positions work: left-padded batches, packed texts, a server's rows at different places.
    """

    def __init__(self, head_dim: int, *, base: float = SINUSOID_BASE) -> None:
        super().__init__()
        sinusoid_frequencies(head_dim, base=base)  # validate now, not at the first forward
        self.head_dim = head_dim
        self.base = base

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = sinusoid_frequencies(self.head_dim, base=self.base, device=positions.device)
        angles = positions.float().unsqueeze(-1) * freqs  # (B|1, T, 1) * (hs/2,) -> (B|1, T, hs/2)
        angles = angles.unsqueeze(1)  # (B|1, T, hs/2) -> (B|1, 1, T, hs/2): the same for all heads
        return angles.cos(), angles.sin()

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, base={self.base:g}"


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each head's vectors x (B, nh, T, hs) by RoPE's angles, pair by pair.

    The pairs are (i, i + hs/2), the first half of the head against the second (the layout of
    GPT-NeoX and LLaMA's Hugging Face weights), rather than neighbours: the same rotation, with
    halves instead of strided slices. Computed in float32, returned in x's dtype.
    """
    x1, x2 = x.float().chunk(2, dim=-1)  # (B, nh, T, hs) -> 2 x (B, nh, T, hs/2)
    # A 2-D rotation of (x1, x2) by the angle: (x1 cos - x2 sin, x1 sin + x2 cos).
    rotated = torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)  # (B, nh, T, hs)
    return rotated.type_as(x)


def similarity_by_distance(table: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity of position pairs ``d`` apart, for d = 0..T-1: shape (T,).

    For the sinusoidal table the dot product of PE(p) and PE(p + d) is sum_i cos(w_i d), the
    same for every p: similarity depends on distance only and falls off as d grows. A learned
    table shows whether training discovered the same.
    """
    unit = table / table.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # (T, C)
    cosine = unit @ unit.T  # (T, C) @ (C, T) -> (T, T)
    T = table.size(0)
    return torch.stack([cosine.diagonal(d).mean() for d in range(T)])


class SinusoidalPositionalEncoding(nn.Module):
    """The fixed sin/cos encoding as a module: positions (...) -> (..., C), no parameters.

    Computed from the positions at each call rather than kept as a buffer: a (T, C) table of
    sines costs next to nothing beside attention, and the module then holds no tensor at all,
    so the state dict has no positional weight, a model built on the meta device (as
    ``checkpoint.build_model`` does) has nothing left to materialise, and any positions work:
    (T,), (1, T) or per-row (B, T) ones for left-padded batches and the KV cache.
    """

    def __init__(self, dim: int, *, base: float = SINUSOID_BASE) -> None:
        super().__init__()
        sinusoid_frequencies(dim, base=base)  # validate now, not at the first forward
        self.dim = dim
        self.base = base

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return sinusoidal_encoding(positions, self.dim, base=self.base)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, base={self.base:g}"


def positional_encoding(kind: PosEncoding, *, context_length: int, emb_dim: int) -> nn.Module:
    """The encoding ``kind`` names ("learned" or "sinusoidal"): positions (...) -> (..., C).

    Plain values, not a model config, so the GPT and the encoder build theirs the same way.
    The learned one is a plain ``nn.Embedding`` so its weight keeps GPT-2's place and name in
    the state dict (``pos_emb.weight``) and pretrained weights load into it unchanged; the
    sinusoidal one needs no ``context_length`` (it has no table).
    """
    if kind == "rope":
        raise ConfigError(
            "pos_encoding='rope' adds nothing to the token vectors: it rotates queries and "
            "keys inside attention (RotaryEmbedding)"
        )
    if kind == "sinusoidal":
        return SinusoidalPositionalEncoding(emb_dim)
    if kind == "learned":
        return nn.Embedding(context_length, emb_dim)
    raise ValueError(
        f"pos_encoding={kind!r}: must be one of {', '.join(POS_ENCODINGS)}"
        f"{did_you_mean(str(kind), POS_ENCODINGS)}"
    )
