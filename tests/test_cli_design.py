"""The command line's shape: one mechanism for flags, switches, one name per setting, short
errors, and help that never imports torch."""

import re
import subprocess
import sys

import pytest

from scratchgpt.cli import build_parser, main
from scratchgpt.cli.train import flag_names


def _parsers(parser, prog="scratchgpt"):
    yield prog, parser
    for action in parser._actions:
        if isinstance(action.choices, dict):  # subcommands
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{prog} {name}")


COMMANDS = [prog.split()[1:] for prog, _ in _parsers(build_parser())]


def test_help_imports_no_torch():
    """`scratchgpt --help` and every command's --help build the parser from plain dataclasses;
    torch (2-3 s to import) is loaded only when a command runs."""
    code = (
        "import sys\n"
        "from scratchgpt.cli import main\n"
        f"for words in {COMMANDS!r}:\n"
        "    try:\n"
        "        main([*words, '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "False"
    assert len(COMMANDS) >= 16  # every group and subcommand was asked


@pytest.mark.parametrize("prog", [prog for prog, _ in _parsers(build_parser())])
def test_each_setting_once_in_help(prog):
    parser = dict(_parsers(build_parser()))[prog]
    text = parser.format_help()
    flags = re.findall(r"^\s{2}(--[a-z0-9.-]+)", text, flags=re.M)
    assert len(flags) == len(set(flags)), f"{prog}: a flag listed twice"
    seen = {}
    for action in parser._actions:
        for option in action.option_strings:
            assert option not in seen, f"{prog}: {option} defined twice"
            seen[option] = action


def test_train_help_lists_every_run_config_key_once():
    text = dict(_parsers(build_parser()))["scratchgpt train"].format_help()
    for key, flag in flag_names().items():
        assert text.count(f"{key};") + text.count(f"{key}]") == 1, key
        assert re.search(rf"^\s+{re.escape(flag)}\b", text, flags=re.M), flag
    assert len(text.splitlines()) < 200


def test_booleans_are_switches_with_a_no_form():
    parser = build_parser()
    args = parser.parse_args(["train", "--compile", "--no-fsdp", "--tensorboard"])
    assert vars(args)["training.compile"] is True
    assert vars(args)["training.fsdp"] is False
    assert vars(args)["training.tensorboard"] is True
    for prog, sub in _parsers(parser):
        for action in sub._actions:
            if action.nargs == 0 and action.option_strings[0] not in ("-h", "--version", "-q"):
                assert any(o.startswith("--no-") for o in action.option_strings), (
                    f"{prog} {action.option_strings}: a boolean without a --no- form"
                )
    gen = parser.parse_args(["generate", "--compile", "--no-cache", "--interactive"])
    assert gen.compile is True and gen.cache is False and gen.interactive is True


def test_a_trained_model_is_checkpoint_everywhere():
    takes_model = {
        "scratchgpt generate",
        "scratchgpt eval",
        "scratchgpt info",
        "scratchgpt export",
        "scratchgpt classify predict",
        "scratchgpt viz attention",
        "scratchgpt viz layers",
    }
    for prog, sub in _parsers(build_parser()):
        options = {o for a in sub._actions for o in a.option_strings}
        assert "--model" not in options, prog
        if prog in takes_model:
            assert "--checkpoint" in options, prog


def test_usage_error_is_the_usage_line_and_the_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--lrr", "3e-4"])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2, lines
    assert lines[0] == "usage: scratchgpt train [OPTIONS]"
    assert "unrecognized arguments: --lrr" in lines[1] and "'--lr'" in lines[1]
    for words in (["train", "--lr"], ["generate", "--top-k"], ["classify", "train", "--emb-dim"]):
        with pytest.raises(SystemExit):
            main(words)  # a flag without its value: the command's usage line, not 69 lines
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 2 and lines[0].endswith("[OPTIONS]"), lines
        assert f"argument {words[-1]}: expected one argument" in lines[1]


def test_run_config_keys_are_accepted_as_flags():
    parser = build_parser()
    from scratchgpt.cli.train import expand_aliases

    a = parser.parse_args(expand_aliases(["train", "--training.max-steps", "3", "--data.source=x"]))
    b = parser.parse_args(["train", "--max-steps", "3", "--data", "x"])
    assert vars(a) == vars(b)


def test_a_value_is_validated_once_under_its_config_name(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--lr", "abc"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "training.lr='abc'" in err and "number" in err
    assert main(["train", "--lr", "-1"]) == 2
    assert "training.lr=-1.0: must be > 0" in capsys.readouterr().err
    # Checked before any model is loaded: no checkpoint exists here.
    assert main(["generate", "--temperature", "-1"]) == 2
    err = capsys.readouterr().err
    assert "temperature=-1" in err and "no trained run" not in err


def test_each_value_is_checked_once_on_its_way(tmp_path, monkeypatch, shared_data, capsys):
    """`train --lr` reaches the optimiser through one TrainConfig, and `generate --temperature`
    reaches sampling through one SamplingConfig: each value is validated exactly once."""
    from scratchgpt.config import sampling, sections

    built = {"training": [], "sampling": []}
    for key, cls in (("training", sections.TrainConfig), ("sampling", sampling.SamplingConfig)):
        check = cls.__post_init__

        def counted(self, _check=check, _key=key):
            built[_key].append(self)
            _check(self)

        monkeypatch.setattr(cls, "__post_init__", counted)
    monkeypatch.chdir(tmp_path)
    verdict = str(shared_data("the-verdict.txt"))
    args = ["--data", verdict, "--preset", "tiny", "--max-steps", "2", "--sample-interval", "0"]
    assert main(["train", *args, "--lr", "0.002", "--out", "run"]) == 0
    assert [t.lr for t in built["training"]] == [0.002]
    assert built["sampling"] == []
    built["training"].clear()
    assert (
        main(["generate", "--checkpoint", "run", "--max-tokens", "3", "--temperature", "0.5"]) == 0
    )
    assert [s.temperature for s in built["sampling"]] == [0.5]
    assert built["training"] == []
    assert capsys.readouterr().out.endswith("\n")
