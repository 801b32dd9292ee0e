"""Model configuration: one typed, validated dataclass and a table of named presets.

The field names follow the book "Build a Large Language Model (From Scratch)" (Raschka, ch. 4:
``vocab_size``, ``context_length``, ``emb_dim``, ``n_heads``, ``n_layers``, ``drop_rate``,
``qkv_bias``), so the seeds' ``GPT_CONFIG_124M`` dict loads verbatim with
:meth:`GPTConfig.from_dict`. The config is plain data: it is saved as JSON next to every
checkpoint and the model is rebuilt from it, never from code.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, TypeVar

from .errors import ConfigError, did_you_mean

_T = TypeVar("_T")

AttentionImpl = Literal["explicit", "sdpa"]
ATTENTION_IMPLS: tuple[str, ...] = ("explicit", "sdpa")
PosEncoding = Literal["learned", "sinusoidal"]
POS_ENCODINGS: tuple[str, ...] = ("learned", "sinusoidal")
WeightInit = Literal["gpt2", "torch"]
WEIGHT_INITS: tuple[str, ...] = ("gpt2", "torch")


def strict_from_dict(cls: type[_T], d: Any, *, what: str) -> _T:
    """Build the dataclass ``cls`` from a plain mapping; an unknown key is an error naming it."""
    if not isinstance(d, dict):
        raise ConfigError(f"a {what} must be a mapping of field to value, got {d!r}")
    known = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    unknown = [k for k in d if k not in known]
    if unknown:
        hints = "; ".join(f"{k!r}{did_you_mean(k, known)}" for k in unknown)
        raise ConfigError(f"unknown {what} key(s): {hints}. Valid keys: {', '.join(known)}")
    return cls(**d)


@dataclass(frozen=True)
class GPTConfig:
    """The shape of a GPT model.

    Frozen so a model can never drift from the config it was built from (change a value with
    ``dataclasses.replace``). The defaults are the book's GPT_CONFIG_124M: GPT-2 small's shape
    with an untied output head and no QKV bias; the ``gpt2-*`` presets set both as OpenAI did.
    """

    vocab_size: int = 50257
    context_length: int = 1024
    emb_dim: int = 768
    n_heads: int = 12
    n_layers: int = 12
    drop_rate: float = 0.1
    qkv_bias: bool = False
    # Share the token embedding with the output head (GPT-2 does; the book's model does not).
    tie_weights: bool = False
    # "explicit": the textbook QK^T/sqrt(d) -> mask -> softmax -> V, one step per line.
    # "sdpa": torch's fused scaled_dot_product_attention (flash attention on a GPU).
    attn_impl: AttentionImpl = "sdpa"
    ln_eps: float = 1e-5
    # "learned": a trained vector per position (GPT-2). "sinusoidal": the fixed sin/cos waves
    # of the original Transformer (Vaswani et al. 2017, §3.5), no parameters. Configs saved
    # before this field existed load as "learned", which is what they were.
    pos_encoding: PosEncoding = "learned"
    # Round the embedding and output-head rows up to a multiple of this (64 is the usual
    # choice): matrix shapes that are multiples of 64 run markedly faster on tensor cores.
    # The extra rows are never real tokens: forward returns only the first vocab_size logits,
    # so the padding can never be sampled or scored.
    vocab_multiple: int = 1
    # How a new model's weights start. "gpt2": N(0, 0.02) everywhere and the residual
    # projections scaled by 1/sqrt(2 n_layers), as OpenAI initialised GPT-2. "torch": each
    # layer's PyTorch default (embeddings N(0, 1), Linear uniform in +-1/sqrt(fan_in)), which
    # is what the book's GPTModel starts from; on a tiny corpus its much larger embeddings are
    # memorised far sooner. Loaded weights replace either.
    init: WeightInit = "gpt2"

    def __post_init__(self) -> None:
        for name, minimum in (
            ("vocab_size", 1),
            ("context_length", 1),
            ("emb_dim", 1),
            ("n_heads", 1),
            ("n_layers", 1),
            ("vocab_multiple", 1),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name}={value!r}: must be an integer >= {minimum}")
            if value < minimum:
                raise ConfigError(f"{name}={value}: must be an integer >= {minimum}")
        if self.emb_dim % self.n_heads != 0:
            raise ConfigError(
                f"emb_dim={self.emb_dim}: must be divisible by n_heads={self.n_heads} "
                f"(each head gets emb_dim / n_heads dimensions); try emb_dim="
                f"{(self.emb_dim // self.n_heads + 1) * self.n_heads} or an n_heads dividing "
                f"{self.emb_dim}"
            )
        if isinstance(self.drop_rate, bool) or not isinstance(self.drop_rate, (int, float)):
            raise ConfigError(f"drop_rate={self.drop_rate!r}: must be a number in [0, 1)")
        if not 0.0 <= self.drop_rate < 1.0:
            raise ConfigError(f"drop_rate={self.drop_rate}: must be in [0, 1)")
        for name in ("qkv_bias", "tie_weights"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}={getattr(self, name)!r}: must be true or false")
        if self.attn_impl not in ATTENTION_IMPLS:
            raise ConfigError(
                f"attn_impl={self.attn_impl!r}: must be one of {', '.join(ATTENTION_IMPLS)}"
            )
        if isinstance(self.ln_eps, bool) or not isinstance(self.ln_eps, (int, float)):
            raise ConfigError(f"ln_eps={self.ln_eps!r}: must be a positive number")
        if not self.ln_eps > 0:
            raise ConfigError(f"ln_eps={self.ln_eps}: must be a positive number")
        if self.pos_encoding not in POS_ENCODINGS:
            raise ConfigError(
                f"pos_encoding={self.pos_encoding!r}: must be one of {', '.join(POS_ENCODINGS)}"
                f"{did_you_mean(str(self.pos_encoding), POS_ENCODINGS)}"
            )
        if self.init not in WEIGHT_INITS:
            raise ConfigError(
                f"init={self.init!r}: must be one of {', '.join(WEIGHT_INITS)}"
                f"{did_you_mean(str(self.init), WEIGHT_INITS)}"
            )
        if self.pos_encoding == "sinusoidal" and self.emb_dim % 2 != 0:
            raise ConfigError(
                f"emb_dim={self.emb_dim}: pos_encoding='sinusoidal' pairs the dimensions into "
                "(sin, cos) waves, so emb_dim must be even; try emb_dim="
                f"{self.emb_dim + self.n_heads}"
            )

    @property
    def padded_vocab_size(self) -> int:
        """Rows of the embedding and output head: vocab_size rounded up to vocab_multiple."""
        return -(-self.vocab_size // self.vocab_multiple) * self.vocab_multiple

    @property
    def head_dim(self) -> int:
        """Dimensions per attention head (hs in the shape comments)."""
        return self.emb_dim // self.n_heads

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GPTConfig:
        """Build from a plain dict (the seeds' GPT_CONFIG_124M loads verbatim).

        Unknown keys are an error rather than ignored: a misspelt ``n_layer`` silently falling
        back to the default would train a different model than the one asked for.
        """
        return strict_from_dict(cls, d, what="model config")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (the inverse of :meth:`from_dict`)."""
        return dataclasses.asdict(self)


# Presets by exact name. OpenAI's four GPT-2 shapes are tied, with QKV bias, as released.
# small / default / large are seed 002's sizes (about 1.6M, 87M and 350M parameters with the
# vocabulary given here; training replaces vocab_size by the tokenizer's). "tiny" is for tests.
_GPT2 = {"vocab_size": 50257, "context_length": 1024, "qkv_bias": True, "tie_weights": True}
PRESETS: dict[str, dict[str, Any]] = {
    "gpt2-124M": {**_GPT2, "emb_dim": 768, "n_heads": 12, "n_layers": 12},
    "gpt2-355M": {**_GPT2, "emb_dim": 1024, "n_heads": 16, "n_layers": 24},
    "gpt2-774M": {**_GPT2, "emb_dim": 1280, "n_heads": 20, "n_layers": 36},
    "gpt2-1558M": {**_GPT2, "emb_dim": 1600, "n_heads": 25, "n_layers": 48},
    "tiny": {
        "vocab_size": 256,
        "context_length": 64,
        "emb_dim": 32,
        "n_heads": 4,
        "n_layers": 2,
        "drop_rate": 0.0,
        "tie_weights": True,
    },
    # The built-in `scratchgpt train` run: a character-level model sized so that ~800 steps
    # fit in about five minutes on two CPU cores.
    "mini": {
        "vocab_size": 128,
        "context_length": 128,
        "emb_dim": 192,
        "n_heads": 6,
        "n_layers": 4,
        "drop_rate": 0.0,
        "tie_weights": True,
    },
    "small": {
        "vocab_size": 8192,
        "context_length": 256,
        "emb_dim": 128,
        "n_heads": 4,
        "n_layers": 3,
        "drop_rate": 0.1,
        "tie_weights": True,
    },
    "default": {
        "vocab_size": 2048,
        "context_length": 512,
        "emb_dim": 768,
        "n_heads": 12,
        "n_layers": 12,
        "drop_rate": 0.1,
        "tie_weights": True,
    },
    "large": {
        "vocab_size": 50257,
        "context_length": 1024,
        "emb_dim": 1024,
        "n_heads": 16,
        "n_layers": 24,
        "drop_rate": 0.1,
        "tie_weights": True,
    },
}


def preset(name: str, **overrides: Any) -> GPTConfig:
    """The preset called exactly ``name``, with ``overrides`` applied.

    Names are matched exactly (no substring guessing): ``"gpt2"`` is not ``"gpt2-124M"``.
    """
    if name not in PRESETS:
        raise ConfigError(
            f"unknown preset {name!r}{did_you_mean(name, list(PRESETS))}. "
            f"Valid presets: {', '.join(PRESETS)}"
        )
    return GPTConfig.from_dict({**PRESETS[name], **overrides})


def load_model_config(path: str | Path) -> GPTConfig:
    """Read a model config from a JSON or YAML file.

    The file is either the bare field mapping (the seeds' GPT_CONFIG_124M) or a run config with
    a ``model:`` section; a ``preset:`` key inside it starts from that preset.
    """
    path = Path(path)
    data = read_config_file(path)
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        data = data["model"]
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of model fields, got {type(data).__name__}")
    data = dict(data)
    base = data.pop("preset", None)
    try:
        return preset(base, **data) if base is not None else GPTConfig.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


# --- run configs: what to train on, how, and with which tokenizer ------------------------------
#
# A run config is four sections, seed 002's layout, each a frozen dataclass validated on
# construction:
#
#     model:      a preset and/or GPTConfig fields (or init_from: pretrained weights)
#     data:       where the text comes from and how it is cut into windows
#     tokenizer:  which tokenizer, and its size when it is trained on the data
#     training:   the optimisation: steps, batch, schedule, precision, checkpoints
#
# YAML or JSON on disk, plain dicts in Python, ``--section.field value`` on the command line;
# the effective config (every field explicit) is saved in the run directory, so a run can be
# reproduced or resumed from that file alone.

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
LOADERS: tuple[str, ...] = ("auto", "sequential", "random")
SECTIONS: tuple[str, ...] = ("model", "data", "tokenizer", "training")


def _help(text: str, default: Any = None) -> Any:
    return dataclasses.field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class TrainConfig:
    """How to train (the ``training:`` section). Each field is also a ``scratchgpt train``
    flag: ``--training.max-steps`` or its short form ``--max-steps``.

    The defaults are the built-in run: a small model on the pydocs corpus in about four
    minutes on two CPU cores.
    """

    max_steps: int | None = _help("optimiser steps to run (or set epochs)", 800)
    epochs: float | None = _help("passes over the training data; sets max_steps from its size")
    batch_size: int = _help("sequences per micro-batch (per process with DDP)", 32)
    grad_accum: int = _help(
        "micro-batches per optimiser step (in all, split over DDP processes); the effective "
        "batch is batch_size * grad_accum",
        1,
    )
    lr: float = _help("peak learning rate", 3e-3)
    min_lr: float = _help("learning rate at the end of the cosine decay", 3e-4)
    warmup_steps: int | None = _help(
        "steps of linear warmup (default: 10%% of max_steps, at most 100)"
    )
    weight_decay: float = _help("AdamW weight decay (on matrices and embeddings only)", 0.1)
    beta1: float = _help("AdamW beta1", 0.9)
    beta2: float = _help("AdamW beta2", 0.95)
    grad_clip: float = _help("max gradient norm (0: off)", 1.0)
    eval_interval: int = _help("steps between evaluations", 100)
    eval_batches: int = _help("batches per loss estimate", 10)
    log_interval: int = _help("steps between metrics.jsonl rows", 10)
    checkpoint_interval: int | None = _help(
        "steps between checkpoints (default: eval_interval); one is always written at the end"
    )
    keep_last: int = _help("checkpoints kept (plus the best by validation loss)", 2)
    early_stopping_patience: int = _help(
        "stop after this many evaluations without a better validation loss (0: off)", 0
    )
    min_delta: float = _help("improvement that counts as better for early stopping", 0.0)
    sample_interval: int = _help("steps between samples (0: off)", 400)
    sample_tokens: int = _help("tokens per sample", 200)
    sample_prompt: str | None = _help("prompt of the samples (default: start of the val text)")
    precision: str = _help(
        "auto (bf16 autocast on GPUs that have it, fp16 + loss scaling on older ones, fp32 "
        "elsewhere), fp32, bf16 or fp16",
        "auto",
    )
    compile: bool = _help("torch.compile the model for training", False)
    activation_checkpointing: bool = _help(
        "recompute each block's activations in the backward pass: less memory, ~30%% slower",
        False,
    )
    fsdp: bool = _help("shard parameters over the processes (FSDP2) instead of DDP", False)
    tensorboard: bool = _help("also write TensorBoard logs (the tensorboard extra)", False)
    seed: int = _help("random seed (init, batches, dropout, samples)", 1337)
    device: str = _help("auto, cpu, cuda, cuda:N or mps", "auto")

    @property
    def warmup(self) -> int:
        """Warmup steps: as given, or 10% of the run capped at 100."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        return min(100, (self.max_steps or 0) // 10)

    def __post_init__(self) -> None:
        _check_types(self, "training")
        positive = (
            "batch_size",
            "grad_accum",
            "eval_interval",
            "eval_batches",
            "log_interval",
            "sample_tokens",
            "keep_last",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"training.{name}={getattr(self, name)}: must be >= 1")
        for name in ("max_steps", "checkpoint_interval"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"training.{name}={value}: must be >= 1")
        if self.epochs is not None and not self.epochs > 0:
            raise ConfigError(f"training.epochs={self.epochs}: must be > 0")
        if self.max_steps is None and self.epochs is None:
            raise ConfigError("training: set max_steps or epochs (how long to train)")
        for name in (
            "sample_interval",
            "early_stopping_patience",
            "min_delta",
            "weight_decay",
            "grad_clip",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"training.{name}={getattr(self, name)}: must be >= 0")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ConfigError(f"training.warmup_steps={self.warmup_steps}: must be >= 0")
        if not self.lr > 0:
            raise ConfigError(f"training.lr={self.lr}: must be > 0")
        if not 0 <= self.min_lr <= self.lr:
            raise ConfigError(f"training.min_lr={self.min_lr}: must be in [0, lr={self.lr}]")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"training.{name}={getattr(self, name)}: must be in [0, 1)")
        if (
            self.warmup_steps is not None
            and self.max_steps is not None
            and self.warmup_steps > self.max_steps
        ):
            raise ConfigError(
                f"training.warmup_steps={self.warmup_steps}: longer than the run (max_steps="
                f"{self.max_steps}); use fewer warmup steps"
            )
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"training.precision={self.precision!r}: must be one of {', '.join(PRECISIONS)}"
                f"{did_you_mean(self.precision, PRECISIONS)}"
            )


@dataclass(frozen=True)
class DataConfig:
    """What to train on (the ``data:`` section)."""

    source: str = _help(
        "a named corpus (pydocs, the-verdict, tinyshakespeare), text files, a glob, a "
        "directory, .jsonl/.parquet, hf:NAME[:CONFIG], or a directory made by scratchgpt "
        "prepare",
        "pydocs",
    )
    train_ratio: float = _help("fraction of a raw text to train on (the rest validates)", 0.9)
    stride: int | None = _help(
        "tokens between window starts of the sequential loader (default: context length)"
    )
    loader: str = _help(
        "sequential (every window of the text, shuffled each epoch), random (windows at "
        "random offsets, for large prepared corpora) or auto (random for prepared data)",
        "auto",
    )
    text_field: str = _help("the text field of .jsonl, .parquet and hf: records", "text")
    cache_dir: str | None = _help("where downloads go (default: $SCRATCHGPT_CACHE or XDG cache)")

    def __post_init__(self) -> None:
        _check_types(self, "data")
        if not 0 < self.train_ratio < 1:
            raise ConfigError(
                f"data.train_ratio={self.train_ratio}: must be strictly between 0 and 1"
            )
        if self.stride is not None and self.stride < 1:
            raise ConfigError(f"data.stride={self.stride}: must be >= 1")
        if self.loader not in LOADERS:
            raise ConfigError(
                f"data.loader={self.loader!r}: must be one of {', '.join(LOADERS)}"
                f"{did_you_mean(self.loader, LOADERS)}"
            )
        if not self.source:
            raise ConfigError("data.source is empty: name a corpus, a file or a directory")


@dataclass(frozen=True)
class TokenizerConfig:
    """Which tokenizer (the ``tokenizer:`` section)."""

    name: str | None = _help(
        "char (built from the data), bpe (trained on the data to vocab_size), simple, gpt2, "
        "a saved tokenizer file, or a directory of GPT-2 files (default: char, or the "
        "init_from model's own)"
    )
    vocab_size: int | None = _help("vocabulary size of a bpe tokenizer trained on the data")

    def __post_init__(self) -> None:
        _check_types(self, "tokenizer")
        if self.vocab_size is not None and self.vocab_size < 1:
            raise ConfigError(f"tokenizer.vocab_size={self.vocab_size}: must be >= 1")
        if self.name == "bpe" and self.vocab_size is None:
            raise ConfigError(
                "tokenizer.name='bpe' is trained to an exact size: set tokenizer.vocab_size "
                "(at least 257)"
            )


# Keys that other projects' configs use, for "did you mean" hints and `config convert`.
ALIASES: dict[str, dict[str, str]] = {
    "model": {
        "embed_dim": "emb_dim",
        "n_embd": "emb_dim",
        "d_model": "emb_dim",
        "num_layers": "n_layers",
        "n_layer": "n_layers",
        "heads": "n_heads",
        "num_heads": "n_heads",
        "n_head": "n_heads",
        "max_block_size": "context_length",
        "block_size": "context_length",
        "max_seq_len": "context_length",
        "n_positions": "context_length",
        "dropout": "drop_rate",
        "bias": "qkv_bias",
    },
    "training": {
        "learning_rate": "lr",
        "max_iters": "max_steps",
        "num_epochs": "epochs",
        "warmup_iters": "warmup_steps",
        "gradient_accumulation_steps": "grad_accum",
        "accumulation_steps": "grad_accum",
        "eval_iters": "eval_batches",
        "grad_clip_norm": "grad_clip",
        "max_grad_norm": "grad_clip",
        "log_interval_steps": "log_interval",
        "save_interval": "checkpoint_interval",
        "patience": "early_stopping_patience",
    },
    "data": {"dataset_name": "source", "dataset": "source", "validation_split": "train_ratio"},
    "tokenizer": {"type": "name"},
}


@dataclass(frozen=True)
class RunConfig:
    """A whole run: the model's shape, the data, the tokenizer and the training settings.

    ``init_from`` (written in the model section) starts from pretrained weights, which then
    fix the shape: ``model`` is None until they are loaded, and the model section may only
    crop the context (``crop_context_length``). A saved effective config has both.
    """

    model: GPTConfig | None = dataclasses.field(default_factory=lambda: preset("mini"))
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = dataclasses.field(default_factory=TokenizerConfig)
    training: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    init_from: str | None = None
    crop_context_length: int | None = None

    def __post_init__(self) -> None:
        if self.model is None and self.init_from is None:
            raise ConfigError("a run needs a model section or model.init_from")

    @classmethod
    def from_dict(cls, d: Any) -> RunConfig:
        """Build from nested plain data, as read from YAML: every section optional.

        The model section starts from ``preset`` (default "mini") and overrides its fields.
        """
        if d is None:
            d = {}
        if not isinstance(d, dict):
            raise ConfigError(f"a run config must be a mapping of sections, got {d!r}")
        unknown = [k for k in d if k not in SECTIONS]
        if unknown:
            hints = "; ".join(f"{k!r}{did_you_mean(str(k), SECTIONS)}" for k in unknown)
            raise ConfigError(
                f"unknown section(s) {hints}: a run config has the sections {', '.join(SECTIONS)}"
            )
        for name in SECTIONS:
            if d.get(name) is not None and not isinstance(d[name], dict):
                raise ConfigError(f"section {name!r} must be a mapping of field: value")
        model = dict(d.get("model") or {})
        init_from = model.pop("init_from", None)
        base = model.pop("preset", "mini")
        sections: dict[str, Any] = {}
        for name, kind in (
            ("data", DataConfig),
            ("tokenizer", TokenizerConfig),
            ("training", TrainConfig),
        ):
            sections[name] = _section(kind, d.get(name) or {}, name)
        _check_keys(GPTConfig, model, "model", extra=("preset", "init_from"))
        model = {k: _coerce(GPTConfig, k, v, "model") for k, v in model.items()}
        if init_from is not None and not isinstance(init_from, str):
            raise ConfigError(f"model.init_from={init_from!r}: must be a name or a path")
        if init_from is not None and "preset" in d["model"] and base is None:
            # a saved effective config: the pretrained shape, written out
            return cls(model=GPTConfig.from_dict(model), init_from=init_from, **sections)
        if init_from is not None:
            extra = sorted(set(model) - {"context_length"}) + (
                ["preset"] if "preset" in d["model"] else []
            )
            if extra:
                raise ConfigError(
                    f"model.init_from fixes the model's shape and vocabulary: drop model."
                    f"{', model.'.join(extra)} (model.context_length may crop the context)"
                )
            return cls(
                model=None,
                init_from=init_from,
                crop_context_length=model.get("context_length"),
                **sections,
            )
        if base is None:
            cfg = GPTConfig.from_dict(model)
        elif not isinstance(base, str):
            raise ConfigError(f"model.preset={base!r}: must be a preset name")
        else:
            cfg = _prefixed("model", lambda: preset(base, **model))
        return cls(model=cfg, **sections)

    def to_dict(self) -> dict[str, Any]:
        """Nested plain data with every field explicit (what the run directory keeps)."""
        if self.model is None:  # shape still to come from init_from's weights
            model: dict[str, Any] = {"init_from": self.init_from}
            if self.crop_context_length is not None:
                model["context_length"] = self.crop_context_length
        else:
            model = {"preset": None, **self.model.to_dict()}
            if self.init_from is not None:
                model["init_from"] = self.init_from
        return {
            "model": model,
            "data": dataclasses.asdict(self.data),
            "tokenizer": dataclasses.asdict(self.tokenizer),
            "training": dataclasses.asdict(self.training),
        }

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, overrides: dict[str, Any]) -> RunConfig:
        """A copy with ``{"training.lr": 3e-4, ...}`` applied (values may be strings)."""
        return RunConfig.from_dict(apply_overrides(self.to_dict(), overrides))


def _prefixed(section: str, build: Any) -> Any:
    try:
        return build()
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(
            message if message.startswith(f"{section}.") else f"{section}.{message}"
        ) from None


def _check_keys(cls: Any, d: dict[str, Any], section: str, *, extra: tuple[str, ...] = ()) -> None:
    known = [f.name for f in fields(cls)] + list(extra)
    unknown = [k for k in d if k not in known]
    if not unknown:
        return
    hints = []
    for key in unknown:
        alias = ALIASES.get(section, {}).get(str(key))
        hint = f" (did you mean {alias!r}?)" if alias else did_you_mean(str(key), known)
        hints.append(f"{section}.{key}{hint}")
    raise ConfigError(
        f"unknown key(s) {'; '.join(hints)}. Valid keys of {section}: {', '.join(known)}"
        + (
            ". `scratchgpt config convert` translates other projects' names"
            if any(str(k) in ALIASES.get(section, {}) for k in unknown)
            else ""
        )
    )


def _section(cls: Any, d: dict[str, Any], section: str) -> Any:
    _check_keys(cls, d, section)
    return cls(**{k: _coerce(cls, k, v, section) for k, v in d.items()})


def _field_type(cls: Any, name: str) -> tuple[str, bool]:
    """(base type name, whether None is allowed) of a dataclass field's annotation."""
    annotation = str(next(f.type for f in fields(cls) if f.name == name))
    optional = annotation.endswith(" | None")
    return annotation.removesuffix(" | None"), optional


def _coerce(cls: Any, name: str, value: Any, section: str) -> Any:
    """``value`` as field ``name``'s type: YAML and the command line give strings and ints
    where floats are meant (PyYAML reads ``3e-4`` as a string), so convert, or say what the
    field wants."""
    kind, optional = _field_type(cls, name)
    where = f"{section}.{name}={value!r}"
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
        if optional:
            return None
        raise ConfigError(f"{where}: must be set (it has no 'none' value)")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{where}: must be true or false")
    if kind == "int":
        if isinstance(value, bool):
            raise ConfigError(f"{where}: must be an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                number = float(value.replace("_", ""))
            except ValueError:
                number = math.nan
            if number.is_integer():
                return int(number)
        raise ConfigError(f"{where}: must be an integer")
    if kind == "float":
        if isinstance(value, bool):
            raise ConfigError(f"{where}: must be a number")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: must be a number")
    if kind == "str":
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: must be a string")
    return value  # Literal[...] fields: their own __post_init__ checks the value


def _check_types(obj: Any, section: str) -> None:
    """Refuse values of the wrong type built directly in Python (from_dict coerces first)."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        coerced = _coerce(type(obj), f.name, value, section)
        if isinstance(value, str) != isinstance(coerced, str):
            raise ConfigError(f"{section}.{f.name}={value!r}: wrong type")
        if coerced != value or type(coerced) is not type(value):
            object.__setattr__(obj, f.name, coerced)


def apply_overrides(d: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``d`` (nested sections) with ``{"section.field": value}`` set; hyphens may replace
    underscores (``training.max-steps``), as on the command line."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in d.items()}
    for key, value in overrides.items():
        section, dot, name = key.partition(".")
        if not dot or not name:
            raise ConfigError(
                f"override {key!r}: write it as section.field, e.g. training.lr "
                f"(sections: {', '.join(SECTIONS)})"
            )
        if section not in SECTIONS:
            raise ConfigError(
                f"override {key!r}: unknown section {section!r}{did_you_mean(section, SECTIONS)}"
            )
        out.setdefault(section, {})
        if out[section] is None:
            out[section] = {}
        out[section][name.replace("-", "_")] = value
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The plain data of a YAML or JSON file, with a clear error for a missing or bad file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # yaml.YAMLError and JSONDecodeError: one message for both
        raise ConfigError(
            f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}"
        ) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    return data


def load_run_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> RunConfig:
    """The run config in ``path`` (YAML or JSON; none: the defaults) with ``overrides``.

    A file of bare model fields (the book's GPT_CONFIG_124M as JSON) is read as the model
    section, so older model-only configs keep working.
    """
    data = read_config_file(path) if path is not None else {}
    model_keys = {f.name for f in fields(GPTConfig)} | {"preset"}
    if data and set(data) <= model_keys:
        data = {"model": {"preset": None, **data}}
    try:
        return RunConfig.from_dict(apply_overrides(data, overrides or {}))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path is not None else str(exc)) from None


def convert_config(data: dict[str, Any]) -> RunConfig:
    """A RunConfig from another project's config: seed 002's sections or a flat JSON dict
    (the book's GPT_CONFIG_124M, nanoGPT-style training keys), names translated by ALIASES.

    Keys with no equivalent are an error naming them, never silently dropped.
    """
    if not isinstance(data, dict):
        raise ConfigError("the config to convert must be a mapping")
    owner = {
        name: section
        for section, kind in (
            ("model", GPTConfig),
            ("data", DataConfig),
            ("tokenizer", TokenizerConfig),
            ("training", TrainConfig),
        )
        for name in [f.name for f in fields(kind)]  # type: ignore[arg-type]
    }
    for section, table in ALIASES.items():
        for alias in table:
            owner.setdefault(alias, section)
    flat: list[tuple[str | None, str, Any]] = []
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, dict):
            flat.extend((key, k, v) for k, v in value.items())
        else:
            flat.append((None, key, value))
    out: dict[str, dict[str, Any]] = {"model": {"preset": None}}
    dropped: list[str] = []
    for section, key, value in flat:
        target = section or owner.get(key)
        name = ALIASES.get(target or "", {}).get(key, key)
        if target == "model" and name in ("preset", "init_from"):
            out["model"][name] = value
            continue
        if key == "mixed_precision":
            target, name, value = "training", "precision", "auto" if value else "fp32"
        elif key == "validation_split":
            value = 1.0 - float(value)
        elif key == "ff_dim":
            width = next((v for (_, k, v) in flat if ALIASES["model"].get(k, k) == "emb_dim"), None)
            if width is not None and int(value) != 4 * int(width):
                raise ConfigError(
                    f"ff_dim={value}: this GPT's feed-forward layer is 4 x emb_dim "
                    f"({4 * int(width)}), as in GPT-2; other widths are not supported"
                )
            continue
        elif key in ("num_training_samples", "special_tokens"):
            dropped.append(key)
            continue
        if target is None:
            raise ConfigError(
                f"cannot convert key {key!r}{did_you_mean(key, list(owner))}: no scratchgpt "
                "setting corresponds to it"
            )
        out.setdefault(target, {})[name] = value
    if dropped:
        logging.getLogger(__name__).warning(
            "config convert: %s have no scratchgpt equivalent and were left out",
            ", ".join(dropped),
        )
    return RunConfig.from_dict(out)
