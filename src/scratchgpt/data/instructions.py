"""Instruction data for supervised fine-tuning: records in, token rows and loss targets out.

Instruction tuning (Raschka, "Build a LLM from Scratch", ch. 7) shows a pretrained GPT
conversations laid out by a prompt template (:mod:`scratchgpt.templates`) and trains it with
the ordinary next-token loss, so it learns to answer in that layout and then stop. This
module holds the data half of that:

- :func:`read_instructions` / :func:`parse_instructions`: Alpaca-style records (the book's
  ``instruction-data.json``: ``instruction``, ``input``, ``output``) and chat records
  (``messages``: system / user / assistant turns) from JSON or JSON Lines, checked record by
  record, as conversations of :class:`~scratchgpt.templates.Message`;
- :func:`encode_conversation`: one conversation as token ids ending with end-of-text, and for
  each id whether the model should learn to write it (the assistant's words);
- :func:`truncate` and :func:`collate`: the book's padding collate, with the prompt optionally
  left out of the loss;
- :func:`split_instructions`: the book's 85 / 5 / 10 split in file order.

A malformed record is an error naming the file, the record and the field: a silently
skipped record is a hole in the training data that nobody notices.

Shapes: B batch (conversations), T tokens.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from ..errors import ConfigError, DataError, did_you_mean
from ..templates import ROLES, Message, Template
from ..tokenizers import Tokenizer

T = TypeVar("T")

Conversation = tuple[Message, ...]
JSONL_SUFFIXES = (".jsonl", ".ndjson")


@dataclass(frozen=True)
class InstructionData:
    """Conversations read from ``source``, each ending with an assistant turn.

    ``empty_outputs`` counts conversations whose last assistant turn is empty (or only
    whitespace). They are kept, since a file may mean them (the model then learns to stop at
    once), but a caller should report the count: usually they are a broken export.
    """

    conversations: list[Conversation]
    empty_outputs: int
    source: str

    def __len__(self) -> int:
        return len(self.conversations)


def read_instructions(path: str | Path) -> InstructionData:
    """The conversations in a JSON file (a list of records) or a JSON Lines file (one record
    a line).

    ``.jsonl`` and ``.ndjson`` files are read as JSON Lines; any other file as one JSON
    document, falling back to JSON Lines when that fails and the text starts with ``{`` (a
    JSON Lines file named ``.json`` is common). A lone JSON object is one record.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the instruction file ({exc})") from None
    if path.suffix.lower() in JSONL_SUFFIXES:
        records, labels = _json_lines(text, path)
    else:
        try:
            data = json.loads(text)
        except ValueError as exc:
            if not text.lstrip().startswith("{"):
                raise DataError(f"{path}: not valid JSON ({exc})") from None
            records, labels = _json_lines(text, path)
        else:
            if isinstance(data, dict):
                data = [data]
            if not isinstance(data, list):
                raise DataError(
                    f"{path}: the JSON holds a {type(data).__name__}; an instruction file is "
                    "a list of records (or JSON Lines, one record a line)"
                )
            records, labels = data, None
    return _parse(records, source=str(path), labels=labels)


def parse_instructions(records: Sequence[Any], *, source: str) -> InstructionData:
    """The same as :func:`read_instructions` for records already loaded (a list of dicts);
    ``source`` names them in error messages."""
    if isinstance(records, (str, bytes)) or not isinstance(records, Sequence):
        raise DataError(f"{source}: the records must be a list, got {type(records).__name__}")
    return _parse(records, source=source, labels=None)


def _json_lines(text: str, path: Path) -> tuple[list[Any], list[str]]:
    """Records of a JSON Lines text and, for messages, where each was ("record 3 (line 5)");
    blank lines are skipped, so record numbers and line numbers can differ."""
    records, labels = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError as exc:
            raise DataError(f"{path}: bad JSON on line {number} ({exc})") from None
        labels.append(f"record {len(labels)} (line {number})")
    return records, labels


def _parse(records: Sequence[Any], *, source: str, labels: Sequence[str] | None) -> InstructionData:
    if not records:
        raise DataError(f"{source}: no records; an instruction file needs at least one")
    conversations, empty = [], 0
    for index, record in enumerate(records):
        where = f"{source}: {labels[index] if labels else f'record {index}'}"
        conversation = _conversation(record, where)
        conversations.append(conversation)
        empty += not conversation[-1].content.strip()
    return InstructionData(conversations, empty, source)


def _conversation(record: Any, where: str) -> Conversation:
    """One record as messages: an Alpaca record is one user turn and one assistant turn."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: is a {type(record).__name__}, not an object")
    if "messages" in record:
        if "instruction" in record or "output" in record:
            raise DataError(
                f"{where}: has both 'messages' and 'instruction'/'output'; a record is either "
                "a chat or an Alpaca record"
            )
        return _chat(record["messages"], where)
    for key in ("instruction", "output"):
        if key not in record:
            raise DataError(
                f"{where}: has no {key!r} (an Alpaca record has 'instruction', 'output' and "
                "optionally 'input'; a chat record has 'messages')"
            )
    for key in ("instruction", "input", "output"):
        if key in record and not isinstance(record[key], str):
            raise DataError(f"{where}: {key!r} is not a string ({type(record[key]).__name__})")
    if not record["instruction"].strip():
        raise DataError(f"{where}: 'instruction' is empty")
    return (
        Message("user", record["instruction"], input=record.get("input", "")),
        Message("assistant", record["output"]),
    )


def _chat(messages: Any, where: str) -> Conversation:
    """A ``messages`` list: system messages first, then user and assistant turns alternating
    (user first), ending with the assistant turn the model learns from."""
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: 'messages' must be a non-empty list of messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise DataError(f"{where}: message {i} is a {type(m).__name__}, not an object")
        for key in ("role", "content"):
            if key not in m:
                raise DataError(f"{where}: message {i} has no {key!r}")
            if not isinstance(m[key], str):
                raise DataError(f"{where}: message {i}'s {key!r} is not a string")
        if m["role"] not in ROLES:
            raise DataError(
                f"{where}: message {i} has role {m['role']!r}; the roles are "
                f"{', '.join(ROLES)}{did_you_mean(m['role'], ROLES)}"
            )
        out.append(Message(m["role"], m["content"]))
    n_system = next((i for i, m in enumerate(out) if m.role != "system"), len(out))
    for i, m in enumerate(out[n_system:], start=n_system):
        expected = "user" if (i - n_system) % 2 == 0 else "assistant"
        if m.role != expected:
            raise DataError(
                f"{where}: message {i} is {m.role!r} where {expected!r} was expected (system "
                "messages first, then user and assistant alternate, user first)"
            )
    if out[-1].role != "assistant":
        raise DataError(f"{where}: the last message must be the assistant's (the answer to learn)")
    return tuple(out)


def encode_conversation(
    template: Template, messages: Sequence[Message], tokenizer: Tokenizer
) -> tuple[list[int], list[bool]]:
    """The ids of ``messages`` rendered by ``template`` followed by end-of-text, and for each
    id whether it is a target: the assistant's words, the template's ``assistant_end`` and
    the final end-of-text (so the model learns to stop); the rest is prompt.

    Text is encoded run by run, a run being consecutive segments of the same kind, so each
    id belongs wholly to the prompt or to a target. A BPE may merge across a boundary when
    the joined text is encoded at once; encoding the runs apart can then give other ids than
    encoding the whole. The first run of a conversation is exactly the text
    :meth:`Template.prompt` gives for generation, encoded as one string there and here, so a
    model sees at inference the ids it was tuned on. (On the book's 1,100 records with GPT-2's
    BPE, runs encoded apart equal the whole text encoded at once for every record and all
    three built-in templates: the templates end their prompt with a newline, where GPT-2's
    pre-tokenizer splits anyway.)
    """
    eot = tokenizer.eot_id
    if eot is None:
        raise ConfigError(
            f"the {type(tokenizer).__name__} has no end-of-text token; instruction tuning "
            "needs one to teach the model where an answer stops (use the GPT-2 tokenizer)"
        )
    if not messages or messages[-1].role != "assistant":
        raise DataError("a training conversation ends with an assistant turn: the answer")
    ids: list[int] = []
    mask: list[bool] = []
    runs: list[tuple[str, bool]] = []
    for segment in template.render(messages):
        if runs and runs[-1][1] == segment.target:
            runs[-1] = (runs[-1][0] + segment.text, segment.target)
        else:
            runs.append((segment.text, segment.target))
    for text, target in runs:
        piece = tokenizer.encode(text)
        ids += piece
        mask += [target] * len(piece)
    return [*ids, eot], [*mask, True]


def truncate(
    rows: Sequence[Sequence[int]], masks: Sequence[Sequence[bool]], max_length: int
) -> tuple[list[list[int]], list[list[bool]], int]:
    """Rows (and their masks) cut so that none gives more than ``max_length`` inputs, and how
    many were cut.

    ``max_length`` is what the model reads at once (its context length). Inputs and targets
    are a row shifted by one, so a row keeps ``max_length + 1`` tokens: the same inputs and
    targets as the book's cut after shifting. Cutting before, not after, keeps one rule for
    the targets in :func:`collate` (past a row's last token, nothing is learnt), and a cut
    row loses its end-of-text, as it should: its answer does not end there. Call this once
    over the whole data set so the count is reported once.
    """
    if max_length < 1:
        raise ConfigError(f"max_length={max_length}: must be at least 1")
    keep = max_length + 1
    out_rows = [list(r[:keep]) for r in rows]
    out_masks = [list(m[:keep]) for m in masks]
    return out_rows, out_masks, sum(len(r) > keep for r in rows)


def collate(
    rows: Sequence[Sequence[int]],
    targets_mask: Sequence[Sequence[bool]],
    *,
    pad_id: int,
    ignore_index: int = -100,
    mask_prompt: bool = False,
    max_length: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets of a batch, both (B, T) int64: the book's padding collate (ch. 7).

    Each row already ends with end-of-text (:func:`encode_conversation`). Rows are padded
    with ``pad_id`` to the longest; inputs are every token but the last, targets every token
    but the first. Targets past a row's own last token are ``ignore_index`` (no loss on
    padding), while the row's end-of-text stays a target so the model learns to stop. The
    book finds padding by comparing with the pad id, which would also hide an end-of-text
    inside a text; here it is found by position.

    ``mask_prompt``: targets that are not target tokens (``targets_mask`` False: the prompt,
    and in a chat everything but the assistant's turns) are ``ignore_index`` too, so the loss
    is on the answers only (the book's exercise 7.2). ``max_length``: rows cut as by
    :func:`truncate` (which a caller uses instead to count the cut rows).
    """
    if len(rows) != len(targets_mask):
        raise DataError(f"{len(rows)} rows but {len(targets_mask)} target masks")
    if not rows:
        raise DataError("an empty batch: collate needs at least one row")
    if max_length is not None:
        rows, targets_mask, _ = truncate(rows, targets_mask, max_length)
    width = max(len(r) for r in rows)
    if width < 2:
        raise DataError("every row has one token: a row needs two (an input and its target)")
    padded = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (B, T+1)
    learn = torch.zeros((len(rows), width), dtype=torch.bool)  # (B, T+1): loss on this token?
    for b, (row, mask) in enumerate(zip(rows, targets_mask, strict=True)):
        if len(mask) != len(row):
            raise DataError(f"row {b} has {len(row)} ids but {len(mask)} mask values")
        padded[b, : len(row)] = torch.tensor(row, dtype=torch.long)
        learn[b, : len(row)] = torch.tensor(mask, dtype=torch.bool) if mask_prompt else True
    inputs = padded[:, :-1]  # (B, T+1) -> (B, T)
    targets = padded[:, 1:].clone()  # (B, T+1) -> (B, T): the next token of each input
    targets[~learn[:, 1:]] = ignore_index
    return inputs, targets


def split_instructions(
    items: Sequence[T], *, val_ratio: float = 0.05, test_ratio: float = 0.1
) -> tuple[list[T], list[T], list[T]]:
    """(train, validation, test) in file order, as the book splits (ch. 7): the first
    ``floor(n * (1 - val_ratio - test_ratio))`` items train, the next ``floor(n * test_ratio)``
    test, the rest validate. On the book's 1,100 records: 935 train, 55 validation, 110 test.

    No shuffling: the book's file is shuffled already, and keeping file order lets a run be
    compared with the book's split item for item. (The floors allow for rounding error, so
    0.29 * 100 gives 29, not 28.)
    """
    for name, ratio in (("val_ratio", val_ratio), ("test_ratio", test_ratio)):
        if not 0.0 <= ratio < 1.0:
            raise ConfigError(f"{name}={ratio}: must be at least 0 and below 1")
    if val_ratio + test_ratio >= 1.0:
        raise ConfigError(
            f"val_ratio={val_ratio} + test_ratio={test_ratio} leave nothing to train on: "
            "their sum must be below 1"
        )
    n = len(items)
    n_train = math.floor(n * (1.0 - val_ratio - test_ratio) + 1e-9)
    n_test = math.floor(n * test_ratio + 1e-9)
    items = list(items)
    return (
        items[:n_train],
        items[n_train + n_test :],
        items[n_train : n_train + n_test],
    )
