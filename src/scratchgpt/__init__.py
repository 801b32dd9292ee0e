"""scratchgpt: a GPT built from scratch in PyTorch, readable and fast on the same weights.

The public API is importable from here; submodules load on first use, so ``import
scratchgpt`` (and ``scratchgpt --help``) stays quick.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "GPTConfig": "config",
    "ConfigError": "config",
    "PRESETS": "config",
    "preset": "config",
    "load_model_config": "config",
    "GPTModel": "model",
    "TransformerBlock": "model",
    "MultiHeadAttention": "model",
    "FeedForward": "model",
    "LayerNorm": "model",
    "GELU": "model",
    "lm_loss": "model",
    "num_parameters": "model",
    "Tokenizer": "tokenizers",
    "TokenizerError": "tokenizers",
    "CharTokenizer": "tokenizers",
    "BPETokenizer": "tokenizers",
    "SimpleTokenizerV1": "tokenizers",
    "SimpleTokenizerV2": "tokenizers",
    "TiktokenTokenizer": "tokenizers",
    "get_tokenizer": "tokenizers",
    "load_tokenizer": "tokenizers",
    "DataError": "data",
    "SlidingWindowDataset": "data",
    "create_dataloader": "data",
    "load_text": "data",
    "split_ids": "data",
    "generate": "generation",
    "stream": "generation",
    "Generator": "generation",
    "CheckpointError": "checkpoint",
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "TrainConfig": "training",
    "TrainResult": "training",
    "train": "training",
}

__all__ = [
    "GELU",
    "PRESETS",
    "BPETokenizer",
    "CharTokenizer",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "FeedForward",
    "GPTConfig",
    "GPTModel",
    "Generator",
    "LayerNorm",
    "MultiHeadAttention",
    "SimpleTokenizerV1",
    "SimpleTokenizerV2",
    "SlidingWindowDataset",
    "TiktokenTokenizer",
    "Tokenizer",
    "TokenizerError",
    "TrainConfig",
    "TrainResult",
    "TransformerBlock",
    "create_dataloader",
    "generate",
    "get_tokenizer",
    "lm_loss",
    "load_checkpoint",
    "load_model_config",
    "load_text",
    "load_tokenizer",
    "num_parameters",
    "preset",
    "save_checkpoint",
    "split_ids",
    "stream",
    "train",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'scratchgpt' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:
    from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from .config import PRESETS, ConfigError, GPTConfig, load_model_config, preset
    from .data import DataError, SlidingWindowDataset, create_dataloader, load_text, split_ids
    from .generation import Generator, generate, stream
    from .model import (
        GELU,
        FeedForward,
        GPTModel,
        LayerNorm,
        MultiHeadAttention,
        TransformerBlock,
        lm_loss,
        num_parameters,
    )
    from .tokenizers import (
        BPETokenizer,
        CharTokenizer,
        SimpleTokenizerV1,
        SimpleTokenizerV2,
        TiktokenTokenizer,
        Tokenizer,
        TokenizerError,
        get_tokenizer,
        load_tokenizer,
    )
    from .training import TrainConfig, TrainResult, train
