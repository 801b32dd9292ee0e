"""The shape of a Transformer encoder and its classification head: plain, validated data.

Seed 001's classifier, in the GPT's field names where a field means the same thing
(``emb_dim``, ``n_heads``, ``n_layers``, ``context_length``, ``drop_rate``); the model is
:class:`scratchgpt.model.encoder.TransformerClassifier`. Kept beside :class:`GPTConfig`, with
no torch import, so the command line builds its flags from it without loading PyTorch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import ConfigError, did_you_mean
from .model import ATTENTION_IMPLS, POS_ENCODINGS, AttentionImpl, PosEncoding
from .validate import from_data, option

Pooling = Literal["mean", "first"]
POOLINGS: tuple[str, ...] = ("mean", "first")

# The names EncoderConfig's fields had before they took the GPT's (seed 001's names): a
# classifier saved then has them in its config.json, so from_dict still reads them.
OLD_KEYS: dict[str, str] = {
    "d_model": "emb_dim",
    "num_heads": "n_heads",
    "d_ff": "hidden_dim",
    "num_layers": "n_layers",
    "max_len": "context_length",
    "dropout": "drop_rate",
}


@dataclass(frozen=True)
class EncoderConfig:
    """The shape of an encoder and its classification head, in the GPT's field names.

    Frozen and plain data like :class:`~scratchgpt.config.GPTConfig`: saved as JSON beside
    the weights and the model rebuilt from it. A field that means what a GPTConfig field
    means has its name. The defaults are a small model that trains on the SMS spam corpus in
    seconds on two CPU cores.
    """

    vocab_size: int = option("vocabulary size (a classifier's is set from its training words)")
    emb_dim: int = option("width of the token vectors", 64)
    n_heads: int = option("attention heads per block (must divide emb_dim)", 4)
    # The GPT fixes the feed-forward width at 4 * emb_dim; an encoder names it.
    hidden_dim: int = option("width of the feed-forward layer inside each block", 128)
    n_layers: int = option("encoder blocks", 2)
    num_classes: int = option("labels to choose from (set from the data)", 2)
    context_length: int = option("longest input in tokens; longer texts are cut", 64)
    drop_rate: float = option("dropout probability", 0.1)
    # The original Transformer's fixed waves by default: no parameters to learn from a small
    # labelled set. "learned" is BERT's choice.
    pos_encoding: PosEncoding = option(
        "sinusoidal (fixed waves) or learned positions", "sinusoidal"
    )
    # "mean": average the real tokens' vectors; "first": the first token's vector (BERT puts
    # a [CLS] token there and trains it to summarise).
    pooling: Pooling = option("one vector per text: mean of the tokens, or the first token", "mean")
    attn_impl: AttentionImpl = option("attention math: explicit (textbook) or sdpa (fused)", "sdpa")
    ln_eps: float = option("LayerNorm epsilon", 1e-5)

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "emb_dim",
            "n_heads",
            "hidden_dim",
            "n_layers",
            "context_length",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r}: must be an integer >= 1")
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int):
            raise ConfigError(f"num_classes={self.num_classes!r}: must be an integer >= 2")
        if self.num_classes < 2:
            raise ConfigError(f"num_classes={self.num_classes}: a classifier needs >= 2 classes")
        if self.emb_dim % self.n_heads != 0:
            raise ConfigError(
                f"emb_dim={self.emb_dim}: must be divisible by n_heads={self.n_heads}"
            )
        if isinstance(self.drop_rate, bool) or not isinstance(self.drop_rate, (int, float)):
            raise ConfigError(f"drop_rate={self.drop_rate!r}: must be a number in [0, 1)")
        if not 0.0 <= self.drop_rate < 1.0:
            raise ConfigError(f"drop_rate={self.drop_rate}: must be in [0, 1)")
        if isinstance(self.ln_eps, bool) or not isinstance(self.ln_eps, (int, float)):
            raise ConfigError(f"ln_eps={self.ln_eps!r}: must be a positive number")
        if not self.ln_eps > 0:
            raise ConfigError(f"ln_eps={self.ln_eps}: must be a positive number")
        for name, allowed in (
            ("pos_encoding", POS_ENCODINGS),
            ("pooling", POOLINGS),
            ("attn_impl", ATTENTION_IMPLS),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(
                    f"{name}={value!r}: must be one of {', '.join(allowed)}"
                    f"{did_you_mean(str(value), allowed)}"
                )
        if self.pos_encoding == "sinusoidal" and self.emb_dim % 2 != 0:
            raise ConfigError(
                f"emb_dim={self.emb_dim}: the sinusoidal encoding needs an even emb_dim"
            )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EncoderConfig:
        """Build from plain data; an unknown key is an error (a typo would change the model).

        The fields' old names (``OLD_KEYS``: d_model, num_heads, ...) are read as the new ones,
        so a classifier saved before the rename still loads.
        """
        if not isinstance(d, dict):
            return from_data(cls, d, section="model")  # its error for a non-mapping
        both = [old for old, new in OLD_KEYS.items() if old in d and new in d]
        if both:
            raise ConfigError(
                "encoder config gives both the old and the new name of "
                + ", ".join(f"{old!r} / {OLD_KEYS[old]!r}" for old in both)
                + ": keep only the new one"
            )
        return from_data(cls, {OLD_KEYS.get(k, k): v for k, v in d.items()}, section="model")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
