"""What a fine-tuning run trains: ``training.trainable`` and the ``lora:`` section.

Fine-tuning a pretrained GPT need not update all of it. ``training.trainable`` says which
parameters the optimiser sees; the rest are frozen (``requires_grad=False``: no gradients, no
optimiser state, weights bit-identical at the end):

    all          every parameter (the default for language modelling)
    head         the output head alone (a classifier's new head)
    last-block   the last transformer block, the final norm and the head: the book's ch. 6
                 default for a classifier
    last-N       the last N blocks, the final norm and the head
    lora         low-rank adapters (Hu et al. 2021, "LoRA"; the book's appendix E) on the
                 Linear layers ``lora.targets`` names; the base weights stay frozen, and a
                 classifier's new head trains too

The ``lora:`` section (``--lora.rank``, ``--lora.alpha``, ...) sizes the adapters. Giving any
of its keys without ``training.trainable`` switches LoRA on, so ``--lora.rank 8`` alone is
enough; giving them with another ``trainable`` is an error rather than silently ignored.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .model import GPTConfig, preset_fields
from .validate import check_field_types, check_keys, option

TRAINABLE_HELP = "all, head, last-block, last-N (e.g. last-2) or lora"
_LAST_N = re.compile(r"last-(\d+)")


def parse_trainable(spec: str) -> tuple[str, int]:
    """``training.trainable`` -> (kind, blocks): ("all", 0), ("head", 0), ("last", N) or
    ("lora", 0). Raises ConfigError for anything else."""
    if spec in ("all", "head", "lora"):
        return spec, 0
    if spec == "last-block":
        return "last", 1
    match = _LAST_N.fullmatch(spec)
    if match and int(match.group(1)) >= 1:
        return "last", int(match.group(1))
    raise ConfigError(f"training.trainable={spec!r}: must be {TRAINABLE_HELP}")


@dataclass(frozen=True)
class LoRAConfig:
    """The LoRA adapters' shape (the ``lora:`` section); used when training.trainable=lora.

    The update of a targeted Linear is ``(alpha / rank) * B @ A``: with alpha equal to the
    rank (the book's 16 and 16) the scale is 1, and changing the rank alone does not change
    how far a step moves the output.
    """

    rank: int = option("LoRA rank r: the inner size of the low-rank update B @ A", 16)
    alpha: float = option("LoRA alpha: the update is scaled by alpha / rank", 16.0)
    dropout: float = option("dropout on the adapter's input (training only)", 0.0)
    targets: str = option(
        "Linear layers that get adapters: all (every Linear in the blocks), qv (query and "
        "value), attn, mlp, or a comma list of layer names such as att.W_query,ff.layers.0",
        "all",
    )

    def __post_init__(self) -> None:
        check_field_types(self, section="lora")
        if self.rank < 1:
            raise ConfigError(f"lora.rank={self.rank}: must be an integer >= 1 (16 is common)")
        if not self.alpha > 0:
            raise ConfigError(f"lora.alpha={self.alpha}: must be > 0 (often equal to the rank)")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"lora.dropout={self.dropout}: must be in [0, 1)")
        if not self.targets.strip():
            raise ConfigError("lora.targets is empty: name the layers, e.g. all or qv")


def resolve_trainable(training: Mapping[str, Any], lora: Mapping[str, Any]) -> dict[str, Any]:
    """The training section with ``trainable`` set to lora when lora keys were given alone;
    an error when lora keys were given with another choice of what trains."""
    out = dict(training)
    if not lora:
        return out
    if "trainable" not in out:
        out["trainable"] = "lora"
        return out
    defaults = {f.name: f.default for f in dataclasses.fields(LoRAConfig)}
    changed = sorted(k for k, v in lora.items() if k in defaults and v != defaults[k])
    if out["trainable"] != "lora" and changed:
        raise ConfigError(
            f"lora.{', lora.'.join(changed)} given with training.trainable="
            f"{out['trainable']}: set --trainable lora (or leave it out) to train adapters"
        )
    return out


def switch_on_lora(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``section.field`` overrides with ``training.trainable=lora`` added when they set lora
    keys and do not say what trains: the same rule as :func:`resolve_trainable`, for a
    config whose training section is already explicit."""
    out = dict(overrides)
    keys = {k.replace("-", "_") for k in out}
    if any(k.startswith("lora.") for k in keys) and "training.trainable" not in keys:
        out["training.trainable"] = "lora"
    return out


def gpt_model_fields(
    given: dict[str, Any],
    *,
    init_from: Any,
    preset: str | None,
    default_preset: str | None,
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A fine-tuning run's model section, checked. A pretrained model's shape is its own
    (only ``context_length`` may crop it); a GPT from scratch is a preset (``preset``, else
    ``default_preset``) with fields overridden, every field written out so the saved config
    rebuilds it without the preset; vocab_size is left to the tokenizer. ``extra``: keys the
    run sets itself (a classifier's num_classes), accepted and dropped. With no preset, no
    default and no fields, the result is empty: the run then says a model must be chosen."""
    problem = check_keys(GPTConfig, given, section="model", extra=extra)
    if problem:
        raise ConfigError(problem)
    given = {k: v for k, v in given.items() if k not in extra}
    if init_from is not None:
        clash = sorted(set(given) - {"context_length"}) + (["preset"] if preset else [])
        if clash:
            raise ConfigError(
                f"model.init_from fixes the model's shape: drop model.{', model.'.join(clash)} "
                "(model.context_length may crop the context)"
            )
        return given
    chosen = preset or default_preset
    if chosen is None and not given:
        return {}
    try:
        fields = {**preset_fields(chosen or "mini"), **given}
    except ConfigError as exc:
        raise ConfigError(f"model.preset: {exc}") from None
    fields.pop("vocab_size", None)  # the tokenizer's
    full = GPTConfig.from_dict({"vocab_size": 1, **fields}).to_dict()
    return {k: v for k, v in full.items() if k != "vocab_size"}
