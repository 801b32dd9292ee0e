"""The KV cache and the generation loop built on it: cached == uncached, batched == alone."""

import pytest
import torch

from scratchgpt.config import preset
from scratchgpt.generation import (
    Generator,
    apply_repetition_penalty,
    decode_step,
    generate,
    left_pad,
    prefill,
    stream,
)
from scratchgpt.model import GPTModel
from scratchgpt.tokenizers import CharTokenizer


@pytest.fixture(scope="module", params=["sdpa", "explicit"])
def model(request):
    torch.manual_seed(0)
    return GPTModel(preset("tiny", context_length=32, attn_impl=request.param)).eval()


def test_cached_logits_equal_full_forward_at_every_step(model):
    idx = torch.randint(0, 256, (2, 20))
    with torch.no_grad():
        full = model(idx)  # (2, 20, V): logits at every position, no cache
        model.setup_cache(2, 20)
        try:
            torch.testing.assert_close(prefill(model, idx[:, :5]), full[:, 4], atol=1e-5, rtol=0)
            for t in range(5, 20):
                step = decode_step(model, idx[:, t : t + 1], torch.tensor([t]))
                torch.testing.assert_close(step, full[:, t], atol=1e-5, rtol=0)
        finally:
            model.clear_cache()
    assert model.cache_len is None


@pytest.mark.parametrize("prompt_len", [1, 7, 40])  # 40 > context_length: sliding from the start
def test_cached_equals_uncached_greedy_for_100_tokens(model, prompt_len):
    idx = torch.randint(0, 256, (1, prompt_len))
    cached = generate(model, idx, 100, temperature=0, use_cache=True)
    uncached = generate(model, idx, 100, temperature=0, use_cache=False)
    assert torch.equal(cached, uncached)
    assert cached.shape == (1, prompt_len + 100)


def test_cached_equals_uncached_when_sampling(model):
    idx = torch.randint(0, 256, (2, 3))
    runs = [
        generate(
            model,
            idx,
            50,
            top_k=20,
            top_p=0.9,
            temperature=0.9,
            use_cache=c,
            generator=torch.Generator().manual_seed(5),
        )
        for c in (True, False)
    ]
    assert torch.equal(*runs)


def test_batched_equals_one_by_one(model):
    prompts = [[5, 6, 7, 8, 9, 10, 11], [1], [200, 100, 50]]
    idx, offsets = left_pad(prompts, pad_id=0)
    assert idx.shape == (3, 7) and offsets.tolist() == [0, 6, 4]
    for use_cache in (True, False):
        batched = generate(model, idx, 40, temperature=0, pad_offset=offsets, use_cache=use_cache)
        for row, p in enumerate(prompts):
            alone = generate(model, torch.tensor([p]), 40, temperature=0)
            assert batched[row, 7:].tolist() == alone[0, len(p) :].tolist()


def test_stream_yields_as_it_goes_and_matches_generate(model):
    idx = torch.randint(0, 256, (1, 4))
    it = stream(model, idx, 10, temperature=0)
    first = next(it)
    assert first.shape == (1,)
    rest = list(it)
    assert (
        torch.cat([first, *rest]).tolist()
        == generate(model, idx, 10, temperature=0)[0, 4:].tolist()
    )
    assert model.cache_len is None  # the cache is dropped once the stream ends


def test_repetition_penalty_lowers_seen_tokens():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    seen = torch.tensor([[0, 1, 1]])
    out = apply_repetition_penalty(logits, seen, 2.0)
    assert out.tolist() == [[1.0, -2.0, 0.5, 3.0]]
    assert torch.equal(apply_repetition_penalty(logits, seen, 1.0), logits)


def test_repetition_penalty_changes_greedy_output(model):
    idx = torch.zeros(1, 1, dtype=torch.long)
    plain = generate(model, idx, 30, temperature=0)[0].tolist()
    penalised = generate(model, idx, 30, temperature=0, repetition_penalty=5.0)[0].tolist()
    assert len(set(penalised)) >= len(set(plain)) and penalised != plain


@pytest.fixture(scope="module")
def char_generator():
    text = "the cat sat on the mat. the dog sat on the log.\n"
    tok = CharTokenizer.from_text(text)
    torch.manual_seed(0)
    model = GPTModel(preset("tiny", vocab_size=tok.vocab_size, context_length=32)).eval()
    return Generator(model, tok)


def test_stop_strings(char_generator):
    full = char_generator.generate_text("the ", 60, temperature=0)
    assert isinstance(full, str) and len(full) == 60
    stop = full[20:22]
    expected = full[: full.index(stop)]
    assert char_generator.generate_text("the ", 60, temperature=0, stop=[stop]) == expected
    pieces = list(char_generator.stream_text("the ", 60, temperature=0, stop=[stop]))
    assert "".join(pieces) == expected and len(pieces) > 1


def test_stream_text_pieces_join_to_the_whole(char_generator):
    whole = char_generator.generate_text("the ", 40, temperature=0.8, seed=3)
    assert "".join(char_generator.stream_text("the ", 40, temperature=0.8, seed=3)) == whole


def test_end_of_text_stops(shared_data):
    from scratchgpt.tokenizers import TiktokenTokenizer

    tok = TiktokenTokenizer.from_gpt2_files(
        shared_data("gpt2-encoder.json"), shared_data("gpt2-vocab.bpe")
    )
    torch.manual_seed(0)
    model = GPTModel(preset("tiny", vocab_size=tok.vocab_size)).eval()
    with torch.no_grad():  # make end-of-text the most likely token everywhere
        model.out_head.weight[tok.eot_id] = 1.0
        model.final_norm.shift.fill_(1.0)  # every final vector now points along the eot row
    gen = Generator(model, tok)
    assert gen.generate_text("Hello", 20, temperature=0) == ""
    assert list(gen.stream_text("Hello", 20, temperature=0)) == []
    batch = gen.generate_text(["Hello", "A much longer prompt here"], 5, temperature=0)
    assert batch == ["", ""]


@pytest.mark.slow
def test_compiled_decode_step_has_no_graph_breaks():
    torch.manual_seed(0)
    model = GPTModel(preset("tiny")).eval()
    model.setup_cache(1, 16)
    try:
        with torch.no_grad():
            prefill(model, torch.zeros(1, 4, dtype=torch.long))
            explanation = torch._dynamo.explain(decode_step)(
                model, torch.zeros(1, 1, dtype=torch.long), torch.tensor([4])
            )
    finally:
        model.clear_cache()
    assert explanation.graph_break_count == 0
    assert explanation.graph_count == 1


@pytest.mark.slow
def test_compiled_generator_matches_eager(char_generator):
    compiled = Generator(char_generator.model, char_generator.tokenizer, compile=True)
    eager = char_generator.generate_text("the ", 20, temperature=0)
    assert compiled.generate_text("the ", 20, temperature=0) == eager


def test_a_kept_cache_is_reused_zeroed_and_invisible():
    torch.manual_seed(0)
    model = GPTModel(preset("tiny")).eval()
    model.setup_cache(2, 8)
    k = model.trf_blocks[0].att.kv_cache.k
    k.fill_(float("nan"))  # whatever a previous generation left must not leak into the next
    model.clear_cache(keep=True)
    assert model.cache_len is None  # forward is back on the plain path...
    assert "_kept_caches" not in dict(model.named_modules())  # ...and nothing is registered
    assert len(model.state_dict()) == len(GPTModel(preset("tiny")).state_dict())
    model.setup_cache(2, 8)  # same shape: the same tensors, zeroed
    assert model.trf_blocks[0].att.kv_cache.k is k and not k.isnan().any() and not k.any()
    model.clear_cache(keep=True)
    model.setup_cache(1, 8)  # another shape: new tensors
    assert model.trf_blocks[0].att.kv_cache.k is not k
    model.clear_cache()  # not kept: the next setup allocates afresh
    model.setup_cache(1, 8)
    assert model.trf_blocks[0].att.kv_cache.k is not k
    model.clear_cache()


@pytest.mark.slow
def test_compiled_generator_compiles_once_for_prompts_of_similar_length(char_generator):
    from torch._dynamo.utils import counters

    cases = [("the cat ", 7), ("a", 12), ("the dog sat ", 3)]
    eager = [char_generator.generate_text(p, n, temperature=0) for p, n in cases]
    compiled = Generator(char_generator.model, char_generator.tokenizer, compile=True)
    compiled.generate_text("the ", 5, temperature=0)  # compiles the decode step
    graphs = counters["stats"]["unique_graphs"]
    # Other prompt lengths and token counts share the rounded-up cache, so the same graph.
    assert [compiled.generate_text(p, n, temperature=0) for p, n in cases] == eager
    assert counters["stats"]["unique_graphs"] == graphs
