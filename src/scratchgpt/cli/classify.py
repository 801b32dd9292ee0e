"""``scratchgpt classify train|predict``: the encoder text classifier (seed 001, book ch. 6)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..config import EncoderConfig
from .flags import add_config_flags, given, short_usage


def register(sub: Any) -> None:
    from ..classifier import ClassifierTrainConfig

    p = sub.add_parser(
        "classify",
        help="train a Transformer-encoder text classifier, or classify texts with one",
        description="Train the encoder classifier on LABEL<TAB>TEXT lines (by default the SMS "
        "Spam Collection, downloaded once from UCI and checked against its sha256) and report "
        "its held-out accuracy; or classify texts with a trained one.",
    )
    csub = p.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=type(p))
    c = csub.add_parser(
        "train",
        help="train on labelled texts and save the classifier",
        usage=short_usage("classify train"),
    )
    c.add_argument(
        "--data",
        type=Path,
        metavar="FILE",
        help="a file of LABEL<TAB>TEXT lines (default: the SMS Spam Collection, downloaded "
        "into the cache)",
    )
    c.add_argument("--out", type=Path, required=True, metavar="DIR", help="the run directory")
    c.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps [default: cpu]")
    model = c.add_argument_group("model (the classifier's shape, in the GPT's names)")
    model_keys = add_config_flags(model, EncoderConfig, skip=("vocab_size", "num_classes"))
    training = c.add_argument_group("training")
    train_keys = add_config_flags(training, ClassifierTrainConfig)
    c.set_defaults(run=run_train, model_keys=model_keys, train_keys=train_keys)

    c = csub.add_parser(
        "predict",
        help="classify texts with a trained classifier",
        usage=short_usage("classify predict", "TEXT ..."),
    )
    c.add_argument(
        "--checkpoint",
        type=Path,
        required=True,
        metavar="DIR",
        help="a classifier's run or checkpoint directory",
    )
    c.add_argument("texts", nargs="+", metavar="TEXT", help="the texts to classify")
    c.set_defaults(run=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    from ..classifier import TextClassifier

    classifier = TextClassifier.load(args.checkpoint)
    probs = classifier.predict_proba(args.texts)
    for text, row in zip(args.texts, probs, strict=True):
        best = int(row.argmax())
        print(f"{classifier.labels[best]}\t{row[best].item():.3f}\t{text}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from ..classifier import (
        ClassifierTrainConfig,
        load_sms_spam,
        read_labelled_file,
        train_classifier,
    )
    from ..config import from_data

    examples = read_labelled_file(args.data) if args.data else load_sms_spam()
    result = train_classifier(
        examples,
        config=from_data(ClassifierTrainConfig, given(args, args.train_keys)),
        model_config=given(args, args.model_keys),
        out_dir=args.out,
        device=args.device,
    )
    print(
        f"held-out accuracy: {result.test_accuracy:.2%} on {result.n_test:,} texts "
        f"(always the most common label: {result.majority_accuracy:.2%}); "
        f"trained on {result.n_train:,} in {result.seconds:.1f} s\n"
        f"classifier: {result.path}\n"
        f'classify with: scratchgpt classify predict --checkpoint {result.path} "some text"'
    )
    return 0
