"""Configs from YAML files: one reader for training recipes, cleaning pipelines and build recipes.

One precedence everywhere: a flag given on the command line, else the file, else the config's default. A file's
problems are errors that name the file, the line and the key, and for a misspelt key the closest known one.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import TypeVar

import yaml

from taide.errors import TaideError

T = TypeVar("T")


def read_yaml(path: Path, error: type[TaideError] = TaideError,
              what: str = "a mapping of settings") -> tuple[dict, dict[tuple[str, ...], int]]:
    """The mapping in ``path`` and the 1-based line of every key at the top and one level down ((key,) and
    (section, key)). An unreadable file, invalid YAML or anything but a mapping raises ``error``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise error(f"{path}: cannot read it ({e.strerror})") from e
    try:
        settings = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        raise error(f"{path}{f':{mark.line + 1}' if mark else ''}: invalid YAML ({problem})") from e
    if not isinstance(settings, dict):
        raise error(f"{path}: expected {what}, got {type(settings).__name__}")
    lines: dict[tuple[str, ...], int] = {}
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    for key, value in root.value if isinstance(root, yaml.MappingNode) else []:
        lines[(key.value,)] = key.start_mark.line + 1
        for inner, _ in value.value if isinstance(value, yaml.MappingNode) else []:
            lines[(key.value, inner.value)] = inner.start_mark.line + 1
    return settings, lines


def check_keys(path: Path, lines: dict, settings: dict, known, error: type[TaideError] = TaideError,
               section: str | None = None, hint: str = "", listing: str = "known") -> None:
    """Raise ``error`` naming ``path:line``, the key and the closest known key (or ``hint``) for the first key of
    ``settings`` (the file's top level, or its ``section``) that is not in ``known``, which it lists after
    ``listing``."""
    known = sorted(known)
    unknown = sorted(set(settings) - set(known))
    if not unknown:
        return
    where = (section, unknown[0]) if section else (unknown[0],)
    line = lines.get(where) or (lines.get((section,)) if section else None)
    close = difflib.get_close_matches(unknown[0], known, n=1)
    why = hint or (f" (did you mean {close[0]!r}?)" if close else "")
    raise error(f"{path}{f':{line}' if line else ''}: {f'{section}.' if section else ''}{unknown[0]}: unknown key"
                f"{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}{why}; {listing}: {', '.join(known)}")


def load_config(path: str | Path | None, cls: type[T], error: type[TaideError] = TaideError,
                required: tuple[str, ...] = (), **flags) -> T:
    """``cls`` (a config dataclass) from the YAML file at ``path`` (its keys are the fields; None: no file), with
    ``flags`` on top (None means not given). ``required``: fields that the file or a flag must give."""
    settings, lines = {}, {}
    if path is not None:
        path = Path(path)
        settings, lines = read_yaml(path, error)
    given = {k: v for k, v in flags.items() if v is not None}
    return config_from(settings, cls, path, lines, error, given=given, required=required)


def config_from(settings: dict, cls: type[T], path: Path | None = None, lines: dict | None = None,
                error: type[TaideError] = TaideError, section: str | None = None, *, given: dict | None = None,
                hidden: tuple[str, ...] = (), defaults: dict | None = None, hint: str = "",
                taken: tuple[str, ...] = (), required: tuple[str, ...] = ()) -> T:
    """``cls`` from ``settings``, the mapping a file (``path``, whose key lines are ``lines``) holds at its top level
    or under ``section``; ``given`` (flags) on top, ``defaults`` beneath. ``hidden``: fields the file may not set
    (the caller sets them); ``taken``: keys the caller took out of ``settings`` itself (listed as known);
    ``required``: fields the file or ``given`` must set. Every problem is ``error`` naming path:line, the section and
    key: a key that is not a field (with the closest one, or ``hint``), a value of the wrong kind, a missing setting,
    and what ``cls`` itself refuses."""
    lines = lines or {}

    def fail(key: str | None, message: str):
        line = (lines.get((section, key) if section else (key,)) if key else None) or (
            lines.get((section,)) if section else None)
        where = ".".join(k for k in (section, key) if k)
        raise error(f"{path or cls.__name__}{f':{line}' if line else ''}: {f'{where}: ' if where else ''}{message}")

    names = [f.name for f in dataclasses.fields(cls) if f.name not in hidden]
    if path is not None:
        check_keys(path, lines, settings, names + list(taken), error, section=section, hint=hint,
                   listing=f"the {section} section takes" if section else "known")
    elif set(settings) - set(names):
        fail(None, f"unknown settings {', '.join(sorted(set(settings) - set(names)))}; known: {', '.join(names)}")
    values = {**(defaults or {}), **settings, **(given or {})}
    hints = typing.get_type_hints(cls)
    for key in settings:
        problem = _value_problem(hints[key], settings[key])
        if problem:
            fail(key, problem)
    missing = [k for k in required if k not in values]
    if missing:
        raise error(f"missing settings: {', '.join(missing)} (give them in {path or 'a file'} or as flags)")
    try:
        return cls(**values)
    except (TaideError, TypeError, ValueError) as e:
        message = str(e)
        key = next((k for k in values if message.startswith((f"{k}:", f"{k} ", f"{k}."))), None)
        key = key or next((k for k in values if any(c.__name__ in message for c in _configs_in(hints[k]))), None)
        if key in (given or {}):  # the flag's value, not the file's
            raise error(f"{key} (given as a flag): {message.removeprefix(f'{key}: ')}") from e
        if key is not None and key not in settings:  # the caller's value: no line to name
            raise error(f"{path or cls.__name__}: {message}") from e
        fail(key, message.removeprefix(f"{key}: ") if key else message)


def _configs_in(hint) -> list[type]:
    """The config dataclasses a field's type names (LoraConfig in ``LoraConfig | None``): their errors are the
    field's."""
    return [a for a in (hint, *typing.get_args(hint)) if isinstance(a, type) and dataclasses.is_dataclass(a)]


_KINDS = {int: "a whole number", float: "a number", bool: "true or false", str: "a text", Path: "a path",
          type(None): "null"}


def _fits(hint, value) -> bool:
    """Whether ``value`` (as YAML gives it) is of the type ``hint``; types this cannot judge (a nested config, Any)
    fit, and the config checks them."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(a, value) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint in (int, float):
        return isinstance(value, (int, float) if hint is float else int) and not isinstance(value, bool)
    if hint in (str, Path):
        return isinstance(value, str) and bool(value.strip())
    if origin in (list, tuple):
        return isinstance(value, (list, tuple)) and all(_fits(args[0], v) for v in value) if args else True
    if origin is dict:
        return isinstance(value, dict) and all(_fits(args[0], k) and _fits(args[1], v) for k, v in value.items())
    return True


def _described(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_described(a) for a in args)
    if origin in (list, tuple) and args:
        return f"a list of {_described(args[0]).removeprefix('a ')}s" if args[0] in (str, Path) else "a list"
    if origin is dict:
        return "a mapping"
    return _KINDS.get(hint, getattr(hint, "__name__", str(hint)))


def _value_problem(hint, value) -> str | None:
    """What is wrong with ``value`` for a field of type ``hint``, or None."""
    if _fits(hint, value):
        return None
    floats = float in (hint, *typing.get_args(hint))
    tip = " (YAML reads a number like 1e-4 as text: write 1.0e-4)" if isinstance(value, str) and floats else ""
    return f"{value!r} is not {_described(hint)}{tip}"
