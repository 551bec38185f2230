"""Each command's Python function writes the same artifacts as the command itself: the CLI only maps flags to
the config and the result to a table. Runs each pair into two directories and compares every file, less what
measures time (and the directory's own name)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_jsonl

TAIDE = str(Path(sys.executable).with_name("taide"))
# Keys that hold a time, a date or a speed: they differ between any two runs.
VOLATILE = {"elapsed", "seconds", "wall_s", "created", "time_to_first_token", "tokens_per_second", "latency_s"}
MC_CSV = "question,A,B,C,D,answer\n" + "".join(f"第{i}題：{i}+{i}=?,{2 * i},{i},{3 * i},{i + 1},A\n" for i in range(1, 5))


def cli(*args) -> None:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    done = subprocess.run([TAIDE, *map(str, args)], capture_output=True, text=True, timeout=600, env=env,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _contents(path: Path, root: Path):
    if path.suffix not in (".json", ".jsonl", ".md", ".txt", "") or path.name == "Modelfile":
        return path.read_bytes() if path.suffix != ".png" else path.read_bytes()[:8]  # a PNG: report.json's numbers
    text = path.read_text(encoding="utf-8").replace(str(root.resolve()), "<out>").replace(str(root), "<out>")
    if path.suffix == ".json":
        return _strip(json.loads(text))
    if path.suffix == ".jsonl":
        return [_strip(json.loads(line)) for line in text.splitlines() if line.strip()]
    return text


def assert_same_artifacts(a: Path, b: Path) -> None:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    assert files_a, "the command wrote nothing"
    for name in files_a:
        assert _contents(a / name, a) == _contents(b / name, b), name


def test_generate(tiny_model_dir, tmp_path):
    from taide.generate import GenerateConfig, run_generate

    questions = write_jsonl(tmp_path / "q.jsonl", [{"id": i, "prompt": f"問題 {i}"} for i in range(3)])
    cli("generate", tiny_model_dir, questions, tmp_path / "cli" / "a.jsonl", "--max-tokens", "4", "--temperature", "0")
    run_generate(GenerateConfig(str(tiny_model_dir), questions, tmp_path / "py" / "a.jsonl", max_tokens=4,
                                temperature=0))
    assert_same_artifacts(tmp_path / "cli", tmp_path / "py")


def test_eval_mc(tiny_model_dir, tmp_path):
    from taide.eval.commands import EvalMCConfig, run_eval_mc

    exams = tmp_path / "exams"
    exams.mkdir()
    (exams / "math_test.csv").write_text(MC_CSV, encoding="utf-8")
    cli("eval", "mc", tiny_model_dir, exams, "--runs", "2", "--system", "none", "-o", tmp_path / "cli")
    result = run_eval_mc(EvalMCConfig(str(tiny_model_dir), [exams], tmp_path / "py", runs=2, system="none"))
    assert result.summary["overall"]["n"] == 8 and result.files["summary"] == tmp_path / "py" / "mc_summary.json"
    assert_same_artifacts(tmp_path / "cli", tmp_path / "py")


def test_eval_bench_and_compare(tiny_model_dir, tmp_path):
    from taide.eval.commands import EvalBenchConfig, EvalCompareConfig, run_eval_bench, run_eval_compare

    cli("eval", "bench", "--model", tiny_model_dir, "--engine", "transformers", "--tasks", "zh2en", "--generate-only",
        "--max-tokens", "4", "-o", tmp_path / "cli")
    result = run_eval_bench(EvalBenchConfig(tmp_path / "py", model=str(tiny_model_dir), engine="transformers",
                                            tasks=["zh2en"], generate_only=True, max_tokens=4))
    # the tiny model's 256-token context leaves some prompts unanswered: both runs say which
    assert result.report == json.loads(result.files["json"].read_text(encoding="utf-8"))
    assert_same_artifacts(tmp_path / "cli", tmp_path / "py")

    cli("eval", "compare", tmp_path / "cli", "-o", tmp_path / "cmp-cli")
    run_eval_compare(EvalCompareConfig([tmp_path / "cli"], tmp_path / "cmp-py"))
    assert_same_artifacts(tmp_path / "cmp-cli", tmp_path / "cmp-py")


def test_data_clean(tmp_path):
    from taide.builder.recipe import SAMPLES
    from taide.data import CleanConfig, run_clean

    raw = SAMPLES["data"]
    inputs = sorted(p for p in raw.rglob("*.jsonl"))[:2]
    assert inputs, raw
    cli("data", "clean", *inputs, "-o", tmp_path / "cli", "--workers", "1")
    result = run_clean(CleanConfig(inputs, tmp_path / "py", workers=1))
    assert result.read == result.kept + result.removed_total + result.unreadable > 0
    assert result.output == tmp_path / "py" and result.report["kept"] == result.kept
    assert_same_artifacts(tmp_path / "cli", tmp_path / "py")


@pytest.mark.parametrize("fmt", ["gguf", "hf"])
def test_export(tiny_model_dir, tmp_path, fmt):
    from taide.export import ExportConfig, run_export

    cli("export", tiny_model_dir, "--format", fmt, "-o", tmp_path / "cli" / "model")
    result = run_export(ExportConfig(str(tiny_model_dir), fmt, out=tmp_path / "py" / "model"))
    assert result.format == fmt
    assert_same_artifacts(tmp_path / "cli", tmp_path / "py")
