"""Reading JSONL (plain or .gz) line by line, saying precisely what is wrong with a bad line."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path


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
