"""Positional encodings: the sinusoid's properties, and the config switch inside GPTModel."""

import json
import math

import pytest
import torch

from scratchgpt.checkpoint import load_checkpoint, read_checkpoint_info, save_checkpoint
from scratchgpt.config import ConfigError, GPTConfig, preset
from scratchgpt.generation import generate, left_pad
from scratchgpt.model import (
    GPTModel,
    SinusoidalPositionalEncoding,
    num_parameters,
    similarity_by_distance,
    sinusoidal_encoding,
    sinusoidal_shift_matrix,
    sinusoidal_table,
)
from scratchgpt.tokenizers import CharTokenizer


def test_table_follows_the_papers_formula():
    pe = sinusoidal_table(50, 16)
    assert pe.shape == (50, 16)
    for pos in (0, 1, 7, 49):
        for i in range(8):
            angle = pos / 10000 ** (2 * i / 16)
            assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-5)
            assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)


def test_values_are_bounded_and_each_pair_is_a_unit_vector():
    pe = sinusoidal_table(2048, 64)
    assert pe.abs().max() <= 1.0
    pairs = pe.view(2048, 32, 2)  # (T, C) -> (T, C/2, 2): each (sin, cos) pair
    torch.testing.assert_close(pairs.norm(dim=-1), torch.ones(2048, 32))
    # so every position's vector has the same length: sqrt(C / 2)
    torch.testing.assert_close(pe.norm(dim=-1), torch.full((2048,), math.sqrt(32)))


@pytest.mark.parametrize("k", [1, 3, 17])
def test_a_fixed_linear_map_takes_pe_pos_to_pe_pos_plus_k(k):
    T, C = 200, 32
    pe = sinusoidal_table(T + k, C).double()
    m = sinusoidal_shift_matrix(k, C).double()
    # The same matrix for every position...
    torch.testing.assert_close(pe[:T] @ m.T, pe[k:], atol=2e-5, rtol=0)
    # ...and it is a rotation (orthogonal), not just any map.
    torch.testing.assert_close(m @ m.T, torch.eye(C, dtype=torch.float64), atol=1e-6, rtol=0)
    # Independently of our matrix: the best linear fit from PE(pos) to PE(pos + k) over all
    # positions leaves no residual, i.e. such a map exists.
    fit = torch.linalg.lstsq(pe[:T], pe[k:]).solution  # (C, C)
    assert (pe[:T] @ fit - pe[k:]).abs().max() < 1e-4


def test_dot_product_depends_on_distance_only():
    pe = sinusoidal_table(300, 32)
    for d in (0, 1, 5, 40):
        dots = (pe[:-50] * pe[d : d + 250]).sum(-1)  # PE(p) . PE(p + d) for 250 values of p
        assert dots.std() < 1e-3
    curve = similarity_by_distance(pe)
    assert curve[0] == pytest.approx(1.0) and curve[1] > curve[10]


def test_any_position_shape():
    enc = SinusoidalPositionalEncoding(8)
    assert list(enc.parameters()) == [] and list(enc.buffers()) == []
    pos = torch.tensor([[0, 1, 2], [5, 6, 7]])  # (B, T) per-row positions
    out = enc(pos)
    assert out.shape == (2, 3, 8)
    torch.testing.assert_close(out[1], sinusoidal_table(8, 8)[5:8])
    with pytest.raises(ValueError, match="even"):
        sinusoidal_encoding(pos, 7)


def test_config_field_validation_and_old_configs():
    assert GPTConfig().pos_encoding == "learned"
    with pytest.raises(ConfigError, match=r"pos_encoding='sinusoid'.*sinusoidal"):
        GPTConfig(pos_encoding="sinusoid")
    with pytest.raises(ConfigError, match="must be even"):
        preset("tiny", emb_dim=33, n_heads=3, pos_encoding="sinusoidal")
    old = preset("tiny").to_dict()
    del old["pos_encoding"]  # a config saved before the field existed
    assert GPTConfig.from_dict(old).pos_encoding == "learned"


def test_sinusoidal_model_has_no_position_parameters():
    learned = GPTModel(preset("tiny"))
    fixed = GPTModel(preset("tiny", pos_encoding="sinusoidal"))
    assert "pos_emb.weight" in learned.state_dict()
    assert not any(k.startswith("pos_emb") for k in fixed.state_dict())
    assert num_parameters(learned) - num_parameters(fixed) == 64 * 32  # context x emb_dim
    with torch.device("meta"):  # how checkpoints are loaded: nothing left to materialise
        meta = GPTModel(preset("tiny", pos_encoding="sinusoidal"))
    assert [n for n, b in meta.named_buffers()] == []


def test_position_changes_the_output():
    """Without positions, attention is order-blind; with the sinusoid, order matters."""
    model = GPTModel(preset("tiny", pos_encoding="sinusoidal")).eval()
    idx = torch.tensor([[3, 4, 5, 6]])
    with torch.no_grad():
        a = model(idx)[0, -1]
        b = model(idx.flip(1))[0, -1]
    assert not torch.allclose(a, b)


def test_checkpoint_round_trip_keeps_the_field(tmp_path):
    tok = CharTokenizer.from_text("abcdefgh")
    model = GPTModel(preset("tiny", vocab_size=8, pos_encoding="sinusoidal")).eval()
    save_checkpoint(tmp_path / "ckpt", model, tok)
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["model"]["pos_encoding"] == (
        "sinusoidal"
    )
    loaded, _ = load_checkpoint(tmp_path / "ckpt")
    assert loaded.cfg.pos_encoding == "sinusoidal"
    idx = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(idx), model(idx))
    # A checkpoint written before the field existed loads as learned.
    learned = GPTModel(preset("tiny", vocab_size=8))
    save_checkpoint(tmp_path / "old", learned, tok)
    info = json.loads((tmp_path / "old" / "config.json").read_text())
    del info["model"]["pos_encoding"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(info))
    assert read_checkpoint_info(tmp_path / "old")[0].pos_encoding == "learned"
    loaded, _ = load_checkpoint(tmp_path / "old")
    with torch.no_grad():
        torch.testing.assert_close(loaded(idx), learned.eval()(idx))


@pytest.mark.parametrize("pos_encoding", ["learned", "sinusoidal"])
def test_kv_cache_and_left_padding_work_with_both(pos_encoding):
    model = GPTModel(preset("tiny", context_length=32, pos_encoding=pos_encoding)).eval()
    idx = torch.randint(0, 256, (1, 5))
    cached = generate(model, idx, 40, temperature=0, use_cache=True)  # slides past 32 tokens
    assert torch.equal(cached, generate(model, idx, 40, temperature=0, use_cache=False))
    # Left-padded rows count their positions from their first real token: (B, T) positions.
    prompts = [[5, 6, 7, 8, 9], [1, 2], [200]]
    padded, offsets = left_pad(prompts, pad_id=0)
    for use_cache in (True, False):
        batched = generate(
            model, padded, 12, temperature=0, pad_offset=offsets, use_cache=use_cache
        )
        for row, p in enumerate(prompts):
            alone = generate(model, torch.tensor([p]), 12, temperature=0)
            assert batched[row, 5:].tolist() == alone[0, len(p) :].tolist()
