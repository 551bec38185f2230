"""`taide data clean`: inputs → stages → JSONL shards + stats (+ rejected documents for audit)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml

from taide.data.files import ShardWriter, read_inputs, rejected_record, write_report
from taide.data.pipeline import DataError, RunStats, build_pipeline, run_pipeline


def load_config(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise DataError(f"{where}: invalid YAML ({getattr(e, 'problem', e)})") from e
    if not isinstance(config, dict):
        raise DataError(f"{path}: expected a mapping with 'pipeline:' (a list of stages)")
    return config


def clean(inputs: list[str | Path], out: str | Path, config: str | Path | None = None, text_field: str = "text",
          keep_rejected: str | Path | None = None, shard_docs: int = 100_000,
          on_progress: Callable[[int], None] | None = None) -> dict:
    """Clean ``inputs`` into ``out``; returns the report (also written as stats.json and stats.md)."""
    settings = load_config(Path(config) if config else None)
    stages = build_pipeline(settings.get("pipeline"))
    text_field = settings.get("text_field", text_field)
    out = Path(out)
    writer = ShardWriter(out, text_field, shard_docs)
    rejects = ShardWriter(Path(keep_rejected), text_field, shard_docs, "rejected") if keep_rejected else None
    stats = RunStats()

    def on_rejected(doc, stage, rejection):
        if rejects:
            rejects.write(rejected_record(doc, text_field, stage, rejection))

    try:
        for i, doc in enumerate(run_pipeline(read_inputs([Path(p) for p in inputs], text_field), stages, stats,
                                             on_rejected), start=1):
            writer.write(doc.output(text_field))
            if on_progress and i % 1000 == 0:
                on_progress(stats.read)
    finally:
        writer.close()
        if rejects:
            rejects.close()
    if on_progress:
        on_progress(stats.read)
    return write_report(out, stats, stages)
