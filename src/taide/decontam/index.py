"""An index of evaluation items by character n-grams, and the search of a training text for the items it holds.

Each item's parts (an exam's stem and each option, or one text) are folded to keys (:mod:`taide.decontam.keys`)
and cut into character ``ngram``-grams *within* each part, so the options may come in any order and with any
letters or numbering between them. Items with the same content (the same key) are one entry.

Boilerplate: an n-gram that many entries share (「下列敘述何者正確」, 「依民法規定」, a bench task's instruction line)
says little about which item a text holds. Each n-gram weighs 1/df, df the number of entries that contain it, and an
entry is found in a text when the weight of its n-grams the text holds is at least ``threshold`` of the weight of
all its n-grams: a copy of the item matches nearly all of its weight, a text that shares only the boilerplate
almost none, and a family of near-identical items (the same question in several exams) loses nothing, since its
n-grams are shared evenly. N-grams in more than ``max_df`` entries are left out; an entry whose n-grams weigh less
than ``min_weight`` (a very short item, or one made of boilerplate only) cannot be told apart from ordinary text
and is reported as too short to check.

Search (per training text): fold, hash every n-gram (the polynomial hash of ``taide.data.dedup``), keep those a
bitmap says may be in the index (two bits per indexed n-gram; about 1 in 300 of the others pass), confirm them
against the sorted hashes, and add up weights per entry. A text whose n-grams miss the bitmap, most of a clean
corpus, costs the hashing and one lookup per character.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from taide.decontam.items import EvalItem, read_eval_items
from taide.decontam.keys import key_table, keys_of, text_keys, text_keys_at
from taide.errors import TaideError

# Chosen on planted leaks in the law corpus (BENCHMARKS.md, decontamination): every planted copy of a checkable
# question found, no clean law flagged, and 99.5% of TMMLU's questions long enough to check.
NGRAM = 6
THRESHOLD = 0.7
MIN_WEIGHT = 5.0
MAX_DF = 100
SEED = 1
_BITS_PER_NGRAM = 32


def ngram_hashes(keys: np.ndarray, ngram: int) -> np.ndarray:
    # MinHash's n-gram hash (taide.data.dedup), imported here: taide.data's stages import this module
    from taide.data.dedup import ngram_hashes

    return ngram_hashes(keys, ngram, SEED)


@dataclass
class Hit:
    entry: int
    share: float  # the weight of the entry's n-grams found, over the weight of all of them
    positions: np.ndarray  # key positions (in the text's kept characters) where its n-grams start


class EvalIndex:
    """The n-grams of ``items`` (see the module docstring). Picklable: executors hand one index to every worker."""

    def __init__(self, items: list[EvalItem], ngram: int = NGRAM, threshold: float = THRESHOLD,
                 min_weight: float = MIN_WEIGHT, max_df: int = MAX_DF, table: np.ndarray | None = None):
        for name, value, low in (("ngram", ngram, 2), ("max_df", max_df, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise TaideError(f"decontaminate.{name}: must be a whole number of at least {low}, not {value!r}")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
            raise TaideError(f"decontaminate.threshold: must be a share in (0, 1], not {threshold!r}")
        if isinstance(min_weight, bool) or not isinstance(min_weight, (int, float)) or min_weight <= 0:
            raise TaideError(f"decontaminate.min_weight: must be a positive number, not {min_weight!r}")
        self.items, self.ngram, self.threshold = items, ngram, float(threshold)
        self.problems: list[str] = []  # evaluation rows that could not be read (set by whoever read the items)
        self.files: dict[str, str] = {}  # evaluation file -> the format it was read as
        self.min_weight, self.max_df = float(min_weight), max_df
        self.table = key_table() if table is None else table  # another folding: the benchmark compares them

        entry_of: dict[str, int] = {}
        self.entry_items: list[list[int]] = []  # entry -> item indices
        for i, item in enumerate(items):
            e = entry_of.setdefault(item.key, len(entry_of))
            if e == len(self.entry_items):
                self.entry_items.append([])
            self.entry_items[e].append(i)
        # Every part's n-grams in one pass: the parts' keys end to end, and the windows that lie inside one part.
        n_entries = len(self.entry_items)
        parts = [items[members[0]].parts for members in self.entry_items]
        keys = keys_of([p for entry in parts for p in entry], self.table)
        part_of = np.repeat(np.arange(len(keys)), [len(k) for k in keys])
        entry_of_part = np.repeat(np.arange(n_entries, dtype=np.int64), [len(entry) for entry in parts])
        hashes = ngram_hashes(np.concatenate(keys) if keys else np.empty(0, np.uint32), ngram)
        inside = part_of[: len(hashes)] == part_of[ngram - 1:]
        hashes, owners = hashes[inside], entry_of_part[part_of[: len(inside)][inside]]
        # Each n-gram once per entry, sorted by n-gram (then entry): df is the run length of an n-gram.
        order = np.lexsort((owners, hashes))
        hashes, owners = hashes[order], owners[order].astype(np.uint32)
        first = np.ones(len(hashes), dtype=bool)
        first[1:] = (hashes[1:] != hashes[:-1]) | (owners[1:] != owners[:-1])
        hashes, owners = hashes[first], owners[first]
        _, df = np.unique(hashes, return_counts=True)
        common = df > max_df
        weight = np.repeat(1.0 / df, df)
        keep = ~np.repeat(common, df)
        self.total = np.bincount(owners[keep], weights=weight[keep], minlength=n_entries)
        self.checkable = self.total >= self.min_weight
        keep &= self.checkable[owners]
        self.boilerplate = int(common.sum())  # n-grams left out: in more than max_df entries
        hashes, owners, weight = hashes[keep], owners[keep], weight[keep]
        # CSR: entries of the i-th distinct hash are owners[offsets[i]:offsets[i + 1]]
        self.hashes, starts, counts = np.unique(hashes, return_index=True, return_counts=True)
        self.offsets = np.zeros(len(self.hashes) + 1, dtype=np.int64)
        np.cumsum(counts, out=self.offsets[1:])
        self.owners = owners
        self.weights = weight[starts].astype(np.float32) if len(starts) else np.empty(0, np.float32)
        self._bits = max(16, math.ceil(math.log2(max(1, len(self.hashes)) * _BITS_PER_NGRAM)))
        self._bitmap = None
        self.digest = hashlib.blake2b(repr((ngram, threshold, min_weight, max_df, sorted(entry_of))).encode(),
                                      digest_size=8).hexdigest()

    @classmethod
    def from_paths(cls, paths, **settings) -> EvalIndex:
        """The index of every evaluation item under ``paths`` (:func:`~taide.decontam.items.read_eval_items`), with
        the rows that could not be read in ``problems`` and the files read in ``files``."""
        evalset = read_eval_items(paths)
        index = cls(evalset.items, **settings)
        index.problems, index.files = evalset.problems, evalset.files
        return index

    # -- what the index holds ------------------------------------------------------------------------

    @property
    def entries(self) -> int:
        return len(self.entry_items)

    def key_of(self, entry: int) -> str:
        return self.items[self.entry_items[entry][0]].key

    def nbytes(self) -> int:
        """Memory the index takes for searching (the folding table of 4.4 MB not counted)."""
        return (self.hashes.nbytes + self.offsets.nbytes + self.owners.nbytes + self.weights.nbytes
                + (1 << self._bits) // 8 + self.total.nbytes + self.checkable.nbytes)

    def __getstate__(self):
        return {**self.__dict__, "_bitmap": None}  # rebuilt where it is used

    # -- search --------------------------------------------------------------------------------------

    def _probes(self, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        shift = np.uint64(64 - self._bits)
        return h >> shift, (h << np.uint64(20)) >> shift  # two bit positions from two parts of the hash

    def bitmap(self) -> np.ndarray:
        if self._bitmap is None:
            bitmap = np.zeros(1 << (self._bits - 3), dtype=np.uint8)
            for probe in self._probes(self.hashes):
                np.bitwise_or.at(bitmap, probe >> np.uint64(3), np.left_shift(1, probe & np.uint64(7)).astype(np.uint8))
            self._bitmap = bitmap
        return self._bitmap

    def _maybe(self, h: np.ndarray) -> np.ndarray:
        bitmap = self.bitmap()
        a, b = self._probes(h)
        seven = np.uint64(7)
        found = (bitmap[a >> np.uint64(3)] >> (a & seven).astype(np.uint8)) & 1
        found &= (bitmap[b >> np.uint64(3)] >> (b & seven).astype(np.uint8)) & 1
        return np.flatnonzero(found)

    def search_keys(self, keys: np.ndarray) -> list[Hit]:
        """The entries found in a text, given its keys (:func:`~taide.decontam.keys.text_keys`)."""
        if len(keys) < self.ngram or not len(self.hashes):
            return []
        h = ngram_hashes(keys, self.ngram)
        at = self._maybe(h)
        if not len(at):
            return []
        candidates = h[at]
        pos = np.searchsorted(self.hashes, candidates)
        pos[pos == len(self.hashes)] = 0
        real = self.hashes[pos] == candidates
        if not real.any():
            return []
        hash_index, at = pos[real], at[real]
        counts = self.offsets[hash_index + 1] - self.offsets[hash_index]
        row = np.repeat(np.arange(len(hash_index)), counts)
        first = np.repeat(np.cumsum(counts) - counts, counts)
        entry = self.owners[self.offsets[hash_index][row] + np.arange(len(row)) - first].astype(np.int64)
        hash_index = hash_index[row]
        distinct = np.unique((entry << 32) | hash_index)  # each n-gram of an entry counted once
        found = np.bincount(distinct >> 32, weights=self.weights[distinct & 0xFFFFFFFF])
        entries = np.flatnonzero(found)
        share = found[entries] / self.total[entries]
        hits = entries[share >= self.threshold - 1e-9]
        starts = at[row]
        return [Hit(int(e), float(found[e] / self.total[e]), np.unique(starts[entry == e])) for e in hits]

    def search(self, text: str) -> list[Hit]:
        return self.search_keys(text_keys(text, self.table))

    def spans(self, text: str, hits: list[Hit], max_gap: int | None = None) -> list[tuple[int, int]]:
        """Where in ``text`` the hits' n-grams lie, as (start, end) character offsets: runs of matched n-grams
        at most ``max_gap`` key characters apart (default: the n-gram length) merged."""
        _, where = text_keys_at(text, self.table)
        starts = np.unique(np.concatenate([h.positions for h in hits]))
        if not len(starts):
            return []
        gap = self.ngram if max_gap is None else max_gap
        breaks = np.flatnonzero(np.diff(starts) > gap + self.ngram)
        firsts = np.r_[starts[0], starts[breaks + 1]]
        lasts = np.r_[starts[breaks], starts[-1]] + self.ngram - 1
        return [(int(where[a]), int(where[b]) + 1) for a, b in zip(firsts, lasts)]
