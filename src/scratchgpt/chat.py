"""A conversation with an instruction-tuned model: the turns so far, framed by its template,
fitted into its context window.

A GPT has no memory between calls: every answer is generated from one prompt that holds the
whole conversation, laid out the way the model was tuned (:mod:`scratchgpt.templates`):
the system message, the earlier user and assistant turns, the new user turn, and the opening
of the assistant's answer. The context window is fixed (``context_length`` positions), and
the answer needs room too, so once the conversation is longer than
``context_length - max_new_tokens`` tokens the oldest turns are left out, a whole turn (the
question with its answer) at a time: the model then sees the recent part of the conversation,
which is what a reply depends on most.

:class:`ChatSession` does the bookkeeping and nothing else: it needs a tokenizer to count
tokens, never a model, so it can be tested (and reused by a server) without one. The
``scratchgpt chat`` command puts it in front of a :class:`~scratchgpt.generation.Generator`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from .errors import ConfigError, DataError
from .templates import Message, Template

log = logging.getLogger(__name__)

DROP_NOTICE = "the conversation no longer fits the context: dropping the oldest turns"

HELP = """\
/reset          forget the conversation (the system message stays)
/system TEXT    set the system message and start a new conversation (/system alone clears it)
/help           this list
Anything else is your next message; Ctrl-C stops an answer, Ctrl-D (end of input) exits."""


class TextCodec(Protocol):
    """What a session needs of a tokenizer: text to ids (to count), ids to text (to cut)."""

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


def stop_strings(template: Template) -> tuple[str, ...]:
    """Where an answer ends: the template's stop strings and the end of an assistant turn.

    The end of a turn (ChatML's ``<|im_end|>``) is what a tuned model writes after its answer;
    generating past it would only make up the user's next turn. End-of-text, the other way an
    answer ends, is a token, not a string: the generator stops at it by itself.
    """
    end = template.assistant_end.strip()
    return template.stop + ((end,) if end and end not in template.stop else ())


class ChatSession:
    """The state of one conversation: template, system message, turns, token budget.

    ``tokenizer`` counts tokens (any object with ``encode`` and ``decode``);
    ``context_length`` is the model's window and ``max_new_tokens`` the room kept for each
    answer, so every prompt is at most ``context_length - max_new_tokens`` tokens long.

    Use: ``ids = session.prompt_ids(text)`` (or :meth:`prompt_text`), generate from it, then
    ``session.add_answer(answer)``, which records the question and its answer as one turn.
    """

    def __init__(
        self,
        template: Template,
        tokenizer: TextCodec,
        *,
        context_length: int,
        max_new_tokens: int,
        system: str | None = None,
    ) -> None:
        if max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens={max_new_tokens}: must be >= 1")
        if context_length - max_new_tokens < 1:
            raise ConfigError(
                f"max_new_tokens={max_new_tokens} leaves no room for the conversation in the "
                f"model's context of {context_length} tokens: ask for fewer new tokens"
            )
        self.template = template
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.max_new_tokens = max_new_tokens
        self.system = system or None
        self.turns: list[tuple[Message, Message]] = []  # (user, assistant), oldest first
        # Turns before this index no longer fit. A dropped turn stays dropped even if a
        # shorter question would leave room for it again: the conversation the model sees
        # only ever moves forward, and each prompt starts the search where the last one ended.
        self._first = 0
        self._pending: str | None = None  # the question being answered
        self._told = False  # the drop notice is logged once per session

    @property
    def budget(self) -> int:
        """The most tokens a prompt may have: the context less the room for the answer."""
        return self.context_length - self.max_new_tokens

    @property
    def messages(self) -> list[Message]:
        """The conversation as the next prompt would show it (system message and the turns
        that still fit), without the pending question."""
        head = [Message("system", self.system)] if self.system else []
        return head + [m for turn in self.turns[self._first :] for m in turn]

    def prompt_ids(self, user_text: str) -> list[int]:
        """The prompt for the answer to ``user_text``, as token ids (see :meth:`prompt_text`)."""
        return self._build(user_text)[1]

    def prompt_text(self, user_text: str) -> str:
        """The prompt for the answer to ``user_text``: the system message, as many of the
        most recent complete turns as fit, the new user turn and the assistant's opening.

        Its encoding is at most :attr:`budget` tokens. The oldest turns are dropped first
        (logged once per session). When even the new turn alone (with the system message)
        is too long, the prompt is its *last* :attr:`budget` tokens: the end of the question
        and the assistant's opening, which the answer depends on most, survive; the system
        message and the start of the question do not (a warning says so).
        """
        return self._build(user_text)[0]

    def _build(self, user_text: str) -> tuple[str, list[int]]:
        head = [Message("system", self.system)] if self.system else []
        question = [Message("user", user_text)]
        self._pending = user_text
        while True:
            kept = [m for turn in self.turns[self._first :] for m in turn]
            text = self.template.prompt(head + kept + question)
            ids = self.tokenizer.encode(text)
            if len(ids) <= self.budget:
                return text, ids
            if self._first == len(self.turns):
                break
            if not self._told:
                log.warning(DROP_NOTICE)
                self._told = True
            self._first += 1
        log.warning(
            "your message does not fit the context (%d tokens, %d allowed): the model sees "
            "only its last part",
            len(ids),
            self.budget,
        )
        ids = ids[-self.budget :]
        return self.tokenizer.decode(ids), ids

    def add_answer(self, text: str) -> None:
        """Record the answer to the question of the last prompt; the pair becomes a turn."""
        if self._pending is None:
            raise DataError("add_answer: no question is waiting for an answer (prompt first)")
        self.turns.append((Message("user", self._pending), Message("assistant", text)))
        self._pending = None

    def reset(self) -> None:
        """Forget every turn; the system message stays."""
        self.turns.clear()
        self._first = 0
        self._pending = None

    def set_system(self, text: str | None) -> None:
        """A new system message (None or "" clears it). It changes who the assistant is, so
        the conversation starts again."""
        self.system = text or None
        self.reset()

    def command(self, line: str) -> str | None:
        """Carry out ``line`` if it is a command (``/reset``, ``/system TEXT``, ``/help``)
        and return what to tell the user; None when it is a message for the model."""
        if not line.startswith("/"):
            return None
        name, _, rest = line.strip().partition(" ")
        if name == "/reset":
            self.reset()
            return "[conversation reset]"
        if name == "/system":
            self.set_system(rest.strip())
            done = "set" if self.system else "cleared"
            return f"[system message {done}; conversation reset]"
        if name == "/help":
            return HELP
        return f"[unknown command {name}]\n{HELP}"
