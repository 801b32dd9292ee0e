"""Tokenizer helpers behind the ``scratchgpt tokenizer`` commands: train a BPE from files, and
show where an encoding cuts a text.

Seeing the cuts is the quickest way to understand a tokenizer: " the" is one token, a rare word
is three, an emoji is several byte tokens that only become a character when joined.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..errors import TokenizerError
from .base import Tokenizer
from .bpe import DEFAULT_SPECIAL_TOKENS, BPETokenizer, SpecialTokens, read_text_file
from .tiktoken_bpe import TiktokenTokenizer


def train_bpe_files(
    paths: Iterable[str | Path],
    vocab_size: int,
    *,
    special_tokens: SpecialTokens = DEFAULT_SPECIAL_TOKENS,
    pattern: str = "gpt2",
) -> BPETokenizer:
    """Train a :class:`BPETokenizer` of exactly ``vocab_size`` ids on UTF-8 text files.

    Every file is checked before training starts, so a typo in the last path fails at once
    with the file's name rather than after the others were read.
    """
    files = [Path(p) for p in ([paths] if isinstance(paths, str | Path) else paths)]
    if not files:
        raise TokenizerError("train_bpe_files needs at least one file")
    for file in files:
        if not file.is_file():
            raise TokenizerError(
                f"training file {str(file)!r} "
                f"{'is a directory' if file.is_dir() else 'does not exist'}"
            )
    texts = (read_text_file(file) for file in files)
    return BPETokenizer.train(texts, vocab_size, special_tokens=special_tokens, pattern=pattern)


def explain_encoding(tokenizer: Tokenizer, text: str) -> list[tuple[int, str]]:
    """Each id of ``tokenizer.encode(text)`` with the piece of text it stands for.

    Byte-level tokens can hold part of a multi-byte character (an emoji is often 2-4 tokens);
    those bytes are shown as ``\\xNN`` escapes, since they are not text on their own.
    """
    return [(i, token_text(tokenizer, i)) for i in tokenizer.encode(text)]


def token_text(tokenizer: Tokenizer, token_id: int) -> str:
    """Readable text of one id; bytes that are not complete UTF-8 are escaped as ``\\xNN``."""
    raw: bytes | None = None
    if isinstance(tokenizer, BPETokenizer):
        raw = tokenizer.token_bytes(token_id)
    elif isinstance(tokenizer, TiktokenTokenizer):
        (token_id,) = tokenizer.check_ids([token_id])
        raw = tokenizer.encoding.decode_single_token_bytes(token_id)
    if raw is None:  # word and character tokenizers: every id is whole text already
        return tokenizer.decode([token_id])
    return raw.decode("utf-8", errors="backslashreplace")
