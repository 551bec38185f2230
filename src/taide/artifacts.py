"""What every command's output shares: files written whole (atomic writes), one manifest schema, and the
reading of JSONL — plain or .gz input, and the resumable output of a job that may have been killed mid-write.

A manifest says what produced an artifact, so it can be reproduced or compared:
``{"command", "config", "inputs", "counts", "versions", "created", ...extra}``."""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

from taide.errors import InputError

VERSIONED = ("taide", "torch", "transformers", "gguf", "llama-cpp-python", "peft", "safetensors", "datasets")


# ------------------------------------------------------------------------------------------- atomic writes

def atomic_write(path: str | Path, data: str | bytes | Callable[[Path], None]) -> Path:
    """Write ``data`` (text as UTF-8, bytes, or a callable that writes the temporary path it is given) to a
    temporary name beside ``path``, then rename it into place: a killed run leaves the old file or the new one,
    never half of one. The temporary name is hidden and per process, so concurrent writers do not collide."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if callable(data):
            data(tmp)
        else:
            tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)  # same directory, so same filesystem: the rename is atomic
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def atomic_dir(path: str | Path, replace: bool = False):
    """A directory written whole or not at all: the block fills the hidden temporary directory it is given, which
    then takes ``path``'s name. An error in the block leaves no temporary behind. When ``path`` exists by then
    (another process finished first), the new one is dropped unless ``replace``. Yields the temporary path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists() and replace:
            shutil.rmtree(path)
        try:
            os.replace(tmp, path)  # same directory, so same filesystem: the rename is atomic
        except OSError:
            # Another process renamed its copy into place first (torchrun's processes tokenize the same shard at
            # once): a check before the rename cannot see that, the failed rename can. Theirs is as good as ours.
            if not path.is_dir() or replace:
                raise
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: str | Path, obj) -> Path:
    """``obj`` as readable JSON (non-ASCII kept, Paths and other objects as strings), written atomically."""
    return atomic_write(path, json.dumps(obj, ensure_ascii=False, indent=1, default=str) + "\n")


# ---------------------------------------------------------------------------------------------- manifests

def versions() -> dict:
    """The installed versions of the packages that decide what an artifact holds (those not installed are left out)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in VERSIONED:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks (model files do not fit in memory whole)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _plain(value):
    """Dataclasses → dicts, Paths → strings, recursively: what JSON can hold and a reader can compare."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, Path) else value


def manifest(command: str, config=None, *, inputs: dict | None = None, counts: dict | None = None, **extra) -> dict:
    """The one manifest schema: the command, its settings (a dataclass, a dict or None), what it read (name →
    digest or description), what it counted, the package versions and the UTC time; then ``extra`` keys."""
    clash = set(extra) & {"command", "config", "inputs", "counts", "versions", "created"}
    if clash:
        raise TypeError(f"manifest: {', '.join(sorted(clash))} are schema keys, not extra ones")
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return {"command": command, "config": _plain(config), "inputs": _plain(inputs or {}),
            "counts": _plain(counts or {}), "versions": versions(), "created": created, **_plain(extra)}


def write_manifest(path: str | Path, command: str, config=None, *, inputs: dict | None = None,
                   counts: dict | None = None, **extra) -> Path:
    """:func:`manifest`, written atomically to ``path``."""
    return write_json(path, manifest(command, config, inputs=inputs, counts=counts, **extra))


# ------------------------------------------------------------------------------------------------- JSONL

def iter_jsonl(path: Path) -> Iterator[tuple[int, dict | None, str | None]]:
    """``(line number, record, None)`` for each object, ``(line number, None, problem)`` for a bad line;
    blank lines are skipped. Bytes that are not UTF-8 raise UnicodeDecodeError."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="strict") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                yield lineno, None, f"not valid JSON ({e.msg} at column {e.colno})"
                continue
            if not isinstance(record, dict):
                yield lineno, None, "expected a JSON object"
                continue
            yield lineno, record, None


def read_resumable(path: Path, repair: bool = True) -> list[tuple[int, dict]]:
    """``(line, row)`` for each row of a job's output JSONL, the one repair rule of every resumable job. A
    half-written last line (a crash mid-write) is cut off when ``repair`` (else skipped); a bad line before the
    end is an InputError — never silently dropped."""
    if not path.exists():
        return []
    rows, keep, bad_line, unterminated = [], 0, None, False
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if bad_line is not None:
                raise InputError(path, bad_line, "not a JSON object; fix or delete this line")
            if not raw.strip():
                keep += len(raw)
                continue
            try:
                row = json.loads(raw)
                if not isinstance(row, dict):
                    raise ValueError
            except (ValueError, UnicodeDecodeError):
                bad_line = lineno
                continue
            rows.append((lineno, row))
            keep += len(raw)
            unterminated = not raw.endswith(b"\n")
    if repair and bad_line is not None:
        with path.open("r+b") as f:
            f.truncate(keep)
    if repair and unterminated and bad_line is None:
        with path.open("ab") as f:  # a whole last row without its newline: end it, so appends start a new line
            f.write(b"\n")
    return rows
