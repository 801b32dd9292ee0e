"""Run configs: what to train on, how, and with which tokenizer, read from YAML or JSON.

A run config is four sections, seed 002's layout, each a frozen dataclass validated on
construction, and a fifth for fine-tuning:

    model:      a preset and/or GPTConfig fields (or init_from: pretrained weights)
    data:       where the text comes from and how it is cut into windows
    tokenizer:  which tokenizer, and its size when it is trained on the data
    training:   the optimisation: steps, batch, schedule, precision, checkpoints, and what
                trains (training.trainable: all, last-N blocks, or LoRA adapters)
    lora:       the adapters' rank, alpha, dropout and targets (see :mod:`.finetune`)

YAML or JSON on disk, plain dicts in Python, ``--section.field value`` on the command line;
the effective config (every field explicit) is saved in the run directory, so a run can be
reproduced or resumed from that file alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, did_you_mean
from .finetune import LoRAConfig, resolve_trainable, switch_on_lora
from .model import GPTConfig, preset, preset_fields
from .sections import DataConfig, TokenizerConfig, TrainConfig
from .validate import (
    check_field_types,
    check_keys,
    check_sections,
    from_data,
    option,
    read_config_file,
)

SECTIONS: tuple[str, ...] = ("model", "data", "tokenizer", "training", "lora")


@dataclass(frozen=True)
class ModelSource:
    """The model section's two keys that are not GPTConfig fields: where the model comes
    from. Read from the file's ``model:`` section (``--model.preset``, ``--model.init_from``)
    and documented here so the command line's flags and help come from one place."""

    preset: str | None = option(
        "the preset the model section starts from (none: every model field is given)", "mini"
    )
    init_from: str | None = option(
        "pretrained weights to start from (a GPT-2 name or directory, a checkpoint); they fix "
        "the shape, and model.context_length may only crop the context",
        None,
    )

    def __post_init__(self) -> None:
        check_field_types(self, section="model")


@dataclass(frozen=True)
class RunConfig:
    """A whole run: the model's shape, the data, the tokenizer and the training settings.

    ``init_from`` (written in the model section) starts from pretrained weights, which then
    fix the shape: ``model`` is None until they are loaded, and the model section may only
    crop the context (``crop_context_length``). A saved effective config has both.
    """

    model: GPTConfig | None = option(
        "the model's shape (None until init_from's weights are loaded)",
        default_factory=lambda: preset("mini"),
    )
    data: DataConfig = option("what to train on", default_factory=DataConfig)
    tokenizer: TokenizerConfig = option("which tokenizer", default_factory=TokenizerConfig)
    training: TrainConfig = option("how to train", default_factory=TrainConfig)
    lora: LoRAConfig = option("LoRA adapters (training.trainable=lora)", default_factory=LoRAConfig)
    init_from: str | None = option(
        "pretrained weights the run starts from", None, path="model.init_from"
    )
    crop_context_length: int | None = option(
        "the shorter context init_from's model is cropped to", None, path="model.context_length"
    )

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.model is None and self.init_from is None:
            raise ConfigError("a run needs a model section or model.init_from")

    @classmethod
    def from_dict(cls, d: Any) -> RunConfig:
        """Build from nested plain data, as read from YAML: every section optional.

        The model section starts from ``preset`` (default "mini") and overrides its fields.
        Every problem in the sections is reported at once, one line each.
        """
        d = check_sections(d, SECTIONS, what="a run config")
        given = d.get("model") or {}
        model = {k: v for k, v in given.items() if k not in ("preset", "init_from")}
        source = from_data(
            ModelSource,
            {k: v for k, v in given.items() if k in ("preset", "init_from")},
            section="model",
        )
        problem = check_keys(GPTConfig, model, section="model", extra=("preset", "init_from"))
        if problem:
            raise ConfigError(problem)
        plain: dict[str, Any] = {name: d.get(name) or {} for name in SECTIONS[1:]}
        plain["training"] = resolve_trainable(plain["training"], plain["lora"])
        if source.init_from is not None and source.preset is None and "preset" in given:
            # a saved effective config: the pretrained shape, written out
            plain.update(model=model, init_from=source.init_from)
        elif source.init_from is not None:
            clash = sorted(set(model) - {"context_length"}) + (
                ["preset"] if "preset" in given else []
            )
            if clash:
                raise ConfigError(
                    f"model.init_from fixes the model's shape and vocabulary: drop model."
                    f"{', model.'.join(clash)} (model.context_length may crop the context)"
                )
            plain.update(
                model=None,
                init_from=source.init_from,
                crop_context_length=model.get("context_length"),
            )
        else:
            try:
                base = preset_fields(source.preset) if source.preset is not None else {}
            except ConfigError as exc:
                raise ConfigError(f"model.preset: {exc}") from None
            plain["model"] = {**base, **model}
        return from_data(cls, plain)

    def to_dict(self) -> dict[str, Any]:
        """Nested plain data with every field explicit (what the run directory keeps)."""
        if self.model is None:  # shape still to come from init_from's weights
            model: dict[str, Any] = {"init_from": self.init_from}
            if self.crop_context_length is not None:
                model["context_length"] = self.crop_context_length
        else:
            model = {"preset": None, **self.model.to_dict()}
            if self.init_from is not None:
                model["init_from"] = self.init_from
        return {
            "model": model,
            "data": dataclasses.asdict(self.data),
            "tokenizer": dataclasses.asdict(self.tokenizer),
            "training": dataclasses.asdict(self.training),
            "lora": dataclasses.asdict(self.lora),
        }

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, overrides: dict[str, Any]) -> RunConfig:
        """A copy with ``{"training.lr": 3e-4, ...}`` applied (values may be strings)."""
        return RunConfig.from_dict(apply_overrides(self.to_dict(), switch_on_lora(overrides)))


def apply_overrides(d: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``d`` (nested sections) with ``{"section.field": value}`` set; hyphens may replace
    underscores (``training.max-steps``), as on the command line."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in d.items()}
    for key, value in overrides.items():
        section, dot, name = key.partition(".")
        if not dot or not name:
            raise ConfigError(
                f"override {key!r}: write it as section.field, e.g. training.lr "
                f"(sections: {', '.join(SECTIONS)})"
            )
        if section not in SECTIONS:
            raise ConfigError(
                f"override {key!r}: unknown section {section!r}{did_you_mean(section, SECTIONS)}"
            )
        out.setdefault(section, {})
        if out[section] is None:
            out[section] = {}
        out[section][name.replace("-", "_")] = value
    return out


def load_run_config(
    path: str | Path | None = None, *, overrides: dict[str, Any] | None = None
) -> RunConfig:
    """The run config in ``path`` (YAML or JSON; none: the defaults) with ``overrides``.

    A file of bare model fields (the book's GPT_CONFIG_124M as JSON) is read as the model
    section, so older model-only configs keep working. Each line of an error names the file.
    """
    data = read_config_file(path) if path is not None else {}
    model_keys = {f.name for f in dataclasses.fields(GPTConfig)} | {"preset"}
    if data and set(data) <= model_keys:
        data = {"model": {"preset": None, **data}}
    try:
        return RunConfig.from_dict(apply_overrides(data, overrides or {}))
    except ConfigError as exc:
        if path is None:
            raise
        raise ConfigError("\n".join(f"{path}: {line}" for line in str(exc).splitlines())) from None
