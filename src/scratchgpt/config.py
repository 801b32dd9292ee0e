"""Model configuration: one typed, validated dataclass and a table of named presets.

The field names follow the book "Build a Large Language Model (From Scratch)" (Raschka, ch. 4:
``vocab_size``, ``context_length``, ``emb_dim``, ``n_heads``, ``n_layers``, ``drop_rate``,
``qkv_bias``), so the seeds' ``GPT_CONFIG_124M`` dict loads verbatim with
:meth:`GPTConfig.from_dict`. The config is plain data: it is saved as JSON next to every
checkpoint and the model is rebuilt from it, never from code.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, TypeVar

_T = TypeVar("_T")

AttentionImpl = Literal["explicit", "sdpa"]
ATTENTION_IMPLS: tuple[str, ...] = ("explicit", "sdpa")
PosEncoding = Literal["learned", "sinusoidal"]
POS_ENCODINGS: tuple[str, ...] = ("learned", "sinusoidal")


class ConfigError(ValueError):
    """A bad configuration value; the message names the field, the value and what is allowed."""


def _nearest(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """A 'did you mean' suffix, so a typo in a key or a name is fixed at a glance."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def strict_from_dict(cls: type[_T], d: Any, *, what: str) -> _T:
    """Build the dataclass ``cls`` from a plain mapping; an unknown key is an error naming it."""
    if not isinstance(d, dict):
        raise ConfigError(f"a {what} must be a mapping of field to value, got {d!r}")
    known = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    unknown = [k for k in d if k not in known]
    if unknown:
        hints = "; ".join(f"{k!r}{_nearest(k, known)}" for k in unknown)
        raise ConfigError(f"unknown {what} key(s): {hints}. Valid keys: {', '.join(known)}")
    return cls(**d)


@dataclass(frozen=True)
class GPTConfig:
    """The shape of a GPT model.

    Frozen so a model can never drift from the config it was built from (change a value with
    ``dataclasses.replace``). The defaults are the book's GPT_CONFIG_124M: GPT-2 small's shape
    with an untied output head and no QKV bias; the ``gpt2-*`` presets set both as OpenAI did.
    """

    vocab_size: int = 50257
    context_length: int = 1024
    emb_dim: int = 768
    n_heads: int = 12
    n_layers: int = 12
    drop_rate: float = 0.1
    qkv_bias: bool = False
    # Share the token embedding with the output head (GPT-2 does; the book's model does not).
    tie_weights: bool = False
    # "explicit": the textbook QK^T/sqrt(d) -> mask -> softmax -> V, one step per line.
    # "sdpa": torch's fused scaled_dot_product_attention (flash attention on a GPU).
    attn_impl: AttentionImpl = "sdpa"
    ln_eps: float = 1e-5
    # "learned": a trained vector per position (GPT-2). "sinusoidal": the fixed sin/cos waves
    # of the original Transformer (Vaswani et al. 2017, §3.5), no parameters. Configs saved
    # before this field existed load as "learned", which is what they were.
    pos_encoding: PosEncoding = "learned"

    def __post_init__(self) -> None:
        for name, minimum in (
            ("vocab_size", 1),
            ("context_length", 1),
            ("emb_dim", 1),
            ("n_heads", 1),
            ("n_layers", 1),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name}={value!r}: must be an integer >= {minimum}")
            if value < minimum:
                raise ConfigError(f"{name}={value}: must be an integer >= {minimum}")
        if self.emb_dim % self.n_heads != 0:
            raise ConfigError(
                f"emb_dim={self.emb_dim}: must be divisible by n_heads={self.n_heads} "
                f"(each head gets emb_dim / n_heads dimensions); try emb_dim="
                f"{(self.emb_dim // self.n_heads + 1) * self.n_heads} or an n_heads dividing "
                f"{self.emb_dim}"
            )
        if isinstance(self.drop_rate, bool) or not isinstance(self.drop_rate, (int, float)):
            raise ConfigError(f"drop_rate={self.drop_rate!r}: must be a number in [0, 1)")
        if not 0.0 <= self.drop_rate < 1.0:
            raise ConfigError(f"drop_rate={self.drop_rate}: must be in [0, 1)")
        for name in ("qkv_bias", "tie_weights"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}={getattr(self, name)!r}: must be true or false")
        if self.attn_impl not in ATTENTION_IMPLS:
            raise ConfigError(
                f"attn_impl={self.attn_impl!r}: must be one of {', '.join(ATTENTION_IMPLS)}"
            )
        if isinstance(self.ln_eps, bool) or not isinstance(self.ln_eps, (int, float)):
            raise ConfigError(f"ln_eps={self.ln_eps!r}: must be a positive number")
        if not self.ln_eps > 0:
            raise ConfigError(f"ln_eps={self.ln_eps}: must be a positive number")
        if self.pos_encoding not in POS_ENCODINGS:
            raise ConfigError(
                f"pos_encoding={self.pos_encoding!r}: must be one of {', '.join(POS_ENCODINGS)}"
                f"{_nearest(str(self.pos_encoding), POS_ENCODINGS)}"
            )
        if self.pos_encoding == "sinusoidal" and self.emb_dim % 2 != 0:
            raise ConfigError(
                f"emb_dim={self.emb_dim}: pos_encoding='sinusoidal' pairs the dimensions into "
                "(sin, cos) waves, so emb_dim must be even; try emb_dim="
                f"{self.emb_dim + self.n_heads}"
            )

    @property
    def head_dim(self) -> int:
        """Dimensions per attention head (hs in the shape comments)."""
        return self.emb_dim // self.n_heads

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GPTConfig:
        """Build from a plain dict (the seeds' GPT_CONFIG_124M loads verbatim).

        Unknown keys are an error rather than ignored: a misspelt ``n_layer`` silently falling
        back to the default would train a different model than the one asked for.
        """
        return strict_from_dict(cls, d, what="model config")

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
    # The built-in `scratchgpt train` run: a character-level model sized so that ~800 steps
    # fit in about five minutes on two CPU cores.
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


def preset(name: str, **overrides: Any) -> GPTConfig:
    """The preset called exactly ``name``, with ``overrides`` applied.

    Names are matched exactly (no substring guessing): ``"gpt2"`` is not ``"gpt2-124M"``.
    """
    if name not in PRESETS:
        raise ConfigError(
            f"unknown preset {name!r}{_nearest(name, list(PRESETS))}. "
            f"Valid presets: {', '.join(PRESETS)}"
        )
    return GPTConfig.from_dict({**PRESETS[name], **overrides})


def load_model_config(path: str | Path) -> GPTConfig:
    """Read a model config from a JSON or YAML file.

    The file is either the bare field mapping (the seeds' GPT_CONFIG_124M) or a run config with
    a ``model:`` section; a ``preset:`` key inside it starts from that preset.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except (json.JSONDecodeError, ValueError) as exc:  # yaml.YAMLError subclasses Exception
        raise ConfigError(f"{path}: not valid JSON/YAML: {exc}") from exc
    except Exception as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        data = data["model"]
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of model fields, got {type(data).__name__}")
    data = dict(data)
    base = data.pop("preset", None)
    try:
        return preset(base, **data) if base is not None else GPTConfig.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
