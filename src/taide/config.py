"""Configs from YAML files: one reader for training recipes, cleaning pipelines and build recipes.

One precedence everywhere: a flag given on the command line, else the file, else the config's default. A file's
problems are errors that name the file, the line and the key, and for a misspelt key the closest known one.
"""

from __future__ import annotations

import dataclasses
import difflib
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
    settings: dict = {}
    if path is not None:
        path = Path(path)
        settings, lines = read_yaml(path, error)
        check_keys(path, lines, settings, [f.name for f in dataclasses.fields(cls)], error)
    settings.update({k: v for k, v in flags.items() if v is not None})
    missing = [k for k in required if k not in settings]
    if missing:
        raise error(f"missing settings: {', '.join(missing)} (give them in {path or 'a file'} or as flags)")
    try:
        return cls(**settings)
    except TypeError as e:
        raise error(f"{path or cls.__name__}: {e}") from e
