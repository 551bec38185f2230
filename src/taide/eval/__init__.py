"""Evaluation: the office-task bench graded by an LLM judge (``taide.eval.bench``, ``taide.eval.judge``).

    from taide.engines import load_engine
    from taide.eval import Judge, run_bench

    model = load_engine("smollm2-135m")
    judge = Judge.from_endpoint("http://judge-host:8000/v1", served_model="judge-model", api_key="...")
    summary = run_bench(model, "runs/smol", judge=judge)  # the shipped sample bench
    print(summary["average"], {t: s["mean"] for t, s in summary["tasks"].items()})
"""

from taide.eval.bench import SAMPLE_BENCH, BenchItem, generate_responses, judge_responses, load_bench, run_bench, summarize
from taide.eval.layout import BENCH_TASKS, canonical_task, eval_path, public_task, resp_path
from taide.eval.judge import (
    RUBRICS,
    Judge,
    JudgeAborted,
    JudgeItem,
    RetryPolicy,
    Rubric,
    Verdict,
    load_endpoint,
    parse_score,
)

__all__ = ["BENCH_TASKS", "RUBRICS", "SAMPLE_BENCH", "BenchItem", "Judge", "JudgeAborted", "JudgeItem", "RetryPolicy",
           "Rubric", "Verdict", "canonical_task", "eval_path", "generate_responses", "judge_responses", "load_bench",
           "load_endpoint", "parse_score", "public_task", "resp_path", "run_bench", "summarize"]
