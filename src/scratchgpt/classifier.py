"""A trained text classifier: the Transformer encoder, its word vocabulary and its labels.

:class:`TextClassifier` is what a classification run produces and ``scratchgpt classify
predict`` uses: texts in, labels (or probabilities) out. It is trained by
:func:`scratchgpt.training.classify.train_classifier` (the same trainer as a GPT: resumable
checkpoints, metrics, stop signals); the data it learns from is :mod:`scratchgpt.data.labelled`.

A classifier on disk is a directory::

    config.json        {"format": "scratchgpt-classifier", "version": 1, "model": {...},
                        "labels": [...], "metadata": {...}}
    tokenizer.json     the word vocabulary
    model.safetensors  the weights

JSON and safetensors only, never a pickle. A run's checkpoints (``RUN/checkpoints/step-N``)
are such directories plus the training state; classifiers saved before classification ran
on the trainer are the same three files in one directory, with the encoder's fields in their
old names (d_model, num_heads, ...), which :meth:`EncoderConfig.from_dict` still reads.
:meth:`TextClassifier.load` takes either, or a run directory (its latest checkpoint).

Shapes: B batch, T tokens, K classes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .checkpoint import corrupt_config, corrupt_error, run_checkpoints, write_model_directory
from .config import EncoderConfig

# The data helpers' home is data.labelled; they are importable from here too, where they
# lived before classification ran on the trainer.
from .data.labelled import (
    LabelledText,
    build_vocabulary,
    download_sms_spam,
    load_sms_spam,
    pad_rows,
    parse_labelled_lines,
    read_labelled_file,
    split_examples,
    toy_sentiment_examples,
)
from .errors import CheckpointError, ConfigError, DataError, TokenizerError
from .model.encoder import TransformerClassifier
from .model.gpt import eval_mode
from .tokenizers import Tokenizer, load_tokenizer

__all__ = [
    "FORMAT",
    "LabelledText",
    "TextClassifier",
    "build_vocabulary",
    "download_sms_spam",
    "is_classifier",
    "load_sms_spam",
    "parse_labelled_lines",
    "read_labelled_file",
    "resolve_classifier",
    "save_classifier",
    "split_examples",
    "toy_sentiment_examples",
]

FORMAT = "scratchgpt-classifier"
VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class TextClassifier:
    """A trained encoder classifier with its tokenizer and label names: texts in, labels out."""

    def __init__(
        self, model: TransformerClassifier, tokenizer: Tokenizer, labels: Sequence[str]
    ) -> None:
        if len(labels) != model.cfg.num_classes:
            raise ConfigError(
                f"{len(labels)} labels for a model with num_classes={model.cfg.num_classes}"
            )
        if tokenizer.vocab_size > model.cfg.vocab_size:
            raise ConfigError(
                f"the tokenizer has {tokenizer.vocab_size} ids, the model only "
                f"vocab_size={model.cfg.vocab_size}"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.pad_id = padding_id(tokenizer)

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (B, T) padded to the longest text (at most context_length), and the
        padding mask (B, T), True for real tokens. An empty text becomes one end-of-text
        token."""
        rows = [token_row(self.tokenizer, t, self.model.cfg.context_length) for t in texts]
        ids, mask = pad_rows(rows, self.pad_id)
        device = self.model.head.weight.device
        return ids.to(device), mask.to(device)

    @torch.no_grad()
    def predict_proba(self, texts: Sequence[str], *, batch_size: int = 256) -> torch.Tensor:
        """Class probabilities (B, K), columns in the order of :attr:`labels`."""
        out = []
        with eval_mode(self.model):
            for start in range(0, len(texts), batch_size):
                ids, mask = self.encode(texts[start : start + batch_size])
                out.append(torch.softmax(self.model(ids, padding_mask=mask).float(), dim=-1))
        return torch.cat(out) if out else torch.empty(0, len(self.labels))

    def predict(self, texts: Sequence[str]) -> list[str]:
        """The most likely label of each text."""
        return [self.labels[i] for i in self.predict_proba(texts).argmax(dim=-1).tolist()]

    def accuracy(self, examples: Sequence[LabelledText]) -> float:
        """The fraction of ``examples`` whose label is predicted correctly."""
        if not examples:
            raise DataError("accuracy of no examples is undefined")
        predicted = self.predict([ex.text for ex in examples])
        return sum(p == ex.label for p, ex in zip(predicted, examples, strict=True)) / len(examples)

    def save(self, directory: str | Path, *, metadata: Mapping[str, Any] | None = None) -> Path:
        """Write the classifier into ``directory`` (atomically: it appears complete or not at
        all). An existing directory is replaced only if it is empty or holds a classifier,
        so a wrong path never loses someone's files."""
        return save_classifier(
            Path(directory), self.model, self.tokenizer, self.labels, metadata=metadata
        )

    @classmethod
    def load(cls, path: str | Path, *, device: str | torch.device | None = None) -> TextClassifier:
        """Rebuild a classifier (in eval mode) from a classifier directory, a checkpoint of a
        classification run, or the run directory itself (its latest checkpoint)."""
        directory = resolve_classifier(path)
        info = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
        if info.get("version") != VERSION:
            raise CheckpointError(
                f"{directory}: unsupported classifier version {info.get('version')}"
            )
        try:
            cfg = EncoderConfig.from_dict(info["model"])
        except (ConfigError, TypeError, KeyError) as exc:
            raise CheckpointError(f"{directory}/{CONFIG_FILE}: bad model config: {exc}") from exc
        model = TransformerClassifier(cfg)
        try:
            model.load_state_dict(read_weights(directory), strict=True)
        except RuntimeError as exc:
            raise CheckpointError(
                f"{directory / WEIGHTS_FILE}: does not fit the config: {exc}"
            ) from exc
        try:
            tokenizer = load_tokenizer(directory)
        except TokenizerError as exc:
            raise CheckpointError(f"{directory}: {exc}") from exc
        if device is not None:
            model.to(device)
        return cls(model.eval(), tokenizer, info.get("labels") or [])

    def __repr__(self) -> str:
        c = self.model.cfg
        return (
            f"TextClassifier(labels={self.labels}, vocab_size={c.vocab_size}, "
            f"emb_dim={c.emb_dim}, n_layers={c.n_layers}, n_heads={c.n_heads})"
        )


def padding_id(tokenizer: Tokenizer) -> int:
    """The id batches are padded with: end-of-text, as Raschka ch. 6 pads (masked out)."""
    return tokenizer.eot_id if tokenizer.eot_id is not None else 0


def token_row(tokenizer: Tokenizer, text: str, context_length: int) -> list[int]:
    """A text's ids, cut to ``context_length``; an empty text is one padding token."""
    return tokenizer.encode(text)[:context_length] or [padding_id(tokenizer)]


def save_classifier(
    directory: Path,
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    labels: Sequence[str],
    *,
    metadata: Mapping[str, Any] | None = None,
    weights: dict[str, torch.Tensor] | None = None,
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write a classifier directory atomically: ``model`` (or ``weights``, gathered from
    shards), its tokenizer and labels; ``extra(tmp)`` adds files (a run's training state)."""
    cfg = model.cfg  # type: ignore[union-attr]
    state = weights if weights is not None else model.state_dict()
    info = {
        "format": FORMAT,
        "version": VERSION,
        "model": cfg.to_dict(),
        "labels": list(labels),
        "metadata": dict(metadata or {}),
    }

    def write_weights(file: Path) -> None:
        plain = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        save_file(plain, str(file), metadata={"format": FORMAT})

    return write_model_directory(
        directory,
        write_weights,
        tokenizer=tokenizer,
        info=info,
        extra=extra,
        replaceable=is_classifier,
        what="a scratchgpt classifier",
    )


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    """The weights of the classifier in ``directory``, a clear error if unreadable."""
    try:
        return load_file(str(directory / WEIGHTS_FILE))
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise CheckpointError(f"{directory / WEIGHTS_FILE}: unreadable: {exc}") from exc


def is_classifier(path: str | Path) -> bool:
    """True if ``path`` is a classifier directory (a run's checkpoint, or one saved by
    :meth:`TextClassifier.save`) or a classification run directory."""
    path = Path(path)
    return _is_classifier_dir(path) or bool(run_checkpoints(path, format=FORMAT))


def _is_classifier_dir(path: Path) -> bool:
    try:
        info = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("format") == FORMAT


def resolve_classifier(path: str | Path) -> Path:
    """The classifier directory for ``path``: itself, or a run's latest checkpoint."""
    path = Path(path)
    if _is_classifier_dir(path):
        return path
    steps = run_checkpoints(path, format=FORMAT)
    if steps:
        return steps[-1][1]
    reason = corrupt_config(path)
    if reason is not None:
        raise corrupt_error(path, reason)
    raise CheckpointError(
        f"{str(path)!r} is not a scratchgpt classifier: expected a classification run "
        f"directory (scratchgpt classify train --out DIR), one of its checkpoints, or a "
        f"directory with {CONFIG_FILE} (format {FORMAT!r}), {WEIGHTS_FILE} and tokenizer.json"
    )
