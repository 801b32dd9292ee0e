"""The one mapping table between GPT-2's Hugging Face names and ours, both ways, and the configs.

OpenAI's GPT-2 (Radford et al. 2019) and our :class:`~scratchgpt.model.GPTModel` are the same
network under other names (Raschka, "Build a LLM from Scratch", ch. 5.5), so converting is a
renaming plus four irregular parts, listed once in :data:`MAPPING` and checked on every load:

- **Conv1D transposes.** OpenAI wrote every linear layer as a width-1 convolution whose weight
  is (in, out); ``nn.Linear`` stores (out, in), so those weights are transposed ("T").
- **The fused c_attn.** Q, K and V are one (C, 3C) projection there and three (C, C) layers
  here: the fused one is split along its output dimension, in the order q | k | v ("qkv").
- **Ignored buffers.** Older transformers saved the causal mask (``attn.bias``) and its fill
  value (``attn.masked_bias``) with the weights; we build the mask ourselves, so they are
  skipped (:data:`IGNORED`).
- **The tied head.** GPT-2's output head is its token embedding, so no ``lm_head`` weight is
  read unless the config unties it (``tie_word_embeddings: false``).

Every key is accounted for (missing and unexpected ones are errors) and every shape checked
before a single weight is used. :func:`convert_to_hf` and :func:`config_to_hf` run the table
backwards for :func:`~scratchgpt.pretrained.export_hf`.

Shapes: C = emb_dim, V = vocab_size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from ..config import GPTConfig
from ..errors import CheckpointError, ConfigError

# A Hugging Face model directory: its settings and its weights (one file, or shards + index).
HF_CONFIG = "config.json"
HF_WEIGHTS = "model.safetensors"
HF_INDEX = "model.safetensors.index.json"  # a sharded save: tensor name -> shard file
# Saved by GPT2LMHeadModel.save_pretrained; OpenAI's files on the hub have no prefix.
HF_PREFIX = "transformer."

# One row per parameter: (our name, Hugging Face GPT-2 name, rule); {i} is the block index.
#   copy  the same tensor
#   T     a Conv1D weight, (in, out) there, transposed to nn.Linear's (out, in)
#   qkv   the fused c_attn (weight (C, 3C), bias (3C,)) split along its output dimension into
#         W_query, W_key, W_value ({W} below), each weight then transposed like T
MAPPING: tuple[tuple[str, str, str], ...] = (
    ("tok_emb.weight", "wte.weight", "copy"),
    ("pos_emb.weight", "wpe.weight", "copy"),
    ("trf_blocks.{i}.norm1.scale", "h.{i}.ln_1.weight", "copy"),
    ("trf_blocks.{i}.norm1.shift", "h.{i}.ln_1.bias", "copy"),
    ("trf_blocks.{i}.att.{W}.weight", "h.{i}.attn.c_attn.weight", "qkv"),
    ("trf_blocks.{i}.att.{W}.bias", "h.{i}.attn.c_attn.bias", "qkv"),
    ("trf_blocks.{i}.att.out_proj.weight", "h.{i}.attn.c_proj.weight", "T"),
    ("trf_blocks.{i}.att.out_proj.bias", "h.{i}.attn.c_proj.bias", "copy"),
    ("trf_blocks.{i}.norm2.scale", "h.{i}.ln_2.weight", "copy"),
    ("trf_blocks.{i}.norm2.shift", "h.{i}.ln_2.bias", "copy"),
    ("trf_blocks.{i}.ff.layers.0.weight", "h.{i}.mlp.c_fc.weight", "T"),
    ("trf_blocks.{i}.ff.layers.0.bias", "h.{i}.mlp.c_fc.bias", "copy"),
    ("trf_blocks.{i}.ff.layers.2.weight", "h.{i}.mlp.c_proj.weight", "T"),
    ("trf_blocks.{i}.ff.layers.2.bias", "h.{i}.mlp.c_proj.bias", "copy"),
    ("final_norm.scale", "ln_f.weight", "copy"),
    ("final_norm.shift", "ln_f.bias", "copy"),
    # Only for an untied head: a tied GPT-2 has no lm_head of its own (it is wte).
    ("out_head.weight", "lm_head.weight", "copy"),
)
QKV: tuple[str, str, str] = ("W_query", "W_key", "W_value")  # c_attn's output order: q | k | v
HEAD = "out_head.weight"
HF_HEAD = "lm_head.weight"
# Causal-mask buffers older transformers saved with the weights; not parameters.
IGNORED: tuple[str, ...] = ("h.{i}.attn.bias", "h.{i}.attn.masked_bias")
# GPT-2's parameters per block (12) and outside them (4: wte, wpe, ln_f weight and bias).
HF_KEYS_PER_BLOCK, HF_KEYS_OUTSIDE = 12, 4
assert sum("{i}" in hf for _, hf, _ in MAPPING) == HF_KEYS_PER_BLOCK
assert sum("{i}" not in hf and hf != HF_HEAD for _, hf, _ in MAPPING) == HF_KEYS_OUTSIDE


def hf_keys(cfg: GPTConfig) -> list[str]:
    """The Hugging Face names a GPT-2 of shape ``cfg`` has: 12 per block + 4 (+ lm_head)."""
    keys = [hf for _, hf, _ in _rows(cfg)]
    assert len(keys) == HF_KEYS_PER_BLOCK * cfg.n_layers + HF_KEYS_OUTSIDE + (not cfg.tie_weights)
    return keys


def _rows(cfg: GPTConfig) -> Iterator[tuple[str, str, str]]:
    """The mapping table with {i} expanded for each block of ``cfg``."""
    for ours, hf, rule in MAPPING:
        if ours == HEAD and cfg.tie_weights:
            continue
        for i in range(cfg.n_layers) if "{i}" in ours else (0,):
            yield ours.replace("{i}", str(i)), hf.replace("{i}", str(i)), rule


def convert_from_hf(
    weights: Mapping[str, torch.Tensor], cfg: GPTConfig, *, source: str = "weights"
) -> Iterator[tuple[str, torch.Tensor]]:
    """Our (name, tensor) pairs from a Hugging Face GPT-2 state dict (lazily, one at a time).

    ``weights`` may carry the ``transformer.`` prefix or not, and the ignored mask buffers.
    Every key is checked before the first tensor is read, so a wrong file fails at once.
    Every tensor yielded owns its memory (a copy, a transposed copy or a split copy), so the
    source of each one (a memory-mapped file) can be released as soon as it is converted.
    """
    names = {k.removeprefix(HF_PREFIX): k for k in weights}
    expected = hf_keys(cfg)
    ignored = {p.replace("{i}", str(i)) for p in IGNORED for i in range(cfg.n_layers)}
    allowed = {*expected, *ignored, HF_HEAD}  # a tied lm_head may be saved: checked below
    missing = [k for k in expected if k not in names]
    unexpected = sorted(k for k in names if k not in allowed)
    if missing or unexpected:
        raise CheckpointError(
            f"{source} is not a GPT-2 of this shape (n_layer={cfg.n_layers}): missing "
            f"{_few(missing)}, unexpected {_few(unexpected)}"
        )
    # A tied model uses wte as its head; a saved lm_head must then be the same matrix.
    if (
        cfg.tie_weights
        and HF_HEAD in names
        and not torch.equal(weights[names[HF_HEAD]], weights[names["wte.weight"]])
    ):
        raise CheckpointError(
            f"{source}: lm_head.weight differs from wte.weight but the config ties them; "
            "set tie_word_embeddings to false in config.json to load the separate head"
        )
    C = cfg.emb_dim
    for ours, hf, rule in _rows(cfg):
        tensor = weights[names[hf]]
        if rule == "copy":
            yield ours, tensor.clone()
        elif rule == "T":
            if tensor.dim() != 2:
                raise CheckpointError(f"{source}: {hf} has shape {tuple(tensor.shape)}, not 2-D")
            yield ours, tensor.t().contiguous()  # Conv1D (in, out) -> Linear (out, in)
        else:  # qkv
            if tensor.shape[-1] != 3 * C:
                raise CheckpointError(
                    f"{source}: {hf} has shape {tuple(tensor.shape)}; GPT-2 with n_embd={C} "
                    f"fuses q, k and v into a last dimension of 3 * {C} = {3 * C}"
                )
            # weight (C, 3C) -> 3 x (C, C), each -> (out, in); bias (3C,) -> 3 x (C,)
            for w, part in zip(QKV, tensor.split(C, dim=-1), strict=True):
                part = part.t().contiguous() if part.dim() == 2 else part.clone()  # own storage
                yield ours.replace("{W}", w), part


def convert_to_hf(state: Mapping[str, torch.Tensor], cfg: GPTConfig) -> dict[str, torch.Tensor]:
    """A Hugging Face GPT-2 state dict (no prefix) from our ``state``: the table backwards.

    A model without QKV bias gets exact zero c_attn biases, which add nothing: the same
    function. A parameter the table has no row for makes this refuse, never drop it.
    """
    C = cfg.emb_dim
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for ours, hf, rule in _rows(cfg):
        if rule == "qkv":
            names = [ours.replace("{W}", w) for w in QKV]
            if ours.endswith(".bias") and not cfg.qkv_bias:
                ref = state[names[0].replace(".bias", ".weight")]
                parts = [torch.zeros(C, dtype=ref.dtype, device=ref.device)] * 3
            else:
                parts = [state[n] for n in names]
                used.update(names)
            # 3 x (out=C, in=C) -> transposed to (in, out) and side by side: (C, 3C); biases (3C,)
            out[hf] = torch.cat([p.t() if p.dim() == 2 else p for p in parts], dim=-1)
        elif ours == "pos_emb.weight" and getattr(cfg, "pos_encoding", "learned") != "learned":
            out[hf] = _position_table(cfg, like=state["tok_emb.weight"])
        else:
            tensor = state[ours]
            used.add(ours)
            if ours in ("tok_emb.weight", HEAD):
                tensor = tensor[: cfg.vocab_size]  # drop vocab_multiple's padding rows
            out[hf] = tensor.t() if rule == "T" else tensor  # Linear (out, in) -> Conv1D (in, out)
    if cfg.tie_weights:
        used.add(HEAD)
    left = sorted(set(state) - used)
    if left:
        raise CheckpointError(
            f"GPT-2 has no place for the parameters {_few(left)}: this model cannot be exported "
            "in Hugging Face's GPT-2 format"
        )
    return {k: v.detach().contiguous() for k, v in out.items()}


def _position_table(cfg: GPTConfig, *, like: torch.Tensor) -> torch.Tensor:
    """wpe for a model with fixed (sinusoidal) positions: the encoding of 0..T-1 as a table.

    The model adds sin/cos values computed in float32 and cast to the embedding's dtype; a
    learned table holding exactly those values is the same function, so GPT-2 can carry it.
    """
    from ..model.positional import sinusoidal_table

    table = sinusoidal_table(cfg.context_length, cfg.emb_dim)  # (T, C), float32
    return table.to(dtype=like.dtype, device=like.device)


def _few(names: list[str], n: int = 6) -> str:
    shown = ", ".join(names[:n]) or "none"
    return f"{shown} (+{len(names) - n} more)" if len(names) > n else shown


# ---------------------------------------------------------------------------------------------
# Configs: Hugging Face's GPT2Config fields <-> GPTConfig


def config_from_hf(d: Mapping[str, Any], *, source: str = HF_CONFIG) -> GPTConfig:
    """Our config for a Hugging Face GPT-2 ``config.json`` (refusing what GPT-2 here is not)."""
    if d.get("model_type") != "gpt2":
        raise CheckpointError(
            f"{source}: model_type {d.get('model_type')!r}; only GPT-2 checkpoints "
            "(model_type 'gpt2') map onto this model"
        )
    try:
        C = int(d["n_embd"])
        shape = {
            "vocab_size": int(d["vocab_size"]),
            "context_length": int(d.get("n_positions", d.get("n_ctx"))),
            "emb_dim": C,
            "n_heads": int(d["n_head"]),
            "n_layers": int(d["n_layer"]),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: missing or invalid GPT-2 field {exc}") from exc
    # Variants GPT2LMHeadModel supports and this model does not compute: refuse, never guess.
    different = {
        "activation_function": (d.get("activation_function", "gelu_new"), "gelu_new"),
        "n_inner": (d.get("n_inner") or 4 * C, 4 * C),
        "scale_attn_weights": (d.get("scale_attn_weights", True), True),
        "scale_attn_by_inverse_layer_idx": (d.get("scale_attn_by_inverse_layer_idx", False), False),
        "add_cross_attention": (d.get("add_cross_attention", False), False),
    }
    if different["activation_function"][0] == "gelu_pytorch_tanh":  # the same tanh GELU
        del different["activation_function"]
    bad = [f"{k}={v!r} (needs {want!r})" for k, (v, want) in different.items() if v != want]
    if bad:
        raise CheckpointError(f"{source}: this GPT-2 variant cannot be loaded: {', '.join(bad)}")
    try:
        return GPTConfig(
            **shape,
            drop_rate=float(d.get("resid_pdrop", 0.1)),
            qkv_bias=True,  # GPT-2's c_attn always has a bias
            tie_weights=bool(d.get("tie_word_embeddings", True)),
            ln_eps=float(d.get("layer_norm_epsilon", 1e-5)),
        )
    except ConfigError as exc:
        raise CheckpointError(f"{source}: {exc}") from exc


# Every GPTConfig field and what expresses it in GPT-2's config. A field missing here (one
# added later, e.g. another kind of position encoding) makes export refuse unless it has its
# default value, rather than write a model transformers would run differently.
EXPORTED_FIELDS: dict[str, str] = {
    "vocab_size": "vocab_size",
    "context_length": "n_positions",
    "emb_dim": "n_embd",
    "n_heads": "n_head",
    "n_layers": "n_layer",
    "drop_rate": "resid_pdrop, embd_pdrop and attn_pdrop",
    "qkv_bias": "zero c_attn biases when false",
    "tie_weights": "tie_word_embeddings",
    "attn_impl": "how attention is computed, not what: nothing to export",
    "ln_eps": "layer_norm_epsilon",
    "pos_encoding": "wpe: a fixed sinusoidal encoding is written as its table of values "
    "(rope is refused)",
    "vocab_multiple": "padding rows of wte (never real tokens) are dropped",
    "init": "how untrained weights start: nothing to export",
}


def config_to_hf(
    cfg: GPTConfig, *, eot_id: int | None = None, dtype: torch.dtype = torch.float32
) -> dict[str, Any]:
    """Hugging Face's GPT-2 ``config.json`` for ``cfg``; refuses fields GPT-2 cannot express."""
    defaults = {f.name: f.default for f in dataclasses.fields(GPTConfig)}
    odd = [
        f"{k}={v!r}"
        for k, v in cfg.to_dict().items()
        if k not in EXPORTED_FIELDS and v != defaults.get(k)
    ]
    if cfg.pos_encoding == "rope":  # GPT-2 adds a position table; RoPE rotates inside attention
        odd.insert(0, "pos_encoding='rope'")
    if odd:
        raise CheckpointError(
            f"GPT-2 has no equivalent of {', '.join(odd)}: this model cannot be exported in "
            "Hugging Face's GPT-2 format"
        )
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.context_length,
        "n_embd": cfg.emb_dim,
        "n_layer": cfg.n_layers,
        "n_head": cfg.n_heads,
        "n_inner": None,
        "activation_function": "gelu_new",  # the tanh approximation, like our GELU
        "resid_pdrop": cfg.drop_rate,
        "embd_pdrop": cfg.drop_rate,
        "attn_pdrop": cfg.drop_rate,
        "layer_norm_epsilon": cfg.ln_eps,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": cfg.tie_weights,
        "bos_token_id": eot_id,
        "eos_token_id": eot_id,
        "use_cache": True,
        "dtype": str(dtype).removeprefix("torch."),
    }
