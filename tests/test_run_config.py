"""Run configs: YAML sections, validation messages, command-line overrides, conversion."""

import json
from pathlib import Path

import pytest
import yaml

from scratchgpt.cli import main
from scratchgpt.config import (
    ConfigError,
    RunConfig,
    convert_config,
    load_run_config,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("training:\n  lrr: 0.1\n", r"unknown key\(s\) training\.lrr \(did you mean 'lr'\?\)"),
        (
            "training:\n  learning_rate: 0.1\n",
            r"training\.learning_rate \(did you mean 'lr'\?\).*config convert",
        ),
        ("model:\n  n_layer: 2\n", r"model\.n_layer \(did you mean 'n_layers'\?\)"),
        ("trainin:\n  lr: 0.1\n", r"unknown section\(s\) 'trainin' \(did you mean 'training'\?\)"),
        ("training:\n  lr: 0\n", r"training\.lr=0\.0: must be > 0"),
        ("training:\n  lr: -1e-3\n", r"training\.lr=-0\.001: must be > 0"),
        ("training:\n  batch_size: 0\n", r"training\.batch_size=0: must be >= 1"),
        ("training:\n  batch_size: lots\n", r"training\.batch_size='lots': must be an integer"),
        ("training:\n  batch_size: 2.5\n", r"training\.batch_size=2\.5: must be an integer"),
        ("training:\n  lr: fast\n", r"training\.lr='fast': must be a number"),
        ("training:\n  compile: maybe\n", r"training\.compile='maybe': must be true or false"),
        (
            "model:\n  emb_dim: 100\n  n_heads: 3\n",
            r"emb_dim=100: must be divisible by n_heads=3",
        ),
        (
            "training:\n  max_steps: 10\n  warmup_steps: 20\n",
            r"training\.warmup_steps=20: longer than the run \(max_steps=10\)",
        ),
        ("training:\n  grad_accum: 0\n", r"training\.grad_accum=0: must be >= 1"),
        ("training:\n  precision: fp8\n", r"training\.precision='fp8': must be one of"),
        ("training:\n  beta2: 1.0\n", r"training\.beta2=1\.0: must be in \[0, 1\)"),
        ("training:\n  min_lr: 1.0\n", r"training\.min_lr=1\.0: must be in \[0, lr="),
        ("training:\n  max_steps: null\n", r"set max_steps or epochs"),
        ("data:\n  train_ratio: 1.5\n", r"data\.train_ratio=1\.5: must be strictly between"),
        ("data:\n  loader: shuffled\n", r"data\.loader='shuffled': must be one of"),
        ("tokenizer:\n  name: bpe\n", r"set tokenizer\.vocab_size"),
        ("model:\n  preset: gpt3\n", r"unknown preset 'gpt3'"),
        ("training: [1, 2]\n", r"section 'training' must be a mapping"),
        ("training:\n  lr: [0.1\n", r"not valid YAML"),
    ],
)
def test_bad_configs_name_the_field(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_run_config(path)
    assert str(path) in str(info.value)  # the file is named too


def test_yaml_sections_and_defaults(tmp_path):
    path = write(
        tmp_path,
        "model:\n  preset: tiny\n  context_length: 32\n"
        "training:\n  lr: 3e-4\n  max_steps: 50\n"  # PyYAML reads 3e-4 as a string: coerced
        "tokenizer:\n  name: gpt2\n",
    )
    run = load_run_config(path)
    assert run.model.context_length == 32 and run.model.emb_dim == 32  # the tiny preset's
    assert run.training.lr == 3e-4 and isinstance(run.training.lr, float)
    assert run.training.batch_size == 32 and run.data.source == "pydocs"  # defaults
    assert run.tokenizer.name == "gpt2"


def test_overrides_win_over_the_file(tmp_path):
    path = write(tmp_path, "training:\n  lr: 0.001\n  max_steps: 50\n")
    run = load_run_config(
        path, overrides={"training.lr": "3e-4", "training.max-steps": 7, "model.n_layers": "3"}
    )
    assert run.training.lr == 3e-4 and run.training.max_steps == 7 and run.model.n_layers == 3
    with pytest.raises(ConfigError, match=r"override 'lr': write it as section\.field"):
        load_run_config(path, overrides={"lr": 1})
    with pytest.raises(ConfigError, match=r"unknown section 'trainng'"):
        load_run_config(path, overrides={"trainng.lr": 1})


def test_effective_config_round_trips(tmp_path):
    run = load_run_config(None, overrides={"model.preset": "tiny", "training.epochs": 3})
    again = RunConfig.from_dict(yaml.safe_load(run.to_yaml()))
    assert again == run


def test_bare_model_json_is_the_model_section(tmp_path):
    path = write(
        tmp_path,
        json.dumps({"vocab_size": 100, "context_length": 16, "emb_dim": 8, "n_heads": 2,
                    "n_layers": 1, "drop_rate": 0.0, "qkv_bias": False}),
        "model.json",
    )  # fmt: skip
    run = load_run_config(path)
    assert run.model.emb_dim == 8 and run.model.tie_weights is False  # GPTConfig's default


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    run = load_run_config(path)
    assert run.training.max_steps or run.training.epochs


def test_shipped_configs_say_what_they_promise():
    verdict = load_run_config(CONFIGS / "the-verdict.yaml")
    assert (verdict.model.context_length, verdict.model.emb_dim, verdict.model.n_layers) == (
        256, 768, 12,
    )  # fmt: skip
    assert verdict.training.batch_size == 2 and verdict.training.lr == 4e-4
    assert verdict.training.weight_decay == 0.1 and verdict.training.epochs == 10
    assert verdict.data.train_ratio == 0.9
    assert verdict.model.init == "torch"  # the book's model keeps PyTorch's default init
    nano = load_run_config(CONFIGS / "shakespeare-char.yaml")
    m, t = nano.model, nano.training
    assert (m.n_layers, m.n_heads, m.emb_dim, m.context_length, m.drop_rate) == (
        6, 6, 384, 256, 0.2,
    )  # fmt: skip
    assert (t.batch_size, t.lr, t.min_lr, t.warmup_steps, t.max_steps, t.beta2) == (
        64, 1e-3, 1e-4, 100, 5000, 0.99,
    )  # fmt: skip
    gpt2 = load_run_config(CONFIGS / "gpt2-124M.yaml")
    assert gpt2.model.padded_vocab_size == 50304


def test_convert_seed_002_and_flat_json(tmp_path):
    seed = {
        "data": {"dataset_name": "the-verdict", "validation_split": 0.1},
        "model": {"embed_dim": 64, "num_layers": 2, "heads": 4, "max_block_size": 32},
        "training": {"batch_size": 8, "learning_rate": 0.0005, "epochs": 2,
                     "mixed_precision": True},
    }  # fmt: skip
    run = convert_config(seed)
    assert (run.model.emb_dim, run.model.n_layers, run.model.n_heads) == (64, 2, 4)
    assert run.model.context_length == 32 and run.data.source == "the-verdict"
    assert run.data.train_ratio == pytest.approx(0.9)
    assert run.training.lr == 5e-4 and run.training.epochs == 2
    assert run.training.precision == "auto"
    flat = {"vocab_size": 50257, "context_length": 256, "emb_dim": 768, "n_heads": 12,
            "n_layers": 12, "drop_rate": 0.1, "qkv_bias": False, "learning_rate": 4e-4}  # fmt: skip
    run = convert_config(flat)
    assert run.model.emb_dim == 768 and run.training.lr == 4e-4
    with pytest.raises(ConfigError, match="ff_dim=100: this GPT's feed-forward layer is 4 x"):
        convert_config({"embed_dim": 64, "ff_dim": 100})
    with pytest.raises(ConfigError, match="cannot convert key 'colour'"):
        convert_config({"colour": "blue"})


def test_cli_config_convert_and_show(tmp_path, capsys):
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"model": {"embed_dim": 64, "num_layers": 2, "heads": 4}}))
    new = tmp_path / "new.yaml"
    assert main(["config", "convert", str(old), str(new)]) == 0
    assert load_run_config(new).model.emb_dim == 64
    capsys.readouterr()
    assert main(["config", "show", str(new)]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["model"]["n_layers"] == 2 and shown["training"]["lr"] == 3e-3
    bad = write(tmp_path, "training:\n  lrr: 1\n", "bad.yaml")
    assert main(["config", "show", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'lr'" in err and "Traceback" not in err


def test_cli_train_overrides_reach_the_run(tmp_path, shared_data, capsys):
    out = tmp_path / "r"
    code = main(
        [
            "train", "--data", str(shared_data("the-verdict.txt")), "--out", str(out),
            "--preset", "tiny", "--model.n_layers", "1",
            "--training.max-steps", "2", "--training.batch_size=2", "--eval-batches", "1",
            "--sample-interval", "0", "--training.log-interval", "1",
        ]
    )  # fmt: skip
    assert code == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["model"]["n_layers"] == 1 and saved["training"]["max_steps"] == 2
    assert saved["training"]["batch_size"] == 2 and saved["training"]["eval_batches"] == 1
    # --resume with a longer run continues from step 2
    assert main(["train", "--resume", str(out), "--training.max-steps", "4"]) == 0
    # the summary counts this session's steps: 2, from step 2 to 4
    assert "trained 2 steps (from step 2 to 4)" in capsys.readouterr().out


@pytest.mark.slow
def test_the_verdict_config_runs(tmp_path, shared_data, capsys):
    """The book's chapter-5 config, three steps, with the data and GPT-2 files from
    ../shared/data (the config itself names the downloadable corpus and tiktoken's gpt2)."""
    verdict = shared_data("the-verdict.txt")
    gpt2_dir = shared_data("gpt2-encoder.json").parent
    code = main(
        [
            "train", "--config", str(CONFIGS / "the-verdict.yaml"),
            "--training.max-steps", "3", "--out", str(tmp_path / "r"),
            "--data.source", str(verdict), "--tokenizer.name", str(gpt2_dir),
            "--training.eval-batches", "1", "--training.sample-interval", "0",
        ]
    )  # fmt: skip
    assert code == 0
    assert "trained 3 steps" in capsys.readouterr().out
    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert saved["model"]["vocab_size"] == 50257 and saved["training"]["epochs"] == 10
