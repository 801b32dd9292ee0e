"""Instruction fine-tuning end to end (the book's ch. 7): a tiny GPT learns to follow a
synthetic instruction, in full and with LoRA, answers held-out records, and saves its template.

The task: "Reverse the letters of: a b c" -> "c b a" (three of seven letters, 343 records,
34 held out for the test). LoRA starts from a model tuned on "Repeat the letters of: ...",
so what it must learn (reversing) is new to the base.
"""

from __future__ import annotations

import itertools
import json
import random

import pytest
import torch
import torch.nn.functional as F

from scratchgpt.cli import main
from scratchgpt.config import GPTConfig
from scratchgpt.data.instructions import collate
from scratchgpt.inference import saved_template
from scratchgpt.model import GPTModel
from scratchgpt.templates import Template
from scratchgpt.training.instruct import RESPONSES_FILE, instruction_loss, train_instruct

QA = {
    "name": "qa",
    "user_format": "Q: {content}",
    "user_input_format": "Q: {content} {input}",
    "assistant_start": "\nA: ",
    "stop": ["\nQ:"],
}


def records(task: str) -> list[dict[str, str]]:
    seqs = list(itertools.product("abcdefg", repeat=3))
    random.Random(0).shuffle(seqs)
    word = "Reverse" if task == "reverse" else "Repeat"
    return [
        {
            "instruction": f"{word} the letters of:",
            "input": " ".join(s),
            "output": " ".join(reversed(s) if task == "reverse" else s),
        }
        for s in seqs
    ]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("instruct")
    (root / "qa.json").write_text(json.dumps(QA))
    for task in ("repeat", "reverse"):
        (root / f"{task}.json").write_text(json.dumps(records(task)))
    return root


def settings(files, task: str, epochs: int, lr: float) -> dict:
    return {
        "data.source": str(files / f"{task}.json"),
        "data.template": str(files / "qa.json"),
        "data.mask_prompt": True,
        "data.response_tokens": 6,
        "training.epochs": epochs,
        "training.batch_size": 16,
        "training.lr": lr,
        "training.min_lr": lr / 10,
        "training.warmup_steps": 10,
        "training.device": "cpu",
    }


def scratch(files, task: str, epochs: int) -> dict:
    return {
        **settings(files, task, epochs, 5e-3),
        "model.preset": "tiny",
        "model.emb_dim": 64,
        "data.tokenizer": "simple",
    }


def accuracy(responses) -> float:
    rows = json.loads(responses.read_text())
    assert rows and all(
        {"instruction", "input", "output", "model_response"} <= set(r) for r in rows
    )
    return sum(r["model_response"] == r["output"] for r in rows) / len(rows)


def test_the_packed_loss_equals_the_plain_loss_with_and_without_prompt_masking():
    """Packing the rows and computing logits only where a target counts change nothing."""
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=40, context_length=32, emb_dim=32, n_heads=4, n_layers=2)
    model = GPTModel(cfg).eval()
    rows = [[3, 4, 5, 6, 7, 8, 0], [9, 10, 0], [11, 12, 13, 0], [14, 0]]
    masks = [[False] * 3 + [True] * 4, [False, True, True], [False, False, True, True], [1, 1]]
    masks = [[bool(x) for x in m] for m in masks]
    for mask_prompt in (False, True):
        inputs, targets = collate(rows, masks, pad_id=0, mask_prompt=mask_prompt)
        lengths = torch.tensor([len(r) - 1 for r in rows])
        with torch.no_grad():
            plain = F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())
            packed = instruction_loss(model, inputs, lengths, targets)
        torch.testing.assert_close(packed, plain, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def reverse_run(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("reverse") / "run"
    return train_instruct(overrides=scratch(files, "reverse", 60), out_dir=out)


@pytest.mark.slow
def test_a_tiny_gpt_follows_held_out_instructions(reverse_run):
    r = reverse_run
    assert (r.n_train, r.n_val, r.n_test) == (291, 18, 34)  # the book's 85/5/10, in file order
    assert r.responses == r.run.run_dir / RESPONSES_FILE
    assert accuracy(r.responses) >= 0.9
    # the validation loss once per epoch: 60 epochs of 19 batches, plus step 0
    rows = [json.loads(x) for x in (r.run.run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [x["step"] for x in rows if "val_loss" in x]
    assert steps == [0, *range(19, 60 * 19 + 1, 19)]
    # the template went into the checkpoint, so chat and generate find it
    assert saved_template(r.run.run_dir) == Template.from_dict(QA)


@pytest.mark.slow
def test_lora_learns_a_new_instruction_on_a_tuned_base(files, tmp_path):
    base = train_instruct(overrides=scratch(files, "repeat", 40), out_dir=tmp_path / "base")
    lora = train_instruct(
        overrides={
            **settings(files, "reverse", 60, 1e-2),
            "model.init_from": str(base.run.run_dir),
            "lora.rank": 16,
            "lora.alpha": 32,
        },
        out_dir=tmp_path / "lora",
        merge=tmp_path / "merged",
    )
    saved = json.loads((lora.run.checkpoint / "config.json").read_text())
    assert saved["format"] == "scratchgpt-lora" and saved["lora"]["rank"] == 16  # adapter alone
    assert accuracy(lora.responses) >= 0.9
    assert saved_template(lora.run.run_dir) == Template.from_dict(QA)
    assert (tmp_path / "merged" / "model.safetensors").is_file()


def test_finetune_instruct_bad_records_are_one_line(files, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([*records("reverse")[:5], {"instruction": "x", "input": ""}]))
    code = main(["finetune", "instruct", "--preset", "tiny", "--tokenizer", "simple",
                 "--data", str(bad), "--out", str(tmp_path / "run")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "record 5" in err and "'output'" in err and err.count("\n") == 1, err
    assert main(["finetune", "instruct", "--data", str(files / "reverse.json")]) == 2
    assert "--init-from" in capsys.readouterr().err  # no model given: says how to give one
