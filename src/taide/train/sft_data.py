"""SFT data: ``{"messages": [{"role", "content"}, ...]}`` JSONL records → checked → rendered by the model's chat
format (the same renderer that serves it) → (ids, labels) with -100 outside assistant turns → whole conversations
packed into rows of ``seq_len`` (positions restart per conversation, attention kept inside it: see ``packing``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from taide.artifacts import iter_jsonl
from taide.chat.formats import ROLES, ChatFormat
from taide.errors import ChatFormatError, InputError
from taide.train.config import TrainError
from taide.train.packing import IGNORE, PackedRow, pack_row


@dataclass(frozen=True)
class Problem:
    """A record that was not used: where it is, which field, what is wrong."""

    path: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


@dataclass(frozen=True)
class SFTExample:
    input_ids: np.ndarray  # int64
    labels: np.ndarray  # int64, -100 except on assistant content and end-of-turn tokens
    origin: str  # path:line


def check_record(record: dict) -> tuple[str, str] | None:
    """The first problem of a record as (field, message), or None."""
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages", "expected a non-empty list of {role, content} objects"
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            return f"messages[{i}]", "expected an object with 'role' and 'content'"
        if m.get("role") not in ROLES:
            return f"messages[{i}].role", f"{m.get('role')!r} is not one of {', '.join(ROLES)}"
        if m["role"] == "system" and i != 0:
            return f"messages[{i}].role", "a system message may only come first"
        if not isinstance(m.get("content"), str) or not m["content"].strip():
            return f"messages[{i}].content", "expected a non-empty string"
    if not any(m["role"] == "assistant" for m in messages):
        return "messages", "no assistant message: nothing to learn"
    return None


def render_example(messages: list[dict], fmt: ChatFormat, codec) -> tuple[list[int], list[int]]:
    """(ids, labels): labels are the ids where the chat format's mask is True, -100 elsewhere."""
    ids, mask = fmt.render_ids_with_mask(messages, codec)
    return ids, [t if learn else IGNORE for t, learn in zip(ids, mask)]


def load_sft(paths, fmt: ChatFormat, codec, max_len: int,
             on_bad: str = "skip") -> tuple[list[SFTExample], list[Problem]]:
    """Every usable conversation of the JSONL files, and the problems of the others. ``on_bad="skip"`` leaves bad
    records out; ``on_bad="error"`` raises InputError naming the first one (after checking them all)."""
    if on_bad not in ("skip", "error"):
        raise TrainError(f"on_bad must be 'skip' or 'error', got {on_bad!r}")
    examples, problems = [], []
    for path in [paths] if isinstance(paths, (str, Path)) else paths:
        path = Path(path)
        try:
            for line, record, bad_json in iter_jsonl(path):
                problem = ("", bad_json) if bad_json else check_record(record)
                if problem is None:
                    try:
                        ids, labels = render_example(record["messages"], fmt, codec)
                    except ChatFormatError as e:
                        problem = ("messages", str(e))
                    else:
                        if len(ids) > max_len:
                            problem = ("messages", f"renders to {len(ids)} tokens, more than max_len {max_len}")
                if problem:
                    problems.append(Problem(str(path), line, *problem))
                else:
                    examples.append(SFTExample(np.asarray(ids, np.int64), np.asarray(labels, np.int64),
                                               f"{path}:{line}"))
        except UnicodeDecodeError as e:
            raise InputError(path, None, f"not UTF-8 ({e.reason} at byte {e.start})") from e
        except OSError as e:
            raise InputError(path, None, f"cannot read: {e.strerror}") from e
    if problems and on_bad == "error":
        first = problems[0]
        more = f" (and {len(problems) - 1} more bad records)" if len(problems) > 1 else ""
        raise InputError(first.path, first.line, f"{first.field}: {first.message}{more}" if first.field
                         else first.message + more)
    return examples, problems


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

    def row(self, epoch: int, index: int) -> PackedRow:
        pieces = [(self.examples[i].input_ids, self.examples[i].labels) for i in self.pack(epoch)[index]]
        return pack_row(pieces, self.seq_len, self.pad_id)
