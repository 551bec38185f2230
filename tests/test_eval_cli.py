"""`taide eval` end to end, as a user runs it (subprocesses of the installed entry point): the bench with
the tiny model judged by a stub OpenAI-compatible judge, the bench over endpoints on the shipped sample,
multiple-choice exams on a small CSV, compare, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import free_port, write_jsonl

from taide.eval.judge import RUBRICS

TAIDE = str(Path(sys.executable).with_name("taide"))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# The stub judge's score per rubric: task means zh2en 6, en2zh 5, summary 4, article 8, letter 3 -> average 5.2.
SCORES = {"translation_en": 6, "translation_zh": 5, "summary": 4, "article": 8, "letter": 3}


def run(*args, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1", **(env or {})}
    return subprocess.run([TAIDE, *args], capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)


class StubServer:
    """An OpenAI-compatible server in a thread: a judge request (a rubric's system prompt) gets a short
    reasoned reply ending in that rubric's score from SCORES; any other request gets a fixed answer."""

    def __init__(self, name: str = "stub-model"):
        self.requests: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, payload, status=200):
                data = json.dumps(payload, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send({"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "t"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                stub.requests.append(body)
                system = next((m["content"] for m in body.get("messages", []) if m["role"] == "system"), "")
                rubric = next((n for n, r in RUBRICS.items() if r.system == system), None)
                text = f"理由：尚可。\n評分：{SCORES[rubric]}" if rubric else "這是一個回答。"
                self._send({"id": "x", "object": "chat.completion", "created": 0, "model": name,
                            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                         "finish_reason": "stop"}],
                            "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    with StubServer() as server:
        yield server


def tiny_bench(path: Path, n: int = 2) -> Path:
    """All five tasks with prompts short enough for the tiny model's 256-token window."""
    path.mkdir(parents=True)
    rows = {"zh2en": ("你好 {i}", "Hello {i}"), "en2zh": ("Hello world {i}", "你好，世界 {i}"),
            "summary": ("臺灣的夜市 {i}", "夜市 {i}"), "essay": ("寫夜市 {i}", "夜市很有名 {i}"),
            "letter": ("寫信 {i}", "敬啟者 {i}")}
    for task, (prompt, ref) in rows.items():
        write_jsonl(path / f"{task}.jsonl", [{"qid": f"{task}-{i}", "prompt": prompt.format(i=i),
                                              "reference": ref.format(i=i)} for i in range(n)])
    return path


@pytest.mark.parametrize("command", ["bench", "mc", "compare"])
def test_every_eval_command_explains_itself_with_an_example(command):
    result = run("eval", command, "--help")
    assert result.returncode == 0 and "Example" in result.stdout


def test_bench_help_says_what_tmmlu_looks_like():
    assert "content.A,content.Q" in run("eval", "mc", "--help").stdout


@pytest.mark.slow
def test_bench_tiny_model_judged_by_a_stub_end_to_end(tiny_model_dir, stub, tmp_path):
    out = tmp_path / "out"
    args = ["eval", "bench", "--model", str(tiny_model_dir), "--engine", "transformers",
            "--data", str(tiny_bench(tmp_path / "bench")), "--judge-endpoint", stub.url, "--judge-model", "stub-model",
            "--system", "taide", "--max-tokens", "4", "--concurrency", "4", "-o", str(out)]
    result = run(*args)
    assert result.returncode == 0, result.stderr
    # The card's table: the run's task means and their average, then the published rows.
    line = next(x for x in result.stdout.splitlines() if tiny_model_dir.name in x and "5.200" in x)
    assert [c.strip() for c in line.strip("│ ").split("│")][1:] == ["6.000", "5.000", "4.000", "8.000", "3.000", "5.200"]
    assert "Llama3-TAIDE-LX-8B-Chat-Alpha1 (published)" in result.stdout and "8.620" in result.stdout
    assert "8.676" in result.stdout and "warning" not in result.stdout
    for name in ("report.md", "report.json", "bench_run.json", "bench_summary.json", "resp_essay.jsonl", "eval_zh2en.json"):
        assert (out / name).is_file(), name
    assert (out / "report.png").read_bytes().startswith(PNG_MAGIC)
    report = json.loads((out / "report.json").read_text())
    run_row = report["runs"][0]
    assert run_row["average"] == pytest.approx(5.2) and run_row["model"]["engine"] == "transformers"
    assert set(run_row["reference_metrics"]) == {"zh2en", "en2zh", "summary", "article", "letter"}
    assert run_row["fidelity"]["zh2en"]["expected_language"] == "en"
    meta = json.loads((out / "bench_run.json").read_text())
    assert meta["command"] == "eval bench" and set(meta) >= {"config", "inputs", "counts", "versions", "created"}
    assert meta["judge"]["model"] == "stub-model" and meta["config"]["params"]["max_tokens"] == 4
    assert meta["config"]["system"].startswith("你是一個來自台灣的AI助理")
    resp = json.loads((out / "resp_zh2en.jsonl").read_text().splitlines()[0])
    assert resp["completion_tokens"] <= 4 and resp["system"] == meta["config"]["system"]
    assert len(stub.requests) == 10  # one judge request per answer, no generation requests to the judge
    again = run(*args)  # all done: nothing regenerated or rejudged
    assert again.returncode == 0 and len(stub.requests) == 10 and "5.200" in again.stdout


def test_bench_over_endpoints_on_the_shipped_sample_flags_self_judging(stub, tmp_path):
    out = tmp_path / "out"
    result = run("eval", "bench", "--endpoint", stub.url, "--judge-endpoint", stub.url, "--judge-model",
                 "stub-model", "--tasks", "zh2en,essay", "--tasks", "letter", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "the model under evaluation" in result.stdout and "mean nothing" in result.stdout
    assert "5.667 (3/5)" in result.stdout  # (6 + 8 + 3) / 3 over the three tasks run
    assert sorted(p.name for p in out.glob("resp_*")) == ["resp_essay.jsonl", "resp_letter.jsonl", "resp_zh2en.jsonl"]
    assert all(len(p.read_text().splitlines()) == 4 for p in out.glob("resp_*"))  # the shipped 4 items a task
    assert "mean nothing" in (out / "report.md").read_text()


def test_generate_only_then_compare(stub, tmp_path):
    first = run("eval", "bench", "--endpoint", stub.url, "--generate-only", "--tasks", "en2zh", "-o", str(tmp_path / "a"))
    assert first.returncode == 0, first.stderr
    assert not list((tmp_path / "a").glob("eval_*")) and (tmp_path / "a" / "report.md").is_file()
    second = run("eval", "bench", "--endpoint", stub.url, "--judge-endpoint", stub.url, "--judge-model",
                 "stub-model", "--tasks", "en2zh", "-o", str(tmp_path / "b"))
    assert second.returncode == 0, second.stderr
    result = run("eval", "compare", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "cmp"))
    assert result.returncode == 0, result.stderr
    assert "stub-model (a)" in result.stdout and "stub-model (b)" in result.stdout and "GPT-3.5" in result.stdout
    report = json.loads((tmp_path / "cmp" / "report.json").read_text())
    assert [r["average"] for r in report["runs"]] == [None, 5.0]
    assert (tmp_path / "cmp" / "report.png").read_bytes().startswith(PNG_MAGIC)


MC_CSV = "question,A,B,C,D,answer\n" + "".join(
    f"問題{i}：一加{i}等於幾？,{i},{i + 1},{i + 2},{i + 3},{'ABCD'[i % 4]}\n" for i in range(6))
TMMLU_CSV = ',content.A,content.Q\n0,B,"1.臺灣最高的山？(A) 雪山 (B) 玉山 (C) 合歡山 (D) 阿里山"\n' \
            '1,A,"2.首都？(A) 臺北 (B) 高雄 (C) 臺中 (D) 臺南"\n'


def test_mc_on_small_exams(tiny_model_dir, tmp_path):
    (tmp_path / "exams" / "subjects" / "地理").mkdir(parents=True)
    (tmp_path / "exams" / "math_test.csv").write_text(MC_CSV, encoding="utf-8")
    (tmp_path / "exams" / "subjects" / "地理" / "data.csv").write_text(TMMLU_CSV, encoding="utf-8")
    out = tmp_path / "out"
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"id": "x", "text": "一篇與考題無關的文章。"}\n', encoding="utf-8")
    result = run("eval", "mc", str(tiny_model_dir), str(tmp_path / "exams"), "--engine", "transformers",
                 "--limit-per-subject", "5", "--system", "none", "--runs", "2", "-o", str(out), "--seen", str(corpus))
    assert result.returncode == 0, result.stderr
    # Questions this short cannot be told apart from ordinary text: all unchecked, and said so.
    assert "in the training data?" in result.stdout and "unchecked: too short to check" in result.stdout
    assert "math" in result.stdout and "地理" in result.stdout and "overall (micro)" in result.stdout
    assert "predicted letters:" in result.stdout and "25.0%" in result.stdout  # chance
    assert "±" in result.stdout and "2 runs, options shuffled" in result.stdout
    summary = json.loads((out / "mc_summary.json").read_text())
    assert summary["method"] == "loglikelihood" and summary["overall"]["n"] == 14  # (5 math (limited) + 2 地理) × 2
    assert summary["subjects"]["math"]["n"] == 10 and sum(summary["letters"]["predicted"].values()) == 14
    assert len(summary["spread"]["overall"]["runs"]) == 2
    assert summary["published"][0]["accuracy"]["TMMLU+"] == 0.3903 and "published" in result.stdout
    records = [json.loads(x) for x in (out / "mc_records.jsonl").read_text().splitlines()]
    assert len(records) == 14 and all(set(r["scores"]) == {"A", "B", "C", "D"} for r in records)


@pytest.mark.parametrize("args, message", [
    (["eval", "bench", "--model", "smollm2-135m", "--data", "/nonexistent/bench", "--generate-only", "-o", "{tmp}/o"],
     "/nonexistent/bench: no such bench directory"),
    (["eval", "bench", "--endpoint", "http://127.0.0.1:{port}/v1", "--generate-only", "-o", "{tmp}/o"],
     "cannot reach the endpoint"),
    (["eval", "bench", "--model", "smollm2-135m", "--judge-endpoint", "http://127.0.0.1:{port}/v1",
      "--judge-model", "judge", "-o", "{tmp}/o"], "the judge: cannot reach the endpoint"),
    (["eval", "bench", "--endpoint", "http://127.0.0.1:{port}/v1", "--served-model", "m", "--generate-only",
      "-o", "{tmp}/o"], "the model endpoint: cannot reach"),
    (["eval", "bench", "--model", "smollm2-135m", "-o", "{tmp}/o"], "no judge: pass --judge-endpoint"),
    (["eval", "bench", "--model", "a", "--endpoint", "http://x/v1", "--generate-only", "-o", "{tmp}/o"], "not both"),
    (["eval", "bench", "--model", "smollm2-135m", "--tasks", "poem", "--generate-only", "-o", "{tmp}/o"],
     "unknown bench task"),
    (["eval", "mc", "smollm2-135m", "/nonexistent/tmmlu", "-o", "{tmp}/o"], "/nonexistent/tmmlu: no such file or directory"),
    (["eval", "mc", "smollm2-135m", "{tmp}", "--method", "guess", "-o", "{tmp}/o"], "--method 'guess'"),
    (["eval", "compare", "{tmp}"], "not a bench run"),
])
def test_errors_are_one_clear_line(tmp_path, args, message):
    port = free_port()
    args = [a.format(tmp=tmp_path, port=port) for a in args]
    result = run(*args, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len([x for x in result.stderr.splitlines() if x.startswith("error:")]) == 1


def test_bench_with_a_local_judge_that_is_the_model_itself(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    result = run("eval", "bench", "--model", str(tiny_model_dir), "--engine", "transformers", "--judge-model",
                 str(tiny_model_dir), "--judge-max-tokens", "4", "--data", str(tiny_bench(tmp_path / "bench", n=1)),
                 "--tasks", "zh2en", "--max-tokens", "2", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "the model under evaluation" in result.stdout and "mean nothing" in result.stdout
    evaluation = json.loads((out / "eval_zh2en.json").read_text())
    # The tiny random model writes no score line: the item is listed as failed, never scored 0.
    assert evaluation["overall"]["judged"] + evaluation["overall"]["failed"] == 1
    assert all(f["reason"] for f in evaluation["failures"])
