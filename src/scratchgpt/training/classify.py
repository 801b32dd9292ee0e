"""Text classification as a task for the :class:`~.trainer.Trainer`, and
:func:`train_classifier`.

Two backbones (``model.backbone``):

- ``encoder``: seed 001's small Transformer encoder, trained from scratch on a word vocabulary
  built from the training texts. On the SMS Spam Collection (:mod:`scratchgpt.data.labelled`;
  87% of the messages are ham, so always answering "ham" already scores 87%) it reaches about
  98% in about ten seconds on two CPU cores.
- ``gpt``: a GPTModel (pretrained with ``model.init_from``, or from scratch) whose output head
  is replaced by one row per class and which reads each text's last real token (the book's
  ch. 6). ``training.trainable`` picks what trains (the last block, the final norm and the
  head by default; or LoRA adapters, :mod:`.finetune`).

The data is split per label into train / validation / test (70/10/20 by default; optionally
balanced first by undersampling). Evaluations during training read the whole validation split
(``val_loss``, ``val_acc``) and ``training.eval_batches`` batches of training texts
(``eval_train_loss``, ``train_acc``); the test split is read once, at the end. Texts longer
than ``data.max_length`` tokens are cut, and counted.

The run is a run like a GPT's: ``RUN/config.yaml``, ``RUN/metrics.jsonl``,
``RUN/checkpoints/step-N`` with the training state (resume is exact), keep-last-K + best,
SIGINT handling, TensorBoard. A checkpoint is a classifier directory
:class:`~scratchgpt.classifier.TextClassifier` loads, or, for a LoRA run, the adapter alone
(:mod:`scratchgpt.adapters`). Shapes: B batch, T tokens, K classes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import CheckpointError
from ..classifier import (
    CONFIG_FILE,
    TextClassifier,
    class_logits,
    padding_id,
    read_weights,
    save_classifier,
)
from ..config import ClassifierRunConfig, EncoderConfig, GPTConfig, load_classifier_config
from ..data.labelled import (
    LabelledText,
    balance_classes,
    build_vocabulary,
    check_labels,
    length_bucketed_batches,
    load_sms_spam,
    map_labels,
    pad_rows,
    read_labelled_file,
    split_three,
    truncate_rows,
)
from ..errors import ConfigError, DataError
from ..model import GPTModel, add_class_head
from ..model.encoder import TransformerClassifier
from ..tokenizers import Tokenizer, get_tokenizer
from .finetune import load_starting_point, prepare_for_training
from .launch import launch, saved_config
from .metrics import MetricsLogger
from .runs import TrainResult, new_run_dir
from .task import Batch, Feed, Task

log = logging.getLogger(__name__)

# Held-out texts per evaluation batch (no gradients: activations are freed layer by layer).
EVAL_BATCH = {"encoder": 256, "gpt": 32}


class ClassificationTask:
    """Labelled texts -> labels: a :class:`~.task.Task` for either backbone.

    ``examples`` are (optionally balanced and) split per label; every text is tokenized once.
    :attr:`run` is the effective config: the backbone's full shape, with vocab_size and
    num_classes the data's.
    """

    unit = "examples"
    flops_per_unit: float | None = None

    def __init__(
        self, run: ClassifierRunConfig, examples: Sequence[LabelledText], *, source: str
    ) -> None:
        t, d = run.training, run.data
        self.backbone, self.source, self.settings = run.backbone, source, run
        # The examples' digest, saved with each checkpoint: a resume must see the same data.
        lines = "".join(f"{ex.label}\t{ex.text}\n" for ex in examples)
        self.data_sha256 = hashlib.sha256(lines.encode("utf-8")).hexdigest()
        self.labels = check_labels(examples, source=source)
        if d.balance:
            examples = balance_classes(examples, seed=t.seed)
        self.train_set, self.val_set, self.test_set = split_three(
            examples, val_ratio=d.val_ratio, test_ratio=d.test_ratio, seed=t.seed
        )
        if not (self.train_set and self.val_set and self.test_set):
            raise DataError(
                f"{source}: {len(examples)} examples are too few to split into training, "
                "validation and test sets: give more examples"
            )
        self.base: GPTModel | None = None  # init_from's weights, loaded once
        self.base_ref: dict[str, Any] | None = None  # what a LoRA adapter records of its base
        self.tokenizer, self.cfg = self._tokenizer_and_config(run)
        self.run = dataclasses.replace(run, model=self._model_fields())
        self.max_length = min(d.max_length or self.cfg.context_length, self.cfg.context_length)
        self.pad_id = padding_id(self.tokenizer)
        self.counts = Counter(ex.label for ex in self.train_set)
        most = self.counts.most_common(1)[0][0]
        self.majority_accuracy = sum(ex.label == most for ex in self.test_set) / len(self.test_set)
        self.truncated: dict[str, int] = {}
        self.train_rows, self.train_targets = self._tokenize(self.train_set, "train")
        self.lengths = [len(row) for row in self.train_rows]
        self.padding = d.padding
        self.pad_to = max(self.lengths)  # "max" padding: the longest training text
        self.batch_size, self.seed = t.batch_size, t.seed
        self._epoch: tuple[int, list[list[int]]] = (0, self._batches_of(0))
        self.batches_per_epoch = len(self._epoch[1])  # the same every epoch
        self.val_batches = self._fixed_batches(self.val_set, "val")
        n_train = min(len(self.train_set), t.eval_batches * t.batch_size)
        self.train_eval = self._fixed_batches(self.train_set[:n_train], None)
        self.eval_size = len(self.val_batches) + len(self.train_eval)
        self.model: nn.Module | None = None
        self.trainable = ""

    # --- the backbone -------------------------------------------------------------------

    def _tokenizer_and_config(self, run: ClassifierRunConfig) -> tuple[Tokenizer, Any]:
        d = run.data
        if self.backbone == "encoder":
            tok = build_vocabulary([ex.text for ex in self.train_set], min_freq=d.min_freq)
            fields = {"vocab_size": tok.vocab_size, "num_classes": len(self.labels)}
            for key, value in fields.items():
                if key in run.model and run.model[key] != value:
                    raise ConfigError(
                        f"model.{key}={run.model[key]}: it is set from the data, which gives "
                        f"{value}"
                    )
            return tok, EncoderConfig.from_dict({**run.model, **fields})
        if run.init_from is not None:
            self.base, own, self.base_ref = load_starting_point(
                run.init_from,
                crop=run.model.get("context_length"),
                lora=run.training.trainable == "lora",
                tokenizer_given=d.tokenizer is not None,
            )
            return own, self.base.cfg
        # "char" and "simple" are built from the training texts, like the encoder's words.
        tok = get_tokenizer(d.tokenizer or "gpt2", text="\n".join(ex.text for ex in self.train_set))
        return tok, GPTConfig.from_dict({**run.model, "vocab_size": tok.vocab_size})

    def _model_fields(self) -> dict[str, Any]:
        """The model section of the effective config, every field written out."""
        if self.backbone == "encoder":
            return self.cfg.to_dict()
        if self.settings.init_from is not None:
            return dict(self.settings.model)  # the pretrained shape (and a crop) stays its own
        return {k: v for k, v in self.cfg.to_dict().items() if k != "vocab_size"}

    def build_model(self) -> nn.Module:
        if self.backbone == "encoder":
            self.model = TransformerClassifier(self.cfg)
            self.trainable = f"{sum(p.numel() for p in self.model.parameters()):,} parameters"
            return self.model
        model = self.base if self.base is not None else GPTModel(self.cfg)
        add_class_head(model, len(self.labels))
        t, lora = self.settings.training, self.settings.lora
        self.trainable = prepare_for_training(
            model, t.trainable, lora, new_head=True, pretrained=self.base is not None
        )
        self.model = model
        return model

    # --- data -----------------------------------------------------------------------------

    def _tokenize(
        self, examples: Sequence[LabelledText], split: str | None
    ) -> tuple[list[list[int]], torch.Tensor]:
        rows = [self.tokenizer.encode(ex.text) or [self.pad_id] for ex in examples]
        rows, cut = truncate_rows(rows, self.max_length)
        if split is not None:
            self.truncated[split] = cut
        targets = map_labels(examples, self.labels, source=self.source)
        return rows, torch.tensor(targets, dtype=torch.long)

    def _batches_of(self, epoch: int) -> list[list[int]]:
        if self.padding == "longest":
            return length_bucketed_batches(
                self.lengths, self.batch_size, seed=self.seed, epoch=epoch
            )
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.lengths)).tolist()
        return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def _fixed_batches(self, examples: Sequence[LabelledText], split: str | None) -> list[Batch]:
        """Evaluation batches, sorted by length (little padding), padded once. Padding does
        not change a text's logits (masked, or to the right of a GPT's last token)."""
        rows, targets = self._tokenize(examples, split)
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        size = EVAL_BATCH[self.backbone]
        batches = []
        for start in range(0, len(order), size):
            chosen = order[start : start + size]
            ids, mask = pad_rows([rows[i] for i in chosen], self.pad_id)
            batches.append((ids, mask, targets[chosen]))
        return batches

    def batch(self, index: int) -> Batch:
        epoch, i = divmod(index, self.batches_per_epoch)
        if self._epoch[0] != epoch:
            self._epoch = (epoch, self._batches_of(epoch))
        chosen = self._epoch[1][i]
        rows = [self.train_rows[j] for j in chosen]
        if self.padding == "max":  # the book's way: every text as long as the longest
            rows.append([self.pad_id] * self.pad_to)
            ids, mask = pad_rows(rows, self.pad_id)
            ids, mask = ids[:-1], mask[:-1]  # (B + 1, T) -> (B, T): the ruler row goes
        else:
            ids, mask = pad_rows(rows, self.pad_id)
        return ids, mask, self.train_targets[chosen]

    # --- training and evaluation ---------------------------------------------------------

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        ids, mask, target = batch
        logits = class_logits(model, ids, mask, backbone=self.backbone)  # (B, K)
        return F.cross_entropy(logits.float(), target)

    def _score(self, model: nn.Module, batches: Any) -> tuple[float, float]:
        """(mean loss, accuracy) over ``batches``."""
        loss, right, n = 0.0, 0, 0
        for ids, mask, target in batches:
            logits = class_logits(model, ids, mask, backbone=self.backbone).float()  # (B, K)
            loss += F.cross_entropy(logits, target, reduction="sum").item()
            right += int((logits.argmax(dim=-1) == target).sum())
            n += len(target)
        return loss / n, right / n

    def evaluate(self, model: nn.Module, feed: Feed) -> dict[str, float]:
        val_loss, val_acc = self._score(model, feed(self.val_batches))
        train_loss, train_acc = self._score(model, feed(self.train_eval))
        return {
            "val_loss": val_loss,
            "val_acc": val_acc,
            "eval_train_loss": train_loss,
            "train_acc": train_acc,
        }

    def sample(self, model: nn.Module, generator: torch.Generator) -> str | None:
        return None  # a classifier writes no text

    # --- checkpoints ------------------------------------------------------------------------

    def save(
        self,
        directory: Path,
        model: nn.Module,
        *,
        weights: dict[str, torch.Tensor] | None,
        metadata: dict[str, Any],
        extra: Callable[[Path], None],
    ) -> Path:
        about = {
            "majority_accuracy": self.majority_accuracy,
            "n_train": len(self.train_set),
            "n_val": len(self.val_set),
            "n_test": len(self.test_set),
            "truncated": self.truncated,
            "max_length": self.max_length,
            "data_sha256": self.data_sha256,
        }
        if self.base_ref is not None:
            from ..adapters import save_adapter

            return save_adapter(
                directory,
                model,  # type: ignore[arg-type]
                self.tokenizer,
                base=self.base_ref,
                labels=self.labels,
                metadata={**metadata, **about},
                weights=weights,
                extra=extra,
            )
        return save_classifier(
            directory,
            model,
            self.tokenizer,
            self.labels,
            metadata={**metadata, **about},
            weights=weights,
            extra=extra,
            backbone=self.backbone,
            max_length=self.max_length,
        )

    def load(self, checkpoint: Path) -> dict[str, torch.Tensor]:
        info = json.loads((checkpoint / CONFIG_FILE).read_text(encoding="utf-8"))
        digest = (info.get("metadata") or {}).get("data_sha256", self.data_sha256)
        shape = info.get("model") == self.cfg.to_dict() or (
            self.backbone == "encoder" and (EncoderConfig.from_dict(info["model"]) == self.cfg)
        )
        if not shape or info.get("labels") != self.labels or digest != self.data_sha256:
            raise CheckpointError(
                f"{checkpoint} was trained on other data or another model than this run's "
                f"(labels {info.get('labels')}; here {self.labels}): resume with the run's "
                "own data and config.yaml"
            )
        if self.base_ref is None:
            return read_weights(checkpoint)
        from ..adapters import resume_weights

        assert self.model is not None
        return resume_weights(checkpoint, self.model, self.base_ref)

    def describe(self) -> str:
        cut = ", ".join(f"{n} {split}" for split, n in self.truncated.items() if n)
        return (
            f"{self.source}: {len(self.train_set):,} training / {len(self.val_set):,} "
            f"validation / {len(self.test_set):,} test examples, labels {dict(self.counts)}; "
            f"{self.backbone} backbone, {self.trainable}; texts cut to {self.max_length} "
            f"tokens: {cut or 'none'}"
        )

    def hints(self, run_dir: Path) -> tuple[str, str]:
        return (
            f'classify with: scratchgpt classify predict --checkpoint {run_dir} "some text"',
            f"scratchgpt classify train --resume {run_dir}",
        )


@dataclass
class ClassifierResult:
    """A trained classifier and how well it did on the texts it trained on, was validated on,
    and never saw (test)."""

    classifier: TextClassifier
    test_accuracy: float
    majority_accuracy: float  # always answering the most common training label
    history: list[dict[str, Any]]
    n_train: int
    n_test: int
    seconds: float
    path: Path | None = None  # the run directory
    run: TrainResult | None = None
    train_accuracy: float = math.nan
    val_accuracy: float = math.nan
    n_val: int = 0
    truncated: dict[str, int] = dataclasses.field(default_factory=dict)

    def summary(self) -> str:
        """What ``scratchgpt classify train`` prints."""
        cut = sum(self.truncated.values())
        lines = [
            f"test accuracy: {self.test_accuracy:.2%} on {self.n_test:,} texts never seen "
            f"(always the most common label: {self.majority_accuracy:.2%})",
            f"train accuracy: {self.train_accuracy:.2%} on {self.n_train:,}; validation "
            f"accuracy: {self.val_accuracy:.2%} on {self.n_val:,}; {self.seconds:.1f} s"
            + (f"; {cut} texts cut to the maximum length" if cut else ""),
            f"run: {self.path}",
        ]
        if self.run is not None:
            lines += [f"checkpoint: {self.run.checkpoint}", self.run.use_hint]
            if self.run.interrupted or self.run.steps < self.run.max_steps:
                lines.append(f"resume with: {self.run.resume_command}")
        return "\n".join(lines)


def train_classifier(
    examples: Sequence[LabelledText] | None = None,
    *,
    config: ClassifierRunConfig | Mapping[str, Any] | str | Path | None = None,
    model_config: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    out_dir: str | Path | None = None,
    resume: str | Path | None = None,
    stop_at: int | None = None,
    device: str | None = None,
    merge: str | Path | None = None,
) -> ClassifierResult:
    """Split the examples, build the classifier, train, evaluate on every split, save.

    ``examples`` default to the file ``data.source`` names (LABEL<TAB>TEXT, a TSV/CSV with a
    header, or JSONL), or the SMS Spam Collection. ``config`` is a
    :class:`ClassifierRunConfig`, its plain data or a YAML file of it; ``model_config`` holds
    model-section keys (``backbone``, ``init_from``, the backbone's fields); ``overrides``
    sets fields by dotted name (``{"training.epochs": 6, "lora.rank": 8}``); ``device`` is
    training.device. The run goes to ``out_dir`` (default runs/<date>-<time>); ``resume``
    continues the run in that directory exactly where it stopped (pass the same ``examples``
    again if they did not come from a file). ``merge`` (a LoRA run) also writes base +
    adapter there as one plain classifier.
    """
    started = time.perf_counter()
    resume_dir = Path(resume) if resume is not None else None
    if resume_dir is not None:
        run = load_classifier_config(saved_config(resume_dir), overrides)
        out_dir = resume_dir
    else:
        run = _resolve(config, model_config, overrides)
    if device is not None:
        run = run.replace({"training.device": device})
    if merge is not None and run.training.trainable != "lora":
        raise ConfigError("--merge writes base + LoRA adapter: it needs --trainable lora")
    source = run.data.source or "the SMS Spam Collection"
    if examples is None:
        examples = _read_examples(run)
    elif run.data.source is None:
        source = f"{len(examples):,} examples"

    def make_task(
        resume_from: Path | None, device: torch.device
    ) -> tuple[Task, ClassifierRunConfig]:
        task = ClassificationTask(run, examples, source=source)
        return task, task.run

    run_dir = Path(out_dir) if out_dir is not None else new_run_dir()
    result, task = launch(
        run, make_task, run_dir=run_dir, resume=resume_dir is not None, stop_at=stop_at
    )
    assert isinstance(task, ClassificationTask)
    classifier = TextClassifier.load(result.checkpoint)
    scores = {
        split: classifier.accuracy(examples)
        for split, examples in (
            ("train", task.train_set),
            ("val", task.val_set),
            ("test", task.test_set),
        )
    }
    log.info(
        "accuracy: train %.2f%%, validation %.2f%%, test %.2f%%",
        *(100 * scores[k] for k in ("train", "val", "test")),
    )
    with MetricsLogger(result.run_dir) as metrics:
        metrics.log(
            {"step": result.steps, "final": True, **{f"{k}_acc": v for k, v in scores.items()}}
        )
    if merge is not None:
        from ..merge import merge_adapter

        log.info("merged classifier: %s", merge_adapter(result.checkpoint, merge))
    return ClassifierResult(
        classifier=classifier,
        test_accuracy=scores["test"],
        train_accuracy=scores["train"],
        val_accuracy=scores["val"],
        majority_accuracy=task.majority_accuracy,
        history=result.history,
        n_train=len(task.train_set),
        n_val=len(task.val_set),
        n_test=len(task.test_set),
        truncated=dict(task.truncated),
        seconds=time.perf_counter() - started,
        path=result.run_dir,
        run=result,
    )


def _read_examples(run: ClassifierRunConfig) -> list[LabelledText]:
    d = run.data
    if d.source is None:
        return load_sms_spam(cache_dir=d.cache_dir)
    # Columns named only when they are not the defaults: a file without a header (the SMS
    # corpus's LABEL<TAB>TEXT lines) is then read as such.
    text_column = None if d.text_column == "text" else d.text_column
    label_column = None if d.label_column == "label" else d.label_column
    return read_labelled_file(d.source, text_column=text_column, label_column=label_column)


def _resolve(
    config: ClassifierRunConfig | Mapping[str, Any] | str | Path | None,
    model_config: Mapping[str, Any] | None,
    overrides: Mapping[str, Any] | None,
) -> ClassifierRunConfig:
    """One ClassifierRunConfig from the ways train_classifier can be called: the overrides
    go onto the plain data before it is read, so a backbone they choose brings its own
    training defaults."""
    from ..config import apply_overrides, read_config_file

    changes = {f"model.{k}": v for k, v in (model_config or {}).items()}
    changes.update(overrides or {})
    if isinstance(config, ClassifierRunConfig):
        return config.replace(changes) if changes else config
    data = read_config_file(config) if isinstance(config, (str, Path)) else dict(config or {})
    try:
        return ClassifierRunConfig.from_dict(apply_overrides(data, changes))
    except ConfigError as exc:
        if not isinstance(config, (str, Path)):
            raise
        raise ConfigError(
            "\n".join(f"{config}: {line}" for line in str(exc).splitlines())
        ) from None
