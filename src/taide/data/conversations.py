"""Instruction-tuning conversations in the layouts people keep them in, read as taide's one shape:
``{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}``.

Layouts, recognised from a file's first record (every record of a file must have the same one):

- **messages** — ``{"messages": [{"role", "content"}, ...]}`` (taide, OpenAI's fine-tuning files, TRL);
- **sharegpt** — ``{"conversations": [{"from": "human"|"gpt"|"system", "value"}, ...], "system"?}`` (``user`` /
  ``assistant`` also taken; a ``messages`` list of ``from``/``value`` pairs too);
- **alpaca** — ``{"instruction", "input"?, "output", "system"?, "history"?: [[question, answer], ...]}``: the
  question is the instruction, then the input on the next line, as LLaMA-Factory joins them.

Files: JSONL, a JSON array, Parquet, Arrow, CSV/TSV (Alpaca's columns, or a ``messages`` column holding JSON), a
``datasets`` folder, or a folder of such files; .gz/.zst compressed. Reading reuses the corpus readers
(:mod:`taide.data.readers`), so files are decoded the same way everywhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from taide.artifacts import atomic_write
from taide.data.base import DataError
from taide.data.readers import Unreadable, input_files, read_raw
from taide.errors import InputError

ROLES = ("system", "user", "assistant")
LAYOUTS = ("messages", "sharegpt", "alpaca")
LAYOUT_NAMES = {"messages": "messages", "sharegpt": "ShareGPT", "alpaca": "Alpaca"}
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant",
                  "bard": "assistant", "bing": "assistant", "model": "assistant", "system": "system"}
ACCEPTED = ('messages: {"messages": [{"role", "content"}, ...]}; ShareGPT: {"conversations": [{"from": "human"|"gpt", '
            '"value"}, ...]}; Alpaca: {"instruction", "input", "output"}')
# Records in a layout other than the file's are an error, but the default policy (train and convert) lets through
# up to this share of otherwise bad records (each named on screen) and refuses more.
BAD_RECORD_SHARE = 0.01
POLICIES = ("auto", "skip", "error")


@dataclass(frozen=True)
class Problem:
    """A record that cannot be used: where it is, which field, what is wrong."""

    path: str
    line: int | str | None  # a line number, or "[3]" / "row 7" for arrays and tables
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


@dataclass(frozen=True)
class Conversation:
    origin: str  # path:line (or path:[i], path:row n)
    messages: list[dict]
    record: dict  # the record as read, for the fields a conversion carries over (id)


@dataclass
class Source:
    """One file as read: its layout and how many of its conversations are usable."""

    path: str
    layout: str | None
    conversations: int = 0
    problems: int = 0

    def describe(self) -> str:
        name = LAYOUT_NAMES.get(self.layout, "no")
        bad = f" ({self.problems} unusable)" if self.problems else ""
        return f"read {self.conversations:,} {name} conversations from {self.path}{bad}"


@dataclass
class Conversations:
    """Everything read: the usable conversations, the records that are not, and each file's layout."""

    conversations: list[Conversation] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)

    @property
    def records(self) -> int:
        return len(self.conversations) + len(self.problems)


def check_messages(messages) -> tuple[str, str] | None:
    """The first problem of a conversation as (field, message), or None."""
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


def layout_of(record: dict) -> str | None:
    turns = record.get("conversations", record.get("messages"))
    if isinstance(turns, list) and turns and isinstance(turns[0], dict) and "from" in turns[0]:
        return "sharegpt"
    if isinstance(record.get("messages"), (list, str)):
        return "messages"
    if "instruction" in record and "output" in record:
        return "alpaca"
    return None


def _text(record: dict, key: str, where: str, optional: bool = False) -> str:
    value = record.get(key)
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        raise _Bad(where or key, f"expected a string, got {type(value).__name__}")
    return value


class _Bad(Exception):
    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field, self.message = field_name, message


def to_messages(record: dict, layout: str) -> list[dict]:
    """The record's conversation as messages; _Bad names the field that cannot be read."""
    if layout == "messages":
        messages = record["messages"]
        if isinstance(messages, str):  # a table's column holding the list as JSON
            try:
                messages = json.loads(messages)
            except json.JSONDecodeError as e:
                raise _Bad("messages", f"a string that is not JSON ({e.msg})") from None
        return messages
    if layout == "sharegpt":
        key = "conversations" if "conversations" in record else "messages"
        messages = [{"role": "system", "content": _text(record, "system", "system")}] if record.get("system") else []
        for i, turn in enumerate(record[key]):
            if not isinstance(turn, dict):
                raise _Bad(f"{key}[{i}]", "expected an object with 'from' and 'value'")
            speaker = turn.get("from")
            role = SHAREGPT_ROLES.get(str(speaker).lower())
            if role is None:
                raise _Bad(f"{key}[{i}].from", f"{speaker!r} is not a speaker taide trains on ("
                           f"{', '.join(SHAREGPT_ROLES)}); tool and function turns are not supported")
            messages.append({"role": role, "content": _text(turn, "value", f"{key}[{i}].value")})
        return messages
    messages = [{"role": "system", "content": _text(record, "system", "system")}] if record.get("system") else []
    history = record.get("history") or []
    if not isinstance(history, list):
        raise _Bad("history", "expected a list of [question, answer] pairs")
    for i, pair in enumerate(history):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise _Bad(f"history[{i}]", "expected a [question, answer] pair of strings")
        messages += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    question = _text(record, "instruction", "instruction")
    extra = _text(record, "input", "input", optional=True)
    messages.append({"role": "user", "content": f"{question}\n{extra}" if extra.strip() else question})
    messages.append({"role": "assistant", "content": _text(record, "output", "output")})
    return messages


def _records(path: Path):
    """(where, line label, record or None, problem or None) for each record of one file."""
    for raw in read_raw(path, text_field=None):
        if isinstance(raw, Unreadable):
            yield str(path), None, None, raw.problem.removeprefix(f"{path}: ")
            continue
        label = raw.where[len(str(path)) + 1:]
        line = int(label) if label.isdigit() else label
        record = raw.payload
        if raw.kind == "line":
            try:
                record = json.loads(raw.payload.decode(raw.encoding))
            except UnicodeDecodeError as e:
                yield raw.where, line, None, f"undecodable as {raw.encoding} at byte {e.start}"
                continue
            except json.JSONDecodeError as e:
                yield raw.where, line, None, f"not valid JSON ({e.msg} at column {e.colno})"
                continue
        if not isinstance(record, dict):
            yield raw.where, line, None, "expected a JSON object"
            continue
        yield raw.where, line, record, None


def read_conversations(paths) -> Conversations:
    """Every conversation of ``paths`` (files or folders), each file's layout detected from its first record. A
    record of another layout than its file's, or a first record of no known layout, is an InputError naming the
    line, the fields found and the layouts accepted; records that have the layout but cannot be used are
    returned as problems."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    try:
        files, _ = input_files([Path(p) for p in paths])
    except DataError as e:
        raise InputError(paths[0] if len(paths) == 1 else ", ".join(map(str, paths)), None, str(e)) from None
    if not files:
        raise InputError(", ".join(map(str, paths)), None, "no files of a format taide reads (JSONL, JSON, Parquet, "
                         "Arrow, CSV/TSV, or a datasets folder)")
    out = Conversations()
    for file in files:
        source = Source(str(file.path), None)
        out.sources.append(source)
        first = None
        try:
            for where, line, record, problem in _records(file.path):
                if problem is None:
                    layout = layout_of(record)
                    if source.layout is None:
                        if layout is None:
                            raise InputError(file.path, line, f"no known conversation layout: fields "
                                             f"{', '.join(map(repr, record)) or 'none'}; taide reads {ACCEPTED}")
                        source.layout, first = layout, line
                    elif layout != source.layout:
                        found = LAYOUT_NAMES.get(layout, "no known layout")
                        raise InputError(file.path, line, f"{found} (fields {', '.join(map(repr, record))}), but "
                                         f"the file's first record (line {first}) is {LAYOUT_NAMES[source.layout]}; "
                                         f"a file holds one layout ({ACCEPTED})")
                    try:
                        messages = to_messages(record, layout)
                        problem_at = check_messages(messages)
                    except _Bad as bad:
                        problem_at = (bad.field, bad.message)
                    if problem_at is None:
                        out.conversations.append(Conversation(where, messages, record))
                        source.conversations += 1
                        continue
                    problem = problem_at
                else:
                    problem = ("", problem)
                out.problems.append(Problem(str(file.path), line, *problem))
                source.problems += 1
        except UnicodeDecodeError as e:
            raise InputError(file.path, None, f"not UTF-8 ({e.reason} at byte {e.start})") from None
        except DataError as e:
            raise InputError(file.path, None, str(e).removeprefix(f"{file.path}: ")) from None
        except OSError as e:
            raise InputError(file.path, None, f"cannot read: {e.strerror or e}") from None
    return out


def check_policy(policy: str, problems: list[Problem], records: int, what: str = "records") -> None:
    """Apply ``--on-bad-record``: "error" refuses any bad record, "skip" none, "auto" more than
    :data:`BAD_RECORD_SHARE` of them. The refusal names the first problems and what to do."""
    if policy not in POLICIES:
        raise InputError("--on-bad-record", None, f"{policy!r} is not one of {', '.join(POLICIES)}")
    if not problems or policy == "skip":
        return
    if policy == "auto" and len(problems) <= BAD_RECORD_SHARE * records:
        return
    first = problems[0]
    limit = "any" if policy == "error" else f"more than {BAD_RECORD_SHARE:.0%}"
    shown = "; ".join(str(p) for p in problems[1:3])
    raise InputError(first.path, first.line, (f"{first.field}: {first.message}" if first.field else first.message)
                     + f" — {len(problems)} of {records:,} {what} cannot be used ({limit} is refused)"
                     + (f"; also {shown}" if shown else "")
                     + ". Fix them, or pass --on-bad-record skip to train on the rest")


# --- taide data convert -------------------------------------------------------------------------------------------

@dataclass
class ConvertConfig:
    inputs: list[str]  # files or folders of conversations, in any layout above
    out: str  # the messages JSONL to write
    on_bad_record: str = "auto"  # "auto" (refuse more than 1% unusable records), "skip" or "error"


@dataclass
class ConvertResult:
    out: Path
    written: int
    sources: list[Source]
    problems: list[Problem]


def run_convert(config: ConvertConfig) -> ConvertResult:
    """``taide data convert``: write the conversations of ``inputs`` as messages JSONL (each record's ``id`` kept),
    atomically; the bad records are counted and named, and refused past the policy's limit."""
    read = read_conversations(config.inputs)
    check_policy(config.on_bad_record, read.problems, read.records)
    out = Path(config.out)

    def write(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8") as f:
            for c in read.conversations:
                record = {"id": c.record["id"]} if "id" in c.record else {}
                f.write(json.dumps({**record, "messages": c.messages}, ensure_ascii=False, default=str) + "\n")

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, write)
    return ConvertResult(out, len(read.conversations), read.sources, read.problems)
