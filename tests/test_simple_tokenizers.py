"""The book's word-level tokenizers (Raschka 2024, chapter 2): its vocabulary sizes and ids on
the-verdict, unknown words, round trips and save/load."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from scratchgpt.tokenizers import (
    SimpleTokenizerV1,
    SimpleTokenizerV2,
    TokenizerError,
    get_tokenizer,
    load_tokenizer,
)
from scratchgpt.tokenizers.simple import split_words

BOOK_V1_TEXT = """"It's the last he painted, you know," Mrs. Gisburn said with pardonable pride."""
BOOK_V2_TEXT = "Hello, do you like tea? <|endoftext|> In the sunlit terraces of the palace."


@pytest.fixture(scope="module")
def verdict(shared_data: Callable[[str], Path]) -> str:
    return shared_data("the-verdict.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def v1(verdict: str) -> SimpleTokenizerV1:
    return SimpleTokenizerV1.from_text(verdict)


@pytest.fixture(scope="module")
def v2(verdict: str) -> SimpleTokenizerV2:
    return SimpleTokenizerV2.from_text(verdict)


def test_seed_vocabulary_sizes(verdict: str, v1: SimpleTokenizerV1, v2: SimpleTokenizerV2) -> None:
    assert len(split_words(verdict)) == 4690  # the book's token count before deduplication
    assert v1.vocab_size == 1130
    assert v2.vocab_size == 1132
    assert v2.vocab[-2:] == ["<|endoftext|>", "<|unk|>"]
    assert v2.vocab[:-2] == v1.vocab  # words keep their V1 ids
    assert v2.eot_id == 1130 and v2.unk_id == 1131


def test_split_drops_whitespace_and_keeps_punctuation() -> None:
    assert split_words("Hello, world. Is this-- a test?") == [
        "Hello", ",", "world", ".", "Is", "this", "--", "a", "test", "?",
    ]  # fmt: skip
    assert split_words(" \n\t ") == []


def test_book_ids_v1(v1: SimpleTokenizerV1) -> None:
    ids = v1.encode(BOOK_V1_TEXT)
    assert ids == [1, 56, 2, 850, 988, 602, 533, 746, 5, 1126, 596, 5, 1, 67, 7, 38, 851, 1108,
                   754, 793, 7]  # fmt: skip
    assert v1.decode(ids) == (
        '" It\' s the last he painted, you know," Mrs. Gisburn said with pardonable pride.'
    )


def test_book_ids_v2(v2: SimpleTokenizerV2) -> None:
    ids = v2.encode(BOOK_V2_TEXT)
    assert ids == [1131, 5, 355, 1126, 628, 975, 10, 1130, 55, 988, 956, 984, 722, 988, 1131, 7]
    assert v2.decode(ids) == (
        "<|unk|>, do you like tea? <|endoftext|> In the sunlit terraces of the <|unk|>."
    )


def test_v1_unknown_word_is_named(v1: SimpleTokenizerV1) -> None:
    with pytest.raises(TokenizerError, match="word 'Hello' is not in"):
        v1.encode(BOOK_V2_TEXT)


def test_invalid_input(v1: SimpleTokenizerV1, v2: SimpleTokenizerV2) -> None:
    for tok in (v1, v2):
        with pytest.raises(TokenizerError, match="expected a str"):
            tok.encode(b"the")  # type: ignore[arg-type]
        with pytest.raises(TokenizerError, match="outside this tokenizer's vocabulary"):
            tok.decode([tok.vocab_size])
    with pytest.raises(TokenizerError, match="at least one word"):
        SimpleTokenizerV1.from_text("  \n")
    with pytest.raises(TokenizerError, match="distinct"):
        SimpleTokenizerV1(["a", "a"])
    with pytest.raises(TokenizerError, match=re.escape("must contain '<|unk|>'")):
        SimpleTokenizerV2(["a", "<|endoftext|>"])


def test_v2_from_text_containing_special_tokens_has_them_once() -> None:
    tok = SimpleTokenizerV2.from_text("a <|unk|> b <|endoftext|>")
    assert tok.vocab == ["a", "b", "<|endoftext|>", "<|unk|>"]


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_round_trip_on_representable_text(
    v1: SimpleTokenizerV1, v2: SimpleTokenizerV2, data: st.DataObject
) -> None:
    # Any id sequence decodes to text in the tokenizers' canonical spacing, and that text
    # encodes back to the same ids and decodes to itself.
    for tok in (v1, v2):
        ids = data.draw(st.lists(st.integers(0, tok.vocab_size - 1), max_size=40))
        text = tok.decode(ids)
        assert tok.encode(text) == ids
        assert tok.decode(tok.encode(text)) == text


def test_round_trip_on_normalised_verdict(verdict: str, v1: SimpleTokenizerV1) -> None:
    text = v1.decode(v1.encode(verdict))
    assert v1.decode(v1.encode(text)) == text
    assert len(v1.encode(text)) == 4690


@pytest.mark.parametrize("cls", [SimpleTokenizerV1, SimpleTokenizerV2])
def test_save_load(cls: type[SimpleTokenizerV1], verdict: str, tmp_path: Path) -> None:
    tok = cls.from_text(verdict)
    for target in (tmp_path / cls.kind, tmp_path / f"{cls.kind}.json"):
        loaded = load_tokenizer(tok.save(target))
        assert type(loaded) is cls and loaded.kind == cls.kind
        assert loaded.vocab == tok.vocab
        assert cls.load(target).encode("the last") == tok.encode("the last")


def test_get_tokenizer_simple(verdict: str) -> None:
    tok = get_tokenizer("simple", text=verdict)
    assert isinstance(tok, SimpleTokenizerV2) and tok.vocab_size == 1132
    with pytest.raises(TokenizerError, match="pass text"):
        get_tokenizer("simple")
