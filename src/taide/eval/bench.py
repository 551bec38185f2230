"""The TAIDE office-task bench: answer reference-graded prompts with a model, grade them with a judge.

Bench data is a directory with one JSONL file per task — ``article.jsonl`` (or ``essay.jsonl``, the
public scorer's name), ``letter.jsonl``, ``summary.jsonl``, ``zh2en.jsonl``, ``en2zh.jsonl`` — whose rows
are ``{"qid", "prompt", "reference", ...}`` (other fields are carried through; ``resp`` is read as the
reference when ``reference`` is absent, as in the public taide-bench rows).

The output directory holds, per task, under the public scorer's task names (essay for article):

- ``resp_{task}.jsonl``: ``{qid, model, prompt, resp, reference, finish_reason, prompt_tokens,
  completion_tokens, time_to_first_token, elapsed, ...}``, appended as answers finish; a rerun skips the
  qids already there (a half-written last line is cut off and redone).
- ``judge_{task}.jsonl``: one verdict per line as the judge finishes it (the resume journal).
- ``eval_{task}.json``: ``{"task", "overall": {"score", "avg_score", "judged", "failed", "total"},
  "result": [{qid, question, resp, reference, score, judge_response, attempts}], "failures": [{qid,
  reason, judge_response, attempts}], "judge", "complete"}``. Failed items are listed, never scored 0.
- ``bench_summary.json``: per-task mean, judged, failed, and ``average``, the mean of the task means.

Generate now, judge later: :func:`generate_responses` then :func:`judge_responses`, or both with
:func:`run_bench`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from taide.artifacts import iter_jsonl, read_resumable, write_json, write_manifest
from taide.chat.presets import messages_with_system, resolve_system_prompt
from taide.engines import Engine, GenerationParams, LocalEngine
from taide.errors import EngineError, InputError
from taide.eval.compat import public_average
from taide.eval.judge import Judge, JudgeItem, RetryPolicy, Verdict, call_with_retries, describe_error
from taide.eval.layout import BENCH_TASKS, canonical_task, eval_path, journal_path, public_task, resp_path

SAMPLE_BENCH = Path(__file__).resolve().parent / "data" / "taide-bench"

# on_progress(stage, task, done, total): stage is "generate" or "judge". Raising from it stops the run;
# everything finished so far is on disk and a rerun resumes.
ProgressFn = Callable[[str, str, int, int], None]

DEFAULT_PARAMS = GenerationParams(max_tokens=1024, temperature=0.0)


def _task_list(tasks) -> list[str] | None:
    if tasks is None:
        return None
    if isinstance(tasks, str):
        tasks = [t for t in tasks.split(",") if t.strip()]
    out = []
    for t in tasks:
        c = canonical_task(t.strip())
        if c not in out:
            out.append(c)
    return out


# ---------------------------------------------------------------------------------------------- bench data

@dataclass
class BenchItem:
    qid: str | int  # as written in the file (the public data uses numbers); compared as text
    prompt: str
    reference: str
    extra: dict = field(default_factory=dict)  # the row's other fields, carried into the outputs
    source: str = ""  # "file:line"

    @property
    def key(self) -> str:
        return str(self.qid)


def _task_file(data_dir: Path, task: str) -> Path | None:
    found = [p for p in (data_dir / f"{task}.jsonl", data_dir / f"{public_task(task)}.jsonl") if p.is_file()]
    found = list(dict.fromkeys(found))
    if len(found) > 1:
        raise InputError(data_dir, None, f"both {found[0].name} and {found[1].name} hold task {task}; keep one")
    return found[0] if found else None


def read_bench_file(path: str | Path) -> list[BenchItem]:
    """The rows of one task file; a bad row is an InputError naming file:line and the field."""
    path = Path(path)
    items, seen = [], {}
    try:
        for lineno, record, problem in iter_jsonl(path):
            if problem:
                raise InputError(path, lineno, problem)
            qid = record.get("qid")
            if isinstance(qid, bool) or not isinstance(qid, (str, int)) or str(qid).strip() == "":
                raise InputError(path, lineno, "field 'qid': needs a non-empty string or an integer")
            if str(qid) in seen:
                raise InputError(path, lineno, f"field 'qid': {qid!r} repeats line {seen[str(qid)]}")
            seen[str(qid)] = lineno
            prompt = record.get("prompt")
            if not isinstance(prompt, str) or not prompt.strip():
                raise InputError(path, lineno, "field 'prompt': needs a non-empty string")
            ref_field = "reference" if "reference" in record else "resp" if "resp" in record else None
            reference = record.get(ref_field) if ref_field else None
            if not isinstance(reference, str) or not reference.strip():
                raise InputError(path, lineno, f"field '{ref_field or 'reference'}': needs a non-empty string "
                                               "(the reference answer the judge compares with)")
            extra = {k: v for k, v in record.items() if k not in ("qid", "prompt", "reference", "resp")}
            items.append(BenchItem(qid, prompt, reference, extra, f"{path}:{lineno}"))
    except UnicodeDecodeError as e:
        raise InputError(path, None, f"not UTF-8 at byte {e.start}") from e
    if not items:
        raise InputError(path, None, "no rows")
    return items


def load_bench(data_dir: str | Path | None = None, tasks=None) -> dict[str, list[BenchItem]]:
    """``{task: items}`` (our task names) from ``data_dir`` (default: the shipped sample). With ``tasks``
    None every task that has a file is loaded; a named task without a file is an error."""
    data_dir = Path(data_dir) if data_dir is not None else SAMPLE_BENCH
    if not data_dir.is_dir():
        raise InputError(data_dir, None, "no such bench directory")
    wanted = _task_list(tasks)
    bench = {}
    for task in wanted or BENCH_TASKS:
        path = _task_file(data_dir, task)
        if path is None:
            if wanted is not None:
                names = " or ".join(dict.fromkeys([f"{task}.jsonl", f"{public_task(task)}.jsonl"]))
                raise InputError(data_dir, None, f"task {task}: no {names} here")
            continue
        bench[task] = read_bench_file(path)
    if not bench:
        raise InputError(data_dir, None, f"no bench files; expected some of "
                                          f"{', '.join(public_task(t) + '.jsonl' for t in BENCH_TASKS)}")
    return bench






def _append(out, row: dict) -> None:
    out.write(json.dumps(row, ensure_ascii=False) + "\n")
    out.flush()


# ---------------------------------------------------------------------------------------------- generation

def _resp_row(item: BenchItem, task: str, model: str, system: str | None, completion) -> dict:
    return {**item.extra, "qid": item.qid, "task": public_task(task), "model": model, "prompt": item.prompt,
            "resp": completion.text, "reference": item.reference, "system": system,
            "finish_reason": completion.finish_reason, "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "time_to_first_token": round(completion.time_to_first_token, 4), "elapsed": round(completion.elapsed, 4)}


def generate_responses(engine: Engine, out_dir: str | Path, data_dir: str | Path | None = None, tasks=None,
                       params: GenerationParams | None = None, system_prompt: str | None = "auto",
                       concurrency: int | None = None, retry: RetryPolicy | None = None,
                       on_progress: ProgressFn | None = None) -> dict[str, dict]:
    """Answer every bench prompt with ``engine`` into ``out_dir/resp_{task}.jsonl``, resumably.

    ``system_prompt``: "none" (the engine's chat template may still add its own default), "auto", "taide" or a text
    (:func:`~taide.chat.presets.resolve_system_prompt`). ``params`` default to greedy with 1024 new tokens. Local engines answer
    ``concurrency`` prompts per ``generate_batch`` (default: the engine's batch); other engines
    (endpoints) keep ``concurrency`` requests in flight, retrying transient errors per ``retry`` (load an
    endpoint with :func:`taide.eval.judge.load_endpoint` so that its HTTP client does not retry as well).
    A prompt that still fails is left out of the file (a rerun tries it again) and reported.

    Returns ``{task: {"total", "already_done", "generated", "failed": [{qid, reason}], "completion_tokens",
    "elapsed", "file"}}``.
    """
    bench = load_bench(data_dir, tasks)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = params or DEFAULT_PARAMS
    system = resolve_system_prompt(system_prompt, engine.default_system_prompt)
    model = engine.describe().get("model") or engine.name
    width = max(1, concurrency or getattr(engine, "parallelism", 1) or 1)
    retry = retry or RetryPolicy()
    reports = {}
    for task, items in bench.items():
        path = resp_path(out_dir, task)
        done = {str(row.get("qid")) for _, row in read_resumable(path)}
        todo = [it for it in items if it.key not in done]
        report = {"total": len(items), "already_done": len(items) - len(todo), "generated": 0, "failed": [],
                  "completion_tokens": 0, "elapsed": 0.0, "file": str(path)}
        reports[task] = report
        started = time.perf_counter()
        finished = report["already_done"]
        if on_progress:
            on_progress("generate", task, finished, len(items))

        def conversation(item: BenchItem) -> list[dict]:
            return messages_with_system([{"role": "user", "content": item.prompt}], system)

        with path.open("a", encoding="utf-8") as out:
            def record(item: BenchItem, completion=None, error: BaseException | None = None) -> None:
                nonlocal finished
                if error is not None:
                    report["failed"].append({"qid": item.qid, "reason": describe_error(error)})
                else:
                    _append(out, _resp_row(item, task, model, system, completion))
                    report["generated"] += 1
                    report["completion_tokens"] += completion.completion_tokens
                finished += 1
                if on_progress:
                    on_progress("generate", task, finished, len(items))

            try:
                if isinstance(engine, LocalEngine):
                    _generate_local(engine, todo, conversation, params, width, record)
                else:
                    _generate_pooled(engine, todo, conversation, params, width, retry, record)
            finally:
                report["elapsed"] = round(time.perf_counter() - started, 3)
    return reports


def _generate_local(engine, todo, conversation, params, width, record) -> None:
    for start in range(0, len(todo), width):
        batch = todo[start:start + width]
        try:
            results = engine.generate_batch([conversation(it) for it in batch], params)
        except EngineError:
            # One prompt (too long for the context, say) spoils the batch: answer them one by one.
            results = []
            for it in batch:
                try:
                    results.append(engine.chat(conversation(it), params))
                except EngineError as e:
                    results.append(e)
        for item, result in zip(batch, results):
            if isinstance(result, BaseException):
                record(item, error=result)
            else:
                record(item, result)


def _generate_pooled(engine, todo, conversation, params, width, retry, record) -> None:
    pool = ThreadPoolExecutor(max_workers=width, thread_name_prefix="taide-bench")
    try:
        pending: dict[Future, BenchItem] = {
            pool.submit(call_with_retries, lambda m=conversation(it): engine.chat(m, params), retry): it for it in todo}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                item = pending.pop(future)
                try:
                    completion, _ = future.result()
                except (EngineError, OSError) as e:
                    record(item, error=e)
                else:
                    record(item, completion)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------------------------------- judging

def _resp_tasks(out_dir: Path) -> list[str]:
    return [t for t in BENCH_TASKS if resp_path(out_dir, t).is_file()]


def _judge_items(out_dir: Path, task: str, references: dict[str, str] | None) -> list[tuple[JudgeItem, dict]]:
    path = resp_path(out_dir, task)
    items, seen = [], set()
    for lineno, row in read_resumable(path, repair=False):
        qid = row.get("qid")
        if qid is None or str(qid) in seen:
            if qid is None:
                raise InputError(path, lineno, "field 'qid': missing")
            continue
        seen.add(str(qid))
        if references is not None:
            if str(qid) not in references:
                continue  # not in this bench
            reference = references[str(qid)]
        else:
            reference = row.get("reference")
            if not isinstance(reference, str) or not reference.strip():
                raise InputError(path, lineno, "field 'reference': missing; pass data_dir= to read the references "
                                               "from the bench data")
        prompt, resp = row.get("prompt"), row.get("resp")
        if not isinstance(prompt, str) or not isinstance(resp, str):
            raise InputError(path, lineno, f"field '{'prompt' if not isinstance(prompt, str) else 'resp'}': needs a string")
        items.append((JudgeItem(str(qid), task, prompt, reference, resp), row))
    return items


def _load_journal(path: Path) -> dict[str, dict]:
    verdicts = {}
    for _, row in read_resumable(path):
        if "qid" in row:
            verdicts[str(row["qid"])] = row  # a later line (a re-judged item) replaces an earlier one
    return verdicts


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _eval_document(task: str, pairs: list[tuple[JudgeItem, dict]], verdicts: dict[str, dict], judge_info: dict) -> dict:
    result, failures, pending = [], [], 0
    for item, row in pairs:
        v = verdicts.get(item.qid)
        if v is None:
            pending += 1
        elif v.get("score") is None:
            failures.append({"qid": row.get("qid"), "reason": v.get("reason"), "judge_response": v.get("reply"),
                             "attempts": v.get("attempts")})
        else:
            result.append({"qid": row.get("qid"), "question": item.question, "resp": item.answer,
                           "reference": item.reference, "score": v["score"], "judge_response": v.get("reply"),
                           "attempts": v.get("attempts")})
    scores = [r["score"] for r in result]
    return {"task": public_task(task),
            "overall": {"score": sum(scores), "avg_score": _mean(scores), "judged": len(result),
                        "failed": len(failures), "total": len(pairs)},
            "result": result, "failures": failures, "judge": judge_info, "complete": pending == 0}


def judge_responses(out_dir: str | Path, judge: Judge, data_dir: str | Path | None = None, tasks=None,
                    retry_failed: bool = True, on_progress: ProgressFn | None = None) -> dict:
    """Grade ``out_dir/resp_{task}.jsonl`` with ``judge`` into ``eval_{task}.json``, resumably per qid.

    References come from the resp rows, or from the bench at ``data_dir`` when given (then only qids of
    that bench are graded). A stored verdict is reused when the texts and judge match; stored failures
    are tried again when ``retry_failed``. Returns the summary (see :func:`summarize`), also written to
    ``bench_summary.json``.
    """
    out_dir = Path(out_dir)
    wanted = _task_list(tasks) or _resp_tasks(out_dir)
    if not wanted:
        raise InputError(out_dir, None, "no resp_{task}.jsonl files to judge")
    bench = load_bench(data_dir, wanted) if data_dir is not None else None
    judge_info = judge.describe()
    for task in wanted:
        if not resp_path(out_dir, task).is_file():
            raise InputError(resp_path(out_dir, task), None, "no such file; generate the responses first")
        references = {it.key: it.reference for it in bench[task]} if bench else None
        pairs = _judge_items(out_dir, task, references)
        jpath = journal_path(out_dir, task)
        stored = _load_journal(jpath)
        verdicts = {}
        for item, _ in pairs:
            v = stored.get(item.qid)
            if v and v.get("fingerprint") == judge.fingerprint(item) and (v.get("score") is not None or not retry_failed):
                verdicts[item.qid] = v
        todo = [item for item, _ in pairs if item.qid not in verdicts]
        finished = len(pairs) - len(todo)
        if on_progress:
            on_progress("judge", task, finished, len(pairs))
        try:
            with jpath.open("a", encoding="utf-8") as journal:
                def on_result(verdict: Verdict) -> None:
                    nonlocal finished
                    row = verdict.to_dict()
                    _append(journal, row)
                    verdicts[verdict.qid] = row
                    finished += 1
                    if on_progress:
                        on_progress("judge", task, finished, len(pairs))

                judge.score_many(todo, on_result)
        finally:
            write_json(eval_path(out_dir, task), _eval_document(task, pairs, verdicts, judge_info))
    summary = summarize(out_dir)
    write_json(out_dir / "bench_summary.json", summary)
    return summary


def summarize(out_dir: str | Path) -> dict:
    """Per task (our names) ``{"mean", "judged", "failed", "total", "complete", "file"}`` from the
    ``eval_{task}.json`` files, and ``average``: the mean of the task means (the card's average)."""
    out_dir = Path(out_dir)
    tasks, judge = {}, None
    for task in BENCH_TASKS:
        path = eval_path(out_dir, task)
        if not path.is_file():
            continue
        doc = json.loads(path.read_text(encoding="utf-8"))
        overall = doc.get("overall", {})
        judge = judge or doc.get("judge")
        tasks[task] = {"mean": overall.get("avg_score"), "judged": overall.get("judged", 0),
                       "failed": overall.get("failed", 0), "total": overall.get("total", 0),
                       "complete": doc.get("complete", True), "file": str(path),
                       "failures": [{"qid": f.get("qid"), "reason": f.get("reason")} for f in doc.get("failures", [])]}
    means = [t["mean"] for t in tasks.values() if t["mean"] is not None]
    return {"tasks": tasks, "average": _mean(means), "tasks_scored": len(means), "judge": judge,
            # the same replies read as taide-bench-eval reads them
            "public_scorer_average": public_average(out_dir)["average"] if tasks else None}


def run_bench(engine: Engine, out_dir: str | Path, data_dir: str | Path | None = None, judge: Judge | None = None,
              tasks=None, params: GenerationParams | None = None, system_prompt: str | None = "auto",
              concurrency: int | None = None, on_progress: ProgressFn | None = None) -> dict:
    """Generate with ``engine`` (see :func:`generate_responses`), then grade with ``judge`` when given (see
    :func:`judge_responses`), and write ``bench_run.json`` (what ran: model, judge, data, tasks, system prompt,
    parameters, wall time), which the report reads. Returns ``{"model", "generation": {task: report}, and when
    judged the summary's "tasks", "average", "tasks_scored", "judge"}``. Reruns resume both stages."""
    started = time.perf_counter()
    generation = generate_responses(engine, out_dir, data_dir, tasks, params, system_prompt, concurrency,
                                    on_progress=on_progress)
    result = {"model": engine.describe(), "generation": generation}
    if judge is not None:
        result.update(judge_responses(out_dir, judge, data_dir, list(generation), on_progress=on_progress))
    # what ran, in the one manifest schema: the settings as config, the bench data as input, the answers counted
    write_manifest(Path(out_dir) / "bench_run.json", "eval bench", {
        "tasks": list(generation), "system": resolve_system_prompt(system_prompt, engine.default_system_prompt),
        "params": (params or DEFAULT_PARAMS).to_dict(), "concurrency": concurrency},
        inputs={"data": str(data_dir or SAMPLE_BENCH)},
        counts={task: report.get("total", 0) for task, report in generation.items()},
        model=engine.describe(), judge=judge.describe() if judge else None,
        wall_s=round(time.perf_counter() - started, 1))
    return result


__all__ = ["BenchItem", "DEFAULT_PARAMS", "SAMPLE_BENCH", "generate_responses", "judge_responses", "load_bench",
           "read_bench_file", "run_bench", "summarize"]
