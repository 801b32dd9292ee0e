"""The parameter-count walkthrough (seed 003) against the real model."""

import pytest
import torch

from scratchgpt.cli import main
from scratchgpt.config import PRESETS, GPTConfig, preset
from scratchgpt.model import GPTModel, num_parameters
from scratchgpt.params import ParamCount, format_breakdown, parameter_breakdown


def _meta_model(cfg: GPTConfig) -> GPTModel:
    with torch.device("meta"):  # shapes only
        return GPTModel(cfg)


def _sums_up(item: ParamCount) -> None:
    if item.parts:
        assert item.count == item.repeat * sum(p.count for p in item.parts), item.name
        for part in item.parts:
            _sums_up(part)


@pytest.mark.parametrize("name", list(PRESETS))
def test_breakdown_sums_to_the_models_count_for_every_preset(name):
    for variant in ({}, {"tie_weights": False, "qkv_bias": True}, {"pos_encoding": "sinusoidal"}):
        cfg = preset(name, **variant)
        breakdown = parameter_breakdown(cfg)
        _sums_up(breakdown)
        assert breakdown.count == num_parameters(_meta_model(cfg)), (name, variant)


def test_seed_003_walkthrough_numbers():
    # The seeds' GPT_CONFIG_124M: untied head, no QKV bias (GPTConfig's defaults).
    b = parameter_breakdown(GPTConfig())
    expected = {
        "token embedding": 38_597_376,
        "position embedding": 786_432,
        "embeddings": 39_383_808,
        "W_query, W_key, W_value": 1_769_472,
        "out_proj": 590_592,
        "multi-head attention": 2_360_064,
        "feed-forward": 4_722_432,
        "layer norms (2 per block)": 3_072,
        "transformer blocks": 85_026_816,
        "final layer norm": 1_536,
        "output head": 38_597_376,
        "total": 163_009_536,
    }
    assert {name: b.find(name).count for name in expected} == expected
    assert b.find("transformer blocks").count // 12 == 7_085_568
    assert parameter_breakdown(preset("gpt2-124M")).count == 124_439_808
    assert parameter_breakdown(preset("gpt2-124M")).find("output head").count == 0  # tied


def test_each_part_matches_its_modules():
    cfg = preset("tiny", tie_weights=False, qkv_bias=True, n_layers=3)
    model = GPTModel(cfg)
    b = parameter_breakdown(cfg)

    def n(*modules):
        return sum(p.numel() for m in modules for p in m.parameters())

    block = model.trf_blocks[0]
    assert b.find("embeddings").count == n(model.tok_emb, model.pos_emb)
    assert b.find("multi-head attention").count == n(block.att)
    assert b.find("feed-forward").count == n(block.ff)
    assert b.find("layer norms (2 per block)").count == n(block.norm1, block.norm2)
    assert b.find("transformer blocks").count == n(*model.trf_blocks)
    assert b.find("final layer norm").count == n(model.final_norm)
    assert b.find("output head").count == n(model.out_head)
    with pytest.raises(KeyError):
        b.find("nothing")


def test_format_shows_formulas_and_the_total():
    text = format_breakdown(parameter_breakdown(GPTConfig()))
    assert "vocab_size × emb_dim = 50,257 × 768" in text
    assert "12 × 7,085,568" in text
    assert text.splitlines()[-1].split()[-1] == "163,009,536"


def test_info_breakdown_cli(tmp_path, capsys):
    assert main(["info", "--breakdown"]) == 0
    out = capsys.readouterr().out
    assert "GPT_CONFIG_124M" in out and "parameters: 163,009,536" in out and "matches" in out
    assert main(["info", "--preset", "gpt2-124M", "--breakdown"]) == 0
    out = capsys.readouterr().out
    assert "tied" in out and "124,439,808" in out and "matches" in out
    cfg = tmp_path / "c.json"
    cfg.write_text('{"vocab_size": 100, "emb_dim": 16, "n_heads": 2, "n_layers": 2}')
    assert main(["info", "--config", str(cfg), "--breakdown"]) == 0
    assert "matches" in capsys.readouterr().out
