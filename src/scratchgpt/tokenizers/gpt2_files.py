"""Reading OpenAI's GPT-2 tokenizer files: ``encoder.json`` and ``vocab.bpe``.

GPT-2's BPE works on bytes, but OpenAI stored its vocabulary as JSON text. To make every byte
a printable character (JSON and the merges file are whitespace-separated text), each of the
256 byte values is mapped to one unicode character: printable Latin-1 bytes map to themselves,
the other 68 (control characters, space, ...) to the characters from U+0100 upwards. So "Ġ"
(U+0120) in a token string is byte 0x20, a space. (Radford et al. 2019, the ``encoder.py`` of
the openai/gpt-2 release.)
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from ..errors import TokenizerError

ENDOFTEXT = "<|endoftext|>"


@cache
def bytes_to_unicode() -> dict[int, str]:
    """The reversible byte -> printable character table GPT-2's files are written in."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in table:
            # Bytes that would be invisible or whitespace get fresh code points above 255.
            table[b] = chr(256 + shifted)
            shifted += 1
    return table


def read_gpt2_files(
    encoder_json: str | Path, vocab_bpe: str | Path
) -> tuple[dict[bytes, int], list[tuple[str, str]], dict[str, int]]:
    """Parse the two files into (byte-token ranks, merges, special tokens).

    The ranks are checked against the merges: token 256 + i must be the result of merge i,
    which is what lets a tiktoken-style "merge the lowest-ranked pair" loop reproduce GPT-2.
    """
    encoder_json, vocab_bpe = Path(encoder_json), Path(vocab_bpe)
    for p in (encoder_json, vocab_bpe):
        if not p.is_file():
            raise TokenizerError(
                f"GPT-2 tokenizer file {str(p)!r} not found; pass the encoder.json and vocab.bpe "
                "of OpenAI's GPT-2 release"
            )
    try:
        encoder = json.loads(encoder_json.read_text(encoding="utf-8"))
        lines = vocab_bpe.read_text(encoding="utf-8").split("\n")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TokenizerError(f"cannot read GPT-2 tokenizer files: {exc}") from exc
    if not isinstance(encoder, dict):
        raise TokenizerError(f"{encoder_json}: expected a JSON object of token -> id")

    byte_of = {ch: b for b, ch in bytes_to_unicode().items()}

    def to_bytes(token: str) -> bytes:
        try:
            return bytes(byte_of[ch] for ch in token)
        except KeyError as exc:
            raise TokenizerError(f"{encoder_json}: token {token!r} is not byte-encoded") from exc

    special = {tok: i for tok, i in encoder.items() if tok in (ENDOFTEXT, "<|startoftext|>")}
    ranks = {to_bytes(tok): int(i) for tok, i in encoder.items() if tok not in special}
    merges = [tuple(line.split(" ")) for line in lines[1:] if line]
    if any(len(m) != 2 for m in merges):
        raise TokenizerError(f"{vocab_bpe}: every line after the header must be 'left right'")
    merges_t: list[tuple[str, str]] = [(m[0], m[1]) for m in merges]
    for i, (left, right) in enumerate(merges_t):
        if ranks.get(to_bytes(left + right)) != 256 + i:
            raise TokenizerError(
                f"{encoder_json} and {vocab_bpe} do not match: merge {i} ({left!r} + {right!r}) "
                f"should produce token id {256 + i}; are they from the same release?"
            )
    return ranks, merges_t, special
