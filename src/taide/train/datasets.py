"""What a run trains on and evaluates with, from its config: continued-pretraining documents (tokenized
once into a cache under ``OUT/token-cache``, mixed by weight, packed) or SFT conversations (rendered
with the model's chat format, assistant tokens trained, packed); a held-out part of either for the
held-out loss; and a loader that gives each process its part of every global batch, resumably."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from taide.engines.transformers_engine import HFCodec
from taide.train.config import TrainConfig, TrainError
from taide.train.packing import CPDataset, DocumentTokenizer, Loader, collate, pack_row, tokenize_source
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
    """Held-out conversations: every k-th one, so the choice does not depend on a random state."""
    if fraction <= 0 or len(examples) < 2:
        return examples, []
    every = max(2, round(1 / fraction))
    return ([e for i, e in enumerate(examples) if i % every != every - 1],
            [e for i, e in enumerate(examples) if i % every == every - 1])


def build_datasets(config: TrainConfig, tokenizer, chat_format, world: World) -> Datasets:
    codec = HFCodec(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    accumulation = config.accumulation(world.size)
    epochs = max(1, math.ceil(config.epochs))
    problems: list = []
    if config.mode == "cp":
        document = DocumentTokenizer.from_hf(tokenizer, codec)
        cache = Path(config.out) / "token-cache"
        sources = {name: tokenize_source(paths, document, cache, config.text_field)
                   for name, paths in _sources(config.data).items()}
        train_set = CPDataset(sources, config.seq_len, config.mix, config.seed, config.holdout_fraction, "train",
                              pad_id=pad_id)
        heldout_set = CPDataset(sources, config.seq_len, None, config.seed, config.holdout_fraction, "heldout",
                                pad_id=pad_id)
    else:
        paths = [p for paths in _sources(config.data).values() for p in paths]
        examples, problems = load_sft(paths, chat_format, codec, config.seq_len, config.on_bad_record)
        if not examples:
            raise TrainError(f"no usable conversations in {', '.join(paths)}"
                             + (f"; first problem: {problems[0]}" if problems else ""))
        train_examples, heldout_examples = _split_sft(examples, config.holdout_fraction)
        train_set = SFTDataset(train_examples, config.seq_len, pad_id, config.seed)
        heldout_set = SFTDataset(heldout_examples, config.seq_len, pad_id, config.seed)
        if world.main and problems:
            report = Path(config.out) / "bad_records.txt"
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text("".join(f"{p}\n" for p in problems), encoding="utf-8")
    loader = Loader(train_set, config.micro_batch_size, world.rank, world.size, epochs)
    micro_batches = sum(loader.batches_in_epoch(e) for e in range(epochs)) * config.epochs / epochs
    steps = int(micro_batches // accumulation)
    if steps < 1:
        rows = train_set.num_rows(0)
        raise TrainError(
            f"the training data makes {rows} sequences of {config.seq_len} tokens, fewer than one global batch of "
            f"{config.global_batch_tokens // config.seq_len} sequences ({config.global_batch_tokens:,} tokens): "
            "add data or lower global_batch_tokens")
    if world.main:
        summary = {"mode": config.mode, "train_rows_epoch0": train_set.num_rows(0),
                   "heldout_rows": heldout_set.num_rows(0), "steps": steps, "accumulation": accumulation,
                   "bad_records": len(problems)}
        Path(config.out).mkdir(parents=True, exist_ok=True)
        (Path(config.out) / "data.json").write_text(json.dumps(summary, indent=1))
    return Datasets(loader, heldout_set, steps, problems, world, config.micro_batch_size)
