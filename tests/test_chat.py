"""Chat: the prompt for each answer (turns in the template, the oldest dropped to fit), the
commands, the template saved with a checkpoint, and `scratchgpt chat` / `generate --template`."""

import io
import json
import logging
import string
import subprocess
import sys

import pytest
import torch

from scratchgpt.chat import DROP_NOTICE, ChatSession, stop_strings
from scratchgpt.checkpoint import load_checkpoint, save_checkpoint
from scratchgpt.cli import main
from scratchgpt.config import preset
from scratchgpt.errors import CheckpointError, ConfigError, DataError
from scratchgpt.generation import Generator
from scratchgpt.inference import saved_template
from scratchgpt.model import GPTModel
from scratchgpt.templates import TEMPLATES, Template
from scratchgpt.tokenizers import CharTokenizer

TOK = CharTokenizer.from_text(string.ascii_letters + string.digits + " .,:!?<>|#_/\n")


def _session(context_length=1000, max_new_tokens=10, system=None):
    return ChatSession(
        TEMPLATES["chatml"],
        TOK,
        context_length=context_length,
        max_new_tokens=max_new_tokens,
        system=system,
    )


def _save(directory, *, template=None, context_length=512):
    torch.manual_seed(0)
    model = GPTModel(preset("tiny", vocab_size=TOK.vocab_size, context_length=context_length))
    metadata = {"template": template.to_dict()} if template is not None else {}
    return save_checkpoint(directory, model, TOK, metadata=metadata)


@pytest.fixture(scope="module")
def chatml_checkpoint(tmp_path_factory):
    return _save(tmp_path_factory.mktemp("ck") / "ck", template=TEMPLATES["chatml"])


@pytest.fixture(scope="module")
def plain_checkpoint(tmp_path_factory):
    return _save(tmp_path_factory.mktemp("plain") / "ck")


def test_third_prompt_holds_the_first_two_turns_in_order():
    s = _session(system="Be brief.")
    assert TOK.decode(s.prompt_ids("hi")) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )
    s.add_answer("hello")
    s.prompt_ids("how are you?")
    s.add_answer("fine")
    ids = s.prompt_ids("bye")
    assert TOK.decode(ids) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nhi<|im_end|>\n"
        "<|im_start|>assistant\nhello<|im_end|>\n"
        "<|im_start|>user\nhow are you?<|im_end|>\n"
        "<|im_start|>assistant\nfine<|im_end|>\n"
        "<|im_start|>user\nbye<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert s.prompt_text("bye") == TOK.decode(ids)


def test_oldest_turns_are_dropped_to_fit_and_the_notice_is_said_once(caplog):
    one_turn = len(TEMPLATES["chatml"].prompt(_msgs("q0", "a0", "q1"))) - len(
        TEMPLATES["chatml"].prompt(_msgs("q1"))
    )  # the characters one earlier turn adds
    s = _session(context_length=260, max_new_tokens=20)
    caplog.set_level(logging.WARNING, logger="scratchgpt.chat")
    kept = []
    for i in range(8):
        ids = s.prompt_ids(f"q{i}")
        assert len(ids) <= 260 - 20
        text = TOK.decode(ids)
        kept.append([j for j in range(i) if f"\nq{j}<" in text])
        assert all(f"\na{j}<" in text for j in kept[-1])  # whole turns: question and answer
        assert text.endswith(f"user\nq{i}<|im_end|>\n<|im_start|>assistant\n")
        s.add_answer(f"a{i}")
    fits = (240 - len(TEMPLATES["chatml"].prompt(_msgs("q7")))) // one_turn
    assert 0 < fits < 7  # the test needs some turns to fit and some not to
    assert kept[7] == list(range(7 - fits, 7))  # the newest turns, in order
    assert caplog.text.count(DROP_NOTICE) == 1
    assert len(s.turns) == 8  # dropped from the prompt, still in the record


def _msgs(*texts):
    from scratchgpt.templates import Message

    return [Message("user" if i % 2 == 0 else "assistant", t) for i, t in enumerate(texts)]


def test_a_message_longer_than_the_context_keeps_its_last_tokens(caplog):
    s = _session(context_length=60, max_new_tokens=10, system="sys")
    text = "x" * 100 + "END"
    with caplog.at_level(logging.WARNING, logger="scratchgpt.chat"):
        ids = s.prompt_ids(text)
    assert len(ids) == 50
    assert TOK.decode(ids).endswith("xEND<|im_end|>\n<|im_start|>assistant\n")
    assert "does not fit" in caplog.text
    with pytest.raises(ConfigError, match="leaves no room"):
        _session(context_length=10, max_new_tokens=10)


def test_reset_system_and_the_commands():
    s = _session(system="old")
    s.prompt_ids("a")
    s.add_answer("b")
    assert s.command("hello") is None  # a message, not a command
    assert "reset" in s.command("/reset")
    assert s.turns == [] and s.system == "old"
    assert TOK.decode(s.prompt_ids("c")).count("<|im_start|>user") == 1
    s.add_answer("d")
    assert "set" in s.command("/system Speak like a pirate.")
    assert s.system == "Speak like a pirate." and s.turns == []
    assert TOK.decode(s.prompt_ids("e")).startswith(
        "<|im_start|>system\nSpeak like a pirate.<|im_end|>\n<|im_start|>user\ne<|im_end|>"
    )
    s.add_answer("f")
    s.command("/system")
    assert s.system is None and "system" not in TOK.decode(s.prompt_ids("g"))
    assert "/reset" in s.command("/help")
    assert "unknown command /nope" in s.command("/nope")
    s.reset()
    with pytest.raises(DataError, match="no question"):
        s.add_answer("orphan")


def test_stop_strings_end_at_the_turn_end():
    assert stop_strings(TEMPLATES["chatml"]) == ("<|im_end|>", "<|im_start|>")
    custom = Template(
        name="x",
        user_format="U:{content}",
        user_input_format="U:{content}{input}",
        assistant_start="A:",
        assistant_end=" <END>\n",
        stop=("U:",),
    )
    assert stop_strings(custom) == ("U:", "<END>")


def test_saved_template_from_checkpoint_and_run(tmp_path, chatml_checkpoint, plain_checkpoint):
    assert saved_template(chatml_checkpoint) == TEMPLATES["chatml"]
    assert saved_template(plain_checkpoint) is None
    run = tmp_path / "run"
    _save(run / "checkpoints" / "step-00000010", template=TEMPLATES["alpaca"])
    _save(run / "checkpoints" / "step-00000020", template=TEMPLATES["phi3"])
    assert saved_template(run) == TEMPLATES["phi3"]  # the latest checkpoint's
    assert saved_template(tmp_path) is None  # nothing saved here
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(
        json.dumps({"format": "scratchgpt", "metadata": {"template": {"name": "x"}}})
    )
    with pytest.raises(ConfigError, match=r"metadata\.template"):
        saved_template(bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        saved_template(tmp_path / "missing")


def _fake_stream(prompts, answers):
    """A Generator.stream_text that records each prompt and streams a canned answer."""

    def stream_text(self, prompt, max_new_tokens, **kwargs):
        prompts.append((prompt, kwargs["stop"]))
        yield from answers[len(prompts) - 1]

    return stream_text


def test_chat_command_uses_the_saved_template_and_keeps_the_turns(
    chatml_checkpoint, capsys, monkeypatch
):
    prompts = []
    answers = [["hel", "lo"], ["x"], ["fresh"]]
    monkeypatch.setattr(Generator, "stream_text", _fake_stream(prompts, answers))
    monkeypatch.setattr(sys, "stdin", io.StringIO("hi\nmore\n/reset\n\nagain\n"))
    code = main(["chat", "--checkpoint", str(chatml_checkpoint), "--max-tokens", "5"])
    out, err = capsys.readouterr()
    assert code == 0
    assert out == "hello\nx\nfresh\n"
    assert "you>" not in err and "reset" in err  # no prompt when piped
    first, second, third = (p for p, _ in prompts)
    assert first == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert second == first + "hello<|im_end|>\n<|im_start|>user\nmore<|im_end|>\n" + (
        "<|im_start|>assistant\n"
    )
    assert third == "<|im_start|>user\nagain<|im_end|>\n<|im_start|>assistant\n"
    assert prompts[0][1] == ("<|im_end|>", "<|im_start|>")


def test_ctrl_c_keeps_the_partial_answer(chatml_checkpoint, capsys, monkeypatch):
    prompts = []

    def stream_text(self, prompt, max_new_tokens, **kwargs):
        prompts.append(prompt)
        yield "part"
        if len(prompts) == 1:
            raise KeyboardInterrupt  # the user stops this answer

    monkeypatch.setattr(Generator, "stream_text", stream_text)
    monkeypatch.setattr(sys, "stdin", io.StringIO("one\ntwo\n"))
    args = ["chat", "--checkpoint", str(chatml_checkpoint), "--template", "alpaca"]
    assert main([*args, "--system", "Be kind."]) == 0
    out, err = capsys.readouterr()
    assert out == "part\npart\n" and "[stopped]" in err
    assert prompts[1].startswith(TEMPLATES["alpaca"].preamble + "\n\nBe kind.")  # --template
    assert "### Instruction:\none\n\n### Response:\npart\n\n### Instruction:\ntwo" in prompts[1]


def test_chat_without_a_template_is_one_line_exit_2(plain_checkpoint, capsys):
    assert main(["chat", "--checkpoint", str(plain_checkpoint)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--template" in err and "no saved prompt template" in err


def test_chat_piped_end_to_end(chatml_checkpoint):
    """The real thing, in its own process: piped lines in, the model's answers out."""
    result = subprocess.run(
        [
            *(sys.executable, "-m", "scratchgpt", "chat", "--checkpoint", chatml_checkpoint),
            *("--max-tokens", "8", "--temperature", "1", "--seed", "3", "--device", "cpu"),
        ],
        input="hi\n/reset\nhello\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "conversation reset" in result.stderr
    gen = Generator(*load_checkpoint(chatml_checkpoint))
    chatml = TEMPLATES["chatml"]
    expected = [  # each message alone (/reset forgot the first turn), answer n with seed 3 + n
        gen.generate_text(chatml.prompt(_msgs(text)), 8, seed=3 + n, stop=stop_strings(chatml))
        for n, text in enumerate(("hi", "hello"))
    ]
    assert expected[0] != expected[1]
    assert result.stdout == f"{expected[0]}\n{expected[1]}\n"


def test_generate_template_frames_the_prompt(
    chatml_checkpoint, plain_checkpoint, capsys, monkeypatch
):
    prompts = []
    monkeypatch.setattr(Generator, "stream_text", _fake_stream(prompts, [["ok"]] * 3))
    args = ["generate", "--prompt", "Name a colour.", "--max-tokens", "5"]
    assert main([*args, "--checkpoint", str(plain_checkpoint), "--template", "alpaca"]) == 0
    expected = (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\nName a colour.\n\n### Response:\n"
    )
    assert prompts[0] == (expected, ("\n\n### Instruction:", "\n\n### Input:"))
    assert capsys.readouterr().out == expected + "ok\n"
    assert main([*args, "--checkpoint", str(chatml_checkpoint), "--template", "saved"]) == 0
    assert prompts[1][0] == "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n"
    capsys.readouterr()
    assert main([*args, "--checkpoint", str(chatml_checkpoint)]) == 0  # plain stays plain
    assert prompts[2] == ("Name a colour.", ())
    assert capsys.readouterr().out == "Name a colour.ok\n"
    assert main([*args, "--checkpoint", str(plain_checkpoint), "--template", "saved"]) == 2
    assert "no saved prompt template" in capsys.readouterr().err
