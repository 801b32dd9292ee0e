"""Where a GPT's parameters are: the count worked out from the config, part by part.

Seed 003 (after Raschka, "Build a Large Language Model (From Scratch)", ch. 4.6) counts the
book's GPT_CONFIG_124M by hand: the embeddings, then one transformer block (attention,
feed-forward, two LayerNorms) times 12, then the final LayerNorm and the output head, for
163,009,536 parameters. :func:`parameter_breakdown` does the same arithmetic for any
:class:`~scratchgpt.config.GPTConfig`, with each formula written out, and the tests check its
total against the real model's ``num_parameters`` for every preset.

Two config switches move the total: ``tie_weights`` (GPT-2 reuses the token embedding as the
output head, saving vocab_size x emb_dim = 38.6M for the 124M shape, which is how OpenAI's
model is "124M" while the book's untied one is 163M), and ``qkv_bias`` (3 x emb_dim per
block). A sinusoidal positional encoding has no parameters at all.

Pure arithmetic on the config: no torch, so ``scratchgpt info --breakdown`` is instant even
for GPT-2 XL.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import GPTConfig


@dataclass(frozen=True)
class ParamCount:
    """A named part of the model and its parameters; ``parts`` break it down further.

    ``count`` is the total for this item; for an item with parts it is ``repeat`` times the
    sum of the parts' counts (``repeat`` is n_layers for the stack of blocks, else 1).
    """

    name: str
    count: int
    formula: str = ""
    parts: tuple[ParamCount, ...] = ()
    repeat: int = 1

    def find(self, name: str) -> ParamCount:
        """The part called ``name``, searched depth first (this item included)."""
        if self.name == name:
            return self
        for part in self.parts:
            try:
                return part.find(name)
            except KeyError:
                continue
        raise KeyError(name)


def _group(name: str, *parts: ParamCount, repeat: int = 1, formula: str = "") -> ParamCount:
    return ParamCount(name, repeat * sum(p.count for p in parts), formula, tuple(parts), repeat)


def _n(x: int) -> str:
    return f"{x:,}"


def _linear(name: str, d_in: int, d_out: int, *, bias: bool, n: int = 1) -> ParamCount:
    """``n`` nn.Linear(d_in, d_out): a d_out x d_in weight (+ a d_out bias) each."""
    count = n * (d_in * d_out + (d_out if bias else 0))
    formula = f"{_n(d_in)} × {_n(d_out)}" + (f" + {_n(d_out)}" if bias else "")
    if n > 1:
        formula = f"{n} × ({formula})" if bias else f"{n} × {formula}"
    return ParamCount(name, count, formula)


def parameter_breakdown(cfg: GPTConfig) -> ParamCount:
    """The parameters of ``GPTModel(cfg)``, as seed 003 counts them; ``.count`` is the total."""
    V, ctx, C, L = cfg.vocab_size, cfg.context_length, cfg.emb_dim, cfg.n_layers
    token = ParamCount("token embedding", V * C, f"vocab_size × emb_dim = {_n(V)} × {_n(C)}")
    if cfg.pos_encoding == "learned":
        position = ParamCount(
            "position embedding", ctx * C, f"context_length × emb_dim = {_n(ctx)} × {_n(C)}"
        )
    elif cfg.pos_encoding == "rope":
        position = ParamCount("position encoding", 0, "rope: rotations inside attention, none")
    else:
        position = ParamCount("position encoding", 0, "sinusoidal: fixed waves, no parameters")
    kv = cfg.kv_heads * cfg.head_dim  # the width of W_key and W_value (C unless GQA)
    if kv == C:
        qkv = [_linear("W_query, W_key, W_value", C, C, bias=cfg.qkv_bias, n=3)]
    else:
        qkv = [
            _linear("W_query", C, C, bias=cfg.qkv_bias),
            _linear(f"W_key, W_value ({cfg.kv_heads} kv heads)", C, kv, bias=cfg.qkv_bias, n=2),
        ]
    if cfg.qk_norm:
        hs = cfg.head_dim
        qkv.append(ParamCount("qk-norm gains", 2 * hs, f"q and k: 2 × head_dim = 2 × {_n(hs)}"))
    attention = _group("multi-head attention", *qkv, _linear("out_proj", C, C, bias=cfg.bias))
    H = cfg.hidden_dim
    widths, what = (2, "gate and value") if cfg.mlp == "swiglu" else (1, cfg.mlp)
    feed_forward = _group(
        "feed-forward",
        _linear(f"expand (emb_dim -> {widths} × {_n(H)}, {what})", C, widths * H, bias=cfg.bias),
        _linear(f"project ({_n(H)} -> emb_dim)", H, C, bias=cfg.bias),
    )
    # A LayerNorm has a scale and (with bias) a shift per feature; an RMSNorm a scale only.
    per_norm = 2 if cfg.norm == "layernorm" and cfg.bias else 1
    parts = "scale + shift" if per_norm == 2 else "scale"
    kind = "layer norm" if cfg.norm == "layernorm" else "RMS norm"
    norms = ParamCount(
        f"{kind}s (2 per block)", 2 * per_norm * C, f"2 × ({parts}) = {2 * per_norm} × {_n(C)}"
    )
    block = _group("transformer block", attention, feed_forward, norms)
    if cfg.tie_weights:
        head = ParamCount("output head", 0, "tied: reuses the token embedding (counted there)")
    else:
        head = ParamCount("output head", C * V, f"emb_dim × vocab_size = {_n(C)} × {_n(V)}")
    return _group(
        "total",
        _group("embeddings", token, position),
        _group("transformer blocks", *block.parts, repeat=L, formula=f"{L} × {_n(block.count)}"),
        ParamCount(f"final {kind}", per_norm * C, f"{parts} = {per_norm} × {_n(C)}"),
        head,
    )


def format_breakdown(breakdown: ParamCount) -> str:
    """The breakdown as an indented table: part, formula, count (``info --breakdown``)."""
    rows: list[tuple[str, str, str]] = []

    def walk(item: ParamCount, depth: int) -> None:
        for i, part in enumerate(item.parts, start=1):
            label = f"{i}. {part.name}" if depth == 0 else part.name
            if part.repeat > 1:
                label += f" (each block: {_n(part.count // part.repeat)})"
            rows.append(("   " * depth + label, part.formula, _n(part.count)))
            walk(part, depth + 1)

    walk(breakdown, 0)
    rows.append(("total", "", _n(breakdown.count)))
    name_w = max(len(r[0]) for r in rows)
    formula_w = max(len(r[1]) for r in rows)
    count_w = max(len(r[2]) for r in rows)
    return "\n".join(
        f"{name:<{name_w}}  {formula:<{formula_w}}  {count:>{count_w}}".rstrip()
        if formula
        else f"{name:<{name_w}}  {'':<{formula_w}}  {count:>{count_w}}"
        for name, formula, count in rows
    )


def count_parameters(cfg: GPTConfig) -> int:
    """``sum(p.numel())`` of a real model of this shape, built on PyTorch's meta device: shapes
    only, no memory or init time, so it is instant even for GPT-2 XL. The independent check
    of :func:`parameter_breakdown`'s arithmetic."""
    import torch

    from .model import GPTModel, num_parameters

    with torch.device("meta"):
        return num_parameters(GPTModel(cfg))
