"""Reading corpus files into documents and writing the kept ones in shards, with the stats report."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from taide.data.base import DataError, Document, Rejected, Stage
from taide.data.pipeline import RunStats
from taide.jsonl import iter_jsonl


def read_jsonl(path: Path, text_field: str = "text") -> Iterator[Document | tuple[str, str]]:
    """Documents from a JSONL file (optionally .gz). A line that cannot be used is yielded as
    ``(source, "file:line: why")`` so it is counted, not lost."""
    source = path.name
    try:
        for lineno, record, problem in iter_jsonl(path):
            text = record.get(text_field) if record is not None else None
            if problem is None and not isinstance(text, str):
                problem = f"field {text_field!r} missing or not a string"
            if problem:
                yield source, f"{path}:{lineno}: {problem}"
                continue
            yield Document(str(record.get("id", f"{source}:{lineno}")), text, source, record)
    except UnicodeDecodeError as e:
        yield source, f"{path}: not UTF-8 at byte {e.start}; the rest of the file was not read"


def read_inputs(paths: list[Path], text_field: str) -> Iterator[Document | tuple[str, str]]:
    for path in paths:
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        if not (path.name.endswith(".jsonl") or path.name.endswith(".jsonl.gz") or path.name.endswith(".json")):
            raise DataError(f"{path}: only JSONL (.jsonl, .jsonl.gz) is read so far")
        yield from read_jsonl(path, text_field)


class ShardWriter:
    """JSONL shards of at most ``shard_docs`` documents: part-00000.jsonl, part-00001.jsonl, ..."""

    def __init__(self, directory: Path, text_field: str, shard_docs: int = 100_000, prefix: str = "part"):
        self.directory, self.text_field, self.shard_docs, self.prefix = directory, text_field, shard_docs, prefix
        directory.mkdir(parents=True, exist_ok=True)
        self.index, self.count, self.file = 0, 0, None

    def write(self, record: dict) -> None:
        if self.file is None or self.count >= self.shard_docs:
            self.close()
            self.file = (self.directory / f"{self.prefix}-{self.index:05d}.jsonl").open("w", encoding="utf-8")
            self.index, self.count = self.index + 1, 0
        self.file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.count += 1

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def rejected_record(doc: Document, text_field: str, stage: str, rejection: Rejected) -> dict:
    return {**doc.output(text_field), "removed_by": stage, "reason": rejection.reason, "detail": rejection.detail}


def write_report(directory: Path, stats: RunStats, stages: list[Stage]) -> dict:
    """stats.json and stats.md: the accounting, per stage and per source."""
    report = {"read": stats.read, "kept": stats.kept, "removed": dict(stats.removed), "unreadable": stats.unreadable,
              "balanced": stats.balanced(), "stages": {s.name: dict(s.counters) for s in stages},
              "sources": {k: dict(v) for k, v in stats.by_source.items()},
              "unreadable_examples": stats.unreadable_examples}
    (directory / "stats.json").write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    lines = ["# Corpus cleaning report", "",
             f"{stats.read} read = {stats.kept} kept + {sum(stats.removed.values())} removed + "
             f"{stats.unreadable} unreadable", "", "| removed by | documents |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(stats.removed.items())] or ["| (none) | 0 |"]
    lines += ["", "| stage | counters |", "|---|---|"]
    lines += [f"| {s.name} | {', '.join(f'{k} {v}' for k, v in sorted(s.counters.items()) if v)} |" for s in stages]
    lines += ["", "| source | read | kept | removed | unreadable |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {src} | {c['read']} | {c['kept']} | {c['removed']} | {c['unreadable']} |"
              for src, c in sorted(stats.by_source.items())]
    (directory / "stats.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report
