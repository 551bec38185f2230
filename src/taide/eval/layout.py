"""Where a taide-bench run keeps its files, and the tasks' names: ours, and the public scorer's (taide-bench-eval's
``essay`` is our ``article``). The runner (bench.py), the public-scorer view (compat.py) and the reports read the
same layout from here."""

from __future__ import annotations

from pathlib import Path

from taide.errors import InputError

# Our task names (taide.chat.presets.TASKS order) and the public scorer's.
BENCH_TASKS = ("article", "letter", "summary", "zh2en", "en2zh")
PUBLIC_NAMES = {"article": "essay"}
OUR_NAMES = {v: k for k, v in PUBLIC_NAMES.items()}


def canonical_task(name: str) -> str:
    """Our name for a task given either naming (essay → article)."""
    task = OUR_NAMES.get(name, name)
    if task not in BENCH_TASKS:
        raise InputError(name, None, f"unknown bench task; choose from {', '.join(BENCH_TASKS)} (or essay for article)")
    return task


def public_task(task: str) -> str:
    """The public scorer's name for a task (article → essay); used in file names."""
    return PUBLIC_NAMES.get(canonical_task(task), canonical_task(task))


def resp_path(out_dir: str | Path, task: str) -> Path:
    return Path(out_dir) / f"resp_{public_task(task)}.jsonl"


def eval_path(out_dir: str | Path, task: str) -> Path:
    return Path(out_dir) / f"eval_{public_task(task)}.json"


def journal_path(out_dir: str | Path, task: str) -> Path:
    return Path(out_dir) / f"judge_{public_task(task)}.jsonl"
