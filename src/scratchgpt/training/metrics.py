"""What a training run measures and where it writes it: FLOPs, MFU, metrics.jsonl, train.log.

MFU (model FLOPs utilisation, PaLM paper, Chowdhery et al. 2022, appendix B) is the share of
the accelerator's peak arithmetic that the model's own FLOPs use: tokens/s x FLOPs per token /
peak FLOP/s. It compares runs across machines and batch sizes where raw tokens/s cannot. The
peak is looked up per device in a table of the vendors' dense bf16 figures, never assumed to
be an A100's; where the device is unknown (a CPU, Apple's MPS, a GPU not in the table) MFU is
not reported rather than guessed. ``SCRATCHGPT_PEAK_FLOPS`` supplies the figure by hand.

:class:`MetricsLogger` appends one JSON row per call to ``run_dir/metrics.jsonl`` (the file
``scratchgpt plot`` and :func:`scratchgpt.viz.plot_run` read), optionally mirrored to
TensorBoard. The rows the trainer logs:

- every log interval: ``step``, ``tokens`` (seen so far), ``train_loss`` (mean over the
  interval), ``lr``, ``grad_norm``, ``tokens_per_sec``, ``step_ms``, and where known ``mfu``
  and ``peak_mem_mb``; a classifier's runs count ``examples`` and ``examples_per_sec``;
- at an evaluation, also the task's metrics: ``val_loss`` always, ``val_ppl`` for a
  language model, ``val_acc`` for a classifier.

Run directories written before this module have rows with ``step``, ``train_loss``,
``val_loss``, ``val_ppl``, ``lr`` and ``tokens_per_s`` only; the plots read both.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
from tqdm.auto import tqdm

from ..config import GPTConfig
from ..errors import ConfigError, missing_extra
from ..files import atomic_write_text
from ..params import parameter_breakdown

log = logging.getLogger(__name__)

PEAK_FLOPS_ENV = "SCRATCHGPT_PEAK_FLOPS"

# Peak dense (no 2:4 sparsity) bf16 tensor-core FLOP/s, from the vendors' datasheets; where a
# datasheet gives only the sparse figure ("with sparsity", marked *), the dense one is half.
# For the GPUs without bf16 tensor cores (V100, T4) the fp16 peak: bf16 there is emulated
# or absent, so their MFU is against a peak a bf16 run cannot reach, and reads low.
#
# torch.cuda.get_device_name() returns e.g. "NVIDIA H100 80GB HBM3" (SXM), "NVIDIA H100 PCIe",
# "NVIDIA H100 NVL", "NVIDIA A100-SXM4-40GB", "NVIDIA A10G", "Tesla V100-SXM2-16GB". A name
# is matched against the patterns in order, first match wins; each pattern is a whole model
# name (\b on both sides), so "A10" never matches "A100" or "A10G", nor "L4" "L40S", and the
# form-factor variants come before their family.
_PEAK_FLOPS: tuple[tuple[str, float], ...] = (
    # Hopper. https://www.nvidia.com/en-us/data-center/h100/ (datasheet): bf16 1,979* (SXM),
    # 1,513* (PCIe), 1,671* (NVL) TFLOPS.
    (r"\bH100\b.*\bPCIe\b", 756e12),
    (r"\bH100\b.*\bNVL\b", 835e12),
    (r"\bH100\b", 989e12),  # SXM5, and the HBM3 names that are SXM ("H100 80GB HBM3")
    # https://www.nvidia.com/en-us/data-center/h200/: bf16 1,979* (SXM), 1,671* (NVL) TFLOPS.
    (r"\bH200\b.*\bNVL\b", 835e12),
    (r"\bH200\b", 989e12),
    # Blackwell. https://www.nvidia.com/en-us/data-center/hgx/ (HGX B200): bf16 4.5* PFLOPS
    # per GPU.
    (r"\bB200\b", 2250e12),
    # Grace Hopper: the same Hopper GPU at the SXM figure (GH200 datasheet: 1,979* TFLOPS).
    (r"\bGH200\b", 989e12),
    # Ampere. https://www.nvidia.com/en-us/data-center/a100/ (SXM4 and PCIe alike): bf16
    # 312 / 624* TFLOPS.
    (r"\bA100\b", 312e12),
    # https://www.nvidia.com/en-us/data-center/products/a10-gpu/: bf16 125 / 250* TFLOPS.
    # AWS's A10G is a different part with lower tensor throughput and no NVIDIA datasheet:
    # not listed, rather than guessed (set SCRATCHGPT_PEAK_FLOPS for it).
    (r"\bA10\b", 125e12),
    # A40 datasheet: bf16 149.7 / 299.4* TFLOPS (FP32 accumulate).
    (r"\bA40\b", 149.7e12),
    # RTX A6000 datasheet: 309.7* TFLOPS tensor.
    (r"\bRTX A6000\b", 154.8e12),
    # Ada. https://www.nvidia.com/en-us/data-center/l4/: bf16 242* TFLOPS;
    # https://www.nvidia.com/en-us/data-center/l40s/: bf16 362.05 / 733* TFLOPS;
    # https://www.nvidia.com/en-us/data-center/l40/: bf16 181.05 / 362.1* TFLOPS.
    (r"\bL4\b", 121e12),
    (r"\bL40S\b", 362e12),
    (r"\bL40\b", 181e12),
    # GeForce, from the appendix tables of NVIDIA's "Ada GPU Architecture" (RTX 4090:
    # 165.2 / 330.4*) and "Ampere GA102 GPU Architecture" (RTX 3090: 71 / 142*) whitepapers,
    # "peak BF16 tensor TFLOPS with FP32 accumulate", which is what a PyTorch bf16 matmul does.
    (r"\bRTX 4090\b", 165.2e12),
    (r"\bRTX 3090\b(?! Ti)", 71e12),  # the 3090 Ti is a later, faster part
    # Volta and Turing: fp16 tensor-core peaks. https://www.nvidia.com/en-us/data-center/v100/:
    # 125 TFLOPS (SXM2), 112 (PCIe), 130 (V100S); https://www.nvidia.com/en-us/data-center/tesla-t4/:
    # 65 TFLOPS fp16 mixed precision.
    (r"\bV100S\b", 130e12),
    (r"\bV100\b.*\bPCIE\b", 112e12),
    (r"\bV100\b", 125e12),
    (r"\bT4\b", 65e12),
)


def peak_flops_for_name(name: str) -> float | None:
    """The dense bf16 peak FLOP/s of the GPU called ``name`` (as CUDA reports it), or None."""
    for pattern, flops in _PEAK_FLOPS:
        if re.search(pattern, name, flags=re.IGNORECASE):
            return flops
    return None


def _peak_flops_from_env() -> float | None:
    value = os.environ.get(PEAK_FLOPS_ENV)
    if value is None or not value.strip():
        return None
    try:
        flops = float(value)
    except ValueError:
        flops = math.nan
    if not (math.isfinite(flops) and flops > 0):
        raise ConfigError(
            f"{PEAK_FLOPS_ENV}={value!r}: must be the device's peak FLOP/s as a positive "
            "number, e.g. 989e12 for an H100 SXM"
        )
    return flops


def peak_flops(device: torch.device | str) -> float | None:
    """Peak dense bf16 FLOP/s of ``device``: $SCRATCHGPT_PEAK_FLOPS if set, else the table.

    None for a CPU, MPS or a GPU the table does not know: MFU is then not reported.
    """
    override = _peak_flops_from_env()
    if override is not None:
        return override
    device = torch.device(device)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    flops = peak_flops_for_name(name)
    if flops is None:
        log.info("no peak FLOP/s known for %r: MFU not reported (set %s)", name, PEAK_FLOPS_ENV)
    return flops


def flops_per_token(cfg: GPTConfig) -> float:
    """Training FLOPs per token: 6 N + 12 n_layers T C (PaLM appendix B; nanoGPT's estimate).

    6 N: each parameter that multiplies an activation costs a multiply and an add (2 FLOPs)
    forward and twice that backward (the gradients of the input and of the weight). N counts
    those parameters only: the embedding tables are lookups, not matrix products, so the
    position table is left out, and so is the token table, except that the output head's
    V x C matrix is always in (it is the token table when the weights are tied, a separate
    one otherwise: the same FLOPs either way), with the ``vocab_multiple`` padding rows the
    head really computes (nanoGPT's 50,304 counts them too). 12 L T C: attention's QK^T and
    AV products, 2 x 2 T C forward per layer and token, x 3 with the backward, over the full
    T (the causal mask's skipped half is not subtracted, as PaLM and nanoGPT count it).
    """
    breakdown = parameter_breakdown(cfg)
    embeddings = breakdown.find("embeddings").count
    head_listed = breakdown.find("output head").count  # 0 when tied (counted as the embedding)
    n = breakdown.count - embeddings - head_listed + cfg.padded_vocab_size * cfg.emb_dim
    return 6.0 * n + 12.0 * cfg.n_layers * cfg.context_length * cfg.emb_dim


def mfu(
    tokens_per_sec: float,
    cfg: GPTConfig,
    device: torch.device | str,
    *,
    world_size: int = 1,
) -> float | None:
    """Model FLOPs utilisation in [0, 1]: one device's share of ``tokens_per_sec`` (the
    throughput of all ``world_size`` devices together) times the FLOPs per token, over the
    device's peak. None where the peak is unknown (see :func:`peak_flops`)."""
    if world_size < 1:
        raise ValueError(f"world_size={world_size}: must be >= 1")
    peak = peak_flops(device)
    if peak is None:
        return None
    return tokens_per_sec / world_size * flops_per_token(cfg) / peak


# --- metrics.jsonl and TensorBoard --------------------------------------------------------------


def _kept_lines(path: Path, resume_step: int | None) -> tuple[list[str], int]:
    """The lines of ``path`` worth keeping, and how many were dropped: rows logged after
    ``resume_step`` (by a run that died after its last checkpoint: the resumed run logs those
    steps again) and a last line cut short by the crash (no newline, not JSON)."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    dropped = 0
    if lines and not text.endswith("\n"):
        try:
            json.loads(lines[-1])
        except json.JSONDecodeError:
            lines.pop()
            dropped += 1
    if resume_step is None:
        return lines, dropped
    kept = []
    for line in lines:
        try:
            step = json.loads(line).get("step") if line.strip() else None
        except (json.JSONDecodeError, AttributeError):
            step = None
        if isinstance(step, (int, float)) and step > resume_step:
            dropped += 1
        else:
            kept.append(line)
    return kept, dropped


class MetricsLogger:
    """Appends rows to ``run_dir/metrics.jsonl``, one JSON object per line, flushed at once
    (a crash loses nothing logged); with ``tensorboard=True`` also every numeric field as a
    scalar under ``run_dir/tensorboard``, at the row's ``step``.

    ``resume_step``: the step of the checkpoint a run resumes from; rows after it, left by the
    run that crashed, are dropped first (from TensorBoard too) so no step appears twice.
    ``enabled=False`` (every DDP rank but 0) makes every method a no-op and writes nothing.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        tensorboard: bool = False,
        enabled: bool = True,
        resume_step: int | None = None,
    ) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self.enabled = enabled
        self._file: Any = None
        self._writer: Any = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file():
            kept, dropped = _kept_lines(self.path, resume_step)
            if dropped:
                log.info(
                    "%s: dropped %d row(s) logged after step %s", self.path, dropped, resume_step
                )
                atomic_write_text(self.path, "".join(line + "\n" for line in kept))
        if tensorboard:
            self._writer = _summary_writer(
                self.path.parent / "tensorboard",
                purge_step=None if resume_step is None else resume_step + 1,
            )
        self._file = self.path.open("a", encoding="utf-8")

    def log(self, row: Mapping[str, Any]) -> None:
        """Append ``row`` (plain numbers and strings; ``step`` an int) and flush it."""
        if not self.enabled or self._file is None:
            return
        self._file.write(json.dumps(dict(row)) + "\n")
        self._file.flush()
        if self._writer is not None:
            step = row.get("step")
            for key, value in row.items():
                numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
                if numeric and key != "step":
                    self._writer.add_scalar(key, value, global_step=step)
            self._writer.flush()

    def close(self) -> None:
        """Close the file and the TensorBoard writer (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _summary_writer(log_dir: Path, *, purge_step: int | None) -> Any:
    try:
        # Imported here: TensorBoard is an optional extra, and importing it is slow.
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise missing_extra(
            "tensorboard", "tensorboard", "training.tensorboard (turn it off, or install it)"
        ) from exc
    # purge_step hides the events a crashed run wrote at or after it, as the JSONL is cut.
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


# --- progress -----------------------------------------------------------------------------------

# A slow evaluation says how far it is: first after this many seconds, then every EVERY.
EVAL_PROGRESS_AFTER = 2.0
EVAL_PROGRESS_EVERY = 10.0


class EvalProgress:
    """How far one evaluation is: a tqdm bar on a terminal; elsewhere (a log file, a pipe),
    a log line after :data:`EVAL_PROGRESS_AFTER` seconds and every
    :data:`EVAL_PROGRESS_EVERY` after, so a long evaluation never looks like a hang."""

    def __init__(self, total: int, *, step: int, enabled: bool = True) -> None:
        self.total, self.step, self.enabled, self.done = total, step, enabled, 0
        self.bar = tqdm(
            total=total,
            desc=f"evaluating step {step}",
            unit="batch",
            leave=False,
            disable=None if enabled else True,  # None: off when stderr is not a terminal
        )
        self.started = self.logged = time.perf_counter()

    def tick(self) -> None:
        """One more batch done."""
        self.done += 1
        self.bar.update(1)
        now = time.perf_counter()
        due = EVAL_PROGRESS_AFTER if self.logged == self.started else EVAL_PROGRESS_EVERY
        if self.enabled and self.bar.disable and now - self.logged >= due:
            left = (now - self.started) / self.done * (self.total - self.done)
            log.info(
                "evaluating step %d: %d/%d batches, about %.0f s left",
                *(self.step, self.done, self.total, left),
            )
            self.logged = now

    def close(self) -> None:
        self.bar.close()


# --- train.log ---------------------------------------------------------------------------------


@contextlib.contextmanager
def log_to_file(run_dir: Path) -> Iterator[Path]:
    """Copy the "scratchgpt" logger's records to ``run_dir/train.log`` (appended, with
    timestamps) for the duration of the block; yields the file's path.

    The file gets what the logger lets through. When logging is not configured at all (a
    library call: the root logger has no handlers) the logger is opened to INFO for the
    block, so the file has the progress lines the CLI would print; with a configured root
    (the CLI, ``-q``) the levels are left alone, so nothing new reaches the console.
    """
    path = Path(run_dir) / "train.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("scratchgpt")
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    old_level = logger.level
    if not logging.getLogger().handlers and logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield path
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(old_level)
