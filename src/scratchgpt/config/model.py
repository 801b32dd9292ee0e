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
PosEncoding = Literal["learned", "sinusoidal", "rope"]
POS_ENCODINGS: tuple[str, ...] = get_args(PosEncoding)
WeightInit = Literal["gpt2", "torch"]
WEIGHT_INITS: tuple[str, ...] = get_args(WeightInit)
NormKind = Literal["layernorm", "rmsnorm"]
NORMS: tuple[str, ...] = get_args(NormKind)
MLPKind = Literal["gelu", "relu2", "swiglu"]
MLPS: tuple[str, ...] = get_args(MLPKind)


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
    qkv_bias: bool = option("bias in the query/key/value projections (GPT-2: true)", False)
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

    # --- Options from the models after GPT-2 (all off by default: the default is GPT-2) ---
    # RoPE (Su et al. 2021, RoFormer): rotate each head's queries and keys by angles that grow
    # with position, so a query-key score depends only on their distance; no position table.
    rope_base: float = option("RoPE's base: the longest wavelength is 2 pi x this", 10000.0)
    # RMSNorm (Zhang & Sennrich 2019): scale by the root mean square, no mean, no shift;
    # cheaper than LayerNorm and just as good in the models since (LLaMA, the speedrun).
    norm: NormKind = option("layernorm (GPT-2) or rmsnorm", "layernorm")
    # The MLP's activation: GPT-2's GELU; ReLU squared (So et al. 2021, Primer; the speedrun);
    # SwiGLU (Shazeer 2020; LLaMA), a gated unit with a third matrix, so its hidden width is
    # 2/3 of 4 x emb_dim (rounded up to a multiple of 64) to keep the parameter count.
    mlp: MLPKind = option("MLP activation: gelu (GPT-2), relu2 or swiglu", "gelu")
    mlp_hidden: int | None = option(
        "MLP hidden width (default: 4 x emb_dim; swiglu: 8/3 x emb_dim, rounded up)", None
    )
    # QK-norm (Dehghani et al. 2023; OLMo 2, the speedrun): RMSNorm on each head's queries and
    # keys, which bounds the attention logits and steadies training at high learning rates.
    qk_norm: bool = option("RMSNorm on each head's queries and keys", False)
    # nanoGPT's `bias`: false drops every bias (attention output, MLP) and the norms' shift.
    bias: bool = option(
        "biases in the attention output and MLP layers and shifts in the norms (GPT-2: true)",
        True,
    )
    # Grouped-query attention (Ainslie et al. 2023): several query heads share one key/value
    # head, so the KV cache (and its memory traffic when decoding) shrinks by n_heads / this.
    n_kv_heads: int | None = option(
        "key/value heads (grouped-query attention; default n_heads, plain multi-head)",
        None,
        aliases=("n_kv_head", "num_key_value_heads"),
    )
    # Start each block's two output projections at zero (the speedrun): every block begins
    # as the identity on the residual stream and grows from there.
    zero_init_proj: bool = option("zero-initialise attention and MLP output projections", False)
    # Gemma 2's soft cap: logits = cap x tanh(logits / cap) keeps them within +-cap.
    logit_softcap: float | None = option("cap the output logits smoothly at +-this", None)

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
            ("norm", NORMS),
            ("mlp", MLPS),
        ):
            if getattr(self, name) not in allowed:
                raise ConfigError(one_of(name, getattr(self, name), allowed))
        if self.n_kv_heads is not None and (
            self.n_kv_heads < 1 or self.n_heads % self.n_kv_heads != 0
        ):
            divisors = [d for d in range(1, self.n_heads + 1) if self.n_heads % d == 0]
            raise ConfigError(
                f"n_kv_heads={self.n_kv_heads}: must divide n_heads={self.n_heads} (each "
                f"key/value head serves a group of query heads); one of {divisors}"
            )
        if self.pos_encoding == "rope" and self.head_dim % 2 != 0:
            raise ConfigError(
                f"pos_encoding='rope' rotates pairs of dimensions, so the head size "
                f"emb_dim / n_heads = {self.head_dim} must be even"
            )
        if not self.rope_base > 1:
            raise ConfigError(f"rope_base={self.rope_base}: must be > 1")
        if self.mlp_hidden is not None and self.mlp_hidden < 1:
            raise ConfigError(f"mlp_hidden={self.mlp_hidden}: must be >= 1")
        if self.logit_softcap is not None and not self.logit_softcap > 0:
            raise ConfigError(f"logit_softcap={self.logit_softcap}: must be > 0")
        if self.qkv_bias and not self.bias:
            raise ConfigError(
                "qkv_bias=true with bias=false: bias=false drops every bias; set qkv_bias=false"
            )
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

    @property
    def kv_heads(self) -> int:
        """Key/value heads: ``n_kv_heads``, or ``n_heads`` for plain multi-head attention."""
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def hidden_dim(self) -> int:
        """The MLP's hidden width: ``mlp_hidden``, else 4 x emb_dim, and for SwiGLU two
        thirds of that (its third matrix then keeps the parameter count), rounded up to a
        multiple of 64 for fast matmuls (of 8 below 1024, where 64 would add too much)."""
        if self.mlp_hidden is not None:
            return self.mlp_hidden
        if self.mlp == "swiglu":
            width = 8 * self.emb_dim // 3
            multiple = 64 if width >= 1024 else 8
            return -(-width // multiple) * multiple
        return 4 * self.emb_dim

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
