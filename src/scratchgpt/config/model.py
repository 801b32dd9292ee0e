"""Model configuration: one typed, validated dataclass and a table of named presets.

The field names follow the book "Build a Large Language Model (From Scratch)" (Raschka, ch. 4:
``vocab_size``, ``context_length``, ``emb_dim``, ``n_heads``, ``n_layers``, ``drop_rate``,
``qkv_bias``), so the seeds' ``GPT_CONFIG_124M`` dict loads verbatim with
:meth:`GPTConfig.from_dict`. The config is plain data: it is saved as JSON next to every
checkpoint and the model is rebuilt from it, never from code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from ..errors import ConfigError, did_you_mean
from .validate import check_field_types, check_keys, from_data, one_of, option, read_config_file

AttentionImpl = Literal["explicit", "sdpa"]
ATTENTION_IMPLS: tuple[str, ...] = get_args(AttentionImpl)
PosEncoding = Literal["learned", "sinusoidal"]
POS_ENCODINGS: tuple[str, ...] = get_args(PosEncoding)
WeightInit = Literal["gpt2", "torch"]
WEIGHT_INITS: tuple[str, ...] = get_args(WeightInit)


@dataclass(frozen=True)
class GPTConfig:
    """The shape of a GPT model.

    Frozen so a model can never drift from the config it was built from (change a value with
    ``dataclasses.replace``). The defaults are the book's GPT_CONFIG_124M: GPT-2 small's shape
    with an untied output head and no QKV bias; the ``gpt2-*`` presets set both as OpenAI did.
    The aliases are other projects' names for a field (nanoGPT, Hugging Face, seed 002).
    """

    vocab_size: int = option("vocabulary size (training sets it to the tokenizer's)", 50257)
    context_length: int = option(
        "longest sequence the model reads (positions)",
        1024,
        aliases=("max_block_size", "block_size", "max_seq_len", "n_positions"),
    )
    emb_dim: int = option(
        "width of the token vectors", 768, aliases=("embed_dim", "n_embd", "d_model")
    )
    n_heads: int = option(
        "attention heads per layer (must divide emb_dim)",
        12,
        aliases=("heads", "num_heads", "n_head"),
    )
    n_layers: int = option("transformer blocks", 12, aliases=("num_layers", "n_layer"))
    drop_rate: float = option("dropout probability", 0.1, aliases=("dropout",))
    qkv_bias: bool = option(
        "bias in the query/key/value projections (GPT-2: true)", False, aliases=("bias",)
    )
    # Share the token embedding with the output head (GPT-2 does; the book's model does not).
    tie_weights: bool = option(
        "share the token embedding with the output head (GPT-2: true)", False
    )
    # "explicit": the textbook QK^T/sqrt(d) -> mask -> softmax -> V, one step per line.
    # "sdpa": torch's fused scaled_dot_product_attention (flash attention on a GPU).
    attn_impl: AttentionImpl = option("attention math: explicit (textbook) or sdpa (fused)", "sdpa")
    ln_eps: float = option("LayerNorm epsilon", 1e-5)
    # "learned": a trained vector per position (GPT-2). "sinusoidal": the fixed sin/cos waves
    # of the original Transformer (Vaswani et al. 2017, §3.5), no parameters. Configs saved
    # before this field existed load as "learned", which is what they were.
    pos_encoding: PosEncoding = option("learned (GPT-2) or sinusoidal positions", "learned")
    # Round the embedding and output-head rows up to a multiple of this (64 is the usual
    # choice): matrix shapes that are multiples of 64 run markedly faster on tensor cores.
    # The extra rows are never real tokens: forward returns only the first vocab_size logits,
    # so the padding can never be sampled or scored.
    vocab_multiple: int = option(
        "round the vocabulary rows up to a multiple of this (64: faster matmuls)", 1
    )
    # How a new model's weights start. "gpt2": N(0, 0.02) everywhere and the residual
    # projections scaled by 1/sqrt(2 n_layers), as OpenAI initialised GPT-2. "torch": each
    # layer's PyTorch default (embeddings N(0, 1), Linear uniform in +-1/sqrt(fan_in)), which
    # is what the book's GPTModel starts from; on a tiny corpus its much larger embeddings are
    # memorised far sooner. Loaded weights replace either.
    init: WeightInit = option(
        "how new weights start: gpt2 (N(0, 0.02), GPT-2) or torch (PyTorch defaults, the book)",
        "gpt2",
    )

    def __post_init__(self) -> None:
        check_field_types(self)
        for name in (
            "vocab_size",
            "context_length",
            "emb_dim",
            "n_heads",
            "n_layers",
            "vocab_multiple",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}: must be an integer >= 1")
        if self.emb_dim % self.n_heads != 0:
            raise ConfigError(
                f"emb_dim={self.emb_dim}: must be divisible by n_heads={self.n_heads} "
                f"(each head gets emb_dim / n_heads dimensions); try emb_dim="
                f"{(self.emb_dim // self.n_heads + 1) * self.n_heads} or an n_heads dividing "
                f"{self.emb_dim}"
            )
        if not 0.0 <= self.drop_rate < 1.0:
            raise ConfigError(f"drop_rate={self.drop_rate}: must be in [0, 1)")
        if not self.ln_eps > 0:
            raise ConfigError(f"ln_eps={self.ln_eps}: must be a positive number")
        for name, allowed in (
            ("attn_impl", ATTENTION_IMPLS),
            ("pos_encoding", POS_ENCODINGS),
            ("init", WEIGHT_INITS),
        ):
            if getattr(self, name) not in allowed:
                raise ConfigError(one_of(name, getattr(self, name), allowed))
        if self.pos_encoding == "sinusoidal" and self.emb_dim % 2 != 0:
            raise ConfigError(
                f"emb_dim={self.emb_dim}: pos_encoding='sinusoidal' pairs the dimensions into "
                "(sin, cos) waves, so emb_dim must be even; try emb_dim="
                f"{self.emb_dim + self.n_heads}"
            )

    @property
    def padded_vocab_size(self) -> int:
        """Rows of the embedding and output head: vocab_size rounded up to vocab_multiple."""
        return -(-self.vocab_size // self.vocab_multiple) * self.vocab_multiple

    @property
    def head_dim(self) -> int:
        """Dimensions per attention head (hs in the shape comments)."""
        return self.emb_dim // self.n_heads

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GPTConfig:
        """Build from plain data (the seeds' GPT_CONFIG_124M loads verbatim), coercing values.

        Unknown keys are an error rather than ignored: a misspelt ``n_layer`` silently falling
        back to the default would train a different model than the one asked for.
        """
        return from_data(cls, d)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (the inverse of :meth:`from_dict`)."""
        return dataclasses.asdict(self)


# Presets by exact name. OpenAI's four GPT-2 shapes are tied, with QKV bias, as released.
# small / default / large are seed 002's sizes (about 1.6M, 87M and 350M parameters with the
# vocabulary given here; training replaces vocab_size by the tokenizer's). "tiny" is for tests.
_GPT2 = {"vocab_size": 50257, "context_length": 1024, "qkv_bias": True, "tie_weights": True}
PRESETS: dict[str, dict[str, Any]] = {
    "gpt2-124M": {**_GPT2, "emb_dim": 768, "n_heads": 12, "n_layers": 12},
    "gpt2-355M": {**_GPT2, "emb_dim": 1024, "n_heads": 16, "n_layers": 24},
    "gpt2-774M": {**_GPT2, "emb_dim": 1280, "n_heads": 20, "n_layers": 36},
    "gpt2-1558M": {**_GPT2, "emb_dim": 1600, "n_heads": 25, "n_layers": 48},
    "tiny": {
        "vocab_size": 256,
        "context_length": 64,
        "emb_dim": 32,
        "n_heads": 4,
        "n_layers": 2,
        "drop_rate": 0.0,
        "tie_weights": True,
    },
    # The built-in `scratchgpt train` run: a character-level model sized so that its 400
    # steps fit in five minutes on two CPU cores, AVX2-only ones included.
    "mini": {
        "vocab_size": 128,
        "context_length": 128,
        "emb_dim": 192,
        "n_heads": 6,
        "n_layers": 4,
        "drop_rate": 0.0,
        "tie_weights": True,
    },
    "small": {
        "vocab_size": 8192,
        "context_length": 256,
        "emb_dim": 128,
        "n_heads": 4,
        "n_layers": 3,
        "drop_rate": 0.1,
        "tie_weights": True,
    },
    "default": {
        "vocab_size": 2048,
        "context_length": 512,
        "emb_dim": 768,
        "n_heads": 12,
        "n_layers": 12,
        "drop_rate": 0.1,
        "tie_weights": True,
    },
    "large": {
        "vocab_size": 50257,
        "context_length": 1024,
        "emb_dim": 1024,
        "n_heads": 16,
        "n_layers": 24,
        "drop_rate": 0.1,
        "tie_weights": True,
    },
}


def preset_fields(name: str) -> dict[str, Any]:
    """The fields the preset called exactly ``name`` sets; an unknown name lists the valid ones.

    Names are matched exactly (no substring guessing): ``"gpt2"`` is not ``"gpt2-124M"``.
    """
    if name not in PRESETS:
        raise ConfigError(
            f"unknown preset {name!r}{did_you_mean(name, list(PRESETS))}. "
            f"Valid presets: {', '.join(PRESETS)}"
        )
    return dict(PRESETS[name])


def preset(name: str, **overrides: Any) -> GPTConfig:
    """The preset called exactly ``name``, with ``overrides`` (typed values) applied."""
    unknown = check_keys(GPTConfig, overrides, section=None)
    if unknown:
        raise ConfigError(unknown)
    return GPTConfig(**{**preset_fields(name), **overrides})


def load_model_config(path: str | Path) -> GPTConfig:
    """Read a model config from a JSON or YAML file.

    The file is either the bare field mapping (the seeds' GPT_CONFIG_124M) or a run config with
    a ``model:`` section; a ``preset:`` key inside it starts from that preset.
    """
    path = Path(path)
    data = read_config_file(path)
    if isinstance(data.get("model"), dict):
        data = data["model"]
    data = dict(data)
    base = data.pop("preset", None)
    try:
        return from_data(GPTConfig, {**(preset_fields(base) if base else {}), **data})
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
