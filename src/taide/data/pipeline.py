"""A corpus pipeline is a list of small stages, each with one job, its own configuration and its own
counters (datatrove's shape). A stage keeps a document (possibly changed) or rejects it with a reason;
the run accounts for every input record: kept + removed per reason + unreadable = read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from taide.data.base import DataError, Document, Rejected, Stage
from taide.data.dedup import ExactDedup
from taide.data.linebreaks import JoinLayoutBreaks
from taide.data.noise import MinLength
from taide.data.normalize import Normalize
from taide.data.pii import RedactPII


STAGES: dict[str, type[Stage]] = {s.name: s for s in (Normalize, JoinLayoutBreaks, RedactPII, MinLength, ExactDedup)}
DEFAULT_PIPELINE = ["normalize", "line_breaks", "pii", "min_length", "exact_dedup"]


def build_pipeline(config: list | None = None) -> list[Stage]:
    """Stages from a YAML-style list: names, or ``{"stage": name, "enabled": bool, **options}``, in order."""
    stages = []
    for i, entry in enumerate(config or DEFAULT_PIPELINE):
        spec = {"stage": entry} if isinstance(entry, str) else dict(entry)
        name = spec.pop("stage", None)
        if name not in STAGES:
            raise DataError(f"pipeline[{i}].stage: {name!r} is not one of {', '.join(STAGES)}")
        if not spec.pop("enabled", True):
            continue
        try:
            stages.append(STAGES[name](**spec))
        except TypeError as e:
            raise DataError(f"pipeline[{i}] ({name}): {e}") from e
    return stages


@dataclass
class RunStats:
    read: int = 0
    unreadable: int = 0
    kept: int = 0
    removed: Counter = field(default_factory=Counter)  # "stage:reason" -> documents
    by_source: dict = field(default_factory=dict)  # source -> Counter(read, kept, removed, unreadable)
    unreadable_examples: list = field(default_factory=list)

    def balanced(self) -> bool:
        return self.read == self.kept + sum(self.removed.values()) + self.unreadable


def run_pipeline(documents: Iterable[Document | tuple[str, str]], stages: list[Stage], stats: RunStats,
                 on_rejected: Callable[[Document, str, Rejected], None] | None = None) -> Iterator[Document]:
    """Pass documents through the stages; yields the kept ones. Items that are ``(source, problem)``
    tuples are unreadable input, counted as such. ``on_rejected(doc, stage, rejection)`` sees removals."""
    for item in documents:
        stats.read += 1
        if isinstance(item, tuple):
            source, problem = item
            per = stats.by_source.setdefault(source, Counter())
            per["read"] += 1
            per["unreadable"] += 1
            stats.unreadable += 1
            if len(stats.unreadable_examples) < 20:
                stats.unreadable_examples.append(problem)
            continue
        per = stats.by_source.setdefault(item.source, Counter())
        per["read"] += 1
        doc = item
        for stage in stages:
            stage.counters["in"] += 1
            result = stage.process(doc)
            if isinstance(result, Rejected):
                stage.counters[f"removed_{result.reason}"] += 1
                stats.removed[f"{stage.name}:{result.reason}"] += 1
                per["removed"] += 1
                if on_rejected:
                    on_rejected(doc, stage.name, result)
                doc = None
                break
            doc = result
        if doc is not None:
            stats.kept += 1
            per["kept"] += 1
            yield doc
