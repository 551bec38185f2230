"""SFT data: conversations in any layout users keep them in (:mod:`taide.data.conversations`: messages, ShareGPT,
Alpaca; JSONL, JSON, Parquet, Arrow, CSV, datasets folders) → checked → rendered by the model's chat format (the
same renderer that serves it) → (ids, labels) with -100 outside what the model writes → whole conversations packed
into rows of ``seq_len`` (positions restart per conversation, attention kept inside it: see ``packing``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from taide.chat.formats import ChatFormat
from taide.data.conversations import Conversations, Problem, check_policy, read_conversations
from taide.errors import ChatFormatError
from taide.train.config import TrainError
from taide.train.packing import IGNORE, PackedRow, pack_row

__all__ = ["Problem", "SFTData", "SFTDataset", "SFTExample", "load_sft", "render_example"]


@dataclass(frozen=True)
class SFTExample:
    input_ids: np.ndarray  # int64
    labels: np.ndarray  # int64, -100 except on what the model writes (answers and their end-of-turn tokens)
    origin: str  # path:line


@dataclass
class SFTData:
    """What the SFT files gave: the examples, the records left out (with file, line, field), each file's layout, and
    how many conversations needed a sequence per answer (their template renders earlier turns differently later)."""

    examples: list[SFTExample]
    problems: list[Problem]
    read: Conversations
    split_conversations: int = 0

    def summary_lines(self) -> list[str]:
        """What a run shows on screen: each file's layout and count, the records left out and why."""
        lines = [s.describe() for s in self.read.sources]
        if self.split_conversations:
            lines.append(f"{self.split_conversations:,} conversations train as one sequence per answer: the chat "
                         "template renders their earlier turns differently once later turns follow")
        if self.problems:
            lines.append(f"{len(self.problems)} of {self.read.records:,} conversations left out (all listed in "
                         "bad_records.txt):")
            lines += [f"  {p}" for p in self.problems[:3]]
            if len(self.problems) > 3:
                lines.append(f"  … and {len(self.problems) - 3} more")
        return lines


def render_example(messages: list[dict], fmt: ChatFormat, codec) -> list[tuple[list[int], list[int]]]:
    """(ids, labels) of each sequence the conversation trains: labels are the ids where the chat format's mask is
    True, -100 elsewhere."""
    return [(ids, [t if learn else IGNORE for t, learn in zip(ids, mask)])
            for ids, mask in fmt.training_sequences(messages, codec)]


def load_sft(paths, fmt: ChatFormat, codec, max_len: int, on_bad: str = "auto") -> SFTData:
    """Every usable conversation of ``paths`` (files or folders, any layout), rendered; a record that cannot be
    used (unreadable, no assistant message, refused by the template, longer than ``max_len``) is a problem naming
    its file, line and field. ``on_bad``: "auto" refuses more than 1% problems, "error" any, "skip" none."""
    read = read_conversations(paths)
    examples, problems, split = [], list(read.problems), 0
    for conversation in read.conversations:
        path, _, line = conversation.origin.rpartition(":")
        where = int(line) if line.isdigit() else line
        try:
            sequences = render_example(conversation.messages, fmt, codec)
        except ChatFormatError as e:
            problems.append(Problem(path, where, "messages", str(e)))
            continue
        longest = max(len(ids) for ids, _ in sequences)
        if longest > max_len:
            problems.append(Problem(path, where, "messages", f"renders to {longest} tokens, more than max_len "
                                    f"{max_len} (raise --seq-len, or shorten it)"))
            continue
        split += len(sequences) > 1
        examples += [SFTExample(np.asarray(ids, np.int64), np.asarray(labels, np.int64), conversation.origin)
                     for ids, labels in sequences]
    check_policy(on_bad, problems, read.records, "conversations")
    return SFTData(examples, problems, read, split)


class SFTDataset:
    """Rows of ``seq_len`` tokens, each holding whole conversations. Each epoch shuffles the conversations by
    ``(seed, epoch)`` and packs them first-fit into up to ``open_rows`` rows at a time (when one does not fit any,
    the fullest row is closed). Padding tokens have labels -100."""

    def __init__(self, examples: list[SFTExample], seq_len: int, pad_id: int, seed: int = 0, open_rows: int = 8):
        too_long = next((e for e in examples if len(e.input_ids) > seq_len), None)
        if too_long is not None:
            raise TrainError(f"{too_long.origin}: the conversation has {len(too_long.input_ids)} tokens, more than "
                             f"seq_len {seq_len}; load it with max_len <= seq_len")
        self.examples, self.seq_len, self.pad_id, self.seed, self.open_rows = examples, seq_len, pad_id, seed, open_rows
        self._rows: dict[int, list[list[int]]] = {}

    def pack(self, epoch: int) -> list[list[int]]:
        """The epoch's rows as lists of example indices."""
        if epoch not in self._rows:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))
            rows, open_, used = [], [], []
            for i in order.tolist():
                n = len(self.examples[i].input_ids)
                slot = next((k for k, u in enumerate(used) if u + n <= self.seq_len), None)
                if slot is None:
                    if len(open_) == self.open_rows:
                        fullest = int(np.argmax(used))
                        rows.append(open_.pop(fullest))
                        used.pop(fullest)
                    open_.append([])
                    used.append(0)
                    slot = len(open_) - 1
                open_[slot].append(i)
                used[slot] += n
            self._rows = {epoch: rows + open_}
        return self._rows[epoch]

    def num_rows(self, epoch: int) -> int:
        return len(self.pack(epoch))

    def target_ids(self) -> np.ndarray:
        labels = [e.labels[e.labels != IGNORE] for e in self.examples]
        return np.unique(np.concatenate(labels)) if labels else np.zeros(0, np.int64)

    def row(self, epoch: int, index: int) -> PackedRow:
        pieces = [(self.examples[i].input_ids, self.examples[i].labels) for i in self.pack(epoch)[index]]
        return pack_row(pieces, self.seq_len, self.pad_id)
