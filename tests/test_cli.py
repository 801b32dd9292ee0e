import ast
import subprocess
import sys

import pytest

from scratchgpt.cli import build_parser, main


def test_train_then_generate_end_to_end(tmp_path, shared_data, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    verdict = shared_data("the-verdict.txt")
    assert main(["train", "--data", str(verdict), "--preset", "tiny", "--max-steps", "20"]) == 0
    out = capsys.readouterr().out
    assert "trained 20 steps" in out and "checkpoint: runs/" in out
    run = next((tmp_path / "runs").iterdir())
    assert (run / "checkpoints" / "step-00000020" / "model.safetensors").is_file()
    assert (run / "config.yaml").is_file() and (run / "metrics.jsonl").is_file()
    # explicit checkpoint
    code = main(
        [
            "generate",
            "--checkpoint",
            str(run),
            "--prompt",
            "I HAD",
            "--max-tokens",
            "15",
            "--seed",
            "1",
        ]
    )
    text = capsys.readouterr().out
    assert code == 0 and text.startswith("I HAD") and len(text.rstrip("\n")) == 5 + 15
    # no --checkpoint: the latest run; the same seed gives the same text
    assert main(["generate", "--prompt", "I HAD", "--max-tokens", "15", "--seed", "1"]) == 0
    assert capsys.readouterr().out == text
    assert main(["info", "--checkpoint", str(run)]) == 0
    assert "trained steps: 20" in capsys.readouterr().out


def test_user_errors_are_one_line_not_tracebacks(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["generate"]) == 2
    err = capsys.readouterr().err
    assert "no trained run found" in err and "Traceback" not in err
    assert main(["train", "--data", "missing.txt"]) == 2
    assert "neither a named corpus" in capsys.readouterr().err
    assert main(["generate", "--checkpoint", str(tmp_path), "--temperature", "-1"]) == 2
    assert "temperature=-1" in capsys.readouterr().err
    assert main(["train", "--max-steps", "5", "--warmup-steps", "9"]) == 2
    assert "warmup_steps=9" in capsys.readouterr().err


def test_info_preset_and_config(tmp_path, capsys):
    assert main(["info", "--preset", "gpt2-124M"]) == 0
    assert "parameters: 124,439,808" in capsys.readouterr().out
    cfg = tmp_path / "c.json"
    cfg.write_text(
        '{"vocab_size": 50257, "context_length": 1024, "emb_dim": 768, "n_heads": 12, '
        '"n_layers": 12, "drop_rate": 0.1, "qkv_bias": false}'
    )
    assert main(["info", "--config", str(cfg)]) == 0
    assert "parameters: 163,009,536" in capsys.readouterr().out
    assert main(["info"]) == 0
    listing = capsys.readouterr().out
    assert "gpt2-1558M" in listing and "1,557,611,200" in listing


def _all_actions(parser):
    for action in parser._actions:
        yield parser.prog, action
        if isinstance(action.choices, dict):  # the subcommands
            for sub in action.choices.values():
                yield from _all_actions(sub)


def test_every_flag_is_documented():
    for prog, action in _all_actions(build_parser()):
        if action.option_strings:
            assert action.help, f"{prog} {action.option_strings} has no help text"


@pytest.mark.parametrize("command", ["train", "generate", "info"])
def test_help_runs_as_a_module(command):
    out = subprocess.run(
        [sys.executable, "-m", "scratchgpt", command, "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"usage: scratchgpt {command}" in out
    if command == "train":
        assert "--max-steps" in out and "--data" in out and "--preset" in out


def test_tokenizer_train_and_encode(tmp_path, shared_data, capsys):
    out = tmp_path / "tok.json"
    verdict = str(shared_data("the-verdict.txt"))
    args = ["tokenizer", "train", "--data", verdict, "--vocab-size", "400", "--out", str(out)]
    assert main([*args, "--special-tokens", "bos=<BOS>", "eos=<EOS>"]) == 0
    assert "400-token" in capsys.readouterr().out
    assert main(["tokenizer", "encode", "--tokenizer", str(out), "I HAD always"]) == 0
    lines = capsys.readouterr().out.splitlines()
    pieces = [ast.literal_eval(line.split(None, 1)[1]) for line in lines[1:]]  # repr'd pieces
    assert "".join(pieces) == "I HAD always"
    gpt2_dir = str(shared_data("gpt2-encoder.json").parent)
    assert main(["tokenizer", "encode", "--tokenizer", gpt2_dir, "Hello, world."]) == 0
    assert "[15496, 11, 995, 13]" in capsys.readouterr().out
    assert (
        main(["tokenizer", "train", "--data", "nope.txt", "--vocab-size", "300", "--out", str(out)])
        == 2
    )
    assert "nope.txt" in capsys.readouterr().err


def test_train_with_a_bpe_tokenizer(tmp_path, shared_data, capsys):
    verdict = str(shared_data("the-verdict.txt"))
    args = [
        "train",
        "--data",
        verdict,
        "--tokenizer",
        "bpe",
        "--vocab-size",
        "300",
        "--preset",
        "tiny",
        "--max-steps",
        "2",
        "--out",
        str(tmp_path / "run"),
    ]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["info", "--checkpoint", str(tmp_path / "run")]) == 0
    assert '"vocab_size": 300' in capsys.readouterr().out
