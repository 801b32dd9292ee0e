"""The judge (book ch. 7.8) against a loopback OpenAI-compatible server that this file starts:
the exact prompt and request, score parsing, statistics, retries, and the command line."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from scratchgpt.cli import main
from scratchgpt.errors import DataError
from scratchgpt.judge import (
    JudgeError,
    TransientError,
    UnreachableError,
    format_input,
    judge_prompt,
    judge_responses,
    load_records,
    parse_score,
)

WITH_INPUT = {
    "instruction": "Rewrite the sentence using a simile.",
    "input": "The car is very fast.",
    "output": "The car is as fast as lightning.",
    "model_response": "The car is as fast as a bullet.",
}
WITHOUT_INPUT = {
    "instruction": "What type of cloud is typically associated with thunderstorms?",
    "input": "",
    "output": "The type of cloud typically associated with thunderstorms is cumulonimbus.",
    "model_response": "The type of cloud associated with thunderstorms is a cumulus cloud.",
}

# A reply is (status, text): text is the message content for 200, the error body otherwise.
Reply = tuple[int, str]


class JudgeServer:
    """A chat-completions endpoint on 127.0.0.1 that answers from a script and records every
    request body; ``answer(body) -> (status, text)`` decides each reply."""

    def __init__(self, answer: Callable[[dict], Reply]) -> None:
        self.requests: list[dict] = []
        self.paths: list[str] = []
        self.headers: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                server.paths.append(self.path)
                server.headers.append(dict(self.headers))
                status, text = answer(body)
                if status == 0:  # stall past the client's timeout, then say nothing
                    time.sleep(float(text))
                    return
                if status == 200:
                    payload = {"choices": [{"message": {"role": "assistant", "content": text}}]}
                else:
                    payload = {"error": {"message": text}}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        # A short poll interval: shutdown() waits for one, and tests start several servers.
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def __enter__(self) -> JudgeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def scripted(*replies: Reply) -> Callable[[dict], Reply]:
    """Answers in order; the last one repeats."""
    queue = list(replies)
    return lambda body: queue.pop(0) if len(queue) > 1 else queue[0]


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[dict], Reply]], JudgeServer]]:
    servers: list[JudgeServer] = []

    def start(answer: Callable[[dict], Reply]) -> JudgeServer:
        servers.append(JudgeServer(answer).__enter__())
        return servers[-1]

    yield start
    for s in servers:
        s.__exit__()


def book_prompt(entry: dict) -> str:
    """The book's judging prompt, spelled out independently of scratchgpt's templates."""
    frame = (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\n" + entry["instruction"]
    )
    if entry["input"]:
        frame += "\n\n### Input:\n" + entry["input"]
    return (
        f"Given the input `{frame}` and correct output `{entry['output']}`, score the model "
        f"response `{entry['model_response']}` on a scale from 0 to 100, where 100 is the best "
        "score. Respond with the integer number only."
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_request_carries_the_books_prompt(serve):
    server = serve(scripted((200, "70")))
    judge_responses([WITH_INPUT, WITHOUT_INPUT], endpoint=server.endpoint, model="llama3")
    assert [r["messages"] for r in server.requests] == [
        [{"role": "user", "content": book_prompt(WITH_INPUT)}],
        [{"role": "user", "content": book_prompt(WITHOUT_INPUT)}],
    ]
    assert "### Input:" in book_prompt(WITH_INPUT)
    assert "### Input:" not in book_prompt(WITHOUT_INPUT)
    for body in server.requests:
        assert body["model"] == "llama3" and body["temperature"] == 0 and body["seed"] == 123
    assert server.paths == ["/v1/chat/completions"] * 2
    assert all("Authorization" not in h for h in server.headers)


def test_prompt_on_the_books_data(shared_data):
    records = json.loads(shared_data("instruction-data.json").read_text())
    with_input = next(r for r in records if r["input"])
    without = next(r for r in records if not r["input"])
    for record in (with_input, without):
        entry = {**record, "model_response": "a response"}
        assert judge_prompt(entry) == book_prompt(entry)
        assert format_input(entry).endswith(entry["input"] or entry["instruction"])


def test_scores_mean_and_standard_error(serve):
    scores = {"a": 90, "b": 75, "c": 40, "d": 100}
    records = [{**WITHOUT_INPUT, "model_response": k} for k in scores]

    def answer(body: dict) -> Reply:
        key = body["messages"][0]["content"].split("score the model response `")[1][0]
        return 200, f" {scores[key]}.\n" if key == "c" else str(scores[key])

    server = serve(answer)
    result = judge_responses(records, endpoint=server.endpoint, model="m", backoff=0.001)
    assert [i.score for i in result.scores] == [90, 75, 40, 100]
    assert [i.index for i in result.scores] == [0, 1, 2, 3]
    assert result.scores[2].raw == " 40.\n" and result.scores[0].attempts == 1
    values = [90, 75, 40, 100]
    mean = sum(values) / 4
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 3)
    assert result.mean == pytest.approx(76.25)
    assert result.stderr == pytest.approx(sd / 2)
    assert result.failed == 0 and result.scored == 4


def test_a_wordy_answer_is_asked_again(serve):
    server = serve(scripted((200, "I think it's good"), (200, "80")))
    result = judge_responses([WITH_INPUT], endpoint=server.endpoint, model="m", backoff=0.001)
    item = result.scores[0]
    assert (item.score, item.raw, item.attempts) == (80, "80", 2)
    assert server.requests[0] == server.requests[1]  # the same question, asked again


def test_never_a_number_counts_as_failed(serve):
    server = serve(scripted((200, "I think it's good")))
    result = judge_responses(
        [WITH_INPUT, WITHOUT_INPUT], endpoint=server.endpoint, model="m", retries=2, backoff=0.001
    )
    assert [(i.score, i.attempts) for i in result.scores] == [(None, 3), (None, 3)]
    assert result.failed == 2 and result.mean is None and result.stderr is None
    assert len(server.requests) == 6


def test_a_busy_server_is_retried(serve):
    server = serve(scripted((503, "overloaded"), (429, "slow down"), (200, "55")))
    result = judge_responses([WITH_INPUT], endpoint=server.endpoint, model="m", backoff=0.001)
    assert (result.scores[0].score, result.scores[0].attempts) == (55, 3)
    always_busy = serve(scripted((503, "no backend")))
    with pytest.raises(JudgeError, match="failed 2 times before answering once: HTTP 503"):
        judge_responses(
            [WITH_INPUT], endpoint=always_busy.endpoint, model="m", retries=1, backoff=0.001
        )
    assert len(always_busy.requests) == 2


def test_a_timeout_is_retried(serve):
    server = serve(scripted((0, "0.3"), (200, "65")))
    result = judge_responses(
        [WITH_INPUT], endpoint=server.endpoint, model="m", timeout=0.1, backoff=0.001
    )
    assert (result.scores[0].score, result.scores[0].attempts) == (65, 2)


class FlakyClient:
    """A client (the ``client=`` hook) that answers, then raises what it is given."""

    def __init__(self, *outcomes: str | Exception) -> None:
        self.outcomes, self.prompts = list(outcomes), []

    def complete(self, prompt: str) -> str:
        self.prompts.append(prompt)
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def test_a_server_gone_mid_run_is_retried_then_one_error():
    gone = FlakyClient("50", UnreachableError("refused"), "70")
    result = judge_responses([WITH_INPUT] * 2, model="m", client=gone, backoff=0.001)
    assert [i.score for i in result.scores] == [50, 70]  # came back: retried
    gone = FlakyClient("50", UnreachableError("refused"))
    with pytest.raises(JudgeError, match="cannot reach the judge"):
        judge_responses([WITH_INPUT] * 2, model="m", client=gone, retries=2, backoff=0.001)
    assert len(gone.prompts) == 4  # the first answer, then 1 + 2 retries
    busy = FlakyClient(TransientError("HTTP 503", retry_after=0.001), "40")
    assert judge_responses([WITH_INPUT], model="m", client=busy, backoff=0).scores[0].score == 40
    busy = FlakyClient("50", TransientError("HTTP 503"))  # answered once: a busy spell
    result = judge_responses([WITH_INPUT] * 2, model="m", client=busy, retries=1, backoff=0)
    item = result.scores[1]
    assert (item.score, item.attempts, item.error, result.failed) == (None, 2, "HTTP 503", 1)


def test_a_rejected_request_is_one_error(serve):
    server = serve(scripted((404, 'model "llama9" not found, try pulling it first')))
    with pytest.raises(JudgeError, match=r"HTTP 404: model \"llama9\" not found.*ollama pull"):
        judge_responses([WITH_INPUT], endpoint=server.endpoint, model="llama9", backoff=0.001)
    assert len(server.requests) == 1  # not retried


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("85", 85),
        (" 85.\n", 85),
        ("Score: 85", 85),
        ("0", 0),
        ("100", 100),
        ("<think>between 70 and 90</think>\n72", 72),
        ("85/100", None),
        ("85 or 90", None),
        ("8.5", None),
        ("150", None),
        ("-3", None),
        ("good", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_score(text, score):
    assert parse_score(text) == score


def test_malformed_record_names_index_and_field(tmp_path, capsys):
    with pytest.raises(DataError, match=r"record 1: field 'model_response' is missing"):
        judge_responses([WITH_INPUT, {"instruction": "x", "output": "y"}], model="m")
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(WITH_INPUT) + "\n" + json.dumps({**WITH_INPUT, "output": 3}))
    assert len(load_records(tmp_path / "r.jsonl")) == 2
    assert main(["judge", "--responses", str(path), "--judge-model", "m"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "scratchgpt judge: error: record 1: field 'output' is a int, not a string"


def test_cli_unreachable_endpoint_is_one_line(tmp_path, capsys):
    path = tmp_path / "r.json"
    path.write_text(json.dumps([WITH_INPUT]))
    endpoint = f"http://127.0.0.1:{closed_port()}/v1"
    code = main(["judge", "--responses", str(path), "--endpoint", endpoint, "--judge-model", "m"])
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"scratchgpt judge: error: cannot reach the judge at {endpoint}")
    assert "ollama serve" in lines[0]
    assert not (tmp_path / "r-scores.json").exists()


def test_cli_end_to_end(serve, tmp_path, capsys, monkeypatch):
    server = serve(scripted((200, "60"), (200, "not sure"), (200, "90")))
    path = tmp_path / "instruction-data-with-response.json"
    path.write_text(json.dumps([WITH_INPUT, WITHOUT_INPUT]))
    monkeypatch.setenv("JUDGE_KEY", "sk-test")
    args = ["judge", "--responses", str(path), "--endpoint", server.endpoint + "/"]
    args += ["--judge-model", "llama3", "--api-key-env", "JUDGE_KEY", "--timeout", "5"]
    assert main(args) == 0
    out = capsys.readouterr().out
    written = tmp_path / "instruction-data-with-response-scores.json"
    assert json.loads(written.read_text()) == [
        {"index": 0, "score": 60, "raw": "60", "attempts": 1, "error": None},
        {"index": 1, "score": 90, "raw": "90", "attempts": 2, "error": None},
    ]
    se = math.sqrt(((60 - 75) ** 2 + (90 - 75) ** 2) / 1) / math.sqrt(2)
    assert out.splitlines() == [
        f"judge llama3: mean 75.00 ± {se:.2f} over 2 scored, 0 failed",
        f"scores: {written}",
    ]
    assert {h["Authorization"] for h in server.headers} == {"Bearer sk-test"}
    # --out and another response key
    other = tmp_path / "other.json"
    record = dict(WITH_INPUT)
    data = [{**record, "answer": record.pop("model_response")}]
    path.write_text(json.dumps(data))
    args = ["judge", "--responses", str(path), "--endpoint", server.endpoint, "--judge-model"]
    assert main([*args, "m", "--key-response", "answer", "--out", str(other)]) == 0
    assert json.loads(other.read_text())[0]["score"] == 90
    assert "over 1 scored" in capsys.readouterr().out
