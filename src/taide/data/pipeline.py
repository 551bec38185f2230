"""A corpus pipeline is a list of small stages, each with one job, its own configuration and its own
counters (datatrove's shape). Per-document stages run in any worker, in order; corpus-wide dedup
stages come last. :func:`process_batch` is the whole per-worker job: raw records in, kept documents,
rejections, dedup signatures and counts out — the same function under every executor.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from taide.data.base import DataError, DedupStage, Document, Stage
from taide.data.content import Inappropriate
from taide.data.decontaminate import Decontaminate
from taide.data.dedup import ExactDedup, MinHashDedup
from taide.data.linebreaks import JoinLayoutBreaks
from taide.data.noise import FixMojibake, HtmlToText, MinLength, NonStandardChars
from taide.data.normalize import Normalize
from taide.data.pii import RedactPII
from taide.data.quality import Quality
from taide.data.readers import Raw, Unreadable, to_document
from taide.data.script import Simplified
from taide.data.vocabulary import Vocabulary

STAGES: dict[str, type[Stage]] = {s.name: s for s in (
    HtmlToText, FixMojibake, NonStandardChars, MinLength, Normalize, Simplified, Vocabulary, JoinLayoutBreaks, RedactPII,
    Inappropriate, Quality, Decontaminate, ExactDedup, MinHashDedup)}
# The card's order: noise removal, character normalization, layout breaks, PII, content, quality, dedup.
# Decontamination joins (before dedup) only when evaluation data is given: see with_decontamination.
DEFAULT_PIPELINE = [name for name in STAGES if name != Decontaminate.name]


def _entry_name(entry) -> str | None:
    return entry if isinstance(entry, str) else entry.get("stage") if isinstance(entry, dict) else None


def with_decontamination(config: list | None, benchmarks: list, action: str | None = None) -> list:
    """``config`` (None: the default pipeline) with the decontaminate stage checking ``benchmarks``: its entry,
    when the configuration has one, gets them (and ``action``, when given) and is switched on; otherwise one is
    added before the first dedup stage."""
    entries = [dict(e) if isinstance(e, dict) else e for e in (DEFAULT_PIPELINE if config is None else config)]
    settings = {"benchmarks": [str(b) for b in benchmarks], "enabled": True, **({"action": action} if action else {})}
    for i, entry in enumerate(entries):
        if _entry_name(entry) == Decontaminate.name:
            entries[i] = {**({"stage": entry} if isinstance(entry, str) else entry), **settings}
            return entries
    dedup = [i for i, e in enumerate(entries) if isinstance(STAGES.get(_entry_name(e)), type)
             and issubclass(STAGES[_entry_name(e)], DedupStage)]
    entries.insert(dedup[0] if dedup else len(entries), {"stage": Decontaminate.name, **settings})
    return entries


def worker_pipeline(config: list | None, stages: list[Stage]) -> list | None:
    """The configuration workers build their stages from: a decontaminate entry carries the index the driver
    built, so that workers (on a Ray cluster, perhaps on machines without the evaluation files) do not read the
    evaluation data again."""
    indexes = [s.index for s in stages if isinstance(s, Decontaminate)]
    if not indexes:
        return config
    entries = []
    for entry in config:
        if _entry_name(entry) == Decontaminate.name and (not isinstance(entry, dict) or entry.get("enabled", True)):
            entry = {**({"stage": entry} if isinstance(entry, str) else entry), "index": indexes.pop(0)}
            entry.pop("benchmarks", None)
        entries.append(entry)
    return entries


def build_pipeline(config: list | None = None) -> list[Stage]:
    """Stages from a YAML-style list: names, or ``{"stage": name, "enabled": bool, **options}``, in order."""
    stages: list[Stage] = []
    for i, entry in enumerate(DEFAULT_PIPELINE if config is None else config):
        spec = {"stage": entry} if isinstance(entry, str) else dict(entry)
        name = spec.pop("stage", None)
        if name not in STAGES:
            raise DataError(f"pipeline[{i}].stage: {name!r} is not one of {', '.join(STAGES)}")
        if not spec.pop("enabled", True):
            continue
        if stages and isinstance(stages[-1], DedupStage) and not issubclass(STAGES[name], DedupStage):
            raise DataError(f"pipeline[{i}] ({name}): per-document stages must come before the dedup stages "
                            f"({stages[-1].name} is above it)")
        try:
            stages.append(STAGES[name](**spec))
        except TypeError as e:
            raise DataError(f"pipeline[{i}] ({name}): {e}") from e
    return stages


@dataclass
class BatchCounts:
    """What one batch (or the whole run) did to its records: read = kept + removed + unreadable."""

    read: int = 0
    kept: int = 0
    unreadable: int = 0
    removed: Counter = field(default_factory=Counter)  # "stage:reason" -> documents
    sources: dict = field(default_factory=dict)  # source -> Counter(read, kept, removed, unreadable)
    stages: dict = field(default_factory=dict)  # stage name -> Counter
    unreadable_examples: list = field(default_factory=list)
    findings: dict = field(default_factory=dict)  # stage name -> its findings (Stage.findings), in input order

    def source(self, name: str) -> Counter:
        return self.sources.setdefault(name, Counter())

    def add(self, other: BatchCounts) -> None:
        self.read += other.read
        self.kept += other.kept
        self.unreadable += other.unreadable
        self.removed.update(other.removed)
        for name, counts in other.sources.items():
            self.source(name).update(counts)
        for name, counts in other.stages.items():
            self.stages.setdefault(name, Counter()).update(counts)
        self.unreadable_examples += other.unreadable_examples[:max(0, 20 - len(self.unreadable_examples))]
        for name, found in other.findings.items():
            self.findings.setdefault(name, []).extend(found)

    def balanced(self) -> bool:
        return self.read == self.kept + sum(self.removed.values()) + self.unreadable

    def to_json(self) -> dict:
        return {"read": self.read, "kept": self.kept, "unreadable": self.unreadable, "removed": dict(self.removed),
                "sources": {k: dict(v) for k, v in self.sources.items()},
                "stages": {k: dict(v) for k, v in self.stages.items()},
                "unreadable_examples": self.unreadable_examples, "findings": self.findings}

    @classmethod
    def from_json(cls, data: dict) -> BatchCounts:
        return cls(data["read"], data["kept"], data["unreadable"], Counter(data["removed"]),
                   {k: Counter(v) for k, v in data["sources"].items()},
                   {k: Counter(v) for k, v in data["stages"].items()}, data["unreadable_examples"],
                   data.get("findings", {}))


@dataclass
class BatchResult:
    """Plain data, so it crosses process (and machine) boundaries."""

    index: int
    counts: BatchCounts
    kept: list[str]  # output records as JSON lines
    ids: list[str]
    sources: list[str]
    signatures: dict[str, np.ndarray]  # dedup stage name -> one row per kept document
    rejected: list[str]  # removed documents as JSON lines, when asked for


def rejected_record(doc: Document, text_field: str, stage: str, reason: str, detail: str) -> dict:
    return {**doc.output(text_field), "removed_by": stage, "reason": reason, "detail": detail}


def process_batch(index: int, raws: list[Raw | Unreadable], stages: list[Stage], text_field: str,
                  keep_rejected: bool) -> BatchResult:
    counts = BatchCounts()
    for stage in stages:
        stage.counters, stage.findings = Counter(), []
    per_doc = [s for s in stages if not isinstance(s, DedupStage)]
    dedup = [s for s in stages if isinstance(s, DedupStage)]
    kept, ids, sources, rejected = [], [], [], []
    signatures: dict[str, list] = {s.name: [] for s in dedup}
    for raw in raws:
        counts.read += 1
        doc = raw if isinstance(raw, Unreadable) else to_document(raw, text_field)
        per_source = counts.source(doc.source)
        per_source["read"] += 1
        if isinstance(doc, Unreadable):
            counts.unreadable += 1
            per_source["unreadable"] += 1
            if len(counts.unreadable_examples) < 20:
                counts.unreadable_examples.append(doc.problem)
            continue
        for stage in per_doc:
            stage.counters["in"] += 1
            result = stage.process(doc)
            if not isinstance(result, Document):
                stage.counters[f"removed_{result.reason}"] += 1
                counts.removed[f"{stage.name}:{result.reason}"] += 1
                per_source["removed"] += 1
                if keep_rejected:
                    record = rejected_record(doc, text_field, stage.name, result.reason, result.detail)
                    rejected.append(json.dumps(record, ensure_ascii=False))
                break
            doc = result
        else:
            counts.kept += 1  # so far: the driver's dedup may still remove it
            per_source["kept"] += 1
            kept.append(json.dumps(doc.output(text_field), ensure_ascii=False))
            ids.append(doc.id)
            sources.append(doc.source)
            for stage in dedup:
                signatures[stage.name].append(stage.signature(doc))
    counts.stages = {s.name: Counter(s.counters) for s in per_doc}
    counts.findings = {s.name: s.findings for s in per_doc if s.findings}
    arrays = {name: np.array(values) for name, values in signatures.items()}
    return BatchResult(index, counts, kept, ids, sources, arrays, rejected)
