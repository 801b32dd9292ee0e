"""``scratchgpt classify train|predict``: the encoder text classifier (seed 001, book ch. 6).

A classifier run is a run like a GPT's (config.yaml, metrics.jsonl, resumable checkpoints),
so its flags are built the same way: the model section from :class:`EncoderConfig` (in the
GPT's names: ``--emb-dim``, ``--n-heads``, ``--n-layers``, ...), the data section from
:class:`ClassifierDataConfig`, and the training section from the same :class:`TrainConfig`
as ``scratchgpt train``, with a small classifier's defaults.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..config import CLASSIFIER_TRAINING, ClassifierDataConfig, EncoderConfig, TrainConfig
from .flags import add_config_flags, given, short_usage

# (section, dataclass, flag names that differ from the field names, fields not offered)
SECTIONS: tuple[tuple[str, type, dict[str, str], tuple[str, ...]], ...] = (
    # vocab_size and num_classes come from the data.
    ("model", EncoderConfig, {}, ("vocab_size", "num_classes")),
    ("data", ClassifierDataConfig, {"source": "data"}, ()),
    # A GPT's sampling and sharding settings mean nothing to a classifier.
    (
        "training",
        TrainConfig,
        {},
        ("sample_interval", "sample_tokens", "sample_prompt", "fsdp", "compile"),
    ),
)


def register(sub: Any) -> None:
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
        help="train on labelled texts (a run directory, like scratchgpt train's)",
        description="Train the encoder classifier. The run directory holds config.yaml, "
        "metrics.jsonl and resumable checkpoints, like a GPT run's; each flag names its "
        "run-config key in brackets.",
        usage=short_usage("classify train"),
    )
    c.add_argument(
        "--out", type=Path, metavar="DIR", help="run directory (default: runs/<date>-<time>)"
    )
    c.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue the classifier run in RUN_DIR from its latest checkpoint",
    )
    keys: list[str] = []
    defaults = {TrainConfig: CLASSIFIER_TRAINING}
    for section, cls, names, skip in SECTIONS:
        group = c.add_argument_group(section)
        keys += add_config_flags(
            group, cls, section=section, names=names, skip=skip, defaults=defaults.get(cls)
        )
    c.set_defaults(run=run_train, config_keys=keys)

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
    from ..training.classify import train_classifier

    overrides = given(args, args.config_keys)
    if args.resume is not None:
        result = train_classifier(resume=args.resume, overrides=overrides)
    else:
        result = train_classifier(overrides=overrides, out_dir=args.out)
    print(result.summary())
    return 130 if result.run is not None and result.run.interrupted else 0
