"""What a run trains on and evaluates with, from its config: continued-pretraining documents (tokenized
once into a cache under ``OUT/token-cache``, mixed by weight, packed) or SFT conversations (rendered
with the model's chat format, assistant tokens trained, packed); a held-out part of either for the
held-out loss; and a loader that gives each process its part of every global batch, resumably.

A run that gives no ``seq_len`` / ``global_batch_tokens`` gets them here, once the data is tokenized and its
sizes are known (:func:`choose_seq_len`, :func:`choose_global_batch`): the values are set on the config (so
the run's saved settings hold them), written to ``OUT/data.json`` with the reason, and printed."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from taide.artifacts import atomic_write, write_json
from taide.models.loading import HFCodec
from taide.train.config import TrainConfig, TrainError
from taide.train.decontaminate import decontaminate_sft
from taide.train.packing import (CPDataset, DocumentTokenizer, Loader, collate, heldout_documents, pack_row,
                                 tokenize_source)
from taide.train.parallel import World
from taide.train.sft_data import SFTDataset, load_sft


@dataclass
class Datasets:
    train: Loader
    heldout_set: object  # a dataset with num_rows(0) / row(0, i)
    steps: int  # optimizer steps the data allows for config.epochs
    problems: list  # SFT records left out, with file:line:field
    world: World
    micro_batch_size: int
    summary: dict  # what OUT/data.json holds: rows, steps, the batch and why, the SFT files' layouts and left-out records
    decontamination: dict | None = None  # SFT: what the check against evaluation data found (summary); None: no check

    def save_heldout(self, path: Path) -> Path | None:
        """The held-out rows as arrays (``input_ids``, ``labels``, ``position_ids``: [rows, seq_len]) in ``path``, an
        .npz file, for whoever scores models on them later (the build's proof); None when there are none."""
        rows = [self.heldout_set.row(0, i) for i in range(self.heldout_set.num_rows(0))]
        if not rows:
            return None
        arrays = {name: np.stack([getattr(r, name) for r in rows]) for name in ("input_ids", "labels", "position_ids")}
        def write(tmp: Path) -> None:
            with tmp.open("wb") as f:  # closed (and flushed) before atomic_write renames it
                np.savez(f, **arrays)

        return atomic_write(path, write)

    def target_ids(self) -> np.ndarray:
        """Every token id the run trains to predict, on training and held-out rows (sorted, unique)."""
        found = set()
        for dataset in (self.train.dataset, self.heldout_set):
            found.update(int(t) for t in dataset.target_ids())
        return np.asarray(sorted(found), dtype=np.int64)

    def heldout(self, batches: int) -> list[dict]:
        """Up to ``batches`` micro-batches of held-out rows for this process (every process its own rows).
        Every process gets the same number of batches, since under FSDP each forward is collective: a process
        whose rows have run out gets a row of padding (no trained tokens) instead of skipping the forward."""
        rows = self.heldout_set.num_rows(0)
        per = self.micro_batch_size
        stride = self.world.size * per
        out = []
        for k in range(min(batches, -(-rows // stride))):
            start = k * stride + self.world.rank * per
            mine = [self.heldout_set.row(0, i) for i in range(start, min(start + per, rows))]
            out.append(collate(mine or [pack_row([], self.heldout_set.seq_len, self.heldout_set.pad_id)]))
        return out


def _sources(data) -> dict[str, list[str]]:
    if isinstance(data, dict):
        return {name: [paths] if isinstance(paths, str) else list(paths) for name, paths in data.items()}
    return {"corpus": [data] if isinstance(data, str) else list(data)}


def _split_sft(examples: list, fraction: float) -> tuple[list, list]:
    """Held-out conversations: every k-th one (with every sequence it trains), so the choice does not depend on a
    random state."""
    order = list(dict.fromkeys(e.origin for e in examples))
    if fraction <= 0 or len(order) < 2:
        return examples, []
    every = max(2, round(1 / fraction))
    held = {origin for i, origin in enumerate(order) if i % every == every - 1}
    return [e for e in examples if e.origin not in held], [e for e in examples if e.origin in held]


# ---- batch settings the data can fill, when the run gives none -----------------------------------------------

MAX_CHOSEN_SEQ_LEN = 2048  # chosen rows are at most this long (and at most the model's context)
MIN_CHOSEN_SEQ_LEN = 16
MIN_ROWS = 8  # CP: the chosen seq_len leaves at least this many training rows
MIN_STEPS = 10  # the chosen batch leaves at least this many optimizer steps an epoch
MAX_CHOSEN_BATCH = {"cp": 1 << 20, "sft": 1 << 18}  # never more than the card's batches (1M CP, 256K SFT)


def _pow2_at_most(n: int) -> int:
    return 1 << (max(1, int(n)).bit_length() - 1)


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def seq_len_limit(model: str) -> tuple[int, str]:
    """The longest row a chosen seq_len may have: 2048, or the model's context when shorter (read from its
    metadata; no weights loaded). Returns the limit and where it comes from, for the report."""
    from taide.models import resolve_model

    try:
        context = resolve_model(model).context_length
    except Exception:  # noqa: BLE001 - an unreadable reference fails later, where the model is loaded
        context = None
    if context and context < MAX_CHOSEN_SEQ_LEN:
        return int(context), f"at most the model's context, {context}"
    return MAX_CHOSEN_SEQ_LEN, f"at most {MAX_CHOSEN_SEQ_LEN}"


def _divides(config: TrainConfig, world_size: int):
    """A given global_batch_tokens must stay a multiple of micro_batch_size × seq_len × processes."""
    return lambda seq_len: (config.global_batch_tokens is None
                            or config.global_batch_tokens % (seq_len * config.micro_batch_size * world_size) == 0)


def choose_seq_len(config: TrainConfig, world_size: int, limit: tuple[int, str], *, train_tokens: int | None = None,
                   lengths: list[int] | None = None) -> tuple[int, str]:
    """seq_len for a run that gives none. SFT (``lengths``: every usable conversation's tokens): the smallest power
    of two that holds the longest conversation, since a conversation is never cut. CP (``train_tokens``): the
    largest power of two that still cuts the training tokens into ``MIN_ROWS`` rows, since a small corpus cut
    into long rows leaves too few rows to make batches of. Both at most ``limit``."""
    cap, cap_why = limit
    fits = _divides(config, world_size)
    if config.mode == "sft":
        longest = max(lengths)
        seq_len = min(cap, _pow2_at_least(max(longest, MIN_CHOSEN_SEQ_LEN)))
        while seq_len % 2 == 0 and seq_len // 2 >= longest and not fits(seq_len):
            seq_len //= 2
        return seq_len, (f"seq_len {seq_len}: the smallest power of two that holds the longest of {len(lengths)} "
                         f"conversations ({longest} tokens), {cap_why}")
    seq_len = max(MIN_CHOSEN_SEQ_LEN, _pow2_at_most(min(cap, train_tokens // MIN_ROWS)))
    while seq_len > MIN_CHOSEN_SEQ_LEN and not fits(seq_len):
        seq_len //= 2
    return seq_len, (f"seq_len {seq_len}: the largest power of two that cuts the {train_tokens:,} training tokens "
                     f"into at least {MIN_ROWS} rows, {cap_why}")


def choose_global_batch(config: TrainConfig, world_size: int, rows: int) -> tuple[int, str]:
    """global_batch_tokens for a run that gives none: micro_batch_size × seq_len × processes × k, with k the
    largest power of two that leaves ``MIN_STEPS`` optimizer steps in an epoch of ``rows`` rows (k = 1 when
    the data is smaller than that), and the batch not above the card's."""
    per_step = config.micro_batch_size * world_size  # rows of one micro-batch on every process
    k = 1
    while (rows // (per_step * k * 2) >= MIN_STEPS
           and config.seq_len * per_step * k * 2 <= MAX_CHOSEN_BATCH[config.mode]):
        k *= 2
    steps = rows // (per_step * k)
    tokens = config.seq_len * per_step * k
    return tokens, (f"global_batch_tokens {tokens:,} ({per_step * k} rows a step): {rows} rows of {config.seq_len} "
                    f"tokens make {steps} optimizer steps an epoch (at least {MIN_STEPS} where the data allows)")


def _report_choice(config: TrainConfig, chosen: list[str], reasons: list[str], world: World) -> str:
    line = (" and ".join(chosen) + " not given, chosen from the data: " + "; ".join(reasons)
            + ". Give --seq-len / --global-batch-tokens (or the recipe's keys) to set them.")
    if world.main:
        print(f"taide train: {line}", file=sys.stderr, flush=True)
    return line


def _train_tokens(sources: dict, holdout_fraction: float) -> int:
    """Tokens of the documents that are not held out: what an epoch trains on, before cutting into rows."""
    return sum(int(np.asarray(s.lengths)[~heldout_documents(s, holdout_fraction)].sum()) for s in sources.values())


def build_datasets(config: TrainConfig, tokenizer, chat_format, world: World) -> Datasets:
    codec = HFCodec(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    epochs = max(1, math.ceil(config.epochs))
    problems: list = []
    chosen = [name for name in ("seq_len", "global_batch_tokens") if getattr(config, name) is None]
    reasons: list[str] = []
    limit = seq_len_limit(config.model) if config.seq_len is None else None
    decontamination = None
    if config.mode == "cp":
        document = DocumentTokenizer.from_hf(tokenizer, codec)
        cache = Path(config.out) / "token-cache"
        sources = {name: tokenize_source(paths, document, cache, config.text_field)
                   for name, paths in _sources(config.data).items()}
        if config.seq_len is None:
            config.seq_len, why = choose_seq_len(config, world.size, limit,
                                                 train_tokens=_train_tokens(sources, config.holdout_fraction))
            reasons.append(why)
        train_set = CPDataset(sources, config.seq_len, config.mix, config.seed, config.holdout_fraction, "train",
                              pad_id=pad_id)
        heldout_set = CPDataset(sources, config.seq_len, None, config.seed, config.holdout_fraction, "heldout",
                                pad_id=pad_id)
    else:
        paths = [p for paths in _sources(config.data).values() for p in paths]
        sft = load_sft(paths, chat_format, codec, config.seq_len or limit[0], config.on_bad_record)
        examples, problems = sft.examples, sft.problems
        if world.main:
            for line in sft.summary_lines():
                print(f"taide train: {line}", file=sys.stderr, flush=True)
        examples, decontamination = decontaminate_sft(config, examples, tokenizer, world.main)
        if not examples:
            raise TrainError(f"no usable conversations in {', '.join(paths)}"
                             + (f"; first problem: {problems[0]}" if problems else ""))
        if config.seq_len is None:
            config.seq_len, why = choose_seq_len(config, world.size, limit,
                                                 lengths=[len(e.input_ids) for e in examples])
            reasons.append(why)
        train_examples, heldout_examples = _split_sft(examples, config.holdout_fraction)
        train_set = SFTDataset(train_examples, config.seq_len, pad_id, config.seed)
        heldout_set = SFTDataset(heldout_examples, config.seq_len, pad_id, config.seed)
        if world.main and problems:
            report = Path(config.out) / "bad_records.txt"
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text("".join(f"{p}\n" for p in problems), encoding="utf-8")
    if config.global_batch_tokens is None:
        config.global_batch_tokens, why = choose_global_batch(config, world.size, train_set.num_rows(0))
        reasons.append(why)
    choice = _report_choice(config, chosen, reasons, world) if chosen else None
    accumulation = config.accumulation(world.size)
    loader = Loader(train_set, config.micro_batch_size, world.rank, world.size, epochs)
    micro_batches = sum(loader.batches_in_epoch(e) for e in range(epochs)) * config.epochs / epochs
    steps = int(micro_batches // accumulation)
    if steps < 1:
        rows = train_set.num_rows(0)
        raise TrainError(
            f"the training data makes {rows} sequences of {config.seq_len} tokens, fewer than one global batch of "
            f"{config.global_batch_tokens // config.seq_len} sequences ({config.global_batch_tokens:,} tokens): "
            + ("add data or lower micro_batch_size" if "global_batch_tokens" in chosen
               else "add data or lower global_batch_tokens"))
    summary = {"mode": config.mode, "train_rows_epoch0": train_set.num_rows(0),
                   "heldout_rows": heldout_set.num_rows(0), "steps": steps, "accumulation": accumulation,
                   "bad_records": len(problems),
               **({"conversations": {"sources": [{"path": src.path, "layout": src.layout,
                                                  "conversations": src.conversations} for src in sft.read.sources],
                                     "sequences": len(examples), "one_sequence_per_answer": sft.split_conversations,
                                     "left_out": [str(p) for p in problems]}} if config.mode == "sft" else {}),
               "batch": {"seq_len": config.seq_len, "global_batch_tokens": config.global_batch_tokens,
                         "micro_batch_size": config.micro_batch_size, "chosen": chosen, "why": choice}}
    if config.mode == "sft":  # the share of positions whose next token is trained: where the output layer runs
        summary["trained_share"] = (sum(int((e.labels != -100).sum()) for e in examples)
                                    / max(1, sum(len(e.labels) for e in examples)))
    if world.main:
        write_json(Path(config.out) / "data.json", summary)
    return Datasets(loader, heldout_set, steps, problems, world, config.micro_batch_size, summary,
                    decontamination)
