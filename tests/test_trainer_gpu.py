"""The trainer on a GPU: bf16 autocast, fused AdamW, torch.compile, MFU in the metrics.

Skipped without CUDA (see conftest.py); run on the lent GPU machine.
"""

import json

import pytest
import torch

from scratchgpt.checkpoint import load_checkpoint
from scratchgpt.config import RunConfig
from scratchgpt.training import train

pytestmark = pytest.mark.gpu


def run_config(verdict, **training) -> RunConfig:
    return RunConfig.from_dict(
        {
            "model": {"preset": "mini", "vocab_multiple": 64},
            "data": {"source": str(verdict)},
            "training": {
                "max_steps": 40, "batch_size": 16, "eval_interval": 20, "eval_batches": 2,
                "log_interval": 5, "sample_interval": 0, "device": "cuda", **training,
            },
        }
    )  # fmt: skip


@pytest.mark.parametrize("compile_", [False, True], ids=["eager", "compiled"])
def test_bf16_training_on_cuda(tmp_path, shared_data, compile_):
    result = train(run_config(shared_data("the-verdict.txt"), compile=compile_),
                   out_dir=tmp_path / "r")  # fmt: skip
    assert result.evaluations[-1]["val_loss"] < result.evaluations[0]["val_loss"] - 0.5
    rows = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    timed = [r for r in rows if "tokens_per_sec" in r]
    assert all("peak_mem_mb" in r for r in timed)
    if "H100" in torch.cuda.get_device_name() or "A100" in torch.cuda.get_device_name():
        assert all(0 < r["mfu"] < 1 for r in timed)
    model, _ = load_checkpoint(result.run_dir)  # loads on the CPU, no prefixes
    assert not any(k.startswith("_orig_mod.") for k in model.state_dict())


def test_resume_on_cuda_repeats_the_losses(tmp_path, shared_data):
    run = run_config(shared_data("the-verdict.txt"), max_steps=10, log_interval=1,
                     eval_interval=10)  # fmt: skip
    straight = train(run, out_dir=tmp_path / "a")
    train(run, out_dir=tmp_path / "b", stop_at=5)
    resumed = train(resume=tmp_path / "b")

    def losses(d):
        rows = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
        return {r["step"]: r["train_loss"] for r in rows if "tokens_per_sec" in r}

    # GPU kernels may reduce in a different order run to run: equal to float tolerance
    a, b = losses(straight.run_dir), losses(resumed.run_dir)
    assert sorted(a) == sorted(b)
    assert [a[s] for s in sorted(a)] == pytest.approx([b[s] for s in sorted(a)], abs=1e-3)
