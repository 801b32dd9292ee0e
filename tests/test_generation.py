import pytest
import torch

from scratchgpt.config import ConfigError, SamplingConfig, preset
from scratchgpt.generation import Generator, filter_logits, generate, next_token, stream
from scratchgpt.model import GPTModel
from scratchgpt.tokenizers import CharTokenizer


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPTModel(preset("tiny", context_length=16)).eval()


def test_greedy_is_deterministic_and_matches_argmax(model):
    idx = torch.randint(0, 256, (2, 5))
    a = generate(model, idx, 10, temperature=0)
    b = generate(model, idx, 10, temperature=0)
    assert torch.equal(a, b) and a.shape == (2, 15)
    assert torch.equal(a[:, :5], idx)
    # each new token is the argmax of the model's logits at that point
    with torch.no_grad():
        for t in range(5, 15):
            assert torch.equal(model(a[:, :t])[:, -1].argmax(-1), a[:, t])


def test_top_k_1_equals_greedy(model):
    idx = torch.randint(0, 256, (3, 4))
    gen = torch.Generator().manual_seed(0)
    sampled = generate(model, idx, 12, temperature=1.5, top_k=1, generator=gen)
    assert torch.equal(sampled, generate(model, idx, 12, temperature=0))


def test_same_seed_same_sample(model):
    idx = torch.zeros(1, 1, dtype=torch.long)

    def run(seed):
        return generate(model, idx, 20, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_top_p_keeps_the_smallest_set_over_p():
    probs = torch.tensor([[0.5, 0.3, 0.1, 0.06, 0.04]])
    logits = probs.log()
    kept = lambda p: torch.isfinite(filter_logits(logits, top_p=p))[0].tolist()  # noqa: E731
    assert kept(0.5) == [True, False, False, False, False]
    assert kept(0.79) == [True, True, False, False, False]
    assert kept(0.81) == [True, True, True, False, False]
    assert kept(1.0) == [True] * 5
    assert kept(0.01) == [True, False, False, False, False]  # the top token always stays
    # order of the vocabulary does not matter
    shuffled = logits[:, [3, 0, 4, 1, 2]]
    assert torch.isfinite(filter_logits(shuffled, top_p=0.79))[0].tolist() == [
        False,
        True,
        False,
        True,
        False,
    ]


def test_top_k_filter():
    logits = torch.tensor([[1.0, 4.0, 3.0, 2.0]])
    assert torch.isfinite(filter_logits(logits, top_k=2))[0].tolist() == [False, True, True, False]
    # sampling never leaves the kept set
    gen = torch.Generator().manual_seed(0)
    picks = {next_token(logits, top_k=2, generator=gen).item() for _ in range(200)}
    assert picks == {1, 2}


def test_context_is_cropped(model):
    idx = torch.randint(0, 256, (1, 40))  # longer than context_length=16
    out = generate(model, idx, 5, temperature=0)
    assert out.shape == (1, 45)
    cropped = generate(model, idx[:, -16:], 5, temperature=0)
    assert torch.equal(out[:, 40:], cropped[:, 16:])


def test_stops_at_eos(model):
    idx = torch.randint(0, 256, (1, 3))
    free = generate(model, idx, 10, temperature=0)
    eos = free[0, 6].item()  # the 4th generated token
    first = (free[0, 3:] == eos).nonzero()[0].item()
    out = generate(model, idx, 10, temperature=0, eos_id=eos)
    assert out.shape[1] == 3 + first + 1 and out[0, -1].item() == eos


def test_eos_pads_finished_rows(model):
    idx = torch.randint(0, 256, (2, 3))
    free = generate(model, idx, 8, temperature=0)
    eos = free[0, 4].item()
    out = generate(model, idx, 8, temperature=0, eos_id=eos)
    row = out[0, 3:].tolist()
    stop = row.index(eos)
    assert all(t == eos for t in row[stop:])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"temperature": -1}, "temperature"), ({"top_k": 0}, "top_k"), ({"top_p": 1.5}, "top_p")],
)
def test_bad_settings(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate(model, torch.zeros(1, 1, dtype=torch.long), 3, **kwargs)
    with pytest.raises(ConfigError, match=match):  # checked by SamplingConfig
        generate(model, torch.zeros(1, 1, dtype=torch.long), 3, **kwargs)


SAMPLED = {"temperature": 0.9, "top_k": 50, "top_p": 0.8, "repetition_penalty": 1.3}


def test_sampling_config_gives_the_same_ids_as_the_keywords(model):
    idx = torch.randint(0, 256, (2, 4))

    def run(**kw):
        gen = torch.Generator().manual_seed(7)
        return torch.stack(list(stream(model, idx, 16, generator=gen, **kw)), dim=1)

    by_keywords = run(**SAMPLED)
    by_config = run(sampling=SamplingConfig(**SAMPLED))
    assert torch.equal(by_keywords, by_config)
    assert not torch.equal(by_keywords, run())  # the settings did change the sample
    gen = torch.Generator().manual_seed(7)
    out = generate(model, idx, 16, sampling=SamplingConfig(**SAMPLED), generator=gen)
    assert torch.equal(out[:, 4:], by_config)


@pytest.mark.parametrize("keyword", sorted(SAMPLED))
def test_sampling_config_and_keywords_together_are_refused(model, keyword):
    idx = torch.zeros(1, 1, dtype=torch.long)
    with pytest.raises(ConfigError, match=rf"sampling= and {keyword}=.* given together"):
        generate(model, idx, 3, sampling=SamplingConfig(), **{keyword: SAMPLED[keyword]})
    with pytest.raises(ConfigError, match="must be a SamplingConfig"):
        generate(model, idx, 3, sampling={"temperature": 0})


def test_generator_takes_a_sampling_config():
    tok = CharTokenizer.from_text("the cat sat on the mat.\n")
    torch.manual_seed(0)
    gen = Generator(GPTModel(preset("tiny", vocab_size=tok.vocab_size)).eval(), tok)
    greedy = SamplingConfig(temperature=0)
    assert gen.generate_text("the ", 12, sampling=greedy) == gen.generate_text(
        "the ", 12, temperature=0
    )
    sampled = SamplingConfig(**SAMPLED)
    whole = gen.generate_text("the ", 12, sampling=sampled, seed=3)
    assert "".join(gen.stream_text("the ", 12, sampling=sampled, seed=3)) == whole
    assert whole == gen.generate_text("the ", 12, seed=3, **SAMPLED)
    with pytest.raises(ConfigError, match="given together"):
        gen.generate_text("the ", 4, sampling=greedy, top_k=2)


def test_generate_restores_training_mode(model):
    model.train()
    generate(model, torch.zeros(1, 1, dtype=torch.long), 2)
    assert model.training
    model.eval()
