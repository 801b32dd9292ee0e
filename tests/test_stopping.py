"""Stopping a run without losing work: Ctrl-C during an evaluation, a second Ctrl-C inside a
step, a run killed before its first checkpoint, and a long evaluation that says how far it is.

The signal tests run the real command in a subprocess and send it real signals.
"""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scratchgpt.checkpoint import run_checkpoints
from scratchgpt.cli import main
from scratchgpt.config import RunConfig
from scratchgpt.training import metrics as metrics_mod, train
from scratchgpt.training.signals import StopSignals
from scratchgpt.training.state import read_state
from scratchgpt.training.trainer import Trainer


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def step_losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["train_loss"] for r in rows(run_dir) if r["step"] > 0}


def tiny_run(verdict: Path, **training) -> RunConfig:
    defaults = {"max_steps": 4, "batch_size": 4, "log_interval": 1, "eval_interval": 4,
                "eval_batches": 2, "sample_interval": 0}  # fmt: skip
    return RunConfig.from_dict(
        {
            "model": {"preset": "tiny", "drop_rate": 0.1},
            "data": {"source": str(verdict)},
            "training": {**defaults, **training},
        }
    )


def start(args: list[str], log: Path) -> subprocess.Popen:
    """``python -m scratchgpt ARGS`` with its stderr going to ``log``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "scratchgpt", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
        )


def wait_for(proc: subprocess.Popen, log: Path, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"{text!r} not logged in {timeout} s"
        time.sleep(0.05)


def finish(proc: subprocess.Popen, log: Path, within: float) -> tuple[int, float, str]:
    """(exit code, seconds it took, stderr) once ``proc`` exits; killed after ``within`` s."""
    started = time.monotonic()
    try:
        proc.wait(timeout=within)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"still running {within} s after the signal:\n{log.read_text()[-2000:]}")
    finally:
        proc.stdout.close()
    return proc.returncode, time.monotonic() - started, log.read_text()


@pytest.mark.slow
def test_sigint_during_the_first_evaluation_stops_at_once_and_saves(tmp_path, shared_data):
    run_dir, log = tmp_path / "run", tmp_path / "stderr.txt"
    proc = start(
        [
            "train", "--data", str(shared_data("the-verdict.txt")), "--preset", "tiny",
            "--out", str(run_dir), "--training.device", "cpu", "--training.max-steps", "3",
            "--training.batch-size", "4", "--training.sample-interval", "0",
            "--training.eval-batches", "1000000",  # hours: only a stop can end it
        ],
        log,
    )  # fmt: skip
    wait_for(proc, log, "evaluating step 0:")  # the progress line a long evaluation logs
    proc.send_signal(signal.SIGINT)
    code, seconds, err = finish(proc, log, within=30)
    assert code == 130 and seconds < 10, err[-2000:]
    assert "evaluation at step 0 abandoned" in err
    # The last completed step (0: the untrained model) is saved, and --resume continues it.
    assert [s for s, _ in run_checkpoints(run_dir)] == [0]
    assert read_state(run_dir / "checkpoints" / "step-00000000")["step"] == 0
    resumed = train(resume=run_dir, overrides={"training.eval_batches": 2})
    assert resumed.start_step == 0 and resumed.steps == 3 and not resumed.interrupted
    assert [r["step"] for r in rows(run_dir) if "val_loss" in r] == [0, 3]  # step 0 evaluated once


@pytest.mark.slow
def test_a_second_sigint_abandons_the_step_and_still_saves(tmp_path, shared_data):
    """Two Ctrl-C inside one long step, before any checkpoint: the step is dropped, step 0 is
    saved, and the resumed run is exactly the uninterrupted one (dropout RNG included)."""
    verdict = shared_data("the-verdict.txt")
    common = [
        "--data", str(verdict), "--preset", "tiny", "--drop-rate", "0.1",
        "--training.device", "cpu", "--training.max-steps", "2", "--training.batch-size", "2",
        "--training.grad-accum", "600", "--training.eval-batches", "1",
        "--training.log-interval", "1", "--training.sample-interval", "0",
    ]  # fmt: skip
    run_dir, log = tmp_path / "run", tmp_path / "stderr.txt"
    proc = start(["train", *common, "--out", str(run_dir)], log)
    wait_for(proc, log, "step 0: train loss")  # the first evaluation is done: steps begin
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    code, seconds, err = finish(proc, log, within=30)
    assert code == 130 and seconds < 5, err[-2000:]
    assert "step 1 abandoned; saving step 0" in err
    assert [s for s, _ in run_checkpoints(run_dir)] == [0]
    # The resumed run and the uninterrupted one, in this process (no second torch import).
    assert main(["-q", "train", "--resume", str(run_dir)]) == 0
    straight = tmp_path / "straight"
    assert main(["-q", "train", *common, "--out", str(straight)]) == 0
    assert step_losses(run_dir) == step_losses(straight) and sorted(step_losses(straight)) == [1, 2]


def test_a_third_signal_quits_saying_what_is_lost(caplog):
    caplog.set_level(logging.WARNING, logger="scratchgpt")
    with StopSignals(lost=lambda: "steps 5-7 are lost; the last checkpoint is RUN/step-4") as s:
        os.kill(os.getpid(), signal.SIGINT)
        assert s.received == "SIGINT" and not s.urgent
        os.kill(os.getpid(), signal.SIGTERM)
        assert s.urgent and s.count == 2
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert "quitting without saving. steps 5-7 are lost; the last checkpoint is RUN/step-4" in (
        caplog.text
    )


def test_resume_before_the_first_checkpoint_starts_over(tmp_path, shared_data, monkeypatch):
    run = tiny_run(shared_data("the-verdict.txt"))
    straight = train(run, out_dir=tmp_path / "straight")

    def killed(self):
        raise SystemExit("killed")  # after the step-0 evaluation, before any checkpoint

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "train_step", killed)
        with pytest.raises(SystemExit):
            train(run, out_dir=tmp_path / "r")
    assert (tmp_path / "r" / "config.yaml").is_file() and not run_checkpoints(tmp_path / "r")
    assert [r["step"] for r in rows(tmp_path / "r")] == [0]
    result = train(resume=tmp_path / "r")
    assert result.start_step == 0 and result.steps == 4
    assert [r["step"] for r in rows(tmp_path / "r")] == [0, 1, 2, 3, 4]  # step 0 logged once
    assert step_losses(tmp_path / "r") == step_losses(straight.run_dir)


def test_a_long_evaluation_logs_its_progress(tmp_path, shared_data, caplog, monkeypatch):
    monkeypatch.setattr(metrics_mod, "EVAL_PROGRESS_AFTER", 0.0)
    monkeypatch.setattr(metrics_mod, "EVAL_PROGRESS_EVERY", 0.0)
    caplog.set_level(logging.INFO, logger="scratchgpt")
    train(tiny_run(shared_data("the-verdict.txt"), max_steps=1, eval_batches=5),
          out_dir=tmp_path / "r")  # fmt: skip
    lines = [r.getMessage() for r in caplog.records if "evaluating step 0" in r.getMessage()]
    # both splits, counted as one evaluation of 10 batches
    assert [line.split(": ")[1].split(",")[0] for line in lines] == [
        f"{i}/10 batches" for i in range(1, 11)
    ]
    assert "about 0 s left" in lines[-1]
