"""CP data: documents from cleaned shards → cached token arrays → a weighted mix → packed rows of ``seq_len``
tokens, served in resumable, rank-sharded batches. SFT (``sft_data``) reuses the row packing and the loader.

Decisions
- A document is ``[BOS] + text tokens + [EOS]``: BOS only if the tokenizer has one, EOS the end-of-text token.
- Rows are cut from the mixed token stream every ``seq_len`` tokens; a document that does not fit goes on in
  the next row. Position ids restart at 0 at each document start, and at each row start (a continued document
  starts over at 0: its row cannot see its beginning anyway).
- ``labels = input_ids`` except -100 wherever the position id is 0. HF shifts labels inside the model (the
  logits at t are scored against ``labels[t + 1]``), so this masks exactly the prediction of a document's first
  token from the previous document's last token: a prediction that does not exist when documents are trained
  alone. EOS stays a target, so the model learns where documents end.
- Attention: transformers 5 (``masking_utils.find_packed_sequence_indices``) turns position ids that restart
  into a block-diagonal causal mask (sdpa, eager, flex; flash-attention uses them as cu_seqlens), but only when
  the forward gets no ``attention_mask`` and no cache, and LlamaModel makes a cache unless ``use_cache=False``
  (its config default is True). So batches carry no attention mask and :func:`forward_packed` passes
  ``use_cache=False``. Padding is a block of its own (positions 0, 1, ...), with labels -100.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from taide.artifacts import atomic_dir, iter_jsonl, write_manifest
from taide.errors import InputError
from taide.train.config import TrainError

IGNORE = -100
SHARD_PATTERNS = ("part-*.jsonl", "part-*.jsonl.gz", "part-*.parquet")
END_OF_TEXT = ("<|end_of_text|>", "<|endoftext|>", "</s>", "<eos>")
CACHE_VERSION = 1


# ---- rows and batches (shared with SFT) ----------------------------------------------------------------------

@dataclass
class PackedRow:
    input_ids: np.ndarray  # int64 [seq_len]
    labels: np.ndarray  # int64 [seq_len], -100 where no loss is taken
    position_ids: np.ndarray  # int64 [seq_len], restarting at 0 at each piece


def pack_row(pieces, seq_len: int, pad_id: int) -> PackedRow:
    """Concatenate ``(ids, labels)`` pieces (documents or conversations) into one row: positions restart per
    piece, a piece's first token is never a target, and the rest is padding that forms a piece of its own."""
    ids, labels, positions = [], [], []
    for piece_ids, piece_labels in pieces:
        lab = np.array(piece_labels, dtype=np.int64)  # a copy: the first label is overwritten
        if len(lab):
            lab[0] = IGNORE
        ids.append(np.asarray(piece_ids, dtype=np.int64))
        labels.append(lab)
        positions.append(np.arange(len(lab), dtype=np.int64))
    pad = seq_len - sum(len(p) for p in ids)
    if pad < 0:
        raise TrainError(f"pieces of {seq_len - pad} tokens do not fit a row of seq_len {seq_len}")
    if pad:
        ids.append(np.full(pad, pad_id, dtype=np.int64))
        labels.append(np.full(pad, IGNORE, dtype=np.int64))
        positions.append(np.arange(pad, dtype=np.int64))
    return PackedRow(np.concatenate(ids), np.concatenate(labels), np.concatenate(positions))


def collate(rows: list[PackedRow]) -> dict:
    """``input_ids``, ``labels``, ``position_ids`` as [batch, seq_len] int64 tensors; no attention mask (see
    the module docstring)."""
    import torch

    return {name: torch.from_numpy(np.stack([getattr(r, name) for r in rows]))
            for name in ("input_ids", "labels", "position_ids")}


def forward_packed(model, batch: dict):
    """The model's output (with ``.loss``) on a packed batch, attention kept inside each document."""
    device = model.device
    return model(input_ids=batch["input_ids"].to(device), position_ids=batch["position_ids"].to(device),
                 labels=batch["labels"].to(device), use_cache=False)


class Loader:
    """Batches of a dataset (anything with ``num_rows(epoch)`` and ``row(epoch, index)``) for ``epochs`` epochs.

    A global batch is ``batch_size * world_size`` consecutive rows of an epoch; rank r gets rows
    ``[r * batch_size, (r + 1) * batch_size)`` of it, so the ranks split every global batch exactly. An epoch's
    incomplete last global batch is dropped. The position is two ints (:meth:`state_dict`)."""

    def __init__(self, dataset, batch_size: int, rank: int = 0, world_size: int = 1, epochs: int = 1):
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size or epochs < 1:
            raise TrainError(f"bad loader settings: batch_size {batch_size}, rank {rank}, world_size {world_size}, "
                             f"epochs {epochs}")
        self.dataset, self.batch_size, self.rank, self.world_size, self.epochs = (
            dataset, batch_size, rank, world_size, epochs)
        self.global_batch = batch_size * world_size
        self.epoch = self.batch = 0  # the next batch to yield

    def batches_in_epoch(self, epoch: int) -> int:
        return self.dataset.num_rows(epoch) // self.global_batch

    def __iter__(self) -> Iterator[dict]:
        while self.epoch < self.epochs:
            while self.batch < self.batches_in_epoch(self.epoch):
                first = self.batch * self.global_batch + self.rank * self.batch_size
                rows = [self.dataset.row(self.epoch, first + i) for i in range(self.batch_size)]
                self.batch += 1
                yield collate(rows)
            self.epoch, self.batch = self.epoch + 1, 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch, "global_batch": self.global_batch}

    def load_state_dict(self, state: dict) -> None:
        if state["global_batch"] != self.global_batch:
            raise TrainError(f"the checkpoint's data position is in global batches of {state['global_batch']} rows; "
                             f"this run has {self.global_batch} (batch_size × world_size): keep them equal to resume")
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])


# ---- documents → tokens ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DocumentTokenizer:
    """Turns a document's text into ``[BOS] + tokens + [EOS]`` through a chat codec (special tokens disabled)."""

    codec: object  # a taide.chat.TokenCodec
    identity: str  # a fingerprint of the vocabulary and rules: part of the cache key
    eos_id: int
    bos_id: int | None = None

    def __call__(self, text: str) -> list[int]:
        bos = [] if self.bos_id is None else [self.bos_id]
        return bos + self.codec.encode_text(text) + [self.eos_id]

    @classmethod
    def from_hf(cls, tokenizer, codec) -> DocumentTokenizer:
        """BOS if the tokenizer adds one to what it encodes (Llama 3 does; SmolLM2 does not); EOS the end-of-text
        token (``<|end_of_text|>`` for Llama 3, whose ``eos_token`` in chat models is ``<|eot_id|>``), else the
        tokenizer's EOS."""
        vocab = tokenizer.get_vocab()
        with_specials = tokenizer.encode("a")
        adds_bos = (len(with_specials) > len(tokenizer.encode("a", add_special_tokens=False))
                    and with_specials[0] == tokenizer.bos_token_id)
        eos = next((vocab[t] for t in END_OF_TEXT if t in vocab), tokenizer.eos_token_id)
        if eos is None:
            raise TrainError("the tokenizer has no end-of-text or EOS token to separate documents")
        backend = getattr(tokenizer, "backend_tokenizer", None)
        rules = backend.to_str() if backend is not None else json.dumps(sorted(vocab.items()))
        identity = hashlib.sha256(rules.encode("utf-8")).hexdigest()
        return cls(codec, identity, int(eos), tokenizer.bos_token_id if adds_bos else None)


def shard_files(inputs) -> list[Path]:
    """The shards of a source: a directory's ``part-*.jsonl[.gz]|parquet`` files, or the files given."""
    files = []
    for item in [inputs] if isinstance(inputs, (str, Path)) else inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(f for pattern in SHARD_PATTERNS for f in path.glob(pattern))
            if not found:
                raise TrainError(f"{path}: no part-*.jsonl or part-*.parquet shards in this directory")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise TrainError(f"{path}: no such file or directory")
    return files


def iter_texts(path: Path, text_field: str = "text") -> Iterator[str]:
    if path.name.endswith(".parquet"):
        import pyarrow.parquet as pq

        shard = pq.ParquetFile(path)
        if text_field not in shard.schema_arrow.names:
            raise InputError(path, None, f"{text_field}: no such column")
        for batch in shard.iter_batches(columns=[text_field]):
            yield from (t or "" for t in batch.column(0).to_pylist())
        return
    try:
        for line, record, problem in iter_jsonl(path):
            if problem:
                raise InputError(path, line, problem)
            if not isinstance(record.get(text_field), str):
                raise InputError(path, line, f"{text_field}: expected a string")
            yield record[text_field]
    except UnicodeDecodeError as e:
        raise InputError(path, None, f"not UTF-8 ({e.reason} at byte {e.start})") from e


def text_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


@dataclass
class TokenizedShard:
    tokens: np.ndarray  # uint32, the documents back to back (memory-mapped)
    offsets: np.ndarray  # int64 [documents + 1]
    hashes: np.ndarray  # uint64 hash of each document's text: decides the held-out split


def cache_key(path: Path, tokenizer: DocumentTokenizer, text_field: str) -> str:
    stat = path.stat()
    what = {"version": CACHE_VERSION, "path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "tokenizer": tokenizer.identity, "bos": tokenizer.bos_id, "eos": tokenizer.eos_id, "field": text_field}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode("utf-8")).hexdigest()


def tokenize_shard(path: Path, tokenizer: DocumentTokenizer, cache_dir: Path,
                   text_field: str = "text") -> TokenizedShard:
    """The shard's tokens from ``cache_dir``, tokenizing it first if no complete cache entry matches its path,
    size, mtime, the tokenizer and the text field. Entries are written whole (a directory renamed into place)."""
    cache_dir = Path(cache_dir)
    entry = cache_dir / cache_key(path, tokenizer, text_field)[:24]
    if not (entry / "manifest.json").is_file():
        tokens, lengths, hashes = [], [], []
        for text in iter_texts(path, text_field):
            if not text.strip():
                continue
            ids = tokenizer(text)
            tokens.append(np.asarray(ids, dtype=np.uint32))
            lengths.append(len(ids))
            hashes.append(text_hash(text))
        with atomic_dir(entry) as tmp:  # another process that wrote the same entry first keeps it
            np.save(tmp / "tokens.npy", np.concatenate(tokens) if tokens else np.zeros(0, np.uint32))
            np.save(tmp / "offsets.npy", np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64))
            np.save(tmp / "hashes.npy", np.asarray(hashes, dtype=np.uint64))
            stat = path.stat()
            write_manifest(tmp / "manifest.json", "tokenize",
                           inputs={str(path.resolve()): f"{stat.st_size} bytes, mtime_ns {stat.st_mtime_ns}"},
                           counts={"documents": len(lengths), "tokens": int(sum(lengths))},
                           tokenizer=tokenizer.identity, text_field=text_field)
    return TokenizedShard(*(np.load(entry / f"{name}.npy", mmap_mode="r", allow_pickle=False)
                            for name in ("tokens", "offsets", "hashes")))


class TokenizedSource:
    """One source's documents over its cached shards, indexed 0..len-1."""

    def __init__(self, shards: list[TokenizedShard]):
        self.shards = shards
        counts = [len(s.hashes) for s in shards]
        self.starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.lengths = np.concatenate([np.diff(s.offsets) for s in shards] or [np.zeros(0, np.int64)])
        self.hashes = np.concatenate([np.asarray(s.hashes) for s in shards] or [np.zeros(0, np.uint64)])

    def __len__(self) -> int:
        return len(self.hashes)

    def token_ids(self) -> np.ndarray:
        """The distinct token ids of every document (sorted)."""
        return np.unique(np.concatenate([np.unique(s.tokens) for s in self.shards] or [np.zeros(0, np.uint32)]))

    def document(self, index: int) -> np.ndarray:
        shard = int(np.searchsorted(self.starts, index, side="right")) - 1
        s, local = self.shards[shard], index - self.starts[shard]
        return s.tokens[s.offsets[local]:s.offsets[local + 1]]


def tokenize_source(inputs, tokenizer: DocumentTokenizer, cache_dir: Path, text_field: str = "text") -> TokenizedSource:
    return TokenizedSource([tokenize_shard(f, tokenizer, cache_dir, text_field) for f in shard_files(inputs)])


# ---- mixing, held-out split and CP rows ------------------------------------------------------------------------

def heldout_documents(source: TokenizedSource, fraction: float) -> np.ndarray:
    """Which documents are held out: those whose text hash falls in the lowest ``fraction`` of the hash range.
    It depends on the text only: not on the seed, the order, or other documents (duplicates go together)."""
    if not 0.0 <= fraction < 1.0:
        raise TrainError(f"heldout_fraction must be in [0, 1), got {fraction}")
    return source.hashes < np.uint64(min(int(fraction * 2.0**64), 2**64 - 1))


class CPDataset:
    """Rows of ``seq_len`` tokens from a weighted mix of sources (``split="train"``), or the held-out documents
    of every source once, in order (``split="heldout"``, for evaluation; the last row padded).

    ``weights`` are shares of the tokens of an epoch (``tokens_per_epoch``, by default all training tokens):
    ``{"legal": 3, "news": 1, "english": 1}`` makes 60% legal tokens, repeating legal documents (reshuffled each
    pass) or using part of a source as needed. No weights: each source once. Sources interleave smoothly (each
    document is placed by how far its source has got towards its share), every epoch reshuffled by the seed."""

    def __init__(self, sources: dict[str, TokenizedSource], seq_len: int, weights: dict[str, float] | None = None,
                 seed: int = 0, heldout_fraction: float = 0.0, split: str = "train",
                 tokens_per_epoch: int | None = None, pad_id: int = 0):
        if split not in ("train", "heldout"):
            raise TrainError(f"split must be 'train' or 'heldout', got {split!r}")
        if seq_len < 2:
            raise TrainError(f"seq_len must be at least 2, got {seq_len}")
        unknown = set(weights or {}) - set(sources)
        if unknown:
            raise TrainError(f"weights: no source named {', '.join(sorted(unknown))} (sources: {', '.join(sources)})")
        self.names = list(sources)
        self.sources = [sources[n] for n in self.names]
        self.seq_len, self.seed, self.split, self.pad_id = seq_len, seed, split, pad_id
        held = [heldout_documents(s, heldout_fraction) for s in self.sources]
        self.docs = [np.flatnonzero(h if split == "heldout" else ~h) for h in held]
        sizes = [int(s.lengths[d].sum()) for s, d in zip(self.sources, self.docs)]
        self.weights = [float((weights or {}).get(n, 0.0 if weights else size)) for n, size in zip(self.names, sizes)]
        if split == "train" and (any(w < 0 for w in self.weights) or not sum(self.weights)):
            raise TrainError("weights must be non-negative with a positive sum (and the sources not empty), got "
                             f"{dict(zip(self.names, self.weights))}")
        for name, w, size in zip(self.names, self.weights, sizes):
            if w and not size and split == "train":
                raise TrainError(f"source {name!r} has weight {w} but no training documents")
        self.tokens_per_epoch = tokens_per_epoch or sum(sizes)
        self._plans: dict[int, tuple] = {}

    def plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The epoch's stream: (source index, document index, token offset where the document ends)."""
        if epoch not in self._plans:
            self._plans = {epoch: self._heldout_plan() if self.split == "heldout" else self._mix(epoch)}
        return self._plans[epoch]

    def _mix(self, epoch: int):
        total_weight = sum(self.weights)
        src, doc, key = [], [], []
        for i, (source, docs, w) in enumerate(zip(self.sources, self.docs, self.weights)):
            target = self.tokens_per_epoch * w / total_weight
            taken, cycle = 0, 0
            while w and taken < target:
                order = np.random.default_rng([self.seed, epoch, i, cycle]).permutation(docs)
                ends = taken + np.cumsum(source.lengths[order])
                k = int(np.searchsorted(ends, target)) + 1  # documents until the share is reached
                src.append(np.full(min(k, len(order)), i, dtype=np.int64))
                doc.append(order[:k])
                key.append((ends[:k] - source.lengths[order[:k]]) / target)  # progress when the document starts
                taken, cycle = int(ends[min(k, len(order)) - 1]), cycle + 1
        src, doc, key = np.concatenate(src), np.concatenate(doc), np.concatenate(key)
        order = np.lexsort((src, key))
        src, doc = src[order], doc[order]
        return src, doc, self._ends(src, doc)

    def _heldout_plan(self):
        src = np.concatenate([np.full(len(d), i, dtype=np.int64) for i, d in enumerate(self.docs)])
        doc = np.concatenate(self.docs)
        return src, doc, self._ends(src, doc)

    def _ends(self, src, doc) -> np.ndarray:
        lengths = np.zeros(len(src), dtype=np.int64)
        for i, source in enumerate(self.sources):
            lengths[src == i] = source.lengths[doc[src == i]]
        return np.cumsum(lengths)

    def target_ids(self) -> np.ndarray:
        """Token ids a row of the sources can ask to predict: any of their documents' (a superset of this split's)."""
        return np.unique(np.concatenate([s.token_ids() for s in self.sources]))

    def num_rows(self, epoch: int) -> int:
        ends = self.plan(epoch)[2]
        total = int(ends[-1]) if len(ends) else 0
        return total // self.seq_len if self.split == "train" else -(-total // self.seq_len)

    def row(self, epoch: int, index: int) -> PackedRow:
        src, doc, ends = self.plan(epoch)
        start, stop = index * self.seq_len, min((index + 1) * self.seq_len, int(ends[-1]))
        j = int(np.searchsorted(ends, start, side="right"))  # the first document that ends after start
        pieces, pos = [], start
        while pos < stop:
            begin = int(ends[j - 1]) if j else 0  # where document j starts in the stream
            tokens = self.sources[src[j]].document(int(doc[j]))[pos - begin:min(int(ends[j]), stop) - begin]
            pieces.append((tokens, tokens))
            pos += len(tokens)
            j += 1
        return pack_row(pieces, self.seq_len, self.pad_id)
