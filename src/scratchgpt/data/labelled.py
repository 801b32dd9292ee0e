"""Labelled texts for classification: the SMS Spam Collection, a toy sentiment set, class
balancing, stratified splits, label checks, a word vocabulary, and batches of similar-length
texts. The file readers (LABEL<TAB>TEXT, CSV/TSV, JSON) live in :mod:`.tables` and are
re-exported here.

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

import numpy as np
import torch

from ..download import cache_directory, cached_download
from ..errors import ConfigError, DataError
from ..tokenizers import SimpleTokenizerV2
from ..tokenizers.gpt2_files import ENDOFTEXT
from ..tokenizers.simple import UNK, split_words
from .tables import (
    LabelledText as LabelledText,
    parse_labelled_lines as parse_labelled_lines,
    read_labelled_file as read_labelled_file,
)

log = logging.getLogger(__name__)

SMS_SPAM_URL = "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip"
SMS_SPAM_MEMBER = "SMSSpamCollection"  # the data file inside UCI's zip
# sha256 of SMSSpamCollection v.1 (5,574 messages, 477,907 bytes), the file inside that zip.
SMS_SPAM_SHA256 = "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d"


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


def balance_classes(examples: Sequence[LabelledText], *, seed: int) -> list[LabelledText]:
    """Every label undersampled to the count of the rarest, in an order shuffled from ``seed``.

    The book's balanced SMS set (747 ham drawn from 4,827, beside the 747 spam): a classifier
    trained on 87% ham learns that "ham" is a safe guess, and the accuracy of a balanced test
    set reads plainly (50% is chance). Undersampling throws data away; keep it for the demo and
    small runs. Which examples are kept is a pure function of ``seed`` and the input order.
    """
    rng = random.Random(seed)
    by_label = _by_label(examples)
    if not by_label:
        return []
    smallest = min(len(items) for items in by_label.values())
    kept = [ex for label in sorted(by_label) for ex in rng.sample(by_label[label], smallest)]
    rng.shuffle(kept)
    return kept


def split_three(
    examples: Sequence[LabelledText], *, val_ratio: float, test_ratio: float, seed: int
) -> tuple[list[LabelledText], list[LabelledText], list[LabelledText]]:
    """A stratified random train/validation/test split, each list in a shuffled order.

    Per label, ``round(n * test_ratio)`` examples are held out for testing and
    ``round(n * val_ratio)`` for validation, the rest train: stratified, so a rare class (747
    spam in 5,574) has the same share in every split and a held-out accuracy is not at the mercy
    of one lucky shuffle. A split asked for (ratio > 0) gets at least one example of each label
    while training keeps one (so every split has every label once a label has 3 examples); test
    comes before validation when there are too few. ``val_ratio=0`` leaves validation empty.
    A pure function of ``seed`` and the input order.
    """
    for name, ratio in (("val_ratio", val_ratio), ("test_ratio", test_ratio)):
        if not 0.0 <= ratio < 1.0:
            raise ConfigError(f"{name}={ratio}: must be at least 0 and below 1")
    if val_ratio + test_ratio >= 1.0:
        raise ConfigError(
            f"val_ratio={val_ratio} + test_ratio={test_ratio} leave nothing to train on: "
            "their sum must be below 1"
        )
    rng = random.Random(seed)
    by_label = _by_label(examples)
    train, val, test = [], [], []
    for label in sorted(by_label):
        items = by_label[label][:]
        rng.shuffle(items)
        n_test, n_val = _held_out(len(items), val_ratio=val_ratio, test_ratio=test_ratio)
        test += items[:n_test]
        val += items[n_test : n_test + n_val]
        train += items[n_test + n_val :]
    for part in (train, val, test):
        rng.shuffle(part)
    return train, val, test


def _held_out(n: int, *, val_ratio: float, test_ratio: float) -> tuple[int, int]:
    """(test, validation) counts of a label with ``n`` examples; see :func:`split_three`."""
    n_test = max(round(n * test_ratio), 1 if test_ratio > 0 else 0)
    n_val = max(round(n * val_ratio), 1 if val_ratio > 0 else 0)
    while n_test + n_val > n - 1 and n_test + n_val > 0:  # training keeps one
        if n_val >= n_test and n_val > 0:
            n_val -= 1  # validation gives way first on a tie: testing needs the example more
        else:
            n_test -= 1
    return n_test, n_val


def split_examples(
    examples: Sequence[LabelledText], *, test_ratio: float = 0.2, seed: int = 0
) -> tuple[list[LabelledText], list[LabelledText]]:
    """A stratified random train/test split: :func:`split_three` without validation."""
    if not 0.0 < test_ratio < 1.0:
        raise ConfigError(f"test_ratio={test_ratio}: must be strictly between 0 and 1")
    train, _, test = split_three(examples, val_ratio=0.0, test_ratio=test_ratio, seed=seed)
    return train, test


def check_labels(examples: Sequence[LabelledText], *, source: str) -> list[str]:
    """The examples' labels, sorted (class ``i`` is ``labels[i]``); at least two are needed."""
    labels = sorted({ex.label for ex in examples})
    if len(labels) < 2:
        has = f"only {labels[0]!r}" if labels else "no examples"
        raise DataError(f"a classifier needs at least two labels; {source} has {has}")
    return labels


def map_labels(
    examples: Sequence[LabelledText], labels: Sequence[str], *, source: str
) -> list[int]:
    """Each example's class number: its label's index in ``labels`` (the training labels).

    A label that is not a training label but a class number (``"1"``, as a file of ``0``/``1``
    labels has it) stands for that class, so such a file can be scored against a model
    trained on named labels. Anything else is an error naming the first such example.
    """
    index = {label: i for i, label in enumerate(labels)}
    out = []
    for n, ex in enumerate(examples, start=1):
        i = index.get(ex.label)
        if i is None and ex.label.isascii() and ex.label.isdecimal():
            i = int(ex.label) if int(ex.label) < len(labels) else None
        if i is None:
            raise DataError(
                f"{source}: label {ex.label!r} (example {n}) is not one of the training labels "
                f"{list(labels)} nor a class number 0..{len(labels) - 1}"
            )
        out.append(i)
    return out


def truncate_rows(rows: list[list[int]], max_length: int) -> tuple[list[list[int]], int]:
    """Token rows cut to ``max_length`` (new lists), and how many were cut.

    A classifier sees at most its context length of tokens; the count is returned rather than
    logged so the caller can say how much of its data was shortened, where it can name the data.
    """
    if max_length < 1:
        raise ConfigError(f"max_length={max_length}: must be >= 1")
    return [row[:max_length] for row in rows], sum(len(row) > max_length for row in rows)


def _by_label(examples: Sequence[LabelledText]) -> dict[str, list[LabelledText]]:
    by_label: dict[str, list[LabelledText]] = {}
    for ex in examples:
        by_label.setdefault(ex.label, []).append(ex)
    return by_label


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
