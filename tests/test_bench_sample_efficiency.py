"""Tests of bench/sample_efficiency.py without nanoGPT's checkout: the recipe it gives our
trainer is a valid run config with nanoGPT's settings, the parsing and the time-to-target
interpolation on made-up output, and (slow) a short run of our side end to end, checking the
results file's fields. The figures are the benchmark's business, not a test's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from scratchgpt.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]


def bench_module() -> ModuleType:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import sample_efficiency
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return sample_efficiency


def test_recipe_is_the_readme_line_and_a_valid_run_config(tmp_path: Path) -> None:
    bench = bench_module()
    flags = bench.key_values(" ".join(bench.README_COMMAND.split()[3:]))
    assert flags["device"] == "cpu" and flags["compile"] is False
    for key in set(flags) & set(bench.RECIPE):  # the README's flags are in the recipe as given
        assert bench.RECIPE[key] == flags[key], key
    text = tmp_path / "t.txt"
    run = RunConfig.from_dict(bench.ours_a_config(bench.RECIPE, text))
    m, t, r = run.model, run.training, bench.RECIPE
    assert m is not None
    assert (m.n_layers, m.n_heads, m.emb_dim, m.context_length) == (4, 4, 128, 64)
    assert (m.bias, m.qkv_bias, m.tie_weights, m.drop_rate) == (False, False, True, 0.0)
    assert (t.max_steps, t.batch_size, t.warmup_steps) == (r["max_iters"], 12, 100)
    assert (t.lr, t.min_lr, t.beta2, t.weight_decay) == (1e-3, 1e-4, 0.99, 0.1)
    assert (t.eval_interval, t.eval_batches, t.sample_interval) == (250, 20, 0)
    assert (run.data.source, run.data.train_ratio, run.data.loader) == (str(text), 0.9, "random")


def test_a_short_run_scales_warmup_and_decay() -> None:
    bench = bench_module()
    args = bench.parse_args(["--max-iters", "100", "--eval-interval", "50"])
    r = bench.run_recipe(args)
    assert (r["max_iters"], r["lr_decay_iters"], r["warmup_iters"]) == (100, 100, 10)
    command = bench.nanogpt_command(r, Path("/tmp/out"))
    assert "--max_iters=100" in command and "--warmup_iters=10" in command
    assert "--eval_interval=50" in command and command.count("--eval_iters=20") == 1
    assert command[-1] == "--out_dir=/tmp/out"


def test_parse_nanogpt_and_ours() -> None:
    bench = bench_module()
    lines = [
        (1.0, "step 0: train loss 4.1667, val loss 4.1817"),
        (1.5, "iter 0: loss 4.1828, time 500.00ms, mfu -100.00%"),
        (1.6, "iter 1: loss 3.8605, time 100.50ms, mfu -100.00%"),
        (2.0, "saving checkpoint to /tmp/x"),
        (3.0, "step 2: train loss 3.2101, val loss 3.2980"),
    ]
    evals, step_ms = bench.parse_nanogpt(lines)
    assert [(e["step"], e["val_loss"], e["t_s"]) for e in evals] == [
        (0, 4.1817, 1.0),
        (2, 3.298, 3.0),
    ]
    assert step_ms == [500.0, 100.5]
    rows = [
        {"step": 0, "eval_train_loss": 4.2, "train_loss": 4.2, "val_loss": 4.1},
        {"step": 1, "train_loss": 3.9, "step_ms": 80.0},
        {"step": 2, "train_loss": 3.5, "step_ms": 90.0, "eval_train_loss": 3.4, "val_loss": 3.3},
    ]
    evals, step_ms = bench.parse_ours([(float(i), json.dumps(r)) for i, r in enumerate(rows)])
    assert [(e["step"], e["train_loss"], e["val_loss"], e["t_s"]) for e in evals] == [
        (0, 4.2, 4.1, 0.0),
        (2, 3.4, 3.3, 2.0),
    ]
    assert step_ms == [80.0, 90.0]


def test_time_to_reach_interpolates_between_evaluations() -> None:
    bench = bench_module()
    evals = [
        {"step": 0, "val_loss": 4.0, "t_s": 1.0},
        {"step": 250, "val_loss": 2.0, "t_s": 11.0},
        {"step": 500, "val_loss": 1.5, "t_s": 21.0},
    ]
    reach = bench.time_to_reach(evals, 1.75)
    assert reach == {"t_s": 16.0, "first_eval_step": 500, "first_eval_t_s": 21.0}
    assert bench.time_to_reach(evals, 2.0)["t_s"] == 11.0
    assert bench.time_to_reach(evals, 5.0)["t_s"] == 1.0  # reached at the first evaluation
    assert bench.time_to_reach(evals, 1.0) is None


def test_compare_targets() -> None:
    bench = bench_module()
    nano = {"wall_s": 100.0, "final_val_loss": 2.0}
    a = {"wall_s": 104.0, "final_val_loss": 2.01, "evals": [{"step": 0, "val_loss": 2.1, "t_s": 5}]}
    b = {"wall_s": 60.0, "evals": [{"step": 0, "val_loss": 3.0, "t_s": 10.0}]}
    b["evals"].append({"step": 100, "val_loss": 1.0, "t_s": 50.0})
    out = bench.compare({"nanogpt": nano, "ours-a": a, "ours-b": b})
    assert out["a_wall_ratio"] == pytest.approx(1.04)
    assert out["b_reach_ratio"] == pytest.approx(0.3)  # 2.0 is halfway from 3.0 to 1.0: t=30
    assert a["reaches_nanogpt_final"] is None
    assert set(out["targets"].values()) == {"pass"}
    alone = bench.compare({"ours-a": a})
    assert set(alone["targets"].values()) == {"n/a"}


def test_a_missing_config_b_is_skipped_with_a_note(
    tmp_path: Path, shared_data: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = shared_data("tinyshakespeare.txt").parent
    out = tmp_path / "r.json"
    argv = ["--contenders", "ours-b", "--config-b", str(tmp_path / "none.yaml")]
    argv += ["--nanogpt", str(tmp_path / "absent"), "--shared-data", str(data_dir)]
    result = bench_module().main([*argv, "--out", str(out)])
    assert "does not exist yet" in capsys.readouterr().out
    assert result["contenders"]["ours-b"]["skipped"]
    assert json.loads(out.read_text())["targets"] == result["targets"]


TINY_B = """\
model: {preset: null, context_length: 32, emb_dim: 32, n_heads: 2, n_layers: 2, drop_rate: 0.0}
data: {source: tinyshakespeare, train_ratio: 0.5, loader: random}
tokenizer: {name: bpe, vocab_size: 300}
training: {max_steps: 500, batch_size: 4, eval_interval: 100, eval_batches: 50, sample_interval: 7}
"""


@pytest.mark.slow
def test_short_run_of_ours(tmp_path: Path, shared_data: Callable[[str], Path]) -> None:
    data_dir = shared_data("tinyshakespeare.txt").parent
    out, config_b = tmp_path / "sampleff.json", tmp_path / "b.yaml"
    config_b.write_text(TINY_B, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "bench")])}
    command = [sys.executable, str(ROOT / "bench" / "sample_efficiency.py")]
    command += ["--contenders", "ours-a,ours-b", "--max-iters", "10", "--eval-interval", "5"]
    command += ["--config-b", str(config_b), "--eval-interval-b", "2"]
    command += ["--eval-iters", "2", "--threads", "1", "--shared-data", str(data_dir)]
    command += ["--nanogpt", str(tmp_path / "absent"), "--work-dir", str(tmp_path / "work")]
    command += ["--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]

    result = json.loads(out.read_text())
    for key in ("device", "torch", "command", "git_commit", "recipe", "split", "targets"):
        assert key in result
    assert result["peer"]["present"] is False and "same_as_nanogpt" not in result["split"]
    split = result["split"]
    assert split["vocab_size"] == 65 and split["train_tokens"] == int(0.9 * split["chars"])
    assert list(result["contenders"]) == ["ours-a", "ours-b"]
    a, b = result["contenders"]["ours-a"], result["contenders"]["ours-b"]
    assert [e["step"] for e in a["evals"]] == [0, 5, 10]
    times = [e["t_s"] for e in a["evals"]]
    assert times == sorted(times) and times[-1] <= a["wall_s"]
    assert a["evals"][-1]["val_loss"] < a["evals"][0]["val_loss"]  # it trained
    assert a["tokens"] == 10 * 12 * 64 and a["config"]["model"]["bias"] is False
    assert a["peak_rss_mb"] > 0 and a["step_ms_median"] > 0
    # ours-b: the config's model and batch, our measurement's data, split, tokenizer, cadence.
    assert [e["step"] for e in b["evals"]] == [0, 2, 4, 6, 8, 10]
    assert b["tokens"] == 10 * 4 * 32 and b["config"]["model"]["n_layers"] == 2
    assert b["config"]["data"]["source"].endswith("tinyshakespeare.txt")
    assert b["config"]["data"]["train_ratio"] == 0.9 and b["config"]["tokenizer"]["name"] == "char"
    assert b["config"]["training"]["eval_batches"] == 2
    assert b["config"]["training"]["sample_interval"] == 0
    assert set(result["targets"].values()) == {"n/a"}


def test_recipe_matches_the_checkout() -> None:
    root = ROOT / ".peers" / "nanoGPT"
    if not (root / "train.py").is_file():
        pytest.skip("no nanoGPT checkout in .peers/nanoGPT")
    settings = bench_module().nanogpt_recipe(root)  # stops on any difference from RECIPE
    assert (settings["device"], settings["block_size"], settings["beta2"]) == ("cpu", 64, 0.99)
