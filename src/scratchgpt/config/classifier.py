"""A classifier run's config: the backbone, the labelled data, the training settings.

The same layout as a GPT's :class:`~.run.RunConfig`, saved the same way (``RUN/config.yaml``,
every field explicit, what ``--resume`` reads)::

    model:     backbone: encoder (a small Transformer encoder trained from scratch on a word
               vocabulary) or gpt (a GPTModel whose output head is replaced by one row per
               class, the book's ch. 6); init_from: the pretrained GPT to start from; then
               the backbone's fields (EncoderConfig, or a preset and GPTConfig fields for a
               GPT trained from scratch). vocab_size and num_classes come from the data.
    data:      the labelled file and its columns, the splits, balancing, length and padding
    training:  the TrainConfig every run has, with each backbone's defaults
    lora:      the adapters when training.trainable=lora (GPT backbone)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .encoder import OLD_KEYS, EncoderConfig
from .finetune import LoRAConfig, gpt_model_fields, resolve_trainable, switch_on_lora
from .run import apply_overrides
from .sections import TrainConfig
from .validate import (
    check_field_types,
    check_sections,
    from_data,
    one_of,
    option,
    read_config_file,
)

CLASSIFIER_SECTIONS: tuple[str, ...] = ("model", "data", "training", "lora")
BACKBONES: tuple[str, ...] = ("encoder", "gpt")
PADDINGS: tuple[str, ...] = ("longest", "max")

# A small classifier's training, where it differs from a GPT's: four passes over the data,
# a higher learning rate and light weight decay for 364k parameters, on the CPU (faster than a
# GPU's kernel launches at this size). As TrainConfig's defaults, these can be overridden.
CLASSIFIER_TRAINING: dict[str, Any] = {
    "max_steps": None,
    "epochs": 4,
    "batch_size": 64,
    "lr": 3e-3,
    "min_lr": 1e-4,
    "warmup_steps": 20,
    "weight_decay": 0.01,
    "eval_interval": 50,
    "sample_interval": 0,
    "seed": 0,
    "device": "cpu",
}

# A pretrained GPT's fine-tuning, as the book's ch. 6 does it: AdamW at a constant 5e-5 with
# weight decay 0.1 and PyTorch's default betas, no clipping, batches of 8, five epochs, and
# the last block, the final norm and the new head trained.
GPT_CLASSIFIER_TRAINING: dict[str, Any] = {
    "max_steps": None,
    "epochs": 5,
    "batch_size": 8,
    "lr": 5e-5,
    "min_lr": 5e-5,
    "warmup_steps": 0,
    "weight_decay": 0.1,
    "beta2": 0.999,
    "grad_clip": 0.0,
    "eval_interval": 50,
    "eval_batches": 5,
    "sample_interval": 0,
    "seed": 123,
    "trainable": "last-block",
}


@dataclass(frozen=True)
class ClassifierDataConfig:
    """What a classifier learns from (the ``data:`` section)."""

    source: str | None = option(
        "labelled texts: LABEL<TAB>TEXT lines, or a TSV/CSV with a header, or JSONL, with "
        "text and label columns (none: the SMS Spam Collection, downloaded once from UCI)",
        None,
    )
    text_column: str = option("the column (or JSON key) holding the texts", "text")
    label_column: str = option("the column (or JSON key) holding the labels", "label")
    balance: bool = option(
        "undersample every label to the rarest one's count (the book's balanced SMS set)", False
    )
    val_ratio: float = option("fraction of each label held out for validation", 0.1)
    test_ratio: float = option("fraction of each label held out for the final test", 0.2)
    max_length: int | None = option(
        "longest text in tokens; longer ones are cut and counted (default: the model's "
        "context length)",
        None,
    )
    padding: str = option(
        "longest: pad each batch to its longest text; max: pad every text to the longest "
        "training text (the book's way, slower)",
        "longest",
    )
    tokenizer: str | None = option(
        "a GPT backbone's tokenizer when it is trained from scratch (default gpt2); a "
        "pretrained GPT brings its own",
        None,
    )
    min_freq: int = option(
        "encoder: words seen fewer times in the training texts become <|unk|>", 2
    )
    cache_dir: str | None = option(
        "where the SMS corpus is downloaded (default: $SCRATCHGPT_CACHE or XDG cache)", None
    )

    def __post_init__(self) -> None:
        check_field_types(self, section="data")
        for name in ("val_ratio", "test_ratio"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"data.{name}={getattr(self, name)}: must be in [0, 1)")
        if not self.test_ratio > 0:
            raise ConfigError("data.test_ratio=0: a classifier needs held-out texts to test on")
        if self.val_ratio + self.test_ratio >= 1.0:
            raise ConfigError(
                f"data.val_ratio + data.test_ratio = {self.val_ratio + self.test_ratio:g}: "
                "must leave texts to train on (below 1)"
            )
        if self.padding not in PADDINGS:
            raise ConfigError(one_of("data.padding", self.padding, PADDINGS))
        if self.max_length is not None and self.max_length < 1:
            raise ConfigError(f"data.max_length={self.max_length}: must be >= 1")
        if self.min_freq < 1:
            raise ConfigError(f"data.min_freq={self.min_freq}: must be >= 1")


@dataclass(frozen=True)
class ClassifierRunConfig:
    """A classifier run. ``model`` holds the backbone's fields given (EncoderConfig's, or
    GPTConfig's for a GPT trained from scratch, or only a context crop for a pretrained
    one); the rest come from the defaults, the data and the pretrained weights."""

    model: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    data: ClassifierDataConfig = dataclasses.field(default_factory=ClassifierDataConfig)
    training: TrainConfig = dataclasses.field(
        default_factory=lambda: from_data(TrainConfig, CLASSIFIER_TRAINING, section="training")
    )
    lora: LoRAConfig = dataclasses.field(default_factory=LoRAConfig)
    backbone: str = "encoder"
    init_from: str | None = None  # pretrained GPT weights (a GPT-2 name, a directory, a run)

    @classmethod
    def from_dict(cls, d: Any) -> ClassifierRunConfig:
        """From nested plain data (YAML); the training section over the backbone's defaults.

        ``model.backbone`` defaults to gpt when ``model.init_from`` or ``model.preset`` is
        given, else to encoder.
        """
        d = check_sections(d, CLASSIFIER_SECTIONS, what="a classifier run config")
        given = dict(d.get("model") or {})
        init_from = given.pop("init_from", None)
        preset = given.pop("preset", None)
        backbone = given.pop("backbone", None) or (
            "gpt" if init_from is not None or preset is not None else "encoder"
        )
        if backbone not in BACKBONES:
            raise ConfigError(one_of("model.backbone", backbone, BACKBONES))
        lora = d.get("lora") or {}
        defaults = GPT_CLASSIFIER_TRAINING if backbone == "gpt" else CLASSIFIER_TRAINING
        training = {**defaults, **resolve_trainable(d.get("training") or {}, lora)}
        if backbone == "gpt":
            # A GPT from scratch: the book's gpt2-124M shape unless a preset is given.
            model = gpt_model_fields(
                given,
                init_from=init_from,
                preset=preset,
                default_preset="gpt2-124M",
                extra=("num_classes",),
            )
        else:
            if init_from is not None or preset is not None:
                raise ConfigError(
                    "model.init_from and model.preset are for the GPT backbone: set "
                    "model.backbone=gpt (the encoder trains from scratch)"
                )
            if training.get("trainable", "all") != "all":
                raise ConfigError(
                    f"training.trainable={training['trainable']}: the encoder trains from "
                    "scratch, so all of it trains; fine-tuning choices are for --backbone gpt"
                )
            model = {OLD_KEYS.get(k, k): v for k, v in given.items()}
            # Validate the fields now (names, types, ranges); vocab_size is the data's, later.
            shape = EncoderConfig.from_dict({"vocab_size": 1, **model})
            model = {k: getattr(shape, k) for k in model}
        return cls(
            model=model,
            data=from_data(ClassifierDataConfig, d.get("data") or {}, section="data"),
            training=from_data(TrainConfig, training, section="training"),
            lora=from_data(LoRAConfig, lora, section="lora"),
            backbone=backbone,
            init_from=None if init_from is None else str(init_from),
        )

    def to_dict(self) -> dict[str, Any]:
        model: dict[str, Any] = {"backbone": self.backbone}
        if self.init_from is not None:
            model["init_from"] = self.init_from
        return {
            "model": {**model, **self.model},
            "data": dataclasses.asdict(self.data),
            "training": dataclasses.asdict(self.training),
            "lora": dataclasses.asdict(self.lora),
        }

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, overrides: Mapping[str, Any]) -> ClassifierRunConfig:
        """A copy with ``{"training.lr": 1e-3, "model.n_layers": 1, ...}`` applied."""
        changes = switch_on_lora(overrides)
        return ClassifierRunConfig.from_dict(apply_overrides(self.to_dict(), changes))


def load_classifier_config(
    path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> ClassifierRunConfig:
    """The classifier run config in ``path`` (YAML or JSON; none: the defaults), overridden."""
    data = read_config_file(path) if path is not None else {}
    try:
        return ClassifierRunConfig.from_dict(apply_overrides(data, dict(overrides or {})))
    except ConfigError as exc:
        if path is None:
            raise
        raise ConfigError("\n".join(f"{path}: {line}" for line in str(exc).splitlines())) from None
