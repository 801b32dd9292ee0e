"""Prompt templates: how a conversation becomes the one text a GPT reads, as named data.

A GPT sees one stream of tokens. Instruction tuning (Raschka, "Build a LLM from Scratch",
ch. 7) teaches it a layout: the instruction in a fixed frame, then the response, then the
end-of-text token. The same layout must be used when the model is asked something later, or
it answers badly; so the template a model was tuned with is saved with its checkpoint, and
``generate --template``, ``chat`` and the server read it from there.

A template is plain data (a :class:`Template`, or a JSON file of its fields). Rendering a
conversation gives *segments*: pieces of text, each marked as something the model should
learn to write (the assistant's words and the end of its turn) or not (everything else);
instruction tuning with ``--mask-prompt`` puts the loss on the first kind only.

Three are built in:

- ``alpaca``: the book's (and Stanford Alpaca's) frame: a fixed preamble, ``### Instruction:``,
  ``### Input:`` when the record has an input, ``### Response:``;
- ``phi3``: the book's exercise 7.1, Phi-3's ``<|user|>`` / ``<|assistant|>`` markers;
- ``chatml``: ``<|im_start|>role ... <|im_end|>`` for multi-turn chat with a system message.

With GPT-2's tokenizer the markers are ordinary text (several tokens each): nothing needs a
new embedding row.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError, DataError, did_you_mean

Role = Literal["system", "user", "assistant"]
ROLES: tuple[str, ...] = ("system", "user", "assistant")


@dataclass(frozen=True)
class Message:
    """One turn. ``input`` is an Alpaca record's second field (the text the instruction is
    about); templates without an input section append it to the content."""

    role: str
    content: str
    input: str = ""

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise DataError(
                f"role {self.role!r}: must be one of {', '.join(ROLES)}"
                f"{did_you_mean(self.role, ROLES)}"
            )


@dataclass(frozen=True)
class Segment:
    """A piece of rendered text; ``target``: the model learns to write it (assistant turns)."""

    text: str
    target: bool


@dataclass(frozen=True)
class Template:
    """How messages are laid out. Each ``*_format`` is a ``str.format`` pattern with
    ``{content}`` (and ``{input}`` in ``user_input_format``).

    - ``preamble``: text before everything (Alpaca's sentence);
    - ``system_format``: a system message (templates without one put its text in the
      preamble's place, before the first turn);
    - ``user_format`` / ``user_input_format``: a user turn without / with an input;
    - ``assistant_start``: what opens an assistant turn; a prompt for generation ends with it;
    - ``assistant_end``: what closes an assistant turn (the model learns to write it, then
      end-of-text ends the whole text);
    - ``stop``: strings at which generation stops (the start of a new turn).
    """

    name: str
    user_format: str
    user_input_format: str
    assistant_start: str
    assistant_end: str = ""
    preamble: str = ""
    system_format: str = "{content}\n\n"
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for field in ("user_format", "user_input_format", "system_format"):
            pattern = getattr(self, field)
            try:
                pattern.format(content="", input="")
            except (KeyError, IndexError, ValueError) as exc:
                raise ConfigError(
                    f"template {self.name!r}: {field} {pattern!r} is not a valid pattern "
                    f"(use {{content}} and {{input}}; double other braces): {exc}"
                ) from None
            if "{content}" not in pattern:
                raise ConfigError(f"template {self.name!r}: {field} must contain {{content}}")

    def render(self, messages: Sequence[Message]) -> list[Segment]:
        """The whole conversation as segments; assistant turns (and their end) are targets."""
        _check_order(messages)
        out = [Segment(self.preamble, False)] if self.preamble else []
        for m in messages:
            if m.role == "system":
                out.append(Segment(self.system_format.format(content=m.content), False))
            elif m.role == "user":
                pattern = self.user_input_format if m.input else self.user_format
                out.append(Segment(pattern.format(content=m.content, input=m.input), False))
            else:
                out.append(Segment(self.assistant_start, False))
                out.append(Segment(m.content + self.assistant_end, True))
        return [s for s in out if s.text]

    def prompt(self, messages: Sequence[Message]) -> str:
        """The text to generate from: the conversation so far (ending with a user turn) and
        the opening of the assistant's answer."""
        if not messages or messages[-1].role != "user":
            raise DataError("a prompt ends with a user turn: the one to answer")
        return "".join(s.text for s in self.render(messages)) + self.assistant_start

    def to_dict(self) -> dict[str, Any]:
        """Plain data: what a checkpoint stores, and what a template file holds."""
        d = dataclasses.asdict(self)
        d["stop"] = list(self.stop)
        return d

    @classmethod
    def from_dict(cls, d: Any, *, source: str = "a template") -> Template:
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: a template is a JSON object of its fields")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(
                f"{source}: unknown template field(s) {', '.join(unknown)}; the fields are "
                f"{', '.join(sorted(names))}"
            )
        missing = sorted(
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.name not in d
        )
        if missing:
            raise ConfigError(f"{source}: the template lacks {', '.join(missing)}")
        return cls(**{**d, "stop": tuple(d.get("stop") or ())})


def _check_order(messages: Sequence[Message]) -> None:
    """System messages come first; after them, user and assistant turns alternate, user
    first."""
    turns = [m for m in messages if m.role != "system"]
    if any(m.role == "system" for m in messages[len(messages) - len(turns) :]):
        raise DataError("a system message must come before the first user turn")
    for i, m in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if m.role != expected:
            raise DataError(
                f"turn {i + 1} is {m.role!r} where {expected!r} was expected: user and "
                "assistant turns alternate, user first"
            )


ALPACA_PREAMBLE = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request."
)

TEMPLATES: dict[str, Template] = {
    # The book's format_input (ch. 7) with the response after it, one turn after another.
    "alpaca": Template(
        name="alpaca",
        preamble=ALPACA_PREAMBLE,
        system_format="\n\n{content}",  # after the preamble, before the first instruction
        user_format="\n\n### Instruction:\n{content}",
        user_input_format="\n\n### Instruction:\n{content}\n\n### Input:\n{input}",
        assistant_start="\n\n### Response:\n",
        stop=("\n\n### Instruction:", "\n\n### Input:"),
    ),
    # The book's exercise 7.1: Phi-3's markers.
    "phi3": Template(
        name="phi3",
        system_format="<|system|>\n{content}\n\n",
        user_format="<|user|>\n{content}",
        user_input_format="<|user|>\n{content}\n{input}",
        assistant_start="\n\n<|assistant|>\n",
        stop=("<|user|>", "<|assistant|>", "<|system|>"),
    ),
    "chatml": Template(
        name="chatml",
        system_format="<|im_start|>system\n{content}<|im_end|>\n",
        user_format="<|im_start|>user\n{content}<|im_end|>\n",
        user_input_format="<|im_start|>user\n{content}\n\n{input}<|im_end|>\n",
        assistant_start="<|im_start|>assistant\n",
        assistant_end="<|im_end|>\n",
        stop=("<|im_end|>", "<|im_start|>"),
    ),
}


def get_template(name_or_path: str | Path | Template | dict[str, Any]) -> Template:
    """A built-in template by name, a template JSON file, a dict of its fields, or itself."""
    if isinstance(name_or_path, Template):
        return name_or_path
    if isinstance(name_or_path, dict):
        return Template.from_dict(name_or_path)
    key = str(name_or_path)
    if key in TEMPLATES:
        return TEMPLATES[key]
    path = Path(key)
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"template file {path}: not readable JSON ({exc})") from None
        return Template.from_dict(data, source=str(path))
    raise ConfigError(
        f"template {key!r}: neither a built-in template ({', '.join(TEMPLATES)})"
        f"{did_you_mean(key, list(TEMPLATES))} nor a JSON file of one"
    )
