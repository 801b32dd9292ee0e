"""The training loop: a run config in, checkpoints and metrics out, resumable at any step.

One function, :func:`train`, applies everything the model must not know about, in a fixed
order (torchtitan's rule): device, activation checkpointing, sharding (FSDP2), compilation,
then DDP; precision is an autocast around the forward pass. It keeps the raw model for
saving, so checkpoints never carry ``_orig_mod.`` or ``module.`` prefixes.

The loop follows Raschka, "Build a LLM from Scratch" ch. 5 (evaluate train and validation
loss every few steps, print a sample) with nanoGPT's production habits: a step-based warmup +
cosine schedule, gradient accumulation, clipping, fused AdamW, bf16 autocast.

Never losing work:

- a checkpoint is a complete directory written beside its final name and renamed into place
  (:func:`scratchgpt.files.atomic_directory`), so killing the process at any instant
  leaves the previous checkpoint intact; the last K are kept, plus the best by validation loss;
- it holds the full state (weights, AdamW moments, step, tokens seen, data position, RNG
  states, loss scaler), and a batch is a pure function of its number
  (:mod:`scratchgpt.data.loaders`), so a resumed run repeats the uninterrupted one exactly;
- SIGINT / SIGTERM finish the current step, save and return; a non-finite loss stops the run
  naming the step, without saving the poisoned weights.

Run directory::

    RUN/config.yaml        the effective config (every field explicit)
    RUN/metrics.jsonl      one JSON row per log interval (val_loss on evaluation rows)
    RUN/train.log          the log
    RUN/checkpoints/step-00000800/  model + tokenizer + training state; best -> the best one
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import signal
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ..checkpoint import (
    STEP_PREFIX,
    CheckpointError,
    is_checkpoint,
    load_checkpoint,
    run_checkpoints,
    save_checkpoint,
)
from ..config import GPTConfig, RunConfig, TrainConfig, load_run_config, preset
from ..data import RandomWindows, SequentialWindows, WindowLoader, load_text
from ..device import autocast, pick_device, resolve_precision
from ..errors import ConfigError, DataError, TrainingError
from ..files import atomic_write_text, point_symlink, remove_tree
from ..generation import generate
from ..model import GPTModel, eval_mode, lm_loss, num_parameters
from ..tokenizers import Tokenizer, get_tokenizer
from . import distributed
from .metrics import MetricsLogger, log_to_file, mfu
from .optim import lr_at, make_optimizer
from .state import read_state, write_state

log = logging.getLogger(__name__)

RUNS_DIR = Path("runs")
CONFIG_FILE = "config.yaml"


@dataclass
class TrainResult:
    """What a run produced: where it is, its metrics rows, and how it ended."""

    run_dir: Path
    checkpoint: Path
    history: list[dict[str, Any]]
    steps: int
    max_steps: int = 0
    interrupted: bool = False
    stopped_early: bool = False
    best_checkpoint: Path | None = None

    @property
    def evaluations(self) -> list[dict[str, Any]]:
        """The rows that carry a validation loss."""
        return [row for row in self.history if "val_loss" in row]

    @property
    def final_val_loss(self) -> float:
        return self.evaluations[-1]["val_loss"]


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    loader: WindowLoader,
    *,
    batches: int,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> float:
    """Mean loss over batches 0..batches-1 of ``loader`` (the same ones every time), no dropout."""
    total = torch.zeros((), device=device)
    with eval_mode(model):
        for i in range(batches):
            x, y = loader.batch(i)
            with autocast(device, dtype):
                total += lm_loss(model(x.to(device)), y.to(device))
    return total.item() / batches


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
    found: list[Path] = []
    if root.is_dir():
        for run in root.iterdir():
            steps = run_checkpoints(run)
            if steps:
                found.append(steps[-1][1])
            elif is_checkpoint(run / "checkpoint"):
                found.append(run / "checkpoint")
    if not found:
        raise CheckpointError(
            f"no trained run found in {str(root)!r}: run `scratchgpt train` first, or pass "
            "--checkpoint DIR"
        )
    return max(found, key=lambda p: (p / "config.json").stat().st_mtime)


# --- what the run trains on ---------------------------------------------------------------------


@dataclass
class _Data:
    tokenizer: Tokenizer
    train: list[np.ndarray]
    val: list[np.ndarray]
    prepared: bool
    chars_per_val_token: float | None = None


def _load_data(run: RunConfig, tokenizer: Tokenizer | None) -> _Data:
    """The token streams of the train and validation splits, and the tokenizer."""
    from ..data import is_prepared, load_prepared

    source = run.data.source
    if source.startswith("hf:"):
        source = _prepare_into_cache(run, tokenizer)
    if is_prepared(source):
        prep = load_prepared(source)
        tok = tokenizer or prep.tokenizer
        if tok.vocab_size != prep.tokenizer.vocab_size:
            raise ConfigError(
                f"{source} was prepared with a {prep.tokenizer.vocab_size}-token tokenizer, "
                f"not this {tok.vocab_size}-token one: prepare the data again with it"
            )
        train, val = prep.shards("train"), prep.shards("val")
        if not val:
            raise DataError(f"{source} has no validation split: prepare it with --val-fraction")
        return _Data(tok, train, val, prepared=True)
    text = load_text(source, text_field=run.data.text_field, cache_dir=run.data.cache_dir)
    tok = tokenizer or get_tokenizer(
        run.tokenizer.name or "char", text=text, vocab_size=run.tokenizer.vocab_size
    )
    ids = np.asarray(tok.encode(text), dtype=np.int64)
    cut = int(len(ids) * run.data.train_ratio)
    val = ids[cut:]
    n_val_chars = len(tok.decode(val.tolist()))
    return _Data(
        tok, [ids[:cut]], [val], prepared=False, chars_per_val_token=n_val_chars / max(1, len(val))
    )


def _prepare_into_cache(run: RunConfig, tokenizer: Tokenizer | None) -> str:
    """Tokenize a streamed (hf:) dataset into shards under the cache, once: a later run with
    the same data and tokenizer finds them ready (and an interrupted one resumes)."""
    from ..data import cache_directory, prepare

    name = run.tokenizer.name
    if tokenizer is None and name in (None, "char", "simple", "bpe"):
        raise ConfigError(
            f"data.source={run.data.source!r} is streamed, so the tokenizer cannot be built "
            "from the whole text: set tokenizer.name to gpt2 or a saved tokenizer (or train "
            "one first with scratchgpt tokenizer train)"
        )
    tok = tokenizer or get_tokenizer(name)  # type: ignore[arg-type]
    key = {"source": run.data.source, "text_field": run.data.text_field, "tokenizer": str(name)}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    out = cache_directory(run.data.cache_dir) / "prepared" / digest
    log.info("preparing %s into %s (once; later runs reuse it)", run.data.source, out)
    prepare(
        run.data.source,
        tokenizer=tok,
        out_dir=out,
        text_field=run.data.text_field,
        cache_dir=run.data.cache_dir,
    )
    return str(out)


def _loaders(
    run: RunConfig, data: _Data, context_length: int
) -> tuple[WindowLoader, dict[str, WindowLoader]]:
    """The training loader and the fixed loaders the loss estimates read."""
    t, d = run.training, run.data
    kind = d.loader if d.loader != "auto" else ("random" if data.prepared else "sequential")
    share = {"train": d.train_ratio, "val": 1 - d.train_ratio}

    def make(split: str, arrays: list[np.ndarray], *, shuffle: bool, seed: int) -> WindowLoader:
        try:
            if kind == "random":
                return RandomWindows(
                    arrays, batch_size=t.batch_size, context_length=context_length, seed=seed
                )
            return SequentialWindows(
                arrays,
                batch_size=t.batch_size,
                context_length=context_length,
                stride=d.stride,
                shuffle=shuffle,
                seed=seed,
            )
        except DataError as exc:
            part = "" if data.prepared else f" ({share[split]:.0%} of {d.source})"
            raise DataError(f"the {split} split{part}: {exc}") from None

    train = make("train", data.train, shuffle=True, seed=t.seed)
    # Evaluations read the same batches every time, so their losses are comparable.
    evals = {
        "train": make("train", data.train, shuffle=False, seed=t.seed + 1),
        "val": make("val", data.val, shuffle=False, seed=t.seed + 2),
    }
    return train, evals


# --- stopping cleanly ---------------------------------------------------------------------------


class _StopSignals:
    """SIGINT / SIGTERM ask the loop to stop after the current step (a second one is
    immediate). Only the main thread may install handlers; elsewhere this does nothing."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:  # asked twice: stop now
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name
        log.warning(
            "%s received: saving a checkpoint after this step (again: stop now)", self.received
        )

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


# --- the run ------------------------------------------------------------------------------------


def _resolve_run(
    config: RunConfig | TrainConfig | str | Path | None,
    *,
    data: str | Path | None,
    tokenizer: str | Path | Tokenizer | None,
    vocab_size: int | None,
    model: GPTConfig | str | None,
    init_from: str | Path | tuple[GPTModel, Tokenizer] | None,
    overrides: dict[str, Any] | None,
) -> RunConfig:
    """One RunConfig from the ways train() can be called (file, dataclasses, keywords)."""
    if isinstance(config, (str, Path)):
        run = load_run_config(config, overrides)
    elif isinstance(config, RunConfig):
        run = config.replace(overrides) if overrides else config
    else:
        run = RunConfig(training=config or TrainConfig())
        if overrides:
            run = run.replace(overrides)
    changes: dict[str, Any] = {}
    if data is not None:
        changes["data"] = dataclasses.replace(run.data, source=str(data))
    if isinstance(tokenizer, (str, Path)) or vocab_size is not None:
        name = str(tokenizer) if isinstance(tokenizer, (str, Path)) else run.tokenizer.name
        changes["tokenizer"] = dataclasses.replace(
            run.tokenizer, name=name, vocab_size=vocab_size or run.tokenizer.vocab_size
        )
    if init_from is not None and (model is not None or vocab_size is not None):
        raise ConfigError(
            "init_from fixes the model's shape and vocabulary: leave out model= and "
            "vocab_size= (load_gpt2(..., context_length=N) crops the context)"
        )
    if model is not None:
        changes["model"] = preset(model) if isinstance(model, str) else model
    if init_from is not None:
        changes["model"] = None
        changes["init_from"] = (
            str(init_from) if isinstance(init_from, (str, Path)) else "(a loaded model)"
        )
    return dataclasses.replace(run, **changes) if changes else run


def train(
    config: RunConfig | TrainConfig | str | Path | None = None,
    *,
    data: str | Path | None = None,
    tokenizer: str | Path | Tokenizer | None = None,
    vocab_size: int | None = None,
    model: GPTConfig | str | None = None,
    out_dir: str | Path | None = None,
    init_from: str | Path | tuple[GPTModel, Tokenizer] | None = None,
    resume: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    stop_at: int | None = None,
) -> TrainResult:
    """Train a GPT and save it; returns the run directory, its metrics rows and checkpoints.

    ``config`` is a :class:`RunConfig`, a YAML/JSON file of one, or just the training section
    (:class:`TrainConfig`); ``overrides`` sets fields by dotted name (``{"training.lr":
    3e-4}``). The keywords are shortcuts for the most used fields: ``data`` (a named corpus,
    files, or a directory made by ``scratchgpt prepare``), ``tokenizer`` (a name, a path, or
    a Tokenizer; ``vocab_size`` sizes a "bpe" one trained on the data), ``model`` (a preset
    name or a GPTConfig; its vocab_size becomes the tokenizer's).

    ``init_from`` fine-tunes instead of training from scratch: a GPT-2 name or directory, a
    scratchgpt checkpoint, or a ``(model, tokenizer)`` pair already loaded; the weights then
    fix the shape. ``resume`` continues the run in that directory from its latest checkpoint,
    exactly as if it had never stopped. ``stop_at`` saves and returns at that step (a later
    ``resume`` carries on), for jobs with a time limit.
    """
    resume_dir = Path(resume) if resume is not None else None
    if resume_dir is not None:
        saved = resume_dir / CONFIG_FILE
        if not saved.is_file():
            raise CheckpointError(
                f"cannot resume {str(resume_dir)!r}: it has no {CONFIG_FILE} (is it a run "
                "directory made by scratchgpt train?)"
            )
        config = load_run_config(saved, overrides)
        overrides = None
        out_dir = resume_dir
    run = _resolve_run(
        config,
        data=data,
        tokenizer=tokenizer,
        vocab_size=vocab_size,
        model=model,
        init_from=init_from,
        overrides=overrides,
    )
    t = run.training
    device = pick_device(t.device)
    world = distributed.setup(device.type)
    if world.distributed and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    try:
        return _train(
            run,
            device=device,
            world=world,
            out_dir=out_dir,
            resume_dir=resume_dir,
            tokenizer=tokenizer if isinstance(tokenizer, Tokenizer) else None,
            pretrained=init_from if isinstance(init_from, tuple) else None,
            stop_at=stop_at,
        )
    finally:
        distributed.teardown(world)


def _train(
    run: RunConfig,
    *,
    device: torch.device,
    world: distributed.World,
    out_dir: str | Path | None,
    resume_dir: Path | None,
    tokenizer: Tokenizer | None,
    pretrained: tuple[GPTModel, Tokenizer] | None,
    stop_at: int | None,
) -> TrainResult:
    t = run.training
    torch.manual_seed(t.seed)
    resume_from = None
    if resume_dir is not None:
        steps = run_checkpoints(resume_dir)
        if not steps:
            raise CheckpointError(
                f"cannot resume {resume_dir}: no complete checkpoint in {resume_dir}/checkpoints"
            )
        resume_from = steps[-1][1]

    # The weights we start from fix the tokenizer: a resumed run's own, or a pretrained one's.
    start_model: GPTModel | None = None
    saved_model: GPTModel | None = None
    if resume_from is not None:
        saved_model, tokenizer = load_checkpoint(resume_from)
    elif pretrained is not None or run.init_from is not None:
        from ..pretrained import load_pretrained

        crop = run.crop_context_length if run.model is None else run.model.context_length
        options = {} if crop is None else {"context_length": crop}
        start_model, pre_tok = pretrained or load_pretrained(
            run.init_from,  # type: ignore[arg-type]
            **options,
        )
        if tokenizer is None and run.tokenizer.name is None:
            tokenizer = pre_tok  # the pretrained model's own, unless another is asked for
    data = _load_data(run, tokenizer)
    tok = data.tokenizer

    if start_model is not None:
        cfg = start_model.cfg
        if tok.vocab_size > cfg.vocab_size:
            raise ConfigError(
                f"the tokenizer has {tok.vocab_size} ids but the pretrained model only "
                f"{cfg.vocab_size}: use the model's own tokenizer"
            )
    else:
        cfg = run.model
        assert cfg is not None  # RunConfig guarantees a model or init_from
        if cfg.vocab_size != tok.vocab_size:
            log.info("vocab_size %d -> %d (the tokenizer's)", cfg.vocab_size, tok.vocab_size)
            cfg = dataclasses.replace(cfg, vocab_size=tok.vocab_size)
    run = dataclasses.replace(run, model=cfg)

    train_loader, eval_loaders = _loaders(run, data, cfg.context_length)
    if t.grad_accum % world.size:
        raise ConfigError(
            f"training.grad_accum={t.grad_accum} must be a multiple of the {world.size} "
            f"processes (each takes grad_accum / {world.size} micro-batches per step)"
        )
    local_accum = t.grad_accum // world.size
    max_steps = t.max_steps or 1
    if t.epochs is not None:
        # Both set: the run ends at whichever comes first (a quick --training.max-steps 3
        # trial of an epoch-based config).
        epoch_steps = max(1, math.ceil(t.epochs * train_loader.batches_per_epoch / t.grad_accum))
        max_steps = min(max_steps, epoch_steps) if t.max_steps else epoch_steps
        log.info(
            "%g epochs of %d batches: %d steps",
            t.epochs,
            train_loader.batches_per_epoch,
            max_steps,
        )
    warmup = t.warmup_steps if t.warmup_steps is not None else min(100, max_steps // 10)
    if warmup > max_steps:
        raise ConfigError(
            f"training.warmup_steps={warmup}: longer than the run ({max_steps} steps); use "
            "fewer warmup steps"
        )
    ckpt_every = t.checkpoint_interval or t.eval_interval
    dtype = resolve_precision(t.precision, device)

    # The model, then what training adds to it, in a fixed order.
    raw_model = (start_model if start_model is not None else GPTModel(cfg)).to(device)
    raw_model.train()
    if t.activation_checkpointing:
        _checkpoint_activations(raw_model)
    if t.fsdp:
        distributed.shard(raw_model, world)  # in place: the parameters become shards
    optimizer = make_optimizer(
        raw_model,
        lr=t.lr,
        weight_decay=t.weight_decay,
        betas=(t.beta1, t.beta2),
        device_type=device.type,
    )
    # Compile the forward *and* the loss as one graph: the fp32 upcast of the (B, T, V)
    # logits then fuses into the cross-entropy kernel instead of being written to memory.
    loss_fn = torch.compile(forward_loss) if t.compile else forward_loss
    train_model: torch.nn.Module = raw_model
    if world.distributed and not t.fsdp:
        train_model = distributed.replicate(raw_model, world, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    if device.type == "cuda":
        # TF32 matmuls for whatever still runs in fp32: ~same accuracy, several times faster.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    step, best_val, best_step, bad_evals = 0, math.inf, None, 0
    sample_gen = torch.Generator(device=device).manual_seed(t.seed)
    if resume_from is not None:
        assert saved_model is not None
        if saved_model.cfg != cfg:
            raise CheckpointError(
                f"{resume_from} holds a different model than the run config describes; resume "
                "with the run's own config.yaml"
            )
        state = read_state(resume_from)
        weights = saved_model.state_dict()  # the tied weight under both names
        distributed.load_full_state(raw_model, optimizer, weights, state["optimizer"], fsdp=t.fsdp)
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        step, best_val = state["step"], state["best_val_loss"]
        best_step, bad_evals = state["best_step"], state["bad_evals"]
        if world.rank == 0:
            torch.set_rng_state(state["rng"]["cpu"])
            if device.type == "cuda" and "cuda" in state["rng"]:
                torch.cuda.set_rng_state(state["rng"]["cuda"], device)
        else:  # other processes' RNGs were not saved: a fresh, deterministic stream each
            torch.manual_seed(t.seed + 1_000_003 * world.rank + step)
        sample_gen.set_state(state["rng"]["sample"])
        log.info("resuming %s at step %d", resume_dir, step)
    elif world.distributed:
        # Same initial weights everywhere (DDP also broadcasts them), then a different
        # dropout stream per process.
        torch.manual_seed(t.seed + world.rank)

    run_dir = Path(out_dir) if out_dir is not None else new_run_dir()
    writing = world.is_main
    if writing:
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in (run_dir / "checkpoints").glob(f".{STEP_PREFIX}*"):  # a killed save
            remove_tree(stale)
        atomic_write_text(run_dir / CONFIG_FILE, run.to_yaml())
    tokens_per_step = t.batch_size * t.grad_accum * cfg.context_length
    log.info(
        "training %s parameters on %s: %s train / %s val tokens; %d steps of %s tokens "
        "(batch %d x accumulation %d x context %d); device %s%s, %s; run dir %s",
        f"{num_parameters(raw_model):,}",
        run.data.source,
        f"{sum(len(a) for a in data.train):,}",
        f"{sum(len(a) for a in data.val):,}",
        max_steps,
        f"{tokens_per_step:,}",
        t.batch_size,
        t.grad_accum,
        cfg.context_length,
        device,
        f" x {world.size} processes" if world.distributed else "",
        str(dtype).removeprefix("torch."),
        run_dir,
    )

    history: list[dict[str, Any]] = []
    pending: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # (step, loss, grad norm)
    last_ckpt: Path | None = None
    interrupted = stopped_early = False
    prompt_ids = (t.sample_prompt and tok.encode(t.sample_prompt)) or data.val[0][:8].astype(
        np.int64
    ).tolist()
    metrics = MetricsLogger(
        run_dir,
        tensorboard=t.tensorboard,
        enabled=writing,
        resume_step=step if resume_from is not None else None,
    )

    def flush(now: float) -> dict[str, Any] | None:
        """Turn the pending per-step losses into one metrics row (one host sync)."""
        nonlocal interval_start, interval_tokens
        if not pending:
            return None
        losses = distributed.mean(torch.stack([p[1] for p in pending]), world).tolist()
        norms = torch.stack([p[2] for p in pending]).tolist()
        for (s, _, _), loss, norm in zip(pending, losses, norms, strict=True):
            if not (math.isfinite(loss) and math.isfinite(norm)):
                what = "loss" if not math.isfinite(loss) else "gradient norm"
                good = f"{last_ckpt}" if last_ckpt else "none was saved yet"
                raise TrainingError(
                    f"the {what} became {loss if what == 'loss' else norm} at step {s}: "
                    f"training stopped. The last good checkpoint is {good}. Resume from it "
                    "(--resume) with a lower training.lr, a smaller training.grad_clip, more "
                    "warmup, or training.precision=fp32"
                )
        elapsed = max(now - interval_start, 1e-9)
        n = len(pending)
        row: dict[str, Any] = {
            "step": pending[-1][0],
            "tokens": pending[-1][0] * tokens_per_step,
            "train_loss": sum(losses) / n,
            "lr": optimizer.param_groups[0]["lr"],
            "grad_norm": sum(norms) / n,
            "tokens_per_sec": interval_tokens / elapsed,
            "step_ms": 1000 * elapsed / n,
        }
        util = mfu(row["tokens_per_sec"], cfg, device, world_size=world.size)
        if util is not None:
            row["mfu"] = util
        if device.type == "cuda":
            row["peak_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        pending.clear()
        interval_start, interval_tokens = time.perf_counter(), 0
        return row

    def record(row: dict[str, Any] | None) -> None:
        if row is not None:
            history.append(row)
            metrics.log(row)

    def run_eval(row: dict[str, Any]) -> None:
        nonlocal best_val, best_step, bad_evals
        losses = {
            split: evaluate(raw_model, loader, batches=t.eval_batches, device=device, dtype=dtype)
            for split, loader in eval_loaders.items()
        }
        row.setdefault("train_loss", losses["train"])
        row.update(
            eval_train_loss=losses["train"],
            val_loss=losses["val"],
            val_ppl=math.exp(min(losses["val"], 50.0)),
        )
        if data.chars_per_val_token:
            # Loss per character makes tokenizers with different token lengths comparable.
            row["val_loss_per_char"] = losses["val"] / data.chars_per_val_token
        if losses["val"] < best_val - t.min_delta:
            # Step 0 (the untrained model) sets the bar but is never saved as "best".
            best_val, best_step, bad_evals = losses["val"], row["step"] or None, 0
        else:
            bad_evals += 1
        log.info(
            "step %d: train loss %.4f, val loss %.4f, val perplexity %.2f%s",
            row["step"],
            losses["train"],
            losses["val"],
            row["val_ppl"],
            f", {row['tokens_per_sec']:.0f} tokens/s" if "tokens_per_sec" in row else "",
        )

    def save(now_step: int) -> Path | None:
        weights, optim_state = distributed.full_state(raw_model, optimizer, fsdp=t.fsdp)
        if not writing:
            return None
        last = history[-1] if history else {}
        state = {
            "step": now_step,
            "tokens_seen": now_step * tokens_per_step,
            "data_position": now_step * t.grad_accum,  # micro-batches consumed, all processes
            "optimizer": optim_state,
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "rng": _rng_state(device, sample_gen),
            "best_val_loss": best_val,
            "best_step": best_step,
            "bad_evals": bad_evals,
        }
        metadata = {
            "step": now_step,
            "tokens_seen": now_step * tokens_per_step,
            "train_loss": last.get("train_loss"),
            "val_loss": last.get("val_loss") if last.get("step") == now_step else None,
            "interrupted": interrupted,
            "run": run.to_dict(),
        }
        path = save_checkpoint(
            run_dir / "checkpoints" / f"{STEP_PREFIX}{now_step:08d}",
            raw_model,
            tok,
            metadata=metadata,
            weights=weights,
            extra=lambda tmp: write_state(tmp, state),
        )
        _prune(run_dir, keep_last=t.keep_last, best_step=best_step)
        return path

    def sample(now_step: int) -> None:
        if t.fsdp or writing:  # FSDP: every process must take part in each forward
            idx = torch.tensor([prompt_ids], dtype=torch.long, device=device)
            out = generate(
                raw_model, idx, t.sample_tokens, temperature=0.8, top_k=200, generator=sample_gen
            )
            if writing:
                log.info("sample at step %d:\n%s\n", now_step, tok.decode(out[0].tolist()))

    interval_start, interval_tokens = time.perf_counter(), 0
    bar = tqdm(
        total=max_steps,
        initial=step,
        desc="training",
        unit="step",
        disable=None if writing else True,
    )
    log_file = log_to_file(run_dir) if writing else contextlib.nullcontext()
    try:
        with log_file, metrics, logging_redirect_tqdm(), _StopSignals() as signals:
            if resume_from is None:
                row = {"step": 0, "tokens": 0}
                run_eval(row)
                record(row)
            interval_start = time.perf_counter()
            while step < max_steps:
                lr = lr_at(step, lr=t.lr, min_lr=t.min_lr, warmup_steps=warmup, max_steps=max_steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                try:
                    loss = _step(
                        train_model,
                        raw_model,
                        optimizer,
                        scaler,
                        train_loader,
                        loss_fn=loss_fn,
                        step=step,
                        world=world,
                        local_accum=local_accum,
                        grad_accum=t.grad_accum,
                        device=device,
                        dtype=dtype,
                        t=t,
                    )
                except torch.OutOfMemoryError:
                    raise TrainingError(
                        f"{device} ran out of memory at step {step} (batch_size="
                        f"{t.batch_size}, context {cfg.context_length}): lower "
                        "training.batch_size (raise training.grad_accum to keep the "
                        "effective batch), set training.activation_checkpointing=true, "
                        "or use a smaller model"
                    ) from None
                step += 1
                pending.append((step, *loss))
                interval_tokens += tokens_per_step
                bar.update(1)
                stop = signals.received is not None
                if world.distributed and step % t.log_interval == 0:
                    # Every process must stop at the same step; agreeing costs a host sync,
                    # so only once per log interval (torchrun signals all processes anyway).
                    stop = distributed.any_true(stop, world, device)
                elif world.distributed:
                    stop = False
                last = step in (max_steps, stop_at) or stop
                do_eval = step % t.eval_interval == 0 or last
                row = None
                if step % t.log_interval == 0 or do_eval or last:
                    row = flush(time.perf_counter())
                if do_eval and row is not None:
                    pause = time.perf_counter()
                    run_eval(row)
                    interval_start += time.perf_counter() - pause
                    if t.early_stopping_patience and bad_evals >= t.early_stopping_patience:
                        stopped_early = True
                        log.warning(
                            "early stopping at step %d: no better validation loss in %d "
                            "evaluations (best %.4f at step %s)",
                            step,
                            bad_evals,
                            best_val,
                            best_step,
                        )
                if row is not None:
                    record(row)
                    bar.set_postfix(loss=f"{row['train_loss']:.3f}", lr=f"{lr:.2e}")
                is_best = do_eval and best_step == step
                if step % ckpt_every == 0 or last or stopped_early or is_best:
                    pause = time.perf_counter()
                    if pending:  # never save weights whose losses were not checked
                        record(flush(time.perf_counter()))
                    last_ckpt = save(step) or last_ckpt
                    interval_start += time.perf_counter() - pause
                if t.sample_interval and (step % t.sample_interval == 0 or step == max_steps):
                    pause = time.perf_counter()
                    sample(step)
                    interval_start += time.perf_counter() - pause
                if stop:
                    interrupted = True
                    log.warning(
                        "stopped at step %d by %s; resume with: scratchgpt train --resume %s",
                        step,
                        signals.received or "another process",
                        run_dir,
                    )
                    break
                if stopped_early or step == stop_at:
                    break
    finally:
        bar.close()

    final = run_checkpoints(run_dir)
    checkpoint = final[-1][1] if final else run_dir
    best = (
        run_dir / "checkpoints" / f"{STEP_PREFIX}{best_step:08d}" if best_step is not None else None
    )
    if writing:
        log.info(
            "checkpoint %s (val loss %.4f, best %.4f at step %s)",
            checkpoint,
            _last_val(history),
            best_val,
            best_step,
        )
    distributed.barrier(world)
    return TrainResult(
        run_dir,
        checkpoint,
        history,
        step,
        max_steps=max_steps,
        interrupted=interrupted,
        stopped_early=stopped_early,
        best_checkpoint=best if best and best.exists() else None,
    )


def forward_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The training objective: next-token cross-entropy of ``model`` on inputs ``x`` and
    targets ``y`` (both (B, T)). The unit that ``training.compile`` compiles."""
    return lm_loss(model(x), y)


def _step(
    train_model: torch.nn.Module,
    raw_model: GPTModel,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    loader: WindowLoader,
    *,
    loss_fn: Any,
    step: int,
    world: distributed.World,
    local_accum: int,
    grad_accum: int,
    device: torch.device,
    dtype: torch.dtype,
    t: TrainConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step over ``grad_accum`` micro-batches; returns (loss, grad norm) as
    device tensors, so nothing waits for the GPU here."""
    total = torch.zeros((), device=device)
    for micro in range(local_accum):
        # Micro-batch numbers are global: process r of W takes its own contiguous share of
        # the step's grad_accum batches, so W processes see what one process accumulating
        # grad_accum batches would.
        x, y = loader.batch(step * grad_accum + world.rank * local_accum + micro)
        if device.type == "cuda":
            x, y = x.pin_memory(), y.pin_memory()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        last = micro == local_accum - 1
        # Gradients are averaged across processes only on the last micro-step: syncing on
        # every one would cost grad_accum all-reduces for the same result.
        with _no_sync(train_model, t, sync=last), autocast(device, dtype):
            loss = loss_fn(train_model, x, y) / local_accum
        scaler.scale(loss).backward()
        total += loss.detach()
    scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
    # Clipping bounds the update when a rare batch gives a huge gradient; the norm is also
    # what the metrics report (inf max_norm: measure without clipping).
    norm = torch.nn.utils.clip_grad_norm_(
        raw_model.parameters(), t.grad_clip if t.grad_clip > 0 else math.inf
    )
    if hasattr(norm, "full_tensor"):  # FSDP2: a sharded (DTensor) norm, made whole
        norm = norm.full_tensor()
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return total, norm.detach().float()


def _no_sync(
    model: torch.nn.Module, t: TrainConfig, *, sync: bool
) -> contextlib.AbstractContextManager[Any]:
    if t.fsdp:
        model.set_requires_gradient_sync(sync)  # type: ignore[operator]
        return contextlib.nullcontext()
    if sync or not hasattr(model, "no_sync"):
        return contextlib.nullcontext()
    return model.no_sync()  # type: ignore[operator]


def _checkpoint_activations(model: GPTModel) -> None:
    """Recompute each block's activations during backward instead of keeping them.

    The block's forward is replaced on the instance, so the module tree (and the state dict)
    is unchanged; memory drops from all blocks' activations to one block's, at the cost of a
    second forward pass per block.
    """
    from torch.utils.checkpoint import checkpoint

    for block in model.trf_blocks:
        forward = block.forward

        def checkpointed(*args: Any, _forward: Any = forward, **kwargs: Any) -> torch.Tensor:
            return checkpoint(_forward, *args, use_reentrant=False, **kwargs)

        block.forward = checkpointed  # type: ignore[method-assign]


def _rng_state(device: torch.device, sample_gen: torch.Generator) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state(), "sample": sample_gen.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _prune(run_dir: Path, *, keep_last: int, best_step: int | None) -> None:
    """Delete old checkpoints: keep the newest ``keep_last`` and the best one."""
    steps = run_checkpoints(run_dir)
    keep = {s for s, _ in steps[-keep_last:]}
    if best_step is not None:
        keep.add(best_step)
        point_symlink(run_dir / "checkpoints" / "best", f"{STEP_PREFIX}{best_step:08d}")
    for s, path in steps:
        if s not in keep:
            remove_tree(path)


def _last_val(history: list[dict[str, Any]]) -> float:
    vals = [row["val_loss"] for row in history if "val_loss" in row]
    return vals[-1] if vals else math.nan
