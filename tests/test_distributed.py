"""Multi-process training through torchrun, on the CPU with the gloo backend.

Two processes each taking one micro-batch per step must train exactly like one process
accumulating two: the same global micro-batches, gradients averaged the same way.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not dist.is_available(), reason="torch built without distributed"),
]

STEPS = 6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_args(verdict: Path, out: Path, *extra: str) -> list[str]:
    return [
        "-m", "scratchgpt", "-q", "train",
        "--data", str(verdict),
        "--preset", "tiny",
        "--out", str(out),
        "--training.max-steps", str(STEPS),
        "--training.batch-size", "4",
        "--training.grad-accum", "2",
        "--training.log-interval", "1",
        "--training.eval-interval", str(STEPS),
        "--training.eval-batches", "2",
        "--training.sample-interval", "0",
        "--training.device", "cpu",
        *extra,
    ]  # fmt: skip


def run(args: list[str], *, procs: int = 1) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    if procs > 1:
        launcher = [
            sys.executable, "-m", "torch.distributed.run",
            "--nproc_per_node", str(procs),
            "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        ]  # fmt: skip
        cmd = launcher + args
    else:
        cmd = [sys.executable, *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


def losses(run_dir: Path) -> list[float]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["train_loss"] for r in rows if r["step"] > 0 and "tokens_per_sec" in r]


def test_ddp_two_processes_equal_one_with_accumulation(tmp_path, shared_data):
    verdict = shared_data("the-verdict.txt")
    run(train_args(verdict, tmp_path / "one"))
    run(train_args(verdict, tmp_path / "ddp"), procs=2)
    one, ddp = losses(tmp_path / "one"), losses(tmp_path / "ddp")
    assert len(one) == len(ddp) == STEPS
    assert ddp == pytest.approx(one, abs=1e-5)
    # only process 0 wrote: one checkpoint per save, no wrapper prefixes in the weights
    from scratchgpt.checkpoint import load_checkpoint, run_checkpoints

    assert [s for s, _ in run_checkpoints(tmp_path / "ddp")][-1] == STEPS
    model, _ = load_checkpoint(tmp_path / "ddp")
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in model.state_dict())


def test_fsdp_two_processes_equal_one_with_accumulation(tmp_path, shared_data):
    verdict = shared_data("the-verdict.txt")
    run(train_args(verdict, tmp_path / "one"))
    run(train_args(verdict, tmp_path / "fsdp", "--training.fsdp", "true"), procs=2)
    one, fsdp = losses(tmp_path / "one"), losses(tmp_path / "fsdp")
    assert fsdp == pytest.approx(one, abs=1e-5)
    # the gathered checkpoint loads as a plain model and resumes like any other
    from scratchgpt.checkpoint import load_checkpoint

    a, _ = load_checkpoint(tmp_path / "one")
    b, _ = load_checkpoint(tmp_path / "fsdp")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert (x - y).abs().max() < 1e-4, name


def test_ddp_lora_fine_tuning_equals_one_process(tmp_path, shared_data):
    """LoRA under DDP: the frozen base takes no gradients (DDP skips it), the adapters are
    averaged like any parameter, and process 0 alone writes the adapter checkpoints."""
    verdict = shared_data("the-verdict.txt")
    run(train_args(verdict, tmp_path / "base"))
    lora = ["--init-from", str(tmp_path / "base"), "--lora.rank", "4", "--lora.targets", "qv"]
    one_args = train_args(verdict, tmp_path / "one", *lora)
    ddp_args = train_args(verdict, tmp_path / "ddp", *lora)
    for args in (one_args, ddp_args):  # init_from fixes the shape: no --preset
        i = args.index("--preset")
        del args[i : i + 2]
    run(one_args)
    run(ddp_args, procs=2)
    one, ddp = losses(tmp_path / "one"), losses(tmp_path / "ddp")
    assert len(one) == len(ddp) == STEPS and ddp == pytest.approx(one, abs=1e-5)
    from scratchgpt.adapters import read_adapter

    info, weights = read_adapter(tmp_path / "ddp")
    assert info["task"] == "lm" and all(".lora_" in k for k in weights)
