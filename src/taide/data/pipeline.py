"""A corpus pipeline is a list of small stages, each with one job, its own configuration and its own
counters (datatrove's shape). A stage keeps a document (possibly changed) or rejects it with a reason;
the run accounts for every input record: kept + removed per reason + unreadable = read.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from taide.data.linebreaks import join_layout_breaks
from taide.data.normalize import normalize_text
from taide.data.pii import PLACEHOLDERS, redact_pii
from taide.errors import TaideError


class DataError(TaideError):
    """A corpus input or pipeline configuration that cannot be used."""


@dataclass
class Document:
    id: str
    text: str
    source: str  # the input file it came from
    record: dict = field(repr=False)  # every field of the input record, carried through

    def output(self, text_field: str) -> dict:
        return {**self.record, "id": self.id, text_field: self.text}


@dataclass
class Rejected:
    reason: str
    detail: str = ""


class Stage:
    """One step. Subclasses set ``name`` and implement :meth:`process`; options are constructor arguments."""

    name = "stage"

    def __init__(self):
        self.counters: Counter = Counter()

    def process(self, doc: Document) -> Document | Rejected:
        raise NotImplementedError


class Normalize(Stage):
    name = "normalize"

    def process(self, doc):
        doc.text, counts = normalize_text(doc.text)
        self.counters.update({"fullwidth_to_halfwidth": counts.width, "compat_unified": counts.compat,
                              "invisible_removed": counts.invisible})
        return doc


class JoinLayoutBreaks(Stage):
    name = "line_breaks"

    def __init__(self, min_width: int = 8):
        super().__init__()
        self.min_width = min_width

    def process(self, doc):
        doc.text, joined = join_layout_breaks(doc.text, self.min_width)
        self.counters["breaks_joined"] += joined
        return doc


class RedactPII(Stage):
    name = "pii"

    def __init__(self, kinds: list[str] | None = None):
        super().__init__()
        unknown = set(kinds or []) - set(PLACEHOLDERS)
        if unknown:
            raise DataError(f"pii.kinds: unknown {sorted(unknown)}; choose from {', '.join(PLACEHOLDERS)}")
        self.kinds = tuple(kinds or PLACEHOLDERS)

    def process(self, doc):
        doc.text, counts = redact_pii(doc.text, self.kinds)
        self.counters.update({f"redacted_{k}": v for k, v in counts.items()})
        return doc


class MinLength(Stage):
    """Too-short documents go. Length is in characters without whitespace: one Chinese character counts
    as one, so Chinese is not undercounted the way word counts undercount it."""

    name = "min_length"

    def __init__(self, min_chars: int = 50):
        super().__init__()
        self.min_chars = min_chars

    def process(self, doc):
        length = sum(not ch.isspace() for ch in doc.text)
        return doc if length >= self.min_chars else Rejected("too_short", f"{length} < {self.min_chars} characters")


class ExactDedup(Stage):
    """The first document with a given text is kept; later copies go (run after normalization, so
    copies that differ only in width or whitespace count as the same)."""

    name = "exact_dedup"

    def __init__(self):
        super().__init__()
        self.seen: dict[bytes, str] = {}

    def process(self, doc):
        digest = hashlib.blake2b(doc.text.encode("utf-8"), digest_size=16).digest()
        first = self.seen.setdefault(digest, doc.id)
        return doc if first == doc.id else Rejected("duplicate", f"same text as {first}")


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
