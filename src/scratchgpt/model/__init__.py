"""The GPT model and its parts (see ``gpt.py`` for the whole picture, top to bottom)."""

from .attention import (
    ATTENTION_FUNCTIONS,
    MultiHeadAttention,
    explicit_attention,
    sdpa_attention,
)
from .gpt import GPTModel, TransformerBlock, lm_loss, num_parameters
from .layers import GELU, FeedForward, LayerNorm, gelu_formula, layer_norm_formula

__all__ = [
    "ATTENTION_FUNCTIONS",
    "GELU",
    "FeedForward",
    "GPTModel",
    "LayerNorm",
    "MultiHeadAttention",
    "TransformerBlock",
    "explicit_attention",
    "gelu_formula",
    "layer_norm_formula",
    "lm_loss",
    "num_parameters",
    "sdpa_attention",
]
