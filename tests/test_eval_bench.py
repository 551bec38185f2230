"""The office-task bench and its LLM judge, against real components: a stub OpenAI-compatible judge
server on loopback (it can be told to rate-limit, fail, hang or ramble), the tiny random model, and
the shipped sample bench."""

from __future__ import annotations

import json
import re
import time
from collections import Counter

import pytest
from conftest import StubJudge, write_jsonl

from taide.artifacts import read_resumable
from taide.engines import GenerationParams
from taide.errors import InputError
from taide.eval import (
    SAMPLE_BENCH,
    Judge,
    JudgeAborted,
    JudgeItem,
    RetryPolicy,
    generate_responses,
    judge_responses,
    load_bench,
    load_endpoint,
    parse_score,
    run_bench,
)
from taide.chat.presets import TAIDE_SYSTEM_PROMPT
from taide.eval.layout import eval_path, journal_path, resp_path
from taide.eval.judge import RUBRICS, SCORE_LINE, TASK_RUBRIC

FAST = RetryPolicy(retries=3, parse_retries=2, backoff=0.01, max_backoff=0.05, jitter=0.5)


# ---------------------------------------------------------------------------------------------- score parsing

@pytest.mark.parametrize("reply, score", [
    ("Score: 8", 8), ("Score：8", 8), ("分數：8", 8), ("評分: 7.5", 7.5), ("評分：７", 7),  # full-width forms
    ("8/10", 8), ("8 / 10", 8), ("８／１０", 8), ("[[8]]", 8), ("Rating: [[6]]", 6), ("**Score**: 9", 9),
    ("**評分：9**", 9), ("Final Score = 7/10", 7), ("得分為 6 分", 6), ("評分：10。", 10),
    ("理由：翻譯忠實。\n\n8", 8), ("整體不錯。\n**8**", 8), ("9分", 9),
    ("評分：1 到 10 分，10 分最好。\n譯文漏了一句。\n評分：4", 4),  # the judge echoed the scale first: the last wins
    ("Score: 8\n(the reference itself would get 10/10)", 8),  # a marked score beats a bare ratio
])
def test_parse_score_reads_the_usual_ways(reply, score):
    assert parse_score(reply) == score


@pytest.mark.parametrize("reply", [
    "Score: 11", "評分：0", "Score: 85/100", "score: -3", "12/10",  # off the 1-10 scale: not clipped
    "", None, "無法判斷。", "The answer is fine.", "in 2023.", "評分標準：忠實、通順",
])
def test_parse_score_none_never_zero(reply):
    assert parse_score(reply) is None


def test_rubrics_cover_every_task_and_fix_the_score_line():
    for task, name in TASK_RUBRIC.items():
        rubric = RUBRICS[name]
        messages = rubric.messages("題目Q", "參考R", "回答A")
        assert [m["role"] for m in messages] == ["system", "user"]
        assert all(x in messages[1]["content"] for x in ("題目Q", "參考R", "回答A"))
        assert SCORE_LINE + "X" in rubric.system and "1 到 10" in rubric.system
        # A reply ending the way the rubric asks is read back.
        assert parse_score("理由……\n" + SCORE_LINE + "7") == 7
    assert "臺灣" in RUBRICS["translation_zh"].system and "只" in RUBRICS["translation_en"].system
    assert "捏造" in RUBRICS["summary"].system and "敬語" in RUBRICS["letter"].system


def test_backoff_doubles_with_bounded_jitter():
    policy = RetryPolicy(backoff=1.0, max_backoff=5.0, jitter=0.0)
    assert [policy.delay(n) for n in range(5)] == [1, 2, 4, 5, 5]
    jittered = RetryPolicy(backoff=1.0, max_backoff=30, jitter=0.25)
    samples = [jittered.delay(2) for _ in range(200)]
    assert all(3.0 <= s <= 5.0 for s in samples) and len(set(samples)) > 1


# ---------------------------------------------------------------------------------------------- the stub judge

@pytest.fixture
def stub():
    with StubJudge() as server:
        yield server


def item(n: int, task: str = "en2zh") -> JudgeItem:
    return JudgeItem(f"q{n}", task, f"請翻譯第 {n} 句。", f"參考譯文 {n}", f"ANS-{n} 的譯文")


def test_judge_over_an_endpoint_is_greedy_and_shows_question_reference_answer(stub):
    judge = Judge.from_endpoint(stub.url, timeout=5, policy=FAST)
    verdict = judge.score(item(1, "essay"))
    assert (verdict.score, verdict.attempts, verdict.reason) == (7, 1, None)
    body = stub.bodies[-1]
    assert body["model"] == "stub-judge" and body["temperature"] == 0
    user = body["messages"][1]["content"]
    assert "請翻譯第 1 句。" in user and "參考譯文 1" in user and "ANS-1 的譯文" in user
    assert body["messages"][0]["content"] == RUBRICS["article"].system  # essay is the public name of article


def test_rate_limits_and_server_errors_are_retried(stub):
    stub.plan("ANS-1", "429", "429", "ok:6")
    stub.plan("ANS-2", "500", "ok:9")
    judge = Judge.from_endpoint(stub.url, timeout=5, policy=FAST, concurrency=2)
    first, second = judge.score_many([item(1), item(2)])
    assert (first.score, first.attempts, second.score, second.attempts) == (6, 3, 9, 2)
    assert stub.hits["ANS-1"] == 3 and stub.hits["ANS-2"] == 2  # the client's own retries are off


def test_exhausted_retries_are_recorded_not_zero(stub):
    stub.plan("ANS-1", "500")
    stub.plan("ANS-2", "400")
    judge = Judge.from_endpoint(stub.url, timeout=5, policy=RetryPolicy(retries=2, backoff=0.01, jitter=0))
    five_hundred, bad_request = judge.score_many([item(1), item(2)])
    assert five_hundred.score is None and five_hundred.attempts == 3 and "HTTP 500" in five_hundred.reason
    assert stub.hits["ANS-1"] == 3
    assert bad_request.score is None and bad_request.attempts == 1 and "HTTP 400" in bad_request.reason  # not transient


def test_a_hanging_judge_times_out_and_is_retried(stub):
    stub.plan("ANS-1", "hang", "ok:8")
    stub.plan("ANS-2", "hang")
    judge = Judge.from_endpoint(stub.url, timeout=0.4, policy=RetryPolicy(retries=1, backoff=0.01, jitter=0),
                                concurrency=2)
    started = time.perf_counter()
    recovered, stuck = judge.score_many([item(1), item(2)])
    assert (recovered.score, recovered.attempts) == (8, 2)
    assert stuck.score is None and stuck.attempts == 2 and "timeout" in stuck.reason
    assert time.perf_counter() - started < 1.4  # two timeouts of 0.4 s, never the stub's 1.5 s hang


def test_unparsable_replies_are_asked_again_then_recorded(stub):
    stub.plan("ANS-1", "garbage", "ok:5")
    stub.plan("ANS-2", "garbage")
    judge = Judge.from_endpoint(stub.url, timeout=5, policy=FAST)
    fixed, hopeless = judge.score_many([item(1), item(2)])
    assert (fixed.score, fixed.attempts) == (5, 2)
    reask = [b for b in stub.bodies if "ANS-1" in str(b["messages"])][-1]["messages"]
    assert [m["role"] for m in reask] == ["system", "user", "assistant", "user"] and SCORE_LINE in reask[-1]["content"]
    assert hopeless.score is None and hopeless.attempts == 3 and "unparsable" in hopeless.reason
    assert hopeless.reply == "這個回答看起來還可以，但我無法決定。"


def test_a_wrong_key_aborts_instead_of_failing_every_item(stub):
    stub.plan("ANS-1", "401")
    judge = Judge.from_endpoint(stub.url, timeout=5, policy=FAST)
    with pytest.raises(JudgeAborted, match="HTTP 401"):
        judge.score_many([item(1)])


# ---------------------------------------------------------------------------------------------- bench data

def test_shipped_sample_is_complete_traditional_and_short():
    import opencc

    bench = load_bench()
    assert list(bench) == ["article", "letter", "summary", "zh2en", "en2zh"]
    assert (SAMPLE_BENCH / "essay.jsonl").is_file() and (SAMPLE_BENCH / "README.md").is_file()
    to_tw = opencc.OpenCC("s2tw")
    for task, items in bench.items():
        assert len(items) == 4 and len({it.key for it in items}) == 4
        for it in items:
            assert len(it.prompt) < 300 and len(it.reference) > 10
            for text in (it.prompt, it.reference):
                assert to_tw.convert(text) == text, (it.source, "has Simplified characters")
            if task == "zh2en":
                assert re.fullmatch(r"[A-Za-z0-9 ,.'\-]+", it.reference)


@pytest.mark.parametrize("line, words", [
    ('{"prompt": "p", "reference": "r"}', "essay.jsonl:2: field 'qid'"),
    ('{"qid": "a", "prompt": "p", "reference": "r"}', "essay.jsonl:2: field 'qid': 'a' repeats line 1"),
    ('{"qid": "b", "prompt": " ", "reference": "r"}', "essay.jsonl:2: field 'prompt'"),
    ('{"qid": "b", "prompt": "p"}', "essay.jsonl:2: field 'reference'"),
    ('{"qid": "b", "prompt": "p", "reference": 3}', "essay.jsonl:2: field 'reference'"),
    ('{"qid": "b", "prompt": "p",', "essay.jsonl:2: not valid JSON"),
])
def test_bad_bench_rows_name_file_line_field(tmp_path, line, words):
    (tmp_path / "essay.jsonl").write_text('{"qid": "a", "prompt": "p", "reference": "r"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=re.escape(words)):
        load_bench(tmp_path)


def test_task_names_and_public_rows(tmp_path):
    # The public data: numeric qids and the reference under "resp"; essay and article are one task.
    write_jsonl(tmp_path / "essay.jsonl", [{"qid": 1, "prompt": "p", "resp": "ref", "model": "gold"}])
    bench = load_bench(tmp_path, tasks="essay")
    assert bench["article"][0].reference == "ref" and bench["article"][0].extra == {"model": "gold"}
    with pytest.raises(InputError, match="task letter: no letter.jsonl"):
        load_bench(tmp_path, tasks=["article", "letter"])
    write_jsonl(tmp_path / "article.jsonl", [{"qid": 1, "prompt": "p", "reference": "r"}])
    with pytest.raises(InputError, match="both"):
        load_bench(tmp_path)


# ---------------------------------------------------------------------------------------------- generation

def small_bench(path, n=6):
    path.mkdir()
    write_jsonl(path / "en2zh.jsonl", [{"qid": f"e{i}", "prompt": f"Hello world {i}", "reference": f"你好，世界 {i}",
                                       "source": "unit"} for i in range(n)])
    write_jsonl(path / "essay.jsonl", [{"qid": f"a{i}", "prompt": f"臺灣的夜市 {i}", "reference": f"夜市很有名 {i}"}
                                      for i in range(2)])
    return path


TINY = GenerationParams(max_tokens=6, temperature=0)


class Stop(Exception):
    pass


def stop_after(n):
    def on_progress(stage, task, done, total):
        if stage == "generate" and task == "en2zh" and done >= n:
            raise Stop
    return on_progress


def qids(path):
    return [row["qid"] for _, row in read_resumable(path)]


def test_local_generation_resumes_after_a_crash_and_a_torn_line(tiny_engine, tmp_path):
    data, out = small_bench(tmp_path / "bench", n=4), tmp_path / "out"
    with pytest.raises(Stop):
        generate_responses(tiny_engine, out, data, tasks=["en2zh"], params=TINY, concurrency=2, on_progress=stop_after(2))
    assert qids(resp_path(out, "en2zh")) == ["e0", "e1"]  # the first batch landed before the crash
    with resp_path(out, "en2zh").open("a", encoding="utf-8") as f:
        f.write('{"qid": "e2", "prompt": "Hel')  # a crash mid-write
    reports = generate_responses(tiny_engine, out, data, params=TINY, concurrency=2)
    assert reports["en2zh"]["already_done"] == 2 and reports["en2zh"]["generated"] == 2
    assert reports["article"]["generated"] == 2 and resp_path(out, "article").name == "resp_essay.jsonl"
    assert sorted(qids(resp_path(out, "en2zh"))) == ["e0", "e1", "e2", "e3"]  # each exactly once
    row = read_resumable(resp_path(out, "en2zh"))[0][1]
    assert {"qid", "prompt", "resp", "reference", "model", "finish_reason", "completion_tokens", "elapsed"} <= set(row)
    assert row["source"] == "unit" and row["task"] == "en2zh"
    assert row["system"] == TAIDE_SYSTEM_PROMPT  # "auto", the default everywhere: a Llama 3-format model gets TAIDE's
    assert row["completion_tokens"] <= 6
    assert generate_responses(tiny_engine, out, data, params=TINY)["en2zh"]["generated"] == 0


def test_a_local_judge_too_small_for_the_rubric_records_the_reason(tiny_engine):
    verdict = Judge(tiny_engine, max_tokens=4, policy=FAST).score(item(1))
    assert verdict.score is None and verdict.attempts == 1 and "context window" in verdict.reason


def test_endpoint_generation_resumes_and_uses_the_taide_system_prompt(stub, tmp_path):
    from taide.chat.presets import TAIDE_SYSTEM_PROMPT

    data, out = small_bench(tmp_path / "bench"), tmp_path / "out"
    model = load_endpoint(stub.url, timeout=5)
    with pytest.raises(Stop):
        generate_responses(model, out, data, tasks="en2zh", system_prompt="taide", concurrency=3, on_progress=stop_after(3))
    assert 0 < len(qids(resp_path(out, "en2zh"))) < 6
    generate_responses(model, out, data, tasks="en2zh", system_prompt="taide", concurrency=3)
    answered = qids(resp_path(out, "en2zh"))
    assert sorted(answered) == [f"e{i}" for i in range(6)]
    assert all(b["messages"][0] == {"role": "system", "content": TAIDE_SYSTEM_PROMPT} for b in stub.bodies)
    # The thread pool never sends a prompt twice when nothing failed: 6 answers, 6 requests at most in flight+done.
    assert len(stub.bodies) <= 6 + 3


def test_generation_failures_are_reported_and_retried_on_rerun(stub, tmp_path):
    data, out = small_bench(tmp_path / "bench"), tmp_path / "out"
    stub.plan("Hello world 4", "500")
    model = load_endpoint(stub.url, timeout=5)
    report = generate_responses(model, out, data, tasks="en2zh", retry=RetryPolicy(retries=1, backoff=0.01))
    assert [f["qid"] for f in report["en2zh"]["failed"]] == ["e4"] and "HTTP 500" in report["en2zh"]["failed"][0]["reason"]
    assert "e4" not in qids(resp_path(out, "en2zh"))
    stub.plan("Hello world 4", "ok:1")
    assert generate_responses(model, out, data, tasks="en2zh")["en2zh"]["generated"] == 1


# ---------------------------------------------------------------------------------------------- judging

def test_judging_excludes_failures_from_means_and_resumes_per_qid(stub, tmp_path):
    data, out = small_bench(tmp_path / "bench", n=4), tmp_path / "out"
    model = load_endpoint(stub.url, timeout=5)
    generate_responses(model, out, data, tasks="en2zh")
    # The stub as model answered "...評分：7" to every prompt; the judge sees its own marker via the reference.
    stub.plan("你好，世界 0", "ok:4")
    stub.plan("你好，世界 1", "ok:8")
    stub.plan("你好，世界 2", "garbage")
    stub.plan("你好，世界 3", "500")
    judge = Judge.from_endpoint(stub.url, timeout=5, policy=RetryPolicy(retries=1, parse_retries=1, backoff=0.01),
                                concurrency=2)
    seen = []
    summary = judge_responses(out, judge, on_progress=lambda *a: seen.append(a))
    doc = json.loads(eval_path(out, "en2zh").read_text(encoding="utf-8"))
    assert doc["overall"] == {"score": 12, "avg_score": 6.0, "judged": 2, "failed": 2, "total": 4}
    assert {r["qid"]: r["score"] for r in doc["result"]} == {"e0": 4, "e1": 8}
    reasons = {f["qid"]: f["reason"] for f in doc["failures"]}
    assert "unparsable" in reasons["e2"] and "HTTP 500" in reasons["e3"]
    assert summary["tasks"]["en2zh"] | {"file": None, "failures": None} == {
        "mean": 6.0, "judged": 2, "failed": 2, "total": 4, "complete": True, "file": None, "failures": None}
    assert summary["average"] == 6.0 and seen[0] == ("judge", "en2zh", 0, 4) and seen[-1] == ("judge", "en2zh", 4, 4)
    assert json.loads((out / "bench_summary.json").read_text())["average"] == 6.0

    # Rerun with the judge healthy: only the two failures are asked again.
    stub.plan("你好，世界 2", "ok:10")
    stub.plan("你好，世界 3", "ok:2")
    before = Counter(stub.hits)
    summary = judge_responses(out, judge)
    assert stub.hits - before == Counter({"你好，世界 2": 1, "你好，世界 3": 1})
    assert summary["tasks"]["en2zh"]["mean"] == 6.0 and summary["tasks"]["en2zh"]["judged"] == 4
    assert len(read_resumable(journal_path(out, "en2zh"))) == 6  # 4 verdicts, then 2 replacements


def test_judging_stopped_midway_resumes(stub, tmp_path):
    data, out = small_bench(tmp_path / "bench"), tmp_path / "out"
    generate_responses(load_endpoint(stub.url, timeout=5), out, data, tasks="en2zh")
    judge = Judge.from_endpoint(stub.url, timeout=5, policy=FAST, concurrency=1)

    def stop(stage, task, done, total):
        if stage == "judge" and done >= 3:
            raise Stop

    with pytest.raises(Stop):
        judge_responses(out, judge, on_progress=stop)
    partial = json.loads(eval_path(out, "en2zh").read_text(encoding="utf-8"))
    assert partial["complete"] is False and partial["overall"]["judged"] == 3
    requests = len(stub.bodies)
    summary = judge_responses(out, judge)
    assert len(stub.bodies) - requests == 3 and summary["tasks"]["en2zh"]["judged"] == 6


def test_end_to_end_tiny_model_judged_by_the_stub(tiny_engine, stub, tmp_path):
    data, out = small_bench(tmp_path / "bench", n=3), tmp_path / "out"
    stub.plan("夜市很有名", "ok:3")  # every article item
    judge = Judge.from_endpoint(stub.url, timeout=5, policy=FAST)
    result = run_bench(tiny_engine, out, data, judge=judge, params=TINY)
    assert result["generation"]["en2zh"]["generated"] == 3 and result["generation"]["article"]["generated"] == 2
    assert {t: s["mean"] for t, s in result["tasks"].items()} == {"article": 3.0, "en2zh": 7.0}
    assert result["average"] == 5.0 and result["tasks_scored"] == 2  # the mean of task means, not of items
    assert result["judge"]["model"] == "stub-judge" and result["model"]["engine"] == "transformers"
    assert sorted(p.name for p in out.iterdir()) == [
        "bench_run.json", "bench_summary.json", "eval_en2zh.json", "eval_essay.json", "judge_en2zh.jsonl", "judge_essay.jsonl",
        "resp_en2zh.jsonl", "resp_essay.jsonl"]
    # The tiny model's answers reached the judge verbatim.
    answer = read_resumable(resp_path(out, "en2zh"))[0][1]["resp"]
    assert any(answer in b["messages"][1]["content"] for b in stub.bodies)
    before = len(stub.bodies)
    run_bench(tiny_engine, out, data, judge=judge, params=TINY)  # all done: nothing generated or judged again
    assert len(stub.bodies) == before


def test_shipped_sample_end_to_end_over_endpoints(stub, tmp_path):
    out = tmp_path / "out"
    model = load_endpoint(stub.url, timeout=5)
    judge = Judge.from_endpoint(stub.url, timeout=5, policy=FAST, concurrency=4)
    result = run_bench(model, out, judge=judge)
    assert set(result["tasks"]) == {"article", "letter", "summary", "zh2en", "en2zh"}
    assert all(s["judged"] == 4 and s["failed"] == 0 for s in result["tasks"].values()) and result["average"] == 7.0
    assert (out / "eval_essay.json").is_file() and (out / "resp_zh2en.jsonl").is_file()
