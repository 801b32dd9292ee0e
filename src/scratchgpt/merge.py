"""An adapter merged into its base, written as one plain model.

Merging folds each adapter into the weight it sits beside (W + (alpha / r) * B @ A, see
:meth:`scratchgpt.lora.LoRALinear.merged`): the result runs at the base model's speed, needs
no base on disk to load, and is a checkpoint (or classifier) every command takes, including
``export --format hf`` for transformers. Kept apart from :mod:`scratchgpt.adapters` because it
writes both kinds of saved model, and the classifier's module reads adapters itself.
"""

from __future__ import annotations

from pathlib import Path

from .adapters import load_adapter_model
from .checkpoint import save_checkpoint
from .classifier import save_classifier


def merge_adapter(path: str | Path, out: str | Path) -> Path:
    """Write base + adapter as one plain model to ``out``: a GPT checkpoint for a language
    model's adapter, a classifier directory for a classifier's. Returns ``out``."""
    model, tokenizer, info = load_adapter_model(path, merge=True)
    metadata = {**info.get("metadata", {}), "merged_from": info["directory"], "base": info["base"]}
    metadata.pop("run", None)  # the run's config belongs to the run, not to this model
    if info.get("labels") is not None:
        return save_classifier(
            Path(out),
            model,
            tokenizer,
            info["labels"],
            metadata=metadata,
            backbone="gpt",
            max_length=info.get("metadata", {}).get("max_length"),
        )
    return save_checkpoint(out, model, tokenizer, metadata=metadata)
