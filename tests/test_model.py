import dataclasses
import math

import pytest
import torch

from scratchgpt.config import GPTConfig, preset
from scratchgpt.model import (
    GPTModel,
    explicit_attention,
    gelu_formula,
    layer_norm_formula,
    lm_loss,
    num_parameters,
    sdpa_attention,
)
from scratchgpt.model.layers import GELU, LayerNorm

from .test_config import GPT_CONFIG_124M


def _meta_count(cfg: GPTConfig) -> int:
    with torch.device("meta"):
        return num_parameters(GPTModel(cfg))


def test_seed_parameter_counts():
    cfg = GPTConfig.from_dict(GPT_CONFIG_124M)
    assert _meta_count(cfg) == 163_009_536  # seed 003: untied output head
    assert _meta_count(dataclasses.replace(cfg, tie_weights=True)) == 124_412_160
    assert _meta_count(preset("gpt2-124M")) == 124_439_808  # tied, with QKV bias


@pytest.mark.parametrize(
    ("name", "approx"), [("small", 1.6e6), ("default", 87e6), ("large", 350e6)]
)
def test_seed_002_sizes(name, approx):
    assert abs(_meta_count(preset(name)) - approx) / approx < 0.06


@pytest.mark.parametrize("T", [1, 17, 64])
@pytest.mark.parametrize("tie", [True, False])
def test_explicit_equals_sdpa(T, tie):  # noqa: N803 (T is the sequence length)
    cfg = preset("tiny", qkv_bias=True, tie_weights=tie, drop_rate=0.1)
    explicit = GPTModel(dataclasses.replace(cfg, attn_impl="explicit")).eval()
    fused = GPTModel(dataclasses.replace(cfg, attn_impl="sdpa")).eval()
    fused.load_state_dict(explicit.state_dict())
    sd1, sd2 = explicit.state_dict(), fused.state_dict()
    assert sd1.keys() == sd2.keys()
    assert all(torch.equal(sd1[k], sd2[k]) for k in sd1)
    idx = torch.randint(0, cfg.vocab_size, (3, T))
    with torch.no_grad():
        torch.testing.assert_close(explicit(idx), fused(idx), atol=1e-5, rtol=1e-5)


def test_attention_functions_agree_with_an_explicit_mask():
    q, k, v = (torch.randn(2, 3, 5, 8) for _ in range(3))
    mask = torch.rand(5, 5) > 0.3
    mask[:, 0] = True  # every query sees at least one key
    out1 = explicit_attention(q, k, v, mask=mask, dropout_p=0.0)
    out2 = sdpa_attention(q, k, v, mask=mask, dropout_p=0.0)
    torch.testing.assert_close(out1, out2, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl", ["explicit", "sdpa"])
def test_causality(impl):
    cfg = preset("tiny", attn_impl=impl)
    model = GPTModel(cfg).eval()
    idx = torch.randint(0, cfg.vocab_size, (2, 40))
    t = 23
    changed = idx.clone()
    changed[:, t + 1 :] = torch.randint(0, cfg.vocab_size, (2, 40 - t - 1))
    with torch.no_grad():
        a, b = model(idx), model(changed)
    assert torch.equal(a[:, : t + 1], b[:, : t + 1])
    assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :])


def test_output_shape_and_initial_loss():
    cfg = preset("tiny", vocab_size=500)
    model = GPTModel(cfg).eval()
    idx = torch.randint(0, 500, (4, 32))
    logits = model(idx)
    assert logits.shape == (4, 32, 500)
    loss = lm_loss(logits, torch.randint(0, 500, (4, 32)))
    assert abs(loss.item() - math.log(500)) < 0.1


def test_too_long_input_is_a_clear_error():
    model = GPTModel(preset("tiny"))
    with pytest.raises(ValueError, match="exceeds context_length=64"):
        model(torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(ValueError, match="batch, seq_len"):
        model(torch.zeros(65, dtype=torch.long))


def test_tied_head_shares_the_embedding():
    model = GPTModel(preset("tiny"))
    assert model.out_head.weight is model.tok_emb.weight
    untied = GPTModel(preset("tiny", tie_weights=False))
    assert untied.out_head.weight is not untied.tok_emb.weight


def test_fused_layers_equal_their_formulas():
    x = torch.randn(3, 7, 16) * 3 + 1
    ln = LayerNorm(16)
    with torch.no_grad():
        ln.scale.uniform_(0.5, 1.5)
        ln.shift.uniform_(-1, 1)
    torch.testing.assert_close(ln(x), layer_norm_formula(x, ln.scale, ln.shift, ln.eps))
    torch.testing.assert_close(GELU()(x), gelu_formula(x))
    normed = layer_norm_formula(x, torch.ones(16), torch.zeros(16), 1e-5)
    assert normed.mean(-1).abs().max() < 1e-5
    assert (normed.var(-1, unbiased=False) - 1).abs().max() < 1e-3


def test_tiny_model_overfits_one_batch():
    torch.manual_seed(0)
    cfg = preset("tiny", vocab_size=64)
    model = GPTModel(cfg)
    x = torch.randint(0, 64, (4, 32))
    y = torch.roll(x, -1, dims=1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = lm_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1


def test_init_gpt2_or_torch_defaults():
    cfg = preset("tiny", n_layers=4)
    torch.manual_seed(0)
    gpt2 = GPTModel(cfg)
    torch.manual_seed(0)
    book = GPTModel(dataclasses.replace(cfg, init="torch"))
    # GPT-2: N(0, 0.02), residual projections 0.02 / sqrt(2 * n_layers)
    assert abs(gpt2.tok_emb.weight.std().item() - 0.02) < 0.002
    out_proj = gpt2.trf_blocks[0].att.out_proj.weight
    assert abs(out_proj.std().item() - 0.02 / math.sqrt(8)) < 0.001
    # PyTorch's defaults: embeddings N(0, 1), Linear uniform in +-1/sqrt(fan_in)
    assert abs(book.tok_emb.weight.std().item() - 1.0) < 0.05
    fc = book.trf_blocks[0].ff.layers[0].weight
    assert fc.abs().max().item() <= 1 / math.sqrt(cfg.emb_dim)
    assert abs(fc.std().item() - 1 / math.sqrt(3 * cfg.emb_dim)) < 0.01
    with pytest.raises(ValueError, match=r"init='gtp2'.*did you mean 'gpt2'"):
        dataclasses.replace(cfg, init="gtp2")
