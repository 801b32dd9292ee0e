"""A trained text classifier: a backbone, its tokenizer and its labels.

Two backbones: the small Transformer encoder trained from scratch on a word vocabulary, and a
GPT (pretrained, or trained here) whose output head was replaced by one row per class, which
reads the hidden state of each text's last real token (the book's ch. 6). The
:class:`TextClassifier` is what a classification run produces and ``scratchgpt classify
predict`` uses: texts in, labels (or probabilities) out. It is trained by
:func:`scratchgpt.training.classify.train_classifier` (the same trainer as a GPT: resumable
checkpoints, metrics, stop signals); the data it learns from is :mod:`scratchgpt.data.labelled`.

A classifier on disk is a directory::

    config.json        {"format": "scratchgpt-classifier", "version": 1, "backbone":
                        "encoder" | "gpt", "model": {...}, "labels": [...],
                        "max_length": N, "metadata": {...}}
    tokenizer.json     the word vocabulary, or the GPT's tokenizer
    model.safetensors  the weights

JSON and safetensors only, never a pickle. A run's checkpoints (``RUN/checkpoints/step-N``)
are such directories plus the training state; classifiers saved before classification ran
on the trainer are the same three files in one directory, with the encoder's fields in their
old names (d_model, num_heads, ...), which :meth:`EncoderConfig.from_dict` still reads.
:meth:`TextClassifier.load` takes either, or a run directory (its latest checkpoint), or a
LoRA classifier's adapter (:mod:`scratchgpt.adapters`), which it puts on its base and merges.

Shapes: B batch, T tokens, K classes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .checkpoint import (
    corrupt_config,
    corrupt_error,
    run_checkpoints,
    tensors_writer,
    write_model_directory,
)
from .config import EncoderConfig, GPTConfig

# The data helpers' home is data.labelled; they are importable from here too, where they
# lived before classification ran on the trainer.
from .data.labelled import (
    LabelledText,
    build_vocabulary,
    download_sms_spam,
    load_sms_spam,
    map_labels,
    pad_rows,
    parse_labelled_lines,
    read_labelled_file,
    split_examples,
    toy_sentiment_examples,
)
from .errors import CheckpointError, ConfigError, DataError, TokenizerError
from .model.encoder import TransformerClassifier
from .model.gpt import GPTModel, add_class_head, eval_mode, last_token_logits
from .tokenizers import Tokenizer, load_tokenizer

__all__ = [
    "FORMAT",
    "LabelledText",
    "TextClassifier",
    "build_vocabulary",
    "class_logits",
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
    """A trained classifier with its tokenizer and label names: texts in, labels out.

    ``model`` is a :class:`TransformerClassifier` (backbone "encoder") or a GPTModel with a
    class head (backbone "gpt"); texts longer than ``max_length`` tokens (default: the
    model's context) are cut, as in training.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Tokenizer,
        labels: Sequence[str],
        *,
        backbone: str = "encoder",
        max_length: int | None = None,
    ) -> None:
        self.backbone = backbone
        cfg = model.cfg  # type: ignore[union-attr]
        n_classes = cfg.num_classes if backbone == "encoder" else model.out_head.out_features
        if len(labels) != n_classes:
            raise ConfigError(f"{len(labels)} labels for a model with {n_classes} classes")
        if tokenizer.vocab_size > cfg.vocab_size:
            raise ConfigError(
                f"the tokenizer has {tokenizer.vocab_size} ids, the model only "
                f"vocab_size={cfg.vocab_size}"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.pad_id = padding_id(tokenizer)
        self.max_length = min(max_length or cfg.context_length, cfg.context_length)

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (B, T) padded on the right to the longest text (at most max_length),
        and the padding mask (B, T), True for real tokens. An empty text becomes one
        end-of-text token."""
        rows = [token_row(self.tokenizer, t, self.max_length) for t in texts]
        ids, mask = pad_rows(rows, self.pad_id)
        device = next(self.model.parameters()).device
        return ids.to(device), mask.to(device)

    @torch.no_grad()
    def predict_proba(self, texts: Sequence[str], *, batch_size: int = 64) -> torch.Tensor:
        """Class probabilities (B, K), columns in the order of :attr:`labels`."""
        out = []
        with eval_mode(self.model):
            for start in range(0, len(texts), batch_size):
                ids, mask = self.encode(texts[start : start + batch_size])
                logits = class_logits(self.model, ids, mask, backbone=self.backbone)
                out.append(torch.softmax(logits.float(), dim=-1).cpu())
        return torch.cat(out) if out else torch.empty(0, len(self.labels))

    def predict(self, texts: Sequence[str]) -> list[str]:
        """The most likely label of each text."""
        return [self.labels[i] for i in self.predict_proba(texts).argmax(dim=-1).tolist()]

    def accuracy(self, examples: Sequence[LabelledText]) -> float:
        """The fraction of ``examples`` whose label is predicted correctly."""
        if not examples:
            raise DataError("accuracy of no examples is undefined")
        # A label must be one of this classifier's, or its class number: anything else is
        # a file meant for another classifier, which would score as silently wrong.
        targets = map_labels(examples, self.labels, source="the labelled texts")
        predicted = self.predict_proba([ex.text for ex in examples]).argmax(dim=-1).tolist()
        return sum(p == t for p, t in zip(predicted, targets, strict=True)) / len(examples)

    def save(self, directory: str | Path, *, metadata: Mapping[str, Any] | None = None) -> Path:
        """Write the classifier into ``directory`` (atomically: it appears complete or not at
        all). An existing directory is replaced only if it is empty or holds a classifier,
        so a wrong path never loses someone's files."""
        return save_classifier(
            Path(directory),
            self.model,
            self.tokenizer,
            self.labels,
            metadata=metadata,
            backbone=self.backbone,
            max_length=self.max_length,
        )

    @classmethod
    def load(cls, path: str | Path, *, device: str | torch.device | None = None) -> TextClassifier:
        """Rebuild a classifier (in eval mode) from a classifier directory, a checkpoint of a
        classification run, the run directory itself (its latest checkpoint), or a LoRA
        classifier's adapter (loaded onto its base and merged)."""
        from .adapters import adapter_task, load_adapter_model

        if adapter_task(path) is not None and not _is_classifier_dir(Path(path)):
            model, tokenizer, info = load_adapter_model(path, merge=True, device=device)
            if info.get("labels") is None:
                raise CheckpointError(
                    f"{path} is a language model's adapter, not a classifier's: use it with "
                    "scratchgpt generate --checkpoint"
                )
            max_length = (info.get("metadata") or {}).get("max_length")
            return cls(model, tokenizer, info["labels"], backbone="gpt", max_length=max_length)
        directory = resolve_classifier(path)
        info = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
        if info.get("version") != VERSION:
            raise CheckpointError(
                f"{directory}: unsupported classifier version {info.get('version')}"
            )
        backbone = info.get("backbone", "encoder")
        labels = info.get("labels") or []
        try:
            model = _build(backbone, info["model"], len(labels))
        except (ConfigError, TypeError, KeyError) as exc:
            raise CheckpointError(f"{directory}/{CONFIG_FILE}: bad model config: {exc}") from exc
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
        return cls(
            model.eval(), tokenizer, labels, backbone=backbone, max_length=info.get("max_length")
        )

    def __repr__(self) -> str:
        c = self.model.cfg
        return (
            f"TextClassifier(backbone={self.backbone!r}, labels={self.labels}, "
            f"vocab_size={c.vocab_size}, emb_dim={c.emb_dim}, n_layers={c.n_layers}, "
            f"n_heads={c.n_heads})"
        )


def class_logits(
    model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, *, backbone: str
) -> torch.Tensor:
    """Class logits (B, K) of padded texts ids (B, T) with their padding mask (B, T): the
    encoder pools its masked tokens; a GPT reads each text's last real token."""
    if backbone == "gpt":
        return last_token_logits(model, ids, mask.sum(dim=1))
    return model(ids, padding_mask=mask)


def _build(backbone: str, fields: Mapping[str, Any], num_classes: int) -> torch.nn.Module:
    """An untrained model of the saved shape, ready for the saved weights."""
    if backbone == "gpt":
        return add_class_head(GPTModel(GPTConfig.from_dict(dict(fields))), num_classes)
    return TransformerClassifier(EncoderConfig.from_dict(dict(fields)))


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
    backbone: str = "encoder",
    max_length: int | None = None,
) -> Path:
    """Write a classifier directory atomically: ``model`` (or ``weights``, gathered from
    shards), its tokenizer and labels; ``extra(tmp)`` adds files (a run's training state)."""
    cfg = model.cfg  # type: ignore[union-attr]
    state = weights if weights is not None else model.state_dict()
    info = {
        "format": FORMAT,
        "version": VERSION,
        "backbone": backbone,
        "model": cfg.to_dict(),
        "labels": list(labels),
        "max_length": max_length,
        "metadata": dict(metadata or {}),
    }

    return write_model_directory(
        directory,
        tensors_writer(state, FORMAT),
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
    from .adapters import adapter_task

    path = Path(path)
    if _is_classifier_dir(path) or run_checkpoints(path, format=FORMAT):
        return True
    return adapter_task(path) == "classifier"


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
