"""``scratchgpt config convert``: other projects' configs as scratchgpt run configs.

The names other projects give our settings (nanoGPT's ``n_embd``, seed 002's
``learning_rate``) are written on the fields themselves (their ``aliases`` metadata), where
the "did you mean" hints for unknown keys also read them; :data:`ALIASES` collects them per
section for the conversion.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from ..errors import ConfigError, did_you_mean
from .model import GPTConfig
from .run import SECTIONS, RunConfig
from .sections import DataConfig, TokenizerConfig, TrainConfig

log = logging.getLogger(__name__)

_SECTION_CLASSES: dict[str, type] = {
    "model": GPTConfig,
    "data": DataConfig,
    "tokenizer": TokenizerConfig,
    "training": TrainConfig,
}

# {section: {other project's key: our field}}, from the fields' ``aliases`` metadata.
ALIASES: dict[str, dict[str, str]] = {
    section: {
        alias: f.name
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        for alias in f.metadata.get("aliases", ())
    }
    for section, cls in _SECTION_CLASSES.items()
}


def convert_config(data: dict[str, Any]) -> RunConfig:
    """A RunConfig from another project's config: seed 002's sections or a flat JSON dict
    (the book's GPT_CONFIG_124M, nanoGPT-style training keys), names translated by ALIASES.

    Keys with no equivalent are an error naming them, never silently dropped.
    """
    if not isinstance(data, dict):
        raise ConfigError("the config to convert must be a mapping")
    owner = {
        f.name: section
        for section, cls in _SECTION_CLASSES.items()
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
    }
    for section, table in ALIASES.items():
        for alias in table:
            owner.setdefault(alias, section)
    flat: list[tuple[str | None, str, Any]] = []
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, dict):
            flat.extend((key, k, v) for k, v in value.items())
        else:
            flat.append((None, key, value))
    out: dict[str, dict[str, Any]] = {"model": {"preset": None}}
    dropped: list[str] = []
    for section, key, value in flat:
        target = section or owner.get(key)
        name = ALIASES.get(target or "", {}).get(key, key)
        if target == "model" and name in ("preset", "init_from"):
            out["model"][name] = value
            continue
        if key == "mixed_precision":
            target, name, value = "training", "precision", "auto" if value else "fp32"
        elif key == "validation_split":
            value = 1.0 - float(value)
        elif key == "ff_dim":
            width = next((v for (_, k, v) in flat if ALIASES["model"].get(k, k) == "emb_dim"), None)
            if width is not None and int(value) != 4 * int(width):
                raise ConfigError(
                    f"ff_dim={value}: this GPT's feed-forward layer is 4 x emb_dim "
                    f"({4 * int(width)}), as in GPT-2; other widths are not supported"
                )
            continue
        elif key in ("num_training_samples", "special_tokens"):
            dropped.append(key)
            continue
        if target is None:
            raise ConfigError(
                f"cannot convert key {key!r}{did_you_mean(key, list(owner))}: no scratchgpt "
                "setting corresponds to it"
            )
        out.setdefault(target, {})[name] = value
    if dropped:
        log.warning(
            "config convert: %s have no scratchgpt equivalent and were left out",
            ", ".join(dropped),
        )
    return RunConfig.from_dict(out)
