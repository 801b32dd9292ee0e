"""Smoke test of bench/serve.py: a tiny model under a tiny load runs end to end against real
servers and writes the fields docs/benchmarks.md reads. The figures are the benchmark's
business; what is checked is that every request was answered in full (the usage's token
counts), that the timings are ordered as they must be (first token before the last), and that
greedy decoding gave each prompt the same text at every concurrency level.

The comparison's pure parts (the greedy check and the ratios with both contenders) are
checked on made-up runs, since `scratchgpt serve` is started only where CONTENDERS says.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The servers the smoke run starts; "ours,transformers" once `scratchgpt serve` is merged.
CONTENDERS = "ours,transformers"
LEVELS, MAX_TOKENS, PROMPT_TOKENS = (1, 2), 4, 6

for name in ("fastapi", "uvicorn", "httpx"):
    pytest.importorskip(name)


def bench_module():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import serve
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return serve


@pytest.mark.slow
@pytest.mark.hf
def test_tiny_serve_bench(tmp_path: Path, shared_data: Callable[[str], Path]) -> None:
    pytest.importorskip("transformers")
    data_dir = shared_data("gpt2-encoder.json").parent
    shared_data("gpt2-vocab.bpe")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "bench")])}
    command = [sys.executable, str(ROOT / "bench" / "serve.py"), "--preset", "tiny"]
    command += ["--levels", ",".join(map(str, LEVELS)), "--max-tokens", str(MAX_TOKENS)]
    command += ["--prompt-tokens", str(PROMPT_TOKENS), "--requests-per-client", "2"]
    command += ["--min-requests", "3", "--contenders", CONTENDERS]
    command += ["--shared-data", str(data_dir), "--out-dir", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    assert "contender" in done.stdout  # the table

    (out,) = tmp_path.glob("serve-cpu-*.json")
    result = json.loads(out.read_text())
    for key in ("device", "torch", "command", "git_commit", "model", "peer", "load", "ratios"):
        assert key in result
    assert result["model"]["vocab_size"] == 50257  # GPT-2's tokenizer on the tiny shape
    names = CONTENDERS.split(",")
    assert list(result["contenders"]) == names
    for name, run in result["contenders"].items():
        assert run["startup_s"] > 0 and run["largest_batch"] >= 1
        assert [r["clients"] for r in run["levels"]] == list(LEVELS)
        for row in run["levels"]:
            n = max(2 * row["clients"], 3)
            assert row["requests"] == n
            assert row["token_count"] == "usage"
            # Random weights never pick <|endoftext|> here: every request runs to max_tokens.
            assert row["per_request"]["tokens"] == [MAX_TOKENS] * n
            assert row["completion_tokens"] == MAX_TOKENS * n
            assert row["tokens_per_sec"] == pytest.approx(row["completion_tokens"] / row["wall_s"])
            assert 0 < row["ttft_p50_s"] <= row["ttft_p95_s"]
            assert 0 < row["latency_p50_s"] <= row["latency_p95_s"] <= row["wall_s"]
            for ttft, latency in zip(
                *(row["per_request"][k] for k in ("ttft_s", "latency_s")), strict=True
            ):
                assert 0 < ttft <= latency
        same = result["greedy"]["across_levels"][name]
        assert same["prompts"] == 3 and same["equal"] == 3, name  # greedy: one answer a prompt
        assert result["ratios"]["scaling"][name] > 0
    assert (result["ratios"]["base_clients"], result["ratios"]["top_clients"]) == (1, 2)
    if "ours" in names:
        assert "targets" in result["ratios"]
        assert result["greedy"]["ours_vs_transformers"]["compared"] > 0


def made_up_run(tps: dict[int, float], texts: dict[int, list[str]]) -> dict:
    levels = [{"clients": c, "tokens_per_sec": t, "ttft_p95_s": 0.5} for c, t in tps.items()]
    return {"levels": levels, "outputs": {c: [(t, 4) for t in ts] for c, ts in texts.items()}}


def test_ratios_and_greedy_checks_with_both_contenders() -> None:
    serve = bench_module()
    runs = {
        "ours": made_up_run({1: 10.0, 8: 40.0}, {1: ["a", "b"], 8: ["a", "c"]}),
        "transformers": made_up_run({1: 10.0, 8: 8.0}, {1: ["a", "b"], 8: ["a", "b"]}),
    }
    ratios = serve.ratios(runs, [1, 8])
    assert ratios["scaling"] == {"ours": 4.0, "transformers": 0.8}
    assert ratios["ours_vs_transformers"] == {1: 1.0, 8: 5.0}
    assert set(ratios["targets"].values()) == {"pass"}
    greedy = serve.greedy_checks(runs)
    assert greedy["across_levels"]["ours"] == {"prompts": 2, "equal": 1}
    assert greedy["across_levels"]["transformers"] == {"prompts": 2, "equal": 2}
    pair = greedy["ours_vs_transformers"]
    assert (pair["compared"], pair["equal"], pair["all_equal"]) == (4, 3, False)
    assert pair["first_difference"] == {
        "clients": 8,
        "prompt": 1,
        "ours": ("c", 4),
        "transformers": ("b", 4),
    }
    assert serve.percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.5
    assert serve.percentile([1.0, 2.0], 95) == pytest.approx(1.95)
