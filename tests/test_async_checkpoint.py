"""Checkpoints that cost little: written in the background, due by the clock or the steps.

Every run is the tiny preset on the-verdict's characters, a few steps on the CPU. A slowed
writer makes training go on while a checkpoint is written, so a snapshot that still shared
memory with the live weights or AdamW moments would be caught.
"""

import dataclasses
import json
import logging
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from scratchgpt.checkpoint import load_checkpoint, run_checkpoints
from scratchgpt.config import RunConfig, preset
from scratchgpt.model import GPTModel
from scratchgpt.training import checkpointer, train, trainer as trainer_mod
from scratchgpt.training.state import STATE_JSON, STATE_TENSORS, snapshot, snapshot_weights
from scratchgpt.training.trainer import Trainer

from .test_trainer import step_losses


def tiny_run(verdict, **training) -> RunConfig:
    defaults = {
        "max_steps": 12, "batch_size": 4, "lr": 3e-3, "log_interval": 1, "eval_interval": 4,
        "eval_batches": 2, "sample_interval": 0, "keep_last": 20,
    }  # fmt: skip
    return RunConfig.from_dict(
        {
            "model": {"preset": "tiny", "drop_rate": 0.1},  # dropout: the RNGs are saved too
            "data": {"source": str(verdict)},
            "training": {**defaults, **training},
        }
    )


@pytest.fixture
def held_write(monkeypatch, caplog):
    """A background write of step 2 is held until the training thread, two steps on, finds it still
    going and says so: the next steps surely run while it is written (whatever the
    machine's speed). Returns the threads the writes ran on."""
    threads: list[threading.Thread] = []
    waited = threading.Event()
    real = trainer_mod.write_checkpoint

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "is still being written" in record.getMessage():
                waited.set()

    def held(task, model, run_dir, step, **kwargs):
        threads.append(threading.current_thread())
        if step == 2 and threading.current_thread() is not threading.main_thread():
            assert waited.wait(timeout=120), "the training thread never waited for the write"
        return real(task, model, run_dir, step, **kwargs)

    caplog.set_level(logging.INFO, logger="scratchgpt")
    watch = Watch()
    logging.getLogger("scratchgpt").addHandler(watch)
    monkeypatch.setattr(trainer_mod, "write_checkpoint", held)
    yield threads
    logging.getLogger("scratchgpt").removeHandler(watch)


def saved(path):
    """A checkpoint's contents: the model's weights, the training state's tensors and JSON
    (less the evaluation's part: the run stopped at step 6 evaluates there, the other not)."""
    model, _ = load_checkpoint(path)
    state = load_file(str(path / STATE_TENSORS))
    loop = dict(json.loads((path / STATE_JSON).read_text())["__dict__"])
    for key in ("best_val_loss", "best_step", "bad_evals", "val_loss"):
        del loop[key]
    return model.state_dict(), state, loop


def test_snapshot_copies_now_and_keeps_shared_tensors_shared():
    model = GPTModel(preset("tiny"))  # tied: the output head is the token embedding
    weights = snapshot_weights(model)
    assert weights["out_head.weight"] is weights["tok_emb.weight"]  # one copy, not two
    before = weights["tok_emb.weight"].clone()
    with torch.no_grad():
        model.tok_emb.weight.add_(1.0)
    assert torch.equal(weights["tok_emb.weight"], before)  # the live change is not in it
    state = {"step": torch.tensor(3.0), "betas": (0.9, 0.95), "ids": [0, 1]}
    copy = snapshot(state)
    state["step"] += 1  # AdamW counts its steps in place
    assert copy == {"step": torch.tensor(3.0), "betas": (0.9, 0.95), "ids": [0, 1]}
    # a frozen parameter never changes: referred to, not copied (a LoRA run's base model)
    model.trf_blocks[0].att.W_query.weight.requires_grad_(False)
    frozen = snapshot_weights(model)["trf_blocks.0.att.W_query.weight"]
    assert frozen.data_ptr() == model.trf_blocks[0].att.W_query.weight.data_ptr()


def test_the_writer_runs_one_write_at_a_time_and_says_what_is_in_flight(tmp_path, caplog):
    writer = checkpointer.CheckpointWriter(background=True)
    release, order = threading.Event(), []

    def write(step: int, *, hold: bool = False):
        def run() -> Path:
            if hold:
                assert release.wait(timeout=60)
            order.append(step)
            return tmp_path / f"step-{step}"

        return run

    writer.submit(1, tmp_path / "step-1", write(1, hold=True))
    assert writer.unlanded == (1, tmp_path / "step-1") and writer.newest == tmp_path / "step-1"
    assert writer.landed is None
    caplog.set_level(logging.INFO, logger="scratchgpt")
    threading.Timer(0.2, release.set).start()
    writer.submit(2, tmp_path / "step-2", write(2))  # waits for step 1 first
    assert "the checkpoint of step 1 is still being written: saving step 2 waits" in caplog.text
    writer.wait()
    assert order == [1, 2] and writer.landed == (2, tmp_path / "step-2")
    assert writer.unlanded is None


def test_background_checkpoints_equal_inline_ones_and_resume_exactly(
    tmp_path, shared_data, held_write, caplog
):
    verdict = shared_data("the-verdict.txt")
    inline = train(
        tiny_run(verdict, checkpoint_interval=2, checkpoint_async=False), out_dir=tmp_path / "a"
    )
    assert held_write == [threading.main_thread()] * 6  # 2, 4, ... 12, inline
    held_write.clear()
    run = tiny_run(verdict, checkpoint_interval=2, checkpoint_async=True)
    half = train(run, out_dir=tmp_path / "b", stop_at=6)
    # steps 3 and 4 ran while step 2 was written, on another thread
    assert len(held_write) == 3 and threading.main_thread() not in held_write
    assert "the checkpoint of step 2 is still being written: saving step 4 waits" in caplog.text
    # the run returned only once its last write had landed
    assert [s for s, _ in run_checkpoints(half.run_dir)] == [2, 4, 6]
    resumed = train(resume=tmp_path / "b")
    assert resumed.steps == 12
    assert step_losses(resumed.run_dir) == step_losses(inline.run_dir)  # bit for bit
    # every checkpoint holds its own step's state, exactly as the inline writes did
    for step, path in run_checkpoints(inline.run_dir):
        a_weights, a_state, a_loop = saved(path)
        b_weights, b_state, b_loop = saved(tmp_path / "b" / "checkpoints" / path.name)
        assert a_loop == b_loop, step
        for name, x in {**a_weights, **a_state}.items():
            assert torch.equal(x, {**b_weights, **b_state}[name]), (step, name)


@pytest.fixture
def clock(monkeypatch):
    """A fake clock that each training step moves 25 s on."""
    now = [0.0]
    real_step = Trainer.train_step

    def step(self):
        now[0] += 25.0
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", step)
    monkeypatch.setattr(checkpointer, "_now", lambda: now[0])
    return now


def test_checkpoints_by_the_clock_and_by_steps_whichever_comes_first(tmp_path, shared_data, clock):
    verdict = shared_data("the-verdict.txt")
    # evaluations at 0 and 12 only: no "best" saves in between
    common = {"eval_interval": 100, "checkpoint_minutes": 1.0}
    result = train(tiny_run(verdict, **common), out_dir=tmp_path / "clock")
    # 25 s a step: a minute has passed 3 steps after each save
    assert [s for s, _ in run_checkpoints(result.run_dir)] == [3, 6, 9, 12]
    clock[0] = 0.0
    result = train(tiny_run(verdict, checkpoint_interval=4, **common), out_dir=tmp_path / "both")
    # the step interval saves at 4 and 8, and each save starts the clock over
    assert [s for s, _ in run_checkpoints(result.run_dir)] == [3, 4, 7, 8, 11, 12]


def test_by_default_a_short_run_saves_its_best_evaluations_and_its_end(tmp_path, shared_data):
    result = train(tiny_run(shared_data("the-verdict.txt")), out_dir=tmp_path / "r")
    config = result.run_dir / "config.yaml"
    assert "checkpoint_interval: null" in config.read_text()  # not eval_interval any more
    best, better = float("inf"), set()
    for row in result.evaluations:  # step 0 sets the bar but is never saved
        if row["val_loss"] < best and row["step"] > 0:
            better.add(row["step"])
        best = min(best, row["val_loss"])
    assert [s for s, _ in run_checkpoints(result.run_dir)] == sorted(better | {12})


def test_a_failed_background_write_stops_the_run(tmp_path, shared_data, monkeypatch):
    real = trainer_mod.write_checkpoint

    def failing(task, model, run_dir, step, **kwargs):
        if step == 4:
            raise OSError(28, "No space left on device")
        return real(task, model, run_dir, step, **kwargs)

    monkeypatch.setattr(trainer_mod, "write_checkpoint", failing)
    run = tiny_run(shared_data("the-verdict.txt"), checkpoint_interval=2, eval_interval=100,
                   checkpoint_async=True)  # fmt: skip
    with pytest.raises(OSError, match="No space left on device"):
        train(run, out_dir=tmp_path / "r")
    # the error stopped the run at the next step, or at the next save at the latest
    assert [s for s, _ in run_checkpoints(tmp_path / "r")] == [2]


def test_the_checkpoint_fields_are_checked():
    from scratchgpt.config import ConfigError, TrainConfig

    with pytest.raises(ConfigError, match="checkpoint_minutes=-1"):
        TrainConfig(checkpoint_minutes=-1.0)
    assert dataclasses.replace(TrainConfig(), checkpoint_minutes=0).checkpoint_minutes == 0
    # by default, background writes where the host's cores are free (a GPU run), not on a CPU
    assert TrainConfig().checkpoint_async is None
    assert not checkpointer.writes_in_background(None, torch.device("cpu"))
    assert checkpointer.writes_in_background(None, torch.device("cuda", 0))
    assert checkpointer.writes_in_background(True, torch.device("cpu"))
    assert not checkpointer.writes_in_background(False, torch.device("cuda", 0))
    assert checkpointer.CheckpointWriter(background=None, device=torch.device("cuda", 0)).background


@pytest.mark.slow
def test_fsdp_processes_agree_on_the_clock_and_write_in_the_background(tmp_path, shared_data):
    """Two FSDP processes whose clocks are always due: every save gathers on both (a
    disagreement would hang the run), and each checkpoint holds its own step's AdamW state."""
    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("torch built without distributed")
    from scratchgpt.training.state import read_state

    from .test_distributed import STEPS, run, train_args

    out = tmp_path / "fsdp"
    args = train_args(shared_data("the-verdict.txt"), out, "--training.fsdp", "true",
                      "--checkpoint-minutes", "1e-9", "--keep-last", "20",
                      "--checkpoint-async")  # fmt: skip
    run(args, procs=2)
    found = run_checkpoints(out)
    assert [s for s, _ in found] == list(range(1, STEPS + 1))
    for step, path in found:
        moments = read_state(path)["optimizer"]["state"].values()
        assert {int(m["step"]) for m in moments} == {step}
