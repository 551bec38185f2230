"""Writing the kept documents in shards (JSONL or Parquet), and the stats report."""

from __future__ import annotations

import json
from pathlib import Path

from taide.artifacts import write_json
from taide.data.base import DataError
from taide.data.pipeline import BatchCounts

OUTPUT_FORMATS = ("jsonl", "parquet")


class ShardWriter:
    """Shards of at most ``shard_docs`` documents: part-00000.jsonl, part-00001.jsonl, ... JSONL lines are
    written as they come; Parquet shards are buffered and written whole."""

    def __init__(self, directory: Path, shard_docs: int = 100_000, prefix: str = "part", fmt: str = "jsonl"):
        if fmt not in OUTPUT_FORMATS:
            raise DataError(f"output format {fmt!r} is not one of {', '.join(OUTPUT_FORMATS)}")
        if shard_docs < 1:
            raise DataError(f"shard size must be at least 1 document, got {shard_docs}")
        self.directory, self.shard_docs, self.prefix, self.fmt = directory, shard_docs, prefix, fmt
        directory.mkdir(parents=True, exist_ok=True)
        self.index, self.count, self.file, self.rows = 0, 0, None, []
        self.written: list[Path] = []

    def _path(self) -> Path:
        return self.directory / f"{self.prefix}-{self.index:05d}.{self.fmt}"

    def write_line(self, line: str) -> None:
        """One record, already a JSON line."""
        if self.fmt == "parquet":
            self.rows.append(json.loads(line))
            if len(self.rows) >= self.shard_docs:
                self._flush_parquet()
            return
        if self.file is None or self.count >= self.shard_docs:
            self.close()
            self.written.append(self._path())
            self.file = self._path().open("w", encoding="utf-8")
            self.index, self.count = self.index + 1, 0
        self.file.write(line + "\n")
        self.count += 1

    def _flush_parquet(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        names = list(dict.fromkeys(k for row in self.rows for k in row))  # every field of any record
        try:
            table = pa.table({k: [row.get(k) for row in self.rows] for k in names})
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise DataError(f"cannot write Parquet: a field holds values of different types ({e}); "
                            "write JSONL instead") from e
        pq.write_table(table, self._path())
        self.written.append(self._path())
        self.index, self.rows = self.index + 1, []

    def close(self) -> None:
        if self.rows:
            self._flush_parquet()
        if self.file is not None:
            self.file.close()
            self.file = None


def write_report(directory: Path, counts: BatchCounts, stage_names: list[str], extra: dict) -> dict:
    """stats.json and stats.md: every input record accounted for, per stage and per source. stats.json is
    written last, whole, so a stats.json means the run finished (``clean`` relies on it)."""
    report = {**counts.to_json(), "balanced": counts.balanced(), **extra}
    report.pop("findings")  # a stage's own report holds them (decontamination.json)
    report["stages"] = {name: report["stages"].get(name, {}) for name in stage_names}
    removed = sum(counts.removed.values())
    lines = ["# Corpus cleaning report", "",
             f"{counts.read} read = {counts.kept} kept + {removed} removed + {counts.unreadable} unreadable", "",
             "| removed by | reason | documents | share of read |", "|---|---|---:|---:|"]
    for key, n in sorted(counts.removed.items(), key=lambda kv: -kv[1]):
        stage, reason = key.split(":", 1)
        lines.append(f"| {stage} | {reason} | {n} | {n / max(counts.read, 1):.2%} |")
    if not counts.removed:
        lines.append("| (none) | | 0 | 0% |")
    lines += ["", "| stage | what it did |", "|---|---|"]
    for name in stage_names:  # documents in first, then what the stage did, alphabetically
        counters = sorted(report["stages"][name].items(), key=lambda kv: (kv[0] != "in", kv[0]))
        lines.append(f"| {name} | {', '.join(f'{k} {v}' for k, v in counters if v)} |")
    lines += ["", "| source | read | kept | removed | unreadable |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {src} | {c.get('read', 0)} | {c.get('kept', 0)} | {c.get('removed', 0)} | {c.get('unreadable', 0)} |"
              for src, c in sorted(counts.sources.items())]
    if "decontamination" in extra:
        lines += ["", "Which evaluation items the decontaminate stage found, in which documents: decontamination.md"]
    if counts.unreadable_examples:
        lines += ["", "Unreadable records (first ones):", ""] + [f"- {p}" for p in counts.unreadable_examples]
    (directory / "stats.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    # stats.json last and whole (atomically): its presence marks a complete run.
    write_json(directory / "stats.json", report)
    return report
