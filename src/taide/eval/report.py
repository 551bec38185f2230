"""Reports on bench runs: the card's table, judge-free reference metrics, Traditional-Chinese fidelity.

A *run* is a bench output directory (see :mod:`taide.eval.bench`): ``resp_{task}.jsonl``, and when
judged ``eval_{task}.json`` and ``bench_summary.json`` (``bench_run.json``, written by ``taide eval
bench``, adds the model's and judge's descriptions). From one or more runs::

    from taide.eval.report import compare, write_report

    report = compare(["runs/smol", "runs/taide-8b"])   # or build_report("runs/smol")
    print(to_markdown(report))
    write_report(report, "runs/report")                 # report.md, report.json, report.png

The judge table is the Llama3-TAIDE card's: tasks as columns in the card's order (中翻英, 英翻中, 摘要,
文章, 信), and the average is the mean of the five task means. The card's published rows are added for
reference and labelled as published: they were graded by GPT-4 on the full 500-item taide-bench, so a
run on other data or with another judge is not comparable to them number for number.

Beside the judge, per task: chrF and BLEU for the translations, character ROUGE-L for summaries, and
answer length for every task (:mod:`taide.eval.metrics`); and Traditional-Chinese fidelity — share of
Simplified-only characters, mainland vocabulary, answers in the wrong language
(:mod:`taide.eval.fidelity`) — computed from the answers and references in the resp files.

When the judge is the model under evaluation, or an embedded demo model (``smollm2-135m``), the report
says plainly that its scores mean nothing.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

from taide.artifacts import read_resumable, write_json
from taide.errors import InputError
from taide.eval.layout import eval_path, resp_path
from taide.models.reference import EMBEDDED_MODELS

# The card's column order. Checked against the Llama3-TAIDE-LX-8B-Chat-Alpha1 model card's taide-bench
# table: | 中翻英 | 英翻中 | 摘要 | 文章寫作 (writing articles) | 信件寫作 (writing letters) | 平均 |.
CARD_TASKS = ("zh2en", "en2zh", "summary", "article", "letter")
TASK_LABELS = {"zh2en": "中翻英 zh→en", "en2zh": "英翻中 en→zh", "summary": "摘要 summary",
               "article": "文章 article", "letter": "信 letter"}
PLOT_LABELS = {"zh2en": "zh→en", "en2zh": "en→zh", "summary": "summary", "article": "article",
               "letter": "letter", "average": "average"}
EXPECTED_LANGUAGE = {"zh2en": "en", "en2zh": "zh-TW", "summary": "zh-TW", "article": "zh-TW", "letter": "zh-TW"}
TRANSLATION_TASKS = ("zh2en", "en2zh")

CARD_SOURCE = ("Llama3-TAIDE-LX-8B-Chat-Alpha1 model card (huggingface.co/taide/Llama3-TAIDE-LX-8B-Chat-Alpha1), "
               "taide-bench table: 500 items, graded by GPT-4")
# The card's published rows, in CARD_TASKS order; both averages are the mean of their five task means.
PUBLISHED: tuple[dict, ...] = (
    {"model": "Llama3-TAIDE-LX-8B-Chat-Alpha1",
     "tasks": dict(zip(CARD_TASKS, (7.770, 8.280, 8.495, 9.605, 8.950))), "average": 8.620},
    {"model": "GPT-3.5",
     "tasks": dict(zip(CARD_TASKS, (8.880, 8.810, 7.450, 9.490, 8.750))), "average": 8.676},
)

MEANINGLESS = "these scores mean nothing"


# ---------------------------------------------------------------------------------------------- one run

def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(path, None, f"not valid JSON ({e}); rerun the bench or delete this file") from e
    return data if isinstance(data, dict) else None


def _resp_rows(run_dir: Path, task: str) -> list[dict]:
    """The resp rows of a task, one per qid (the first, as the judge reads them)."""
    rows, seen = [], set()
    for _, row in read_resumable(resp_path(run_dir, task), repair=False):
        key = str(row.get("qid"))
        if key in seen:
            continue
        seen.add(key)
        rows.append(row)
    return rows


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _norm(name) -> str:
    return str(name or "").strip().lower().rstrip("/")


def judge_warnings(model: dict, judge: dict | None) -> list[str]:
    """Why this judge's scores cannot be trusted, if they cannot: it is the model under evaluation (same
    name, or same endpoint/file), or an embedded demo model."""
    if not judge:
        return []
    jname, jref = _norm(judge.get("model")), _norm(judge.get("reference"))
    mname, mref = _norm(model.get("model")), _norm(model.get("reference"))
    out = []
    if (jname and jname == mname) or (jref and jref == mref):
        out.append(f"The judge ({judge.get('model')}) is the model under evaluation: it grades its own answers, "
                   f"so {MEANINGLESS}. Use a strong, different judge (the card used GPT-4).")
    if jname in EMBEDDED_MODELS or jref in EMBEDDED_MODELS:
        out.append(f"The judge is the embedded demo model {judge.get('model')}, far too small to grade writing "
                   f"or translation: {MEANINGLESS}. They only show that the pipeline runs.")
    if judge.get("engine") == "stub":
        out.append(f"The judge is the stub of `taide build --smoke`, whose scores come from a hash of the prompt: "
                   f"{MEANINGLESS}. They only show that judging and reporting run.")
    return out


def _reference_metrics(task: str, rows: list[dict]) -> dict:
    from taide.eval.metrics import answer_length, corpus_bleu, corpus_chrf, mean_rouge_l

    answers = [str(r.get("resp") or "") for r in rows]
    refs = [str(r.get("reference") or "") for r in rows]
    pairs = [(a, r) for a, r in zip(answers, refs) if r.strip()]
    out = {"n": len(rows), "mean_length": _mean(map(answer_length, answers)),
           "reference_length": _mean(answer_length(r) for _, r in pairs) if pairs else None,
           "chrf": None, "bleu": None, "rouge_l": None}
    if pairs:
        hyps, ref_list = [a for a, _ in pairs], [r for _, r in pairs]
        if task in TRANSLATION_TASKS:
            out["chrf"] = corpus_chrf(hyps, ref_list)
            out["bleu"] = corpus_bleu(hyps, ref_list, EXPECTED_LANGUAGE[task])
        elif task == "summary":
            out["rouge_l"] = mean_rouge_l(hyps, ref_list)
    return out


def _fidelity(task: str, rows: list[dict]) -> dict:
    from taide.eval.fidelity import fidelity_many

    summary = fidelity_many([str(r.get("resp") or "") for r in rows], EXPECTED_LANGUAGE[task])["summary"]
    if summary.get("n"):
        summary["wrong_language_share"] = 1 - summary["language_ok_rate"]
    summary["expected_language"] = EXPECTED_LANGUAGE[task]
    return summary


def load_run(run_dir: str | Path, name: str | None = None) -> dict:
    """One bench output directory as a report row: model, judge, per-task judge means (card order), the
    average of the task means, reference metrics, fidelity, and warnings."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(run_dir, None, "no such run directory")
    resp_tasks = [t for t in CARD_TASKS if resp_path(run_dir, t).is_file()]
    eval_tasks = [t for t in CARD_TASKS if eval_path(run_dir, t).is_file()]
    if not resp_tasks and not eval_tasks:
        raise InputError(run_dir, None, "not a bench run: no resp_{task}.jsonl or eval_{task}.json files here")
    meta = _read_json(run_dir / "bench_run.json") or {}
    summary = _read_json(run_dir / "bench_summary.json") or {}

    rows_by_task = {t: _resp_rows(run_dir, t) for t in resp_tasks}
    names = Counter(str(r["model"]) for rows in rows_by_task.values() for r in rows if r.get("model"))
    model = dict(meta.get("model") or {})
    model.setdefault("model", names.most_common(1)[0][0] if names else run_dir.name)

    tasks, judge = {}, meta.get("judge") or summary.get("judge")
    for task in CARD_TASKS:
        doc = _read_json(eval_path(run_dir, task))
        if doc is None:
            continue
        overall = doc.get("overall") or {}
        judge = judge or doc.get("judge")
        tasks[task] = {"mean": overall.get("avg_score"), "judged": overall.get("judged", 0),
                       "failed": overall.get("failed", 0), "total": overall.get("total", 0),
                       "complete": doc.get("complete", True)}
    means = [tasks[t]["mean"] for t in CARD_TASKS if t in tasks and tasks[t]["mean"] is not None]

    warnings = judge_warnings(model, judge)
    scored = len(means)
    if tasks and scored < len(CARD_TASKS):
        missing = [t for t in CARD_TASKS if t not in tasks or tasks[t]["mean"] is None]
        warnings.append(f"No task has a judge score, so there is no average ({len(tasks)} tasks judged; every "
                        "answer failed)." if not scored else
                        f"Only {scored} of the 5 tasks have judge scores (none for {', '.join(missing)}): the "
                        "average is over those, not the card's five.")
    incomplete = [t for t, s in tasks.items() if not s["complete"] or s["failed"]]
    if incomplete:
        warnings.append("Some answers have no judge score (failed or not yet judged) in: "
                        + ", ".join(f"{t} ({tasks[t]['judged']}/{tasks[t]['total']} judged)" for t in incomplete)
                        + "; they are left out of the means, never counted as 0.")

    return {
        "name": name or model["model"], "dir": str(run_dir), "published": False, "model": model, "judge": judge,
        "tasks": tasks, "average": sum(means) / scored if scored else None, "tasks_scored": scored,
        "reference_metrics": {t: _reference_metrics(t, rows) for t, rows in rows_by_task.items() if rows},
        "fidelity": {t: _fidelity(t, rows) for t, rows in rows_by_task.items() if rows},
        "generation": {"system": (meta.get("config") or {}).get("system"),
                       "params": (meta.get("config") or {}).get("params"), "wall_s": meta.get("wall_s"),
                       "data": (meta.get("inputs") or {}).get("data")},
        "warnings": warnings,
    }


# ---------------------------------------------------------------------------------------------- report

def published_rows() -> list[dict]:
    return [{"name": f"{p['model']} (published)", "model": {"model": p["model"]}, "published": True,
             "source": CARD_SOURCE, "tasks": {t: {"mean": v} for t, v in p["tasks"].items()},
             "average": p["average"], "tasks_scored": len(p["tasks"])} for p in PUBLISHED]


def compare(run_dirs, published: bool = True) -> dict:
    """The report across several bench runs (each a bench output directory), with the card's published
    rows when ``published``. Runs whose models share a name are told apart by their directory."""
    run_dirs = [run_dirs] if isinstance(run_dirs, (str, Path)) else list(run_dirs)
    if not run_dirs:
        raise InputError("compare", None, "no run directories given")
    runs = [load_run(d) for d in run_dirs]
    counts = Counter(r["name"] for r in runs)
    for r in runs:
        if counts[r["name"]] > 1:
            r["name"] = f"{r['name']} ({Path(r['dir']).name})"
    warnings = [f"{r['name']}: {w}" if len(runs) > 1 else w for r in runs for w in r["warnings"]]
    return {"tasks": list(CARD_TASKS), "task_labels": TASK_LABELS, "runs": runs,
            "published": published_rows() if published else [], "published_source": CARD_SOURCE,
            "warnings": warnings,
            "notes": ["average = mean of the five task means, as on the card",
                      "published rows: graded by GPT-4 on the full 500-item taide-bench; a run on other data or "
                      "with another judge is not comparable to them number for number"]}


def build_report(run_dir: str | Path, published: bool = True) -> dict:
    """The report of one bench run (see :func:`compare`)."""
    return compare([run_dir], published)


# ---------------------------------------------------------------------------------------------- Markdown

def _f(value, digits: int = 3, scale: float = 1.0, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value * scale:.{digits}f}{suffix}"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]], text_columns: int = 1) -> list[str]:
    """A Markdown table: the first ``text_columns`` columns left-aligned, the rest (numbers) right-aligned."""
    lines = ["| " + " | ".join(map(_cell, header)) + " |",
             "|" + "|".join("---" if i < text_columns else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(map(_cell, row)) + " |" for row in rows]
    return lines


def score_rows(report: dict) -> list[list[str]]:
    """The judge table's rows: model, the five task means, the average (runs first, then published)."""
    rows = []
    for r in [*report["runs"], *report["published"]]:
        scored = r.get("tasks_scored", 0)
        avg = _f(r.get("average"))
        if r.get("average") is not None and scored < len(CARD_TASKS):
            avg += f" ({scored}/5)"
        rows.append([r["name"], *(_f((r["tasks"].get(t) or {}).get("mean")) for t in CARD_TASKS), avg])
    return rows


def _judge_name(judge: dict | None) -> str:
    if not judge:
        return "not judged (generate-only)"
    ref = judge.get("reference")
    name = judge.get("model") or "?"
    return f"{name} ({judge.get('engine')}{', ' + ref if ref and ref != name else ''})"


def to_markdown(report: dict) -> str:
    lines = ["# taide-bench report", ""]
    if report["warnings"]:
        lines += [f"> **Warning:** {w}" for w in report["warnings"]] + [""]
    lines += ["## Judge scores (1–10), the card's table", ""]
    lines += _table(["model", *(TASK_LABELS[t] for t in CARD_TASKS), "平均 average"], score_rows(report))
    lines += [""]
    for r in report["runs"]:
        judged = ", ".join(f"{t} {s['judged']}/{s['total']}" for t, s in r["tasks"].items())
        lines.append(f"- **{r['name']}** (`{r['dir']}`): judge {_judge_name(r['judge'])}"
                     + (f"; judged {judged}" if judged else ""))
    if report["published"]:
        lines.append(f"- *published* rows: {report['published_source']}. Not comparable number for number with "
                     "a run on other data or with another judge.")
    lines += ["- average = mean of the five task means, as on the card.", ""]

    metric_rows = []
    for r in report["runs"]:
        for t in CARD_TASKS:
            m = r["reference_metrics"].get(t)
            if m:
                metric_rows.append([r["name"], TASK_LABELS[t], str(m["n"]), _f(m["chrf"], 1), _f(m["bleu"], 1),
                                    _f(m["rouge_l"], 3), _f(m["mean_length"], 0), _f(m["reference_length"], 0)])
    if metric_rows:
        lines += ["## Judge-free reference metrics", "",
                  "chrF and BLEU (sacrebleu, 0–100; BLEU tokenized per character for Chinese) for the translations, "
                  "character ROUGE-L F1 (0–1) for summaries, and the mean answer length in non-space characters "
                  "beside the references'.", ""]
        lines += _table(["model", "task", "n", "chrF", "BLEU", "ROUGE-L", "answer length", "reference length"],
                        metric_rows, text_columns=2) + [""]

    fid_rows = []
    for r in report["runs"]:
        for t in CARD_TASKS:
            s = r["fidelity"].get(t)
            if s and s.get("n"):
                langs = ", ".join(f"{k} {v}" for k, v in s["languages"].items())
                terms = ", ".join(f"{x['term']}→{x['taiwan']}" for x in s["top_mainland_terms"][:3]) or "–"
                fid_rows.append([r["name"], TASK_LABELS[t], s["expected_language"], langs, str(s["n"]),
                                 _f(s["wrong_language_share"], 0, 100, "%"),
                                 _f(s["simplified_share_overall"], 1, 100, "%"),
                                 f"{s['answers_with_simplified']}/{s['n']}",
                                 _f(s["mainland_per_answer"], 2), terms])
    if fid_rows:
        lines += ["## Traditional-Chinese fidelity", "",
                  "Wrong language: answers not in the expected language (English for zh→en, Taiwan Traditional "
                  "Chinese otherwise; mostly-Simplified Chinese counts as wrong). Simplified share: Simplified-only "
                  "characters among all CJK characters of the answers. Mainland terms: mainland-only words per "
                  "answer (軟件→軟體 ...).", ""]
        lines += _table(["model", "task", "expected", "detected", "n", "wrong language", "Simplified share",
                         "answers with Simplified", "mainland terms / answer", "top terms"], fid_rows,
                        text_columns=4) + [""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- chart

def write_png(report: dict, path: str | Path) -> Path:
    """Grouped bars: per-task means and the average per model; published rows hatched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = [*CARD_TASKS, "average"]
    rows = [*report["runs"], *report["published"]]
    fig = Figure(figsize=(max(7.0, 1.0 * len(columns) + 0.15 * len(rows) * len(columns)), 4.6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(rows))
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    for i, r in enumerate(rows):
        values = [(r["tasks"].get(t) or {}).get("mean") for t in CARD_TASKS] + [r.get("average")]
        xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(columns))]
        heights = [v if v is not None else 0.0 for v in values]
        color = palette[i % len(palette)]
        bars = ax.bar(xs, heights, width * 0.95, label=r["name"], color=color if not r.get("published") else "white",
                      edgecolor=color, hatch="///" if r.get("published") else None, linewidth=1.0)
        for bar, v in zip(bars, values):
            if v is None:
                ax.text(bar.get_x() + bar.get_width() / 2, 0.15, "no score", ha="center", va="bottom", fontsize=7,
                        rotation=90)
    ax.set_xticks(range(len(columns)), [PLOT_LABELS[c] for c in columns])
    ax.set_ylim(0, 10.5)
    ax.set_ylabel("judge score (1-10)")
    meaningless = any(MEANINGLESS in w for w in report["warnings"])
    ax.set_title("taide-bench: mean judge score per task; hatched: published on the card"
                 + ("\n(a run here is self- or toy-judged: its scores mean nothing)" if meaningless else ""), fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=min(len(rows), 3), frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    return path


# ---------------------------------------------------------------------------------------------- files

def write_report(report: dict, out_dir: str | Path) -> dict[str, Path]:
    """report.md, report.json and report.png in ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "report.md"
    md.write_text(to_markdown(report) + "\n", encoding="utf-8")
    js = out_dir / "report.json"
    write_json(js, report)
    return {"markdown": md, "json": js, "png": write_png(report, out_dir / "report.png")}


__all__ = ["CARD_SOURCE", "CARD_TASKS", "PUBLISHED", "TASK_LABELS", "build_report", "compare", "judge_warnings",
           "load_run", "published_rows", "score_rows", "to_markdown", "write_png", "write_report"]
