"""`scratchgpt serve`: OpenAI's client against a loopback server equals `generate`, token for
token; concurrent clients are batched and each still gets what it would alone; disconnects free
their rows; bad requests get OpenAI-shaped 4xx errors; SIGTERM exits 0 without hanging anyone."""

import asyncio
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")

from scratchgpt.chat import stop_strings  # noqa: E402
from scratchgpt.checkpoint import save_checkpoint  # noqa: E402
from scratchgpt.cli import main  # noqa: E402
from scratchgpt.config import preset  # noqa: E402
from scratchgpt.generation import Generator, TextStream  # noqa: E402
from scratchgpt.model import GPTModel  # noqa: E402
from scratchgpt.serving.app import create_app  # noqa: E402
from scratchgpt.serving.engine import BatchEngine, Job  # noqa: E402
from scratchgpt.templates import TEMPLATES, Message  # noqa: E402
from scratchgpt.tokenizers import TiktokenTokenizer  # noqa: E402

NAME = "tiny-test"
CONTEXT = 256
TEMPLATE = TEMPLATES["chatml"]


@pytest.fixture(scope="module")
def tok(shared_data):
    return TiktokenTokenizer.from_gpt2_files(
        shared_data("gpt2-encoder.json"), shared_data("gpt2-vocab.bpe")
    )


@pytest.fixture(scope="module")
def model(tok):
    torch.manual_seed(0)
    m = GPTModel(preset("tiny", vocab_size=tok.vocab_size, context_length=CONTEXT)).eval()
    with torch.no_grad():  # decisive logits: greedy choices far from ties
        for name, p in m.named_parameters():
            p.normal_(1.0 if name.endswith(".scale") else 0.0, 0.15)
    return m


@pytest.fixture(scope="module")
def reference(model, tok):
    """What `generate` gives for a prompt alone (a separate copy of the weights)."""
    copy = GPTModel(model.cfg).eval()
    copy.load_state_dict(model.state_dict())
    return Generator(copy, tok)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn in a thread on a free loopback port, serving `create_app`."""

    def __init__(self, engine, template=TEMPLATE):
        self.engine = engine
        self.port = _free_port()
        app = create_app(engine, model_name=NAME, template=template)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            assert time.time() < deadline, "the server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(20)

    def client(self):
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def live(model, tok):
    engine = BatchEngine(model, tok, max_batch=8, max_queue=64)
    with LiveServer(engine) as server:
        yield server


def test_completion_equals_generate_streamed_or_not(live, reference, tok):
    client = live.client()
    for prompt, n in [("Every effort moves you", 24), ("a", 5), ("The year was 1905", 40)]:
        expected = reference.generate_text(prompt, n, temperature=0)
        out = client.completions.create(model=NAME, prompt=prompt, max_tokens=n, temperature=0)
        assert out.choices[0].text == expected
        assert out.usage.prompt_tokens == len(tok.encode(prompt))
        assert out.usage.completion_tokens == n and out.choices[0].finish_reason == "length"
        assert out.usage.total_tokens == out.usage.prompt_tokens + n
        chunks = list(
            client.completions.create(
                model=NAME, prompt=prompt, max_tokens=n, temperature=0, stream=True
            )
        )
        assert "".join(c.choices[0].text for c in chunks) == expected
        assert chunks[-1].choices[0].finish_reason == "length"
        assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    # Token ids in, echo, and a list of prompts.
    ids = tok.encode("Every effort")
    out = client.completions.create(
        model=NAME, prompt=[ids, ids[:1]], max_tokens=6, temperature=0, echo=True
    )
    assert [c.text for c in out.choices] == [
        "Every effort" + reference.generate_text("Every effort", 6, temperature=0),
        "Every" + reference.generate_text("Every", 6, temperature=0),
    ]


def test_chat_uses_the_template_and_its_stop_strings(live, reference):
    client = live.client()
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    prompt = TEMPLATE.prompt([Message("system", "Be brief."), Message("user", "Hi")])
    expected = reference.generate_text(prompt, 30, temperature=0, stop=stop_strings(TEMPLATE))
    out = client.chat.completions.create(
        model=NAME, messages=messages, max_tokens=30, temperature=0
    )
    assert out.choices[0].message.role == "assistant"
    assert out.choices[0].message.content == expected
    stream = client.chat.completions.create(
        model=NAME,
        messages=messages,
        max_tokens=30,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens >= 1


def test_stop_strings_seed_and_n(live, reference):
    client = live.client()
    full = reference.generate_text("Once upon", 30, temperature=0)
    stop = full[10:14]
    out = client.completions.create(
        model=NAME, prompt="Once upon", max_tokens=30, temperature=0, stop=[stop, "zzzz"]
    )
    assert out.choices[0].text == full[: full.index(stop)]
    assert out.choices[0].finish_reason == "stop"
    # The same seed samples the same text; choice j of n uses seed + j.
    kw = {"model": NAME, "prompt": "Once upon", "max_tokens": 12, "temperature": 1.0}
    a = client.completions.create(**kw, seed=7, n=3)
    b = client.completions.create(**kw, seed=8)
    c = client.completions.create(**kw, seed=7, top_p=0.9, extra_body={"top_k": 50})
    assert b.choices[0].text == a.choices[1].text
    assert len({ch.text for ch in a.choices}) > 1
    assert reference.generate_text("Once upon", 12, temperature=1.0, seed=7) == a.choices[0].text
    assert (
        reference.generate_text("Once upon", 12, temperature=1.0, seed=7, top_k=50, top_p=0.9)
        == c.choices[0].text
    )


def test_concurrent_streaming_clients_are_batched_and_each_gets_its_own(live, reference, tok):
    prompts = [f"Request {i}: " + " ".join(["word"] * (i % 7)) for i in range(32)]
    lengths = [8 + (5 * i) % 40 for i in range(32)]
    expected = [
        reference.generate_text(p, n, temperature=0) for p, n in zip(prompts, lengths, strict=True)
    ]
    largest_before = live.engine.stats.largest_batch
    barrier = threading.Barrier(32)

    def one(i):
        client = live.client()
        barrier.wait()
        stream = client.completions.create(
            model=NAME, prompt=prompts[i], max_tokens=lengths[i], temperature=0, stream=True
        )
        return "".join(c.choices[0].text for c in stream)

    with ThreadPoolExecutor(32) as pool:
        got = list(pool.map(one, range(32)))
    assert got == expected
    health = httpx.get(f"{live.url}/health").json()
    assert health["largest_batch"] > 1 and health["largest_batch"] >= largest_before
    assert health["active"] == 0 and health["queued"] == 0


def test_a_client_that_disconnects_frees_its_row(live, reference):
    before = live.engine.stats.cancelled
    body = {
        "model": NAME,
        "prompt": "Long",
        "max_tokens": CONTEXT - 8,
        "temperature": 0,
        "stream": True,
    }
    with httpx.Client(timeout=20) as http:
        with http.stream("POST", f"{live.url}/v1/completions", json=body) as response:
            lines = response.iter_lines()
            first = [next(lines) for _ in range(2)]
            assert first[0].startswith("data: ")
        # The response is closed after two chunks: the job must be cancelled, not finished.
        deadline = time.time() + 10
        while live.engine.stats.cancelled == before or live.engine.stats.active:
            assert time.time() < deadline, live.engine.stats
            time.sleep(0.01)
    client = live.client()
    out = client.completions.create(model=NAME, prompt="After", max_tokens=10, temperature=0)
    assert out.choices[0].text == reference.generate_text("After", 10, temperature=0)


def _post(url, body, path="/v1/completions"):
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(url + path, content=raw, headers={"content-type": "application/json"})


def _error(response, status):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "Traceback" not in error["message"]
    return error


def test_bad_requests_get_openai_errors(live, tok):
    url = live.url
    ok = {"model": NAME, "prompt": "Hi", "max_tokens": 4}
    assert "not valid JSON" in _error(_post(url, b'{"model": '), 400)["message"]
    assert _error(_post(url, "[1, 2]"), 400)["message"] == "the request body must be a JSON object"
    err = _error(_post(url, {**ok, "max_tokens": "10"}), 400)
    assert err["param"] == "max_tokens" and "integer" in err["message"]
    err = _error(_post(url, {**ok, "prompt": {"text": "x"}}), 400)
    assert err["param"] == "prompt" and "list of token ids" in err["message"]
    err = _error(_post(url, {**ok, "max_token": 3}), 400)
    assert err["message"] == "Unrecognized request argument supplied: max_token"
    assert "prompt is required" in _error(_post(url, {"model": NAME}), 400)["message"]
    err = _error(_post(url, {**ok, "max_tokens": 1000}), 400)
    n = len(tok.encode("Hi"))
    assert err["param"] == "max_tokens" and f"at most {CONTEXT - n}" in err["message"]
    err = _error(_post(url, {**ok, "prompt": "hello" + " hello" * 299}), 400)
    assert "the prompt is 300 tokens" in err["message"] and f"{CONTEXT - 1}" in err["message"]
    assert err["code"] == "context_length_exceeded"
    err = _error(_post(url, {**ok, "model": "gpt-4"}), 404)
    assert err["code"] == "model_not_found" and NAME in err["message"]
    err = _error(_post(url, {**ok, "n": 100}), 400)
    assert err["param"] == "n" and "--max-batch" in err["message"]
    err = _error(_post(url, {**ok, "temperature": -1}), 400)
    assert err["param"] == "temperature" and "must be >= 0" in err["message"]
    err = _error(_post(url, {**ok, "logprobs": 5}), 400)
    assert "logprobs=5 is not supported" in err["message"]
    err = _error(_post(url, {**ok, "prompt": [tok.vocab_size + 5]}), 400)
    assert "outside the vocabulary" in err["message"]
    chat = {"model": NAME, "messages": [{"role": "robot", "content": "x"}]}
    assert "messages.0.role" in _error(_post(url, chat, "/v1/chat/completions"), 400)["message"]
    chat = {"model": NAME, "messages": [{"role": "assistant", "content": "x"}]}
    assert "user turn" in _error(_post(url, chat, "/v1/chat/completions"), 400)["message"]
    _error(httpx.get(f"{url}/v1/nothing"), 404)
    models = httpx.get(f"{url}/v1/models").json()
    assert [m["id"] for m in models["data"]] == [NAME]


def test_chat_without_a_template_is_a_clear_400(model, tok):
    engine = BatchEngine(model, tok, max_batch=1)  # never started: nothing reaches it

    async def ask():
        app = create_app(engine, model_name=NAME, template=None)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            return await http.post(
                "/v1/chat/completions",
                json={"model": NAME, "messages": [{"role": "user", "content": "Hi"}]},
            )

    err = _error(asyncio.run(ask()), 400)
    assert err["code"] == "no_chat_template" and "--template" in err["message"]


def test_a_full_queue_answers_503_with_retry_after(model, tok):
    # The engine is never started, so the first request keeps the one place there is.
    engine = BatchEngine(model, tok, max_batch=1, max_queue=0)
    body = {"model": NAME, "prompt": "x", "max_tokens": 2}

    async def ask():
        app = create_app(engine, model_name=NAME)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            first = asyncio.create_task(http.post("/v1/completions", json=body))
            while not engine.busy:
                await asyncio.sleep(0.01)
            busy = await http.post("/v1/completions", json=body)
            first.cancel()
            return busy

    busy = asyncio.run(ask())
    err = _error(busy, 503)
    assert busy.headers["retry-after"] == "1" and err["code"] == "queue_full"


def test_text_stream_never_splits_a_character(tok):
    text = "naïve café 🙂 done"
    ids = tok.encode(text)
    assert len(ids) > len(text.split())  # the emoji and accents span several tokens
    stream = TextStream(tok)
    pieces = [stream.add(i) for i in ids] + [stream.finish()]
    assert "".join(pieces) == text and not any("\ufffd" in p for p in pieces)
    stream = TextStream(tok, stop=["é 🙂"])
    pieces = [stream.add(i) for i in ids] + [stream.finish()]
    assert "".join(pieces) == "naïve caf" and stream.stopped


def test_engine_rejects_what_cannot_fit(model, tok):
    engine = BatchEngine(model, tok, max_batch=1)
    with pytest.raises(ValueError, match="exceed the context"):
        engine.submit(Job([1] * 10, CONTEXT, lambda e: None))


@pytest.fixture(scope="module")
def checkpoint(model, tok, tmp_path_factory):
    metadata = {"template": TEMPLATE.to_dict()}
    return save_checkpoint(tmp_path_factory.mktemp("serve") / "ck", model, tok, metadata=metadata)


def test_cli_checks_flags_before_loading(capsys):
    assert main(["serve", "--checkpoint", "nowhere", "--max-batch", "0"]) == 2
    err = capsys.readouterr().err
    assert "--max-batch 0: must be >= 1" in err and err.count("\n") == 1


def test_a_port_in_use_is_one_clear_error(checkpoint, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--checkpoint", str(checkpoint), "--port", str(port)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"could not serve on 127.0.0.1:{port}" in last and "--port" in last


@pytest.mark.slow
def test_sigterm_with_requests_in_flight_exits_0(checkpoint, reference):
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "scratchgpt",
        "serve",
        "--checkpoint",
        str(checkpoint),
        "--port",
        str(port),
        "--shutdown-timeout",
        "0.1",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                health = httpx.get(f"{url}/health", timeout=1)
                if health.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.time() < deadline, proc.stdout.read()
            time.sleep(0.1)
        assert health.json()["model"] == "ck"
        # The served name is the checkpoint directory's; chat uses its saved template.
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        out = client.chat.completions.create(
            model="ck", messages=[{"role": "user", "content": "Hi"}], max_tokens=5, temperature=0
        )
        assert out.choices[0].message.content == reference.generate_text(
            TEMPLATE.prompt([Message("user", "Hi")]),
            5,
            temperature=0,
            stop=stop_strings(TEMPLATE),
        )
        started = threading.Barrier(5)
        outcomes = []

        def long_request(i):
            body = {
                "model": "ck",
                "prompt": f"story {i}",
                "max_tokens": CONTEXT - 8,
                "stream": True,
                "temperature": 0,
            }
            try:
                with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=30) as r:
                    lines = r.iter_lines()
                    next(lines)
                    started.wait(10)
                    rest = list(lines)
                outcomes.append("done" if "data: [DONE]" in rest else "cut")
            except httpx.HTTPError:
                outcomes.append("closed")

        threads = [threading.Thread(target=long_request, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        started.wait(20)
        sent = time.time()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        for t in threads:
            t.join(10)
            assert not t.is_alive(), "a request hung after shutdown"
        assert time.time() - sent < 15
        # Each request either finished or saw its connection close: none is left waiting.
        assert len(outcomes) == 4, outcomes
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/health", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
