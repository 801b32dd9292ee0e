"""Smoke test of bench/finetune.py: its quick shape runs end to end and writes the fields
docs/benchmarks.md reads. The figures themselves are the benchmark's business, not a test's;
what is checked is that both sides trained the same model (the same first loss) and that the
trainable counts are the ones the LoRA arithmetic gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def lora_params(n_layers: int, c: int, rank: int, *, fused_qkv: bool) -> int:
    """Adapter parameters (A: r x in, B: out x r) over every Linear of GPT-2's blocks."""
    qkv = rank * c + 3 * c * rank if fused_qkv else 3 * (rank * c + c * rank)
    out_proj, fc1, fc2 = rank * c + c * rank, rank * c + 4 * c * rank, rank * 4 * c + c * rank
    return n_layers * (qkv + out_proj + fc1 + fc2)


@pytest.mark.slow
@pytest.mark.hf
def test_quick_finetune_bench(tmp_path: Path, shared_data: Callable[[str], Path]) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    data_dir = shared_data("sms-spam.tsv").parent
    for name in ("gpt2-encoder.json", "gpt2-vocab.bpe"):  # the tokenizer's files: skip if absent
        shared_data(name)
    out = tmp_path / "finetune.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "bench")])}
    command = [sys.executable, str(ROOT / "bench" / "finetune.py"), "--quick"]
    command += ["--settings", "lora,padding", "--threads", "1", "--shared-data", str(data_dir)]
    command += ["--cache-dir", str(tmp_path / "cache"), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]

    result = json.loads(out.read_text())
    for key in ("device", "torch", "command", "git_commit", "model", "peer", "rows"):
        assert key in result
    rows = {
        (r["setting"], r.get("impl"), r.get("padding", r.get("compare"))): r for r in result["rows"]
    }
    ours, peft = rows[("lora", "ours", "longest")], rows[("lora", "peft", "longest")]
    padded_max = rows[("padding", "ours", "max")]
    for row in (ours, peft, padded_max):
        for key in ("trainable_params", "trainable_share", "step_s", "step_s_median"):
            assert row[key] > 0
        for key in ("tokens_per_sec", "peak_rss_mb", "first_loss", "last_loss"):
            assert row[key] > 0
    # The same weights and batches: the same loss before any step, on every row.
    assert abs(ours["first_loss"] - peft["first_loss"]) < 1e-4
    assert abs(ours["first_loss"] - padded_max["first_loss"]) < 1e-4
    # "max" pads every batch to the data set's longest text: more tokens for the same texts.
    assert padded_max["padded_tokens_per_window"] > ours["padded_tokens_per_window"]
    assert padded_max["real_tokens_per_window"] == ours["real_tokens_per_window"]

    cfg = result["model"]
    c, n, head = cfg["emb_dim"], cfg["n_layers"], 2 * cfg["emb_dim"]
    assert ours["trainable_params"] == lora_params(n, c, 16, fused_qkv=False) + head + 2
    assert peft["trainable_params"] == lora_params(n, c, 16, fused_qkv=True) + head

    comparisons = [r for r in result["rows"] if "compare" in r]
    assert {r["setting"] for r in comparisons} == {"lora", "padding"}
    for r in comparisons:
        assert {"speed_ratio", "memory_ratio", "first_loss_diff"} <= r.keys()
    lora_ratio = next(r for r in comparisons if r["setting"] == "lora")
    assert lora_ratio["same_start"] is True
    assert set(lora_ratio["targets"].values()) <= {"pass", "fail"}
