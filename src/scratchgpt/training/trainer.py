"""The training loop: a task and a run config in, checkpoints and metrics out, resumable at
any step.

:class:`Trainer` is torchtitan's shape: small named methods over one state object
(:class:`TrainState`), each fitting on a screen. It applies everything the model must not
know about in a fixed order, in :meth:`Trainer.setup`: device, activation checkpointing,
sharding (FSDP2), compilation, then DDP; precision is an autocast around the forward pass. It
keeps the raw model for saving, so checkpoints never carry ``_orig_mod.``, ``module.`` or
``_checkpoint_wrapped_module.`` prefixes. What differs between kinds of training (data, loss,
metrics, what a checkpoint holds) is the :class:`~.task.Task` it is handed.

The loop follows Raschka, "Build a LLM from Scratch" ch. 5 (evaluate every few steps, print a
sample) with nanoGPT's production habits: a step-based warmup + cosine schedule, gradient
accumulation, clipping, fused AdamW, bf16 autocast. Never losing work:

- a checkpoint is a complete directory written beside its final name and renamed into place
  (:func:`scratchgpt.files.atomic_directory`), so killing the process at any instant
  leaves the previous checkpoint intact; the last K are kept, plus the best by validation loss.
  One is due every ``checkpoint_interval`` steps or ``checkpoint_minutes`` of wall-clock time,
  at a new best validation loss and at the end (:mod:`.checkpointer`); on a GPU it is copied
  to CPU memory at the step and written by a background thread while training goes on;
- it holds the full state (weights, AdamW moments, step, data position, RNG states, loss
  scaler), and a batch is a pure function of its number, so a resumed run repeats the
  uninterrupted one exactly;
- SIGINT / SIGTERM stop at the next safe point and save (:mod:`.signals`); a non-finite loss
  stops the run naming the step, without saving the poisoned weights.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ..checkpoint import run_checkpoints
from ..device import autocast, resolve_precision
from ..errors import ConfigError, TrainingError
from ..files import atomic_write_text
from ..model import eval_mode, num_parameters
from . import distributed
from .checkpointer import CheckpointSchedule, CheckpointWriter, write_checkpoint
from .metrics import EvalProgress, MetricsLogger, log_to_file, peak_flops
from .optim import build_optimizer, check_optimizer_state, group_lr, run_length
from .runs import CONFIG_FILE, TrainResult, remove_stale_saves, step_dir
from .signals import StopSignals
from .state import TrainState, read_state, rng_state, set_rng_state, snapshot, snapshot_weights
from .task import Batch, EvaluationStopped, RunSpec, Task

log = logging.getLogger(__name__)


class _StepAbandoned(Exception):  # noqa: N818 (control flow, not an error)
    """A second stop signal arrived between two micro-batches of a step."""


class Trainer:
    """Trains ``task``'s model as ``run.training`` says, writing into ``run_dir``.

    ``resume_from`` is a checkpoint of this run to continue from; ``restart`` starts a run
    directory over (its metrics rows are dropped); ``stop_at`` saves and returns at that
    step. Call :meth:`run`.
    """

    def __init__(
        self,
        task: Task,
        run: RunSpec,
        *,
        run_dir: Path,
        device: torch.device,
        world: distributed.World,
        resume_from: Path | None = None,
        restart: bool = False,
        stop_at: int | None = None,
    ) -> None:
        self.task, self.run_config, self.config = task, run, run.training
        self.run_dir, self.device, self.world = run_dir, device, world
        self.writing = world.is_main  # process 0 alone writes files and logs progress
        self.stop_at = stop_at
        self.state = TrainState()
        self.history: list[dict[str, Any]] = []
        self.pending: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # (step, loss, norm)
        self.saved_step: int | None = None  # the step of the latest save (perhaps in flight)
        self.writer = CheckpointWriter(background=self.config.checkpoint_async, device=device)
        self.signals = StopSignals(lost=self._lost)
        self.interval_start, self.interval_seen = time.perf_counter(), 0
        self.setup()
        t = self.config  # several processes read the clock where they agree on stopping
        self.schedule = CheckpointSchedule(
            steps=t.checkpoint_interval,
            minutes=t.checkpoint_minutes,
            world=world,
            device=device,
            agree_every=t.log_interval,
        )
        if resume_from is not None:
            self.resume(resume_from)
        elif world.distributed:
            # Same initial weights everywhere (DDP also broadcasts them), then a different
            # dropout stream per process.
            torch.manual_seed(self.config.seed + world.rank)
        # restart: every row the killed run logged goes (those after step -1)
        resume_step = self.state.step if resume_from is not None else -1 if restart else None
        self.metrics = MetricsLogger(
            run_dir,
            tensorboard=self.config.tensorboard,
            enabled=self.writing,
            resume_step=resume_step,
        )

    # --- setup ----------------------------------------------------------------------------

    def setup(self) -> None:
        """Seed, size the run, build the model and apply what training adds, in order."""
        t, world = self.config, self.world
        torch.manual_seed(t.seed)
        if t.grad_accum % world.size:
            raise ConfigError(
                f"training.grad_accum={t.grad_accum} must be a multiple of the {world.size} "
                f"processes (each takes grad_accum / {world.size} micro-batches per step)"
            )
        self.local_accum = t.grad_accum // world.size
        self.max_steps, self.warmup = run_length(t, batches_per_epoch=self.task.batches_per_epoch)
        self.dtype = resolve_precision(t.precision, self.device)
        self.model = self.task.build_model().to(self.device)  # the raw model: what is saved
        self.model.train()
        self.train_model, self.loss_fn = self._wrap(self.model)
        self.optimizer = build_optimizer(self.model, t, device_type=self.device.type)
        # Each group's peak rate (lr, or muon_lr for Muon's), taken before a resume loads
        # the saved, scheduled rates over them.
        self.peak_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        self.sample_gen = torch.Generator(device=self.device).manual_seed(t.seed)
        self.peak_flops = peak_flops(self.device) if self.task.flops_per_unit else None
        if self.device.type == "cuda":
            # TF32 matmuls for whatever still runs in fp32: ~same accuracy, several times faster.
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

    def _wrap(self, model: torch.nn.Module) -> tuple[torch.nn.Module, Any]:
        """Activation checkpointing, FSDP (both in place), compile, DDP: the model the steps
        run, and the loss function (compiled with the forward, as one graph)."""
        t = self.config
        if t.activation_checkpointing:
            distributed.checkpoint_activations(model)
        if t.fsdp:
            distributed.shard(model, self.world)  # in place: the parameters become shards
        # Compiling the forward *and* the loss as one graph fuses the fp32 upcast of the
        # logits into the cross-entropy kernel instead of writing it to memory.
        loss_fn = torch.compile(self.task.loss) if t.compile else self.task.loss
        if self.world.distributed and not t.fsdp:
            return distributed.replicate(model, self.world, self.device), loss_fn
        return model, loss_fn

    def resume(self, checkpoint: Path) -> None:
        """Load the weights, optimiser, scaler, RNGs and loop state of a checkpoint."""
        t, world = self.config, self.world
        saved = read_state(checkpoint)
        check_optimizer_state(self.optimizer, saved["optimizer"])
        weights = self.task.load(checkpoint)
        distributed.load_full_state(
            self.model, self.optimizer, weights, saved["optimizer"], fsdp=t.fsdp
        )
        if saved.get("scaler"):
            self.scaler.load_state_dict(saved["scaler"])
        self.state = s = TrainState.from_dict(saved, self.task.unit)
        if world.rank == 0:
            set_rng_state(saved["rng"], self.device)
        else:  # other processes' RNGs were not saved: a fresh, deterministic stream each
            torch.manual_seed(t.seed + 1_000_003 * world.rank + s.step)
        self.sample_gen.set_state(saved["rng"]["sample"])
        self.writer.landed, self.saved_step = (s.step, checkpoint), s.step
        log.info("resuming %s at step %d", self.run_dir, s.step)

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> TrainResult:
        """Train to the end (max_steps, stop_at, early stopping or a signal); save; return."""
        start_step, start_val = self.state.step, self.state.last_val
        if self.writing:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_saves(self.run_dir)
            atomic_write_text(self.run_dir / CONFIG_FILE, self.run_config.to_yaml())
        disable = None if self.writing else True
        self.bar = tqdm(
            total=self.max_steps,
            initial=self.state.step,
            desc="training",
            unit="step",
            disable=disable,
        )
        log_file = log_to_file(self.run_dir) if self.writing else contextlib.nullcontext()
        try:
            with log_file, self.metrics, logging_redirect_tqdm(), self.signals:
                self._log_start()
                self.schedule.saved()  # the clock starts with the training
                with self.writer.landing():  # the last write lands before the run returns
                    if self.state.step == 0 and self.state.last_val is None:
                        self._first_evaluation()
                    while not self._finished():
                        if self.train_step():
                            self.end_of_step()
                        else:  # abandoned by a second signal: save the last completed step
                            self.save_checkpoint()
                if self.state.interrupted:
                    log.warning(
                        "stopped at step %d by %s; resume with: %s",
                        self.state.step,
                        self.signals.received or "another process",
                        self.task.hints(self.run_dir)[1],
                    )
        finally:
            self.bar.close()
        return self._result(start_step, start_val)

    def _finished(self) -> bool:
        s = self.state
        done = s.step >= self.max_steps or s.step == self.stop_at
        return done or s.interrupted or s.stopped_early

    def _first_evaluation(self) -> None:
        """Step 0: the untrained model's losses set the bar for "best" and early stopping."""
        row: dict[str, Any] = {"step": 0, self.task.unit: 0}
        if self.evaluate(row):
            self.record(row)
        else:
            self.state.interrupted = True
            self.save_checkpoint()
        self.interval_start = time.perf_counter()

    def train_step(self) -> bool:
        """One optimiser step over ``grad_accum`` micro-batches; False if a second stop signal
        abandoned it (gradients dropped, RNGs put back: the state is the last step's)."""
        t, s = self.config, self.state
        for group, peak in zip(self.optimizer.param_groups, self.peak_lrs, strict=True):
            group["lr"] = group_lr(
                s.step, t, peak=peak, warmup_steps=self.warmup, max_steps=self.max_steps
            )
        rng = None if self.world.distributed else rng_state(self.device)
        try:
            loss, seen = self.forward_backward(s.step)
            norm = self._optimizer_step()
        except _StepAbandoned:
            self.optimizer.zero_grad(set_to_none=True)
            set_rng_state(rng, self.device)
            s.interrupted = True
            log.warning("step %d abandoned; saving step %d", s.step + 1, s.step)
            return False
        except torch.OutOfMemoryError:
            raise TrainingError(
                f"{self.device} ran out of memory at step {s.step} (batch_size="
                f"{t.batch_size}): lower training.batch_size (raise training.grad_accum to "
                "keep the effective batch), set training.activation_checkpointing=true, or "
                "use a smaller model"
            ) from None
        s.step += 1
        s.seen += seen
        self.interval_seen += seen
        self.pending.append((s.step, loss, norm))
        self.bar.update(1)
        return True

    def forward_backward(self, step: int) -> tuple[torch.Tensor, int]:
        """Forward and backward over this process's micro-batches of ``step``: the summed
        loss as a device tensor (nothing waits for the GPU here), and the units seen."""
        t, world = self.config, self.world
        total, seen = torch.zeros((), device=self.device), 0
        for micro in range(self.local_accum):
            if self.signals.urgent and not world.distributed:
                raise _StepAbandoned
            # Micro-batch numbers are global: process r of W takes its own contiguous share
            # of the step's grad_accum batches, so W processes see what one process
            # accumulating grad_accum batches would.
            index = step * t.grad_accum + world.rank * self.local_accum + micro
            batch = self._to_device(self.task.batch(index))
            seen += batch[-1].numel()
            # Gradients are averaged across processes only on the last micro-step: syncing
            # on every one would cost grad_accum all-reduces for the same result.
            sync = micro == self.local_accum - 1
            with self._no_sync(sync=sync), autocast(self.device, self.dtype):
                loss = self.loss_fn(self.train_model, batch) / self.local_accum
            self.scaler.scale(loss).backward()
            total += loss.detach()
        return total, seen * world.size

    def _optimizer_step(self) -> torch.Tensor:
        """Clip, step, zero the gradients; the gradient norm before clipping."""
        self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
        # Clipping bounds the update when a rare batch gives a huge gradient; the norm is also
        # what the metrics report (inf max_norm: measure without clipping).
        clip = self.config.grad_clip if self.config.grad_clip > 0 else math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        if hasattr(norm, "full_tensor"):  # FSDP2: a sharded (DTensor) norm, made whole
            norm = norm.full_tensor()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return norm.detach().float()

    def end_of_step(self) -> None:
        """Log, evaluate, save and sample as this step calls for; decide whether to stop."""
        t, s = self.config, self.state
        stop = self._stop_requested()
        last = s.step in (self.max_steps, self.stop_at) or stop
        row = None
        if s.step % t.log_interval == 0 or s.step % t.eval_interval == 0 or last:
            row = self.flush_metrics()
        evaluated = False
        if row is not None and (s.step % t.eval_interval == 0 or last) and not stop:
            evaluated = self.evaluate(row)
            stop = stop or not evaluated  # abandoned: a signal came during it
        if row is not None:
            self.record(row)
            self.bar.set_postfix(loss=f"{row['train_loss']:.3f}", lr=f"{row['lr']:.2e}")
        s.interrupted = stop
        is_best = evaluated and s.best_step == s.step
        due = self.schedule.due(s.step)  # on every step: processes may have to agree
        if due or last or stop or s.stopped_early or is_best:
            self.save_checkpoint()
        else:
            self.writer.check()  # a background write that failed stops the run now
        if not stop:
            self.maybe_sample()

    def _stop_requested(self) -> bool:
        stop = self.signals.received is not None
        if not self.world.distributed:
            return stop
        if self.state.step % self.config.log_interval:
            return False
        # Every process must stop at the same step; agreeing costs a host sync, so only once
        # per log interval (torchrun signals all processes anyway).
        return distributed.any_true(stop, self.world, self.device)

    # --- metrics and evaluation -----------------------------------------------------------

    def flush_metrics(self) -> dict[str, Any] | None:
        """Turn the pending per-step losses into one metrics row (one host sync), refusing
        to go on from a non-finite loss or gradient."""
        if not self.pending:
            return None
        losses = distributed.mean(torch.stack([p[1] for p in self.pending]), self.world).tolist()
        norms = torch.stack([p[2] for p in self.pending]).tolist()
        for (step, _, _), loss, norm in zip(self.pending, losses, norms, strict=True):
            if not (math.isfinite(loss) and math.isfinite(norm)):
                what, value = ("loss", loss) if not math.isfinite(loss) else ("gradient norm", norm)
                raise TrainingError(
                    f"the {what} became {value} at step {step}: training stopped. The last good "
                    f"checkpoint is {self.writer.newest or 'none was saved yet'}. Resume from "
                    "it (--resume) with a lower training.lr, a smaller training.grad_clip, more "
                    "warmup, or training.precision=fp32"
                )
        now = time.perf_counter()
        elapsed, n, unit = max(now - self.interval_start, 1e-9), len(self.pending), self.task.unit
        row: dict[str, Any] = {
            "step": self.pending[-1][0],
            unit: self.state.seen,
            "train_loss": sum(losses) / n,
            "lr": self.optimizer.param_groups[0]["lr"],
            "grad_norm": sum(norms) / n,
            f"{unit}_per_sec": self.interval_seen / elapsed,
            "step_ms": 1000 * elapsed / n,
        }
        if self.peak_flops and self.task.flops_per_unit:
            # MFU: one device's share of the throughput x FLOPs per unit, over its peak.
            rate = row[f"{unit}_per_sec"] / self.world.size
            row["mfu"] = rate * self.task.flops_per_unit / self.peak_flops
        if self.device.type == "cuda":
            row["peak_mem_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        self.pending.clear()
        self.interval_start, self.interval_seen = now, 0
        return row

    def record(self, row: dict[str, Any] | None) -> None:
        if row is not None:
            self.history.append(row)
            self.metrics.log(row)

    def evaluate(self, row: dict[str, Any]) -> bool:
        """Add the task's evaluation metrics to ``row`` and update the best / early-stopping
        state; False (nothing added) if a stop signal abandoned the evaluation."""
        t, s = self.config, self.state
        progress = EvalProgress(self.task.eval_size, step=s.step, enabled=self.writing)
        try:
            with (
                self._paused(),
                torch.no_grad(),
                eval_mode(self.model),
                autocast(self.device, self.dtype),
            ):
                metrics = self.task.evaluate(
                    self.model, functools.partial(self._feed, progress=progress)
                )
        except EvaluationStopped:
            log.warning("evaluation at step %d abandoned (%s)", s.step, self.signals.received)
            return False
        finally:
            progress.close()
        if "eval_train_loss" in metrics:
            row.setdefault("train_loss", metrics["eval_train_loss"])  # step 0 has no other
        row.update(metrics)
        s.observe(metrics["val_loss"], min_delta=t.min_delta, patience=t.early_stopping_patience)
        if s.stopped_early:
            log.warning(
                "early stopping at step %d: no better validation loss in %d evaluations (best "
                "%.4f at step %s)",
                *(s.step, s.bad_evals, s.best_val, s.best_step),
            )
        shown = {"train_loss": row.get("train_loss"), **metrics}
        text = ", ".join(
            f"{k.replace('_', ' ')} {v:.4f}" for k, v in shown.items() if v is not None
        )
        rate = row.get(f"{self.task.unit}_per_sec")
        speed = f", {rate:.0f} {self.task.unit}/s" if rate is not None else ""
        log.info("step %d: %s%s", s.step, text, speed)
        return True

    def _feed(self, batches: Iterable[Batch], *, progress: EvalProgress) -> Iterator[Batch]:
        """The evaluation loop the task runs its batches through: to the device, progress,
        and the stop check between batches (one process only: with several, every process
        must run the same forwards, and they agree to stop at a log interval instead)."""
        for batch in batches:
            if self.signals.received and not self.world.distributed:
                raise EvaluationStopped
            yield self._to_device(batch)
            progress.tick()

    # --- checkpoints and samples ----------------------------------------------------------

    def save_checkpoint(self) -> None:
        """Save the current step (weights checked finite first); keep the last K and the best.

        With ``checkpoint_async`` the state is copied to CPU memory here, at the step
        boundary, and written by a background thread while training goes on; otherwise it
        is written before this returns. Either way one write is in flight at most.
        """
        s, t = self.state, self.config
        if self.saved_step == s.step:
            return
        if self.pending:  # never save weights whose losses were not checked
            self.record(self.flush_metrics())
        with self._paused():
            self.writer.wait(before=s.step)  # the previous write first: one copy in memory
            weights, optim_state = distributed.full_state(self.model, self.optimizer, fsdp=t.fsdp)
            self.saved_step = s.step
            self.schedule.saved()
            if not self.writing:
                return
            last = self.history[-1] if self.history else {}
            state = {
                **s.to_dict(self.task.unit),
                "data_position": s.step * t.grad_accum,  # micro-batches consumed, all processes
                "optimizer": optim_state,
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                "rng": {**rng_state(self.device), "sample": self.sample_gen.get_state()},
            }
            metadata = {
                "step": s.step,
                f"{self.task.unit}_seen": s.seen,
                "train_loss": last.get("train_loss"),
                "val_loss": last.get("val_loss") if last.get("step") == s.step else None,
                "interrupted": s.interrupted,
                "run": self.run_config.to_dict(),
            }
            if self.writer.background:
                # Copies, taken now: the next steps change weights and AdamW moments in place.
                # (With FSDP the gathered state is copied too: some of it is the live tensors.)
                weights = snapshot_weights(self.model) if weights is None else snapshot(weights)
                state = snapshot(state)
            write = functools.partial(
                write_checkpoint, self.task, self.model, self.run_dir, s.step, weights=weights,
                state=state, metadata=metadata, keep_last=t.keep_last, best_step=s.best_step,
            )  # fmt: skip
            self.writer.submit(s.step, step_dir(self.run_dir, s.step), write)

    def maybe_sample(self) -> None:
        """Log a sample every ``sample_interval`` steps and at the end."""
        t, s = self.config, self.state
        if not t.sample_interval or (s.step % t.sample_interval and s.step != self.max_steps):
            return
        if t.fsdp or self.writing:  # FSDP: every process must take part in each forward
            with self._paused():
                text = self.task.sample(self.model, self.sample_gen)
            if text is not None and self.writing:
                log.info("sample at step %d:\n%s\n", s.step, text)

    # --- helpers --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _paused(self) -> Iterator[None]:
        """Leave the enclosed time (evaluation, saving, sampling) out of the throughput."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.interval_start += time.perf_counter() - start

    def _to_device(self, batch: Batch) -> Batch:
        if self.device.type == "cuda":
            batch = tuple(x.pin_memory() for x in batch)
        return tuple(x.to(self.device, non_blocking=True) for x in batch)

    def _no_sync(self, *, sync: bool) -> contextlib.AbstractContextManager[Any]:
        if self.config.fsdp:
            self.train_model.set_requires_gradient_sync(sync)  # type: ignore[operator]
            return contextlib.nullcontext()
        if sync or not hasattr(self.train_model, "no_sync"):
            return contextlib.nullcontext()
        return self.train_model.no_sync()  # type: ignore[operator]

    def _lost(self) -> str:
        """What quitting now loses, and where the last checkpoint is."""
        s, landed, unlanded = self.state, self.writer.landed, self.writer.unlanded
        cut = f" (the write of step {unlanded[0]} is cut short)" if unlanded else ""
        if landed is None:
            return (
                f"No checkpoint was saved yet{cut}: {s.step} trained step(s) are lost; "
                f"`--resume {self.run_dir}` starts the run over from step 0"
            )
        return (
            f"The steps after {landed[0]} (up to {s.step} and the one in progress) are "
            f"lost{cut}; the last checkpoint is {landed[1]}"
        )

    def _log_start(self) -> None:
        t = self.config
        log.info(
            "training %s parameters on %s; %d steps of %d x %d batches; device %s%s, %s; "
            "run dir %s",
            f"{num_parameters(self.model):,}",
            self.task.describe(),
            self.max_steps,
            t.grad_accum,
            t.batch_size,
            self.device,
            f" x {self.world.size} processes" if self.world.distributed else "",
            str(self.dtype).removeprefix("torch."),
            self.run_dir,
        )

    def _result(self, start_step: int, start_val: float | None) -> TrainResult:
        s = self.state
        final = run_checkpoints(self.run_dir, format=None)
        best = step_dir(self.run_dir, s.best_step) if s.best_step is not None else None
        if self.writing:
            log.info(
                "checkpoint %s (val loss %s, best %.4f at step %s)",
                final[-1][1] if final else None,
                f"{s.last_val:.4f}" if s.last_val is not None else "none",
                s.best_val,
                s.best_step,
            )
        distributed.barrier(self.world)
        use, resume = self.task.hints(self.run_dir)
        return TrainResult(
            self.run_dir,
            final[-1][1] if final else self.run_dir,
            self.history,
            s.step,
            max_steps=self.max_steps,
            interrupted=s.interrupted,
            stopped_early=s.stopped_early,
            best_checkpoint=best if best and best.exists() else None,
            start_step=start_step,
            start_val_loss=start_val,
            use_hint=use,
            resume_command=resume,
        )
