"""OpenAI's request bodies for completions and chat, as typed models, and its error shape.

The fields are the ones OpenAI's API reference gives for ``POST /v1/completions`` and
``POST /v1/chat/completions``, plus two extensions (``top_k``, ``repetition_penalty``).
Types are checked strictly: ``"max_tokens": "10"`` is an error, as it is for OpenAI, not a
quiet conversion. A field this server does not know is an error too, so a typo
(``max_token``) is reported instead of silently ignored; OpenAI fields it knows but cannot
honour (log-probabilities, tools, penalties other than 0) are accepted only at their
"off" values and refused otherwise, naming the field. Value ranges of the sampling settings
are checked once, by :class:`~scratchgpt.config.SamplingConfig`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

# OpenAI fields accepted only at these values: (field, the value meaning "off").
UNSUPPORTED: dict[str, Any] = {
    "logprobs": None,
    "top_logprobs": None,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "logit_bias": None,
    "best_of": None,
    "suffix": None,
    "tools": None,
    "tool_choice": None,
    "functions": None,
    "function_call": None,
    "response_format": None,
}


class ApiError(Exception):
    """A request that cannot be served: an HTTP status and OpenAI's error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.kind = kind
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """``{"error": {message, type, param, code}}``, as OpenAI answers."""
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    include_usage: bool = False


class _Request(BaseModel):
    """What completions and chat share: the model, sampling, stopping, streaming."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None  # extension: sample among the k most likely tokens
    repetition_penalty: float = 1.0  # extension: CTRL's penalty on tokens already seen
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None  # OpenAI's end-user id: accepted, not used
    # Known OpenAI fields this server does not implement; see UNSUPPORTED.
    logprobs: Any = None
    top_logprobs: Any = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: Any = None
    tools: Any = None
    tool_choice: Any = None
    functions: Any = None
    function_call: Any = None
    response_format: Any = None

    @model_validator(mode="after")
    def _supported(self) -> _Request:
        for name, off in UNSUPPORTED.items():
            value = getattr(self, name, off)
            if value not in (off, False):
                raise ValueError(f"{name}={value!r} is not supported by this server: leave it out")
        if self.max_tokens is not None and self.max_tokens < 0:
            raise ValueError(f"max_tokens={self.max_tokens}: must be >= 0")
        if self.n < 1:
            raise ValueError(f"n={self.n}: must be >= 1")
        return self

    @property
    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class CompletionRequest(_Request):
    """``POST /v1/completions``: one prompt (text or token ids) or a list of them."""

    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    best_of: int | None = None
    suffix: str | None = None

    @property
    def prompts(self) -> list[str | list[int]]:
        """Each prompt on its own: a text, or a list of token ids."""
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if p and all(isinstance(x, int) for x in p):
            return [list(p)]  # type: ignore[arg-type]
        return list(p)  # type: ignore[arg-type]


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    @property
    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatRequest(_Request):
    """``POST /v1/chat/completions``: a conversation framed by the model's chat template."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = None  # OpenAI's newer name for max_tokens

    @model_validator(mode="after")
    def _one_limit(self) -> ChatRequest:
        if self.max_completion_tokens is not None:
            if self.max_tokens is not None and self.max_tokens != self.max_completion_tokens:
                raise ValueError("max_tokens and max_completion_tokens differ: give one")
            self.max_tokens = self.max_completion_tokens
        return self


# Fields that take one of several shapes: what to say when a value fits none of them.
SHAPES = {
    "prompt": "a string, a list of strings, a list of token ids, or a list of such lists",
    "stop": "a string or a list of strings",
}


def parse(model: type[_Request], data: Any) -> Any:
    """``data`` (decoded JSON) as ``model``, or an :class:`ApiError` naming the first
    problem: its field and what was wrong."""
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        # pydantic adds the union member tried ("str", "list[int]") to the location: drop it.
        loc = [x for x in first["loc"] if isinstance(x, int) or not _is_type_tag(x)]
        where = ".".join(str(x) for x in loc)
        param = str(loc[0]) if loc else None
        if first["type"] == "extra_forbidden":
            message = f"Unrecognized request argument supplied: {where}"
        elif first["type"] == "missing":
            message = f"{where} is required"
        elif len(loc) == 1 and where in SHAPES:
            message = f"{where}: must be {SHAPES[where]}"
        else:
            message = first["msg"].removeprefix("Value error, ")
            if where:
                message = f"{where}: {message}"
        raise ApiError(400, message, param=param) from None


def _is_type_tag(part: object) -> bool:
    text = str(part)
    return text in ("str", "int", "float", "bool", "none") or "[" in text
