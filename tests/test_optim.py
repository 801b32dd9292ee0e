"""Muon beside AdamW, and the warmup-stable-decay schedule: the update's shape, which
parameters each optimiser takes, training and exact resume through the trainer, the rates.

Training runs are the tiny preset on the-verdict's characters, a few steps on the CPU.
"""

import itertools
import math

import pytest
import torch
from torch import nn

from scratchgpt.config import ConfigError, LoRAConfig, RunConfig, TrainConfig, preset
from scratchgpt.errors import CheckpointError
from scratchgpt.model import GPTModel
from scratchgpt.training import train
from scratchgpt.training.finetune import prepare_for_training
from scratchgpt.training.optim import (
    Optimizers,
    build_optimizer,
    check_optimizer_state,
    group_lr,
    lr_at,
    run_length,
    split_parameters,
)
from scratchgpt.training.state import read_state

from .test_trainer import step_losses, tiny_run

needs_muon = pytest.mark.skipif(
    not hasattr(torch.optim, "Muon"), reason="torch.optim.Muon needs torch >= 2.9"
)

# The weight matrices of one tiny block: attention's four projections, the MLP's two layers.
BLOCK_MATRICES = (
    "att.W_query.weight",
    "att.W_key.weight",
    "att.W_value.weight",
    "att.out_proj.weight",
    "ff.layers.0.weight",
    "ff.layers.2.weight",
)


def names(pairs):
    return {n for n, _ in pairs}


# --- the Muon update -----------------------------------------------------------------------


@needs_muon
@pytest.mark.parametrize("shape", [(64, 32), (32, 128), (48, 48)])
def test_muon_update_is_nearly_orthogonal(shape):
    """From zero momentum, torch's Muon moves W by -lr * sqrt(max(1, rows/cols)) * O, where O
    is the quintic Newton-Schulz approximation of the gradient's polar factor U V^T: its
    singular values sit in a band around 1 (about 0.7-1.2 for the default coefficients, not
    exactly 1) however spread out the gradient's are, and it points along U V^T."""
    torch.manual_seed(0)
    rows, cols = shape
    k = min(shape)
    u, _, vh = torch.linalg.svd(torch.randn(shape), full_matrices=False)
    grad = u @ torch.diag(torch.logspace(0, -2, k)) @ vh  # singular values 1 ... 0.01
    weight = nn.Parameter(torch.zeros(shape))
    opt = torch.optim.Muon([weight], lr=0.02, weight_decay=0.0)
    weight.grad = grad.clone()
    opt.step()
    update = -weight.detach() / (0.02 * math.sqrt(max(1.0, rows / cols)))
    sv = torch.linalg.svdvals(update)
    assert torch.linalg.svdvals(grad).max() / torch.linalg.svdvals(grad).min() > 90
    assert sv.min() > 0.6 and sv.max() < 1.3, sv
    polar = u @ vh
    cosine = (update * polar).sum() / (update.norm() * polar.norm())
    assert cosine > 0.95


# --- which parameters go where -------------------------------------------------------------


@pytest.mark.parametrize("tied", [True, False])
def test_muon_takes_the_block_matrices_and_adamw_the_rest(tied):
    model = GPTModel(preset("tiny", tie_weights=tied))
    muon, adamw = split_parameters(model)
    assert names(muon) == {f"trf_blocks.{i}.{m}" for i in range(2) for m in BLOCK_MATRICES}
    expected_adamw = {"tok_emb.weight", "pos_emb.weight", "final_norm.scale", "final_norm.shift"}
    if not tied:
        expected_adamw.add("out_head.weight")  # tied, it *is* tok_emb.weight (listed once)
    for i in range(2):
        expected_adamw |= {
            f"trf_blocks.{i}.{n}"
            for n in (
                "norm1.scale",
                "norm1.shift",
                "norm2.scale",
                "norm2.shift",
                "att.out_proj.bias",
                "ff.layers.0.bias",
                "ff.layers.2.bias",
            )
        }
    assert names(adamw) == expected_adamw
    assert all(p.dim() == 2 for _, p in muon)
    assert len(muon) + len(adamw) == len(list(model.parameters()))  # each exactly once


@needs_muon
def test_built_optimizers_hold_the_split_and_only_trainable_parameters():
    model = GPTModel(preset("tiny"))
    prepare_for_training(model, "last-block", LoRAConfig(), pretrained=False)
    muon, adamw = split_parameters(model)
    assert names(muon) == {f"trf_blocks.1.{m}" for m in BLOCK_MATRICES}
    assert "tok_emb.weight" in names(adamw)  # the tied head trains
    assert not any(n.startswith("trf_blocks.0.") for n in names(muon) | names(adamw))
    opt = build_optimizer(model, TrainConfig(optimizer="muon"))
    assert isinstance(opt, Optimizers) and list(opt.optimizers) == ["adamw", "muon"]
    held = {id(p) for p in opt.optimizers["muon"].param_groups[0]["params"]}
    assert held == {id(p) for _, p in muon}
    in_adamw = [id(p) for g in opt.optimizers["adamw"].param_groups for p in g["params"]]
    assert sorted(in_adamw) == sorted(id(p) for _, p in adamw)
    # the trainer reads each group's peak before scheduling: AdamW's lr first, then Muon's
    assert [g["lr"] for g in opt.param_groups] == [3e-3, 3e-3, 0.02]


@needs_muon
def test_muon_with_nothing_to_train_is_one_line():
    model = GPTModel(preset("tiny"))
    prepare_for_training(model, "lora", LoRAConfig(), pretrained=True)  # adapters are not Linear
    with pytest.raises(ConfigError, match="Muon has nothing to train"):
        build_optimizer(model, TrainConfig(optimizer="muon", trainable="lora"))


def test_muon_on_an_old_torch_names_the_version(monkeypatch):
    monkeypatch.delattr(torch.optim, "Muon", raising=False)
    with pytest.raises(ConfigError, match=r"needs torch >= 2\.9"):
        build_optimizer(GPTModel(preset("tiny")), TrainConfig(optimizer="muon"))
    # adamw, the default, does not care
    assert isinstance(build_optimizer(GPTModel(preset("tiny")), TrainConfig()), torch.optim.AdamW)


@needs_muon
def test_a_state_from_the_other_optimizer_is_refused_in_one_line():
    model = GPTModel(preset("tiny"))
    adamw = build_optimizer(model, TrainConfig())
    muon = build_optimizer(model, TrainConfig(optimizer="muon"))
    check_optimizer_state(adamw, adamw.state_dict())
    check_optimizer_state(muon, muon.state_dict())
    with pytest.raises(CheckpointError, match="state is for adamw, but this run uses adamw"):
        check_optimizer_state(muon, adamw.state_dict())
    with pytest.raises(CheckpointError, match=r"state is for adamw \+ muon, but this run"):
        check_optimizer_state(adamw, muon.state_dict())
    with pytest.raises(CheckpointError):
        muon.load_state_dict(adamw.state_dict())


# --- through the trainer -------------------------------------------------------------------


@needs_muon
def test_a_tiny_model_learns_with_muon(tmp_path, shared_data):
    run = tiny_run(shared_data("the-verdict.txt"), optimizer="muon", max_steps=15, eval_interval=15)
    result = train(run, out_dir=tmp_path / "r")
    first, last = (row["val_loss"] for row in (result.evaluations[0], result.evaluations[-1]))
    assert last < first - 0.5, (first, last)


@needs_muon
@pytest.mark.parametrize("precision", ["fp32", "fp16"])  # fp16: GradScaler over both
def test_resume_with_muon_is_bit_exact(tmp_path, shared_data, precision):
    run = tiny_run(
        shared_data("the-verdict.txt"),
        optimizer="muon",
        precision=precision,
        max_steps=8,
        checkpoint_interval=100,
    )
    straight = train(run, out_dir=tmp_path / "straight")
    train(run, out_dir=tmp_path / "halves", stop_at=4)
    resumed = train(resume=tmp_path / "halves")
    a, b = step_losses(straight.run_dir), step_losses(resumed.run_dir)
    assert sorted(a) == list(range(1, 9)) and a == b  # every step, bit for bit
    state = read_state(straight.checkpoint)["optimizer"]
    assert set(state) == {"adamw", "muon"}
    buffers = [s["momentum_buffer"] for s in state["muon"]["state"].values()]
    assert len(buffers) == 12 and all(b.abs().sum() > 0 for b in buffers)
    # Muon's saved rate is its own schedule's at the last step (7), not AdamW's
    t = run.training
    max_steps, warmup = run_length(t, batches_per_epoch=1000)
    want = group_lr(7, t, peak=t.muon_lr, warmup_steps=warmup, max_steps=max_steps)
    assert state["muon"]["param_groups"][0]["lr"] == want
    assert state["adamw"]["param_groups"][0]["lr"] == group_lr(
        7, t, peak=t.lr, warmup_steps=warmup, max_steps=max_steps
    )


@pytest.mark.slow
@needs_muon
def test_muon_under_ddp_equals_one_process(tmp_path, shared_data):
    """Each process orthogonalises the same all-reduced gradient: two processes taking one
    micro-batch each train as one process accumulating two."""
    from .test_distributed import losses, run, train_args

    verdict = shared_data("the-verdict.txt")
    run(train_args(verdict, tmp_path / "one", "--optimizer", "muon"))
    run(train_args(verdict, tmp_path / "ddp", "--optimizer", "muon"), procs=2)
    one, ddp = losses(tmp_path / "one"), losses(tmp_path / "ddp")
    assert len(one) == len(ddp) > 0
    assert ddp == pytest.approx(one, abs=1e-4)


# --- the schedules -------------------------------------------------------------------------


def test_wsd_warms_up_holds_then_falls_linearly_to_min_lr():
    kw = {"lr": 1.0, "min_lr": 0.1, "warmup_steps": 10, "max_steps": 110, "schedule": "wsd"}
    # cooldown 0.2 of 110 = the last 22 steps: the line runs from step 88 (lr) to 110 (min_lr)
    assert lr_at(0, **kw) == pytest.approx(0.1)
    assert lr_at(9, **kw) == pytest.approx(1.0)  # warmup's end
    assert lr_at(10, **kw) == 1.0
    assert lr_at(60, **kw) == 1.0  # stable
    assert lr_at(87, **kw) == 1.0
    assert lr_at(88, **kw) == pytest.approx(1.0)  # the decay starts from lr
    assert lr_at(99, **kw) == pytest.approx(0.1 + 0.9 * 11 / 22)
    assert lr_at(109, **kw) == pytest.approx(0.1 + 0.9 / 22)  # the last step trained
    assert lr_at(110, **kw) == pytest.approx(0.1)
    values = [lr_at(s, **kw) for s in range(10, 111)]
    assert all(a >= b for a, b in itertools.pairwise(values))
    # a cooldown longer than the time after warmup starts where warmup ends, never jumps
    short = {**kw, "max_steps": 20, "cooldown_fraction": 0.8}
    assert lr_at(10, **short) == pytest.approx(1.0)
    assert lr_at(15, **short) == pytest.approx(0.1 + 0.9 * 5 / 10)
    whole = {**kw, "warmup_steps": 0, "max_steps": 10, "cooldown_fraction": 1.0}
    assert lr_at(0, **whole) == pytest.approx(1.0)
    assert lr_at(5, **whole) == pytest.approx(0.55)


def test_cosine_is_still_the_default_and_unchanged():
    kw = {"lr": 1.0, "min_lr": 0.1, "warmup_steps": 10, "max_steps": 110}
    for step in (0, 9, 10, 37, 60, 109, 110, 200):
        if step < 10:
            want = (step + 1) / 10
        else:
            want = 0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, (step - 10) / 100)))
        assert lr_at(step, **kw) == lr_at(step, **kw, schedule="cosine") == pytest.approx(want)


@pytest.mark.parametrize("schedule", ["cosine", "wsd"])
def test_every_group_follows_the_schedule_scaled_to_its_peak(schedule):
    t = TrainConfig(lr=1e-3, min_lr=1e-4, schedule=schedule, muon_lr=0.02, max_steps=50)
    for step in range(51):
        adamw = group_lr(step, t, peak=t.lr, warmup_steps=5, max_steps=50)
        assert adamw == lr_at(
            step, lr=1e-3, min_lr=1e-4, warmup_steps=5, max_steps=50, schedule=schedule
        )  # exactly: AdamW-only runs keep their rates to the bit
        muon = group_lr(step, t, peak=t.muon_lr, warmup_steps=5, max_steps=50)
        assert muon == pytest.approx(20 * adamw, rel=1e-12)
    assert group_lr(50, t, peak=0.02, warmup_steps=5, max_steps=50) == pytest.approx(2e-3)


# --- config errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"optimizer": "sgd"}, r"training.optimizer='sgd': must be one of adamw, muon"),
        ({"schedule": "linear"}, r"training.schedule='linear': must be one of cosine, wsd"),
        ({"cooldown_fraction": 0.0}, r"cooldown_fraction=0.0: must be in \(0, 1\]"),
        ({"cooldown_fraction": 1.5}, r"cooldown_fraction=1.5: must be in \(0, 1\]"),
        ({"muon_lr": 0.0}, "muon_lr=0.0: must be > 0"),
        ({"muon_momentum": 1.0}, r"muon_momentum=1.0: must be in \[0, 1\)"),
        ({"optimizer": "muon", "fsdp": True}, "Muon needs whole matrices"),
    ],
)
def test_optimizer_and_schedule_validation(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**kwargs)


def test_a_misspelt_optimizer_in_a_config_gets_the_valid_names():
    with pytest.raises(ConfigError, match="adamw, muon") as info:
        RunConfig.from_dict({"training": {"optimizer": "moun"}})
    assert "muon" in str(info.value) and len(str(info.value).splitlines()) == 1
    ok = RunConfig.from_dict({"training": {"optimizer": "muon", "schedule": "wsd"}})
    assert (ok.training.optimizer, ok.training.schedule) == ("muon", "wsd")
    assert TrainConfig(cooldown_fraction=1.0).cooldown_fraction == 1.0
