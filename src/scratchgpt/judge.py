"""Scoring a model's responses with a larger model as the judge (Raschka, "Build a LLM from
Scratch", ch. 7.8).

Loss says little about whether an instruction-tuned model answers well, and a human cannot
read a thousand answers. The book's remedy is to ask a larger model (Llama 3 served by
Ollama) to compare each response with the reference output and give it a score from 0 to
100; the mean score then compares fine-tuning runs. The prompt below is the book's, word for
word, so scores are comparable with the book's numbers.

Any server that speaks the OpenAI chat-completions protocol will do (Ollama at
``http://localhost:11434/v1``, vLLM, llama.cpp's server, a hosted API): a request is one
user message, at temperature 0 and a fixed seed so that a rerun gives the same scores.
Only the standard library talks HTTP here (urllib): judging needs no new dependency.

What can go wrong and what happens then:

- the server is not there at all (refused, unknown host): one :class:`JudgeError`, at once;
- it is busy or flaky (timeout, reset, HTTP 429 or 5xx): the request is repeated after
  ``backoff``, ``2 * backoff``, ``4 * backoff``... seconds, then the item counts as failed
  (or, when the server has not answered once yet, one :class:`JudgeError`);
- it rejects the request (any other 4xx: an unknown model, a bad key): one
  :class:`JudgeError` with the server's own message; repeating would not help;
- the judge answers something other than a number: it is asked again, then the item counts
  as failed (score ``None``), so one rambling answer never stops a long run.
"""

from __future__ import annotations

import json
import logging
import math
import re
import socket
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from .errors import ConfigError, DataError, ScratchGPTError
from .templates import TEMPLATES, Message

log = logging.getLogger(__name__)

OLLAMA_ENDPOINT = "http://localhost:11434/v1"
SEED = 123  # the book's seed: with temperature 0, a rerun asks the same question the same way
RETRY_AFTER_CAP = 60.0  # seconds: never sleep longer than this on a server's Retry-After


class JudgeError(ScratchGPTError):
    """The judge cannot be used at all (unreachable, or it rejects the request); the message
    says which server, what it answered and what to check."""


class TransientError(Exception):
    """A failure that may go away if the same request is sent again a little later."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnreachableError(Exception):
    """Nothing answers at the endpoint (connection refused, unknown host)."""


class ChatClient(Protocol):
    """What :func:`judge_responses` needs from a client: one prompt in, the reply text out.

    Raise :class:`TransientError` for what is worth retrying, :class:`UnreachableError` when
    nothing answers, :class:`JudgeError` for what is not."""

    def complete(self, prompt: str) -> str: ...


# --- the prompt ---------------------------------------------------------------------------------


def format_input(entry: Mapping[str, Any]) -> str:
    """The book's ``format_input``: the Alpaca frame around the instruction (and the input when
    there is one), without the response header; rendered by the ``alpaca`` template, so the
    judge sees the instruction exactly as the tuned model did."""
    message = Message("user", entry["instruction"], input=entry.get("input") or "")
    return "".join(s.text for s in TEMPLATES["alpaca"].render([message]))


def judge_prompt(entry: Mapping[str, Any], response_key: str = "model_response") -> str:
    """The book's judging prompt for one record (its exact words, so scores compare with the
    book's)."""
    problem = record_problem(entry, response_key)
    if problem:
        raise DataError(f"record: {problem}")
    return (
        f"Given the input `{format_input(entry)}` "
        f"and correct output `{entry['output']}`, "
        f"score the model response `{entry[response_key]}` "
        "on a scale from 0 to 100, where 100 is the best score. "
        "Respond with the integer number only."
    )


def record_problem(entry: Any, response_key: str = "model_response") -> str | None:
    """What is wrong with one record (naming the field), or None when it can be judged."""
    if not isinstance(entry, Mapping):
        return f"is a {type(entry).__name__}, not an object with instruction, output, ..."
    for key in ("instruction", "output", response_key):
        if key not in entry:
            hint = " (choose the key with --key-response)" if key == response_key else ""
            return f"field {key!r} is missing{hint}"
        if not isinstance(entry[key], str):
            return f"field {key!r} is a {type(entry[key]).__name__}, not a string"
    value = entry.get("input")
    if value is not None and not isinstance(value, str):
        return f"field 'input' is a {type(value).__name__}, not a string"
    return None


# --- the answer ---------------------------------------------------------------------------------

_THINKING = re.compile(r"^\s*<think>.*?</think>", re.S)
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?![\w])")


def parse_score(text: str | None) -> int | None:
    """The integer 0-100 in the judge's reply, or None when there is not exactly one.

    Accepted: ``"85"``, ``" 85.\\n"``, ``"Score: 85"``. Refused: ``"85/100"``, ``"85 or 90"``
    (two numbers: which one?), ``"8.5"``, ``"150"``, ``"-3"``, words alone. Being strict means
    a refused answer is asked again instead of guessed at; a leading ``<think>...</think>``
    block (reasoning models) is ignored, since the prompt asks for the number after it."""
    if text is None:
        return None
    text = _THINKING.sub("", text).strip()
    numbers = _NUMBER.findall(text)
    if len(numbers) != 1 or not re.fullmatch(r"\+?\d+", numbers[0]):
        return None
    score = int(numbers[0])
    return score if 0 <= score <= 100 else None


# --- the HTTP client ----------------------------------------------------------------------------


def _server_message(body: bytes) -> str:
    """The error text in a server's JSON reply (OpenAI's {"error": {"message"}}, Ollama's
    {"error": "..."}), else the start of the body."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:200]
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if isinstance(error, str):
        return error
    return text[:200]


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return min(float(value), RETRY_AFTER_CAP) if value is not None else None
    except ValueError:  # an HTTP date: rare; exponential backoff is good enough
        return None


class OpenAIChatClient:
    """POSTs one user message to ``{endpoint}/chat/completions`` and returns the reply text.

    urllib and not an SDK: the request is a small JSON object, and every OpenAI-compatible
    server (Ollama, vLLM, llama.cpp, hosted APIs) accepts the same one."""

    def __init__(
        self,
        endpoint: str,
        model: str,
        *,
        timeout: float = 60.0,
        api_key: str | None = None,
        seed: int = SEED,
    ) -> None:
        endpoint = endpoint.strip().rstrip("/")
        if not re.match(r"^https?://[^/]", endpoint):
            raise ConfigError(
                f"endpoint {endpoint!r}: an http(s) URL is needed, e.g. {OLLAMA_ENDPOINT}"
            )
        # Accept the full URL as well as its base: both are found in servers' documentation.
        self.url = (
            endpoint if endpoint.endswith("/chat/completions") else f"{endpoint}/chat/completions"
        )
        self.endpoint, self.model, self.timeout = endpoint, model, timeout
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.seed = seed

    def complete(self, prompt: str) -> str:
        # Imported here: http.client and urllib cost ~25 ms, and `scratchgpt --help` imports
        # this module (the CLI's defaults come from it).
        import http.client
        import urllib.error
        import urllib.request

        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": 0,
            "seed": self.seed,
        }
        request = urllib.request.Request(
            self.url, data=json.dumps(body).encode("utf-8"), headers=self.headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            message = _server_message(exc.read() or b"")
            if exc.code == 429 or exc.code >= 500:
                raise TransientError(
                    f"HTTP {exc.code}: {message}", retry_after=_retry_after(exc.headers)
                ) from None
            hint = {
                401: "; is the API key set (--api-key-env)?",
                403: "; is the API key allowed to use this model?",
                404: f"; is the model {self.model!r} served there (ollama pull {self.model}), "
                "and does the URL end with /v1?",
            }.get(exc.code, "")
            raise JudgeError(
                f"the judge at {self.endpoint} refused the request: HTTP {exc.code}: "
                f"{message}{hint}"
            ) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (ConnectionRefusedError, socket.gaierror)):
                raise UnreachableError(str(reason)) from None
            if isinstance(reason, (TimeoutError, ConnectionError)):
                raise TransientError(f"{type(reason).__name__}: {reason}") from None
            raise UnreachableError(str(reason)) from None
        except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
            # A timeout while reading, a reset, a server gone mid-reply.
            raise TransientError(f"{type(exc).__name__}: {exc}") from None
        return self._content(raw)

    def _content(self, raw: bytes) -> str:
        """choices[0].message.content; anything else means the URL is not a chat endpoint."""
        try:
            content = json.loads(raw)["choices"][0]["message"]["content"]
        except (ValueError, LookupError, TypeError):
            raise JudgeError(
                f"the judge at {self.url} did not answer like an OpenAI chat completion "
                f"(no choices[0].message.content in {raw[:120]!r}); check the endpoint URL"
            ) from None
        return "" if content is None else str(content)


# --- judging ------------------------------------------------------------------------------------


@dataclass
class JudgedItem:
    """One record's verdict: ``score`` is None when the judge gave no usable number."""

    index: int
    score: int | None
    raw: str | None  # the judge's last reply, verbatim (None when no reply came)
    attempts: int  # requests sent for this record, retries included
    error: str | None = None  # why no reply came (a transport failure), if so

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class JudgeResult:
    """Every record's verdict and their summary: ``mean`` of the scored ones and its standard
    error (sample standard deviation / sqrt(n); None with fewer than two scores), so two runs'
    means can be told apart from noise."""

    scores: list[JudgedItem]
    mean: float | None
    stderr: float | None
    failed: int
    scored: int = 0

    def to_json(self) -> str:
        return json.dumps([item.to_dict() for item in self.scores], indent=2, ensure_ascii=False)


def summarize(items: Sequence[JudgedItem]) -> JudgeResult:
    """Mean and standard error of the mean over the items that got a score."""
    values = [item.score for item in items if item.score is not None]
    mean = statistics.fmean(values) if values else None
    stderr = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
    return JudgeResult(
        scores=list(items),
        mean=mean,
        stderr=stderr,
        failed=len(items) - len(values),
        scored=len(values),
    )


def load_records(path: str | Path) -> list[dict[str, Any]]:
    """Records from a JSON list (the book's instruction-data-with-response.json) or from JSON
    Lines (one object a line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (the responses to judge)") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc})") from None
    try:
        data = json.loads(text)
    except ValueError:
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError as exc:
                    raise DataError(
                        f"{path}: neither a JSON list nor JSON Lines (line {number}: {exc})"
                    ) from None
        return records
    if isinstance(data, dict):
        return [data]  # JSON Lines with a single line
    if not isinstance(data, list):
        raise DataError(f"{path}: a JSON list of records is needed, not a {type(data).__name__}")
    return data


def judge_responses(
    records: Sequence[Mapping[str, Any]],
    *,
    endpoint: str = OLLAMA_ENDPOINT,
    model: str,
    response_key: str = "model_response",
    retries: int = 3,
    timeout: float = 60.0,
    backoff: float = 0.5,
    api_key: str | None = None,
    client: ChatClient | None = None,
    on_item: Callable[[JudgedItem], None] | None = None,
) -> JudgeResult:
    """Score every record's ``response_key`` against its ``output`` with the judge ``model``.

    ``retries``: how many more times a request is sent after a transient failure, and how many
    more times the judge is asked after an answer that is not a number. ``backoff``: the
    first wait before a retry, doubled each time. ``client``: anything with
    ``complete(prompt) -> str`` (default: :class:`OpenAIChatClient` on ``endpoint``).
    ``on_item`` is called after each record (a progress bar). Every record is checked before
    the first request, so a malformed file fails at once, not after an hour of judging.
    """
    if retries < 0:
        raise ConfigError(f"retries={retries}: must be >= 0")
    if not timeout > 0:
        raise ConfigError(f"timeout={timeout}: must be > 0 seconds")
    if backoff < 0:
        raise ConfigError(f"backoff={backoff}: must be >= 0 seconds")
    prompts = []
    for index, entry in enumerate(records):
        problem = record_problem(entry, response_key)
        if problem:
            raise DataError(f"record {index}: {problem}")
        prompts.append(judge_prompt(entry, response_key))
    if client is None:
        client = OpenAIChatClient(endpoint, model, timeout=timeout, api_key=api_key)
    where = getattr(client, "endpoint", endpoint)
    asker = _Asker(client, where, retries=retries, backoff=backoff)
    items = []
    for index, prompt in enumerate(prompts):
        item = asker.judge(index, prompt)
        items.append(item)
        if on_item is not None:
            on_item(item)
    result = summarize(items)
    log.info(
        "judged %d records with %s: %d scored, %d failed",
        len(items),
        model,
        result.scored,
        result.failed,
    )
    return result


class _Asker:
    """Sends prompts with the retry policy; remembers whether the server has ever answered,
    since a refused connection means "not running" before that and "went away" after."""

    def __init__(self, client: ChatClient, endpoint: str, *, retries: int, backoff: float):
        self.client, self.endpoint, self.retries, self.backoff = client, endpoint, retries, backoff
        self.answered = False

    def judge(self, index: int, prompt: str) -> JudgedItem:
        attempts = 0
        reply: str | None = None
        for _ in range(self.retries + 1):
            try:
                reply, sent = self._send(prompt)
            except TransientError as exc:
                attempts += self.retries + 1
                log.warning("record %d: no reply after %d tries (%s)", index, self.retries + 1, exc)
                return JudgedItem(index, None, reply, attempts, str(exc))
            attempts += sent
            score = parse_score(reply)
            if score is not None:
                return JudgedItem(index, score, reply, attempts)
            log.debug("record %d: not a score: %r", index, reply)
        log.warning("record %d: no score in %d answers (last: %.80r)", index, attempts, reply)
        return JudgedItem(index, None, reply, attempts)

    def _send(self, prompt: str) -> tuple[str, int]:
        """One reply, retrying transient failures; returns it and the requests it took."""
        for attempt in range(self.retries + 1):
            try:
                reply = self.client.complete(prompt)
            except UnreachableError as exc:
                if not self.answered or attempt == self.retries:
                    raise JudgeError(
                        f"cannot reach the judge at {self.endpoint}: {exc}; is the server "
                        "running? (ollama serve)"
                    ) from None
                wait = self.backoff * 2**attempt
            except TransientError as exc:
                if attempt == self.retries and not self.answered:
                    # Failing from the start (a model that cannot load, a gateway with no
                    # backend): every record would fail the same way, slowly.
                    raise JudgeError(
                        f"the judge at {self.endpoint} failed {attempt + 1} times before "
                        f"answering once: {exc}"
                    ) from None
                if attempt == self.retries:
                    raise
                wait = max(self.backoff * 2**attempt, exc.retry_after or 0.0)
                log.info("the judge failed (%s); trying again in %.1f s", exc, wait)
            else:
                self.answered = True
                return reply, attempt + 1
            time.sleep(wait)
        raise AssertionError("unreachable")  # the loop returns or raises
