"""Deduplication: exact (a hash of the normalized text) and near-duplicate (MinHash-LSH over character
5-grams). Both keep the first document of a group in input order, so the result is deterministic."""

from __future__ import annotations

import hashlib
import math
from functools import lru_cache

import numpy as np

from taide.data.base import DataError, DedupStage, Rejected


class ExactDedup(DedupStage):
    """The first document with a given text is kept; later copies go (run after normalization, so
    copies that differ only in width or whitespace count as the same)."""

    name = "exact_dedup"

    def signature(self, doc):
        return hashlib.blake2b(doc.text.encode("utf-8"), digest_size=16).digest()

    def duplicates(self, items, texts=None):
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


# --- MinHash -------------------------------------------------------------------------------------------
#
# Shingles: the character n-grams of the text with every whitespace character removed (layout does not
# matter; Chinese has no word spaces, so characters are the unit). Each n-gram is hashed to 64 bits with a
# polynomial over its code points (exact arithmetic mod 2**64, vectorized over the whole text) and a
# bijective finalizer (murmur3's fmix64), both keyed by the seed.
#
# Signature: one-permutation hashing (Li, Owen & Zhang 2012) completed the way fast similarity sketching
# does (Dahlgaard, Knudsen & Thorup 2017). The 64-bit hash space is cut into ``num_perm`` equal ranges
# ("bins"); a bin's value is the smallest shingle hash that falls in it, so one sort of the shingle hashes
# gives every bin at once instead of ``num_perm`` hash passes (about 20x faster than classic MinHash at
# 128 permutations). Bins that no shingle fell in (short texts) are filled by further rounds: in round
# r = 1, 2, ... every shingle is rehashed with round r's key into a bin and a value, and an empty bin
# takes the smallest (round, value) that lands in it. Every shingle's sequence of (bin, value) draws is
# a function of the shingle alone, so for two texts a bin's values agree exactly when the winner over
# the union of their shingles is a shared shingle: probability = Jaccard, and the bins are far less
# correlated than with densification (which copies values between bins): on this corpus's short
# documents the estimate's error is 40% smaller, below classic MinHash's. Only the low 8 bits of each
# value are kept (b-bit MinHash, Li & König 2010): two different minima then agree by chance with
# probability 1/256, a known bias the estimate removes, and for the same bytes twice the bins buy a
# smaller error than 16-bit values (0.013 against 0.017-0.022 near Jaccard 0.8 on this corpus, 512
# bytes a document).
#
# Decision (driver): LSH bands over the signature propose candidate pairs; each candidate is verified
# against ``threshold``. The estimated Jaccard (from the share of equal bins) has a standard error of
# about 0.013 near 0.8 at 512 bins: far from the threshold it decides alone, but within ``margin`` of it
# the driver, when it can read texts back, compares the exact n-gram sets instead. Then, in input order,
# a document with a verified pair to an earlier *kept* document is removed as its near-duplicate ("star"
# clusters: every removal rests on a direct comparison with a document that stays).

_FMIX1 = np.uint64(0xFF51AFD7ED558CCD)
_FMIX2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
_SIG_DTYPE = np.uint8
_CHANCE = 1.0 / 256  # two different minima agree in their low 8 bits


def _fmix64(h: np.ndarray) -> np.ndarray:
    """murmur3's 64-bit finalizer, in place (a bijection: every input bit reaches every output bit)."""
    h ^= h >> _S33
    h *= _FMIX1
    h ^= h >> _S33
    h *= _FMIX2
    h ^= h >> _S33
    return h


def _seed_words(seed: int, n: int) -> list[int]:
    """``n`` 64-bit constants derived from the seed with blake2b: stable across numpy versions and
    processes (the signatures are stored and compared across runs)."""
    digest = hashlib.blake2b(f"taide-minhash:{seed}".encode(), digest_size=8 * n).digest()
    return [int.from_bytes(digest[8 * i: 8 * i + 8], "little") for i in range(n)]


@lru_cache(maxsize=8)
def _hash_constants(seed: int):
    """The shingle hash's odd multiplier and keys for n-grams and for texts shorter than one n-gram."""
    mult, key, short_key = _seed_words(seed, 3)
    return np.uint64(mult | 1), np.uint64(key), np.uint64(short_key)


# fill rounds sort 64-bit keys: bin (10 bits, so num_perm <= 1024), round (15 bits), value (39 bits)
_MAX_ROUNDS = (1 << 15) - 1
_BIN_SHIFT, _ROUND_SHIFT = np.uint64(54), np.uint64(39)
_LOW39 = np.uint64((1 << 39) - 1)
_S32 = np.uint64(32)


@lru_cache(maxsize=8)
def _bins(num_perm: int, seed: int):
    """Where each bin starts in the 64-bit hash space, and each fill round's key and tag."""
    # bin i holds the hashes in [ceil(i * 2**64 / k), ceil((i+1) * 2**64 / k))
    starts = np.array([-((-i << 64) // num_perm) for i in range(num_perm)], dtype=np.uint64)
    (round_seed,) = _seed_words(seed + (1 << 40), 1)
    rounds = np.arange(1, _MAX_ROUNDS + 1, dtype=np.uint64)
    keys = _fmix64(rounds * np.uint64(0x9E3779B97F4A7C15) ^ np.uint64(round_seed))[:, None]
    return starts, keys, (rounds << _ROUND_SHIFT)[:, None]


def ngram_hashes(codes: np.ndarray, ngram: int, seed: int = 1) -> np.ndarray:
    """The 64-bit hashes of every run of ``ngram`` consecutive values of ``codes`` (code points, or any
    integers below 2**32), one per position, repeats included; empty when ``codes`` is shorter."""
    mult, key, _ = _hash_constants(seed)
    codes = codes.astype(np.uint64)
    m = len(codes) - ngram + 1
    if m < 1:
        return np.empty(0, dtype=np.uint64)
    h = codes[:m].copy()
    for i in range(1, ngram):  # the polynomial over the n code points, for every position at once
        np.multiply(h, mult, out=h)
        np.add(h, codes[i: i + m], out=h)
    np.bitwise_xor(h, key, out=h)
    return _fmix64(h)


def shingle_hashes(text: str, ngram: int = 5, seed: int = 1) -> np.ndarray:
    """The 64-bit hashes of the character ``ngram``-grams of ``text`` with whitespace removed (uint64,
    one per position, repeats included). A text shorter than ``ngram`` is one shingle: itself (so two
    such texts match only when equal)."""
    text = "".join(text.split()).encode("utf-32-le", "surrogatepass")  # a lone surrogate is a code point too
    codes = np.frombuffer(text, dtype="<u4")
    if len(codes) < ngram:  # short: the whole text, keyed apart from every n-gram
        mult, _, short_key = _hash_constants(seed)
        h = np.zeros(1, dtype=np.uint64)
        for c in codes.astype(np.uint64):
            h = h * mult + c
        h ^= short_key ^ np.uint64(len(codes))
        return _fmix64(h)
    return ngram_hashes(codes, ngram, seed)


def minhash_signature(text: str, ngram: int = 5, num_perm: int = 512, seed: int = 1) -> np.ndarray:
    """The MinHash sketch of ``text``: ``num_perm`` uint8 values; between two texts each is equal with
    probability J + (1 - J) / 256, J the Jaccard similarity of their shingle sets."""
    starts, round_keys, round_tags = _bins(num_perm, seed)
    h = shingle_hashes(text, ngram, seed)
    h.sort()
    first = np.searchsorted(h, starts)  # where each bin's hashes begin in the sorted array
    filled = np.empty(num_perm, dtype=bool)
    np.less(first[:-1], first[1:], out=filled[:-1])
    filled[-1] = first[-1] < len(h)
    values = h[np.minimum(first, len(h) - 1)].astype(_SIG_DTYPE)  # the smallest hash of each bin, low bits
    n_filled, done = int(np.count_nonzero(filled)), 0
    while n_filled < num_perm and done < _MAX_ROUNDS:
        # enough rounds that every bin is likely hit (coupon collector); any left get another batch
        count = min(_MAX_ROUNDS - done, max(1, math.ceil(num_perm * (math.log(num_perm - n_filled) + 2) / len(h))))
        g = h ^ round_keys[done: done + count]  # rounds x shingles
        _fmix64(g)
        key = g >> _S32
        key *= np.uint64(num_perm)
        key >>= _S32  # the bin, from the top 32 bits
        key <<= _BIN_SHIFT
        key |= round_tags[done: done + count]
        g &= _LOW39
        key |= g
        key = key.ravel()
        key.sort()  # by bin, then round, then value: a bin's first key is its winner
        bins = (key >> _BIN_SHIFT).astype(np.intp)
        lead = np.empty(len(key), dtype=bool)
        lead[0] = True
        np.not_equal(bins[1:], bins[:-1], out=lead[1:])
        lead = np.flatnonzero(lead)
        lead = lead[~filled[bins[lead]]]  # the winners of bins still empty
        new = bins[lead]
        values[new] = key[lead].astype(_SIG_DTYPE)
        filled[new] = True
        n_filled += len(new)
        done += count
    return values


def candidate_probability(jaccard: float, bands: int, rows: int) -> float:
    """The chance that LSH with ``bands`` bands of ``rows`` rows proposes a pair of this similarity."""
    return 1.0 - (1.0 - jaccard**rows) ** bands


def estimated_jaccard(equal_share):
    """The Jaccard estimate from the share of equal 8-bit values (removing chance agreement)."""
    return np.clip((np.asarray(equal_share, dtype=np.float64) - _CHANCE) / (1 - _CHANCE), 0.0, 1.0)


def auto_bands(num_perm: int, threshold: float) -> int:
    """The fewest bands (so the fewest chance candidates to verify) for which a pair two standard errors
    of the estimate below ``threshold`` is still proposed with probability 0.999: a pair that verification
    could pass is then almost never missed by LSH (for thresholds above about 0.4)."""
    floor = max(0.0, threshold - 2 * math.sqrt(threshold * (1 - threshold) / num_perm))
    for rows in range(16, 3, -1):
        if candidate_probability(floor, num_perm // rows, rows) >= 0.999:
            return num_perm // rows
    return num_perm // 3  # at least 3 rows: with 8-bit values fewer would make chance buckets


class MinHashDedup(DedupStage):
    """Near-duplicates by MinHash-LSH over character n-grams: in input order, a document whose n-gram set
    has a Jaccard similarity of at least ``threshold`` with an earlier kept document is removed and names
    that document; the first of each group is kept. The similarity is estimated from the signatures; when
    the driver can read texts back, pairs whose estimate is within :attr:`margin` of the threshold are
    compared exactly.

    Options: ``ngram`` (characters per shingle, whitespace removed first), ``num_perm`` (signature
    length in bins, one byte each), ``threshold`` (the Jaccard similarity of the shingle sets from which
    two documents count as near-duplicates; 0.8 is about 2% of the characters edited, or a ninth of the
    text replaced), ``bands`` (LSH bands of ``num_perm // bands`` rows; bins left over only take part in
    verification; by default the fewest that still propose nearly every pair verification could pass,
    see :func:`auto_bands`), ``seed`` (the hash functions; signatures from different seeds or sizes cannot
    be compared).

    A text shorter than ``ngram`` characters (after whitespace removal) is a single shingle, itself:
    it is a near-duplicate only of the same short text.
    """

    name = "minhash_dedup"
    fetch_pairs = 512  # exact checks per call for texts: at most twice as many documents held at once

    def __init__(self, ngram: int = 5, num_perm: int = 512, threshold: float = 0.8, bands: int | None = None,
                 seed: int = 1):
        super().__init__()
        for option, value in (("ngram", ngram), ("num_perm", num_perm), ("seed", seed)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise DataError(f"{self.name}: {option} must be an integer, not {value!r}")
        if not 1 <= ngram <= 64:
            raise DataError(f"{self.name}: ngram must be between 1 and 64, not {ngram}")
        if not 16 <= num_perm <= 1024:
            raise DataError(f"{self.name}: num_perm must be between 16 and 1024, not {num_perm}")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
            raise DataError(f"{self.name}: threshold must be a Jaccard similarity in (0, 1], not {threshold!r}")
        if bands is None:
            bands = auto_bands(num_perm, threshold)
        elif isinstance(bands, bool) or not isinstance(bands, int) or not 1 <= bands <= num_perm:
            raise DataError(f"{self.name}: bands must be an integer between 1 and num_perm ({num_perm}), "
                            f"not {bands!r}")
        self.ngram, self.num_perm, self.bands, self.seed = ngram, num_perm, bands, seed
        self.threshold = float(threshold)
        self.rows = num_perm // bands
        # six standard errors of the estimate at the threshold (0.11 at num_perm 512, threshold 0.8): a pair
        # whose estimate is further away lies on the same side of the threshold but with odds below 1e-8
        self.margin = max(0.05, 6 * math.sqrt(threshold * (1 - threshold) / num_perm))

    def signature(self, doc):
        return minhash_signature(doc.text, self.ngram, self.num_perm, self.seed)

    # -- driver --------------------------------------------------------------------------------------

    def _collect(self, items):
        """Positions, ids and the stacked signatures (the only per-document state the driver holds)."""
        positions: list[int] = []
        ids: list[str] = []
        sigs = np.empty((1024, self.num_perm), dtype=_SIG_DTYPE)
        for position, doc_id, sig in items:
            sig = np.asarray(sig)
            if sig.shape != (self.num_perm,) or sig.dtype != _SIG_DTYPE:
                raise DataError(f"{self.name}: the signature of {doc_id} is {sig.dtype}{list(sig.shape)}, not "
                                f"uint8[{self.num_perm}] (computed with other options?)")
            n = len(positions)
            if n == len(sigs):
                sigs = np.concatenate([sigs, np.empty_like(sigs)])
            sigs[n] = sig
            positions.append(position)
            ids.append(doc_id)
        return positions, ids, sigs[: len(positions)]

    def candidates(self, sigs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pairs ``(i, j)``, ``i < j``, of rows that share an LSH band: within each bucket (rows with
        equal band values, in input order) each member is paired with the bucket's first member and with
        the member just before it, so a bucket of any size costs linear work."""
        n, rows = len(sigs), self.rows
        mult = _hash_constants(self.seed)[0]
        pairs = []
        for band in range(self.bands):
            block = sigs[:, band * rows: (band + 1) * rows].astype(np.uint64)
            key = block[:, 0].copy()
            for r in range(1, rows):  # a 64-bit key per row for this band (exact for rows <= 8)
                if rows <= 8:
                    key = (key << np.uint64(8)) | block[:, r]
                else:
                    key = key * mult + block[:, r]
            if rows > 8:
                key = _fmix64(key)
            order = np.argsort(key, kind="stable")  # equal keys stay in input order
            k = key[order]
            same = k[1:] == k[:-1]
            if not same.any():
                continue
            later = np.flatnonzero(same) + 1  # sorted places whose row joins the bucket before it
            bucket_start = np.maximum.accumulate(np.where(np.r_[True, ~same], np.arange(n), 0))
            pairs.append(np.stack([order[later - 1], order[later]], axis=1))
            head = bucket_start[later]
            far = head != later - 1
            pairs.append(np.stack([order[head[far]], order[later[far]]], axis=1))
        if not pairs:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        both = np.concatenate(pairs).astype(np.int64)
        code = np.unique(both.min(axis=1) * n + both.max(axis=1))
        return code // n, code % n

    def similarity(self, sigs: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Estimated Jaccard of each pair of rows (in chunks, bounded memory)."""
        equal = np.empty(len(a), dtype=np.float64)
        step = max(1, (1 << 22) // self.num_perm)
        for s in range(0, len(a), step):
            equal[s: s + step] = (sigs[a[s: s + step]] == sigs[b[s: s + step]]).sum(axis=1)
        return estimated_jaccard(equal / self.num_perm)

    def _exact(self, a: np.ndarray, b: np.ndarray, texts, cache: dict) -> np.ndarray:
        """Exact Jaccard of the n-gram sets of each pair of rows. ``cache`` (row -> sorted unique shingle
        hashes) keeps only the rows these pairs need; ``texts(rows)`` reads the others."""
        needed = set(a.tolist()) | set(b.tolist())
        for row in [r for r in cache if r not in needed]:
            del cache[row]
        missing = sorted(needed - cache.keys())
        if missing:
            got = texts(missing)
            for row in missing:
                if row not in got:
                    raise DataError(f"{self.name}: the driver did not return the text of document {row}")
                cache[row] = np.unique(shingle_hashes(got[row], self.ngram, self.seed))
        sims = np.empty(len(a))
        for i, (x, y) in enumerate(zip(a.tolist(), b.tolist())):
            common = len(np.intersect1d(cache[x], cache[y], assume_unique=True))
            sims[i] = common / (len(cache[x]) + len(cache[y]) - common)
        self.counters["exact_checks"] += len(a)
        return sims

    def cluster(self, sigs: np.ndarray, texts=None):
        """The decision on stacked signatures (row i = the i-th document in input order); ``texts(rows)``,
        if given, returns the texts of those rows for exact checks. For each row: the row it was removed
        as a near-duplicate of (-1 when kept), that Jaccard, and whether it is exact."""
        n = len(sigs)
        a, b = self.candidates(sigs)
        sim = self.similarity(sigs, a, b)
        self.counters["candidate_pairs"] += len(a)
        threshold = self.threshold - 1e-9
        margin = self.margin if texts is not None else 0.0
        close = sim >= threshold - margin  # the rest are rejected on their estimate
        order = np.lexsort((a[close], b[close]))  # by the later row, then the earlier
        a, b, sim = a[close][order], b[close][order], sim[close][order]
        exact = sim < threshold + margin  # to compare exactly (none without texts)

        kept = np.ones(n, dtype=bool)
        keeper, keeper_sim, keeper_exact = np.full(n, -1), np.full(n, -1.0), np.zeros(n, dtype=bool)
        # chunks of at most fetch_pairs exact checks; a pair whose earlier row is gone needs none
        starts = [0, *np.flatnonzero(exact)[self.fetch_pairs:: self.fetch_pairs].tolist(), len(a)]
        cache: dict = {}
        for start, stop in zip(starts[:-1], starts[1:]):
            check = start + np.flatnonzero(exact[start:stop] & kept[a[start:stop]])
            if len(check):
                sim[check] = self._exact(a[check], b[check], texts, cache)
            for x, y, s, e in zip(b[start:stop].tolist(), a[start:stop].tolist(), sim[start:stop].tolist(),
                                  exact[start:stop].tolist()):
                if s >= threshold and kept[y]:  # rows earlier than x are final
                    self.counters["verified_pairs"] += 1
                    if s > keeper_sim[x]:  # the most similar earlier kept row
                        kept[x] = False
                        keeper[x], keeper_sim[x], keeper_exact[x] = y, s, e
        return keeper, keeper_sim, keeper_exact

    def duplicates(self, items, texts=None):
        positions, ids, sigs = self._collect(items)
        n = len(positions)
        self.counters["in"] += n
        if n < 2:
            return {}

        def rows_texts(rows):  # the driver's texts, by row instead of position
            got = texts([positions[r] for r in rows])
            return {r: got[positions[r]] for r in rows if positions[r] in got}

        keeper, keeper_sim, keeper_exact = self.cluster(sigs, rows_texts if texts is not None else None)
        removed = {}
        for x in np.flatnonzero(keeper >= 0).tolist():
            how = "exact" if keeper_exact[x] else "estimated"
            removed[positions[x]] = Rejected(
                "near_duplicate", f"near-duplicate of {ids[keeper[x]]} ({how} Jaccard {keeper_sim[x]:.2f})")
        self.counters["clusters"] += len(np.unique(keeper[keeper >= 0]))
        self.counters["removed_near_duplicate"] += len(removed)
        return removed
