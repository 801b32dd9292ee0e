import json
import math

import pytest

from scratchgpt.config import PRESETS, ConfigError, GPTConfig, load_model_config, preset

# The seeds' dict, verbatim (seed 000 / 003).
GPT_CONFIG_124M = {
    "vocab_size": 50257,
    "context_length": 1024,
    "emb_dim": 768,
    "n_heads": 12,
    "n_layers": 12,
    "drop_rate": 0.1,
    "qkv_bias": False,
}


def test_from_dict_accepts_the_seed_config_verbatim():
    cfg = GPTConfig.from_dict(GPT_CONFIG_124M)
    assert cfg.emb_dim == 768 and cfg.head_dim == 64
    assert cfg.tie_weights is False and cfg.qkv_bias is False
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg


def test_unknown_keys_are_named_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"'n_layer'.*did you mean 'n_layers'"):
        GPTConfig.from_dict({**GPT_CONFIG_124M, "n_layer": 12})


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"emb_dim": 770}, ["emb_dim=770", "divisible by n_heads=12"]),
        ({"n_layers": 0}, ["n_layers=0", ">= 1"]),
        ({"vocab_size": 1.5}, ["vocab_size=1.5", "integer"]),
        ({"drop_rate": 1.0}, ["drop_rate=1.0", "[0, 1)"]),
        ({"attn_impl": "flash"}, ["attn_impl='flash'", "explicit, sdpa"]),
        ({"qkv_bias": "yes"}, ["qkv_bias='yes'", "true or false"]),
        ({"ln_eps": 0}, ["ln_eps=0", "positive"]),
    ],
)
def test_errors_name_field_value_and_what_is_allowed(change, words):
    with pytest.raises(ConfigError) as info:
        GPTConfig(**change)
    for word in words:
        assert word in str(info.value)


def test_presets_by_exact_name():
    assert preset("gpt2-124M").tie_weights and preset("gpt2-124M").qkv_bias
    assert (preset("gpt2-1558M").emb_dim, preset("gpt2-1558M").n_layers) == (1600, 48)
    assert preset("tiny", context_length=32).context_length == 32
    with pytest.raises(ConfigError) as info:
        preset("gpt2")  # no substring matching: the exact name is gpt2-124M
    for name in PRESETS:
        assert name in str(info.value)


def test_config_files_json_and_yaml(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps(GPT_CONFIG_124M))
    assert load_model_config(tmp_path / "c.json") == GPTConfig.from_dict(GPT_CONFIG_124M)
    (tmp_path / "c.yaml").write_text("model:\n  preset: tiny\n  n_layers: 3\n")
    assert load_model_config(tmp_path / "c.yaml") == preset("tiny", n_layers=3)
    (tmp_path / "bad.yaml").write_text("emb_dims: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*emb_dims"):
        load_model_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_model_config(tmp_path / "missing.yaml")


def test_head_dim_and_frozen():
    cfg = preset("tiny")
    assert cfg.head_dim * cfg.n_heads == cfg.emb_dim
    with pytest.raises(AttributeError):
        cfg.emb_dim = 64  # type: ignore[misc]
    assert math.isclose(cfg.ln_eps, 1e-5)
