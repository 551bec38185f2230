"""Bench reports from synthetic run directories: the card's table (exact means, the average of the task
means, the published rows), self-judging warnings, reference metrics and fidelity, the PNG, compare."""

from __future__ import annotations

import json

import pytest
from conftest import write_jsonl

from taide.errors import InputError
from taide.eval.report import (
    CARD_TASKS, PUBLISHED, build_report, compare, load_run, score_rows, to_markdown, write_png, write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
OTHER_JUDGE = {"engine": "openai", "model": "gpt-4o", "reference": "https://api.example.com/v1"}

# task (public file name) -> [(answer, reference, score)]
ROWS = {
    "zh2en": [("The Legislative Yuan passed the bill.", "The Legislative Yuan passed the bill.", 6),
              ("Hello there.", "Good morning, everyone.", 8)],
    "en2zh": [("這個軟件很好用。", "這個軟體很好用。", 5), ("今天天氣很好。", "今天天氣很好。", 6)],
    "summary": [("預算增加百分之五。", "今年預算增加百分之五，主要用於教育。", 4)],
    "essay": [("臺灣的夜市很有名。", "臺灣的夜市文化。", 9), ("I like to write in English.", "一篇文章。", 8),
              ("读书使人快乐。", "讀書使人快樂。", 7)],
    "letter": [("親愛的家長：您好。", "親愛的家長您好，敬祝 安康。", 3), ("敬啟者：請準時出席。", "敬啟者：敬請出席。", 4)],
}
# task means 7.0, 5.5, 4.0, 8.0, 3.5 -> average of task means 5.6 (the mean over all ten items would be 6.0)


def make_run(path, model="toy-model", judge=None, rows=ROWS, judged=True, failed=None):
    """A bench output directory as taide.eval.bench writes it."""
    path.mkdir(parents=True, exist_ok=True)
    judge = judge or OTHER_JUDGE
    failed = failed or {}
    for task, items in rows.items():
        write_jsonl(path / f"resp_{task}.jsonl", [
            {"qid": i, "task": task, "model": model, "prompt": f"題目 {i}", "resp": a, "reference": r}
            for i, (a, r, _) in enumerate(items)])
        if not judged:
            continue
        result = [{"qid": i, "question": f"題目 {i}", "resp": a, "reference": r, "score": s}
                  for i, (a, r, s) in enumerate(items) if i not in failed.get(task, ())]
        failures = [{"qid": i, "reason": "unparsable judge reply"} for i in failed.get(task, ())]
        scores = [x["score"] for x in result]
        doc = {"task": task, "overall": {"score": sum(scores), "avg_score": sum(scores) / len(scores) if scores else None,
                                         "judged": len(result), "failed": len(failures), "total": len(items)},
               "result": result, "failures": failures, "judge": judge, "complete": True}
        (path / f"eval_{task}.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return path


def test_the_cards_table_with_exact_means_and_the_average_of_task_means(tmp_path):
    report = build_report(make_run(tmp_path / "run"))
    run = report["runs"][0]
    assert run["name"] == "toy-model" and run["judge"]["model"] == "gpt-4o"
    assert {t: run["tasks"][t]["mean"] for t in CARD_TASKS} == {
        "zh2en": 7.0, "en2zh": 5.5, "summary": 4.0, "article": 8.0, "letter": 3.5}
    assert run["average"] == pytest.approx(5.6) and run["tasks_scored"] == 5
    assert report["warnings"] == []
    rows = score_rows(report)
    assert rows[0] == ["toy-model", "7.000", "5.500", "4.000", "8.000", "3.500", "5.600"]
    # The card's published rows, in the card's column order, labelled as published.
    assert rows[1] == ["Llama3-TAIDE-LX-8B-Chat-Alpha1 (published)", "7.770", "8.280", "8.495", "9.605", "8.950", "8.620"]
    assert rows[2] == ["GPT-3.5 (published)", "8.880", "8.810", "7.450", "9.490", "8.750", "8.676"]
    for p in PUBLISHED:  # the card's averages are the mean of its task means too
        assert sum(p["tasks"].values()) / 5 == pytest.approx(p["average"], abs=5e-4)
    md = to_markdown(report)
    header = next(line for line in md.splitlines() if line.startswith("| model"))
    assert header.index("中翻英") < header.index("英翻中") < header.index("摘要") < header.index("文章") \
        < header.index("信") < header.index("平均")
    assert "| toy-model | 7.000 | 5.500 | 4.000 | 8.000 | 3.500 | 5.600 |" in md
    assert "(published)" in md and "GPT-4" in md and "Warning" not in md


@pytest.mark.parametrize("judge, words", [
    ({"engine": "openai", "model": "toy-model", "reference": "http://127.0.0.1:9000/v1"}, "model under evaluation"),
    ({"engine": "openai", "model": "Toy-Model", "reference": "http://other:8000/v1"}, "model under evaluation"),
    ({"engine": "llamacpp", "model": "smollm2-135m", "reference": "smollm2-135m"}, "embedded demo model"),
])
def test_a_self_or_toy_judge_is_said_to_mean_nothing(tmp_path, judge, words):
    report = build_report(make_run(tmp_path / "run", judge=judge))
    assert any(words in w and "mean nothing" in w for w in report["warnings"])
    md = to_markdown(report)
    assert md.splitlines()[2].startswith("> **Warning:**") and "mean nothing" in md
    assert json.loads(json.dumps(report))["warnings"] == report["warnings"]


def test_same_endpoint_for_model_and_judge_is_self_judging(tmp_path):
    run_dir = make_run(tmp_path / "run", model="served-a",
                       judge={"engine": "openai", "model": "served-b", "reference": "http://127.0.0.1:8000/v1"})
    (run_dir / "bench_run.json").write_text(json.dumps({"model": {"engine": "openai", "model": "served-a",
                                                                  "reference": "http://127.0.0.1:8000/v1/"}}))
    assert any("model under evaluation" in w for w in load_run(run_dir)["warnings"])


def test_reference_metrics_and_fidelity_per_task(tmp_path):
    run = load_run(make_run(tmp_path / "run"))
    m = run["reference_metrics"]
    assert m["zh2en"]["n"] == 2 and 0 < m["zh2en"]["chrf"] < 100 and m["zh2en"]["bleu"] is not None
    # The summary (8 characters without punctuation) is a subsequence of the 16-character reference: P 1, R 1/2.
    assert m["en2zh"]["chrf"] > 50 and m["summary"]["rouge_l"] == pytest.approx(2 / 3)
    assert m["article"]["chrf"] is None and m["article"]["rouge_l"] is None and m["letter"]["mean_length"] > 0
    f = run["fidelity"]
    assert f["zh2en"]["expected_language"] == "en" and f["zh2en"]["wrong_language_share"] == 0
    assert f["en2zh"]["mainland_per_answer"] == 0.5 and f["en2zh"]["top_mainland_terms"][0]["term"] == "軟件"
    # essay: one English answer (wrong language) and one Simplified answer (also wrong: zh-CN) of three
    assert f["article"]["wrong_language_share"] == pytest.approx(2 / 3)
    assert f["article"]["answers_with_simplified"] == 1 and f["article"]["simplified_share_overall"] > 0
    md = to_markdown(build_report(tmp_path / "run"))
    assert "## Judge-free reference metrics" in md and "## Traditional-Chinese fidelity" in md
    assert "軟件→軟體" in md


def test_png_is_written(tmp_path):
    report = compare([make_run(tmp_path / "a"), make_run(tmp_path / "b", model="other", judged=False)])
    png = write_png(report, tmp_path / "chart" / "bars.png")
    data = png.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5000
    paths = write_report(report, tmp_path / "out")
    assert paths["png"].read_bytes().startswith(PNG_MAGIC)
    assert json.loads(paths["json"].read_text())["runs"][0]["average"] == pytest.approx(5.6)
    assert paths["markdown"].read_text().startswith("# taide-bench report")


def test_compare_two_runs(tmp_path):
    better = {t: [(a, r, s + 1) for a, r, s in items] for t, items in ROWS.items()}
    report = compare([make_run(tmp_path / "small", model="small-model"),
                      make_run(tmp_path / "big", model="big-model", rows=better)])
    assert [r["name"] for r in report["runs"]] == ["small-model", "big-model"]
    assert [r["average"] for r in report["runs"]] == [pytest.approx(5.6), pytest.approx(6.6)]
    rows = score_rows(report)
    assert [r[0] for r in rows] == ["small-model", "big-model", "Llama3-TAIDE-LX-8B-Chat-Alpha1 (published)",
                                    "GPT-3.5 (published)"]
    assert rows[1][1:] == ["8.000", "6.500", "5.000", "9.000", "4.500", "6.600"]
    # Two runs of the same model are told apart by their directories.
    same = compare([make_run(tmp_path / "r1"), make_run(tmp_path / "r2")], published=False)
    assert [r["name"] for r in same["runs"]] == ["toy-model (r1)", "toy-model (r2)"] and same["published"] == []


def test_partial_runs_say_so(tmp_path):
    run_dir = make_run(tmp_path / "run", rows={k: ROWS[k] for k in ("zh2en", "letter")}, failed={"letter": [1]})
    report = build_report(run_dir)
    run = report["runs"][0]
    assert run["tasks"]["letter"]["mean"] == 3.0 and run["average"] == pytest.approx(5.0) and run["tasks_scored"] == 2
    assert score_rows(report)[0] == ["toy-model", "7.000", "–", "–", "–", "3.000", "5.000 (2/5)"]
    assert any("Only 2 of the 5 tasks" in w for w in report["warnings"])
    assert any("letter (1/2 judged)" in w and "never counted as 0" in w for w in report["warnings"])


def test_a_generate_only_run_has_metrics_but_no_scores(tmp_path):
    report = build_report(make_run(tmp_path / "run", judged=False))
    run = report["runs"][0]
    assert run["tasks"] == {} and run["average"] is None and run["judge"] is None
    assert score_rows(report)[0] == ["toy-model", "–", "–", "–", "–", "–", "–"]
    assert run["reference_metrics"]["zh2en"]["chrf"] > 0 and "not judged" in to_markdown(report)


def test_not_a_run_directory(tmp_path):
    with pytest.raises(InputError, match="no such run directory"):
        load_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a bench run"):
        compare([tmp_path / "empty"])
