"""Training throughput: tokens/s, step time, peak memory and MFU of one optimiser step, ours
against karpathy/nanoGPT on the same shape, batch, precision and loop.

A step is what training repeats: forward and backward over ``--grad-accum`` micro-batches,
gradient clipping, the AdamW update (fused on CUDA) and zeroing the gradients. On CUDA it
runs under bf16 autocast with TF32 matmuls, on the CPU in fp32 (as the trainer does). The
batches are random tokens made before the clock starts, the same for both; ``--warmup``
steps (where torch.compile compiles) are not timed, and nothing syncs with the host inside
the timed steps: one ``torch.cuda.synchronize`` after each window of ``--steps`` steps. The
best of ``--repeats`` windows counts (the median is given too): on a shared machine the
slower windows measure the neighbours.

- ``ours``: scratchgpt's GPTModel, the trainer's forward_loss and make_optimizer (see
  :func:`ours_step`);
- ``nanogpt``: nanoGPT's GPT (bias=True, tied head: the gpt2-124M preset's layout) and its
  own ``configure_optimizers``, run from a checkout in ``--peer-dir`` (git-ignored, never
  copied here); its rows are skipped, with a note saying how to get it, when it is missing.

Each setting (implementation x compile) runs in a fresh process, so peak memory is that
setting's own, and no setting warms caches for the next. Peak memory is
``torch.cuda.max_memory_allocated`` on a GPU (weights, gradients, AdamW state, activations)
and the process's peak resident set size on the CPU (``ru_maxrss``: the whole process,
Python and torch included). MFU uses :mod:`scratchgpt.training.metrics` (none on the CPU).

    python bench/train_throughput.py              # CUDA: gpt2-124M, context 1024, batch 16
    python bench/train_throughput.py --device cpu # CPU: 4 x 256 wide, context 256, batch 8
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from common import ROOT, header, sync, write_results  # bench/common.py

from scratchgpt.config import PRESETS, GPTConfig, preset
from scratchgpt.model import GPTModel, num_parameters
from scratchgpt.training import make_optimizer
from scratchgpt.training.lm import forward_loss
from scratchgpt.training.metrics import flops_per_token, mfu

PEER_DIR = ROOT / ".peers" / "nanoGPT"

# A shape that trains a step in under a second on two CPU cores: GPT-2's layout (QKV bias,
# tied head) at 4 layers x 256 wide, with an 8k vocabulary so the head does not dwarf the
# blocks as GPT-2's 50k one would at this width.
SHAPES: dict[str, dict[str, Any]] = {
    "cpu-small": {
        "vocab_size": 8192,
        "context_length": 256,
        "emb_dim": 256,
        "n_heads": 4,
        "n_layers": 4,
        "qkv_bias": True,
        "tie_weights": True,
    },
}
DEFAULTS = {  # per device type: shape, batch, timed steps, warmup steps, timed windows
    "cuda": {"shape": "gpt2-124M", "batch_size": 16, "steps": 50, "warmup": 10, "repeats": 3},
    "cpu": {"shape": "cpu-small", "batch_size": 8, "steps": 5, "warmup": 2, "repeats": 5},
}
LR, WEIGHT_DECAY, BETAS, GRAD_CLIP = 6e-4, 0.1, (0.9, 0.95), 1.0  # nanoGPT's train.py values


def model_config(args: argparse.Namespace) -> GPTConfig:
    """The benchmarked shape: a bench shape or a scratchgpt preset, dropout off (nanoGPT's
    pretraining default), with --context applied."""
    overrides: dict[str, Any] = {"drop_rate": 0.0, "vocab_multiple": args.vocab_multiple}
    if args.context is not None:
        overrides["context_length"] = args.context
    if args.shape in SHAPES:
        return GPTConfig.from_dict({**SHAPES[args.shape], **overrides})
    return preset(args.shape, **overrides)


def autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    # bf16 on the GPU as the trainer does (same exponent range as fp32: no loss scaling, so
    # nanoGPT's GradScaler is disabled too); fp32 on the CPU, as both trainers do.
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_batches(
    cfg: GPTConfig, args: argparse.Namespace, device: torch.device
) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Two steps' worth of micro-batches of random tokens, (B, T) inputs and targets, already
    on the device; the steps cycle through them. Seeded: both implementations get the same."""
    gen = torch.Generator().manual_seed(0)
    steps = []
    for _ in range(2):
        micro = []
        for _ in range(args.grad_accum):
            seq = torch.randint(
                0, cfg.vocab_size, (args.batch_size, cfg.context_length + 1), generator=gen
            )
            # (B, T) each, y shifted by one; contiguous, as a data loader's stacked rows are
            x, y = seq[:, :-1].contiguous().to(device), seq[:, 1:].contiguous().to(device)
            micro.append((x, y))
        steps.append(micro)
    return steps


def ours_step(
    model: Callable[..., torch.Tensor],
    params: Sequence[torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    micro_batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    *,
    raw: torch.nn.Module,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step as scratchgpt's trainer takes it. Mirrors ``_step`` in
    src/scratchgpt/training/trainer.py (single process, bf16 or fp32, so its GradScaler is
    disabled and its no_sync a no-op): ``model`` is the trainer's loss function
    (``forward_loss``, compiled or not) applied to the raw model; the loss over the
    micro-batches, backward, the loss summed on the device for logging, clip (the norm kept
    for logging), AdamW step, zero_grad(set_to_none=True). The trainer's batch copy to the
    device is left out here, as nanoGPT's is: both read batches already on the device.
    Returns the step's mean loss and the gradient norm as device tensors (reading them
    would sync the host)."""
    total = torch.zeros((), device=device)
    for x, y in micro_batches:
        with autocast(device):
            loss = model(raw, x, y) / len(micro_batches)
        loss.backward()
        total += loss.detach()
    norm = torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total, norm.detach().float()


def nanogpt_step(
    model: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    params: Sequence[torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    micro_batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """nanoGPT's train.py step: its model computes the loss, the same scaling, clip and step
    (its GradScaler is a no-op in bf16 and fp32, so it is left out). Returns the last
    micro-batch's scaled loss and the gradient norm."""
    for x, y in micro_batches:
        with autocast(device):
            _, loss = model(x, y)
            loss = loss / len(micro_batches)
        loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss, norm


def load_nanogpt(peer_dir: Path) -> Any:
    """nanoGPT's model.py as a module, imported from the checkout (never copied here)."""
    spec = importlib.util.spec_from_file_location("nanogpt_model", peer_dir / "model.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def peer_commit(peer_dir: Path) -> str:
    if (peer_dir / ".git").exists():  # a clone; never ask git above it (that is our repo)
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=peer_dir, capture_output=True, text=True
        ).stdout.strip()
    commit_file = peer_dir / "COMMIT"  # an export: the commit written beside model.py
    return commit_file.read_text().strip() if commit_file.is_file() else "unknown"


def run_worker(args: argparse.Namespace) -> dict[str, Any]:
    """Build one implementation, warm it up, time ``args.steps`` steps; one result row."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    if device.type == "cuda":
        # TF32 for the fp32 matmuls left outside autocast (nanoGPT's train.py sets both).
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.cuda.reset_peak_memory_stats(device)
    cfg = model_config(args)
    opt_args = {"weight_decay": WEIGHT_DECAY, "device_type": device.type}
    if args.worker == "ours":
        raw: torch.nn.Module = GPTModel(cfg).to(device)
        optimizer = make_optimizer(raw, lr=LR, betas=BETAS, **opt_args)
        step_fn: Callable[..., tuple[torch.Tensor, torch.Tensor]] = functools.partial(
            ours_step, raw=raw
        )
        n_params = num_parameters(raw)
    else:
        nano = load_nanogpt(Path(args.peer_dir))
        nano_cfg = nano.GPTConfig(
            block_size=cfg.context_length,
            vocab_size=cfg.padded_vocab_size,  # nanoGPT pads by asking for more rows
            n_layer=cfg.n_layers,
            n_head=cfg.n_heads,
            n_embd=cfg.emb_dim,
            dropout=0.0,
            bias=True,  # biases in every Linear and LayerNorm, as our qkv_bias=True layout
        )
        with contextlib.redirect_stdout(sys.stderr):  # its prints must not mix with our JSON
            raw = nano.GPT(nano_cfg).to(device)
            optimizer = raw.configure_optimizers(WEIGHT_DECAY, LR, BETAS, device.type)
        step_fn = nanogpt_step
        n_params = sum(p.numel() for p in raw.parameters())
    raw.train()
    if args.worker == "ours":  # the trainer compiles its loss function: forward + loss
        model: Any = torch.compile(forward_loss) if args.compile == "on" else forward_loss
    else:  # nanoGPT's train.py compiles the model, whose forward computes the loss
        model = torch.compile(raw) if args.compile == "on" else raw
    params = [p for p in raw.parameters() if p.requires_grad]
    batches = make_batches(cfg, args, device)

    start = time.perf_counter()
    for i in range(args.warmup):
        step_fn(model, params, optimizer, batches[i % 2], device)
    sync(device)
    warmup_s = time.perf_counter() - start
    windows = []  # seconds per timed window of args.steps steps; the best one is reported
    for _ in range(args.repeats):
        start = time.perf_counter()
        for i in range(args.steps):
            loss, _ = step_fn(model, params, optimizer, batches[i % 2], device)
        sync(device)
        windows.append(time.perf_counter() - start)
    seconds = min(windows)

    tokens = args.steps * args.grad_accum * args.batch_size * cfg.context_length
    tokens_per_sec = tokens / seconds
    if device.type == "cuda":
        peak_mem_mb = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak_mem_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    utilisation = mfu(tokens_per_sec, cfg, device)
    return {
        "impl": args.worker,
        "compile": args.compile == "on",
        "tokens_per_sec": tokens_per_sec,
        "step_ms": 1000 * seconds / args.steps,
        "peak_mem_mb": peak_mem_mb,
        "mfu": utilisation,
        "model_tflops": tokens_per_sec * flops_per_token(cfg) / 1e12,
        "tokens_per_sec_median": tokens / sorted(windows)[len(windows) // 2],
        "warmup_s": warmup_s,
        "params": n_params,
        # After the clock. Ours returns the step's mean, nanoGPT the last micro-batch's share.
        "last_loss": (loss if args.worker == "ours" else loss * args.grad_accum).item(),
    }


def worker_command(args: argparse.Namespace, impl: str, compile_mode: str) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", impl]
    flags = ("device", "shape", "vocab_multiple", "batch_size", "grad_accum", "steps")
    flags += ("warmup", "repeats")
    for flag in (*flags, "peer_dir"):
        command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    if args.context is not None:
        command += ["--context", str(args.context)]
    return [*command, "--compile", compile_mode]


def run_setting(args: argparse.Namespace, impl: str, compile_mode: str) -> dict[str, Any]:
    """One setting in a fresh process: its last stdout line is its JSON row."""
    done = subprocess.run(worker_command(args, impl, compile_mode), capture_output=True, text=True)
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"{impl} (compile {compile_mode}) failed with exit code {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--shape",
        "--preset",
        dest="shape",
        choices=[*SHAPES, *PRESETS],
        help="model shape: cpu-small or a scratchgpt preset (default: gpt2-124M on CUDA, "
        "cpu-small on the CPU)",
    )
    parser.add_argument("--context", type=int, help="context length (default: the shape's)")
    parser.add_argument(
        "--vocab-multiple",
        type=int,
        default=64,
        help="pad the embedding and head rows to a multiple of this (default: 64, as "
        "configs/gpt2-124M.yaml and nanoGPT's 50,304; 1: none)",
    )
    parser.add_argument("--batch-size", type=int, help="sequences per micro-batch")
    parser.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step")
    parser.add_argument("--steps", type=int, help="timed optimiser steps")
    parser.add_argument("--warmup", type=int, help="untimed steps first (compilation)")
    parser.add_argument(
        "--repeats", type=int, help="timed windows of --steps steps; the best counts"
    )
    parser.add_argument("--compile", choices=["off", "on", "both"], default="both")
    parser.add_argument(
        "--peer-dir", type=Path, default=PEER_DIR, help="a nanoGPT checkout (its model.py)"
    )
    parser.add_argument("--worker", choices=["ours", "nanogpt"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    defaults = DEFAULTS["cuda" if torch.device(args.device).type == "cuda" else "cpu"]
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main() -> None:
    args = parse_args()
    if args.worker:
        print(json.dumps(run_worker(args)), flush=True)
        return
    device = torch.device(args.device)
    cfg = model_config(args)
    have_peer = (args.peer_dir / "model.py").is_file()
    if not have_peer:
        print(
            f"no nanoGPT checkout at {args.peer_dir}: skipping the peer rows. Get it with\n"
            f"  git clone https://github.com/karpathy/nanoGPT {args.peer_dir}",
            file=sys.stderr,
        )
    modes = ["off", "on"] if args.compile == "both" else [args.compile]
    setting = {
        "shape": args.shape,
        "context": cfg.context_length,
        "batch_size": args.batch_size,
        "grad_accum": args.grad_accum,
        "tokens_per_step": args.grad_accum * args.batch_size * cfg.context_length,
        "precision": "bf16 autocast, tf32" if device.type == "cuda" else "fp32",
    }
    load_before = os.getloadavg()  # other work on the machine makes the figures lower
    rows: list[dict[str, Any]] = []
    for mode in modes:
        impls = ["ours", "nanogpt"] if have_peer else ["ours"]
        results = {impl: run_setting(args, impl, mode) for impl in impls}
        for row in results.values():
            rows.append(row)
            print(json.dumps({"bench": "train_throughput", **setting, **row}), flush=True)
        if have_peer:
            ours, peer = results["ours"], results["nanogpt"]
            ratio = {
                "compile": mode == "on",
                "ours_over_nanogpt_tokens_per_sec": ours["tokens_per_sec"] / peer["tokens_per_sec"],
                "ours_over_nanogpt_peak_mem": ours["peak_mem_mb"] / peer["peak_mem_mb"],
                "same_param_count": ours["params"] == peer["params"],
            }
            rows.append(ratio)
            print(json.dumps({"bench": "train_throughput", **ratio}), flush=True)

    result = {
        **header("train_throughput", device),
        "peer": {"nanoGPT": peer_commit(args.peer_dir)} if have_peer else None,
        "model": cfg.to_dict(),
        "flops_per_token": flops_per_token(cfg),
        **setting,
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "timing": "best of the repeats windows of steps steps (median also given)",
        "peak_mem_note": (
            "torch.cuda.max_memory_allocated"
            if device.type == "cuda"
            else "peak RSS of the setting's own process (Python, torch, model and all)"
        ),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "loadavg_1_5_15_min": {"before": load_before, "after": os.getloadavg()},
        "rows": rows,
    }
    write_results(result, device)


if __name__ == "__main__":
    main()
