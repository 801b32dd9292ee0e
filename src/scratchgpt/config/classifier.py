"""A classifier run's config: the encoder's shape, the labelled data, the training settings.

The same layout as a GPT's :class:`~.run.RunConfig`, saved the same way (``RUN/config.yaml``,
every field explicit, what ``--resume`` reads)::

    model:     EncoderConfig fields; vocab_size and num_classes are set from the data
    data:      the LABEL<TAB>TEXT file, the held-out share, the vocabulary's cut-off
    training:  the TrainConfig every run has, with a small classifier's defaults
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .encoder import OLD_KEYS, EncoderConfig
from .run import apply_overrides
from .sections import TrainConfig
from .validate import check_field_types, check_sections, from_data, option, read_config_file

CLASSIFIER_SECTIONS: tuple[str, ...] = ("model", "data", "training")

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


@dataclass(frozen=True)
class ClassifierDataConfig:
    """What a classifier learns from (the ``data:`` section)."""

    source: str | None = option(
        "a file of LABEL<TAB>TEXT lines (none: the SMS Spam Collection, downloaded once "
        "from UCI and cached)",
        None,
    )
    test_ratio: float = option("fraction of each label held out for testing", 0.2)
    min_freq: int = option("words seen fewer times in the training texts become <|unk|>", 2)
    cache_dir: str | None = option(
        "where the SMS corpus is downloaded (default: $SCRATCHGPT_CACHE or XDG cache)", None
    )

    def __post_init__(self) -> None:
        check_field_types(self, section="data")
        if not 0.0 < self.test_ratio < 1.0:
            raise ConfigError(
                f"data.test_ratio={self.test_ratio}: must be strictly between 0 and 1"
            )
        if self.min_freq < 1:
            raise ConfigError(f"data.min_freq={self.min_freq}: must be >= 1")


@dataclass(frozen=True)
class ClassifierRunConfig:
    """A classifier run: ``model`` holds the :class:`EncoderConfig` fields given (in the new
    names); the rest come from EncoderConfig's defaults and the data."""

    model: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    data: ClassifierDataConfig = dataclasses.field(default_factory=ClassifierDataConfig)
    training: TrainConfig = dataclasses.field(
        default_factory=lambda: from_data(TrainConfig, CLASSIFIER_TRAINING, section="training")
    )

    @classmethod
    def from_dict(cls, d: Any) -> ClassifierRunConfig:
        """From nested plain data (YAML); the training section over the classifier defaults."""
        d = check_sections(d, CLASSIFIER_SECTIONS, what="a classifier run config")
        model = {OLD_KEYS.get(k, k): v for k, v in (d.get("model") or {}).items()}
        # Validate the fields now (names, types, ranges); vocab_size is the data's, later.
        shape = EncoderConfig.from_dict({"vocab_size": 1, **model})
        training = {**CLASSIFIER_TRAINING, **(d.get("training") or {})}
        return cls(
            model={k: getattr(shape, k) for k in model},
            data=from_data(ClassifierDataConfig, d.get("data") or {}, section="data"),
            training=from_data(TrainConfig, training, section="training"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": dict(self.model),
            "data": dataclasses.asdict(self.data),
            "training": dataclasses.asdict(self.training),
        }

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, overrides: Mapping[str, Any]) -> ClassifierRunConfig:
        """A copy with ``{"training.lr": 1e-3, "model.n_layers": 1, ...}`` applied."""
        return ClassifierRunConfig.from_dict(apply_overrides(self.to_dict(), dict(overrides)))


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
