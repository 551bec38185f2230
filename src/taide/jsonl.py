"""Reading JSONL (plain or .gz) line by line, saying precisely what is wrong with a bad line; reading a resumable
job's output."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

from taide.errors import InputError


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
    """``(line, row)`` for each row of a job's output JSONL, the one repair rule of every resumable job. A half-written last line (a crash mid-write) is cut
    off when ``repair`` (else skipped); a bad line before the end is an InputError — never silently dropped."""
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
