"""Byte-level byte-pair encoding (BPE), GPT-2 style, written from scratch to be read.

BPE builds a vocabulary bottom-up: start from the smallest units, then repeatedly glue the most
frequent adjacent pair of tokens into a new token, until the vocabulary has the size asked for
(Sennrich, Haddow and Birch 2016, "Neural Machine Translation of Rare Words with Subword Units",
ACL; the merge idea is Gage's 1994 compression scheme). GPT-2 starts from the 256 *byte* values
rather than from characters, so every string has an encoding and no unknown token is ever
needed, while frequent words still become single tokens (Radford et al. 2019, "Language Models
are Unsupervised Multitask Learners", section 2.2; Raschka 2024, "Build a Large Language Model
(From Scratch)", chapter 2, explains the same scheme for learners).

The three parts, in the order a reader meets them below:

1. **Pre-tokenisation.** A regex cuts text into "words" (letters, numbers, punctuation runs,
   whitespace, each with at most one leading space) and merges never cross a word boundary.
   Without it BPE would learn tokens such as "dog." and "dog!" and waste the vocabulary on
   every word + punctuation combination.
2. **Training** (:meth:`BPETokenizer.train`). Count each distinct word once with its frequency,
   count adjacent pairs once, then after each merge update only the counts of the words that
   contained the merged pair, and pick the next pair from a heap. Recounting every pair after
   every merge would make training quadratic in the vocabulary size.
3. **Encoding** (:meth:`BPETokenizer.encode`). Split the bytes of a word, then apply the learnt
   merges *in the order they were learnt* (lowest rank first), exactly as GPT-2's ``encoder.py``
   does; this is what makes :meth:`BPETokenizer.from_openai` give OpenAI's ids.

Ids: 0-255 are the byte tokens (in GPT-2's own order for :meth:`~BPETokenizer.from_openai`,
byte value order otherwise), merge ``i`` creates id ``256 + i``, and special tokens come last.
"""

from __future__ import annotations

import heapq
import logging
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import regex

from ..errors import TokenizerError
from .base import Tokenizer
from .gpt2_files import ENDOFTEXT, bytes_to_unicode, read_gpt2_files
from .tiktoken_bpe import GPT2_PATTERN

logger = logging.getLogger(__name__)

# GPT-4's (cl100k_base) pre-tokenisation: like GPT-2's, but contractions ignore case, a word may
# start with one punctuation character, numbers are cut into runs of at most 3 digits (so the
# vocabulary does not fill up with arbitrary numbers), and newlines are kept apart from spaces.
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
    r"""|\s*[\r\n]|\s+(?!\S)|\s+"""
)

# Pre-tokenisation patterns by exact name; any other string given as a pattern is a raw regex.
PATTERNS: dict[str, str] = {"gpt2": GPT2_PATTERN, "cl100k": CL100K_PATTERN}

# The roles a special token can play; a role -> token mapping gives bos_id, eos_id, ....
SPECIAL_ROLES: tuple[str, ...] = ("bos", "eos", "pad", "unk")
DEFAULT_SPECIAL_TOKENS: tuple[str, ...] = (ENDOFTEXT,)

# Encoding remembers the tokens of each distinct pre-tokenised word: natural text repeats a few
# thousand words endlessly, so after warm-up encoding is a regex pass plus dict look-ups. The
# cache is emptied when it reaches this many words, which bounds memory on endless streams of
# new words (random ids, base64) at the cost of re-merging the common words once.
CACHE_MAX_WORDS = 100_000

_NO_MERGE = 1 << 62  # rank of a pair that was never learnt: larger than any real rank

SpecialTokens = Sequence[str] | Mapping[str, str]


class BPETokenizer(Tokenizer):
    """Byte-level BPE: 256 byte tokens, learnt merges, then special tokens.

    Build one with :meth:`train` (from text) or :meth:`from_openai` (GPT-2's files); the
    constructor takes the learnt state directly and is what :meth:`from_dict` uses.

    ``special_tokens`` is a sequence of strings, or a mapping from a role in
    :data:`SPECIAL_ROLES` to its string (which gives :attr:`bos_id`, :attr:`eos_id`, ...).
    """

    kind = "bpe"

    def __init__(
        self,
        merges: Sequence[tuple[int, int]],
        *,
        special_tokens: SpecialTokens = DEFAULT_SPECIAL_TOKENS,
        pattern: str = "gpt2",
        byte_ids: Sequence[int] | None = None,
    ) -> None:
        self.pattern = _resolve_pattern(pattern)
        self._regex = _compile(self.pattern)
        # A pattern of our own is known to match every character; a user's regex may skip some,
        # and findall would then silently drop text, so those are checked on every encode.
        self._check_coverage = self.pattern not in PATTERNS.values()

        byte_ids = list(range(256)) if byte_ids is None else [int(i) for i in byte_ids]
        if sorted(byte_ids) != list(range(256)):
            raise TokenizerError("byte_ids must give each of the 256 bytes a distinct id in 0-255")
        self.byte_ids: tuple[int, ...] = tuple(byte_ids)

        # id -> the bytes it stands for; merges build longer tokens out of earlier ones.
        vocab: list[bytes] = [b""] * 256
        for byte, i in enumerate(self.byte_ids):
            vocab[i] = bytes([byte])
        self.merges: list[tuple[int, int]] = []
        self._ranks: dict[tuple[int, int], int] = {}
        for n, pair in enumerate(merges):
            left, right = int(pair[0]), int(pair[1])
            new_id = 256 + n
            if not (0 <= left < new_id and 0 <= right < new_id):
                raise TokenizerError(
                    f"merge {n} ({left}, {right}) uses an id that does not exist yet; merge n may "
                    f"only join ids below {new_id}"
                )
            if (left, right) in self._ranks:
                raise TokenizerError(f"merge {n} ({left}, {right}) appears twice")
            # The new id doubles as the merge's rank: a lower id was learnt earlier.
            self._ranks[(left, right)] = new_id
            self.merges.append((left, right))
            vocab.append(vocab[left] + vocab[right])

        self.special_tokens, self.roles = _normalise_special(special_tokens)
        self._special_ids: dict[str, int] = {}
        for token in self.special_tokens:
            self._special_ids[token] = len(vocab)
            vocab.append(token.encode("utf-8"))
        self._vocab = vocab
        self._first_special = 256 + len(self.merges)
        self._special_regexes: dict[frozenset[str], regex.Pattern[str]] = {}
        self._cache: dict[str, tuple[int, ...]] = {}

    # ------------------------------------------------------------------ construction

    @classmethod
    def train(
        cls,
        texts_or_files: Iterable[str | Path] | str,
        vocab_size: int,
        *,
        special_tokens: SpecialTokens = DEFAULT_SPECIAL_TOKENS,
        pattern: str = "gpt2",
    ) -> BPETokenizer:
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from text.

        ``texts_or_files`` is one text, or an iterable whose ``str`` items are texts and whose
        :class:`~pathlib.Path` items are UTF-8 files. ``pattern`` is ``"gpt2"``, ``"cl100k"``
        or a raw regex. The result has exactly ``vocab_size`` ids, and the same input always
        gives the same tokenizer: among equally frequent pairs the one with the smallest
        (left id, right id) wins. Special-token text found in the training data is cut out
        before counting, so no learnt token ever contains part of a special token.
        """
        specials, _ = _normalise_special(special_tokens)
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
            raise TokenizerError(f"vocab_size must be an int, got {vocab_size!r}")
        n_merges = vocab_size - 256 - len(specials)
        if n_merges < 0:
            raise TokenizerError(
                f"vocab_size={vocab_size} is too small: a byte-level BPE needs 256 byte tokens "
                f"+ {len(specials)} special tokens = {256 + len(specials)} ids before any merge"
            )
        compiled = _compile(_resolve_pattern(pattern))
        word_counts = _count_words(_iter_texts(texts_or_files), compiled, specials)
        merges = _learn_merges(word_counts, n_merges, n_special=len(specials))
        logger.info(
            "trained a %d-token BPE: %d merges from %d distinct words",
            vocab_size,
            len(merges),
            len(word_counts),
        )
        return cls(merges, special_tokens=special_tokens, pattern=pattern)

    @classmethod
    def from_openai(cls, encoder_json: str | Path, vocab_bpe: str | Path) -> BPETokenizer:
        """GPT-2's tokenizer from OpenAI's ``encoder.json`` and ``vocab.bpe``: tiktoken's ids.

        GPT-2 numbers its 256 byte tokens in its own order (printable bytes first), so the
        byte -> id table comes from the file rather than being the identity.

        The ids equal tiktoken's for every text made of characters assigned in Python's Unicode
        database (checked for every such code point in the tests). A code point unassigned
        there can differ: the ``regex`` module and tiktoken's Rust regex each carry their own
        Unicode tables, so a character added in a recent Unicode version may be a letter
        (``\\p{L}``) for one and a symbol for the other, and the word boundaries move.
        """
        ranks, merge_strings, special = read_gpt2_files(encoder_json, vocab_bpe)
        byte_of = {char: byte for byte, char in bytes_to_unicode().items()}

        def token_id(token: str) -> int:
            # read_gpt2_files has checked that every token is byte-encoded and present.
            return ranks[bytes(byte_of[c] for c in token)]

        missing = [b for b in range(256) if bytes([b]) not in ranks]
        if missing:
            raise TokenizerError(f"{encoder_json}: no token for the single bytes {missing[:8]}")
        byte_ids = [ranks[bytes([b])] for b in range(256)]
        merges = [(token_id(left), token_id(right)) for left, right in merge_strings]
        specials = sorted(special, key=special.__getitem__)
        for n, token in enumerate(specials):
            if special[token] != 256 + len(merges) + n:
                raise TokenizerError(
                    f"{encoder_json}: special token {token!r} has id {special[token]}, expected "
                    f"{256 + len(merges) + n} (right after the merges)"
                )
        return cls(merges, special_tokens=specials, pattern="gpt2", byte_ids=byte_ids)

    # ------------------------------------------------------------------ properties

    @property
    def vocab_size(self) -> int:
        return len(self._vocab)

    @property
    def bos_id(self) -> int | None:
        """Id of the beginning-of-sequence token (the ``"bos"`` role), if any."""
        return self._role_id("bos")

    @property
    def eos_id(self) -> int | None:
        """Id of the end-of-sequence token (the ``"eos"`` role), if any."""
        return self._role_id("eos")

    @property
    def pad_id(self) -> int | None:
        """Id of the padding token (the ``"pad"`` role), if any."""
        return self._role_id("pad")

    @property
    def unk_id(self) -> int | None:
        """Id of the ``"unk"`` role, if any; byte-level BPE itself never needs it."""
        return self._role_id("unk")

    @property
    def eot_id(self) -> int | None:
        """The document separator: the ``"eos"`` role if set, else ``"<|endoftext|>"``."""
        eos = self.eos_id
        return eos if eos is not None else self._special_ids.get(ENDOFTEXT)

    def _role_id(self, role: str) -> int | None:
        token = self.roles.get(role)
        return None if token is None else self._special_ids[token]

    def special_token_id(self, token: str) -> int:
        """The id of special token ``token``."""
        try:
            return self._special_ids[token]
        except KeyError:
            raise TokenizerError(
                f"{token!r} is not a special token of this tokenizer; it has "
                f"{', '.join(map(repr, self.special_tokens)) or 'none'}"
            ) from None

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes one id stands for (a special token's UTF-8 text for a special id)."""
        (i,) = self.check_ids([token_id])
        return self._vocab[i]

    # ------------------------------------------------------------------ encoding

    def encode(
        self,
        text: str,
        *,
        add_special_tokens: bool = False,
        allowed_special: Literal["all"] | Collection[str] = (),
    ) -> list[int]:
        """Ids for ``text``.

        Special-token text inside ``text`` is ordinary text (so untrusted input cannot inject
        a document boundary) unless listed in ``allowed_special`` (or ``"all"``), as in
        tiktoken. ``add_special_tokens`` puts the ``bos`` / ``eos`` role tokens around the
        result, where this tokenizer has them.
        """
        _check_text(text)
        ids: list[int] = []
        if add_special_tokens and (bos := self.bos_id) is not None:
            ids.append(bos)
        splitter = self._special_splitter(allowed_special)
        if splitter is None:
            self._encode_ordinary(text, ids)
        else:
            # Special tokens cut the text into segments that are encoded on their own, so the
            # pre-tokenisation regex never sees (and never splits) a special token.
            start = 0
            for match in splitter.finditer(text):
                self._encode_ordinary(text[start : match.start()], ids)
                ids.append(self._special_ids[match.group()])
                start = match.end()
            self._encode_ordinary(text[start:], ids)
        if add_special_tokens and (eos := self.eos_id) is not None:
            ids.append(eos)
        return ids

    def _encode_ordinary(self, text: str, out: list[int]) -> None:
        """Append the ids of ``text`` (no special tokens) to ``out``, word by word."""
        words = self._regex.findall(text)
        if self._check_coverage and sum(map(len, words)) != len(text):
            raise TokenizerError(
                f"the pre-tokenisation pattern {self.pattern!r} does not match every character "
                "of the text, so part of it would be lost; use a pattern that covers all text"
            )
        cache = self._cache
        for word in words:
            tokens = cache.get(word)
            if tokens is None:
                tokens = self._merge_word(word)
                if len(cache) >= CACHE_MAX_WORDS:
                    cache.clear()
                cache[word] = tokens
            out.extend(tokens)

    def _merge_word(self, word: str) -> tuple[int, ...]:
        """Apply the learnt merges to one pre-tokenised word, earliest-learnt pair first.

        Merging in learning order replays what training did to this word: a pair learnt early
        (frequent) is glued before a pair learnt later, so " the" becomes one token through the
        same intermediate tokens every time. Each round merges every occurrence of the best
        pair, left to right, as GPT-2's ``encoder.py`` does.
        """
        ranks = self._ranks
        ids = [self.byte_ids[b] for b in word.encode("utf-8")]
        while len(ids) > 1:
            best = min(pairwise(ids), key=lambda pair: ranks.get(pair, _NO_MERGE))
            new_id = ranks.get(best)
            if new_id is None:  # no adjacent pair was ever learnt: the word is finished
                break
            ids = _replace_pair(ids, best, new_id)
        return tuple(ids)

    def _special_splitter(
        self, allowed_special: Literal["all"] | Collection[str]
    ) -> regex.Pattern[str] | None:
        """A regex matching the allowed special tokens, or None when none are allowed."""
        if isinstance(allowed_special, str) and allowed_special == "all":
            allowed = frozenset(self.special_tokens)
        else:
            allowed = frozenset(allowed_special)
            unknown = sorted(allowed - self._special_ids.keys())
            if unknown:
                raise TokenizerError(
                    f"allowed_special lists {', '.join(map(repr, unknown))}, which "
                    f"{'is' if len(unknown) == 1 else 'are'} not special tokens of this "
                    f"tokenizer; it has {', '.join(map(repr, self.special_tokens)) or 'none'}"
                )
        if not allowed:
            return None
        splitter = self._special_regexes.get(allowed)
        if splitter is None:
            splitter = _special_regex(allowed)
            self._special_regexes[allowed] = splitter
        return splitter

    # ------------------------------------------------------------------ decoding

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = False) -> str:
        """Text for ``ids``; bytes that are not valid UTF-8 become U+FFFD (as in tiktoken).

        A single id can end in the middle of a multi-byte character, so the bytes of all ids
        are joined first and decoded once.
        """
        ids = self.check_ids(ids)
        if skip_special_tokens:
            ids = [i for i in ids if i < self._first_special]
        vocab = self._vocab
        return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")

    # ------------------------------------------------------------------ save / load

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "version": 1,
            "pattern": self.pattern,
            # A role mapping is kept as a mapping so the roles survive a save/load.
            "special_tokens": (dict(self.roles) if self.roles else list(self.special_tokens)),
            # "left right" ids, one merge per line of the file; merge n creates id 256 + n.
            "merges": [f"{left} {right}" for left, right in self.merges],
        }
        if self.byte_ids != tuple(range(256)):
            data["byte_ids"] = list(self.byte_ids)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], directory: Path) -> BPETokenizer:
        if data.get("version") != 1:
            raise TokenizerError(f"unsupported BPE tokenizer file version {data.get('version')!r}")
        try:
            merges = [_parse_merge(line) for line in data["merges"]]
            return cls(
                merges,
                special_tokens=data["special_tokens"],
                pattern=data["pattern"],
                byte_ids=data.get("byte_ids"),
            )
        except TokenizerError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise TokenizerError(f"malformed BPE tokenizer file: {exc!r}") from exc

    def __repr__(self) -> str:
        return (
            f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
            f"special_tokens={self.special_tokens})"
        )


# ---------------------------------------------------------------------- training


def _learn_merges(
    word_counts: Mapping[str, int], n_merges: int, *, n_special: int
) -> list[tuple[int, int]]:
    """The ``n_merges`` most frequent pair merges over ``word_counts`` (word -> frequency).

    Each distinct word is stored once as a list of ids with its frequency, so a pair inside
    " the" is counted as (number of " the") in one addition. The pair counts are built once;
    a merge then touches only the words that contain the merged pair (``where``), subtracting
    their old pairs and adding their new ones. The next pair comes from a heap keyed by
    (-count, left, right): counts only go *down* for existing pairs, so instead of updating
    the heap on every decrease we re-check an entry when it is popped and push it back with
    its current count if it was stale ("lazy invalidation"); only pairs that include the new
    token can gain count, and those are pushed as they appear.
    """
    words = [list(word.encode("utf-8")) for word in word_counts]
    counts = list(word_counts.values())
    pair_counts: Counter[tuple[int, int]] = Counter()
    where: dict[tuple[int, int], set[int]] = {}
    for w, (word, count) in enumerate(zip(words, counts, strict=True)):
        for pair in pairwise(word):
            pair_counts[pair] += count
            where.setdefault(pair, set()).add(w)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[int, int]] = []
    while len(merges) < n_merges:
        if not heap:
            raise TokenizerError(
                f"the training text only supports {len(merges)} merges (every word is already "
                f"a single token), so vocab_size can be at most "
                f"{256 + len(merges) + n_special} for this text; {n_merges} merges were needed. "
                "Train on more text or ask for a smaller vocab_size"
            )
        neg_count, pair = heapq.heappop(heap)
        count = pair_counts.get(pair, 0)
        if count <= 0:  # merged already, or every occurrence was absorbed by other merges
            continue
        if -neg_count != count:  # stale entry: put it back with its true count
            heapq.heappush(heap, (-count, pair))
            continue
        new_id = 256 + len(merges)
        merges.append(pair)
        new_pairs: set[tuple[int, int]] = set()
        for w in where.pop(pair):
            word = words[w]
            merged = _replace_pair(word, pair, new_id)
            if len(merged) == len(word):  # an earlier merge already consumed the pair here
                continue
            weight = counts[w]
            for old in pairwise(word):
                pair_counts[old] -= weight
            for new in pairwise(merged):
                pair_counts[new] += weight
                if new_id in new:
                    new_pairs.add(new)
                    where.setdefault(new, set()).add(w)
            words[w] = merged
        del pair_counts[pair]
        for new in new_pairs:
            heapq.heappush(heap, (-pair_counts[new], new))
    return merges


def _count_words(
    texts: Iterable[tuple[str, str]], pattern: regex.Pattern[str], specials: Sequence[str]
) -> Counter[str]:
    """Frequency of each pre-tokenised word over all texts (``(source name, text)`` pairs)."""
    splitter = _special_regex(specials) if specials else None
    word_counts: Counter[str] = Counter()
    for source, text in texts:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise TokenizerError(
                f"{source}: character {exc.object[exc.start]!r} at position {exc.start} is a "
                "lone surrogate, which is not valid text and has no UTF-8 bytes"
            ) from None
        # Special tokens in the data are boundaries, never material for merges.
        for segment in splitter.split(text) if splitter is not None else (text,):
            words = pattern.findall(segment)
            if pattern.pattern not in PATTERNS.values() and sum(map(len, words)) != len(segment):
                raise TokenizerError(
                    f"the pre-tokenisation pattern {pattern.pattern!r} does not match every "
                    f"character of {source}; use a pattern that covers all text"
                )
            word_counts.update(words)
    return word_counts


def _iter_texts(texts_or_files: Iterable[str | Path] | str) -> Iterator[tuple[str, str]]:
    """(source name, text) for each text or file, reading files lazily."""
    if isinstance(texts_or_files, str):
        yield "the text", texts_or_files
        return
    for n, item in enumerate(texts_or_files):
        if isinstance(item, Path):
            yield str(item), read_text_file(item)
        elif isinstance(item, str):
            yield f"text {n}", item
        else:
            raise TokenizerError(
                f"training input {n} is a {type(item).__name__}; pass str texts or Path files"
            )


def read_text_file(path: str | Path) -> str:
    """The text of a UTF-8 file, with an error naming the file when it is missing or not UTF-8."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TokenizerError(f"training file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise TokenizerError(f"training file {str(path)!r} is a directory") from None
    except UnicodeDecodeError as exc:
        raise TokenizerError(
            f"training file {str(path)!r} is not UTF-8 text (invalid byte at offset "
            f"{exc.start}); convert it to UTF-8 first"
        ) from None


# ---------------------------------------------------------------------- helpers


def _replace_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """``ids`` with every non-overlapping occurrence of ``pair``, left to right, as ``new_id``."""
    left, right = pair
    out: list[int] = []
    i, n = 0, len(ids)
    while i < n:
        if i + 1 < n and ids[i] == left and ids[i + 1] == right:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _parse_merge(line: str) -> tuple[int, int]:
    left, right = line.split(" ")
    return int(left), int(right)


def _check_text(text: object) -> None:
    if not isinstance(text, str):
        raise TokenizerError(f"encode expects a str, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise TokenizerError(
            f"character {text[exc.start]!r} at position {exc.start} is a lone surrogate, which "
            "is not valid text and has no UTF-8 bytes (was the text decoded with "
            "errors='surrogateescape'?)"
        ) from None


def _resolve_pattern(pattern: str) -> str:
    if not isinstance(pattern, str) or not pattern:
        raise TokenizerError(
            f"pattern must be one of {', '.join(PATTERNS)} or a regex string, got {pattern!r}"
        )
    return PATTERNS.get(pattern, pattern)


def _compile(pattern: str) -> regex.Pattern[str]:
    try:
        return regex.compile(pattern)
    except regex.error as exc:
        raise TokenizerError(
            f"pattern {pattern!r} is neither one of {', '.join(PATTERNS)} nor a valid regex: {exc}"
        ) from None


def _special_regex(tokens: Iterable[str]) -> regex.Pattern[str]:
    # Longest first, so a special token that contains another one wins where both match.
    ordered = sorted(tokens, key=lambda t: (-len(t), t))
    return regex.compile("|".join(regex.escape(t) for t in ordered))


def _normalise_special(special_tokens: SpecialTokens) -> tuple[list[str], dict[str, str]]:
    """(tokens in id order, role -> token) from a sequence of tokens or a role mapping."""
    if isinstance(special_tokens, str):
        raise TokenizerError(
            f"special_tokens must be a sequence of strings or a role mapping, not the string "
            f"{special_tokens!r}; write ({special_tokens!r},) for a single token"
        )
    if isinstance(special_tokens, Mapping):
        roles = {str(role): token for role, token in special_tokens.items()}
        unknown = [role for role in roles if role not in SPECIAL_ROLES]
        if unknown:
            raise TokenizerError(
                f"unknown special-token roles {unknown}; the roles are {', '.join(SPECIAL_ROLES)} "
                "(pass a list instead for tokens without a role)"
            )
        tokens = list(roles.values())
    else:
        roles = {}
        tokens = list(special_tokens)
    for token in tokens:
        if not isinstance(token, str) or not token:
            raise TokenizerError(f"special tokens must be non-empty strings, got {token!r}")
        try:
            token.encode("utf-8")
        except UnicodeEncodeError:
            raise TokenizerError(f"special token {token!r} is not valid text") from None
    if len(set(tokens)) != len(tokens):
        raise TokenizerError(f"special tokens must be distinct, got {tokens}")
    return tokens, roles
