"""An instruction-tuning run's config (the book's ch. 7): the model, the data, training, LoRA.

The same layout as the other runs, saved the same way (``RUN/config.yaml``, every field
explicit, what ``--resume`` reads)::

    model:     init_from (the GPT to tune: a GPT-2 name, a directory, a run of ours), or a
               preset and GPTConfig fields for a GPT trained from scratch on the data
    data:      the records, the prompt template, prompt masking, lengths, the splits, and
               how long the test set's responses may be
    training:  the TrainConfig every run has, with the book's defaults for this task
    lora:      the adapters when training.trainable=lora
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .finetune import LoRAConfig, gpt_model_fields, resolve_trainable, switch_on_lora
from .run import apply_overrides
from .sections import TrainConfig
from .validate import check_field_types, check_sections, from_data, option

INSTRUCT_SECTIONS: tuple[str, ...] = ("model", "data", "training", "lora")

# The book's ch. 7 fine-tuning: AdamW at a constant 5e-5, weight decay 0.1, PyTorch's default
# betas, no clipping, batches of 8, two epochs, every weight trained.
INSTRUCT_TRAINING: dict[str, Any] = {
    "max_steps": None,
    "epochs": 2,
    "batch_size": 8,
    "lr": 5e-5,
    "min_lr": 5e-5,
    "warmup_steps": 0,
    "weight_decay": 0.1,
    "beta2": 0.999,
    "grad_clip": 0.0,
    "eval_batches": 5,
    "sample_interval": 0,
    "seed": 123,
}


@dataclass(frozen=True)
class InstructDataConfig:
    """What an instruction-tuning run learns from (the ``data:`` section)."""

    source: str | None = option(
        "records: JSON or JSONL of {instruction, input, output} (Alpaca, the book's) or "
        '{"messages": [{"role", "content"}, ...]} (none: the book\'s instruction-data.json, '
        "downloaded once)",
        None,
    )
    template: str = option(
        "the prompt template: alpaca, phi3, chatml, or a JSON file of one (saved with every "
        "checkpoint, so generate, chat and serve format prompts the same way)",
        "alpaca",
    )
    mask_prompt: bool = option(
        "put the loss on the responses only (in chat, the assistant turns): the prompt's "
        "tokens are not targets",
        False,
    )
    max_length: int | None = option(
        "longest example in tokens; longer ones are cut, and counted (default: the model's "
        "context length)",
        None,
    )
    val_ratio: float = option("share of the records for validation (the book: 5%)", 0.05)
    test_ratio: float = option(
        "share of the records held out to answer at the end (the book: 10%)", 0.1
    )
    response_tokens: int = option(
        "tokens each test-set response may have, written at the end to "
        "RUN/test-responses.json (0: write none)",
        256,
    )
    tokenizer: str | None = option(
        "a GPT trained from scratch: its tokenizer (default gpt2); a pretrained model brings "
        "its own",
        None,
    )
    cache_dir: str | None = option(
        "where the book's data is downloaded (default: $SCRATCHGPT_CACHE or XDG cache)", None
    )

    def __post_init__(self) -> None:
        check_field_types(self, section="data")
        for name in ("val_ratio", "test_ratio"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ConfigError(f"data.{name}={getattr(self, name)}: must be between 0 and 1")
        if self.val_ratio + self.test_ratio >= 1.0:
            raise ConfigError(
                f"data.val_ratio + data.test_ratio = {self.val_ratio + self.test_ratio:g}: "
                "must leave records to train on (below 1)"
            )
        if self.max_length is not None and self.max_length < 2:
            raise ConfigError(f"data.max_length={self.max_length}: must be >= 2")
        if self.response_tokens < 0:
            raise ConfigError(f"data.response_tokens={self.response_tokens}: must be >= 0")


@dataclass(frozen=True)
class InstructRunConfig:
    """An instruction-tuning run. ``model`` holds GPTConfig fields for a GPT from scratch (or
    only a context crop for a pretrained one). ``eval_per_epoch``: no evaluation interval was
    given, so the run evaluates once per epoch (the book's "validation loss per epoch")."""

    model: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    data: InstructDataConfig = dataclasses.field(default_factory=InstructDataConfig)
    training: TrainConfig = dataclasses.field(
        default_factory=lambda: from_data(TrainConfig, INSTRUCT_TRAINING, section="training")
    )
    lora: LoRAConfig = dataclasses.field(default_factory=LoRAConfig)
    init_from: str | None = None
    eval_per_epoch: bool = False

    @classmethod
    def from_dict(cls, d: Any) -> InstructRunConfig:
        d = check_sections(d, INSTRUCT_SECTIONS, what="an instruction-tuning run config")
        given = dict(d.get("model") or {})
        init_from = given.pop("init_from", None)
        preset = given.pop("preset", None)
        lora = d.get("lora") or {}
        chosen = resolve_trainable(d.get("training") or {}, lora)
        training = {**INSTRUCT_TRAINING, **chosen}
        per_epoch = "eval_interval" not in chosen
        if per_epoch:
            training["eval_interval"] = 1  # replaced by the epoch's length once it is known
        return cls(
            # From scratch only with a preset or fields (default mini): a model must be chosen.
            model=gpt_model_fields(given, init_from=init_from, preset=preset, default_preset=None),
            data=from_data(InstructDataConfig, d.get("data") or {}, section="data"),
            training=from_data(TrainConfig, training, section="training"),
            lora=from_data(LoRAConfig, lora, section="lora"),
            init_from=None if init_from is None else str(init_from),
            eval_per_epoch=per_epoch,
        )

    def to_dict(self) -> dict[str, Any]:
        model: dict[str, Any] = {} if self.init_from is None else {"init_from": self.init_from}
        return {
            "model": {**model, **self.model},
            "data": dataclasses.asdict(self.data),
            "training": dataclasses.asdict(self.training),
            "lora": dataclasses.asdict(self.lora),
        }

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, overrides: Mapping[str, Any]) -> InstructRunConfig:
        """A copy with ``{"training.lr": 1e-4, "data.mask_prompt": True, ...}`` applied."""
        changes = switch_on_lora(overrides)
        out = InstructRunConfig.from_dict(apply_overrides(self.to_dict(), changes))
        if self.eval_per_epoch and "training.eval_interval" not in changes:
            out = dataclasses.replace(out, eval_per_epoch=True)
        return out
