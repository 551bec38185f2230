"""The types every corpus stage shares: a document, a rejection, and the two kinds of stage.

A :class:`Stage` looks at one document at a time, so it runs in any worker process. A
:class:`DedupStage` needs the whole corpus: workers compute a small signature per document, and one
process decides which documents are duplicates of earlier ones (in input order, so the result does not
depend on the number of workers). Dedup stages come after all per-document stages.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from taide.errors import TaideError


class DataError(TaideError):
    """A corpus input or pipeline configuration that cannot be used."""


@dataclass
class Document:
    id: str
    text: str
    source: str  # the input file it came from
    record: dict = field(repr=False)  # every field of the input record, carried through
    is_html: bool = False  # text is an HTML page (read from an HTML file, or a record's HTML field)

    def output(self, text_field: str) -> dict:
        return {**self.record, "id": self.id, text_field: self.text}


@dataclass
class Rejected:
    reason: str
    detail: str = ""


class Stage:
    """One per-document step. Subclasses set ``name`` and implement :meth:`process`; options are
    constructor arguments (what a YAML ``pipeline:`` entry sets). Counters say what the stage did;
    ``findings``, what it found that counts cannot say (which evaluation items are in which documents), one
    small JSON-able record per document at most: both reach the driver with each batch."""

    name = "stage"

    def __init__(self):
        self.counters: Counter = Counter()
        self.findings: list[dict] = []

    def process(self, doc: Document) -> Document | Rejected:
        raise NotImplementedError


class DedupStage(Stage):
    """A corpus-wide step: :meth:`signature` runs per document in the workers; :meth:`duplicates` sees
    every signature in input order and names the documents to remove."""

    def signature(self, doc: Document):
        """A small value summarizing ``doc`` (bytes or a numpy array); it travels between processes."""
        raise NotImplementedError

    def duplicates(self, items: Iterable[tuple[int, str, object]],
                   texts: Callable[[list[int]], dict[int, str]] | None = None) -> dict[int, Rejected]:
        """``items`` are ``(position, document id, signature)`` in input order (positions increase but
        may skip); returns the positions to remove, each with its rejection naming the earlier document
        it duplicates. The first document of a group is kept. Update ``self.counters`` here.

        ``texts``, when the driver can read documents back, returns the (normalized) texts of the
        documents at the given positions, for a stage that must compare a few of them exactly. Ask only
        for the documents needed, a bounded number per call: each call reads from disk, and what the
        stage holds must stay bounded by its candidates, not by the corpus. ``None``: signatures only."""
        raise NotImplementedError
