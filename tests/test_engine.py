"""The batching engine alone, stepped by hand: jobs that join mid-way and leave at different
times each get exactly `generate`'s tokens, rows are reused, cancelling frees a row, and the
compiled decode step gives the same tokens."""

import pytest
import torch

from scratchgpt.config import SamplingConfig, preset
from scratchgpt.generation import generate
from scratchgpt.model import GPTModel
from scratchgpt.serving.engine import BatchEngine, Job, QueueFullError
from scratchgpt.tokenizers import CharTokenizer

TOK = CharTokenizer.from_text("abcdefghijklmnopqrstuvwxyz .\n")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = GPTModel(preset("tiny", vocab_size=TOK.vocab_size, context_length=300)).eval()
    with torch.no_grad():  # decisive logits: greedy choices far from ties
        for name, p in m.named_parameters():
            p.normal_(1.0 if name.endswith(".scale") else 0.0, 0.2)
    return m


class Collector:
    def __init__(self, prompt, max_tokens, **kw):
        self.ids = TOK.encode(prompt)
        self.text = ""
        self.finish = None
        self.tokens = 0
        self.job = Job(self.ids, max_tokens, self.on_event, **kw)

    def on_event(self, event):
        assert self.finish is None, "an event after the last one"
        self.text += event.text
        self.finish = event.finish_reason
        self.tokens = event.completion_tokens

    def expected(self, model):
        out = generate(model, torch.tensor([self.ids]), self.job.max_tokens, temperature=0)
        return TOK.decode(out[0, len(self.ids) :].tolist())


def _run(engine, schedule, steps=400):
    """Step the engine, submitting each job at its step; every job must finish."""
    for step in range(steps):
        for c in schedule.get(step, []):
            engine.submit(c.job)
        engine.step()
        if step > max(schedule) and not engine.busy:
            return
    raise AssertionError("jobs left unfinished")


@pytest.mark.parametrize("compiled", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_jobs_joining_and_leaving_get_generates_tokens(model, compiled):
    engine = BatchEngine(model, TOK, max_batch=3, max_queue=10, compile=compiled)
    jobs = {
        0: [Collector("the cat", 5), Collector("a", 40)],
        2: [Collector("hello there", 12)],
        3: [Collector("queued while full", 7), Collector("x", 270)],  # past a 256-slot graph
        9: [Collector("late", 20)],
    }
    _run(engine, jobs)
    for group in jobs.values():
        for c in group:
            assert c.finish == "length" and c.tokens == c.job.max_tokens
            assert c.text == c.expected(model)
    assert engine.stats.largest_batch == 3 and engine.stats.active == 0


def test_cancel_frees_the_row_for_the_next_job(model):
    engine = BatchEngine(model, TOK, max_batch=1, max_queue=1)
    long, waiting = Collector("long one", 200), Collector("next", 6)
    engine.submit(long.job)
    engine.submit(waiting.job)
    with pytest.raises(QueueFullError):  # one row, one place in line: both taken
        engine.submit(Collector("more", 2).job)
    for _ in range(3):
        engine.step()
    engine.cancel(long.job)
    _run(engine, {0: []})
    assert long.finish is None and engine.stats.cancelled == 1
    assert waiting.text == waiting.expected(model) and waiting.finish == "length"


def test_stop_strings_end_of_text_and_seeds(model):
    engine = BatchEngine(model, TOK, max_batch=4)
    plain = Collector("the cat", 30)
    _run(engine, {0: [plain]})
    stop = plain.text[8:11]
    stopped = Collector("the cat", 30, stop=[stop])
    sampled = [
        Collector("the cat", 15, sampling=SamplingConfig(temperature=1.0, top_k=5), seed=3)
        for _ in range(2)
    ]
    _run(engine, {0: [stopped, *sampled]})
    assert stopped.text == plain.text[: plain.text.index(stop)]
    assert stopped.finish == "stop" and stopped.tokens < 30
    assert sampled[0].text == sampled[1].text  # the same seed, the same sample
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(3)
    ids = torch.tensor([TOK.encode("the cat")])
    alone = generate(model, ids, 15, temperature=1.0, top_k=5, generator=gen)
    assert sampled[0].text == TOK.decode(alone[0, ids.size(1) :].tolist())
