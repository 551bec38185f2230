"""Multiple-choice exams (TMMLU, TMMLU+, TMLU): read them, ask the model, score the answers.

Formats, told apart by the CSV header:

* **TMMLU** (``subjects/<科目>/data.csv``): ``,content.A,content.Q`` — an index, the answer letter, and the
  question with its options inline: ``…(A) 甲 (B) 乙 (C) 丙 (D) 丁``. The options are the last run of
  markers (A), (B), (C), (D) in order, searched from the end so a stem that mentions "(A)" does not
  confuse it (half- or full-width parentheses; lines starting ``A.`` / ``A、`` as a fallback). Rows
  without options (the essay questions some subjects contain) are reported, not scored.
* **TMMLU+ / TMLU / TW Legal**: columns ``question, A, B, C, D, answer`` (more option letters allowed), as
  CSV or as JSONL objects with the same fields. TMMLU+'s subjects (``geography_of_taiwan_test.csv``) also get
  their published category (STEM, Humanities, Social Sciences, Other).
* **TTQA** (one ``.json`` object): ``{id: {"category", "question", "choices": [...], "answer": index}}``; the
  category is TTQA's own (history, geography, ...).

The subject is the directory name for a ``data.csv``, otherwise the file name without a split
suffix (``accounting_test.csv`` → accounting). Bad rows are collected with ``file:line`` and a reason.

Runs: with ``runs=K`` (K > 1) every item is asked K times, each run with its options in another order
(shuffled with a fixed seed, the gold letter following its option), as twinkle-eval does; accuracy is
reported per run and as mean ± standard deviation per subject, per category and overall. A model that
favours one letter loses that advantage, and the spread says how much of a score is option order.

Scoring: engines that hold the weights rank the option letters by log-likelihood after the prompt
(``engine.loglikelihood(messages, ["A", "B", "C", "D"])``) and take the argmax. Engines that cannot
(an endpoint) answer by greedy generation of a few tokens, and the letter is extracted from the text
(「答案：B」, "(B)", "B.", "選B", or the text of exactly one option); an answer with no letter found is
counted wrong and reported as an extraction failure.

Seen and unseen items: given the training data (a corpus to search, or the decontamination report `taide data
clean` / `taide train sft` wrote), every item is ``seen`` (a training text held it), ``unseen`` (checked, not there)
or ``unchecked`` (too short to check), and :func:`summarize_seen` scores each group apart, so that a published
figure can be the unseen items' alone (see :mod:`taide.decontam`).

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

from taide.artifacts import write_json
from taide.chat.presets import messages_with_system, resolve_system_prompt
from taide.errors import ContextLengthError, EngineError, InputError, TaideError

LETTERS = "ABCDEFGH"
SPLIT_SUFFIXES = ("_test", "_dev", "_val", "_validation", "_train")
INSTRUCTION = "以下是「{subject}」的單選題，請選出正確答案，只回答選項代號（{letters}）。"
ANSWER_CUE = "答案："
METHODS = ("auto", "loglikelihood", "generate")

# TMMLU+'s 66 subjects by the category its dataset card gives them.
TMMLU_PLUS_CATEGORIES = {
    "STEM": "engineering_math technical mechanical logic_reasoning organic_chemistry advance_chemistry physics "
            "secondary_physics statistics_and_machine_learning computer_science nautical_science junior_science_exam "
            "junior_math_exam tve_mathematics tve_natural_sciences junior_chemistry",
    "Humanities": "jce_humanities chinese_language_and_literature tve_design junior_chinese_exam tve_chinese_language "
                  "music taiwanese_hokkien",
    "Social Sciences": "general_principles_of_law marketing_management business_management human_behavior "
                       "national_protection politic_science official_document_management educational_psychology "
                       "introduction_to_law geography_of_taiwan administrative_law education_(profession_level) "
                       "economics macroeconomics trade junior_social_studies education three_principles_of_people",
    "Other": "dentistry traditional_chinese_medicine_clinical_medicine clinical_psychology culinary_skills real_estate "
             "finance_banking anti_money_laundering ttqav2 agriculture financial_analysis pharmacy "
             "management_accounting veterinary_pathology accounting fire_science optometry insurance_studies "
             "pharmacology taxation trust_practice physical_education auditing veterinary_pharmacology "
             "occupational_therapy_for_psychological_disorders basic_medical_science",
}
SUBJECT_CATEGORY = {subject: category for category, subjects in TMMLU_PLUS_CATEGORIES.items()
                    for subject in subjects.split()}


@dataclass
class MCItem:
    subject: str
    qid: str
    question: str  # the stem, without the options
    options: dict[str, str]  # letter → option text, in letter order
    answer: str  # the gold letter
    source: str  # "file:line"
    category: str | None = None  # TMMLU+'s published category, or TTQA's


@dataclass
class MCData:
    """Items grouped by subject (file order kept), and the rows that could not be used."""

    subjects: dict[str, list[MCItem]] = field(default_factory=dict)
    bad_rows: list[dict] = field(default_factory=list)
    formats: dict[str, str] = field(default_factory=dict)  # file -> the format it was read as

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
        if path.name.endswith(".json"):
            data.formats[str(path)] = "TTQA (JSON)"
            _read_ttqa(path, items, bad)
        elif path.name.endswith((".jsonl", ".jsonl.gz")):
            data.formats[str(path)] = "question, A–D, answer (JSONL)"
            from taide.artifacts import iter_jsonl

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
                data.formats[str(path)] = "TMMLU (content.Q)"
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
                data.formats[str(path)] = "question, A–D, answer (CSV)"
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
    for item in items:
        item.category = item.category or SUBJECT_CATEGORY.get(subject)
    return data


def _read_ttqa(path: Path, items: list, bad) -> None:
    """TTQA's JSON: one object of ``{id: {category, question, choices, answer}}`` (answer: the choice's index)."""
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(path, e.lineno, f"not valid JSON ({e.msg})") from e
    if not isinstance(records, dict):
        raise InputError(path, 1, "expected TTQA's JSON object {id: {category, question, choices, answer}}")
    subject = subject_name(path)
    for qid, record in records.items():
        where = f"id {qid}"
        if not isinstance(record, dict):
            bad(where, "not an object")
            continue
        choices, answer = record.get("choices"), record.get("answer")
        if not isinstance(choices, list) or not 2 <= len(choices) <= len(LETTERS):
            bad(where, f"choices: need a list of 2 to {len(LETTERS)} options")
        elif not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(choices):
            bad(where, f"answer {answer!r} is not the index of one of the {len(choices)} choices")
        elif not str(record.get("question") or "").strip():
            bad(where, "empty question")
        else:
            options = {LETTERS[i]: " ".join(str(c).split()) for i, c in enumerate(choices)}
            items.append(MCItem(subject, str(qid), unwrap(str(record["question"])), options, LETTERS[answer],
                                f"{path}:{where}", str(record.get("category") or "") or None))


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
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith((".csv", ".jsonl", ".json")))
    if not files:
        raise InputError(path, None, "no .csv, .jsonl or .json exam files under this directory")
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
    messages = messages_with_system([], system)
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


def _loglikelihoods(engine, asked: list[tuple[list[dict], list[str]]]) -> list[list[float]]:
    many = getattr(engine, "loglikelihood_many", None)
    return many(asked) if callable(many) else [engine.loglikelihood(*pair) for pair in asked]


def _score_loglikelihood(engine, item: MCItem, messages: list[dict]) -> dict:
    letters = list(item.options)
    scores = engine.loglikelihood(messages, letters)
    return {"predicted": letters[_argmax(scores)], "scores": dict(zip(letters, scores))}


def shuffled(item: MCItem, run: int, seed: int = 0) -> MCItem:
    """``item`` with its options in the order of ``run`` (a permutation drawn from seed, run, subject and id, so
    it does not depend on which other items are asked); the gold letter follows its option."""
    import random

    letters = list(item.options)
    order = letters[:]
    random.Random(f"{seed}:{run}:{item.subject}:{item.qid}").shuffle(order)
    options = {new: item.options[old] for new, old in zip(letters, order)}
    return MCItem(item.subject, item.qid, item.question, options, letters[order.index(item.answer)], item.source,
                  item.category)


def run_mc(engine, paths, shots: int = 0, limit_per_subject: int | None = None, method: str = "auto",
           progress: Callable[[int, int], None] | None = None, system: str | None = "auto",
           max_tokens: int = 32, runs: int = 1, seed: int = 0) -> dict:
    """Run the exams under ``paths`` on ``engine``; returns accuracy per subject and overall, with records.

    ``shots``: answered examples from the same subject before each question (the subject's first items,
    not scored). ``limit_per_subject``: score at most this many items per subject (the first ones after
    the examples). ``method``: ``loglikelihood``, ``generate``, or ``auto`` (loglikelihood when the engine
    can score continuations). ``progress(done, total)`` is called after each item. ``system``: "auto" (the engine's
    default: TAIDE's for TAIDE models), "none", a preset or text (:func:`~taide.chat.presets.resolve_system_prompt`). ``max_tokens``: the
    answer length when generating.

    The result: ``method``, ``shots``, ``subjects`` (per subject: n, correct, accuracy, chance,
    extraction_failures, errors), ``categories`` (n, correct, accuracy), ``overall`` (n, correct, micro and
    macro accuracy and chance, failures), ``letters`` (:func:`letter_bias`), ``formats``, ``bad_rows``,
    ``skipped_subjects``, ``elapsed`` (seconds) and ``records`` (one per item and run: subject, category, qid,
    run, gold, predicted, correct, method, source, and the letter scores or the generated text). ``runs`` > 1:
    each run asks every item with its options shuffled (:func:`shuffled`, seeded by ``seed``), and ``spread``
    gives the accuracy per run with its mean and standard deviation per subject, category and overall.
    """
    if runs < 1:
        raise TaideError(f"runs={runs}: must be at least 1")
    if method not in METHODS:
        raise TaideError(f"method {method!r}: choose one of {', '.join(METHODS)}")
    if shots < 0:
        raise TaideError(f"shots={shots}: must be 0 or more")
    if limit_per_subject is not None and limit_per_subject < 1:
        raise TaideError(f"limit_per_subject={limit_per_subject}: must be at least 1")
    started = time.perf_counter()
    data = paths if isinstance(paths, MCData) else load_mc(paths)
    system = resolve_system_prompt(system, getattr(engine, "default_system_prompt", None))
    plan, skipped = [], []
    for subject in sorted(data.subjects):
        items = data.subjects[subject]
        examples, scored = items[:shots], items[shots:]
        if not scored:
            skipped.append({"subject": subject, "reason": f"{len(items)} items, all needed as the {shots} examples"})
            continue
        if limit_per_subject is not None:
            scored = scored[:limit_per_subject]
        plan.extend((item if runs == 1 else shuffled(item, run, seed), examples, run)
                    for run in range(runs) for item in scored)
    if not plan:
        raise TaideError("no exam items to score" + (f" ({len(data.bad_rows)} bad rows)" if data.bad_rows else ""))

    records: list[dict] = []
    first: dict | Exception | None = None  # the auto probe's outcome for the first item, reused
    if method == "auto" and not callable(getattr(engine, "loglikelihood", None)):
        method = "generate"
    if method == "auto":
        item, examples, _ = plan[0]
        try:
            first = _score_loglikelihood(engine, item, mc_messages(item, examples, system))
            method = "loglikelihood"
        except ContextLengthError as e:  # it can score; this prompt is just too long
            first, method = e, "loglikelihood"
        except EngineError:  # an endpoint: answer by generation
            method = "generate"
    if method == "loglikelihood":
        outcomes: list = [first] + [None] * (len(plan) - 1) if first is not None else [None] * len(plan)
        todo = [i for i, outcome in enumerate(outcomes) if outcome is None]
        chunk = max(8, int(getattr(engine, "parallelism", 1) or 1))  # questions queued together
        done = len(plan) - len(todo)
        for start in range(0, len(todo), chunk):
            part = todo[start:start + chunk]
            asked = [(mc_messages(plan[i][0], plan[i][1], system), list(plan[i][0].options)) for i in part]
            try:
                scores = _loglikelihoods(engine, asked)
            except ContextLengthError:  # one prompt too long: score one by one so only that one fails
                scores = []
                for pair in asked:
                    try:
                        scores.append(engine.loglikelihood(*pair))
                    except ContextLengthError as e:
                        scores.append(e)
            for i, (_, letters), score in zip(part, asked, scores):
                outcomes[i] = score if isinstance(score, Exception) else {
                    "predicted": letters[_argmax(score)], "scores": dict(zip(letters, score))}
            done += len(part)
            if progress:
                progress(done, len(plan))
        for (item, _, run), outcome in zip(plan, outcomes):
            record = _record(item, "loglikelihood", run)
            if isinstance(outcome, Exception):
                record["error"] = str(outcome)
            else:
                record.update(outcome)
            records.append(_finish(record))
    else:
        from taide.engines.params import GenerationParams

        params = GenerationParams(max_tokens=max_tokens, temperature=0.0)
        chunk = max(8, int(getattr(engine, "parallelism", 1) or 1))
        for start in range(0, len(plan), chunk):
            part = plan[start:start + chunk]
            conversations = [mc_messages(item, examples, system) for item, examples, _ in part]
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
            for (item, _, run), answer in zip(part, answers):
                record = _record(item, "generate", run)
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
    result.update(method=method, shots=shots, limit_per_subject=limit_per_subject, runs=runs, seed=seed,
                  formats=data.formats, bad_rows=data.bad_rows, skipped_subjects=skipped,
                  elapsed=time.perf_counter() - started, letters=letter_bias(records), records=records)
    if runs > 1:
        result["spread"] = spread(records)
    return result


def _record(item: MCItem, method: str, run: int = 0) -> dict:
    return {"subject": item.subject, "category": item.category, "qid": item.qid, "run": run, "gold": item.answer,
            "predicted": None, "method": method, "n_options": len(item.options), "source": item.source}


def _finish(record: dict) -> dict:
    record["correct"] = record["predicted"] is not None and record["predicted"] == record["gold"]
    return record


def summarize_mc(records: list[dict]) -> dict:
    """Accuracy per subject and overall (micro: over items; macro: mean of subjects), with chance levels
    and counts of extraction failures and errors (both counted wrong)."""
    subjects: dict[str, dict] = {}
    categories: dict[str, list[dict]] = {}
    for r in records:
        if r.get("category"):
            categories.setdefault(r["category"], []).append(r)
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
    by_category = {c: {"n": len(rs), "correct": sum(bool(r["correct"]) for r in rs),
                       "accuracy": sum(bool(r["correct"]) for r in rs) / len(rs)} for c, rs in sorted(categories.items())}
    return {"subjects": dict(sorted(subjects.items())), "categories": by_category, "overall": overall}


SEEN_GROUPS = ("unseen", "seen", "unchecked")


def summarize_seen(records: list[dict], sources: list[dict]) -> dict:
    """Accuracy of the items the training data held (``seen``), of those checked and not found (``unseen``: the
    figure to publish), and of those no check could search (``unchecked``: too short, or not in a report), each
    per subject and overall; ``sources`` says what was searched."""
    groups = {}
    for group in SEEN_GROUPS:
        chosen = [r for r in records if r.get("seen") == group]
        summary = summarize_mc(chosen)
        groups[group] = {"items": len({r["source"] for r in chosen}), "overall": summary["overall"],
                         "subjects": summary["subjects"]}
    return {"sources": sources, "groups": groups}


def _mean_std(values: list[float]) -> dict:
    import statistics

    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "runs": values}


def spread(records: list[dict]) -> dict:
    """Accuracy per run, and its mean and sample standard deviation, per subject, per category and overall
    (micro: over the items of a run)."""
    by_run: dict[int, list[dict]] = {}
    for r in records:
        by_run.setdefault(r["run"], []).append(r)
    summaries = [summarize_mc(rs) for _, rs in sorted(by_run.items())]
    return {"subjects": {s: _mean_std([x["subjects"][s]["accuracy"] for x in summaries])
                         for s in summaries[0]["subjects"]},
            "categories": {c: _mean_std([x["categories"][c]["accuracy"] for x in summaries])
                           for c in summaries[0]["categories"]},
            "overall": _mean_std([x["overall"]["micro_accuracy"] for x in summaries])}


def letter_bias(records: list[dict]) -> dict:
    """Which letters the model picks against which are right: a model near chance often picks one letter."""
    from collections import Counter

    predicted = Counter(r["predicted"] or "none" for r in records)
    gold = Counter(r["gold"] for r in records)
    top, count = predicted.most_common(1)[0] if predicted else ("none", 0)
    return {"predicted": dict(sorted(predicted.items())), "gold": dict(sorted(gold.items())), "top": top,
            "top_share": count / len(records) if records else 0.0}


# What the Open TW LLM Leaderboard lists for the card's model (0-shot). Other prompts, option orders and runs than
# taide's: shown beside a result, never to be compared number for number.
PUBLISHED = [{"model": "Llama3-TAIDE-LX-8B-Chat-Alpha1", "source": "Open TW LLM Leaderboard (0-shot)",
              "accuracy": {"TMLU": 0.4730, "TTQA": 0.5079, "TW Legal": 0.3780, "TMMLU+": 0.3903}}]


def write_mc(result: dict, out: str | Path) -> dict[str, Path]:
    """``mc_records.jsonl`` (one line per item and run) and ``mc_summary.json`` (everything else, with the
    published rows) in ``out``."""
    out = Path(out)
    records = write_records(result["records"], out / "mc_records.jsonl")
    summary = out / "mc_summary.json"
    body = {k: v for k, v in result.items() if k != "records"}
    body["published"] = PUBLISHED
    write_json(summary, body)
    return {"records": records, "summary": summary}


def write_records(records: Iterable[dict], path: str | Path) -> Path:
    """The per-item records as JSONL (UTF-8, Chinese kept readable)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


__all__ = ["PUBLISHED", "MCData", "MCItem", "extract_choice", "format_question", "letter_bias", "load_mc",
           "mc_messages", "read_mc_file", "run_mc", "shuffled", "split_options", "spread", "summarize_mc",
           "summarize_seen", "write_mc", "write_records"]
