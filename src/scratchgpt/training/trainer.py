"""The training loop: text in, a trained checkpoint out, with losses and samples on the way.

One place applies everything the model must not know about, in a fixed order: device, then
precision (autocast), then the optimiser. The raw model is what gets saved, so checkpoints
never carry wrapper prefixes. The loop follows Raschka, "Build a LLM from Scratch", ch. 5.2
(evaluate train and validation loss every few steps, print a sample), with nanoGPT's
step-based schedule (warmup + cosine) and gradient clipping.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ..checkpoint import CheckpointError, is_checkpoint, save_checkpoint
from ..config import ConfigError, GPTConfig, preset
from ..data import DataError, create_dataloader, load_text, split_ids
from ..generation import generate
from ..model import GPTModel, eval_mode, lm_loss, num_parameters
from ..pretrained import load_pretrained
from ..tokenizers import Tokenizer, get_tokenizer
from .optim import lr_at, make_optimizer

log = logging.getLogger(__name__)

RUNS_DIR = Path("runs")


def _help(text: str) -> Any:
    return field(metadata={"help": text})


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Each field is a ``scratchgpt train`` flag (``max_steps`` -> --max-steps).

    The defaults are the built-in run: a small model on the pydocs corpus in about five
    minutes on two CPU cores.
    """

    max_steps: int = field(default=800, metadata={"help": "optimiser steps to run"})
    batch_size: int = field(default=32, metadata={"help": "sequences per step"})
    lr: float = field(default=3e-3, metadata={"help": "peak learning rate"})
    min_lr: float = field(default=3e-4, metadata={"help": "learning rate at the end of the decay"})
    warmup_steps: int | None = field(
        default=None,
        metadata={"help": "steps of linear warmup (default: 10%% of max_steps, at most 100)"},
    )
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay (matrices)"})
    grad_clip: float = field(default=1.0, metadata={"help": "max gradient norm (0: off)"})
    train_ratio: float = field(default=0.9, metadata={"help": "fraction of the text to train on"})
    stride: int | None = field(
        default=None, metadata={"help": "tokens between window starts (default: context length)"}
    )
    eval_interval: int = field(default=100, metadata={"help": "steps between evaluations"})
    eval_batches: int = field(default=10, metadata={"help": "batches per loss estimate"})
    sample_interval: int = field(default=400, metadata={"help": "steps between samples (0: off)"})
    sample_tokens: int = field(default=200, metadata={"help": "tokens per sample"})
    sample_prompt: str | None = field(
        default=None, metadata={"help": "prompt of the samples (default: start of the val text)"}
    )
    seed: int = field(default=1337, metadata={"help": "random seed (init, batches, samples)"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda, cuda:N or mps"})

    @property
    def warmup(self) -> int:
        """Warmup steps: as given, or 10% of the run capped at 100."""
        return (
            self.warmup_steps if self.warmup_steps is not None else min(100, self.max_steps // 10)
        )

    def __post_init__(self) -> None:
        positive = ("max_steps", "batch_size", "eval_interval", "eval_batches", "sample_tokens")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}: must be >= 1")
        if self.sample_interval < 0:
            raise ConfigError(f"sample_interval={self.sample_interval}: must be >= 0")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps={self.warmup_steps}: must be >= 0")
        if not self.lr > 0:
            raise ConfigError(f"lr={self.lr}: must be > 0")
        if not 0 <= self.min_lr <= self.lr:
            raise ConfigError(f"min_lr={self.min_lr}: must be in [0, lr={self.lr}]")
        if self.warmup_steps is not None and self.warmup_steps > self.max_steps:
            raise ConfigError(
                f"warmup_steps={self.warmup_steps}: longer than the run (max_steps="
                f"{self.max_steps}); use fewer warmup steps"
            )
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ConfigError("weight_decay and grad_clip must be >= 0")
        if not 0 < self.train_ratio < 1:
            raise ConfigError(f"train_ratio={self.train_ratio}: must be strictly between 0 and 1")
        if self.stride is not None and self.stride < 1:
            raise ConfigError(f"stride={self.stride}: must be >= 1")


@dataclass
class TrainResult:
    """What a run produced: where it is, and the losses it logged."""

    run_dir: Path
    checkpoint: Path
    history: list[dict[str, float]]
    steps: int
    interrupted: bool = False

    @property
    def final_val_loss(self) -> float:
        return self.history[-1]["val_loss"]


def pick_device(name: str = "auto") -> torch.device:
    """ "auto" picks CUDA, then Apple's MPS, then the CPU."""
    if name != "auto":
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device={name!r}: CUDA is not available on this machine")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    # bf16 autocast on GPUs that have it: half the memory traffic, same exponent range as
    # fp32 so no loss scaling is needed. The CPU trains in fp32.
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(
    model: GPTModel, loader: DataLoader[Any], *, max_batches: int, device: torch.device
) -> float:
    """Mean loss over the first ``max_batches`` batches of ``loader``, dropout off."""
    total, n = 0.0, 0
    with eval_mode(model):
        for i, (x, y) in enumerate(loader):
            if i >= max_batches:
                break
            with _autocast(device):
                total += lm_loss(model(x.to(device)), y.to(device)).item()
            n += 1
    return total / n


def _forever(loader: DataLoader[Any]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches epoch after epoch; the loader reshuffles at each pass."""
    while True:
        yield from loader


def new_run_dir(root: Path = RUNS_DIR) -> Path:
    """A fresh run directory named by the start time."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path, n = root / stamp, 1
    while path.exists():
        n += 1
        path = root / f"{stamp}-{n}"
    return path


def latest_run(root: str | Path = RUNS_DIR) -> Path:
    """The most recently written checkpoint under ``root`` (what `generate` uses by default)."""
    root = Path(root)
    found = [p for p in root.glob("*/checkpoint") if is_checkpoint(p)] if root.is_dir() else []
    if not found:
        raise CheckpointError(
            f"no trained run found in {str(root)!r}: run `scratchgpt train` first, or pass "
            "--checkpoint DIR"
        )
    return max(found, key=lambda p: (p / "config.json").stat().st_mtime)


def _describe(init_from: str | Path | tuple[GPTModel, Tokenizer] | None) -> str | None:
    """How a run's starting weights are recorded in its settings (JSON-ready)."""
    if init_from is None or isinstance(init_from, (str, Path)):
        return None if init_from is None else str(init_from)
    return f"a loaded {init_from[0].cfg.n_layers}-layer model"


def train(
    *,
    data: str | Path = "pydocs",
    tokenizer: str | Path | Tokenizer | None = None,
    vocab_size: int | None = None,
    model: GPTConfig | str | None = None,
    config: TrainConfig | None = None,
    out_dir: str | Path | None = None,
    init_from: str | Path | tuple[GPTModel, Tokenizer] | None = None,
) -> TrainResult:
    """Train a GPT on a text and save it; returns the run's directory and loss history.

    ``data`` is a named corpus ("pydocs") or a UTF-8 text file; ``tokenizer`` a name, a path
    or a Tokenizer (default "char"; ``vocab_size`` is the size of a "bpe" tokenizer trained on
    the data); ``model`` a preset name or a GPTConfig (default "mini"), whose vocab_size is set
    to the tokenizer's. The run directory holds train_config.json, metrics.jsonl and
    checkpoint/.

    ``init_from`` fine-tunes instead of training from scratch: a GPT-2 name or directory, or
    a scratchgpt checkpoint (see :func:`scratchgpt.pretrained.load_pretrained`), or a
    ``(model, tokenizer)`` pair already loaded (e.g. ``load_gpt2("gpt2",
    context_length=256)``). The weights then fix the shape, so ``model`` and ``vocab_size``
    must be left out; the tokenizer is the pretrained one unless ``tokenizer`` is given.
    """
    config = config or TrainConfig()
    device = pick_device(config.device)
    torch.manual_seed(config.seed)

    text = load_text(data)
    pretrained: GPTModel | None = None
    if init_from is None:
        tok = get_tokenizer(
            "char" if tokenizer is None else tokenizer, text=text, vocab_size=vocab_size
        )
        model = "mini" if model is None else model
        cfg = preset(model) if isinstance(model, str) else model
        if cfg.vocab_size != tok.vocab_size:
            log.info("vocab_size %d -> %d (the tokenizer's)", cfg.vocab_size, tok.vocab_size)
            cfg = dataclasses.replace(cfg, vocab_size=tok.vocab_size)
    else:
        if model is not None or vocab_size is not None:
            raise ConfigError(
                "init_from fixes the model's shape and vocabulary: leave out model= and "
                "vocab_size= (load_gpt2(..., context_length=N) crops the context)"
            )
        pretrained, tok = init_from if isinstance(init_from, tuple) else load_pretrained(init_from)
        if tokenizer is not None:
            tok = get_tokenizer(tokenizer, text=text)
        cfg = pretrained.cfg
        if tok.vocab_size > cfg.vocab_size:
            raise ConfigError(
                f"the tokenizer has {tok.vocab_size} ids but the pretrained model only "
                f"{cfg.vocab_size}: use the model's own tokenizer"
            )

    ids = tok.encode(text)
    train_ids, val_ids = split_ids(ids, train_ratio=config.train_ratio)
    n_val_chars = len(tok.decode(val_ids))
    window = {"max_length": cfg.context_length, "stride": config.stride}
    # Fixed, unshuffled loaders for the loss estimates, so every evaluation sees the same text.
    eval_loaders = {}
    for split, part in (("train", train_ids), ("val", val_ids)):
        try:
            eval_loaders[split] = create_dataloader(
                part, batch_size=config.batch_size, shuffle=False, **window
            )
        except DataError as exc:
            share = config.train_ratio if split == "train" else 1 - config.train_ratio
            raise DataError(f"the {split} split ({share:.0%} of {data}): {exc}") from None
    train_loader = create_dataloader(
        train_ids, batch_size=config.batch_size, shuffle=True, seed=config.seed, **window
    )

    raw_model = (pretrained if pretrained is not None else GPTModel(cfg)).to(device)
    optimizer = make_optimizer(
        raw_model, lr=config.lr, weight_decay=config.weight_decay, device_type=device.type
    )

    run_dir = Path(out_dir) if out_dir is not None else new_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "data": str(data),
        "tokenizer": str(tokenizer) if isinstance(tokenizer, (str, Path)) else tok.kind,
        "init_from": _describe(init_from),
        "model": cfg.to_dict(),
        "training": dataclasses.asdict(config),
    }
    (run_dir / "train_config.json").write_text(json.dumps(settings, indent=2) + "\n")
    log.info(
        "training %s parameters on %s: %d train / %d val tokens, %d windows of %d; device %s; "
        "run dir %s",
        f"{num_parameters(raw_model):,}",
        data,
        len(train_ids),
        len(val_ids),
        len(train_loader.dataset),
        cfg.context_length,
        device,
        run_dir,  # type: ignore[arg-type]
    )

    prompt_ids = tok.encode(config.sample_prompt) if config.sample_prompt else val_ids[:8]
    sample_gen = torch.Generator(device=device).manual_seed(config.seed)
    history: list[dict[str, float]] = []
    batches = _forever(train_loader)
    step, interrupted = 0, False
    tokens_per_step = config.batch_size * cfg.context_length
    metrics_file = (run_dir / "metrics.jsonl").open("a", encoding="utf-8")

    def evaluate_and_log(step: int, elapsed: float) -> None:
        losses = {
            split: evaluate(raw_model, loader, max_batches=config.eval_batches, device=device)
            for split, loader in eval_loaders.items()
        }
        row = {
            "step": step,
            "train_loss": losses["train"],
            "val_loss": losses["val"],
            "val_ppl": math.exp(min(losses["val"], 50.0)),
            # Loss per character makes tokenizers with different token lengths comparable.
            "val_loss_per_char": losses["val"] * len(val_ids) / max(1, n_val_chars),
            "lr": optimizer.param_groups[0]["lr"],
            "tokens_per_s": step * tokens_per_step / max(elapsed, 1e-9),
        }
        history.append(row)
        metrics_file.write(json.dumps(row) + "\n")
        metrics_file.flush()
        log.info(
            "step %d: train loss %.4f, val loss %.4f, val perplexity %.2f, %.0f tokens/s",
            step,
            row["train_loss"],
            row["val_loss"],
            row["val_ppl"],
            row["tokens_per_s"],
        )

    def sample() -> None:
        idx = torch.tensor([prompt_ids], dtype=torch.long, device=device)
        out = generate(
            raw_model, idx, config.sample_tokens, temperature=0.8, top_k=200, generator=sample_gen
        )
        log.info("sample at step %d:\n%s\n", step, tok.decode(out[0].tolist()))

    raw_model.train()
    start = time.perf_counter()
    bar = tqdm(total=config.max_steps, desc="training", unit="step", disable=None)
    try:
        with logging_redirect_tqdm():
            evaluate_and_log(0, 1.0)
            while step < config.max_steps:
                lr = lr_at(
                    step,
                    lr=config.lr,
                    min_lr=config.min_lr,
                    warmup_steps=config.warmup,
                    max_steps=config.max_steps,
                )
                for group in optimizer.param_groups:
                    group["lr"] = lr
                x, y = next(batches)
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                with _autocast(device):
                    loss = lm_loss(raw_model(x), y)
                loss.backward()
                if config.grad_clip > 0:
                    # Clipping bounds the update when a rare batch gives a huge gradient.
                    torch.nn.utils.clip_grad_norm_(raw_model.parameters(), config.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                bar.update(1)
                if step % 10 == 0:
                    bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}")
                if step % config.eval_interval == 0 or step == config.max_steps:
                    evaluate_and_log(step, time.perf_counter() - start)
                if config.sample_interval and (
                    step % config.sample_interval == 0 or step == config.max_steps
                ):
                    sample()
    except KeyboardInterrupt:
        # Keep what was learnt: save before giving control back.
        interrupted = True
        log.warning("interrupted at step %d: saving a checkpoint", step)
        evaluate_and_log(step, time.perf_counter() - start)
    finally:
        bar.close()
        metrics_file.close()

    checkpoint = save_checkpoint(
        run_dir / "checkpoint",
        raw_model,
        tok,
        metadata={
            "step": step,
            "tokens_seen": step * tokens_per_step,
            "train_loss": history[-1]["train_loss"],
            "val_loss": history[-1]["val_loss"],
            "interrupted": interrupted,
            **settings,
        },
    )
    log.info("saved checkpoint %s (val loss %.4f)", checkpoint, history[-1]["val_loss"])
    return TrainResult(run_dir, checkpoint, history, step, interrupted)
