"""Our tokenizers in Hugging Face's formats, so ``AutoTokenizer`` gives the same ids as ours.

An export is only usable if the tokenizer travels with the weights. Two formats:

- **GPT-2's own files** (``vocab.json`` + ``merges.txt``) for GPT-2's tiktoken tokenizer: what
  OpenAI and the hub ship, read by ``GPT2Tokenizer`` and by :func:`~scratchgpt.load_gpt2`.
  tiktoken keeps only token ranks, so the merges are recovered from them.
- **tokenizer.json**, Hugging Face ``tokenizers``' one-file format (extra ``hf``), for every
  other kind, each written as the same pipeline our class runs:

  ===================  ==========================  ==================  ==================
  ours                 pre-tokenisation            model               decoder
  ===================  ==========================  ==================  ==================
  CharTokenizer        every character alone       WordLevel (chars)   concatenate
  SimpleTokenizerV1/2  the book's regex split,     WordLevel (words,   join with spaces,
                       whitespace dropped          V2: <|unk|>)        none before punct.
  BPETokenizer,        its regex, then bytes as    BPE (byte-level     bytes -> UTF-8
  other tiktoken BPEs  GPT-2's printable chars     vocab + merges)
  ===================  ==========================  ==================  ==================

Special tokens are added tokens that Hugging Face always recognises, as ours do with
``allowed_special="all"`` (GPT-2's convention); neither side adds BOS/EOS by itself. V2's two
special words are recognised only as whole words, as V2 does (``split_special_tokens``).
Each written tokenizer is checked against ours on a probe text before it is used: a kind
that cannot be written exactly (an unknown class, a regex Oniguruma reads differently) is
reported, never written approximately.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from functools import cache
from typing import Any

from ..errors import TokenizerError, missing_extra
from ..tokenizers import (
    GPT2_FILE_NAMES,
    BPETokenizer,
    CharTokenizer,
    SimpleTokenizerV1,
    SimpleTokenizerV2,
    TiktokenTokenizer,
    Tokenizer,
)
from ..tokenizers.gpt2_files import ENDOFTEXT, bytes_to_unicode
from ..tokenizers.simple import SPLIT_PATTERN, UNK
from ..tokenizers.tiktoken_bpe import GPT2_PATTERN

log = logging.getLogger(__name__)

HF_TOKENIZER = "tokenizer.json"
HF_TOKENIZER_CONFIG = "tokenizer_config.json"
# Ours, exact, beside Hugging Face's files: load_gpt2 reads it back as the same class. Never
# under HF_TOKENIZER, which AutoTokenizer would misread.
SCRATCHGPT_TOKENIZER = "scratchgpt_tokenizer.json"
# GPT-2's tokenizer files: OpenAI's names, Hugging Face's (the same data), prefixed copies.
GPT2_TOKENIZER_FILES = GPT2_FILE_NAMES

# The simple tokenizers' split, as Oniguruma (tokenizers' regex engine) reads it: the book's
# punctuation marks and "--" are pieces of their own; whitespace separates and is dropped.
PUNCTUATION = r"""[,.:;?_!"()\']"""
assert SPLIT_PATTERN.pattern == f"({PUNCTUATION}|--|\\s)", "simple.SPLIT_PATTERN changed"
# A WordLevel model needs an unknown token; one no vocabulary here can hold (chars are one
# character, words have no whitespace) makes an unknown piece an error, as ours raise.
NO_UNK = " (unknown)"
# Enough of every script and habit to tell two byte-level BPEs apart.
PROBE = (
    "Hello, world! It's 12:30 -- isn't it? We'll see; I'VE 1234567 ideas...\n\n\t  "
    "ünïcödé Ελληνικά русский 中文字符 日本語 한국어 العربية 🚀🎉 x\u00a0y\u3000z\r\n end  "
)


@dataclasses.dataclass(frozen=True)
class ByteBPE:
    """A byte-level BPE in its plainest form: what both file formats are written from.

    ``pieces[i]`` is the bytes of id i (byte tokens, then one per merge); merge n joins
    ``merges[n]`` into id ``256 + n``; special tokens keep their own ids.
    """

    pieces: list[bytes]
    merges: list[tuple[bytes, bytes]]
    special: dict[str, int]
    pattern: str


def tokenizer_files(tokenizer: Tokenizer, *, context_length: int) -> dict[str, str]:
    """The Hugging Face tokenizer files for ``tokenizer``: file name -> text.

    Empty (and a warning) for a tokenizer transformers cannot be given with the same ids;
    the export still carries ours as :data:`SCRATCHGPT_TOKENIZER`.
    """
    gpt2 = gpt2_files(tokenizer)
    if gpt2 is not None:
        vocab, merges = gpt2
        config = {"model_max_length": context_length, "tokenizer_class": "GPT2Tokenizer"}
        return {
            "vocab.json": json.dumps(vocab, ensure_ascii=False) + "\n",
            "merges.txt": "#version: 0.2\n" + "\n".join(merges) + "\n",
            HF_TOKENIZER_CONFIG: json.dumps(config, indent=2) + "\n",
        }
    try:
        built, settings = hf_tokenizer(tokenizer)
    except TokenizerError as exc:
        log.warning(
            "no tokenizer for transformers in this export (%s); scratchgpt.load_gpt2 reads "
            "the %s tokenizer from %s",
            exc,
            tokenizer.kind,
            SCRATCHGPT_TOKENIZER,
        )
        return {}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": context_length,
        # transformers would otherwise rewrite " ," as "," after decoding: not our text.
        "clean_up_tokenization_spaces": False,
        **settings,
    }
    return {
        HF_TOKENIZER: built.to_str(pretty=True) + "\n",
        HF_TOKENIZER_CONFIG: json.dumps(config, indent=2, ensure_ascii=False) + "\n",
    }


def hf_tokenizer(tokenizer: Tokenizer) -> tuple[Any, dict[str, Any]]:
    """A ``tokenizers.Tokenizer`` giving ``tokenizer``'s ids, and its tokenizer_config settings.

    Raises :class:`~scratchgpt.errors.TokenizerError` for a tokenizer that cannot be
    expressed exactly, and MissingExtraError without the ``tokenizers`` package.
    """
    try:
        import tokenizers  # noqa: F401  (the builders below import its parts)
    except ImportError as exc:
        raise missing_extra(
            "tokenizers", "hf", f"exporting a {tokenizer.kind} tokenizer for transformers"
        ) from exc
    settings: dict[str, Any] = {}
    encode: Callable[[str], list[int]] = tokenizer.encode
    if isinstance(tokenizer, CharTokenizer):
        built = _char(tokenizer)
        probes = ["".join(tokenizer.chars)]
    elif isinstance(tokenizer, SimpleTokenizerV1):
        built = _words(tokenizer)
        if isinstance(tokenizer, SimpleTokenizerV2):
            # V2 knows its special words only as whole words: "<|endoftext|>x" is unknown.
            built.encode_special_tokens = True
            settings = {"eos_token": ENDOFTEXT, "unk_token": UNK, "split_special_tokens": True}
        probes = [tokenizer.decode(range(tokenizer.vocab_size))]
    elif isinstance(tokenizer, (BPETokenizer, TiktokenTokenizer)):
        bpe = _byte_bpe(tokenizer)
        if bpe is None:
            raise TokenizerError(f"the {tokenizer.kind} tokenizer is not a plain byte-level BPE")
        built = _byte_level(bpe)
        settings = _special_settings(tokenizer, bpe)
        encode = _with_all_special(tokenizer)
        step = max(1, tokenizer.vocab_size // 4096)
        probes = [PROBE, "".join(bpe.special), tokenizer.decode(range(0, len(bpe.pieces), step))]
    else:
        raise TokenizerError(f"no Hugging Face equivalent is known for {type(tokenizer).__name__}")
    for text in probes:
        _check_same(built, encode, text, tokenizer.kind)
    return built, settings


def _char(tokenizer: CharTokenizer) -> Any:
    from tokenizers import Regex, Tokenizer as HFTokenizer, decoders, models, pre_tokenizers

    vocab = {c: i for i, c in enumerate(tokenizer.chars)}
    built = HFTokenizer(models.WordLevel(vocab, unk_token=NO_UNK))
    built.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    built.decoder = decoders.Fuse()  # the characters, joined with nothing between
    return built


@cache
def _python_whitespace() -> str:
    """Python's ``\\s`` (str.isspace) as an explicit class; Oniguruma's lacks U+001C-U+001F."""
    return "".join(f"\\x{{{ord(c):x}}}" for c in map(chr, range(0x110000)) if c.isspace())


def _words(tokenizer: SimpleTokenizerV1) -> Any:
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer as HFTokenizer,
        decoders,
        models,
        pre_tokenizers,
    )

    vocab = {w: i for i, w in enumerate(tokenizer.vocab)}
    v2 = isinstance(tokenizer, SimpleTokenizerV2)
    built = HFTokenizer(models.WordLevel(vocab, unk_token=UNK if v2 else NO_UNK))
    built.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(f"[{_python_whitespace()}]+"), behavior="removed"),
            pre_tokenizers.Split(Regex(f"{PUNCTUATION}|--"), behavior="isolated"),
        ]
    )
    # Ours joins words with spaces, then takes the space before punctuation back out: a
    # space before every token that is not punctuation, and none before the first.
    built.decoder = decoders.Sequence(
        [
            decoders.Replace(Regex(f"^(?!{PUNCTUATION})"), " "),
            decoders.Metaspace(replacement=" ", prepend_scheme="first", split=False),
        ]
    )
    if v2:
        special = [ENDOFTEXT, UNK]
        built.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special])
    return built


def _byte_level(bpe: ByteBPE) -> Any:
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer as HFTokenizer,
        decoders,
        models,
        pre_tokenizers,
    )

    to_char = bytes_to_unicode()

    def text(piece: bytes) -> str:
        return "".join(to_char[b] for b in piece)

    vocab: dict[str, int] = {}
    for i, piece in enumerate(bpe.pieces):
        if vocab.setdefault(text(piece), i) != i:
            raise TokenizerError(f"ids {vocab[text(piece)]} and {i} are the same bytes {piece!r}")
    for token, i in bpe.special.items():
        if vocab.setdefault(token, i) != i:
            raise TokenizerError(f"special token {token!r} is also the ordinary id {vocab[token]}")
    merges = [(text(a), text(b)) for a, b in bpe.merges]
    built = HFTokenizer(models.BPE(vocab, merges))
    try:
        split = pre_tokenizers.Split(Regex(bpe.pattern), behavior="isolated")
    except Exception as exc:  # tokenizers raises a bare Exception for a bad regex
        raise TokenizerError(f"Oniguruma cannot compile the pattern {bpe.pattern!r}") from exc
    built.pre_tokenizer = pre_tokenizers.Sequence(
        [split, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    built.decoder = decoders.ByteLevel()
    ordered = sorted(bpe.special, key=bpe.special.__getitem__)
    built.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ordered])
    return built


def _byte_bpe(tokenizer: BPETokenizer | TiktokenTokenizer) -> ByteBPE | None:
    """The byte-level BPE behind ``tokenizer``; None for a tiktoken vocabulary not laid out
    as byte tokens followed by one token per merge."""
    if isinstance(tokenizer, BPETokenizer):
        pieces = [tokenizer.token_bytes(i) for i in range(256 + len(tokenizer.merges))]
        merges = [(pieces[left], pieces[right]) for left, right in tokenizer.merges]
        special = {t: tokenizer.special_token_id(t) for t in tokenizer.special_tokens}
        return ByteBPE(pieces, merges, special, tokenizer.pattern)
    enc = tokenizer.encoding
    ranks: dict[bytes, int] = enc._mergeable_ranks
    pieces = sorted(ranks, key=ranks.__getitem__)
    merges = []
    for rank, token in enumerate(pieces):
        if ranks[token] != rank:
            return None  # ids with gaps
        if len(token) == 1:
            if rank >= 256:
                return None
            continue
        if rank != 256 + len(merges):
            return None  # not laid out as GPT-2's files are: byte tokens, then one per merge
        pair = _last_merge(token, ranks, rank)
        if pair is None:
            return None
        merges.append(pair)
    return ByteBPE(pieces, merges, dict(enc._special_tokens), enc._pat_str)


def gpt2_files(tokenizer: Tokenizer) -> tuple[dict[str, int], list[str]] | None:
    """GPT-2's vocab.json and merges.txt content for a tiktoken BPE of GPT-2's kind, else None.

    tiktoken keeps only token ranks; the merges are recovered from them: token 256 + i is
    made by merge i, and which two tokens it joins is what byte-pair merging the token's own
    bytes with the lower ranks only leaves as its last two pieces.
    """
    if not isinstance(tokenizer, TiktokenTokenizer):
        return None
    enc = tokenizer.encoding
    if enc._pat_str != GPT2_PATTERN or set(enc._special_tokens) - {ENDOFTEXT}:
        return None
    bpe = _byte_bpe(tokenizer)
    if bpe is None:
        return None
    to_char = bytes_to_unicode()

    def text(token: bytes) -> str:
        return "".join(to_char[b] for b in token)

    vocab = {text(token): i for i, token in enumerate(bpe.pieces)}
    vocab.update(bpe.special)
    return vocab, [f"{text(left)} {text(right)}" for left, right in bpe.merges]


def _last_merge(token: bytes, ranks: dict[bytes, int], rank: int) -> tuple[bytes, bytes] | None:
    """The two pieces BPE joins last to make ``token``: merge its bytes with ranks < rank."""
    parts = [bytes([b]) for b in token]
    while len(parts) > 2:
        best: tuple[int, int] | None = None
        for j in range(len(parts) - 1):
            r = ranks.get(parts[j] + parts[j + 1])
            if r is not None and r < rank and (best is None or r < best[0]):
                best = (r, j)
        if best is None:
            return None
        j = best[1]
        parts[j : j + 2] = [parts[j] + parts[j + 1]]
    return (parts[0], parts[1]) if len(parts) == 2 else None


def _special_settings(tokenizer: Tokenizer, bpe: ByteBPE) -> dict[str, Any]:
    """tokenizer_config's eos_token, bos_token, ...: the roles a BPE names, else <|endoftext|>."""
    roles = dict(tokenizer.roles) if isinstance(tokenizer, BPETokenizer) else {}
    eot = next((t for t, i in bpe.special.items() if i == tokenizer.eot_id), None)
    if "eos" not in roles and eot is not None:
        roles["eos"] = eot
    return {f"{role}_token": token for role, token in roles.items()}


def _with_all_special(tokenizer: BPETokenizer | TiktokenTokenizer) -> Callable[[str], list[int]]:
    """Our encode with special tokens recognised, as Hugging Face's added tokens always are."""

    def encode(text: str) -> list[int]:
        return tokenizer.encode(text, allowed_special="all")

    return encode


def _check_same(built: Any, encode: Callable[[str], list[int]], text: str, kind: str) -> None:
    """Refuse a written tokenizer that gives other ids than ours on ``text``."""
    ours = encode(text)
    try:
        theirs = built.encode(text, add_special_tokens=False).ids
    except Exception as exc:  # tokenizers raises a bare Exception
        raise TokenizerError(
            f"Hugging Face's version of the {kind} tokenizer fails on a probe text ({exc})"
        ) from exc
    if theirs != ours:
        at = next((n for n, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b), None)
        at = min(len(ours), len(theirs)) if at is None else at
        raise TokenizerError(
            f"Hugging Face's version of the {kind} tokenizer gives other ids than ours "
            f"(from token {at} of a probe text)"
        )
