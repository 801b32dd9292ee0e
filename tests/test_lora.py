"""LoRA: a fresh adapter is the base model, training moves only the adapter, merging is exact,
and the PEFT export gives the same logits in transformers + peft."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from scratchgpt.config import GPTConfig, preset
from scratchgpt.errors import ConfigError
from scratchgpt.lora import (
    TARGET_PRESETS,
    LoRALinear,
    adapter_state,
    apply_lora,
    export_peft,
    has_lora,
    lora_settings,
    lora_targets,
    merge_lora,
    weights_sha256,
)
from scratchgpt.model import GPTModel, lm_loss

SUFFIXES = TARGET_PRESETS["all"]


def tiny_model(**overrides) -> GPTModel:
    """A tiny model with every parameter random (biases and LayerNorms too)."""
    fields = dict(
        vocab_size=64,
        context_length=16,
        emb_dim=32,
        n_heads=4,
        n_layers=2,
        drop_rate=0.0,
        qkv_bias=True,
        tie_weights=True,
    )
    model = GPTModel(GPTConfig(**{**fields, **overrides})).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(1.0 if name.endswith(".scale") else 0.0, 0.1)
    return model


def randomise_b(model: nn.Module) -> None:
    """Give every lora_B random values, so the adapter changes the function."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("lora_B"):
                p.normal_(0.0, 0.1)


def ids(batch: int = 2, seq_len: int = 12) -> torch.Tensor:
    return torch.randint(0, 64, (batch, seq_len))


def test_fresh_adapter_is_the_base_model_and_shares_its_weights():
    model = tiny_model()
    x = ids()
    with torch.no_grad():
        before = model(x)
    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    names = apply_lora(model, rank=4, alpha=8)
    assert names == [n for n in linears if n.startswith("trf_blocks.")]
    assert has_lora(model)
    for name in names:
        lora = model.get_submodule(name)
        assert isinstance(lora, LoRALinear)
        assert lora.weight is linears[name].weight and lora.bias is linears[name].bias
        assert lora.lora_A.shape == (4, lora.in_features)
        assert lora.lora_B.shape == (lora.out_features, 4)
        assert lora.scaling == 2.0 and not lora.lora_B.any() and lora.lora_A.any()
    with torch.no_grad():
        assert torch.equal(model(x), before)
    # Only the adapter trains; the state dict is the base's keys plus lora_A / lora_B.
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"{n}.{ab}" for n in names for ab in ("lora_A", "lora_B")}
    assert set(adapter_state(model)) == trainable
    base_keys = set(GPTModel(model.cfg).state_dict())
    assert set(model.state_dict()) == base_keys | trainable


def test_trainable_parameters_of_gpt2_124m():
    with torch.device("meta"):
        model = GPTModel(preset("gpt2-124M"))
    apply_lora(model, rank=8, alpha=16)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    # Per block r * (in + out) over q, k, v, out_proj (C, C), c_fc (C -> 4C), c_proj (4C -> C):
    # r * (4 * 2C + 2 * 5C) = 18 r C; 12 blocks, r = 8, C = 768.
    assert trainable == 12 * 18 * 8 * 768 == 1_327_104
    assert trainable / sum(p.numel() for p in model.parameters()) < 0.011


def test_training_changes_only_the_adapter():
    model = tiny_model()
    apply_lora(model, rank=2, alpha=4, dropout=0.1)
    model.train()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    adapter = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        x = ids()
        loss = lm_loss(model(x), torch.roll(x, -1, dims=1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], p) for n, p in frozen.items())
    assert all(not torch.equal(params[n], p) for n, p in adapter.items())


def test_merged_model_gives_the_same_logits_and_a_plain_state_dict():
    model = tiny_model()
    plain_keys = list(model.state_dict())
    apply_lora(model, rank=4, alpha=8, targets="all")
    randomise_b(model)
    x = ids()
    with torch.no_grad():
        adapted = model(x)
        base = GPTModel(model.cfg).eval()
        base.load_state_dict(
            {k: v for k, v in model.state_dict().items() if k in plain_keys}, strict=True
        )
        assert not torch.allclose(base(x), adapted, atol=1e-3)  # the adapter does something
    merge_lora(model)
    assert not has_lora(model)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert list(model.state_dict()) == plain_keys
    assert all(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        torch.testing.assert_close(model(x), adapted, rtol=0, atol=1e-5)


def test_merged_linear_is_w_plus_scaled_ba():
    base = nn.Linear(6, 5)
    lora = LoRALinear(base, rank=2, alpha=3)
    with torch.no_grad():
        lora.lora_B.normal_()
    merged = lora.merged()
    expected = base.weight + 1.5 * lora.lora_B @ lora.lora_A
    torch.testing.assert_close(merged.weight, expected)
    assert merged.bias is base.bias and merged.weight is not base.weight
    x = torch.randn(3, 6)
    torch.testing.assert_close(merged(x), lora(x), rtol=0, atol=1e-6)


def test_targets_presets_suffixes_and_patterns():
    model = tiny_model()
    blocks = range(model.cfg.n_layers)
    qv = [f"trf_blocks.{i}.att.{w}" for i in blocks for w in ("W_query", "W_value")]
    assert lora_targets(model, "qv") == qv
    assert lora_targets(model, "att.W_query, att.W_value") == qv
    assert lora_targets(model, "mlp") == [
        f"trf_blocks.{i}.ff.layers.{j}" for i in blocks for j in (0, 2)
    ]
    assert lora_targets(model, "trf_blocks.1.att.*") == [
        f"trf_blocks.1.att.{w}" for w in ("W_query", "W_key", "W_value", "out_proj")
    ]
    assert lora_targets(model, "attn,mlp") == lora_targets(model, "all")
    assert apply_lora(model, rank=2, alpha=2, targets="qv") == qv
    replaced = {n for n, m in model.named_modules() if isinstance(m, LoRALinear)}
    assert replaced == set(qv)
    assert lora_settings(model) == {"rank": 2, "alpha": 2.0, "dropout": 0.0, "targets": qv}


@pytest.mark.parametrize("targets", ["att.W_qury", "qv,nothing.here", "", " , "])
def test_a_target_matching_nothing_is_refused_by_name(targets):
    model = tiny_model()
    with pytest.raises(ConfigError) as info:
        apply_lora(model, rank=2, alpha=2, targets=targets)
    message = str(info.value)
    assert "\n" not in message
    bad = targets.split(",")[-1].strip()
    if bad:
        assert repr(bad) in message and "att.W_query" in message
    assert not has_lora(model) and all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rank": 0}, "rank"),
        ({"rank": -1}, "rank"),
        ({"rank": 2.0}, "rank"),
        ({"rank": True}, "rank"),
        ({"alpha": 0}, "alpha"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
    ],
)
def test_bad_settings_are_refused(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        apply_lora(tiny_model(), **{"rank": 2, "alpha": 4, **kwargs})


def test_applying_twice_is_refused():
    model = tiny_model()
    apply_lora(model, rank=2, alpha=4)
    with pytest.raises(ConfigError, match="already has LoRA"):
        apply_lora(model, rank=2, alpha=4)


def test_weights_sha256_follows_every_element():
    model = tiny_model()
    state = model.state_dict()
    digest = weights_sha256(state)
    assert len(digest) == 64
    clone = {k: v.clone() for k, v in reversed(state.items())}
    assert weights_sha256(clone) == digest  # order of the mapping does not matter
    clone["trf_blocks.1.ff.layers.2.bias"][3] += 1e-6
    assert weights_sha256(clone) != digest
    # Same bytes under another name, or another dtype, is other weights.
    renamed = {k.replace("final_norm", "last_norm"): v for k, v in state.items()}
    assert weights_sha256(renamed) != digest
    assert weights_sha256({k: v.double() for k, v in state.items()}) != digest
    assert weights_sha256({"x": torch.zeros(2, 3, dtype=torch.bfloat16)}) != weights_sha256(
        {"x": torch.zeros(3, 2, dtype=torch.bfloat16)}
    )


def test_export_peft_refuses_a_model_without_lora(tmp_path):
    with pytest.raises(ConfigError, match="no LoRA"):
        export_peft(tiny_model(), tmp_path / "adapter", base_model_name_or_path="base")


@pytest.mark.hf
@pytest.mark.parametrize("targets", ["all", "qv", "att.W_key,mlp"])
def test_peft_export_gives_the_same_logits(tmp_path, targets):
    pytest.importorskip("peft")
    from peft import PeftModel
    from transformers import GPT2LMHeadModel

    from scratchgpt.pretrained import export_hf

    model = tiny_model()
    base_dir = export_hf(model, None, tmp_path / "base")  # the base weights, before LoRA
    apply_lora(model, rank=3, alpha=5, dropout=0.2, targets=targets)
    randomise_b(model)
    out = export_peft(model, tmp_path / "adapter", base_model_name_or_path=str(base_dir))
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["lora_dropout"] == 0.2 and config["r"] == 3

    hf = PeftModel.from_pretrained(GPT2LMHeadModel.from_pretrained(base_dir), out).eval()
    x = ids()
    with torch.no_grad():
        ours = model.eval()(x)
        torch.testing.assert_close(hf(x).logits, ours, rtol=0, atol=1e-5)
        # The adapter is really applied on their side (a base-only load differs).
        plain = GPT2LMHeadModel.from_pretrained(base_dir).eval()
        assert not torch.allclose(plain(x).logits, ours, atol=1e-3)
    # A second export replaces the first (it is a PEFT adapter directory).
    export_peft(model, out, base_model_name_or_path=str(base_dir))
