"""State-dict keys and shapes, pinned: every checkpoint and classifier saved so far must load.

The expected lists were computed on the code before the layers took plain sizes (when they
still read a whole GPTConfig) and written out here; any rename, reorder or new parameter
in the GPT or the encoder shows up as a failure.
"""

import json

import pytest
import torch

from scratchgpt.classifier import TextClassifier, build_vocabulary
from scratchgpt.config import ConfigError, GPTConfig
from scratchgpt.config.encoder import OLD_KEYS, EncoderConfig
from scratchgpt.model import FeedForward, GPTModel, MultiHeadAttention, TransformerBlock
from scratchgpt.model.encoder import EncoderBlock, TransformerClassifier
from scratchgpt.model.positional import SinusoidalPositionalEncoding, positional_encoding

# A GPT with 2 layers, QKV bias, an untied head and a learned position table (C=8, V=10, T=4).
GPT_KEYS = [
    ("tok_emb.weight", (10, 8)),
    ("pos_emb.weight", (4, 8)),
    ("trf_blocks.0.norm1.scale", (8,)),
    ("trf_blocks.0.norm1.shift", (8,)),
    ("trf_blocks.0.att.W_query.weight", (8, 8)),
    ("trf_blocks.0.att.W_query.bias", (8,)),
    ("trf_blocks.0.att.W_key.weight", (8, 8)),
    ("trf_blocks.0.att.W_key.bias", (8,)),
    ("trf_blocks.0.att.W_value.weight", (8, 8)),
    ("trf_blocks.0.att.W_value.bias", (8,)),
    ("trf_blocks.0.att.out_proj.weight", (8, 8)),
    ("trf_blocks.0.att.out_proj.bias", (8,)),
    ("trf_blocks.0.norm2.scale", (8,)),
    ("trf_blocks.0.norm2.shift", (8,)),
    ("trf_blocks.0.ff.layers.0.weight", (32, 8)),
    ("trf_blocks.0.ff.layers.0.bias", (32,)),
    ("trf_blocks.0.ff.layers.2.weight", (8, 32)),
    ("trf_blocks.0.ff.layers.2.bias", (8,)),
    ("trf_blocks.1.norm1.scale", (8,)),
    ("trf_blocks.1.norm1.shift", (8,)),
    ("trf_blocks.1.att.W_query.weight", (8, 8)),
    ("trf_blocks.1.att.W_query.bias", (8,)),
    ("trf_blocks.1.att.W_key.weight", (8, 8)),
    ("trf_blocks.1.att.W_key.bias", (8,)),
    ("trf_blocks.1.att.W_value.weight", (8, 8)),
    ("trf_blocks.1.att.W_value.bias", (8,)),
    ("trf_blocks.1.att.out_proj.weight", (8, 8)),
    ("trf_blocks.1.att.out_proj.bias", (8,)),
    ("trf_blocks.1.norm2.scale", (8,)),
    ("trf_blocks.1.norm2.shift", (8,)),
    ("trf_blocks.1.ff.layers.0.weight", (32, 8)),
    ("trf_blocks.1.ff.layers.0.bias", (32,)),
    ("trf_blocks.1.ff.layers.2.weight", (8, 32)),
    ("trf_blocks.1.ff.layers.2.bias", (8,)),
    ("final_norm.scale", (8,)),
    ("final_norm.shift", (8,)),
    ("out_head.weight", (10, 8)),
]

# One layer, no QKV bias, tied head, sinusoidal positions (no parameter), vocab padded to 16.
GPT_TIED_SINUSOIDAL_KEYS = [
    ("tok_emb.weight", (16, 8)),
    ("trf_blocks.0.norm1.scale", (8,)),
    ("trf_blocks.0.norm1.shift", (8,)),
    ("trf_blocks.0.att.W_query.weight", (8, 8)),
    ("trf_blocks.0.att.W_key.weight", (8, 8)),
    ("trf_blocks.0.att.W_value.weight", (8, 8)),
    ("trf_blocks.0.att.out_proj.weight", (8, 8)),
    ("trf_blocks.0.att.out_proj.bias", (8,)),
    ("trf_blocks.0.norm2.scale", (8,)),
    ("trf_blocks.0.norm2.shift", (8,)),
    ("trf_blocks.0.ff.layers.0.weight", (32, 8)),
    ("trf_blocks.0.ff.layers.0.bias", (32,)),
    ("trf_blocks.0.ff.layers.2.weight", (8, 32)),
    ("trf_blocks.0.ff.layers.2.bias", (8,)),
    ("final_norm.scale", (8,)),
    ("final_norm.shift", (8,)),
    ("out_head.weight", (16, 8)),
]


# C=8, hidden 12, 2 layers, 3 classes, a learned table of 5 positions, V=10.
CLASSIFIER_KEYS = [
    ("encoder.tok_emb.weight", (10, 8)),
    ("encoder.pos_emb.weight", (5, 8)),
    ("encoder.blocks.0.att.W_query.weight", (8, 8)),
    ("encoder.blocks.0.att.W_query.bias", (8,)),
    ("encoder.blocks.0.att.W_key.weight", (8, 8)),
    ("encoder.blocks.0.att.W_key.bias", (8,)),
    ("encoder.blocks.0.att.W_value.weight", (8, 8)),
    ("encoder.blocks.0.att.W_value.bias", (8,)),
    ("encoder.blocks.0.att.out_proj.weight", (8, 8)),
    ("encoder.blocks.0.att.out_proj.bias", (8,)),
    ("encoder.blocks.0.norm1.scale", (8,)),
    ("encoder.blocks.0.norm1.shift", (8,)),
    ("encoder.blocks.0.ff.layers.0.weight", (12, 8)),
    ("encoder.blocks.0.ff.layers.0.bias", (12,)),
    ("encoder.blocks.0.ff.layers.2.weight", (8, 12)),
    ("encoder.blocks.0.ff.layers.2.bias", (8,)),
    ("encoder.blocks.0.norm2.scale", (8,)),
    ("encoder.blocks.0.norm2.shift", (8,)),
    ("encoder.blocks.1.att.W_query.weight", (8, 8)),
    ("encoder.blocks.1.att.W_query.bias", (8,)),
    ("encoder.blocks.1.att.W_key.weight", (8, 8)),
    ("encoder.blocks.1.att.W_key.bias", (8,)),
    ("encoder.blocks.1.att.W_value.weight", (8, 8)),
    ("encoder.blocks.1.att.W_value.bias", (8,)),
    ("encoder.blocks.1.att.out_proj.weight", (8, 8)),
    ("encoder.blocks.1.att.out_proj.bias", (8,)),
    ("encoder.blocks.1.norm1.scale", (8,)),
    ("encoder.blocks.1.norm1.shift", (8,)),
    ("encoder.blocks.1.ff.layers.0.weight", (12, 8)),
    ("encoder.blocks.1.ff.layers.0.bias", (12,)),
    ("encoder.blocks.1.ff.layers.2.weight", (8, 12)),
    ("encoder.blocks.1.ff.layers.2.bias", (8,)),
    ("encoder.blocks.1.norm2.scale", (8,)),
    ("encoder.blocks.1.norm2.shift", (8,)),
    ("head.weight", (3, 8)),
    ("head.bias", (3,)),
]


def _keys(model: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def test_gpt_state_dict_is_unchanged():
    cfg = GPTConfig(
        vocab_size=10, context_length=4, emb_dim=8, n_heads=2, n_layers=2, qkv_bias=True
    )
    assert _keys(GPTModel(cfg)) == GPT_KEYS
    tied = GPTConfig(
        vocab_size=10,
        context_length=4,
        emb_dim=8,
        n_heads=2,
        n_layers=1,
        tie_weights=True,
        pos_encoding="sinusoidal",
        vocab_multiple=16,
    )
    assert _keys(GPTModel(tied)) == GPT_TIED_SINUSOIDAL_KEYS


def test_classifier_state_dict_is_unchanged():
    cfg = EncoderConfig(
        vocab_size=10,
        emb_dim=8,
        n_heads=2,
        hidden_dim=12,
        n_layers=2,
        num_classes=3,
        context_length=5,
        pos_encoding="learned",
    )
    model = TransformerClassifier(cfg)
    assert _keys(model) == CLASSIFIER_KEYS
    sinusoidal = TransformerClassifier(
        EncoderConfig(**{**cfg.to_dict(), "n_layers": 1, "pos_encoding": "sinusoidal"})
    )
    expected = [kv for kv in CLASSIFIER_KEYS if "pos_emb" not in kv[0] and ".1." not in kv[0]]
    assert _keys(sinusoidal) == expected


def test_encoder_reuses_the_gpt_layers():
    model = TransformerClassifier(EncoderConfig(vocab_size=10, emb_dim=8, n_heads=2))
    block = model.encoder.blocks[0]
    assert type(block.att) is MultiHeadAttention and type(block.ff) is FeedForward
    assert isinstance(model.encoder.pos_emb, SinusoidalPositionalEncoding)
    assert block.att.W_query.bias is not None  # the original Transformer's QKV biases


def test_layers_take_plain_sizes():
    ff = FeedForward(6)
    assert [tuple(p.shape) for p in ff.parameters()] == [(24, 6), (24,), (6, 24), (6,)]
    assert FeedForward(6, hidden_dim=10).layers[0].out_features == 10
    att = MultiHeadAttention(12, 3, drop_rate=0.2, qkv_bias=True, attn_impl="explicit")
    assert (att.n_heads, att.head_dim, att.dropout_p) == (3, 4, 0.2)
    with pytest.raises(ValueError, match="divisible by n_heads=5"):
        MultiHeadAttention(12, 5)
    with pytest.raises(ValueError, match="did you mean 'sdpa'"):
        MultiHeadAttention(12, 3, attn_impl="spda")  # type: ignore[arg-type]
    block = TransformerBlock(8, 2, hidden_dim=20, ln_eps=1e-6)
    assert block.ff.layers[2].in_features == 20 and block.norm1.eps == 1e-6
    assert block.att.W_key.bias is None  # GPTConfig's default: no QKV bias
    enc = EncoderBlock(8, 2, hidden_dim=20)
    assert enc.ff.layers[0].out_features == 20 and enc.att.W_key.bias is not None
    assert positional_encoding("learned", context_length=7, emb_dim=4).weight.shape == (7, 4)
    assert isinstance(
        positional_encoding("sinusoidal", context_length=7, emb_dim=4),
        SinusoidalPositionalEncoding,
    )
    with pytest.raises(ValueError, match="did you mean 'learned'"):
        positional_encoding("learnt", context_length=7, emb_dim=4)  # type: ignore[arg-type]


OLD_CONFIG = {  # model config of a classifier saved before the fields took the GPT's names
    "vocab_size": 45,
    "d_model": 16,
    "num_heads": 4,
    "d_ff": 128,
    "num_layers": 1,
    "num_classes": 2,
    "max_len": 64,
    "dropout": 0.1,
    "pos_encoding": "sinusoidal",
    "pooling": "mean",
    "attn_impl": "sdpa",
    "ln_eps": 1e-05,
}


def test_encoder_config_reads_the_old_key_names():
    cfg = EncoderConfig.from_dict(OLD_CONFIG)
    assert (cfg.emb_dim, cfg.n_heads, cfg.hidden_dim, cfg.n_layers) == (16, 4, 128, 1)
    assert (cfg.context_length, cfg.drop_rate) == (64, 0.1)
    assert set(OLD_KEYS) == {"d_model", "num_heads", "d_ff", "num_layers", "max_len", "dropout"}
    assert not set(OLD_KEYS) & set(cfg.to_dict())  # saved under the new names only
    assert EncoderConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="'d_model' / 'emb_dim'"):
        EncoderConfig.from_dict({"vocab_size": 10, "d_model": 8, "emb_dim": 8})
    with pytest.raises(ConfigError, match=r"model\.n_head \(did you mean 'n_heads'\?\)"):
        EncoderConfig.from_dict({"vocab_size": 10, "n_head": 4})
    with pytest.raises(ConfigError, match="must be a mapping"):
        EncoderConfig.from_dict([("vocab_size", 10)])  # type: ignore[arg-type]


def test_a_classifier_saved_with_the_old_names_loads(tmp_path):
    tokenizer = build_vocabulary(["good film", "bad film"])
    cfg = EncoderConfig.from_dict({**OLD_CONFIG, "vocab_size": tokenizer.vocab_size})
    torch.manual_seed(0)
    saved = TextClassifier(TransformerClassifier(cfg).eval(), tokenizer, ["neg", "pos"])
    saved.save(tmp_path)
    info = json.loads((tmp_path / "config.json").read_text())
    assert info["model"] == cfg.to_dict()
    info["model"] = {**OLD_CONFIG, "vocab_size": tokenizer.vocab_size}  # as written before
    (tmp_path / "config.json").write_text(json.dumps(info))
    loaded = TextClassifier.load(tmp_path)
    assert loaded.model.cfg == cfg
    texts = ["good film", "bad"]
    assert torch.equal(loaded.predict_proba(texts), saved.predict_proba(texts))
