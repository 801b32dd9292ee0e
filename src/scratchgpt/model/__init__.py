"""The GPT model and its parts (see ``gpt.py`` for the whole picture, top to bottom)."""

from .attention import (
    ATTENTION_FUNCTIONS,
    KVCache,
    MultiHeadAttention,
    explicit_attention,
    sdpa_attention,
)
from .gpt import GPTModel, TransformerBlock, attention_mask, lm_loss, num_parameters
from .layers import GELU, FeedForward, LayerNorm, gelu_formula, layer_norm_formula

__all__ = [
    "ATTENTION_FUNCTIONS",
    "GELU",
    "FeedForward",
    "GPTModel",
    "KVCache",
    "LayerNorm",
    "MultiHeadAttention",
    "TransformerBlock",
    "attention_mask",
    "explicit_attention",
    "gelu_formula",
    "layer_norm_formula",
    "lm_loss",
    "num_parameters",
    "sdpa_attention",
]
