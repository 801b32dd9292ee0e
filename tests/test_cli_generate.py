"""`scratchgpt generate`: streaming, several samples, the interactive loop."""

import builtins
import subprocess
import sys

import pytest
import torch

from scratchgpt.checkpoint import save_checkpoint
from scratchgpt.cli import main
from scratchgpt.config import preset
from scratchgpt.generation import Generator
from scratchgpt.model import GPTModel
from scratchgpt.tokenizers import CharTokenizer


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    tok = CharTokenizer.from_text("abcdefghijklmnopqrstuvwxyz .\n")
    torch.manual_seed(0)
    model = GPTModel(preset("tiny", vocab_size=tok.vocab_size, context_length=16))
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "ck", model, tok)


def test_samples_are_seeded_and_cached_equals_uncached(checkpoint, capsys):
    args = ["generate", "--checkpoint", str(checkpoint), "--prompt", "the ", "--max-tokens", "30"]
    assert main([*args, "--seed", "4", "--num-samples", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("--- sample") == 2
    samples = [s.split("\n", 1)[1] for s in out.split("--- sample ")[1:]]
    assert all(s.startswith("the ") for s in samples) and samples[0] != samples[1]
    assert main([*args, "--seed", "4", "--no-cache", "--num-samples", "2"]) == 0
    assert capsys.readouterr().out == out
    assert main([*args, "--temperature", "0", "--stop", "e"]) == 0
    greedy = capsys.readouterr().out
    assert "e" not in greedy[len("the ") :]


def test_repetition_penalty_flag_is_checked(checkpoint, capsys):
    code = main(["generate", "--checkpoint", str(checkpoint), "--repetition-penalty", "0"])
    assert code == 2 and "repetition_penalty=0" in capsys.readouterr().err


def test_interactive_loop_ctrl_c_and_eof(checkpoint, capsys, monkeypatch):
    prompts = iter(["the ", "", "a ", "b "])

    def fake_input(prompt=""):
        try:
            return next(prompts)
        except StopIteration:
            raise EOFError from None

    real_stream = Generator.stream_text

    def stream_text(self, prompt, *a, **k):
        if prompt == "a ":  # the user presses Ctrl-C in the middle of this answer
            yield "x"
            raise KeyboardInterrupt
        yield from real_stream(self, prompt, *a, **k)

    monkeypatch.setattr(builtins, "input", fake_input)
    monkeypatch.setattr(Generator, "stream_text", stream_text)
    code = main(
        [
            "generate",
            "--checkpoint",
            str(checkpoint),
            "--interactive",
            "--max-tokens",
            "5",
            "--temperature",
            "0",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    assert "[stopped]" in captured.err
    lines = captured.out.splitlines()
    assert len(lines) == 3 and lines[1] == "x"
    assert len(lines[0]) == len(lines[2]) == 5


def test_interactive_exits_cleanly_at_end_of_input(checkpoint):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "scratchgpt",
            "generate",
            "--checkpoint",
            str(checkpoint),
            "--interactive",
            "--max-tokens",
            "4",
        ],
        input="the \n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


def test_dtype_flag_casts_the_weights(checkpoint, capsys, monkeypatch):
    from scratchgpt.checkpoint import load_checkpoint

    seen = []
    real_init = Generator.__init__

    def init(self, model, tokenizer, **kwargs):
        seen.append(next(model.parameters()).dtype)
        real_init(self, model, tokenizer, **kwargs)

    monkeypatch.setattr(Generator, "__init__", init)
    args = ["generate", "--checkpoint", str(checkpoint), "--prompt", "the ", "--max-tokens", "12"]
    assert main([*args, "--temperature", "0", "--dtype", "bfloat16"]) == 0
    out = capsys.readouterr().out
    assert seen == [torch.bfloat16]
    model, tok = load_checkpoint(checkpoint, dtype=torch.bfloat16)
    expected = Generator(model, tok).generate_text("the ", 12, temperature=0)
    assert out == "the " + expected + "\n"
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--dtype", "int3"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'int3'" in capsys.readouterr().err
