"""The production trainer: exact resume, checkpoints that survive, failures that explain.

Every run here is the tiny preset on the-verdict's characters, a few steps on the CPU.
"""

import json
import logging
import math
import os
import signal
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from scratchgpt.checkpoint import load_checkpoint, run_checkpoints
from scratchgpt.config import ConfigError, RunConfig, TrainConfig, load_run_config, preset
from scratchgpt.training import TrainingError, lm as lm_mod, train
from scratchgpt.training.state import read_state
from scratchgpt.training.trainer import Trainer

GOLDEN = Path(__file__).parent / "golden" / "tiny-20-steps.json"


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def step_losses(run_dir: Path) -> dict[int, float]:
    """step -> training loss of that step (log_interval=1 makes one row per step)."""
    return {r["step"]: r["train_loss"] for r in rows(run_dir) if r["step"] > 0}


def tiny_run(verdict: Path, *, drop_rate: float = 0.1, **training) -> RunConfig:
    defaults = {
        "max_steps": 12,
        "batch_size": 4,
        "lr": 3e-3,
        "log_interval": 1,
        "eval_interval": 4,
        "eval_batches": 2,
        "sample_interval": 0,
    }
    return RunConfig.from_dict(
        {
            # dropout by default: the RNG must resume too
            "model": {"preset": "tiny", "drop_rate": drop_rate},
            "data": {"source": str(verdict)},
            "training": {**defaults, **training},
        }
    )


def test_resume_is_bit_exact(tmp_path, shared_data):
    run = tiny_run(shared_data("the-verdict.txt"), checkpoint_interval=100)
    straight = train(run, out_dir=tmp_path / "straight")
    half = train(run, out_dir=tmp_path / "halves", stop_at=6)
    assert half.steps == 6 and [s for s, _ in run_checkpoints(half.run_dir)][-1] == 6
    resumed = train(resume=tmp_path / "halves")
    assert resumed.steps == 12
    a, b = step_losses(straight.run_dir), step_losses(resumed.run_dir)
    assert sorted(a) == list(range(1, 13)) and a == b  # every step, bit for bit
    m1, _ = load_checkpoint(straight.run_dir)
    m2, _ = load_checkpoint(resumed.run_dir)
    for (name, x), y in zip(m1.state_dict().items(), m2.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


def test_golden_losses(tmp_path, shared_data):
    """The tiny preset, 20 steps, fixed seed: catches any silent change to the training math."""
    run = tiny_run(shared_data("the-verdict.txt"), max_steps=20, eval_interval=20)
    losses = step_losses(train(run, out_dir=tmp_path / "r").run_dir)
    got = [losses[s] for s in range(1, 21)]
    if os.environ.get("SCRATCHGPT_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps({"steps": 20, "train_loss": got}, indent=1) + "\n")
    expected = json.loads(GOLDEN.read_text())["train_loss"]
    # Different CPUs vectorise reductions differently: allow float32 noise, not a real change.
    assert got == pytest.approx(expected, abs=2e-4)
    assert got[-1] < got[0] - 0.5


def test_checkpoints_keep_last_and_best(tmp_path, shared_data):
    run = tiny_run(shared_data("the-verdict.txt"), max_steps=12, checkpoint_interval=2, keep_last=2)
    result = train(run, out_dir=tmp_path / "r")
    steps = [s for s, _ in run_checkpoints(result.run_dir)]
    evals = {r["step"]: r["val_loss"] for r in result.evaluations if r["step"] > 0}
    best = min(evals, key=evals.get)
    assert steps[-2:] == [10, 12] and set(steps) <= {10, 12, best} and len(steps) <= 3
    link = result.run_dir / "checkpoints" / "best"
    assert link.resolve() == result.best_checkpoint.resolve()
    assert result.best_checkpoint.name == f"step-{best:08d}"
    meta = json.loads((result.checkpoint / "config.json").read_text())["metadata"]
    assert meta["step"] == 12 and meta["run"]["training"]["keep_last"] == 2
    # the effective config is saved and rebuilds the same run
    saved = load_run_config(result.run_dir / "config.yaml")
    assert saved.model.vocab_size == load_checkpoint(result.run_dir)[1].vocab_size
    assert saved.training == run.training


def test_nan_loss_stops_naming_the_step(tmp_path, shared_data, monkeypatch):
    real = lm_mod.lm_loss
    calls = {"n": 0}

    def poisoned(logits, targets):
        loss = real(logits, targets)
        if not torch.is_grad_enabled():  # an evaluation, not a training step
            return loss
        calls["n"] += 1
        return loss * math.nan if calls["n"] == 7 else loss  # the 7th training forward

    monkeypatch.setattr(lm_mod, "lm_loss", poisoned)
    run = tiny_run(
        shared_data("the-verdict.txt"), checkpoint_interval=4, eval_interval=100, log_interval=5
    )
    with pytest.raises(TrainingError, match=r"loss became nan at step 7.*step-00000004"):
        train(run, out_dir=tmp_path / "r")
    # the last good checkpoint is intact and holds step 4; nothing after it was saved
    assert [s for s, _ in run_checkpoints(tmp_path / "r")] == [4]
    model, _ = load_checkpoint(tmp_path / "r")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_early_stopping(tmp_path, shared_data):
    # With min_delta this large no evaluation counts as better than the first (step 0), so
    # the run stops after `patience` evaluations.
    run = tiny_run(
        shared_data("the-verdict.txt"),
        max_steps=200,
        eval_interval=2,
        early_stopping_patience=3,
        min_delta=100.0,
    )
    result = train(run, out_dir=tmp_path / "r")
    assert result.stopped_early and result.steps == 6
    assert [r["step"] for r in result.evaluations] == [0, 2, 4, 6]
    assert [s for s, _ in run_checkpoints(result.run_dir)][-1] == 6  # saved on the way out
    # a real improvement resets the count: without min_delta the run goes on
    run = tiny_run(
        shared_data("the-verdict.txt"), max_steps=8, eval_interval=2, early_stopping_patience=1
    )
    assert not train(run, out_dir=tmp_path / "r2").stopped_early


def test_sigint_saves_and_resumes(tmp_path, shared_data, monkeypatch):
    real = lm_mod.lm_loss
    calls = {"n": 0}

    def interrupting(logits, targets):
        calls["n"] += torch.is_grad_enabled()  # count training forwards only
        if calls["n"] == 5 and torch.is_grad_enabled():  # the signal arrives mid-step 5
            os.kill(os.getpid(), signal.SIGINT)
        return real(logits, targets)

    monkeypatch.setattr(lm_mod, "lm_loss", interrupting)
    run = tiny_run(shared_data("the-verdict.txt"), checkpoint_interval=100, eval_interval=100)
    result = train(run, out_dir=tmp_path / "r")
    assert result.interrupted and result.steps == 5
    assert [s for s, _ in run_checkpoints(result.run_dir)] == [5]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    monkeypatch.setattr(lm_mod, "lm_loss", real)
    assert train(resume=result.run_dir).steps == 12


def test_gradient_accumulation_matches_a_bigger_batch(tmp_path, shared_data):
    """batch 4 x accumulation 2 == batch 8: micro-batches 2s and 2s+1 of 4 windows are
    exactly batch s of 8 (same epoch order), and their mean gradient is the batch's."""
    verdict = shared_data("the-verdict.txt")
    common = {"max_steps": 4, "eval_interval": 4, "drop_rate": 0.0}
    big = train(tiny_run(verdict, batch_size=8, **common), out_dir=tmp_path / "big")
    acc = train(tiny_run(verdict, batch_size=4, grad_accum=2, **common), out_dir=tmp_path / "acc")
    a, b = step_losses(big.run_dir), step_losses(acc.run_dir)
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    assert [a[s] for s in a] == pytest.approx([b[s] for s in a], abs=1e-5)
    assert rows(acc.run_dir)[-1]["tokens"] == 4 * 8 * 64  # every micro-batch is counted
    m1, _ = load_checkpoint(big.run_dir)
    m2, _ = load_checkpoint(acc.run_dir)
    for x, y in zip(m1.parameters(), m2.parameters(), strict=True):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-4)


def test_epochs_set_the_number_of_steps(tmp_path, shared_data):
    run = tiny_run(
        shared_data("the-verdict.txt"), max_steps=None, epochs=2, batch_size=16, eval_interval=50
    )
    result = train(run, out_dir=tmp_path / "r")
    # 90% of 20,479 characters -> (18,431 - 64 - 1) // 64 + 1 = 287 windows -> 17 batches of 16
    assert result.steps == result.max_steps == 2 * 17
    # both set: whichever ends first
    run = tiny_run(shared_data("the-verdict.txt"), max_steps=3, epochs=2, batch_size=16)
    assert train(run, out_dir=tmp_path / "r2").steps == 3


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_cpu_trains_and_resumes(tmp_path, shared_data, precision):
    run = tiny_run(
        shared_data("the-verdict.txt"), max_steps=6, precision=precision, eval_interval=6
    )
    result = train(run, out_dir=tmp_path / "r")
    assert result.evaluations[-1]["val_loss"] < result.evaluations[0]["val_loss"]
    state = read_state(result.checkpoint)
    assert (state["scaler"] is not None) == (precision == "fp16")  # fp16: loss scaling kept
    train(run, out_dir=tmp_path / "h", stop_at=3)
    assert step_losses(train(resume=tmp_path / "h").run_dir) == step_losses(result.run_dir)


def test_activation_checkpointing_gives_the_same_step(tmp_path, shared_data):
    verdict = shared_data("the-verdict.txt")
    plain = train(tiny_run(verdict, max_steps=3, eval_interval=3), out_dir=tmp_path / "a")
    ckpt = train(
        tiny_run(verdict, max_steps=3, eval_interval=3, activation_checkpointing=True),
        out_dir=tmp_path / "b",
    )
    assert step_losses(plain.run_dir) == pytest.approx(step_losses(ckpt.run_dir), abs=1e-6)
    # the saved weights carry no wrapper names: the file's keys are the plain run's
    model, _ = load_checkpoint(ckpt.run_dir)
    assert set(model.state_dict()) == set(load_checkpoint(plain.run_dir)[0].state_dict())
    keys = [
        set(safe_open(str(r.checkpoint / "model.safetensors"), "pt").keys()) for r in (plain, ckpt)
    ]
    assert keys[0] == keys[1] and not any("_checkpoint_wrapped_module" in k for k in keys[1])


def test_activation_checkpointing_wraps_every_block_and_keeps_the_names():
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointWrapper

    from scratchgpt.model import GPTModel
    from scratchgpt.training.distributed import checkpoint_activations

    model = GPTModel(preset("tiny"))
    names = list(model.state_dict())
    checkpoint_activations(model)
    assert all(isinstance(block, CheckpointWrapper) for block in model.trf_blocks)
    assert list(model.state_dict()) == names  # the wrapper's level is hidden from state dicts
    model.load_state_dict(GPTModel(preset("tiny")).state_dict())  # and loads plain weights


def test_padded_vocabulary_is_never_sampled(tmp_path, shared_data):
    run = RunConfig.from_dict(
        {
            "model": {"preset": "tiny", "vocab_multiple": 64},
            "data": {"source": str(shared_data("the-verdict.txt"))},
            "training": {"max_steps": 2, "batch_size": 2, "eval_batches": 1, "sample_interval": 0},
        }
    )
    result = train(run, out_dir=tmp_path / "r")
    model, tok = load_checkpoint(result.run_dir)
    assert (
        model.tok_emb.weight.shape[0] % 64 == 0 and model.tok_emb.weight.shape[0] > tok.vocab_size
    )
    logits = model(torch.zeros(1, 3, dtype=torch.long))
    assert logits.shape[-1] == tok.vocab_size == model.cfg.vocab_size


def test_metrics_rows_have_the_documented_fields(tmp_path, shared_data, caplog):
    caplog.set_level(logging.INFO, logger="scratchgpt")
    run = tiny_run(shared_data("the-verdict.txt"), max_steps=8, log_interval=2)
    result = train(run, out_dir=tmp_path / "r")
    logged = rows(result.run_dir)
    for row in logged[1:]:
        for key in ("step", "tokens", "train_loss", "lr", "tokens_per_sec", "grad_norm"):
            assert key in row, key
    assert [r["step"] for r in logged] == [0, 2, 4, 6, 8]
    assert all("val_loss" in r for r in logged if r["step"] in (0, 4, 8))
    assert "val_loss" not in logged[1]
    assert (result.run_dir / "train.log").read_text().count("val loss") >= 3


def test_train_config_still_works_as_the_training_section(tmp_path, shared_data):
    result = train(
        TrainConfig(max_steps=2, batch_size=2, eval_batches=1, sample_interval=0),
        data=shared_data("the-verdict.txt"),
        model=preset("tiny"),
        out_dir=tmp_path / "r",
    )
    assert result.steps == 2 and result.checkpoint.name == "step-00000002"


def test_train_on_prepared_shards(tmp_path, shared_data):
    from scratchgpt.data import prepare
    from scratchgpt.tokenizers import get_tokenizer

    verdict = shared_data("the-verdict.txt").read_text()
    docs = tmp_path / "docs.jsonl"
    paragraphs = [p for p in verdict.split("\n\n") if p.strip()]
    docs.write_text("".join(json.dumps({"text": p}) + "\n" for p in paragraphs))
    tok = get_tokenizer(shared_data("gpt2-encoder.json").parent)
    out = prepare(docs, tokenizer=tok, out_dir=tmp_path / "prep", val_fraction=0.2,
                  num_workers=1)  # fmt: skip
    run = RunConfig.from_dict(
        {
            "model": {"preset": "tiny"},
            "data": {"source": str(out)},
            "training": {"max_steps": 4, "batch_size": 4, "eval_batches": 2, "log_interval": 1,
                         "sample_interval": 0},
        }
    )  # fmt: skip
    result = train(run, out_dir=tmp_path / "r")
    model, saved_tok = load_checkpoint(result.run_dir)
    assert model.cfg.vocab_size == 50257 and saved_tok.encode("Hello") == [15496]
    assert result.evaluations[-1]["val_loss"] < result.evaluations[0]["val_loss"]
    # the random loader (auto for prepared data) resumes exactly too
    half = train(run, out_dir=tmp_path / "h", stop_at=2)
    assert half.steps == 2
    resumed = train(resume=tmp_path / "h")
    assert step_losses(resumed.run_dir) == step_losses(result.run_dir)


def test_streamed_data_needs_a_fixed_tokenizer(tmp_path):
    run = RunConfig.from_dict({"data": {"source": "hf:roneneldan/TinyStories"}})
    with pytest.raises(ConfigError, match="streamed, so the tokenizer cannot be built"):
        train(run, out_dir=tmp_path / "r")


def test_tensorboard_events_are_written(tmp_path, shared_data):
    pytest.importorskip("tensorboard")
    run = tiny_run(shared_data("the-verdict.txt"), max_steps=2, tensorboard=True)
    result = train(run, out_dir=tmp_path / "r")
    assert list((result.run_dir / "tensorboard").glob("events.out.tfevents.*"))


def test_out_of_memory_says_what_to_lower(tmp_path, shared_data, monkeypatch):
    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Trainer, "forward_backward", oom)
    run = tiny_run(shared_data("the-verdict.txt"), max_steps=2)
    with pytest.raises(
        TrainingError,
        match=r"ran out of memory at step 0 \(batch_size=4.*"
        r"lower training\.batch_size.*grad_accum.*activation_checkpointing",
    ):
        train(run, out_dir=tmp_path / "r")


@pytest.mark.slow
def test_compiled_training_matches_eager(tmp_path, shared_data):
    verdict = shared_data("the-verdict.txt")
    common = {"max_steps": 3, "eval_interval": 3, "drop_rate": 0.0}
    eager = train(tiny_run(verdict, **common), out_dir=tmp_path / "eager")
    compiled = train(tiny_run(verdict, compile=True, **common), out_dir=tmp_path / "compiled")
    a, b = step_losses(eager.run_dir), step_losses(compiled.run_dir)
    assert [a[s] for s in a] == pytest.approx([b[s] for s in a], abs=1e-4)
    model, _ = load_checkpoint(compiled.run_dir)
    assert not any(k.startswith("_orig_mod.") for k in model.state_dict())


def test_summary_after_a_resume_counts_this_session(tmp_path, shared_data):
    run = tiny_run(shared_data("the-verdict.txt"), eval_interval=3)
    half = train(run, out_dir=tmp_path / "r", stop_at=6)
    assert half.summary().startswith("trained 6 steps (from step 0 to 6): val loss")
    assert f"resume with: scratchgpt train --resume {tmp_path / 'r'}" in half.summary()
    resumed = train(resume=tmp_path / "r")
    assert (resumed.start_step, resumed.steps) == (6, 12)
    assert resumed.start_val_loss == half.final_val_loss  # the checkpoint's, as the start
    lines = resumed.summary().splitlines()
    assert lines[0] == (
        f"trained 6 steps (from step 6 to 12): val loss {half.final_val_loss:.3f} -> "
        f"{resumed.final_val_loss:.3f}"
    )
    assert lines[1] == f"checkpoint: {tmp_path / 'r' / 'checkpoints' / 'step-00000012'}"
    assert f"generate with: scratchgpt generate --checkpoint {tmp_path / 'r'}" in lines[-1]
    assert "resume with" not in resumed.summary()  # finished: nothing to resume


CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _cpu_recipe(path: Path) -> list[str]:
    """The arguments of the CPU command line in a config's comment header."""
    import shlex

    header = [line for line in path.read_text().splitlines() if "--training.device cpu" in line]
    assert len(header) == 1, "the header should give one CPU command line"
    return shlex.split(header[0].lstrip("# "))[1:]  # drop "scratchgpt"


@pytest.mark.slow
def test_the_cpu_recipe_in_the_shakespeare_config_runs_without_the_warning(
    tmp_path, shared_data, caplog
):
    from scratchgpt.cli import main

    caplog.set_level(logging.INFO, logger="scratchgpt")
    code = main(
        [*_cpu_recipe(CONFIGS / "shakespeare-char.yaml"), "--training.max-steps", "1",
         "--warmup-steps", "0", "--out", str(tmp_path / "r"),
         "--data.source", str(shared_data("tinyshakespeare.txt")), "--sample-interval", "0"]
    )  # fmt: skip
    assert code == 0 and "each evaluation reads" not in caplog.text
    saved = load_run_config(tmp_path / "r" / "config.yaml")
    assert (saved.model.n_layers, saved.model.context_length, saved.training.eval_batches) == (
        4, 64, 20,
    )  # fmt: skip


def test_a_gpu_sized_evaluation_on_a_cpu_warns_naming_the_flags(
    tmp_path, shared_data, caplog, monkeypatch
):
    import dataclasses

    from scratchgpt.training.lm import slow_cpu_evaluation

    path = CONFIGS / "shakespeare-char.yaml"
    nano = load_run_config(path)
    chars = dataclasses.replace(nano, model=dataclasses.replace(nano.model, vocab_size=65))
    warning = slow_cpu_evaluation(chars, torch.device("cpu"))
    assert "each evaluation reads 6,553,600 tokens" in warning
    for flag in ("--training.eval-batches", "--training.batch-size", "--context-length"):
        assert flag in warning
    assert slow_cpu_evaluation(chars, torch.device("cuda")) is None  # sized for a GPU
    assert slow_cpu_evaluation(load_run_config(), torch.device("cpu")) is None  # the default
    # The config's header names the CPU flags; with them, no warning.
    args = _cpu_recipe(path)
    short = {"--context-length": "model.context_length", "--drop-rate": "model.drop_rate"}
    pairs = dict(zip(args[1::2], args[2::2], strict=True))  # after "train": --flag value ...
    assert pairs.pop("--config") == str(path.relative_to(path.parents[1]))
    cpu = load_run_config(
        path, overrides={short.get(k, k.removeprefix("--")): v for k, v in pairs.items()}
    )
    assert (cpu.training.eval_batches, cpu.training.batch_size, cpu.model.context_length) == (
        20, 12, 64,
    )  # fmt: skip
    cpu = dataclasses.replace(cpu, model=dataclasses.replace(cpu.model, vocab_size=65))
    assert slow_cpu_evaluation(cpu, torch.device("cpu")) is None
    # and train() logs the warning when the evaluation is too big for a CPU
    caplog.clear()
    big = tiny_run(shared_data("the-verdict.txt"), max_steps=1, eval_batches=3, device="cpu")
    monkeypatch.setattr(lm_mod, "CPU_EVAL_SECONDS", 0.0)
    train(big, out_dir=tmp_path / "big")
    assert "each evaluation reads 1,536 tokens (training.eval_batches=3 x 2" in caplog.text
