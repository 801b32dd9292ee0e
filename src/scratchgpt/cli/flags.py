"""The one way the command line gets its flags: from the fields of the typed config dataclasses.

Each field of a config dataclass (``TrainConfig``, ``SamplingConfig``, ``EncoderConfig``, ...)
becomes one flag, spelt ``--field-name`` (or a documented short name, such as ``--data`` for
``data.source``), with the help text the field carries in ``metadata["help"]`` and its config
key and default shown after it. A flag hands the text it was given to the config's own loader
unconverted, so each value is coerced and validated exactly once, by the config (which names
it by its config key), and a setting never has two spellings in ``--help``.

Booleans are switches with a ``--no-`` form (``--compile`` / ``--no-compile``); optional
fields accept ``none`` to clear a value set by a config file.

Why argparse, and not jsonargparse or tyro: see the docstring of :mod:`scratchgpt.cli`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from collections.abc import Collection, Mapping
from typing import Any, NoReturn

from ..errors import did_you_mean

# Where a flag's value lands in the parsed namespace: the config key (``training.lr``) for
# a run config section, the bare field name elsewhere.
UNSET = None


class Parser(argparse.ArgumentParser):
    """argparse with short usage lines and one-paragraph errors.

    A command with sixty options would print a usage block of thirty lines before every
    error; here the usage is one line (``usage: scratchgpt train [OPTIONS]``), the error names
    the closest existing flag when one was misspelt, and ``--help`` lists everything.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        unknown = message.removeprefix("unrecognized arguments: ")
        if unknown != message:
            flags = [s for a in self._actions for s in a.option_strings if s.startswith("--")]
            first = unknown.split()[0].partition("=")[0]
            message += did_you_mean(first, flags)
        sys.stderr.write(
            f"usage: {self.format_usage().removeprefix('usage: ').strip()}\n"
            f"{self.prog}: error: {message}\n"
        )
        raise SystemExit(2)


class HelpFormatter(argparse.HelpFormatter):
    """Wider help columns, so each setting's help stays on one or two lines."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30, width=100)


def short_usage(command: str, positional: str = "") -> str:
    """The one-line usage of a command with many options."""
    return f"scratchgpt {command} [OPTIONS]{' ' + positional if positional else ''}"


def _kind(cls: type, field: dataclasses.Field[Any]) -> tuple[type, tuple[str, ...]]:
    """(base type, literal choices) of a dataclass field; ``X | None`` counts as X."""
    hint = typing.get_type_hints(cls)[field.name]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is typing.Literal:
        return str, tuple(str(a) for a in typing.get_args(hint))
    return hint, ()


def add_config_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    section: str | None = None,
    names: Mapping[str, str] | None = None,
    skip: Collection[str] = (),
    defaults: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Add one flag per field of the dataclass ``cls``; returns {dest: config key}.

    ``section`` prefixes the config key (``training`` -> ``training.lr``); ``names`` gives a
    field another flag name (``{"source": "data"}``); ``skip`` leaves fields out (set by the
    command itself); ``defaults`` overrides the default shown in the help.
    """
    names = names or {}
    defaults = defaults or {}
    added: dict[str, str] = {}
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        key = f"{section}.{field.name}" if section else field.name
        flag = "--" + names.get(field.name, field.name).replace("_", "-")
        help_text = field.metadata.get("help")
        if not help_text:
            raise TypeError(f"{cls.__name__}.{field.name} has no help text in its metadata")
        kind, choices = _kind(cls, field)
        default = defaults.get(field.name, _default(field))
        extra = []
        if choices:
            extra.append(f"one of {', '.join(choices)}")
        if section:
            extra.append(key)
        if default not in (dataclasses.MISSING, None) and kind is not bool:
            extra.append(f"default: {default}")
        elif kind is bool and default is True:
            extra.append("default: on")
        text = help_text + (f" [{'; '.join(extra)}]" if extra else "")
        text = text.replace("%", "%%")
        if kind is bool:
            parser.add_argument(
                flag, dest=key, action=argparse.BooleanOptionalAction, default=UNSET, help=text
            )
        else:
            metavar = {int: "N", float: "X"}.get(kind, field.name.upper())
            if choices:
                metavar = "{" + ",".join(choices) + "}"
            parser.add_argument(flag, dest=key, metavar=metavar, default=UNSET, help=text)
        added[key] = key
    return added


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def given(args: argparse.Namespace, keys: Collection[str]) -> dict[str, Any]:
    """The values of ``keys`` the user gave on the command line ({config key: text})."""
    values = vars(args)
    return {k: values[k] for k in keys if values.get(k) is not UNSET}
