"""The eval commands as library calls: ``taide eval bench``, ``taide eval mc`` and ``taide eval compare`` are
each a config (fields named like the flags) and a ``run_…(config)`` that loads what it needs, runs, and writes
every artifact. The CLI and ``taide build`` call these and nothing below them, so all callers get the same files.

    from taide.eval.commands import EvalMCConfig, run_eval_mc

    result = run_eval_mc(EvalMCConfig(model="smollm2-135m", paths=["data/tmmluplus"], out_dir="runs/mc"))
    print(result.summary["overall"]["micro_accuracy"], result.files)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from taide.engines.base import Engine
from taide.errors import EngineError, TaideError

# ``status(message)`` wraps a slow step (loading, connecting): the CLI shows a spinner; by default nothing.
Status = Callable[[str], AbstractContextManager]


def _checked(engine: Engine, what: str) -> Engine:
    """Fail now, not after the whole generation, when an endpoint is unreachable or refuses the key."""
    try:
        engine.check()
    except EngineError as e:
        engine.close()
        raise EngineError(f"{what}: {e}") from e
    return engine


# ------------------------------------------------------------------------------------------- eval bench

@dataclass
class EvalBenchConfig:
    """``taide eval bench``: the card's office-task bench, answered by a model and graded by a judge."""
    out_dir: Path
    model: str | None = None  # a local model to evaluate ...
    endpoint: str | None = None  # ... or an OpenAI-compatible URL serving it
    served_model: str | None = None
    api_key: str | None = None
    engine: str = "auto"
    data: Path | None = None  # None: the shipped 20-item sample
    judge_endpoint: str | None = None
    judge_model: str | None = None  # the judge's name at judge_endpoint, else a local judge model
    judge_api_key: str | None = None
    judge_concurrency: int | None = None  # None: concurrency, else 8
    judge_max_tokens: int = 512
    system: str = "auto"
    tasks: list[str] | None = None  # None: every task in data
    generate_only: bool = False
    concurrency: int | None = None
    max_tokens: int = 1024
    timeout: float = 600.0
    n_ctx: int | None = None

    def __post_init__(self):
        self.out_dir = Path(self.out_dir)
        self.data = Path(self.data) if self.data is not None else None
        if (self.model is None) == (self.endpoint is None):
            raise TaideError("pass the model to evaluate as --model M (local) or --endpoint URL, not both")
        if not self.generate_only and not (self.judge_endpoint or self.judge_model):
            raise TaideError("no judge: pass --judge-endpoint URL --judge-model NAME (or a local --judge-model), "
                             "or --generate-only")
        # "--tasks zh2en,en2zh" and "--tasks zh2en --tasks en2zh" both work
        self.tasks = [t.strip() for spec in self.tasks or [] for t in spec.split(",") if t.strip()] or None


@dataclass
class EvalBenchResult:
    out_dir: Path
    report: dict  # what report.json holds: the card's table, reference metrics, fidelity, warnings
    files: dict[str, Path]  # report.md, report.json, report.png
    unanswered: int  # prompts that got no answer (a rerun retries them)
    seconds: float


def run_eval_bench(config: EvalBenchConfig, *, engine: Engine | None = None, judge=None,
                   on_progress: Callable[[str, str, int, int], None] | None = None,
                   status: Status = nullcontext) -> EvalBenchResult:
    """Answer every bench prompt, grade the answers (unless ``generate_only``) and write the run's files
    (``resp_*.jsonl``, ``judge_*.jsonl``, ``eval_*.json``, ``bench_summary.json``, ``bench_run.json``) and its
    report in ``out_dir``. A rerun resumes. ``engine``/``judge``: already loaded ones to use instead of loading
    ``model``/``judge_model`` (they are not closed). ``on_progress(stage, task, done, total)``."""
    from taide.engines import GenerationParams, load_engine
    from taide.eval.bench import SAMPLE_BENCH, load_bench, run_bench
    from taide.eval.judge import Judge, load_endpoint
    from taide.eval.report import build_report, write_report

    c = config
    load_bench(c.data or SAMPLE_BENCH, c.tasks)  # bad data fails here, before any model loads
    judge_options = {"concurrency": c.judge_concurrency or c.concurrency, "max_tokens": c.judge_max_tokens}
    opened = []
    try:
        if judge is None and not c.generate_only and c.judge_endpoint:  # a wrong judge URL fails before the model loads
            with status(f"Connecting to the judge at {c.judge_endpoint} …"):
                judge = Judge.from_endpoint(c.judge_endpoint, c.judge_model, c.judge_api_key, c.timeout, **judge_options)
                opened.append(judge.engine)
                _checked(judge.engine, "the judge")
        if engine is None and c.endpoint:
            with status(f"Connecting to {c.endpoint} …"):
                engine = load_endpoint(c.endpoint, c.served_model, c.api_key, c.timeout,
                                       max_concurrency=c.concurrency or 8)
                opened.append(engine)
                _checked(engine, "the model endpoint")
        elif engine is None:
            with status(f"Loading {c.model} …"):
                engine = load_engine(c.model, c.engine, n_ctx=c.n_ctx)
            opened.append(engine)
        if judge is None and not c.generate_only:
            with status(f"Loading the judge {c.judge_model} …"):
                judge = Judge(load_engine(c.judge_model), **judge_options)
                opened.append(judge.engine)
        c.out_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        result = run_bench(engine, c.out_dir, c.data, None if c.generate_only else judge, c.tasks,
                           GenerationParams(max_tokens=c.max_tokens, temperature=0.0), c.system, c.concurrency,
                           on_progress=on_progress)
        seconds = time.perf_counter() - started
    finally:
        for opened_engine in opened:
            opened_engine.close()
    report = build_report(c.out_dir)
    unanswered = sum(len(g["failed"]) for g in result["generation"].values())
    return EvalBenchResult(c.out_dir, report, write_report(report, c.out_dir), unanswered, seconds)


# ------------------------------------------------------------------------------------------- eval mc

@dataclass
class EvalMCConfig:
    """``taide eval mc``: multiple-choice exams (TMMLU, TMMLU+, TMLU, TTQA, TW Legal)."""
    model: str
    paths: list[Path]
    out_dir: Path
    shots: int = 0
    limit_per_subject: int | None = None
    runs: int = 1
    seed: int = 0
    method: str = "auto"  # auto (log-likelihood when the engine can score, else generation), loglikelihood, generate
    engine: str = "auto"  # auto: transformers for a local model
    system: str = "auto"
    api_key: str | None = None
    n_ctx: int | None = None
    max_tokens: int = 32  # the answer's length when generating
    seen: list[Path] | None = None  # training corpora or decontamination reports: score seen and unseen items apart

    def __post_init__(self):
        from taide.eval.mc import METHODS

        self.paths = [Path(p) for p in ([self.paths] if isinstance(self.paths, (str, Path)) else self.paths)]
        self.seen = [Path(p) for p in self.seen] if self.seen else None
        self.out_dir = Path(self.out_dir)
        if self.method not in METHODS:
            raise TaideError(f"--method {self.method!r}: choose one of {', '.join(METHODS)}")
        for name in ("shots", "runs", "limit_per_subject"):
            value, least = getattr(self, name), 0 if name == "shots" else 1
            if value is not None and value < least:
                raise TaideError(f"--{name.replace('_', '-')} {value}: must be at least {least}")


@dataclass
class EvalMCResult:
    summary: dict  # what mc_summary.json holds: per subject, category and overall; letters; spread over runs
    files: dict[str, Path]  # records (mc_records.jsonl) and summary (mc_summary.json)


def run_eval_mc(config: EvalMCConfig, *, engine: Engine | None = None,
                on_progress: Callable[[int, int], None] | None = None, status: Status = nullcontext) -> EvalMCResult:
    """Score the exams under ``paths`` and write ``mc_records.jsonl`` and ``mc_summary.json`` in ``out_dir``
    (overwritten). ``engine``: an already loaded one instead of ``model`` (not closed). With ``seen``, every record
    says whether its item was in the training data (``seen``, ``unseen`` or ``unchecked``) and the summary's
    ``seen`` holds the accuracy of each group apart (:func:`taide.eval.mc.summarize_seen`)."""
    from taide.engines import load_engine
    from taide.eval.mc import PUBLISHED, load_mc, run_mc, summarize_seen, write_mc
    from taide.models import resolve_model

    c = config
    data = load_mc(c.paths)  # bad paths fail before the model loads
    seen = None
    if c.seen:  # before the model loads too: a corpus may take a while to search, a bad path fails now
        from taide.decontam.items import mc_items
        from taide.decontam.report import seen_items

        items = mc_items(data, "exams")
        with status(f"Looking for the exam items in {', '.join(map(str, c.seen))} …"):
            by_key, sources = seen_items(items, c.seen)
        seen = ({item.source: by_key[item.key] for item in items}, sources)
    own = engine is None
    if own:
        name = c.engine
        if name == "auto" and resolve_model(c.model).is_local:
            name = "transformers"  # exams read long prompts: 2.3× faster than llama.cpp here (BENCHMARKS.md)
        with status(f"Loading {c.model} …"):
            engine = load_engine(c.model, name, n_ctx=c.n_ctx, api_key=c.api_key)
    try:
        result = run_mc(engine, data, shots=c.shots, limit_per_subject=c.limit_per_subject, method=c.method,
                        system=c.system, max_tokens=c.max_tokens, runs=c.runs, seed=c.seed, progress=on_progress)
        result["model"] = engine.describe()
    finally:
        if own:
            engine.close()
    if seen is not None:
        for record in result["records"]:
            record["seen"] = seen[0][record["source"]]
        result["seen"] = summarize_seen(result["records"], seen[1])
    c.out_dir.mkdir(parents=True, exist_ok=True)
    files = write_mc(result, c.out_dir)
    return EvalMCResult({**{k: v for k, v in result.items() if k != "records"}, "published": PUBLISHED}, files)


# ------------------------------------------------------------------------------------------- eval compare

@dataclass
class EvalCompareConfig:
    """``taide eval compare``: the card's table across bench runs."""
    runs: list[Path]
    out_dir: Path | None = None  # None: build the report, write nothing
    no_published: bool = False

    def __post_init__(self):
        self.runs = [Path(r) for r in self.runs]
        self.out_dir = Path(self.out_dir) if self.out_dir is not None else None


@dataclass
class EvalCompareResult:
    report: dict
    files: dict[str, Path] = field(default_factory=dict)


def run_eval_compare(config: EvalCompareConfig) -> EvalCompareResult:
    from taide.eval.report import compare, write_report

    report = compare(config.runs, published=not config.no_published)
    return EvalCompareResult(report, write_report(report, config.out_dir) if config.out_dir is not None else {})


__all__ = ["EvalBenchConfig", "EvalBenchResult", "EvalCompareConfig", "EvalCompareResult", "EvalMCConfig",
           "EvalMCResult", "run_eval_bench", "run_eval_compare", "run_eval_mc"]
