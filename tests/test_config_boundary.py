"""The plain-data boundary of the configs (pydantic coercion, one-line errors), the help on
every field, and SamplingConfig."""

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scratchgpt.config import (
    ConfigError,
    DataConfig,
    GPTConfig,
    ModelSource,
    RunConfig,
    SamplingConfig,
    TokenizerConfig,
    TrainConfig,
    from_data,
    load_run_config,
)
from scratchgpt.errors import ConfigError as ErrorsConfigError, MissingExtraError

SRC = Path(__file__).resolve().parents[1] / "src" / "scratchgpt"
CONFIG_CLASSES = (
    GPTConfig,
    TrainConfig,
    DataConfig,
    TokenizerConfig,
    RunConfig,
    ModelSource,
    SamplingConfig,
)


def test_yaml_strings_become_numbers(tmp_path):
    text = "training:\n  lr: 3e-4\n  min_lr: 1e-5\n  grad_clip: 1\n"
    assert yaml.safe_load(text)["training"]["lr"] == "3e-4"  # what PyYAML hands over
    path = tmp_path / "run.yaml"
    path.write_text(text)
    t = load_run_config(path).training
    assert t.lr == 3e-4 and type(t.lr) is float
    assert t.min_lr == 1e-5 and type(t.min_lr) is float
    assert t.grad_clip == 1.0 and type(t.grad_clip) is float  # an int where a float is meant


@pytest.mark.parametrize(
    ("override", "field", "expected"),
    [
        ({"training.max_steps": "1_000"}, "max_steps", 1000),
        ({"training.max_steps": "2.0"}, "max_steps", 2),
        ({"training.compile": "yes"}, "compile", True),
        ({"training.compile": "true"}, "compile", True),
        ({"training.compile": "no"}, "compile", False),
        ({"training.compile": "false"}, "compile", False),
        ({"training.warmup_steps": "none"}, "warmup_steps", None),
        ({"training.sample_prompt": "null"}, "sample_prompt", None),
        ({"training.epochs": "3"}, "epochs", 3.0),
    ],
)
def test_flag_strings_are_coerced(override, field, expected):
    value = getattr(load_run_config(None, overrides=override).training, field)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("section", "data", "line"),
    [
        ("training", {"lr": [0.1]}, "training.lr=[0.1]: must be a number"),
        ("training", {"batch_size": {"a": 1}}, "training.batch_size={'a': 1}: must be an integer"),
        ("training", {"max_steps": True}, "training.max_steps=True: must be an integer"),
        ("training", {"lr": False}, "training.lr=False: must be a number"),
        ("training", {"batch_size": "none"}, "training.batch_size='none': must be an integer"),
        ("training", {"compile": 2}, "training.compile=2: must be true or false"),
        ("data", {"source": 12}, "data.source=12: must be a string"),
        (
            "data",
            {"loader": "randm"},
            "data.loader='randm': must be one of auto, sequential, random (did you mean 'random'?)",
        ),
        ("model", {"n_layers": [2]}, "model.n_layers=[2]: must be an integer"),
        ("model", {"init_from": 5}, "model.init_from=5: must be a string"),
        ("model", {"init_from": "gpt2", "context_length": "x"}, "model.context_length='x'"),
    ],
)
def test_a_wrong_type_is_one_line_naming_section_and_field(section, data, line):
    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict({section: data})
    message = str(info.value)
    assert message.splitlines() == [message.splitlines()[0]]  # one problem, one line
    assert message.startswith(line)


def test_every_problem_is_reported_one_line_each(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "model:\n  n_layers: two\n"
        "data:\n  loader: shuffled\n"
        "training:\n  lr: fast\n  lrr: 1\n  compile: maybe\n  batch_size: 0\n"
    )
    with pytest.raises(ConfigError) as info:
        load_run_config(path)
    lines = str(info.value).splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines)  # each line names the file
    expected = [
        "training.lrr (did you mean 'lr'?)",
        "model.n_layers='two': must be an integer",
        "data.loader='shuffled': must be one of",
        "training.lr='fast': must be a number",
        "training.compile='maybe': must be true or false",
    ]
    for fragment in expected:
        assert sum(fragment in line for line in lines) == 1, (fragment, lines)
    assert len(lines) == len(expected)  # batch_size=0 is a range check: after the types pass


def test_range_checks_of_several_sections_are_all_reported():
    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict(
            {"model": {"emb_dim": 100, "n_heads": 3}, "training": {"lr": 0}, "data": {"stride": 0}}
        )
    lines = str(info.value).splitlines()
    assert lines == [
        "model.emb_dim=100: must be divisible by n_heads=3 (each head gets emb_dim / n_heads "
        "dimensions); try emb_dim=102 or an n_heads dividing 100",
        "data.stride=0: must be >= 1",
        "training.lr=0.0: must be > 0",
    ]


def test_from_data_for_one_dataclass():
    t = from_data(TrainConfig, {"lr": "1e-3", "min_lr": 0, "compile": "on"}, section="training")
    assert (t.lr, t.min_lr, t.compile) == (1e-3, 0.0, True)
    with pytest.raises(ConfigError, match=r"^training\.lr='x': must be a number$"):
        from_data(TrainConfig, {"lr": "x"}, section="training")
    with pytest.raises(ConfigError, match=r"^lr='x': must be a number$"):
        from_data(TrainConfig, {"lr": "x"})  # no section: the bare field
    with pytest.raises(ConfigError, match=r"training: must be a mapping of field: value"):
        from_data(TrainConfig, [1, 2], section="training")
    with pytest.raises(ConfigError, match=r"'n_embd' \(did you mean 'emb_dim'\?\)"):
        from_data(GPTConfig, {"n_embd": 64})  # another project's name gets ours


@pytest.mark.parametrize("cls", CONFIG_CLASSES, ids=lambda c: c.__name__)
def test_plain_data_round_trips(cls):
    if cls is RunConfig:
        run = RunConfig()
        assert RunConfig.from_dict(yaml.safe_load(run.to_yaml())) == run
        return
    default = cls()
    assert from_data(cls, dataclasses.asdict(default)) == default
    assert from_data(cls, {}) == default


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: TrainConfig(lr="x"), "training.lr='x': must be a number"),
        (lambda: TrainConfig(lr="3e-4"), "training.lr='3e-4': must be a number"),
        (lambda: TrainConfig(batch_size=True), "training.batch_size=True: must be an integer"),
        (lambda: TrainConfig(compile="yes"), "training.compile='yes': must be true or false"),
        (lambda: DataConfig(stride=2.0), "data.stride=2.0: must be an integer"),
        (lambda: TokenizerConfig(name=5), "tokenizer.name=5: must be a string"),
        (lambda: GPTConfig(n_layers=2.5), "n_layers=2.5: must be an integer"),
        (lambda: GPTConfig(attn_impl=1), "attn_impl=1: must be one of explicit, sdpa"),
        (lambda: RunConfig(training={"lr": 1}), "training={'lr': 1}: must be a TrainConfig"),
        (lambda: SamplingConfig(top_k="5"), "top_k='5': must be an integer"),
    ],
)
def test_python_construction_refuses_wrong_types_without_converting(build, message):
    """A string where a number is meant, built in Python, is the caller's bug: refused."""
    with pytest.raises(ConfigError) as info:
        build()
    assert str(info.value) == message


def test_ints_stay_valid_floats_in_python():
    assert TrainConfig(lr=1, min_lr=0).lr == 1  # an int is a number
    assert GPTConfig(drop_rate=0).drop_rate == 0


def test_pydantic_is_imported_only_to_read_plain_data():
    code = (
        "import sys\n"
        "from scratchgpt.config import RunConfig, SamplingConfig, TrainConfig, preset\n"
        "RunConfig(training=TrainConfig(lr=1e-3)); SamplingConfig(top_k=3)\n"
        "preset('tiny', n_layers=1)\n"
        "print('pydantic' in sys.modules)\n"
        "RunConfig.from_dict({'training': {'lr': '1e-3'}})\n"
        "print('pydantic' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(SRC.parent)},
    )
    assert out.stdout.split() == ["False", "True"]


def test_no_object_setattr_in_the_configs():
    for path in (SRC / "config").glob("*.py"):
        assert "object.__setattr__" not in path.read_text(encoding="utf-8"), path


def test_errors_live_in_errors_and_stay_importable_from_config():
    import scratchgpt.config as config

    assert config.ConfigError is ErrorsConfigError
    assert config.MissingExtraError is MissingExtraError


@pytest.mark.parametrize("cls", CONFIG_CLASSES, ids=lambda c: c.__name__)
def test_every_field_has_one_line_of_argparse_safe_help(cls):
    parser = argparse.ArgumentParser(prog="check")
    for f in dataclasses.fields(cls):
        text = f.metadata.get("help")
        assert text and text.strip() == text and "\n" not in text, f"{cls.__name__}.{f.name}"
        assert "%" not in text, f"{cls.__name__}.{f.name}: '%' is argparse's format character"
        parser.add_argument(f"--{f.name}", help=text)
    assert "--" in parser.format_help()  # argparse formats every help string


# --- SamplingConfig -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": -1.0}, "temperature=-1.0: must be >= 0 (0 means greedy)"),
        ({"temperature": float("nan")}, "temperature=nan: must be >= 0 (0 means greedy)"),
        ({"top_k": 0}, "top_k=0: must be >= 1, or None to keep every token"),
        ({"top_p": 0.0}, "top_p=0.0: must be in (0, 1], or None to keep every token"),
        ({"top_p": 1.5}, "top_p=1.5: must be in (0, 1], or None to keep every token"),
        (
            {"repetition_penalty": 0.0},
            "repetition_penalty=0.0: must be > 0 (1 is off, > 1 discourages repeats)",
        ),
    ],
)
def test_sampling_config_messages(kwargs, message):
    with pytest.raises(ConfigError) as info:
        SamplingConfig(**kwargs)
    assert str(info.value) == message


def test_sampling_config_defaults_and_plain_data():
    assert SamplingConfig() == SamplingConfig(1.0, None, None, 1.0)
    s = from_data(SamplingConfig, {"temperature": "0.7", "top_k": "40", "top_p": "none"})
    assert s == SamplingConfig(temperature=0.7, top_k=40)
    with pytest.raises(ConfigError, match=r"^top_p='wide': must be a number$"):
        from_data(SamplingConfig, {"top_p": "wide"})
