"""The GPT model and its parts (see ``gpt.py`` for the whole picture, top to bottom)."""

from .attention import (
    ATTENTION_FUNCTIONS,
    KVCache,
    MultiHeadAttention,
    explicit_attention,
    sdpa_attention,
)
from .gpt import (
    GPTModel,
    Packing,
    TransformerBlock,
    add_class_head,
    attention_mask,
    crop_context,
    eval_mode,
    last_token_logits,
    lm_loss,
    num_parameters,
    packed_positions,
)
from .layers import GELU, FeedForward, LayerNorm, gelu_formula, layer_norm_formula
from .positional import (
    SinusoidalPositionalEncoding,
    positional_encoding,
    similarity_by_distance,
    sinusoidal_encoding,
    sinusoidal_shift_matrix,
    sinusoidal_table,
)

__all__ = [
    "ATTENTION_FUNCTIONS",
    "GELU",
    "FeedForward",
    "GPTModel",
    "KVCache",
    "LayerNorm",
    "MultiHeadAttention",
    "Packing",
    "SinusoidalPositionalEncoding",
    "TransformerBlock",
    "add_class_head",
    "attention_mask",
    "crop_context",
    "eval_mode",
    "explicit_attention",
    "gelu_formula",
    "last_token_logits",
    "layer_norm_formula",
    "lm_loss",
    "num_parameters",
    "packed_positions",
    "positional_encoding",
    "sdpa_attention",
    "similarity_by_distance",
    "sinusoidal_encoding",
    "sinusoidal_shift_matrix",
    "sinusoidal_table",
]
