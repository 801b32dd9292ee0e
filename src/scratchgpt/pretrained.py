"""OpenAI's GPT-2 weights in, models trained here out, through one mapping table.

OpenAI released GPT-2 (Radford et al. 2019, "Language Models are Unsupervised Multitask
Learners") in four sizes as TensorFlow checkpoints; the Hugging Face hub
(``openai-community/gpt2*``) carries the same weights as safetensors under transformers'
names. Our :class:`~scratchgpt.model.GPTModel` is the same network under other names (Raschka,
"Build a LLM from Scratch", ch. 5.5), so loading is a renaming plus four irregular parts,
listed once in :data:`MAPPING` and checked on every load:

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
before a single weight is used. Three sources, one converter: the hub (through huggingface_hub's
cache, extra ``hf``), a local Hugging Face-format directory, and OpenAI's original release
through TensorFlow (extra ``tf``). :func:`export_hf` runs the table backwards, so a model
trained here loads in ``transformers.GPT2LMHeadModel`` with the same logits.

Shapes: C = emb_dim, V = vocab_size.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .checkpoint import (
    CheckpointError,
    build_model,
    is_checkpoint,
    load_checkpoint,
    run_checkpoints,
)
from .config import GPTConfig
from .errors import ConfigError, TokenizerError, did_you_mean, missing_extra
from .files import atomic_directory, atomic_write_text
from .model import GPTModel
from .tokenizers import TiktokenTokenizer, Tokenizer, get_tokenizer
from .tokenizers.base import TOKENIZER_FILE, load_tokenizer
from .tokenizers.gpt2_files import ENDOFTEXT, bytes_to_unicode
from .tokenizers.tiktoken_bpe import GPT2_PATTERN

log = logging.getLogger(__name__)

# The four released sizes, by the hub's names, and our presets' names for them.
HUB_REPOS: dict[str, str] = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
}
ALIASES: dict[str, str] = {
    "gpt2-124M": "gpt2",
    "gpt2-355M": "gpt2-medium",
    "gpt2-774M": "gpt2-large",
    "gpt2-1558M": "gpt2-xl",
}
GPT2_NAMES: tuple[str, ...] = (*HUB_REPOS, *ALIASES)
# What a download fetches: the weights in safetensors and the tokenizer, nothing else (the
# repositories also hold TensorFlow, Flax, ONNX and pickled PyTorch copies of the weights).
HUB_FILES: tuple[str, ...] = ("config.json", "model.safetensors", "vocab.json", "merges.txt")

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
    from .model.positional import sinusoidal_table

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
    "pos_encoding": "wpe: a fixed sinusoidal encoding is written as its table of values",
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


def _config_from_openai(directory: Path) -> GPTConfig:
    """OpenAI's hparams.json: n_vocab, n_ctx, n_embd, n_head, n_layer (the rest is GPT-2's)."""
    path = directory / "hparams.json"
    try:
        hp = json.loads(path.read_text(encoding="utf-8"))
        return GPTConfig(
            vocab_size=int(hp["n_vocab"]),
            context_length=int(hp["n_ctx"]),
            emb_dim=int(hp["n_embd"]),
            n_heads=int(hp["n_head"]),
            n_layers=int(hp["n_layer"]),
            drop_rate=0.1,
            qkv_bias=True,
            tie_weights=True,
            ln_eps=1e-5,
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: not OpenAI's GPT-2 hparams.json ({exc})") from exc


# ---------------------------------------------------------------------------------------------
# Weight sources: named tensors read on demand


class LazyTensors(Mapping[str, torch.Tensor]):
    """Named tensors, each read from its file only when looked up (memory-mapped for
    safetensors), so a converter holds one tensor at a time, never the whole file twice."""

    def __init__(self, readers: dict[str, Callable[[], torch.Tensor]]) -> None:
        self._readers = readers

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._readers[name]()

    def __iter__(self) -> Iterator[str]:
        return iter(self._readers)

    def __len__(self) -> int:
        return len(self._readers)


def _safetensors_weights(directory: Path) -> LazyTensors:
    """The tensors of a Hugging Face directory: model.safetensors, or the shards of an index."""
    if (directory / HF_WEIGHTS).is_file():
        files = [directory / HF_WEIGHTS]
    elif (directory / HF_INDEX).is_file():
        try:
            index = json.loads((directory / HF_INDEX).read_text(encoding="utf-8"))
            files = [directory / f for f in sorted(set(index["weight_map"].values()))]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{directory / HF_INDEX}: not a safetensors index") from exc
    elif any((directory / f).is_file() for f in ("pytorch_model.bin", "model.pt")):
        raise CheckpointError(
            f"{directory} holds its weights only as a pickle (pytorch_model.bin), which "
            "scratchgpt never loads since unpickling a file can run code. Convert it to "
            "model.safetensors (transformers: model.save_pretrained(dir)), or download the "
            "hub's safetensors copy"
        )
    else:
        raise CheckpointError(f"{directory}: no {HF_WEIGHTS} next to {HF_CONFIG}")
    readers: dict[str, Callable[[], torch.Tensor]] = {}
    for file in files:
        try:
            names = safe_open(str(file), framework="pt").keys()
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{file}: not a readable safetensors file ({exc})") from exc
        readers.update((name, partial(_read_mapped, file, name)) for name in names)
    return LazyTensors(readers)


def _read_mapped(file: Path, name: str) -> torch.Tensor:
    """One tensor through its own memory map of ``file``.

    A safe_open handle maps the whole file once and keeps every page read through it until
    the handle goes; a handle per tensor lets each page go as soon as its tensor has been
    converted, so a file of transposed weights never sits in memory beside the model.
    """
    return safe_open(str(file), framework="pt").get_tensor(name)


# OpenAI's names -> transformers' (which our table speaks): model/h3/attn/c_attn/w ->
# h.3.attn.c_attn.weight, model/ln_f/g -> ln_f.weight, model/wte -> wte.weight.
_OPENAI_LEAF = {"w": "weight", "g": "weight", "b": "bias"}
_OPENAI_NAME = re.compile(r"model/(?:h(?P<block>\d+)/)?(?P<path>.+?)(?:/(?P<leaf>[wgb]))?")


def openai_to_hf_name(name: str) -> str:
    """Hugging Face's name for one of OpenAI's TensorFlow variable names (itself if unknown)."""
    m = _OPENAI_NAME.fullmatch(name)
    if m is None:
        return name
    parts = [] if m["block"] is None else ["h", m["block"]]
    parts += m["path"].split("/")
    parts.append(_OPENAI_LEAF[m["leaf"]] if m["leaf"] else "weight")  # wte, wpe: no leaf
    return ".".join(parts)


def _read_openai_tensor(reader: Any, name: str) -> torch.Tensor:
    tensor = torch.from_numpy(reader.get_tensor(name))
    if name.endswith("/w") and tensor.dim() == 3 and tensor.size(0) == 1:
        # OpenAI's conv1d weights keep a kernel-width axis of 1: (1, in, out) -> (in, out).
        tensor = tensor[0]
    return tensor


def _import_tensorflow(directory: Path) -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise missing_extra(
            "tensorflow-cpu",
            "tf",
            f"{directory} is OpenAI's TensorFlow release of GPT-2 (the same weights load without "
            "it from the Hugging Face hub: scratchgpt download gpt2); reading it",
        ) from exc
    return tf


def _openai_weights(directory: Path) -> LazyTensors:
    """OpenAI's TensorFlow checkpoint (model.ckpt.*) seen under Hugging Face's names."""
    tf = _import_tensorflow(directory)
    prefix = tf.train.latest_checkpoint(str(directory))  # from the "checkpoint" file
    if prefix is None and (directory / "model.ckpt.index").is_file():
        prefix = str(directory / "model.ckpt")
    if prefix is None:
        raise CheckpointError(
            f"{directory}: no TensorFlow checkpoint (expected the files checkpoint, "
            "model.ckpt.index and model.ckpt.data-* of OpenAI's release)"
        )
    try:
        reader = tf.train.load_checkpoint(prefix)
        names = reader.get_variable_to_shape_map()
    except Exception as exc:  # TensorFlow raises its own error types
        raise CheckpointError(f"{prefix}: unreadable TensorFlow checkpoint ({exc})") from exc
    return LazyTensors(
        {openai_to_hf_name(n): partial(_read_openai_tensor, reader, n) for n in names}
    )


# ---------------------------------------------------------------------------------------------
# The hub


def hub_repo(name: str) -> str | None:
    """The hub repository of a GPT-2 name or alias ("gpt2-124M" -> "openai-community/gpt2")."""
    name = ALIASES.get(name, name)
    if name in HUB_REPOS:
        return HUB_REPOS[name]
    return name if name in HUB_REPOS.values() else None


def _hub_offline() -> bool:
    """HF_HUB_OFFLINE as set now (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE", "").upper()
    return value in {"1", "ON", "YES", "TRUE"} or bool(constants.HF_HUB_OFFLINE)


def download_gpt2(name: str, *, cache_dir: str | Path | None = None) -> Path:
    """Fetch GPT-2 ``name`` (weights in safetensors + tokenizer) into the hub cache.

    Returns the local snapshot directory. huggingface_hub keeps partial downloads and resumes
    them, and an already cached model costs one metadata request (none with
    ``HF_HUB_OFFLINE=1``). ``cache_dir`` defaults to ``HF_HUB_CACHE`` (~/.cache/huggingface/hub).
    """
    repo = hub_repo(name)
    if repo is None:
        raise CheckpointError(
            f"unknown GPT-2 name {name!r}{did_you_mean(name, GPT2_NAMES)}: use one of "
            f"{', '.join(GPT2_NAMES)}, or a local directory"
        )
    try:
        import huggingface_hub
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    except ImportError as exc:
        raise missing_extra(
            "huggingface_hub",
            "hf",
            f"downloading {name!r} (or pass a local directory with config.json + "
            "model.safetensors)",
        ) from exc
    offline = _hub_offline()
    cache = cache_dir or os.environ.get("HF_HUB_CACHE") or None
    where = Path(cache or huggingface_hub.constants.HF_HUB_CACHE).expanduser()
    try:
        path = Path(
            huggingface_hub.snapshot_download(
                repo,
                allow_patterns=list(HUB_FILES),
                cache_dir=cache,
                local_files_only=offline,
            )
        )
    except LocalEntryNotFoundError as exc:
        if offline:
            raise CheckpointError(
                f"GPT-2 {name!r} ({repo}) is not in the Hugging Face cache {where} and "
                "HF_HUB_OFFLINE is set: download it once with network access (`scratchgpt "
                f"download {name}`), or unset HF_HUB_OFFLINE, or pass a local directory "
                "holding config.json + model.safetensors"
            ) from exc
        raise CheckpointError(
            f"could not download {repo} and it is not in the Hugging Face cache {where}: "
            f"{_one_line(exc)}. Check the network and run `scratchgpt download {name}` again "
            "(it resumes), or pass a local directory holding config.json + model.safetensors"
        ) from exc
    except (HfHubHTTPError, OSError) as exc:
        raise CheckpointError(f"downloading {repo} failed: {_one_line(exc)}") from exc
    missing = [f for f in (HF_CONFIG, HF_WEIGHTS) if not (path / f).is_file()]
    if missing:
        raise CheckpointError(
            f"the cached copy of {repo} in {path} lacks {', '.join(missing)}: run "
            f"`scratchgpt download {name}` with network access to complete it"
        )
    return path


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (the CLI prints errors as one line)."""
    return " ".join(str(exc).split()).rstrip(".")


# ---------------------------------------------------------------------------------------------
# Loading


def load_gpt2(
    name_or_path: str | Path,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    tokenizer: str | Path | Tokenizer | None = None,
    **overrides: Any,
) -> tuple[GPTModel, Tokenizer]:
    """GPT-2 and its tokenizer, from the hub, a Hugging Face directory or OpenAI's release.

    ``name_or_path`` is one of :data:`GPT2_NAMES` ("gpt2" ... "gpt2-xl", or "gpt2-124M" ...
    "gpt2-1558M"), fetched through the hub cache, or a directory: Hugging Face's layout
    (config.json + model.safetensors, as ``save_pretrained`` or :func:`export_hf` write it) or
    OpenAI's (hparams.json + model.ckpt.*, which needs the ``tf`` extra). An existing
    directory wins over a name. The weights are read memory-mapped into a model built on the
    meta device, cast to ``dtype`` and moved to ``device`` one tensor at a time.

    The tokenizer is GPT-2's BPE from the directory's vocab.json + merges.txt (or OpenAI's
    encoder.json + vocab.bpe, the same data), or a scratchgpt tokenizer.json; ``tokenizer``
    replaces it. ``overrides`` may set ``context_length`` (a crop, see :func:`crop_context`),
    ``drop_rate`` and ``attn_impl``; the weights fix everything else.
    """
    directory, layout = _locate(name_or_path)
    if layout == "openai":
        cfg, weights = _config_from_openai(directory), _openai_weights(directory)
    else:
        cfg, weights = _read_hf_config(directory), _safetensors_weights(directory)
    context_length = overrides.pop("context_length", None)
    cfg = _with_overrides(cfg, overrides)
    tensors = convert_from_hf(weights, cfg, source=str(directory))
    model = build_model(cfg, tensors, dtype=dtype, device=device, source=str(directory))
    if context_length is not None:
        crop_context(model, context_length)
    tok = _tokenizer_for(directory, tokenizer, model.cfg)
    log.info(
        "loaded GPT-2 from %s: %d layers x %d, context %d, %s parameters",
        directory,
        cfg.n_layers,
        cfg.emb_dim,
        model.cfg.context_length,
        f"{sum(p.numel() for p in model.parameters()):,}",
    )
    return model, tok


def load_pretrained(
    name_or_path: str | Path,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    tokenizer: str | Path | Tokenizer | None = None,
    **overrides: Any,
) -> tuple[GPTModel, Tokenizer]:
    """A model to start from: a scratchgpt checkpoint (or run directory), or any GPT-2.

    What ``--init-from`` accepts: fine-tuning can continue from an earlier fine-tune as well
    as from OpenAI's weights. Options as in :func:`load_gpt2`.
    """
    path = Path(name_or_path)
    if path.is_dir() and (
        is_checkpoint(path) or is_checkpoint(path / "checkpoint") or run_checkpoints(path)
    ):
        context_length = overrides.pop("context_length", None)
        model, tok = load_checkpoint(path, device=device, dtype=dtype, **overrides)
        if context_length is not None:
            crop_context(model, context_length)
        if tokenizer is not None:
            tok = _checked(get_tokenizer(tokenizer), model.cfg, source=str(tokenizer))
        return model, tok
    return load_gpt2(name_or_path, dtype=dtype, device=device, tokenizer=tokenizer, **overrides)


def crop_context(model: GPTModel, context_length: int) -> GPTModel:
    """Shorten ``model``'s context window to its first ``context_length`` positions, in place.

    GPT-2 learned one embedding per position; keeping the first rows is exact for every
    sequence that fits, and a shorter window makes attention cheaper (fine-tuning on a small
    machine, comparing with a model trained at 256). Returns the model.
    """
    n = model.cfg.context_length
    if isinstance(context_length, bool) or not isinstance(context_length, int):
        raise ConfigError(f"context_length={context_length!r}: must be an integer")
    if not 1 <= context_length <= n:
        raise ConfigError(
            f"context_length={context_length}: a model's context can only be cropped, to "
            f"between 1 and its {n}"
        )
    if context_length < n:
        if isinstance(model.pos_emb, torch.nn.Embedding):  # learned: keep the first rows
            old = model.pos_emb.weight
            with torch.no_grad():
                rows = old[:context_length].clone()  # (n, C) -> (context_length, C)
            model.pos_emb.weight = torch.nn.Parameter(rows, requires_grad=old.requires_grad)
            model.pos_emb.num_embeddings = context_length
        # Computed (sinusoidal) positions have no table to cut: only the limit changes.
        model.cfg = dataclasses.replace(model.cfg, context_length=context_length)
    return model


def _with_overrides(cfg: GPTConfig, overrides: dict[str, Any]) -> GPTConfig:
    allowed = ("drop_rate", "attn_impl")
    bad = sorted(k for k in overrides if k not in allowed)
    if bad:
        raise ConfigError(
            f"cannot override {', '.join(bad)} of a pretrained model: its weights fix the "
            f"shape; only context_length (a crop), {' and '.join(allowed)} can change"
        )
    return dataclasses.replace(cfg, **overrides) if overrides else cfg


def _locate(name_or_path: str | Path) -> tuple[Path, str]:
    """The local directory of ``name_or_path`` and its layout, "hf" or "openai"."""
    path = Path(name_or_path)
    if path.is_dir():
        if (path / "hparams.json").is_file():
            return path, "openai"
        if is_checkpoint(path) or is_checkpoint(path / "checkpoint"):
            raise CheckpointError(
                f"{path} is a scratchgpt checkpoint, not a GPT-2 release: load it with "
                "load_checkpoint (--checkpoint), or load_pretrained"
            )
        if (path / HF_CONFIG).is_file():
            return path, "hf"
        raise CheckpointError(
            f"{path} is neither a Hugging Face GPT-2 directory (config.json + "
            "model.safetensors) nor OpenAI's release (hparams.json, checkpoint, model.ckpt.*)"
        )
    if path.exists():
        raise CheckpointError(f"{path} is a file; pass the directory that holds it")
    if hub_repo(str(name_or_path)) is None:
        raise CheckpointError(
            f"{str(name_or_path)!r} is neither a directory nor a GPT-2 name"
            f"{did_you_mean(str(name_or_path), GPT2_NAMES)}: use one of {', '.join(GPT2_NAMES)}"
        )
    return download_gpt2(str(name_or_path)), "hf"


def _read_hf_config(directory: Path) -> GPTConfig:
    path = directory / HF_CONFIG
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable JSON file ({exc})") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return config_from_hf(data, source=str(path))


# GPT-2's tokenizer files: Hugging Face's names, OpenAI's names (the same data), prefixed copies.
GPT2_TOKENIZER_FILES = (
    ("vocab.json", "merges.txt"),
    ("encoder.json", "vocab.bpe"),
    ("gpt2-encoder.json", "gpt2-vocab.bpe"),
)


def _tokenizer_for(
    directory: Path, tokenizer: str | Path | Tokenizer | None, cfg: GPTConfig
) -> Tokenizer:
    if tokenizer is not None:
        tok = _tokenizer_in(Path(tokenizer)) if isinstance(tokenizer, (str, Path)) else None
        return _checked(tok or get_tokenizer(tokenizer), cfg, source=str(tokenizer))
    tok = _tokenizer_in(directory)
    if tok is None:
        raise CheckpointError(
            f"{directory} has no tokenizer: expected vocab.json + merges.txt (Hugging Face), "
            "encoder.json + vocab.bpe (OpenAI) or a scratchgpt tokenizer.json. Copy GPT-2's "
            "files there, or pass tokenizer=... (--tokenizer)"
        )
    return _checked(tok, cfg, source=str(directory))


def _tokenizer_in(directory: Path) -> Tokenizer | None:
    """The tokenizer a model directory holds: GPT-2's two files under either pair of names
    (as tiktoken, the fast path), or a scratchgpt tokenizer.json; None if neither."""
    if not directory.is_dir():
        return None
    for vocab, merges in GPT2_TOKENIZER_FILES:
        if (directory / vocab).is_file() and (directory / merges).is_file():
            try:
                return TiktokenTokenizer.from_gpt2_files(directory / vocab, directory / merges)
            except TokenizerError as exc:
                raise CheckpointError(f"{directory}: {exc}") from exc
    ours = directory / TOKENIZER_FILE
    if ours.is_file() and _is_scratchgpt_tokenizer(ours):
        return load_tokenizer(directory)
    return None


def _is_scratchgpt_tokenizer(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("type") in Tokenizer._registry


def _checked(tok: Tokenizer, cfg: GPTConfig, *, source: str) -> Tokenizer:
    if tok.vocab_size > cfg.vocab_size:
        raise CheckpointError(
            f"{source}: the tokenizer has {tok.vocab_size} ids but the model only "
            f"{cfg.vocab_size}: they do not belong together"
        )
    return tok


# ---------------------------------------------------------------------------------------------
# Export


def export_hf(model: GPTModel, tokenizer: Tokenizer | None, directory: str | Path) -> Path:
    """Write ``model`` in Hugging Face's GPT-2 format: config.json, model.safetensors, tokenizer.

    ``transformers.GPT2LMHeadModel.from_pretrained(directory)`` then gives the same logits.
    GPT-2's own tokenizer is written as vocab.json + merges.txt, so ``GPT2TokenizerFast``
    reads it too; any other tokenizer as scratchgpt's tokenizer.json, which transformers
    cannot read (:func:`load_gpt2` can). A model GPT-2 cannot express is refused with the
    reason. Written atomically; an existing directory is replaced only if it holds a GPT-2
    export. Returns the directory.
    """
    if not isinstance(model, GPTModel):
        raise TypeError(
            f"export_hf expects the raw GPTModel, got {type(model).__name__}: pass the model "
            "you built, not its torch.compile / DDP wrapper"
        )
    cfg = model.cfg
    dtype = model.tok_emb.weight.dtype
    eot = tokenizer.eot_id if tokenizer is not None else None
    config = config_to_hf(cfg, eot_id=eot, dtype=dtype)
    tensors = convert_to_hf(model.state_dict(), cfg)
    # GPT2LMHeadModel's own layout: the body under "transformer.", the head (untied) beside it.
    tensors = {(k if k == HF_HEAD else HF_PREFIX + k): v.cpu() for k, v in tensors.items()}
    gpt2_files = _gpt2_vocab_and_merges(tokenizer) if tokenizer is not None else None

    def write(tmp: Path) -> None:
        # "format": "pt" is what transformers checks a safetensors file's metadata for.
        save_file(tensors, str(tmp / HF_WEIGHTS), metadata={"format": "pt"})
        atomic_write_text(tmp / HF_CONFIG, json.dumps(config, indent=2) + "\n")
        if gpt2_files is not None:
            vocab, merges = gpt2_files
            atomic_write_text(tmp / "vocab.json", json.dumps(vocab, ensure_ascii=False) + "\n")
            atomic_write_text(tmp / "merges.txt", "#version: 0.2\n" + "\n".join(merges) + "\n")
            tok_config = {
                "model_max_length": cfg.context_length,
                "tokenizer_class": "GPT2Tokenizer",
            }
            atomic_write_text(tmp / "tokenizer_config.json", json.dumps(tok_config, indent=2))
        elif tokenizer is not None:
            tokenizer.save(tmp)
            log.warning(
                "the %s tokenizer is not GPT-2's: wrote scratchgpt's tokenizer.json, which "
                "scratchgpt.load_gpt2 reads and transformers' tokenizers do not",
                tokenizer.kind,
            )

    out = atomic_directory(
        directory, write, replaceable=_is_hf_gpt2_dir, what="a Hugging Face GPT-2 export"
    )
    log.info("exported %s tensors to %s", len(tensors), out)
    return out


def _is_hf_gpt2_dir(path: Path) -> bool:
    try:
        data = json.loads((path / HF_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("model_type") == "gpt2"


def _gpt2_vocab_and_merges(tokenizer: Tokenizer) -> tuple[dict[str, int], list[str]] | None:
    """GPT-2's vocab.json and merges.txt content for a tiktoken BPE of GPT-2's kind, else None.

    tiktoken keeps only token ranks; the merges are recovered from them: token 256 + i is
    made by merge i, and which two tokens it joins is what byte-pair merging the token's own
    bytes with the lower ranks only leaves as its last two pieces.
    """
    if not isinstance(tokenizer, TiktokenTokenizer):
        return None
    enc = tokenizer.encoding
    ranks: dict[bytes, int] = enc._mergeable_ranks
    special: dict[str, int] = enc._special_tokens
    if enc._pat_str != GPT2_PATTERN or set(special) - {ENDOFTEXT}:
        return None
    to_char = bytes_to_unicode()

    def text(token: bytes) -> str:
        return "".join(to_char[b] for b in token)

    merges: list[str] = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) == 1:
            if rank >= 256:
                return None
            continue
        if rank != 256 + len(merges):
            return None  # not laid out as GPT-2's files are: byte tokens, then one per merge
        pair = _last_merge(token, ranks, rank)
        if pair is None:
            return None
        merges.append(f"{text(pair[0])} {text(pair[1])}")
    vocab = {text(token): rank for token, rank in ranks.items()}
    vocab.update(special)
    return vocab, merges


def _last_merge(token: bytes, ranks: dict[bytes, int], rank: int) -> tuple[bytes, bytes] | None:
    """The two pieces BPE joins last to make ``token``: merge its bytes with ranks < rank."""
    parts = [bytes([b]) for b in token]
    while len(parts) > 2:
        best: tuple[int, int] | None = None
        for j in range(len(parts) - 1):
            r = ranks.get(parts[j] + parts[j + 1])
            if r is not None and r < rank and (best is None or r < best[0]):
                best = (r, j)
        if best is None:
            return None
        j = best[1]
        parts[j : j + 2] = [parts[j] + parts[j + 1]]
    return (parts[0], parts[1]) if len(parts) == 2 else None
