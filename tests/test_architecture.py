"""The modern options on the one GPTModel: RoPE, RMSNorm, QK-norm, ReLU² and SwiGLU MLPs, no
biases, grouped-query attention, zero-initialised projections, logit soft-capping.

Equivalences: RoPE scores depend only on relative position; cached == uncached and batched ==
alone with RoPE and GQA; GQA with n_kv_heads == n_heads is plain multi-head attention; RMSNorm
== torch.nn.RMSNorm; textbook == fused attention; every option in a grid trains, saves and
reloads bit-exactly; the parameter breakdown counts every option; export refuses what GPT-2
cannot express, naming it."""

import dataclasses
import itertools

import pytest
import torch

from scratchgpt.analysis import attention_weights
from scratchgpt.checkpoint import load_checkpoint, save_checkpoint
from scratchgpt.config import preset
from scratchgpt.errors import CheckpointError, ConfigError
from scratchgpt.generation import compile_decode_step, generate, left_pad
from scratchgpt.model import GPTModel, lm_loss
from scratchgpt.model.attention import MultiHeadAttention
from scratchgpt.model.layers import RMSNorm, rms_norm_formula
from scratchgpt.model.positional import RotaryEmbedding
from scratchgpt.params import count_parameters, parameter_breakdown
from scratchgpt.pretrained import export_hf
from scratchgpt.serving.engine import BatchEngine, Job
from scratchgpt.tokenizers import CharTokenizer

MODERN = {
    "pos_encoding": "rope",
    "norm": "rmsnorm",
    "mlp": "swiglu",
    "qk_norm": True,
    "bias": False,
    "n_kv_heads": 2,
    "logit_softcap": 30.0,
}


def _model(seed=0, **options):
    torch.manual_seed(seed)
    model = GPTModel(preset("tiny", **options)).eval()
    with torch.no_grad():  # random everywhere, norms' gains near 1: decisive logits
        for name, p in model.named_parameters():
            p.normal_(1.0 if name.endswith("scale") else 0.0, 0.2)
    return model


def test_rope_scores_depend_only_on_relative_position():
    torch.manual_seed(0)
    att = MultiHeadAttention(32, 4)
    rope = RotaryEmbedding(8)
    x = torch.randn(2, 6, 32)
    scores = []
    for shift in (0, 5, 117):
        positions = torch.arange(6).view(1, -1) + shift  # (1, T)
        q, k, _ = att.project(x, rope=rope(positions))
        scores.append(q @ k.transpose(-2, -1))  # (B, nh, T, T)
    torch.testing.assert_close(scores[1], scores[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(scores[2], scores[0], rtol=1e-5, atol=1e-5)
    q, k, _ = att.project(x)  # without the rotation the scores are different ones
    assert not torch.allclose(q @ k.transpose(-2, -1), scores[0], atol=1e-3)


@pytest.mark.parametrize(
    "options",
    [{"pos_encoding": "rope"}, {"n_kv_heads": 1}, {"n_kv_heads": 2, "qk_norm": True}, MODERN],
    ids=["rope", "mqa", "gqa-qknorm", "modern"],
)
def test_cached_equals_uncached_and_batched_equals_alone(options):
    model = _model(**options)
    prompts = [[5, 9, 2, 7, 1], [3], [8, 8, 1]]
    alone = [generate(model, torch.tensor([p]), 12, temperature=0)[0].tolist() for p in prompts]
    for p, ids in zip(prompts, alone, strict=True):
        uncached = generate(model, torch.tensor([p]), 12, temperature=0, use_cache=False)
        assert uncached[0].tolist() == ids
    idx, offsets = left_pad(prompts, pad_id=0)
    batched = generate(model, idx, 12, temperature=0, pad_offset=offsets)
    for row, p, ids in zip(batched.tolist(), prompts, alone, strict=True):
        assert row[idx.size(1) - len(p) :] == ids  # the pads dropped
    if "n_kv_heads" in options:  # the cache holds the fewer key/value heads
        model.setup_cache(2, 16)
        assert model.kv_caches[0].k.shape == (2, options["n_kv_heads"], 16, 8)
        model.clear_cache()


def test_gqa_with_as_many_kv_heads_is_multi_head_attention():
    plain, same = _model(), _model(n_kv_heads=4)  # tiny has n_heads 4
    assert plain.state_dict().keys() == same.state_dict().keys()
    same.load_state_dict(plain.state_dict())
    idx = torch.randint(0, 256, (2, 10))
    assert torch.equal(plain(idx), same(idx))


def test_gqa_equals_multi_head_attention_with_each_kv_head_repeated():
    gqa = _model(n_kv_heads=2)
    mha = _model(seed=1)
    state = gqa.state_dict()
    for name, tensor in list(state.items()):
        if name.endswith(("W_key.weight", "W_value.weight")):
            # (nkv * hs, C) -> (nkv, 1, hs, C) -> repeated per group -> (nh * hs, C)
            heads = tensor.view(2, 1, 8, 32).expand(2, 2, 8, 32)
            state[name] = heads.reshape(32, 32)
    mha.load_state_dict(state)
    idx = torch.randint(0, 256, (2, 10))
    torch.testing.assert_close(gqa(idx), mha(idx), rtol=1e-5, atol=1e-5)


def test_rmsnorm_equals_torch_and_its_formula():
    x = torch.randn(3, 5, 16) * 4 + 1
    ours = RMSNorm(16, eps=1e-6)
    with torch.no_grad():
        ours.scale.normal_()
    reference = torch.nn.RMSNorm(16, eps=1e-6)
    with torch.no_grad():
        reference.weight.copy_(ours.scale)
    torch.testing.assert_close(ours(x), reference(x))
    torch.testing.assert_close(rms_norm_formula(x, ours.scale, 1e-6), reference(x))


def test_textbook_equals_fused_attention_with_every_option():
    fused = _model(**MODERN)
    textbook = GPTModel(dataclasses.replace(fused.cfg, attn_impl="explicit")).eval()
    textbook.load_state_dict(fused.state_dict())
    idx = torch.randint(0, 256, (2, 12))
    torch.testing.assert_close(textbook(idx), fused(idx), rtol=1e-5, atol=1e-5)


def test_softcap_bounds_logits_and_zero_init_starts_as_identity():
    capped = _model(logit_softcap=2.0)
    assert capped(torch.randint(0, 256, (1, 8))).abs().max() < 2.0
    torch.manual_seed(0)
    fresh = GPTModel(preset("tiny", zero_init_proj=True))
    for block in fresh.trf_blocks:
        assert not block.att.out_proj.weight.any() and not block.ff.layers[2].weight.any()
    x = torch.randn(1, 4, 32)
    assert torch.equal(fresh.trf_blocks[0](x), x)  # every block adds zero at the start


def test_attention_maps_read_the_rotated_grouped_heads():
    model = _model(**MODERN)
    idx = torch.randint(0, 256, (1, 9))
    weights = attention_weights(model, idx)  # (L, B, nh, T, T)
    att = model.trf_blocks[0].att
    captured = {}
    att.register_forward_hook(lambda m, a, out: captured.update(out=out), with_kwargs=False)
    pre = {}
    att.register_forward_pre_hook(
        lambda m, a, kw: pre.update(x=a[0], rope=kw["rope"]), with_kwargs=True
    )
    model(idx)
    _, _, v = att.project(pre["x"], rope=pre["rope"])
    mixed = weights[0] @ att.expand_kv(v)  # (B, nh, T, T) @ (B, nh, T, hs) -> (B, nh, T, hs)
    out = att.out_proj(mixed.transpose(1, 2).reshape(1, 9, 32))  # (B, T, nh, hs) -> (B, T, C)
    torch.testing.assert_close(out, captured["out"], rtol=1e-5, atol=1e-5)


GRID = [
    dict(zip(("pos_encoding", "norm", "mlp", "bias"), combo, strict=True))
    for combo in itertools.product(
        ("learned", "rope"), ("layernorm", "rmsnorm"), ("gelu", "relu2", "swiglu"), (True, False)
    )
]


@pytest.mark.parametrize("options", GRID, ids=lambda o: "-".join(str(v) for v in o.values()))
def test_every_option_trains_saves_and_reloads_exactly(options, tmp_path):
    extra = {"n_kv_heads": 2, "qk_norm": True} if options["norm"] == "rmsnorm" else {}
    cfg = preset("tiny", **options, **extra, zero_init_proj=options["mlp"] == "relu2")
    assert parameter_breakdown(cfg).count == count_parameters(cfg)
    torch.manual_seed(0)
    model = GPTModel(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    data = torch.randint(0, 256, (4, 17))
    losses = []
    for _ in range(4):
        loss = lm_loss(model(data[:, :-1]), data[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    tok = CharTokenizer.from_text("".join(chr(i) for i in range(32, 127)))
    save_checkpoint(tmp_path / "ck", model.eval(), tok)
    loaded, _ = load_checkpoint(tmp_path / "ck")
    assert loaded.cfg == cfg
    assert torch.equal(loaded(data), model(data))


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"pos_encoding": "rope"}, "pos_encoding='rope'"),
        ({"mlp": "swiglu"}, "mlp='swiglu'"),
        ({"norm": "rmsnorm"}, "norm='rmsnorm'"),
        ({"n_kv_heads": 2}, "n_kv_heads=2"),
        ({"bias": False}, "bias=False"),
    ],
)
def test_export_to_gpt2_refuses_what_it_cannot_express(options, named, tmp_path):
    tok = CharTokenizer.from_text("abc")
    model = GPTModel(preset("tiny", vocab_size=tok.vocab_size, **options))
    with pytest.raises(CheckpointError, match=named):
        export_hf(model, tok, tmp_path / "hf")


def test_bad_options_are_clear_errors():
    with pytest.raises(ConfigError, match="must divide n_heads=4"):
        preset("tiny", n_kv_heads=3)
    with pytest.raises(ConfigError, match="norm='batchnorm'"):
        preset("tiny", norm="batchnorm")
    with pytest.raises(ConfigError, match="bias=false drops every bias"):
        preset("tiny", bias=False, qkv_bias=True)
    with pytest.raises(ConfigError, match="must be even"):
        preset("tiny", pos_encoding="rope", emb_dim=36, n_heads=4)


def test_served_rows_at_different_positions_with_rope_and_gqa():
    tok = CharTokenizer.from_text("".join(chr(i) for i in range(32, 127)))
    model = _model(vocab_size=tok.vocab_size, **MODERN)
    engine = BatchEngine(model, tok, max_batch=2)
    prompts = ["hello", "a", "rotary"]
    texts = dict.fromkeys(range(len(prompts)), "")

    def collect(i):
        return lambda event: texts.__setitem__(i, texts[i] + event.text)

    jobs = [Job(tok.encode(p), 10, collect(i)) for i, p in enumerate(prompts)]
    for step in range(60):
        if step < len(jobs):
            engine.submit(jobs[step])  # they join one step apart, so positions differ by row
        engine.step()
    for i, job in enumerate(jobs):
        out = generate(model, torch.tensor([list(job.prompt)]), 10, temperature=0)
        assert texts[i] == tok.decode(out[0, len(job.prompt) :].tolist())


@pytest.mark.slow
def test_compiled_decode_step_with_rope_and_gqa():
    model = _model(**MODERN)
    idx = torch.tensor([[4, 8, 15, 16, 23]])
    eager = generate(model, idx, 10, temperature=0)
    compiled = generate(model, idx, 10, temperature=0, decode_fn=compile_decode_step("cpu"))
    assert torch.equal(eager, compiled)
