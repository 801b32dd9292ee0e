"""Strided sliding-window perplexity, checked against independent per-token computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from scratchgpt.checkpoint import save_checkpoint
from scratchgpt.cli import main
from scratchgpt.config import ConfigError, preset
from scratchgpt.data import DataError
from scratchgpt.evaluation import perplexity, plan_windows
from scratchgpt.model import GPTModel
from scratchgpt.tokenizers import CharTokenizer

L = 16  # the test model's context


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPTModel(preset("tiny", vocab_size=50, context_length=L)).eval()


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, 50, (61,), generator=torch.Generator().manual_seed(1)).tolist()


def nll_of(model, context, target):
    """-log p(target | context), one forward pass over exactly ``context``."""
    with torch.no_grad():
        logits = model(torch.tensor([context]))[0, -1]  # (V,) at the last position
    return F.cross_entropy(logits[None], torch.tensor([target])).item()


def test_stride_one_is_every_token_with_its_full_context(model, ids):
    """stride=1: token t is predicted from the min(t, L) tokens before it, nothing else."""
    n = len(ids)
    expected = [nll_of(model, ids[max(0, t - L) : t], ids[t]) for t in range(1, n)]
    r = perplexity(model, ids, stride=1)
    assert r.tokens_scored == n - 1 == len(expected)
    assert r.loss == pytest.approx(sum(expected) / len(expected), rel=1e-5)
    assert r.perplexity == pytest.approx(math.exp(sum(expected) / len(expected)), rel=1e-5)
    assert r.perplexity == math.exp(r.loss)


@pytest.mark.parametrize("stride", [3, 5, 8, 16])
def test_documented_context_and_counts(model, ids, stride):
    """Token t > L is scored by the window starting at b = ceil((t - L) / stride) * stride,
    from the t - b tokens before it; windows = 1 + ceil((len - 1 - L) / stride)."""
    n = len(ids)
    expected = []
    for t in range(1, n):
        b = 0 if t <= L else math.ceil((t - L) / stride) * stride
        assert t - b >= (L - stride + 1 if t > L else t)  # the documented minimum context
        expected.append(nll_of(model, ids[b:t], ids[t]))
    r = perplexity(model, ids, stride=stride)
    assert r.tokens_scored == n - 1
    assert r.windows == 1 + math.ceil((n - 1 - L) / stride)
    assert (r.stride, r.context_length) == (stride, L)
    assert r.loss == pytest.approx(sum(expected) / (n - 1), rel=1e-5)


def test_every_target_scored_exactly_once():
    for n_tokens in (2, 5, 16, 17, 18, 100, 1001):
        for context, stride in ((16, 1), (16, 7), (16, 16), (4, 3), (1, 1)):
            plan = plan_windows(n_tokens, context_length=context, stride=stride)
            scored = []
            for begin, end, new in plan:
                assert 0 < end - begin <= context and 0 < new <= end - begin
                scored += range(end - new + 1, end + 1)  # target positions ids[t]
            assert scored == list(range(1, n_tokens)), (n_tokens, context, stride)
            assert len(plan) == 1 + math.ceil(max(0, n_tokens - 1 - context) / stride)


def test_disjoint_windows_equal_the_training_loss(model, ids):
    """stride = context: consecutive disjoint windows, each scored whole (as lm_loss does)."""
    chunks = [ids[b : b + L + 1] for b in range(0, len(ids) - 1, L)]
    total = 0.0
    for chunk in chunks:
        x, y = torch.tensor([chunk[:-1]]), torch.tensor([chunk[1:]])
        with torch.no_grad():
            total += F.cross_entropy(model(x)[0], y[0], reduction="sum").item()
    r = perplexity(model, ids, stride=L)
    assert r.windows == len(chunks)
    assert r.loss == pytest.approx(total / (len(ids) - 1), rel=1e-5)


def test_batching_changes_nothing_and_modes_are_restored(model, ids):
    one = perplexity(model, ids, stride=4)
    model.train()
    many = perplexity(model, ids, stride=4, batch_size=5)
    assert model.training  # the caller's mode comes back
    model.eval()
    assert many.loss == pytest.approx(one.loss, rel=1e-6)
    assert many.windows == one.windows


def test_bad_arguments(model):
    with pytest.raises(ConfigError, match="stride=17"):
        perplexity(model, [1, 2, 3], stride=17)
    with pytest.raises(ConfigError, match="stride=0"):
        perplexity(model, [1, 2, 3], stride=0)
    with pytest.raises(DataError, match="at least 2"):
        perplexity(model, [1])
    r = perplexity(model, [1, 2])
    assert (r.tokens_scored, r.windows, r.stride) == (1, 1, L // 2)


def test_eval_command(tmp_path, shared_data, capsys):
    text = shared_data("the-verdict.txt").read_text(encoding="utf-8")[:2000]
    (tmp_path / "text.txt").write_text(text, encoding="utf-8")
    tok = CharTokenizer.from_text(text)
    torch.manual_seed(0)
    model = GPTModel(preset("tiny", vocab_size=tok.vocab_size)).eval()
    save_checkpoint(tmp_path / "ck", model, tok)
    args = ["eval", "--checkpoint", str(tmp_path / "ck"), "--data", str(tmp_path / "text.txt")]
    assert main([*args, "--stride", "32"]) == 0
    out = capsys.readouterr().out
    r = perplexity(model, tok.encode(text), stride=32)
    assert f"perplexity {r.perplexity:.2f} over {len(text) - 1:,} tokens" in out
    assert f"{r.windows} windows of up to 64 tokens, stride 32" in out
    assert main([*args, "--context-length", "32", "--stride", "32"]) == 0
    assert "windows of up to 32 tokens" in capsys.readouterr().out
    assert main([*args, "--stride", "65"]) == 2
    assert "stride=65" in capsys.readouterr().err
