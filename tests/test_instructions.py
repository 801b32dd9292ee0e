"""Instruction data: reading records, encoding with target masks, the book's collate and split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from scratchgpt.data.instructions import (
    collate,
    encode_conversation,
    parse_instructions,
    read_instructions,
    split_instructions,
    truncate,
)
from scratchgpt.errors import ConfigError, DataError
from scratchgpt.templates import Message, get_template
from scratchgpt.tokenizers import CharTokenizer, get_tokenizer

ALPACA = [
    {"instruction": "Add 2 and 3.", "input": "", "output": "5"},
    {"instruction": "Fix the spelling.", "input": "freind", "output": "friend"},
    {"instruction": "Say nothing.", "output": ""},
]
CHAT = [
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]},
    {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Q1"},
            {"role": "assistant", "content": "A1"},
            {"role": "user", "content": "Q2"},
            {"role": "assistant", "content": "A2"},
            {"role": "user", "content": "Q3"},
            {"role": "assistant", "content": "A3"},
        ]
    },
]


class EotCharTokenizer(CharTokenizer):
    """Characters plus one end-of-text id after them: a tiny tokenizer with an eot."""

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + 1

    @property
    def eot_id(self) -> int:
        return len(self.chars)

    def decode(self, ids):
        return "".join("<|endoftext|>" if i == self.eot_id else self.chars[i] for i in ids)


def char_tokenizer() -> EotCharTokenizer:
    return EotCharTokenizer([chr(c) for c in range(32, 127)] + ["\n"])


@pytest.fixture(scope="module")
def gpt2(shared_data):
    shared_data("gpt2-encoder.json")
    return get_tokenizer(shared_data("gpt2-vocab.bpe").parent)


def test_reads_json_and_jsonl_of_both_kinds(tmp_path: Path) -> None:
    records = ALPACA + CHAT
    as_json = tmp_path / "data.json"
    as_json.write_text(json.dumps(records, indent=2), encoding="utf-8")
    as_jsonl = tmp_path / "data.jsonl"
    as_jsonl.write_text("\n".join(json.dumps(r) for r in records) + "\n\n", encoding="utf-8")
    sniffed = tmp_path / "lines.json"  # JSON Lines under a .json name
    sniffed.write_text(as_jsonl.read_text(encoding="utf-8"), encoding="utf-8")
    datasets = [read_instructions(p) for p in (as_json, as_jsonl, sniffed)]
    for data in datasets:
        assert data.conversations == datasets[0].conversations
        assert len(data) == 5 and data.empty_outputs == 1
    first = datasets[0].conversations[1]
    assert first == (Message("user", "Fix the spelling.", "freind"), Message("assistant", "friend"))
    assert [m.role for m in datasets[0].conversations[4]] == ["system"] + ["user", "assistant"] * 3
    assert datasets[0].source == str(as_json)


@pytest.mark.parametrize(
    ("record", "words"),
    [
        ({"input": "", "output": "x"}, "has no 'instruction'"),
        ({"instruction": "x"}, "has no 'output'"),
        ({"instruction": 3, "output": "x"}, "'instruction' is not a string"),
        ({"instruction": "x", "input": None, "output": "x"}, "'input' is not a string"),
        ({"instruction": " ", "output": "x"}, "'instruction' is empty"),
        (["instruction", "output"], "not an object"),
        ({"messages": []}, "non-empty list"),
        (
            {"messages": [{"role": "user", "content": "a"}, {"content": "b"}]},
            "message 1 has no 'role'",
        ),
        ({"messages": [{"role": "user"}]}, "message 0 has no 'content'"),
        ({"messages": [{"role": "asistant", "content": "a"}]}, "did you mean 'assistant'"),
        ({"messages": [{"role": "user", "content": 1}]}, "message 0's 'content' is not a string"),
        ({"messages": [{"role": "assistant", "content": "a"}]}, "message 0 is 'assistant'"),
        ({"messages": [{"role": "user", "content": "a"}]}, "last message"),
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "s"}]},
            "message 1 is 'system'",
        ),
        ({"messages": [], "instruction": "x", "output": "y"}, "has both"),
    ],
)
def test_malformed_record_names_file_index_and_field(tmp_path: Path, record, words: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([ALPACA[0], ALPACA[1], record]), encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_instructions(path)
    message = str(info.value)
    assert "\n" not in message
    assert f"{path}: record 2" in message and words in message


def test_bad_files_are_errors(tmp_path: Path) -> None:
    lines = tmp_path / "bad.jsonl"
    lines.write_text('{"instruction": "a", "output": "b"}\n\n{"instruction": oops}\n')
    with pytest.raises(DataError, match="line 3"):
        read_instructions(lines)
    late = tmp_path / "late.jsonl"
    late.write_text('\n{"instruction": "a", "output": "b"}\n{"output": "b"}\n')
    with pytest.raises(DataError, match=r"record 1 \(line 3\): has no 'instruction'"):
        read_instructions(late)
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    with pytest.raises(DataError, match="no records"):
        read_instructions(empty)
    scalar = tmp_path / "scalar.json"
    scalar.write_text('"text"')
    with pytest.raises(DataError, match="list of records"):
        read_instructions(scalar)
    with pytest.raises(DataError, match="cannot read"):
        read_instructions(tmp_path / "missing.json")
    with pytest.raises(DataError, match="mine: record 0"):
        parse_instructions([{"output": ""}], source="mine")


def test_the_book_file_and_its_split(shared_data) -> None:
    data = read_instructions(shared_data("instruction-data.json"))
    assert len(data) == 1100 and data.empty_outputs == 0
    train, val, test = split_instructions(data.conversations)
    assert (len(train), len(val), len(test)) == (935, 55, 110)
    assert train + test + val == data.conversations  # file order: train, test, then the rest


def test_split_rounding_and_ratios() -> None:
    train, val, test = split_instructions(list(range(100)), val_ratio=0.0, test_ratio=0.29)
    assert (len(train), len(val), len(test)) == (71, 0, 29)
    for bad in ({"val_ratio": -0.1}, {"test_ratio": 1.0}, {"val_ratio": 0.5, "test_ratio": 0.5}):
        with pytest.raises(ConfigError):
            split_instructions([1, 2, 3], **bad)


def test_encode_masks_prompt_and_response() -> None:
    tok = char_tokenizer()
    template = get_template("alpaca")
    messages = (Message("user", "Add 2 and 3.", "now"), Message("assistant", "5 it is"))
    ids, mask = encode_conversation(template, messages, tok)
    text = "".join(s.text for s in template.render(messages))
    assert tok.decode(ids) == text + "<|endoftext|>"
    assert len(mask) == len(ids) and ids[-1] == tok.eot_id
    prompt = template.prompt(messages[:1])
    assert mask == [False] * len(prompt) + [True] * len("5 it is") + [True]


def test_encode_with_gpt2_round_trips(gpt2) -> None:
    template = get_template("alpaca")
    messages = (Message("user", "Rewrite politely.", "Give it."), Message("assistant", "Please?"))
    ids, mask = encode_conversation(template, messages, gpt2)
    assert gpt2.decode(ids) == template.prompt(messages[:1]) + "Please?<|endoftext|>"
    prompt_ids = gpt2.encode(template.prompt(messages[:1]))
    assert ids[: len(prompt_ids)] == prompt_ids and not any(mask[: len(prompt_ids)])
    assert gpt2.decode([i for i, m in zip(ids, mask, strict=True) if m]) == "Please?<|endoftext|>"


@pytest.mark.parametrize("template_name", ["alpaca", "phi3", "chatml"])
def test_chat_only_assistant_content_is_target(template_name: str) -> None:
    tok = char_tokenizer()
    template = get_template(template_name)
    data = parse_instructions(CHAT, source="chat")
    for conversation, answers in zip(
        data.conversations, (["Hello!"], ["A1", "A2", "A3"]), strict=True
    ):
        ids, mask = encode_conversation(template, conversation, tok)
        learnt = tok.decode([i for i, m in zip(ids, mask, strict=True) if m])
        end = template.assistant_end
        assert learnt == "".join(a + end for a in answers) + "<|endoftext|>"
        assert tok.decode(ids) == "".join(s.text for s in template.render(conversation)) + (
            "<|endoftext|>"
        )


def test_encode_needs_an_eot_and_an_answer() -> None:
    plain = CharTokenizer([chr(c) for c in range(32, 127)])
    messages = (Message("user", "a"), Message("assistant", "b"))
    with pytest.raises(ConfigError, match="end-of-text"):
        encode_conversation(get_template("alpaca"), messages, plain)
    with pytest.raises(DataError, match="assistant turn"):
        encode_conversation(get_template("alpaca"), messages[:1], char_tokenizer())


def test_collate_reproduces_the_books_example() -> None:
    eot = 50256
    rows = [[0, 1, 2, 3, 4, eot], [5, 6, eot], [7, 8, 9, eot]]
    masks = [[True] * len(r) for r in rows]
    inputs, targets = collate(rows, masks, pad_id=eot)
    assert inputs.dtype == targets.dtype == torch.int64
    assert inputs.tolist() == [[0, 1, 2, 3, 4], [5, 6, eot, eot, eot], [7, 8, 9, eot, eot]]
    assert targets.tolist() == [
        [1, 2, 3, 4, eot],
        [6, eot, -100, -100, -100],
        [8, 9, eot, -100, -100],
    ]
    # An end-of-text inside a text is learnt: padding is found by position, not by value.
    _, targets = collate([[1, eot, 2, eot], [3, eot]], [[True] * 4, [True] * 2], pad_id=eot)
    assert targets.tolist() == [[eot, 2, eot], [eot, -100, -100]]


def test_mask_prompt_ignores_exactly_the_prompt_positions() -> None:
    tok = char_tokenizer()
    template = get_template("alpaca")
    encoded = [
        encode_conversation(template, c, tok)
        for c in parse_instructions(ALPACA + CHAT, source="t").conversations
    ]
    rows, masks = [e[0] for e in encoded], [e[1] for e in encoded]
    logits = torch.randn(len(rows), max(map(len, rows)) - 1, tok.vocab_size)
    changed = [list(r) for r in rows]
    for row, mask in zip(changed, masks, strict=True):
        for t in range(1, len(row)):  # position 0 is never a target
            if not mask[t]:
                row[t] = (row[t] + 1) % tok.vocab_size

    def loss(rows, mask_prompt: bool) -> torch.Tensor:
        _, targets = collate(rows, masks, pad_id=tok.eot_id, mask_prompt=mask_prompt)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())

    assert torch.equal(loss(rows, True), loss(changed, True))
    assert not torch.equal(loss(rows, False), loss(changed, False))
    _, targets = collate(rows, masks, pad_id=tok.eot_id, mask_prompt=True)
    learnt = (targets != -100).sum(dim=1).tolist()
    assert learnt == [sum(m[1:]) for m in masks]


def test_truncate_counts_and_collate_cuts() -> None:
    rows = [[1, 2, 3, 4, 5, 0], [6, 7, 0], [8, 9, 10, 11, 0]]
    masks = [[False, False, True, True, True, True], [False, True, True], [True] * 5]
    cut_rows, cut_masks, n_cut = truncate(rows, masks, 4)
    assert n_cut == 1  # only the first: the third has exactly max_length + 1 tokens
    assert cut_rows == [[1, 2, 3, 4, 5], [6, 7, 0], [8, 9, 10, 11, 0]]
    assert cut_masks[0] == [False, False, True, True, True]
    inputs, targets = collate(rows, masks, pad_id=0, max_length=4)
    assert inputs.shape == targets.shape == (3, 4)
    # The cut row keeps learning its last token; the row cut to exactly max_length + 1 keeps
    # its end-of-text.
    assert targets.tolist() == [[2, 3, 4, 5], [7, 0, -100, -100], [9, 10, 11, 0]]
    with pytest.raises(ConfigError):
        truncate(rows, masks, 0)
    with pytest.raises(DataError, match="mask values"):
        collate([[1, 2]], [[True]], pad_id=0)
