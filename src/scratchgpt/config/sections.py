"""The sections of a run config besides the model: training, data and tokenizer.

Each is a frozen dataclass validated on construction, and every field carries its one-line
help, so the command line's ``--section.field`` flags and their ``--help`` come from here.
The aliases are other projects' names for a field (nanoGPT's training keys, seed 002's), for
"did you mean" hints and ``scratchgpt config convert``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from ..errors import ConfigError
from .finetune import parse_trainable
from .validate import check_field_types, one_of, option

Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
Loader = Literal["auto", "sequential", "random"]
LOADERS: tuple[str, ...] = get_args(Loader)
Optimizer = Literal["adamw", "muon"]
OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)
Schedule = Literal["cosine", "wsd"]
SCHEDULES: tuple[str, ...] = get_args(Schedule)


@dataclass(frozen=True)
class TrainConfig:
    """How to train (the ``training:`` section). Each field is also a ``scratchgpt train``
    flag: ``--training.max-steps`` or its short form ``--max-steps``.

    The defaults are the built-in run: a small model on the pydocs corpus in about four
    minutes on two CPU cores.
    """

    max_steps: int | None = option(
        "optimiser steps to run (or set epochs)", 400, aliases=("max_iters",)
    )
    epochs: float | None = option(
        "passes over the training data; sets max_steps from its size",
        None,
        aliases=("num_epochs",),
    )
    batch_size: int = option("sequences per micro-batch (per process with DDP)", 32)
    grad_accum: int = option(
        "micro-batches per optimiser step (in all, split over DDP processes); the effective "
        "batch is batch_size * grad_accum",
        1,
        aliases=("gradient_accumulation_steps", "accumulation_steps"),
    )
    lr: float = option(
        "peak learning rate (AdamW's; Muon's is muon_lr)", 3e-3, aliases=("learning_rate",)
    )
    min_lr: float = option(
        "learning rate at the end of the decay (Muon's end is muon_lr * min_lr / lr)", 3e-4
    )
    warmup_steps: int | None = option(
        "steps of linear warmup (default: 10 percent of max_steps, at most 100)",
        None,
        aliases=("warmup_iters",),
    )
    schedule: Schedule = option(
        "after warmup: cosine (down to min_lr over the rest of the run) or wsd "
        "(warmup-stable-decay: lr held, then a straight line down to min_lr over the last "
        "cooldown_fraction of max_steps)",
        "cosine",
        aliases=("lr_scheduler_type",),
    )
    cooldown_fraction: float = option(
        "wsd: the fraction of max_steps at the end spent decaying to min_lr (Hägele et al. "
        "2024 study such cooldowns against cosine)",
        0.2,
        aliases=("cooldown_frac", "decay_fraction"),
    )
    weight_decay: float = option(
        "decoupled weight decay, times the rate, on matrices and embeddings only (AdamW's, "
        "and Muon's on its matrices)",
        0.1,
    )
    beta1: float = option("AdamW beta1", 0.9)
    beta2: float = option("AdamW beta2", 0.95)
    optimizer: Optimizer = option(
        "adamw, or muon: Muon (orthogonalised momentum, torch >= 2.9) on the weight matrices "
        "of the transformer blocks, AdamW on embeddings, head, biases and norms",
        "adamw",
        aliases=("optim",),
    )
    muon_lr: float = option(
        "Muon's peak learning rate, on the schedule of lr (0.02: Keller Jordan's Muon default "
        "with torch's sqrt(max(1, rows/cols)) shape scaling; torch's own 1e-3 is generic)",
        0.02,
    )
    muon_momentum: float = option(
        "Muon's Nesterov momentum (0.95: Keller Jordan's and torch's default)", 0.95
    )
    grad_clip: float = option(
        "max gradient norm (0: off)", 1.0, aliases=("grad_clip_norm", "max_grad_norm")
    )
    eval_interval: int = option("steps between evaluations", 100)
    eval_batches: int = option("batches per loss estimate", 10, aliases=("eval_iters",))
    log_interval: int = option(
        "steps between metrics.jsonl rows", 10, aliases=("log_interval_steps",)
    )
    checkpoint_interval: int | None = option(
        "steps between checkpoints (default: none; the clock, checkpoint_minutes, decides); one is "
        "also written at each new best validation loss and at the end",
        None,
        aliases=("save_interval",),
    )
    checkpoint_minutes: float = option(
        "minutes of wall-clock time between checkpoints (0: off); with checkpoint_interval, "
        "whichever comes first",
        10.0,
    )
    checkpoint_async: bool | None = option(
        "write checkpoints in a background thread from a CPU copy of the state taken at the "
        "step, so training goes on during the write (the copy costs the weights' and "
        "optimiser's size in CPU memory until the write ends); default: on with a GPU, off "
        "on the CPU, where the write's own work takes the cores from training",
        None,
    )
    keep_last: int = option("checkpoints kept (plus the best by validation loss)", 2)
    early_stopping_patience: int = option(
        "stop after this many evaluations without a better validation loss (0: off)",
        0,
        aliases=("patience",),
    )
    min_delta: float = option("improvement that counts as better for early stopping", 0.0)
    sample_interval: int = option("steps between samples (0: off)", 200)
    sample_tokens: int = option("tokens per sample", 200)
    sample_prompt: str | None = option(
        "prompt of the samples (default: start of the val text)", None
    )
    precision: Precision = option(
        "auto (bf16 autocast on GPUs that have it, fp16 + loss scaling on older ones, fp32 "
        "elsewhere), fp32, bf16 or fp16",
        "auto",
    )
    compile: bool = option("torch.compile the model for training", False)
    activation_checkpointing: bool = option(
        "recompute each block's activations in the backward pass: less memory, about 30 "
        "percent slower",
        False,
    )
    fsdp: bool = option("shard parameters over the processes (FSDP2) instead of DDP", False)
    tensorboard: bool = option("also write TensorBoard logs (the tensorboard extra)", False)
    trainable: str = option(
        "what trains (the rest is frozen): all, head, last-block, last-N (e.g. last-2: the "
        "last N blocks, the final norm and the head) or lora (adapters; see the lora section)",
        "all",
    )
    seed: int = option("random seed (init, batches, dropout, samples)", 1337)
    device: str = option("auto, cpu, cuda, cuda:N or mps", "auto")

    @property
    def warmup(self) -> int:
        """Warmup steps: as given, or 10% of the run capped at 100."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        return min(100, (self.max_steps or 0) // 10)

    def __post_init__(self) -> None:
        check_field_types(self, section="training")
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
            "checkpoint_minutes",
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
        parse_trainable(self.trainable)
        if self.fsdp and self.trainable != "all":
            raise ConfigError(
                f"training.fsdp with training.trainable={self.trainable}: sharding a partly "
                "frozen model is not supported yet; fine-tune with DDP (training.fsdp false)"
            )
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
            raise ConfigError(one_of("training.precision", self.precision, PRECISIONS))
        self._check_optimizer()

    def _check_optimizer(self) -> None:
        """The optimiser and schedule choices (the rest of __post_init__ checks lr and betas)."""
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(one_of("training.optimizer", self.optimizer, OPTIMIZERS))
        if self.schedule not in SCHEDULES:
            raise ConfigError(one_of("training.schedule", self.schedule, SCHEDULES))
        if not 0 < self.cooldown_fraction <= 1:
            raise ConfigError(
                f"training.cooldown_fraction={self.cooldown_fraction}: must be in (0, 1] (the "
                "share of max_steps spent decaying)"
            )
        if not self.muon_lr > 0:
            raise ConfigError(f"training.muon_lr={self.muon_lr}: must be > 0")
        if not 0 <= self.muon_momentum < 1:
            raise ConfigError(f"training.muon_momentum={self.muon_momentum}: must be in [0, 1)")
        if self.optimizer == "muon" and self.fsdp:
            # FSDP hands each process a shard of every matrix; orthogonalising a shard is not
            # orthogonalising the matrix.
            raise ConfigError(
                "training.optimizer=muon with training.fsdp: Muon needs whole matrices and "
                "FSDP shards them; use DDP (training.fsdp false) or training.optimizer=adamw"
            )


@dataclass(frozen=True)
class DataConfig:
    """What to train on (the ``data:`` section)."""

    source: str = option(
        "a named corpus (pydocs, the-verdict, tinyshakespeare), text files, a glob, a "
        "directory, .jsonl/.parquet, hf:NAME[:CONFIG], or a directory made by scratchgpt "
        "prepare",
        "pydocs",
        aliases=("dataset_name", "dataset"),
    )
    # seed 002's validation_split is the other side of the cut: convert writes 1 - it.
    train_ratio: float = option(
        "fraction of a raw text to train on (the rest validates)",
        0.9,
        aliases=("validation_split",),
    )
    stride: int | None = option(
        "tokens between window starts of the sequential loader (default: context length)", None
    )
    loader: Loader = option(
        "sequential (every window of the text, shuffled each epoch), random (windows at "
        "random offsets, for large prepared corpora) or auto (random for prepared data)",
        "auto",
    )
    text_field: str = option("the text field of .jsonl, .parquet and hf: records", "text")
    cache_dir: str | None = option(
        "where downloads go (default: $SCRATCHGPT_CACHE or XDG cache)", None
    )

    def __post_init__(self) -> None:
        check_field_types(self, section="data")
        if not 0 < self.train_ratio < 1:
            raise ConfigError(
                f"data.train_ratio={self.train_ratio}: must be strictly between 0 and 1"
            )
        if self.stride is not None and self.stride < 1:
            raise ConfigError(f"data.stride={self.stride}: must be >= 1")
        if self.loader not in LOADERS:
            raise ConfigError(one_of("data.loader", self.loader, LOADERS))
        if not self.source:
            raise ConfigError("data.source is empty: name a corpus, a file or a directory")


@dataclass(frozen=True)
class TokenizerConfig:
    """Which tokenizer (the ``tokenizer:`` section)."""

    name: str | None = option(
        "char (built from the data), bpe (trained on the data to vocab_size), simple, gpt2, "
        "a saved tokenizer file, or a directory of GPT-2 files (default: char, or the "
        "init_from model's own)",
        None,
        aliases=("type",),
    )
    vocab_size: int | None = option("vocabulary size of a bpe tokenizer trained on the data", None)

    def __post_init__(self) -> None:
        check_field_types(self, section="tokenizer")
        if self.vocab_size is not None and self.vocab_size < 1:
            raise ConfigError(f"tokenizer.vocab_size={self.vocab_size}: must be >= 1")
        if self.name == "bpe" and self.vocab_size is None:
            raise ConfigError(
                "tokenizer.name='bpe' is trained to an exact size: set tokenizer.vocab_size "
                "(at least 257)"
            )
