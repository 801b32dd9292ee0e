"""``scratchgpt classify train|predict``: text classifiers, on either backbone.

``--backbone encoder`` (the default without ``--init-from``) trains seed 001's small encoder
from scratch; ``--init-from NAME_OR_DIR`` (or ``--checkpoint DIR``, a run of ours) fine-tunes
a GPT as the book's ch. 6 does, with ``--trainable`` and the ``--lora.*`` flags choosing what
trains. A classifier run is a run like a GPT's (config.yaml, metrics.jsonl, resumable
checkpoints), so its flags are built the same way, from the config dataclasses: the model
section from :class:`EncoderConfig` (whose names a GPT shares: ``--emb-dim``, ``--n-layers``,
...), the data section from :class:`ClassifierDataConfig`, the training section from the
same :class:`TrainConfig` as ``scratchgpt train``, and :class:`LoRAConfig`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..config import (
    BACKBONES,
    CLASSIFIER_TRAINING,
    ClassifierDataConfig,
    EncoderConfig,
    LoRAConfig,
    TrainConfig,
)
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
    ("lora", LoRAConfig, {f: f"lora.{f}" for f in ("rank", "alpha", "dropout", "targets")}, ()),
)
TITLES = {
    "model": "model (the encoder's shape; a GPT from scratch takes the shared names too)",
    "data": "data",
    "training": "training (defaults shown: the encoder's; the GPT backbone's are the book's: "
    "--lr 5e-05 constant, --weight-decay 0.1, --epochs 5, --batch-size 8, --trainable "
    "last-block)",
    "lora": "lora (any of these alone switches --trainable to lora)",
}


def register(sub: Any) -> None:
    p = sub.add_parser(
        "classify",
        help="train a text classifier (an encoder from scratch, or a fine-tuned GPT), or "
        "classify texts with one",
        description="Train a classifier on labelled texts (by default the SMS Spam "
        "Collection, downloaded once from UCI and checked against its sha256) and report its "
        "accuracy on train, validation and test; or classify texts with a trained one.",
    )
    csub = p.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=type(p))
    c = csub.add_parser(
        "train",
        help="train on labelled texts (a run directory, like scratchgpt train's)",
        description="Train a classifier: the encoder from scratch, or a GPT fine-tuned from "
        "--init-from. The run directory holds config.yaml, metrics.jsonl and resumable "
        "checkpoints, like a GPT run's; each flag names its run-config key in brackets.",
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
    c.add_argument(
        "--merge",
        type=Path,
        metavar="DIR",
        help="a LoRA run: also write base + adapter as one plain classifier in DIR",
    )
    source = c.add_argument_group("backbone")
    source.add_argument(
        "--backbone",
        dest="model.backbone",
        choices=BACKBONES,
        help="encoder (trained from scratch on a word vocabulary) or gpt (a GPTModel with a "
        "class head) [model.backbone; default: gpt with --init-from or --preset, else encoder]",
    )
    start = source.add_mutually_exclusive_group()
    start.add_argument(
        "--init-from",
        dest="model.init_from",
        metavar="NAME_OR_DIR",
        help="the pretrained GPT to fine-tune: gpt2, gpt2-medium, ..., a Hugging Face or "
        "OpenAI directory, or a scratchgpt checkpoint or run [model.init_from]",
    )
    start.add_argument(
        "--checkpoint",
        dest="model.init_from",
        metavar="DIR",
        help="a GPT trained here (a checkpoint or run directory) to fine-tune; the same as "
        "--init-from DIR",
    )
    source.add_argument(
        "--preset",
        dest="model.preset",
        metavar="NAME",
        help="a GPT trained from scratch as a classifier: its shape (default gpt2-124M, the "
        "book's) [model.preset]",
    )
    keys: list[str] = ["model.backbone", "model.init_from", "model.preset"]
    defaults = {TrainConfig: CLASSIFIER_TRAINING}
    for section, cls, names, skip in SECTIONS:
        group = c.add_argument_group(TITLES[section])
        keys += add_config_flags(
            group, cls, section=section, names=names, skip=skip, defaults=defaults.get(cls)
        )
    c.set_defaults(run=run_train, config_keys=keys)

    c = csub.add_parser(
        "predict",
        help="classify texts with a trained classifier",
        usage=short_usage("classify predict", "TEXT ..."),
        description="Print each text's label and its probability; with --data, score a "
        "labelled file (its labels must be the classifier's, or class numbers).",
    )
    c.add_argument(
        "--checkpoint",
        type=Path,
        required=True,
        metavar="DIR",
        help="a classifier's run or checkpoint directory, or a LoRA classifier's adapter",
    )
    c.add_argument(
        "--data",
        type=Path,
        metavar="FILE",
        help="labelled texts to score (LABEL<TAB>TEXT, a TSV/CSV with a header, or JSONL)",
    )
    c.add_argument("--text-column", metavar="NAME", help="the texts' column in --data")
    c.add_argument("--label-column", metavar="NAME", help="the labels' column in --data")
    c.add_argument("texts", nargs="*", metavar="TEXT", help="the texts to classify")
    c.set_defaults(run=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    from ..classifier import TextClassifier
    from ..data.labelled import read_labelled_file
    from ..errors import ConfigError

    if not args.texts and args.data is None:
        raise ConfigError('classify predict needs texts ("some text" ...) or --data FILE')
    classifier = TextClassifier.load(args.checkpoint)
    if args.texts:
        probs = classifier.predict_proba(args.texts)
        for text, row in zip(args.texts, probs, strict=True):
            best = int(row.argmax())
            print(f"{classifier.labels[best]}\t{row[best].item():.3f}\t{text}")
    if args.data is not None:
        examples = read_labelled_file(
            args.data, text_column=args.text_column, label_column=args.label_column
        )
        accuracy = classifier.accuracy(examples)
        print(f"accuracy: {accuracy:.2%} on {len(examples):,} texts of {args.data}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from ..training.classify import train_classifier

    overrides = given(args, args.config_keys)
    if args.resume is not None:
        result = train_classifier(resume=args.resume, overrides=overrides, merge=args.merge)
    else:
        result = train_classifier(overrides=overrides, out_dir=args.out, merge=args.merge)
    print(result.summary())
    if args.merge is not None and args.merge.is_dir():
        print(f"merged classifier (base + adapter): {args.merge}")
    return 130 if result.run is not None and result.run.interrupted else 0
