import itertools
import json
import math

import pytest
import torch
import yaml

from scratchgpt.checkpoint import load_checkpoint
from scratchgpt.config import ConfigError, preset
from scratchgpt.data import DataError
from scratchgpt.model import GPTModel
from scratchgpt.training import TrainConfig, lr_at, make_optimizer, train


def test_lr_schedule_warmup_then_cosine():
    kw = {"lr": 1.0, "min_lr": 0.1, "warmup_steps": 10, "max_steps": 110}
    assert lr_at(0, **kw) == pytest.approx(0.1)
    assert lr_at(9, **kw) == pytest.approx(1.0)
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(60, **kw) == pytest.approx(0.55)  # halfway down the cosine
    assert lr_at(110, **kw) == pytest.approx(0.1)
    values = [lr_at(s, **kw) for s in range(10, 111)]
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_weight_decay_only_on_matrices():
    model = GPTModel(preset("tiny"))
    opt = make_optimizer(model, lr=1e-3, weight_decay=0.1)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"])
    assert all(p.dim() < 2 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": 0}, "lr=0"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"max_steps": 10, "warmup_steps": 20}, "longer than the run"),
    ],
)
def test_train_config_validation(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**kwargs)


def test_short_training_run_learns_and_saves(tmp_path, shared_data):
    cfg = TrainConfig(
        max_steps=60,
        batch_size=8,
        lr=3e-3,
        eval_interval=30,
        sample_interval=30,
        sample_tokens=20,
        eval_batches=4,
    )
    result = train(
        data=shared_data("the-verdict.txt"),
        tokenizer="char",
        model=preset("tiny"),
        config=cfg,
        out_dir=tmp_path / "run",
    )
    losses = [row["val_loss"] for row in result.evaluations]
    assert [row["step"] for row in result.evaluations] == [0, 30, 60]
    assert losses[-1] < losses[0] - 0.5
    model, tok = load_checkpoint(result.run_dir)
    assert model.cfg.vocab_size == tok.vocab_size
    rows = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert rows[-1]["step"] == 60 and rows[-1]["val_loss"] == pytest.approx(losses[-1])
    assert math.isclose(rows[-1]["val_ppl"], math.exp(losses[-1]), rel_tol=1e-6)
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["training"]["max_steps"] == 60


def test_same_seed_same_run(tmp_path, shared_data):
    cfg = TrainConfig(max_steps=8, batch_size=4, eval_interval=4, sample_interval=0, eval_batches=2)
    runs = [
        train(
            data=shared_data("the-verdict.txt"),
            model=preset("tiny"),
            config=cfg,
            out_dir=tmp_path / f"r{i}",
        )
        for i in range(2)
    ]
    assert runs[0].final_val_loss == runs[1].final_val_loss
    a, _ = load_checkpoint(runs[0].checkpoint)
    b, _ = load_checkpoint(runs[1].checkpoint)
    assert all(
        torch.equal(x, y)
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_validation_split_too_small_names_the_split(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("abcdefghij" * 50)  # 500 chars: val split of 50 < 65 tokens
    with pytest.raises(DataError, match=r"the val split \(10% of .*has 50 tokens"):
        train(
            data=text, model=preset("tiny"), config=TrainConfig(max_steps=1), out_dir=tmp_path / "r"
        )
