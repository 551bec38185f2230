"""Evaluation items to keep out of training data, read from the files an evaluation reads.

- **Exams**, in every format `taide eval mc` reads (TMMLU's ``data.csv``, question/A–D/answer CSV or JSONL, TTQA's
  JSON): one item per question, its parts the stem and each option. The options' order does not matter.
- **Any other JSONL** (taide-bench rows ``{qid, prompt, reference}``, the Taiwan prompts ``{id, prompt}``, held-out
  pairs ``{id, source, reference}``, chat records ``{messages}``): one item per text field of a record (the prompt,
  the reference answer, ...), each checked on its own, since a training document holding only a bench answer
  has leaked that answer.

An item's benchmark is the name of the path it was given under (``data/tmmluplus`` → tmmluplus, ``TTQA_mc.json``
→ TTQA_mc), or of the subfolder it lies in when the folder given holds several (``data/eval`` with ``tmmluplus/``,
``tmlu/``, ``ttqa/``); its subject is the exam's subject or the file's name (a bench task).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from taide.decontam.keys import content_keys
from taide.errors import InputError

# Text fields of a prompt record that an evaluation shows the model or scores it against.
TEXT_FIELDS = ("prompt", "instruction", "input", "question", "query", "context", "source", "reference", "target",
               "output", "answer", "response", "resp", "chosen")


@dataclass(frozen=True)
class EvalItem:
    benchmark: str
    subject: str
    qid: str
    parts: tuple[str, ...]  # an exam question: the stem, then its options; otherwise one text
    source: str  # file:line
    field: str  # "question" for an exam item, else the record's field (prompt, reference, ...)
    key: str = ""  # content_key: the same for copies that differ only in form (and option order); see keyed()

    @property
    def label(self) -> str:
        return f"{self.benchmark}/{self.subject}/{self.qid}" + ("" if self.field == "question" else f":{self.field}")


def keyed(items: list[EvalItem]) -> list[EvalItem]:
    """``items`` with their keys, computed together (an exam question's: its stem, then its options in any order)."""
    keys = content_keys([(item.parts, item.field != "question") for item in items])
    return [dataclasses.replace(item, key=key) for item, key in zip(items, keys)]


@dataclass
class EvalSet:
    items: list[EvalItem] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # rows that could not be read, with file:line
    files: dict[str, str] = field(default_factory=dict)  # file -> the format it was read as


def benchmark_names(given: Path, files: list[Path]) -> list[str]:
    """The benchmark of each file found under the path ``given``: the path's name (a file's without its split suffix:
    TTQA_mc.json → TTQA_mc), or, for a folder whose files lie in several places (data/eval holding tmmluplus/, tmlu/,
    ttqa/), the subfolder each file lies in (files of the folder itself: the folder's name)."""
    from taide.eval.mc import subject_name

    if not given.is_dir():
        return [subject_name(given)] * len(files)
    parts = [f.relative_to(given).parts for f in files]
    several = len({p[0] if len(p) > 1 else None for p in parts}) > 1  # subfolders, and files of its own
    return [p[0] if several and len(p) > 1 else given.name for p in parts]


def _is_exam_jsonl(path: Path) -> bool:
    from taide.artifacts import iter_jsonl

    for _, record, _ in iter_jsonl(path):
        if record is not None:
            keys = {str(k).strip().lower() for k in record}
            return "question" in keys and "a" in keys and "b" in keys
    return False


def _record_texts(record: dict) -> list[tuple[str, str]]:
    texts = [(name, record[name]) for name in TEXT_FIELDS if isinstance(record.get(name), str) and record[name].strip()]
    for name in ("messages", "conversations"):
        turns = record.get(name)
        if isinstance(turns, list):
            for i, turn in enumerate(turns):
                content = turn.get("content", turn.get("value")) if isinstance(turn, dict) else None
                if isinstance(content, str) and content.strip() and turn.get("role", turn.get("from")) != "system":
                    texts.append((f"{name}[{i}]", content))
    return texts


def _read_records(path: Path, benchmark: str, out: EvalSet) -> None:
    from taide.artifacts import iter_jsonl
    from taide.eval.mc import subject_name

    subject = subject_name(path)
    for line, record, problem in iter_jsonl(path):
        if problem:
            out.problems.append(f"{path}:{line}: {problem}")
            continue
        texts = _record_texts(record)
        if not texts:
            out.problems.append(f"{path}:{line}: no text field ({', '.join(TEXT_FIELDS[:4])}, ... or messages)")
            continue
        qid = str(record.get("qid") or record.get("id") or line)
        for name, text in texts:
            out.items.append(EvalItem(benchmark, subject, qid, (text,), f"{path}:{line}", name))


def mc_items(data, benchmark: str) -> list[EvalItem]:
    """The items of exams read by :func:`taide.eval.mc.load_mc` (an ``MCData``), keyed."""
    return keyed([EvalItem(benchmark, subject, item.qid, (item.question, *item.options.values()), item.source,
                           "question") for subject, items in data.subjects.items() for item in items])


def read_eval_items(paths) -> EvalSet:
    """Every evaluation item under ``paths`` (files, or directories of .csv/.jsonl/.json files)."""
    from taide.eval.mc import MCData, find_exam_files, read_mc_file

    out = EvalSet()
    for given in [paths] if isinstance(paths, (str, Path)) else paths:
        given = Path(given)
        files = find_exam_files(given)
        for path, benchmark in zip(files, benchmark_names(given, files)):
            try:
                if path.name.endswith(".jsonl") and not _is_exam_jsonl(path):
                    out.files[str(path)] = "prompt records (JSONL)"
                    _read_records(path, benchmark, out)
                    continue
            except UnicodeDecodeError as e:
                raise InputError(path, None, f"not UTF-8 text ({e.reason} at byte {e.start})") from e
            data = read_mc_file(path, MCData())
            out.files.update(data.formats)
            out.problems += [f"{row['source']}: {row['reason']}" for row in data.bad_rows]
            out.items += mc_items(data, benchmark)
    prompts = iter(keyed([item for item in out.items if not item.key]))  # exam items came keyed
    out.items = [item if item.key else next(prompts) for item in out.items]
    return out
