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
    "ConfigError": "errors",
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
    "TokenizerError": "errors",
    "CharTokenizer": "tokenizers",
    "BPETokenizer": "tokenizers",
    "SimpleTokenizerV1": "tokenizers",
    "SimpleTokenizerV2": "tokenizers",
    "TiktokenTokenizer": "tokenizers",
    "get_tokenizer": "tokenizers",
    "load_tokenizer": "tokenizers",
    "DataError": "errors",
    "SlidingWindowDataset": "data",
    "create_dataloader": "data",
    "load_text": "data",
    "split_ids": "data",
    "generate": "generation",
    "stream": "generation",
    "Generator": "generation",
    "compile_decode_step": "generation",
    "quantize": "quantization",
    "CheckpointError": "errors",
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "load_gpt2": "pretrained",
    "load_pretrained": "pretrained",
    "download_gpt2": "pretrained",
    "export_hf": "pretrained",
    "crop_context": "model",
    "perplexity": "evaluation",
    "PerplexityResult": "evaluation",
    "TrainConfig": "config",
    "RunConfig": "config",
    "SamplingConfig": "config",
    "load_run_config": "config",
    "TrainResult": "training",
    "TrainingError": "errors",
    "SequentialWindows": "data",
    "prepare": "data",
    "load_prepared": "data",
    "RandomWindows": "data",
    "train": "training",
    "SinusoidalPositionalEncoding": "model",
    "sinusoidal_encoding": "model",
    "SelfAttentionNoWeights": "model.teaching",
    "SelfAttention": "model.teaching",
    "CausalAttention": "model.teaching",
    "MultiHeadAttentionWrapper": "model.teaching",
    "EncoderConfig": "config",
    "TransformerEncoder": "model.encoder",
    "TransformerClassifier": "model.encoder",
    "TextClassifier": "classifier",
    "ClassifierRunConfig": "config",
    "ClassifierResult": "training.classify",
    "LabelledText": "data.labelled",
    "train_classifier": "training.classify",
    "load_sms_spam": "data.labelled",
    "download_sms_spam": "data.labelled",
    "attention_weights": "analysis",
    "hidden_states": "analysis",
    "layer_statistics": "analysis",
    "parameter_breakdown": "params",
    "format_breakdown": "params",
}

__all__ = [
    "GELU",
    "PRESETS",
    "BPETokenizer",
    "CausalAttention",
    "CharTokenizer",
    "CheckpointError",
    "ClassifierResult",
    "ClassifierRunConfig",
    "ConfigError",
    "DataError",
    "EncoderConfig",
    "FeedForward",
    "GPTConfig",
    "GPTModel",
    "Generator",
    "LabelledText",
    "LayerNorm",
    "MultiHeadAttention",
    "MultiHeadAttentionWrapper",
    "PerplexityResult",
    "RandomWindows",
    "RunConfig",
    "SamplingConfig",
    "SelfAttention",
    "SelfAttentionNoWeights",
    "SequentialWindows",
    "SimpleTokenizerV1",
    "SimpleTokenizerV2",
    "SinusoidalPositionalEncoding",
    "SlidingWindowDataset",
    "TextClassifier",
    "TiktokenTokenizer",
    "Tokenizer",
    "TokenizerError",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "TransformerBlock",
    "TransformerClassifier",
    "TransformerEncoder",
    "attention_weights",
    "compile_decode_step",
    "create_dataloader",
    "crop_context",
    "download_gpt2",
    "download_sms_spam",
    "export_hf",
    "format_breakdown",
    "generate",
    "get_tokenizer",
    "hidden_states",
    "layer_statistics",
    "lm_loss",
    "load_checkpoint",
    "load_gpt2",
    "load_model_config",
    "load_prepared",
    "load_pretrained",
    "load_run_config",
    "load_sms_spam",
    "load_text",
    "load_tokenizer",
    "num_parameters",
    "parameter_breakdown",
    "perplexity",
    "prepare",
    "preset",
    "quantize",
    "save_checkpoint",
    "sinusoidal_encoding",
    "split_ids",
    "stream",
    "train",
    "train_classifier",
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
    from .analysis import attention_weights, hidden_states, layer_statistics
    from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from .classifier import TextClassifier
    from .config import (
        PRESETS,
        ClassifierRunConfig,
        ConfigError,
        EncoderConfig,
        GPTConfig,
        RunConfig,
        SamplingConfig,
        TrainConfig,
        load_model_config,
        load_run_config,
        preset,
    )
    from .data import (
        DataError,
        RandomWindows,
        SequentialWindows,
        SlidingWindowDataset,
        create_dataloader,
        load_prepared,
        load_text,
        prepare,
        split_ids,
    )
    from .data.labelled import LabelledText, download_sms_spam, load_sms_spam
    from .evaluation import PerplexityResult, perplexity
    from .generation import Generator, compile_decode_step, generate, stream
    from .model import (
        GELU,
        FeedForward,
        GPTModel,
        LayerNorm,
        MultiHeadAttention,
        SinusoidalPositionalEncoding,
        TransformerBlock,
        lm_loss,
        num_parameters,
        sinusoidal_encoding,
    )
    from .model.encoder import TransformerClassifier, TransformerEncoder
    from .model.teaching import (
        CausalAttention,
        MultiHeadAttentionWrapper,
        SelfAttention,
        SelfAttentionNoWeights,
    )
    from .params import format_breakdown, parameter_breakdown
    from .pretrained import crop_context, download_gpt2, export_hf, load_gpt2, load_pretrained
    from .quantization import quantize
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
    from .training import TrainingError, TrainResult, train
    from .training.classify import ClassifierResult, train_classifier
