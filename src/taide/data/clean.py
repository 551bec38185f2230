"""`taide data clean`: inputs → stages → shards + stats, resumable.

Three phases, each restartable:
1. The driver cuts the inputs into numbered batches of raw records; an executor runs the per-document
   stages on each and the driver saves every finished batch under ``OUT/.work/`` (kept records,
   rejections, dedup signatures, counts — the counts file last, so a batch with counts is complete).
   A rerun skips complete batches.
2. The dedup stages see every signature in input order and choose what to remove.
3. The kept records are written as shards in batch order; the report adds up the batches.
Batches are cut the same way on every run, so a killed and resumed run writes exactly what an
uninterrupted one would, whatever the number of workers.

After a complete run ``OUT/.work/`` is deleted (``keep_work=True`` keeps it): it is only resume state, and
for a large corpus it is as large as the output. ``stats.json`` (written last) records the run's
fingerprint and write settings, so running the same job again still returns at once, and a job over
other inputs is still refused, without the work files.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from taide.artifacts import atomic_write, write_json
from taide.config import load_config
from taide.data.base import DataError, DedupStage, Rejected
from taide.data.decontaminate import Decontaminate
from taide.data.executors import run_batches
from taide.data.pipeline import BatchCounts, BatchResult, build_pipeline, with_decontamination, worker_pipeline
from taide.data.readers import Raw, Unreadable, input_files, read_inputs
from taide.data.writers import ShardWriter, write_report
from taide.decontam.report import build_report, summary
from taide.decontam.report import write_report as write_decontamination

WORK = ".work"
BATCH_DOCS = 1000
BATCH_BYTES = 4 << 20


@dataclass
class PipelineFile:
    """A cleaning pipeline's YAML (``--config``)."""
    pipeline: list | None = None  # the stages in order, each a name or {name: options}; default DEFAULT_PIPELINE
    text_field: str | None = None  # the field holding the text, unless --text-field names one


def _size(raw: Raw | Unreadable) -> int:
    payload = getattr(raw, "payload", b"")
    return len(payload) if isinstance(payload, bytes) else len(json.dumps(payload, ensure_ascii=False, default=str))


def _batches(raws: Iterator[Raw | Unreadable], batch_docs: int) -> Iterator[tuple[int, list]]:
    batch, size, index = [], 0, 0
    for raw in raws:
        batch.append(raw)
        size += _size(raw)
        if len(batch) >= batch_docs or size >= BATCH_BYTES:
            yield index, batch
            batch, size, index = [], 0, index + 1
    if batch:
        yield index, batch


def _fingerprint(files: list, pipeline, text_field: str, keep_rejected: bool, batch_docs: int,
                 stages: list) -> str:
    """What phase 1's batches depend on; a rerun with anything else changed must not reuse them (the evaluation
    items a decontaminate stage checks against included, not only their paths)."""
    stats = [[str(f.path.resolve()), f.source, f.path.stat().st_size, f.path.stat().st_mtime_ns] for f in files]
    indexes = [s.index.digest for s in stages if isinstance(s, Decontaminate)]
    key = [stats, pipeline, text_field, keep_rejected, batch_docs, BATCH_BYTES] + ([indexes] if indexes else [])
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _save_batch(work: Path, result: BatchResult) -> None:
    stem = work / f"batch-{result.index:06d}"
    # Each file is written whole (atomic_write), the counts last: a batch with counts is complete.
    atomic_write(stem.with_suffix(".kept.jsonl"), "".join(l + "\n" for l in result.kept))
    atomic_write(stem.with_suffix(".rejected.jsonl"), "".join(l + "\n" for l in result.rejected))
    arrays = {"ids": np.array(result.ids, dtype=str), "sources": np.array(result.sources, dtype=str),
              **{f"sig_{name}": sig for name, sig in result.signatures.items()}}

    def write_npz(path):
        with path.open("wb") as f:
            np.savez(f, **arrays)

    atomic_write(stem.with_suffix(".npz"), write_npz)
    write_json(stem.with_suffix(".json"), result.counts.to_json())


def _lines(path: Path) -> list[str]:
    """A batch file's JSON lines. Split on "\n" only: str.splitlines() also splits inside a line at
    U+2028, U+0085 and the like, which JSON text may hold unescaped."""
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def _load_npz(work: Path, index: int) -> dict[str, np.ndarray]:
    with np.load(work / f"batch-{index:06d}.npz", allow_pickle=False) as data:
        return dict(data)


def _find_duplicates(work: Path, batches: int, dedup: list[DedupStage],
                     text_field: str) -> dict[int, tuple[str, Rejected]]:
    """Phase 2: positions (in input order, over documents kept by the per-document stages) to remove."""
    sizes = [len(_load_npz(work, index)["ids"]) for index in range(batches)]
    starts = np.cumsum([0] + sizes)

    def texts(positions: list[int]) -> dict[int, str]:
        """Texts read back from the batches, for the few documents a dedup stage must compare exactly."""
        found = {}
        wanted = sorted(positions)
        for index in sorted(set(np.searchsorted(starts, wanted, side="right") - 1)):
            # Bytes, decoding only the lines asked for: a batch file is megabytes, a check wants a few of its
            # documents. UTF-8 never holds the byte 0x0A inside a character, and JSON escapes line breaks.
            lines = (work / f"batch-{index:06d}.kept.jsonl").read_bytes().split(b"\n")
            for p in wanted:
                if starts[index] <= p < starts[index + 1]:
                    found[p] = json.loads(lines[p - starts[index]])[text_field]
        return found

    removed: dict[int, tuple[str, Rejected]] = {}
    for stage in dedup:
        def items():
            position = 0
            for index in range(batches):
                data = _load_npz(work, index)
                signatures = data.get(f"sig_{stage.name}")
                for j, doc_id in enumerate(data["ids"]):
                    if position not in removed:
                        yield position, str(doc_id), signatures[j]
                    position += 1

        for position, rejection in stage.duplicates(items(), texts=texts).items():
            removed[position] = (stage.name, rejection)
    return removed


def _finished(out: Path, fingerprint: str, write_settings: dict, keep_rejected) -> dict | None:
    """The report of a complete earlier run of this same job, from its ``stats.json``, or None when there is
    none. A run over other inputs or another configuration is refused, as the resume state refuses it."""
    try:
        report = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none, or a stats.json this function cannot trust: do the job
        return None
    if report.get("fingerprint") is None:  # written before runs were fingerprinted: do the job again
        return None
    if report["fingerprint"] != fingerprint:
        raise DataError(f"{out} holds a run over other inputs or another configuration; "
                        "choose a new output directory or delete this one")
    same_writes = (report.get("shard_docs") == write_settings["shard_docs"]
                   and report.get("output_format") == write_settings["output_format"])
    shards_there = all((out / name).is_file() for name in report.get("shards", []))
    rejects_there = not keep_rejected or all((Path(keep_rejected) / name).is_file()
                                             for name in report.get("rejected_shards") or [])
    return report if same_writes and shards_there and rejects_there else None


@dataclass
class CleanConfig:
    """``taide data clean``: a corpus cleaned the card's way into shards with every record accounted for."""
    inputs: list[Path]  # files or directories
    out_dir: Path | None = None  # required to clean; a build recipe's data leaves it to the build (its stage folder)
    config: Path | None = None  # YAML with 'pipeline:' (and optionally 'text_field:')
    text_field: str | None = None  # default: the config file's text_field, else "text"
    keep_rejected: Path | None = None  # also write the removed documents, with stage and reason, here
    workers: int | None = None  # default: one per core (with ray: one per cluster CPU)
    executor: str = "local"  # local or ray
    ray_address: str | None = None
    format: str = "jsonl"  # jsonl or parquet shards
    shard_docs: int = 100_000
    keep_work: bool = False
    decontaminate: list[Path] | None = None  # evaluation files or folders whose items must not be in the output
    decontaminate_action: str | None = None  # drop (default), cut or tag
    batch_docs: int = BATCH_DOCS  # documents per unit of work (a batch, saved when done: what a resumed run skips)

    def __post_init__(self):
        for name, allowed in (("executor", ("local", "ray")), ("format", ("jsonl", "parquet")),
                              ("decontaminate_action", (None, "drop", "cut", "tag"))):
            if getattr(self, name) not in allowed:
                raise DataError(f"{name}: {getattr(self, name)!r} is not one of {', '.join(filter(None, allowed))}")


@dataclass
class CleanResult:
    """What a clean did, every input record accounted for: read = kept + removed + unreadable. ``report`` is the
    whole of stats.json (per stage, per source, the shards, what decontamination found)."""
    output: Path  # the shards' directory
    read: int
    kept: int
    removed: dict[str, int]  # "stage:reason" -> documents
    unreadable: int
    report: dict

    @property
    def removed_total(self) -> int:
        return sum(self.removed.values())

    @property
    def decontamination(self) -> dict | None:
        """The decontaminate stage's summary (per benchmark: items checked, found), or None when it did not run."""
        return self.report.get("decontamination")


def run_clean(config: CleanConfig, on_progress: Callable[[int], None] | None = None) -> CleanResult:
    """Clean ``config.inputs`` (files or directories) into ``config.out_dir``: the report is also stats.json and
    stats.md. Running it again after a kill finishes the job; after a complete run it returns the report at once.
    ``keep_work`` keeps the batch files under ``OUT/.work/`` after success (to inspect them, or to rewrite the shards
    with other write settings without redoing the stages). ``decontaminate``: evaluation files or folders whose items
    the output must not hold (the decontaminate stage, ``decontaminate_action`` drop, cut or tag); what it found is in
    decontamination.md and .json. ``on_progress(documents)``: after each finished batch."""
    if config.out_dir is None:
        raise DataError("out_dir: not given: where the cleaned shards go")
    report = _clean(config, on_progress)
    return CleanResult(Path(config.out_dir), report["read"], report["kept"], report["removed"], report["unreadable"],
                       report)


def _clean(c: CleanConfig, on_progress: Callable[[int], None] | None) -> dict:
    """The three phases (see the module docstring); the report."""
    keep_rejected, keep_work, batch_docs, shard_docs = c.keep_rejected, c.keep_work, c.batch_docs, c.shard_docs
    output_format, inputs, out, decontaminate = c.format, c.inputs, c.out_dir, c.decontaminate
    settings = load_config(c.config, PipelineFile, DataError)
    pipeline = settings.pipeline
    text_field = c.text_field or settings.text_field or "text"  # the flag, else the file, else the default
    if decontaminate:
        pipeline = with_decontamination(pipeline, list(decontaminate), c.decontaminate_action)
    elif c.decontaminate_action:
        raise DataError("decontaminate_action without decontaminate: name the evaluation data to check against")
    stages = build_pipeline(pipeline)
    files, skipped = input_files([Path(p) for p in inputs])
    out = Path(out)
    work = out / WORK
    manifest_path = work / "manifest.json"
    fingerprint = _fingerprint(files, pipeline, text_field, keep_rejected is not None, batch_docs, stages)
    write_settings = {"shard_docs": shard_docs, "output_format": output_format,
                      "keep_rejected": str(keep_rejected) if keep_rejected else None}
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"fingerprint": fingerprint}
    if manifest["fingerprint"] != fingerprint:
        raise DataError(f"{out} holds a run over other inputs or another configuration; "
                        "choose a new output directory or delete this one")
    done = _finished(out, fingerprint, write_settings, keep_rejected) if "complete" not in manifest else None
    if done is None and manifest.get("complete") == write_settings and (out / "stats.json").is_file():
        done = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    if done is not None:
        if not keep_work:
            shutil.rmtree(work, ignore_errors=True)
        return done
    work.mkdir(parents=True, exist_ok=True)
    manifest.pop("complete", None)
    write_json(manifest_path, manifest)

    # Phase 1: per-document stages, batch by batch, skipping the batches a previous run finished.
    done_docs = 0
    total_batches = 0

    def todo():
        nonlocal done_docs, total_batches
        for index, raws in _batches(read_inputs(files, text_field), batch_docs):
            total_batches = index + 1
            if (work / f"batch-{index:06d}.json").is_file():
                done_docs += len(raws)
                continue
            yield index, raws

    worker_settings = (worker_pipeline(pipeline, stages), text_field, keep_rejected is not None)
    for result in run_batches(todo(), worker_settings, c.executor, c.workers, c.ray_address):
        _save_batch(work, result)
        done_docs += result.counts.read
        if on_progress:
            on_progress(done_docs)

    # Phase 2: corpus-wide dedup.
    dedup = [s for s in stages if isinstance(s, DedupStage)]
    removed = _find_duplicates(work, total_batches, dedup, text_field)

    # Phase 3: shards and report, rewritten whole (they are quick and deterministic). The old report goes
    # first: a stats.json is the mark of a complete run.
    for old in [*out.glob("part-*"), out / "stats.json", out / "stats.md", *out.glob("decontamination.*")]:
        old.unlink(missing_ok=True)
    rejects = None
    if keep_rejected:
        for old in Path(keep_rejected).glob("rejected-*"):
            old.unlink()
        rejects = ShardWriter(Path(keep_rejected), shard_docs, "rejected")
    writer = ShardWriter(out, shard_docs, "part", output_format)
    totals = BatchCounts()
    position = 0
    for index in range(total_batches):
        stem = work / f"batch-{index:06d}"
        totals.add(BatchCounts.from_json(json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))))
        if rejects:
            for line in _lines(stem.with_suffix(".rejected.jsonl")):
                rejects.write_line(line)
        sources = _load_npz(work, index)["sources"]
        for j, line in enumerate(_lines(stem.with_suffix(".kept.jsonl"))):
            if position in removed:
                stage, rejection = removed[position]
                totals.kept -= 1
                totals.removed[f"{stage}:{rejection.reason}"] += 1
                totals.source(str(sources[j])).update(kept=-1, removed=1)
                if rejects:
                    record = {**json.loads(line), "removed_by": stage, "reason": rejection.reason,
                              "detail": rejection.detail}
                    rejects.write_line(json.dumps(record, ensure_ascii=False))
            else:
                writer.write_line(line)
            position += 1
    writer.close()
    if rejects:
        rejects.close()
    for stage in dedup:
        totals.stages[stage.name] = stage.counters
    extra = {}
    for stage in stages:
        if isinstance(stage, Decontaminate):
            found = build_report(stage.index, totals.findings.get(stage.name, []))
            write_decontamination(out, found)
            extra["decontamination"] = summary(found)
    report = write_report(out, totals, [s.name for s in stages],
                          {"shards": [p.name for p in writer.written], "output_format": output_format,
                           "shard_docs": shard_docs, "skipped_files": [str(p) for p in skipped],
                           "rejected_shards": [p.name for p in rejects.written] if rejects else None,
                           "fingerprint": fingerprint, **extra})
    if keep_work:
        manifest["complete"] = write_settings
        write_json(manifest_path, manifest)
    else:
        shutil.rmtree(work)
    return report
