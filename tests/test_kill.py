"""Killing training with SIGKILL at random moments never leaves the latest checkpoint unreadable.

The run saves a checkpoint every step with a model big enough that most of the wall time is
spent writing checkpoints, so the kills land in the middle of writes; after each kill the run
is resumed (which also cleans up the temporary directory the kill left behind). The attempts
take turns, two by two, at writing in a background thread (training goes on meanwhile) and
in the training loop, so both ways of writing are killed at random instants and mid-write.
"""

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from scratchgpt.checkpoint import load_checkpoint, run_checkpoints
from scratchgpt.training.state import read_state

pytestmark = pytest.mark.slow

# Half the kills wait for a write in progress, so fewer attempts than random kills alone
# test more writes (at least 5 of 14, where 20 random kills asked for 5 of 20).
KILLS = 14


def test_sigkill_during_checkpoint_writes_never_corrupts(tmp_path, shared_data):
    run_dir = tmp_path / "run"
    first = [
        "--data", str(shared_data("the-verdict.txt")),
        "--preset", "mini",
        "--out", str(run_dir),
        "--training.max-steps", "100000",
        "--training.batch-size", "2",
        "--training.checkpoint-interval", "1",
        "--training.keep-last", "2",
        "--training.eval-interval", "100000",
        "--training.sample-interval", "0",
        "--training.device", "cpu",
    ]  # fmt: skip
    rng = random.Random(0)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    last_step, mid_write = 0, {"--checkpoint-async": 0, "--no-checkpoint-async": 0}
    for attempt in range(KILLS):
        mode = "--checkpoint-async" if attempt // 2 % 2 == 0 else "--no-checkpoint-async"
        args = [*(first if attempt == 0 else ["--resume", str(run_dir)]), mode]
        proc = subprocess.Popen(
            [sys.executable, "-m", "scratchgpt", "-q", "train", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            # Wait for this attempt's first new checkpoint, then kill at a random instant.
            deadline = time.monotonic() + 120
            while not any(s > last_step for s, _ in run_checkpoints(run_dir)):
                assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
                assert time.monotonic() < deadline, "no checkpoint written in 120 s"
                time.sleep(0.02)
            if attempt % 2:
                time.sleep(rng.uniform(0.0, 0.4))  # a random instant
            else:
                # Catch a write in progress (its hidden directory exists), so that at least
                # half the kills test the atomic save whatever the machine's speed or load.
                while not any((run_dir / "checkpoints").glob(".step-*")):
                    assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
                    assert time.monotonic() < deadline, "no checkpoint write seen in 120 s"
                    time.sleep(0.001)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc.stderr.close()
        # a hidden temporary directory left behind: this kill landed in the middle of a save
        mid_write[mode] += any((run_dir / "checkpoints").glob(".step-*"))
        found = run_checkpoints(run_dir)
        assert found, f"kill {attempt}: no readable checkpoint left"
        step, latest = found[-1]
        model, tok = load_checkpoint(latest)
        state = read_state(latest)
        assert state["step"] == step and model.cfg.vocab_size == tok.vocab_size
        assert step > last_step  # each attempt made progress and kept it
        last_step = step
    # The test means something only if kills did land inside writes, of both kinds.
    assert sum(mid_write.values()) >= 5, f"only {mid_write} of {KILLS} kills hit a write"
    assert min(mid_write.values()) >= 2, f"kills that hit a write, by mode: {mid_write}"
