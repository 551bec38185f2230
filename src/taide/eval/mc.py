"""Multiple-choice exams (TMMLU, TMMLU+, TMLU): read them, ask the model, score the answers.

Formats, told apart by the CSV header:

* **TMMLU** (``subjects/<科目>/data.csv``): ``,content.A,content.Q`` — an index, the answer letter, and the
  question with its options inline: ``…(A) 甲 (B) 乙 (C) 丙 (D) 丁``. The options are the last run of
  markers (A), (B), (C), (D) in order, searched from the end so a stem that mentions "(A)" does not
  confuse it (half- or full-width parentheses; lines starting ``A.`` / ``A、`` as a fallback). Rows
  without options (the essay questions some subjects contain) are reported, not scored.
* **TMMLU+ / TMLU**: columns ``question, A, B, C, D, answer`` (more option letters allowed), as CSV or as
  JSONL objects with the same fields.

The subject is the directory name for a ``data.csv``, otherwise the file name without a split
suffix (``accounting_test.csv`` → accounting). Bad rows are collected with ``file:line`` and a reason.

Scoring: engines that hold the weights rank the option letters by log-likelihood after the prompt
(``engine.loglikelihood(messages, ["A", "B", "C", "D"])``) and take the argmax. Engines that cannot
(an endpoint) answer by greedy generation of a few tokens, and the letter is extracted from the text
(「答案：B」, "(B)", "B.", "選B", or the text of exactly one option); an answer with no letter found is
counted wrong and reported as an extraction failure.

Prompts are Traditional-Chinese chat messages: an instruction naming the subject, then the question;
with ``shots=k`` the first k items of the subject are shown first as answered user/assistant turns
and are not scored.
"""

from __future__ import annotations

import csv
import json
import re
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from taide.errors import ContextLengthError, EngineError, InputError, TaideError

LETTERS = "ABCDEFGH"
SPLIT_SUFFIXES = ("_test", "_dev", "_val", "_validation", "_train")
INSTRUCTION = "以下是「{subject}」的單選題，請選出正確答案，只回答選項代號（{letters}）。"
ANSWER_CUE = "答案："
METHODS = ("auto", "loglikelihood", "generate")


@dataclass
class MCItem:
    subject: str
    qid: str
    question: str  # the stem, without the options
    options: dict[str, str]  # letter → option text, in letter order
    answer: str  # the gold letter
    source: str  # "file:line"


@dataclass
class MCData:
    """Items grouped by subject (file order kept), and the rows that could not be used."""

    subjects: dict[str, list[MCItem]] = field(default_factory=dict)
    bad_rows: list[dict] = field(default_factory=list)

    @property
    def n_items(self) -> int:
        return sum(map(len, self.subjects.values()))


# --- reading ---

_PAREN_MARK = re.compile(r"[(（]\s*([A-HＡ-Ｈ])\s*[)）]")
_LINE_MARK = re.compile(r"(?m)^[ \t]*([A-HＡ-Ｈ])[ \t]*[.．、:：]")
_NUMBERING = re.compile(r"^\s*\d{1,3}\s*[.．、]\s*(?!\d)")


_WRAP = re.compile(r"[ \t]*\n[ \t]*")


def unwrap(text: str) -> str:
    """Undo the hard line wraps of text extracted from exam PDFs: a break between two non-ASCII characters
    (inside a Chinese sentence) is removed, any other becomes a space."""
    def join(m):
        before, after = text[m.start() - 1:m.start()], text[m.end():m.end() + 1]
        return "" if before and after and not before.isascii() and not after.isascii() else " "

    return _WRAP.sub(join, text.strip())


def _letter(ch: str) -> str:
    return unicodedata.normalize("NFKC", ch).upper()


def split_options(text: str, letters: str = "ABCD") -> tuple[str, dict[str, str]] | None:
    """(stem, options) of a question with inline options, or None when the markers are not all there."""
    for marker in (_PAREN_MARK, _LINE_MARK):
        marks = [(_letter(m.group(1)), m.start(), m.end()) for m in marker.finditer(text)]
        chosen, limit = [], len(text) + 1
        for letter in reversed(letters):  # the last (D), then the last (C) before it, ...
            found = next((m for m in reversed(marks) if m[0] == letter and m[2] <= limit), None)
            if found is None:
                break
            chosen.append(found)
            limit = found[1]
        if len(chosen) != len(letters):
            continue
        chosen.reverse()
        options = {}
        for (letter, _, end), nxt in zip(chosen, [*chosen[1:], (None, len(text), None)]):
            options[letter] = " ".join(text[end:nxt[1]].split())
        stem = unwrap(_NUMBERING.sub("", text[:chosen[0][1]]))
        if stem and all(options.values()):
            return stem, options
    return None


def _normalize_answer(value: str) -> str:
    return unicodedata.normalize("NFKC", value or "").strip().strip("()[]【】「」 ").upper()


def subject_name(path: Path) -> str:
    if path.name == "data.csv":
        return path.parent.name
    stem = path.name.split(".")[0]
    for suffix in SPLIT_SUFFIXES:
        if stem.lower().endswith(suffix) and len(stem) > len(suffix):
            return stem[:-len(suffix)]
    return stem


def _csv_rows(path: Path) -> Iterable[tuple[int, list[str]]]:
    """(first line of the record, fields) per CSV record after the header; the header first as line 1."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        end = 0
        for row in reader:
            yield end + 1, row
            end = reader.line_num


def read_mc_file(path: str | Path, data: MCData | None = None) -> MCData:
    """Read one exam file (TMMLU ``data.csv``, question/A/B/C/D/answer CSV, or JSONL) into ``data``."""
    path = Path(path)
    data = data if data is not None else MCData()
    subject = subject_name(path)
    items = data.subjects.setdefault(subject, [])

    def bad(line, reason):
        data.bad_rows.append({"source": f"{path}:{line}", "subject": subject, "reason": reason})

    try:
        if path.name.endswith((".jsonl", ".jsonl.gz")):
            from taide.jsonl import iter_jsonl

            for line, record, problem in iter_jsonl(path):
                if problem:
                    bad(line, problem)
                    continue
                _choice_item(record, str(record.get("id", line)), subject, f"{path}:{line}", items, bad, line)
        else:
            rows = _csv_rows(path)
            first = next(rows, None)
            if first is None:
                raise InputError(path, None, "the file is empty")
            header = [h.strip() for h in first[1]]
            lower = [h.lower() for h in header]
            if "content.a" in lower and "content.q" in lower:
                ia, iq = lower.index("content.a"), lower.index("content.q")
                for line, row in rows:
                    if not any(cell.strip() for cell in row):
                        continue
                    if len(row) != len(header):
                        bad(line, f"{len(row)} fields, the header has {len(header)}")
                        continue
                    qid = row[0].strip() or str(len(items))
                    answer = _normalize_answer(row[ia])
                    parsed = split_options(row[iq])
                    if parsed is None:
                        bad(line, "no options (A)…(D) found in the question (an essay question?)")
                    elif answer not in parsed[1]:
                        bad(line, f"answer {row[ia]!r} is not one of A, B, C, D")
                    else:
                        items.append(MCItem(subject, qid, parsed[0], parsed[1], answer, f"{path}:{line}"))
            elif "question" in lower and "answer" in lower and "a" in lower:
                for line, row in rows:
                    if not any(cell.strip() for cell in row):
                        continue
                    if len(row) != len(header):
                        bad(line, f"{len(row)} fields, the header has {len(header)}")
                        continue
                    record = dict(zip(header, row))
                    qid = record.get("id") or record.get("") or str(line)
                    _choice_item(record, qid.strip(), subject, f"{path}:{line}", items, bad, line)
            else:
                raise InputError(path, 1, f"unknown exam format: header {header}; expected TMMLU's "
                                          "',content.A,content.Q' or 'question,A,B,C,D,answer'")
    except UnicodeDecodeError as e:
        raise InputError(path, None, f"not UTF-8 text ({e.reason} at byte {e.start})") from e
    except csv.Error as e:
        raise InputError(path, None, f"not valid CSV: {e}") from e
    except OSError as e:
        raise InputError(path, None, f"cannot read: {e.strerror or e}") from e
    if not items:
        del data.subjects[subject]
    return data


def _choice_item(record: dict, qid: str, subject: str, source: str, items: list, bad, line) -> None:
    fields = {str(k).strip(): v for k, v in record.items()}
    fields.update({k.lower(): v for k, v in fields.items() if k.lower() in ("question", "answer")})
    options = {}
    for letter in LETTERS:
        value = fields.get(letter)
        if value is None:
            break
        options[letter] = " ".join(str(value).split())
    question = unwrap(str(fields.get("question") or ""))
    answer = _normalize_answer(str(fields.get("answer") or ""))
    if not question:
        bad(line, "empty question")
    elif len(options) < 2 or not all(options.values()):
        bad(line, f"options {', '.join(options) or 'none'}: need at least A and B, none empty")
    elif answer not in options:
        bad(line, f"answer {fields.get('answer')!r} is not one of {', '.join(options)}")
    else:
        items.append(MCItem(subject, qid, question, options, answer, source))


def find_exam_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError(path, None, "no such file or directory")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith((".csv", ".jsonl")))
    if not files:
        raise InputError(path, None, "no .csv or .jsonl exam files under this directory")
    return files


def load_mc(paths: str | Path | Iterable[str | Path]) -> MCData:
    """Read exam files, or every .csv/.jsonl under directories, grouped by subject."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    data = MCData()
    for p in paths:
        for f in find_exam_files(Path(p)):
            read_mc_file(f, data)
    return data


# --- prompts ---

def format_question(item: MCItem) -> str:
    options = "\n".join(f"({k}) {v}" for k, v in item.options.items())
    return f"{item.question}\n{options}\n{ANSWER_CUE}"


def mc_messages(item: MCItem, examples: list[MCItem] = (), system: str | None = None) -> list[dict]:
    """The conversation for one question: optional system prompt, the instruction with the first question,
    each example answered by the assistant with its letter, then the question to answer."""
    letters = "、".join(item.options)
    instruction = INSTRUCTION.format(subject=item.subject, letters=letters)
    messages = [{"role": "system", "content": system}] if system else []
    for i, q in enumerate([*examples, item]):
        content = format_question(q)
        messages.append({"role": "user", "content": f"{instruction}\n\n{content}" if i == 0 else content})
        if q is not item:
            messages.append({"role": "assistant", "content": q.answer})
    return messages


# --- answers from generated text ---

_CUED = re.compile(r"(?:正確答案|答案|(?i:answer)|選項|選擇|應選|選)(?:\s*(?:是|為|應為|应为|:|(?i:is)))*"
                   r"\s*[(\[「【]?\s*([A-H])(?![A-Za-z])")
_PAREN = re.compile(r"\(\s*([A-H])\s*\)")
_LEADING = re.compile(r"^\s*[(\[「【]?([A-H])(?:[)\]」】.、:,\s]|$)")


def extract_choice(text: str, options: dict[str, str]) -> str | None:
    """The option letter an answer gives, or None. Tried in order: a cue (答案：B, 答案是(B), 選B, Answer: B),
    a leading letter (B. / B、 / (B) ...), a single parenthesized letter anywhere, then the text of exactly
    one option. A text with several parenthesized letters and no cue (the options echoed) gives None."""
    text = unicodedata.normalize("NFKC", text).strip()
    letters = set(options)
    m = _CUED.search(text)
    if m and m.group(1) in letters:
        return m.group(1)
    marked = {m.upper() for m in _PAREN.findall(text)} & letters
    m = _LEADING.match(text)
    if m and m.group(1) in letters and marked <= {m.group(1)}:  # "B." yes; "(A) 玉山 (B) 雪山" (an echo) no
        return m.group(1)
    if len(marked) == 1:
        return marked.pop()
    if marked:
        return None
    squeezed = "".join(text.split())
    hits = {k: "".join(unicodedata.normalize("NFKC", v).split()) for k, v in options.items()}
    hits = {k: v for k, v in hits.items() if len(v) >= 2 and v in squeezed}
    hits = {k: v for k, v in hits.items() if not any(v != w and v in w for w in hits.values())}
    return next(iter(hits)) if len(hits) == 1 else None


# --- running ---

def _argmax(scores: list[float]) -> int:
    return max(range(len(scores)), key=scores.__getitem__)


def _score_loglikelihood(engine, item: MCItem, messages: list[dict]) -> dict:
    letters = list(item.options)
    scores = engine.loglikelihood(messages, letters)
    return {"predicted": letters[_argmax(scores)], "scores": dict(zip(letters, scores))}


def run_mc(engine, paths, shots: int = 0, limit_per_subject: int | None = None, method: str = "auto",
           progress: Callable[[int, int], None] | None = None, system: str | None = None,
           max_tokens: int = 32) -> dict:
    """Run the exams under ``paths`` on ``engine``; returns accuracy per subject and overall, with records.

    ``shots``: answered examples from the same subject before each question (the subject's first items,
    not scored). ``limit_per_subject``: score at most this many items per subject (the first ones after
    the examples). ``method``: ``loglikelihood``, ``generate``, or ``auto`` (loglikelihood when the engine
    can score continuations). ``progress(done, total)`` is called after each item. ``system``: the system
    prompt; None uses the engine's default (TAIDE's for TAIDE models), "" none. ``max_tokens``: the
    answer length when generating.

    The result: ``method``, ``shots``, ``subjects`` (per subject: n, correct, accuracy, chance,
    extraction_failures, errors), ``overall`` (n, correct, micro and macro accuracy and chance, failures),
    ``bad_rows``, ``skipped_subjects``, ``elapsed`` (seconds) and ``records`` (one per item: subject, qid,
    gold, predicted, correct, method, source, and the letter scores or the generated text).
    """
    if method not in METHODS:
        raise TaideError(f"method {method!r}: choose one of {', '.join(METHODS)}")
    if shots < 0:
        raise TaideError(f"shots={shots}: must be 0 or more")
    if limit_per_subject is not None and limit_per_subject < 1:
        raise TaideError(f"limit_per_subject={limit_per_subject}: must be at least 1")
    started = time.perf_counter()
    data = paths if isinstance(paths, MCData) else load_mc(paths)
    if system is None:
        system = getattr(engine, "default_system_prompt", None)
    plan, skipped = [], []
    for subject in sorted(data.subjects):
        items = data.subjects[subject]
        examples, scored = items[:shots], items[shots:]
        if not scored:
            skipped.append({"subject": subject, "reason": f"{len(items)} items, all needed as the {shots} examples"})
            continue
        if limit_per_subject is not None:
            scored = scored[:limit_per_subject]
        plan.extend((item, examples) for item in scored)
    if not plan:
        raise TaideError("no exam items to score" + (f" ({len(data.bad_rows)} bad rows)" if data.bad_rows else ""))

    records: list[dict] = []
    first: dict | Exception | None = None  # the auto probe's outcome for the first item, reused
    if method == "auto" and not callable(getattr(engine, "loglikelihood", None)):
        method = "generate"
    if method == "auto":
        item, examples = plan[0]
        try:
            first = _score_loglikelihood(engine, item, mc_messages(item, examples, system))
            method = "loglikelihood"
        except ContextLengthError as e:  # it can score; this prompt is just too long
            first, method = e, "loglikelihood"
        except EngineError:  # an endpoint: answer by generation
            method = "generate"
    if method == "loglikelihood":
        for i, (item, examples) in enumerate(plan):
            record = _record(item, "loglikelihood")
            try:
                if i == 0 and first is not None:
                    if isinstance(first, Exception):
                        raise first
                    outcome = first
                else:
                    outcome = _score_loglikelihood(engine, item, mc_messages(item, examples, system))
                record.update(outcome)
            except ContextLengthError as e:
                record["error"] = str(e)
            records.append(_finish(record))
            if progress:
                progress(i + 1, len(plan))
    else:
        from taide.engines.base import GenerationParams

        params = GenerationParams(max_tokens=max_tokens, temperature=0.0)
        chunk = max(8, int(getattr(engine, "parallelism", 1) or 1))
        for start in range(0, len(plan), chunk):
            part = plan[start:start + chunk]
            conversations = [mc_messages(item, examples, system) for item, examples in part]
            answers = None
            if callable(getattr(engine, "generate_batch", None)):
                try:
                    answers = [c.text for c in engine.generate_batch(conversations, params)]
                except ContextLengthError:  # one prompt too long: ask one by one so only that one fails
                    pass
            if answers is None:
                answers = []
                for conversation in conversations:
                    try:
                        answers.append(engine.chat(conversation, params).text)
                    except ContextLengthError as e:
                        answers.append(e)
            for (item, _), answer in zip(part, answers):
                record = _record(item, "generate")
                if isinstance(answer, Exception):
                    record["error"] = str(answer)
                else:
                    record["response"] = answer
                    record["predicted"] = extract_choice(answer, item.options)
                    record["extraction_failed"] = record["predicted"] is None
                records.append(_finish(record))
            if progress:
                progress(start + len(part), len(plan))
    result = summarize_mc(records)
    result.update(method=method, shots=shots, limit_per_subject=limit_per_subject, bad_rows=data.bad_rows,
                  skipped_subjects=skipped, elapsed=time.perf_counter() - started, records=records)
    return result


def _record(item: MCItem, method: str) -> dict:
    return {"subject": item.subject, "qid": item.qid, "gold": item.answer, "predicted": None, "method": method,
            "n_options": len(item.options), "source": item.source}


def _finish(record: dict) -> dict:
    record["correct"] = record["predicted"] is not None and record["predicted"] == record["gold"]
    return record


def summarize_mc(records: list[dict]) -> dict:
    """Accuracy per subject and overall (micro: over items; macro: mean of subjects), with chance levels
    and counts of extraction failures and errors (both counted wrong)."""
    subjects: dict[str, dict] = {}
    for r in records:
        s = subjects.setdefault(r["subject"], {"n": 0, "correct": 0, "chance_sum": 0.0, "extraction_failures": 0,
                                               "errors": 0})
        s["n"] += 1
        s["correct"] += bool(r["correct"])
        s["chance_sum"] += 1 / r["n_options"]
        s["extraction_failures"] += bool(r.get("extraction_failed"))
        s["errors"] += "error" in r
    for s in subjects.values():
        chance_sum = s.pop("chance_sum")
        s["accuracy"] = s["correct"] / s["n"]
        s["chance"] = chance_sum / s["n"]
    n = sum(s["n"] for s in subjects.values())
    overall = {
        "subjects": len(subjects), "n": n, "correct": sum(s["correct"] for s in subjects.values()),
        "micro_accuracy": sum(s["correct"] for s in subjects.values()) / n if n else 0.0,
        "macro_accuracy": sum(s["accuracy"] for s in subjects.values()) / len(subjects) if subjects else 0.0,
        "micro_chance": sum(s["chance"] * s["n"] for s in subjects.values()) / n if n else 0.0,
        "macro_chance": sum(s["chance"] for s in subjects.values()) / len(subjects) if subjects else 0.0,
        "extraction_failures": sum(s["extraction_failures"] for s in subjects.values()),
        "errors": sum(s["errors"] for s in subjects.values()),
    }
    return {"subjects": dict(sorted(subjects.items())), "overall": overall}


def write_records(records: Iterable[dict], path: str | Path) -> Path:
    """The per-item records as JSONL (UTF-8, Chinese kept readable)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


__all__ = ["MCData", "MCItem", "extract_choice", "format_question", "load_mc", "mc_messages", "read_mc_file",
           "run_mc", "split_options", "summarize_mc", "write_records"]
