"""Smoke test of bench/instruct.py: its quick shape runs end to end and writes the fields
docs/benchmarks.md reads. The figures are the benchmark's business, not a test's; what is
checked is that both sides were given the same batch and trained the same model (the same
first loss) on the same steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.hf
def test_quick_instruct_bench(tmp_path: Path, shared_data: Callable[[str], Path]) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("datasets")
    pytest.importorskip("trl")
    data_dir = shared_data("instruction-data.json").parent
    for name in ("gpt2-encoder.json", "gpt2-vocab.bpe"):  # the tokenizer's files: skip if absent
        shared_data(name)
    out = tmp_path / "instruct.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "bench")])}
    command = [sys.executable, str(ROOT / "bench" / "instruct.py"), "--quick", "--threads", "1"]
    command += ["--shared-data", str(data_dir), "--cache-dir", str(tmp_path / "cache")]
    command += ["--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]

    result = json.loads(out.read_text())
    for key in ("device", "torch", "command", "git_commit", "model", "peer", "rows"):
        assert key in result
    assert result["loadavg_1_5_15_min"]["before"]
    assert result["data"]["train_records"] == int(0.85 * result["data"]["records"])
    ours, trl, ratio = result["rows"]
    assert (ours["impl"], trl["impl"]) == ("ours", "trl")
    for row in (ours, trl):
        assert row["steps"] == result["steps"] == len(row["losses"])
        for key in ("tokens_per_sec", "peak_rss_mb", "train_peak_rss_mb", "first_loss"):
            assert row[key] > 0
        assert row["last_loss"] == row["losses"][-1]
    # Both sides timed the same padded tokens.
    assert ours["padded_tokens_timed"] == trl["padded_tokens_timed"] > 0
    # TRL's own first batch is our collate of the same records, and the loss before any
    # update is the same on both sides: the same model, data and completion-only loss.
    assert ratio["same_batch"] is True
    assert ratio["same_start"] is True
    assert abs(ours["first_loss"] - trl["first_loss"]) < 1e-4
    # A few steps of the same optimizer math: the losses stay together.
    assert ratio["max_step_loss_diff"] < 1e-2
    assert {"speed_ratio", "memory_ratio", "last_loss_diff"} <= ratio.keys()
    assert set(ratio["targets"].values()) <= {"pass", "fail"}
