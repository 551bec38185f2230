"""The `taide` program end to end, as a user runs it (subprocesses of the installed entry point)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_jsonl

TAIDE = str(Path(sys.executable).with_name("taide"))


def run(*args, stdin: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run([TAIDE, *args], input=stdin, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.parametrize("command", ["chat", "generate", "task", "demo", "info"])
def test_every_command_explains_itself_with_an_example(command):
    result = run(command, "--help")
    assert result.returncode == 0 and "Example" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["chat", "./missing.gguf"], "./missing.gguf: no such file"),
    (["chat", "smollm2-135m", "--engine", "bogus"], "unknown engine 'bogus'"),
    (["info", "meta-llama/Meta-Llama-3-8B"], "never downloads from a model hub"),
    (["task", "poem"], "unknown task 'poem'"),
    (["task", "summary", "/nonexistent/input.txt"], "/nonexistent/input.txt: no such file"),
    (["chat", "smollm2-135m", "--temperature", "-1"], "temperature=-1.0 must be between 0 and 5"),
])
def test_errors_are_one_clear_line_without_traceback(args, message):
    result = run(*args, stdin="")
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr


def test_debug_shows_the_traceback():
    result = run("--debug", "info", "./missing.gguf")
    assert result.returncode != 0 and "Traceback" in result.stderr and "ModelError" in result.stderr


def test_corrupt_gguf_is_reported(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\xff" * 100)
    result = run("chat", str(bad), stdin="")
    assert result.returncode == 1 and "corrupt GGUF" in result.stderr


def test_info_json():
    result = run("info", "smollm2-135m", "--json")
    info = json.loads(result.stdout)
    assert info["kind"] == "gguf" and info["context_length"] == 8192 and info["chat_format"] == "template"


@pytest.mark.slow
def test_demo_runs_every_office_task():
    result = run("demo", "smollm2-135m", "--max-tokens", "8")
    assert result.returncode == 0, result.stderr
    for name in ("article", "letter", "summary", "zh2en", "en2zh"):
        assert name in result.stdout
    assert "tok/s" in result.stdout and "請把下面的中文翻譯成" in result.stdout


def test_demo_runs_the_newest_build(tmp_path, monkeypatch):
    """After a `taide build`, `taide demo` with no model runs its model; a build whose files are gone is forgotten."""
    from taide.builder.runner import _remember
    from taide.builder.stages import ExportStageResult
    from taide.models import latest_build

    monkeypatch.setenv("TAIDE_CACHE", str(tmp_path / "cache"))
    assert latest_build() is None
    gguf = tmp_path / "build" / "export" / "model.gguf"
    gguf.parent.mkdir(parents=True)
    gguf.write_bytes(b"GGUF")
    _remember({"export": ExportStageResult(str(gguf), "gguf", "q8_0", 4, None, None, None)})
    assert latest_build() == str(gguf.resolve())
    gguf.unlink()
    assert latest_build() is None


@pytest.mark.slow
def test_interactive_chat_with_commands(tmp_path):
    transcript = tmp_path / "chat.jsonl"
    script = "\n".join(["What is the capital of France? Answer in one sentence.", "/system Be brief.",
                        f"/save {transcript}", "/reset", "/system", "/exit"]) + "\n"
    result = run("chat", "smollm2-135m", "--temperature", "0", "--max-tokens", "24", stdin=script)
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout and "tok/s" in result.stderr
    assert "system prompt: Be brief." in result.stderr and "conversation cleared" in result.stderr
    saved = json.loads(transcript.read_text())
    roles = [m["role"] for m in saved["messages"]]
    assert roles == ["system", "user", "assistant"] and saved["messages"][0]["content"] == "Be brief."
    assert "Paris" in saved["messages"][2]["content"]


@pytest.mark.slow
def test_task_from_stdin_with_traditional_guard():
    result = run("task", "zh2en", "--traditional", "--max-tokens", "16", "--temperature", "0",
                 stdin="本法所稱主管機關為內政部。")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() and "characters made Traditional" in result.stderr


@pytest.mark.slow
def test_generate_then_resume(tiny_model_dir, tmp_path):
    src = write_jsonl(tmp_path / "q.jsonl", [{"id": i, "prompt": f"問題 {i}"} for i in range(3)])
    out = tmp_path / "a.jsonl"
    args = ["generate", str(tiny_model_dir), str(src), str(out), "--max-tokens", "4", "--temperature", "0"]
    first = run(*args)
    assert first.returncode == 0, first.stderr
    assert "3 answered, 0 already done, 3 in all" in first.stdout
    again = run(*args)
    assert "0 answered, 3 already done" in again.stdout
    assert len(out.read_text().splitlines()) == 3


def test_progress_logs_a_line_per_step_when_output_is_not_a_terminal(tiny_model_dir, tmp_path):
    """Redirected to a file, as under nohup or on a cluster: step lines (first, last, and at a steady interval in
    between) with tokens/s, loss and the time left, instead of a bar drawn for nobody."""
    data = write_jsonl(tmp_path / "sft.jsonl", [{"messages": [{"role": "user", "content": f"q{i}"},
                                                              {"role": "assistant", "content": "OK"}]}
                                                for i in range(32)])
    result = run("train", "sft", "-m", str(tiny_model_dir), "-d", str(data), "-o", str(tmp_path / "run"),
                 "--max-steps", "3", "--seq-len", "64", "--global-batch-tokens", "128")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("train sft: step")]
    assert lines[0].startswith("train sft: step 1/3 · loss ") and lines[-1].startswith("train sft: step 3/3 · ")
    assert all(" tokens/s · " in line and line.endswith(" left") for line in lines)


def test_a_silent_task_says_it_is_still_running():
    import io
    import time

    from rich.console import Console

    from taide.cli import StepProgress

    buffer = io.StringIO()
    progress = StepProgress(Console(file=buffer, width=200), every=0.0, quiet=0.2)
    progress.begin("eval")
    time.sleep(1.5)
    progress.step("eval", 1, 2, "x")
    progress.end("eval")
    progress.close()
    text = buffer.getvalue()
    assert "eval: still running, 0:00:0" in text and "eval: step 1/2 · x · " in text
