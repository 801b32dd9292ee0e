"""The boundary between plain data and the typed configs.

The configs are stdlib frozen dataclasses: building one in Python needs nothing but the
dataclass, and ``dataclasses.replace``, ``asdict`` and ``fields`` work on them. Plain data
(YAML, JSON, command-line strings) enters through one function, :func:`from_data`, which has
pydantic coerce each value to its field's annotation: PyYAML reads ``3e-4`` as a string,
flags are all strings, YAML gives ``1`` where ``1.0`` is meant and ``yes`` for a boolean.
pydantic's errors become the project's messages, one line per problem, each naming
``section.field=value`` and what is allowed.

Python callers build the dataclasses directly, and each ``__post_init__`` starts with
:func:`check_field_types`, which refuses a wrong type without converting it: a string where a
number is meant is a bug in the calling code, not a spelling to read. That check is plain
Python, so pydantic is imported only on the first :func:`from_data` call and ``import
scratchgpt`` stays quick.

Each field's one-line help (what ``--help`` shows) and the names other projects give it live
in the field's metadata (:func:`option`), next to the field they describe.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

from ..errors import ConfigError, did_you_mean

_T = TypeVar("_T")
_MISSING: Any = dataclasses.MISSING
# How a flag or a YAML file writes "no value" for a field that may be None.
NONE_SPELLINGS = ("none", "null")


def option(
    help: str,
    default: Any = _MISSING,
    *,
    default_factory: Any = _MISSING,
    aliases: tuple[str, ...] = (),
    path: str | None = None,
) -> Any:
    """A dataclass field carrying its one-line ``help``, as every config field does.

    ``aliases`` are the names other projects use for the same setting (nanoGPT's ``n_embd``);
    an unknown key that is one of them gets "did you mean" the field, and ``scratchgpt config
    convert`` translates them. ``path`` is where the field is written in a run config file
    when that is not ``section.field`` (RunConfig's ``init_from`` is ``model.init_from``).
    The help is handed to argparse as is, so it must not contain '%' (a test checks).
    """
    metadata: dict[str, Any] = {"help": help}
    if aliases:
        metadata["aliases"] = aliases
    if path is not None:
        metadata["path"] = path
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class FieldKind:
    """What a field's annotation allows, read once per class from its type hints."""

    types: tuple[type, ...]  # the Python types a value may have (bool is never a number)
    optional: bool  # None allowed
    wants: str  # the end of an error message: "must be an integer"
    choices: tuple[str, ...] = ()  # a Literal's values
    nested: type | None = None  # a dataclass-valued field (RunConfig's sections)


def _kind(hint: Any) -> FieldKind:
    optional = False
    if typing.get_origin(hint) in (Union, types.UnionType):
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(rest) < len(typing.get_args(hint))
        if len(rest) != 1:
            raise TypeError(f"config fields are one type or `type | None`, not {hint!r}")
        hint = rest[0]
    if typing.get_origin(hint) is Literal:
        choices = tuple(str(c) for c in typing.get_args(hint))
        return FieldKind((str,), optional, f"must be one of {', '.join(choices)}", choices)
    if dataclasses.is_dataclass(hint):
        return FieldKind((hint,), optional, f"must be a {hint.__name__}", nested=hint)
    wants = {
        bool: "must be true or false",
        int: "must be an integer",
        float: "must be a number",
        str: "must be a string",
    }
    if hint not in wants:
        raise TypeError(f"unsupported config field type {hint!r}")
    # An int is a valid float (YAML writes 1 for 1.0); Python's bool is an int, refused below.
    return FieldKind((int, float) if hint is float else (hint,), optional, wants[hint])


@functools.cache
def field_kinds(cls: type) -> dict[str, FieldKind]:
    """Every field of the dataclass ``cls`` and what it allows, in field order."""
    hints = typing.get_type_hints(cls)
    return {f.name: _kind(hints[f.name]) for f in dataclasses.fields(cls)}


def _where(section: str | None, name: str) -> str:
    return f"{section}.{name}" if section else name


def one_of(where: str, value: Any, choices: tuple[str, ...]) -> str:
    """The message for a value outside a fixed set of names, with the closest as a hint."""
    return (
        f"{where}={value!r}: must be one of {', '.join(choices)}{did_you_mean(str(value), choices)}"
    )


def check_field_types(obj: Any, *, section: str | None = None) -> None:
    """Refuse field values of the wrong type in a dataclass built in Python, naming each.

    Nothing is converted (the instance is frozen, and a str where a number is meant is a
    caller's bug); plain data is converted first, by :func:`from_data`. A Literal field is
    only checked to be a string here: its ``__post_init__`` names the allowed values.
    """
    problems = []
    for name, kind in field_kinds(type(obj)).items():
        value = getattr(obj, name)
        if value is None and kind.optional:
            continue
        if not isinstance(value, kind.types) or (
            isinstance(value, bool) and bool not in kind.types
        ):
            problems.append(f"{_where(section, name)}={value!r}: {kind.wants}")
    if problems:
        raise ConfigError("\n".join(problems))


def check_keys(
    cls: type, data: Mapping[str, Any], *, section: str | None, extra: tuple[str, ...] = ()
) -> str | None:
    """One line naming every key of ``data`` that is not a field of ``cls`` (or None).

    Each unknown key gets a hint: the field it is another project's name for (from the
    fields' ``aliases``), else the closest field name.
    """
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    known = [f.name for f in fields] + list(extra)
    aliases = {a: f.name for f in fields for a in f.metadata.get("aliases", ())}
    unknown = [str(k) for k in data if k not in known]
    if not unknown:
        return None
    hints = []
    for key in unknown:
        hint = f" (did you mean {aliases[key]!r}?)" if key in aliases else did_you_mean(key, known)
        hints.append(f"{section}.{key}{hint}" if section else f"{key!r}{hint}")
    return (
        f"unknown key(s) {'; '.join(hints)}. Valid keys{f' of {section}' if section else ''}: "
        f"{', '.join(known)}"
        + (
            ". `scratchgpt config convert` translates other projects' names"
            if any(k in aliases for k in unknown)
            else ""
        )
    )


def from_data(cls: type[_T], data: Any, *, section: str | None = None) -> _T:
    """The dataclass ``cls`` built from plain data, each value coerced to its field's type.

    ``data`` is a mapping of field to value, as read from YAML, JSON or flags; a field that
    is itself a dataclass (a RunConfig section) takes a nested mapping. ``section`` names
    where the fields sit ("training") in the messages. Every problem is reported, one line
    each, in a single :class:`ConfigError`: unknown keys, values of the wrong type, and what
    the dataclasses' ``__post_init__`` checks refuse (ranges, relations between fields).
    """
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{section or cls.__name__}: must be a mapping of field: value, got {data!r}"
        )
    problems: list[str] = []
    reported: set[tuple[str, ...]] = set()
    plain = _prepare(cls, data, section, (), problems, reported)
    from pydantic import ValidationError

    try:
        result = _adapter(cls).validate_python(plain)
    except ValidationError as exc:
        for error in exc.errors():
            if tuple(map(str, error["loc"])) not in reported:
                problems.append(_describe(cls, error, section))
    if problems:
        raise ConfigError("\n".join(dict.fromkeys(problems)))  # in order, each once
    return result


@functools.cache
def _adapter(cls: type) -> Any:
    """pydantic's validator for ``cls``, built once per class (about a millisecond)."""
    from pydantic import TypeAdapter

    return TypeAdapter(cls)


def _prepare(
    cls: type,
    data: Mapping[str, Any],
    section: str | None,
    loc: tuple[str, ...],
    problems: list[str],
    reported: set[tuple[str, ...]],
) -> dict[str, Any]:
    """``data`` with the spellings pydantic does not read as we do: "none"/"null" (how a
    flag says None) becomes None where None is allowed, and a boolean where a number is
    meant is refused (pydantic would read true as 1). Unknown keys are reported here."""
    unknown = check_keys(cls, data, section=section)
    if unknown:
        problems.append(unknown)
    kinds = field_kinds(cls)
    out: dict[str, Any] = {}
    for key, value in data.items():
        kind = kinds.get(key)
        if kind is None:
            continue
        if isinstance(value, str) and value.lower() in NONE_SPELLINGS and kind.optional:
            value = None
        elif isinstance(value, bool) and bool not in kind.types and kind.nested is None:
            problems.append(f"{_where(section, key)}={value!r}: {kind.wants}")
            reported.add((*loc, key))
            continue
        elif kind.nested is not None and isinstance(value, Mapping):
            value = _prepare(
                kind.nested, value, _where(section, key), (*loc, key), problems, reported
            )
        out[key] = value
    return out


def _describe(cls: type, error: Any, section: str | None) -> str:
    """One pydantic error as the project's message: ``section.field=value: what is allowed``."""
    loc = [str(part) for part in error["loc"]]
    owner, prefix, kind, name = cls, section, None, ""
    for depth, name in enumerate(loc):
        fields = {f.name: f for f in dataclasses.fields(owner)}  # type: ignore[arg-type]
        if name not in fields:
            return f"{_where(prefix, '.'.join(loc[depth:]))}: {error['msg']}"
        kind = field_kinds(owner)[name]
        path = fields[name].metadata.get("path")
        if depth < len(loc) - 1:
            prefix = path or _where(prefix, name)
            owner = kind.nested or owner
        else:
            name = path or _where(prefix, name)
    if error["type"] in ("value_error", "assertion_error"):
        # A __post_init__ refused the values: its message already says what is wrong.
        message = str(error.get("ctx", {}).get("error", error["msg"]))
        where = name if loc else (section or "")
        return message if not where or message.startswith(where) else f"{where}.{message}"
    if error["type"] == "missing":
        return f"{name}: must be set"
    value = error["input"]
    if kind is None:
        return f"{name}={value!r}: {error['msg']}"
    if kind.choices and isinstance(value, str):
        return one_of(name, value, kind.choices)
    return f"{name}={value!r}: {kind.wants}"


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The plain data of a YAML or JSON file, with a clear error for a missing or bad file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # yaml.YAMLError and JSONDecodeError: one message for both
        raise ConfigError(
            f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}"
        ) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    return data


def check_sections(d: Any, sections: tuple[str, ...], *, what: str) -> dict[str, Any]:
    """``d`` (None: empty) as a mapping of ``sections`` to mappings, or a ConfigError naming
    the unknown section (with a did-you-mean) or the section that is not a mapping."""
    d = {} if d is None else d
    if not isinstance(d, Mapping):
        raise ConfigError(f"{what} must be a mapping of sections, got {d!r}")
    unknown = [k for k in d if k not in sections]
    if unknown:
        hints = "; ".join(f"{k!r}{did_you_mean(str(k), sections)}" for k in unknown)
        raise ConfigError(
            f"unknown section(s) {hints}: {what} has the sections {', '.join(sections)}"
        )
    for name in sections:
        if d.get(name) is not None and not isinstance(d[name], Mapping):
            raise ConfigError(f"section {name!r} must be a mapping of field: value")
    return dict(d)
