"""Deduplication: exact (a hash of the normalized text) and near-duplicate (MinHash-LSH over character
5-grams). Both keep the first document of a group in input order, so the result is deterministic."""

from __future__ import annotations

import hashlib

from taide.data.base import DedupStage, Rejected


class ExactDedup(DedupStage):
    """The first document with a given text is kept; later copies go (run after normalization, so
    copies that differ only in width or whitespace count as the same)."""

    name = "exact_dedup"

    def signature(self, doc):
        return hashlib.blake2b(doc.text.encode("utf-8"), digest_size=16).digest()

    def duplicates(self, items):
        first: dict[bytes, str] = {}
        removed = {}
        for position, doc_id, digest in items:
            self.counters["in"] += 1
            if digest in first:
                removed[position] = Rejected("duplicate", f"same text as {first[digest]}")
                self.counters["removed_duplicate"] += 1
            else:
                first[digest] = doc_id
        return removed
