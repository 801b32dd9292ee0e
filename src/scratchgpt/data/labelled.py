"""Labelled texts for classification: LABEL<TAB>TEXT files, the SMS Spam Collection, a toy
sentiment set, stratified splits, a word vocabulary, and batches of similar-length texts.

The SMS Spam Collection (Almeida, Gómez Hidalgo & Yamakami 2011, "Contributions to the Study
of SMS Spam Filtering", DocEng'11) is 5,574 text messages labelled ``ham`` or ``spam``, the
dataset Raschka's "Build a LLM from Scratch" fine-tunes GPT-2 on in ch. 6. It is downloaded
from UCI once, verified against a pinned sha256 and cached.

Why a word-level vocabulary (the book's :class:`SimpleTokenizerV2`, built from the training
split): spam is signalled by words ("free", "claim", "prize", "txt"), the messages are short
(about 20 words), and a vocabulary of the training set's words (those seen at least
``min_freq`` times; rarer ones and unseen ones become ``<|unk|>``) is small enough to learn
from 4,500 examples. Characters would make sequences five times longer; a BPE would need to
be trained too. Batches are padded with ``<|endoftext|>`` (as the book does) and the padding
is masked out, so a text is classified the same alone or in any batch.

Shapes: B batch, T tokens.
"""

from __future__ import annotations

import io
import logging
import random
import zipfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ..download import cache_directory, cached_download
from ..errors import ConfigError, DataError
from ..tokenizers import SimpleTokenizerV2
from ..tokenizers.gpt2_files import ENDOFTEXT
from ..tokenizers.simple import UNK, split_words

log = logging.getLogger(__name__)

SMS_SPAM_URL = "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip"
SMS_SPAM_MEMBER = "SMSSpamCollection"  # the data file inside UCI's zip
# sha256 of SMSSpamCollection v.1 (5,574 messages, 477,907 bytes), the file inside that zip.
SMS_SPAM_SHA256 = "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d"


class LabelledText(NamedTuple):
    """One example: a text and its label."""

    text: str
    label: str


def parse_labelled_lines(text: str, *, source: str = "<text>") -> list[LabelledText]:
    """``LABEL<TAB>TEXT`` lines -> examples; blank lines are skipped, quotes are plain text.

    Split by hand rather than with a CSV reader: a message starting with a double quote would
    make a CSV reader join lines (pandas' default reads 5,572 of the 5,574 SMS messages).
    """
    examples = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        label, tab, body = line.partition("\t")
        if not tab or not label.strip():
            raise DataError(f"{source}, line {lineno}: expected LABEL<TAB>TEXT, got {line[:60]!r}")
        examples.append(LabelledText(body, label.strip()))
    if not examples:
        raise DataError(f"{source}: no LABEL<TAB>TEXT lines found")
    return examples


def read_labelled_file(path: str | Path) -> list[LabelledText]:
    """Read a ``LABEL<TAB>TEXT`` file (the SMS Spam Collection's format)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"labelled data {str(path)!r} "
            f"{'is a directory' if path.is_dir() else 'does not exist'}: pass a file of "
            "LABEL<TAB>TEXT lines"
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        log.warning("%s is not UTF-8; reading it as Latin-1", path)
        text = raw.decode("latin-1")  # every byte is a character: nothing is lost
    return parse_labelled_lines(text, source=str(path))


def download_sms_spam(
    *,
    url: str = SMS_SPAM_URL,
    cache_dir: str | Path | None = None,
    force: bool = False,
) -> Path:
    """The SMS Spam Collection file, downloaded from UCI once, verified and cached.

    UCI serves a zip; ``SMSSpamCollection`` is taken out of it and must hash to its pinned
    sha256 (:data:`SMS_SPAM_SHA256`) before it is written to
    ``CACHE/sms-spam/SMSSpamCollection`` (see :func:`scratchgpt.download.cache_directory`).
    Later calls return the cached file without the network; ``force`` downloads again.
    """
    target = cache_directory(cache_dir) / "sms-spam" / SMS_SPAM_MEMBER
    hint = (
        "Offline? Download the zip by hand, extract SMSSpamCollection and pass it with --data FILE"
    )

    def member(payload: bytes) -> bytes:
        try:
            with zipfile.ZipFile(io.BytesIO(payload)) as archive:
                names = [n for n in archive.namelist() if Path(n).name == SMS_SPAM_MEMBER]
                if not names:
                    raise DataError(
                        f"{url}: the zip holds no {SMS_SPAM_MEMBER} (it has "
                        f"{', '.join(archive.namelist()) or 'nothing'})"
                    )
                return archive.read(names[0])
        except zipfile.BadZipFile as exc:
            raise DataError(f"{url}: the download is not a zip file ({exc})") from None

    return cached_download(
        url,
        target,
        sha256=SMS_SPAM_SHA256,
        name="the SMS Spam Collection",
        hint=hint,
        extract=member,
        force=force,
    )


def load_sms_spam(
    path: str | Path | None = None, *, cache_dir: str | Path | None = None
) -> list[LabelledText]:
    """The SMS Spam Collection: from ``path``, or downloaded (once) from UCI when None."""
    return read_labelled_file(path if path is not None else download_sms_spam(cache_dir=cache_dir))


def toy_sentiment_examples(n: int = 400, *, seed: int = 0) -> list[LabelledText]:
    """A small made-up sentiment set ("positive"/"negative") that needs no file or network.

    Sentences are built from templates, so the label follows from the adjectives; a
    classifier should learn it almost perfectly. For demos and tests; use real data to learn
    anything about real text.
    """
    rng = random.Random(seed)
    good = ["great", "wonderful", "lovely", "brilliant", "superb", "charming", "excellent"]
    bad = ["terrible", "awful", "boring", "dreadful", "dull", "horrible", "disappointing"]
    nouns = ["film", "book", "meal", "concert", "hotel", "game", "story", "service", "show"]
    templates = [
        "the {n} was {a}",
        "what a {a} {n} !",
        "i found the {n} {a} and {b}",
        "honestly , a {a} {n}",
        "my friends said the {n} is {a}",
        "this {n} felt {a} from start to end",
    ]
    out = []
    for _ in range(n):
        label = rng.choice(["positive", "negative"])
        words = good if label == "positive" else bad
        a, b = rng.sample(words, 2)
        text = rng.choice(templates).format(n=rng.choice(nouns), a=a, b=b)
        out.append(LabelledText(text, label))
    return out


def split_examples(
    examples: Sequence[LabelledText], *, test_ratio: float = 0.2, seed: int = 0
) -> tuple[list[LabelledText], list[LabelledText]]:
    """A stratified random split: ``test_ratio`` of each label's examples are held out.

    Stratified, so a rare class (747 spam in 5,574) has the same share on both sides and
    the held-out accuracy is not at the mercy of one lucky shuffle.
    """
    if not 0.0 < test_ratio < 1.0:
        raise ConfigError(f"test_ratio={test_ratio}: must be strictly between 0 and 1")
    rng = random.Random(seed)
    by_label: dict[str, list[LabelledText]] = {}
    for ex in examples:
        by_label.setdefault(ex.label, []).append(ex)
    train, test = [], []
    for label in sorted(by_label):
        items = by_label[label][:]
        rng.shuffle(items)
        n_test = max(1, round(len(items) * test_ratio)) if len(items) > 1 else 0
        test += items[:n_test]
        train += items[n_test:]
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test


def build_vocabulary(texts: Sequence[str], *, min_freq: int = 1) -> SimpleTokenizerV2:
    """A word tokenizer of the words seen at least ``min_freq`` times in ``texts``.

    Dropping the rarest words (mostly numbers, names and typos seen once) shrinks the
    embedding table and lets the model learn what ``<|unk|>`` means from real examples.
    """
    if min_freq < 1:
        raise ConfigError(f"min_freq={min_freq}: must be >= 1")
    counts = Counter(w for text in texts for w in split_words(text))
    words = sorted(w for w, c in counts.items() if c >= min_freq and w not in (ENDOFTEXT, UNK))
    return SimpleTokenizerV2([*words, ENDOFTEXT, UNK])


def length_bucketed_batches(
    lengths: Sequence[int], batch_size: int, *, seed: int, epoch: int
) -> list[list[int]]:
    """Epoch ``epoch``'s batches (lists of example indices) of texts of similar length.

    The examples are shuffled, cut into pools of 50 batches, each pool sorted by length and
    cut into batches, and the batches shuffled: every epoch sees new batch compositions, but
    a batch of 10-word texts is no longer padded to the one 60-word text among them (about
    three times less work on SMS, whose lengths vary widely). A pure function of (seed,
    epoch), like the language model's loaders, so a resumed run sees the same batches; every
    epoch has the same number of batches.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths)).tolist()
    pool = 50 * batch_size
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches)).tolist()]


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id rows -> ids (B, T) padded with ``pad_id`` to the longest row, and the padding
    mask (B, T), True for real tokens."""
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = True
    return ids, mask
