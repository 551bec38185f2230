"""Decontamination: evaluation items read from every format, found in training text however it was copied
(re-punctuated, Simplified, options reordered), never on shared boilerplate; the decontaminate stage's actions
and report under every executor; seen and unseen exam items for `taide eval mc --seen`."""

from __future__ import annotations

import json
from pathlib import Path

import opencc
import pytest
from conftest import REPO

from taide.data import CleanConfig, DataError, build_pipeline, run_clean
from taide.data.pipeline import with_decontamination, worker_pipeline
from taide.data.base import Document, Rejected
from taide.data.decontaminate import Decontaminate
from taide.decontam.index import EvalIndex
from taide.decontam.items import read_eval_items
from taide.decontam.keys import content_key, folded
from taide.decontam.report import build_report, seen_items

# Questions written for these tests, in the style of Taiwan's civil-service and school exams.
EXAM = """question,A,B,C,D,answer
依據我國現行制度，全民健康保險的主管機關為下列哪一個中央機關？,衛生福利部,勞動部,內政部,財政部,A
中央氣象署發布海上陸上颱風警報時，表示颱風的暴風圈預計在多少小時內侵襲陸地？,18,24,36,48,A
某生在圖書館借閱書籍逾期未還，依該館規定每日罰款五元，逾期十二日應繳多少元？,50,55,60,65,C
下列敘述何者正確？,甲,乙,丙,丁,A
地方自治團體得依法制定自治條例，下列關於自治條例的敘述，何者最為正確？,經地方立法機關通過,由中央主管機關核定即可施行,不得規定罰鍰,僅能規範行政機關內部事項,A
一年有幾個月？,十,十一,十二,十三,C
"""
NEWS = ("颱風季節將至，各縣市政府提醒民眾清理排水溝、準備手電筒與乾糧，並隨時注意氣象資訊。"
        "農業部也呼籲農民提早採收，減少可能的損失。")
LAW = ("第十條　違反第五條規定者，處新臺幣三萬元以上十五萬元以下罰鍰，並限期改善；屆期未改善者，得按次處罰。\n"
       "第十一條　本法所稱主管機關：在中央為衛生福利部；在直轄市為直轄市政府；在縣（市）為縣（市）政府。")


@pytest.fixture()
def exam(tmp_path) -> Path:
    folder = tmp_path / "exam"
    folder.mkdir()
    (folder / "公民_test.csv").write_text(EXAM, encoding="utf-8")
    return folder


def found_labels(index: EvalIndex, text: str) -> set[str]:
    return {index.items[i].label for h in index.search(text) for i in index.entry_items[h.entry]}


def test_keys_fold_width_script_case_and_punctuation():
    assert folded("１２３ＡＢＣ，下列何者正確？\n(A) 頭髮") == folded("123abc下列何者正确?A頭髮") == folded("123 ABC 下列何者正确 a 头发")
    assert folded("臺灣　裡") == folded("台湾里")  # variants and Simplified fold to one character
    assert content_key(["問", "甲", "乙"], ordered=False) == content_key(["問", "乙", "甲"], ordered=False)
    assert content_key(["問", "甲", "乙"]) != content_key(["問", "乙", "甲"])


def test_every_evaluation_format_is_read(tmp_path):
    (tmp_path / "tmlu.jsonl").write_text(json.dumps({"question": "臺灣的國花是？", "A": "梅花", "B": "蘭花", "C": "菊花",
                                                     "D": "荷花", "answer": "A"}, ensure_ascii=False) + "\n",
                                         encoding="utf-8")
    (tmp_path / "TTQA_mc.json").write_text(json.dumps({"7": {"category": "地理", "question": "玉山位於哪一條山脈？",
                                                             "choices": ["中央山脈", "玉山山脈"], "answer": 1}},
                                                      ensure_ascii=False), encoding="utf-8")
    bench = tmp_path / "taide-bench"
    bench.mkdir()
    (bench / "zh2en.jsonl").write_text(json.dumps({"qid": "zh2en-1", "prompt": "請翻譯成英文。\n\n今天天氣很好。",
                                                   "reference": "The weather is nice today."}) + "\n{bad\n",
                                       encoding="utf-8")
    (tmp_path / "prompts.jsonl").write_text(json.dumps({"id": "p1", "messages": [
        {"role": "system", "content": "你是助理"}, {"role": "user", "content": "高雄有哪些景點？"}]},
        ensure_ascii=False) + "\n", encoding="utf-8")
    paths = [REPO / "tests/data/tmmlu", tmp_path / "tmlu.jsonl", tmp_path / "TTQA_mc.json", bench,
             tmp_path / "prompts.jsonl"]
    got = read_eval_items(paths)
    labels = {i.label for i in got.items}
    assert "tmmlu/臺灣常識/0" in labels and "tmlu/tmlu/1" in labels and "TTQA_mc/TTQA_mc/7" in labels
    assert {"taide-bench/zh2en/zh2en-1:prompt", "taide-bench/zh2en/zh2en-1:reference", "prompts/prompts/p1:messages[1]"
            } <= labels
    assert not any("你是助理" in i.parts[0] for i in got.items)  # system prompts are not evaluation items
    ttqa = next(i for i in got.items if i.benchmark == "TTQA_mc")
    assert ttqa.parts == ("玉山位於哪一條山脈？", "中央山脈", "玉山山脈") and ttqa.field == "question"
    assert any("zh2en.jsonl:2" in p for p in got.problems)  # a bad row is named, not skipped silently
    with pytest.raises(Exception, match="no such file"):
        read_eval_items([tmp_path / "missing"])
    # One folder holding several benchmarks: each named after its subfolder.
    together = read_eval_items([tmp_path])
    assert {i.benchmark for i in together.items} == {"taide-bench", tmp_path.name}


def test_copies_are_found_in_any_form_and_boilerplate_is_not(exam):
    index = EvalIndex(read_eval_items([exam]).items)
    q1, q2, q3, q5 = "exam/公民/2", "exam/公民/3", "exam/公民/4", "exam/公民/6"  # (qid: the CSV line)
    verbatim = (NEWS + "\n考前複習：\n5.地方自治團體得依法制定自治條例，下列關於自治條例的敘述，何者最為正確？(A)經地方立法機關通過"
                "(B)由中央主管機關核定即可施行(C)不得規定罰鍰(D)僅能規範行政機關內部事項\n答案：A\n" + LAW)
    repunctuated = (NEWS + "依據 我國現行制度,全民健康保險的\n主管機關為下列哪一個中央機關?\nA. 衛生福利部\nB、勞動部\nC) 內政部\n"
                    "（D）財政部")
    simplified = opencc.OpenCC("t2s").convert("中央氣象署發布海上陸上颱風警報時，表示颱風的暴風圈預計在多少小時內侵襲陸地？"
                                              "(A)18(B)24(C)36(D)48")
    reordered = "某生在圖書館借閱書籍逾期未還，依該館規定每日罰款五元，逾期十二日應繳多少元？(A)60(B)65(C)50(D)55"
    assert found_labels(index, verbatim) == {q5}
    assert found_labels(index, repunctuated) == {q1}
    assert found_labels(index, simplified) == {q2}
    assert found_labels(index, reordered) == {q3}
    # Shared boilerplate, law's stock phrases, the same topic in other words, another exam's question: nothing.
    boilerplate = ("下列敘述何者正確？(A)甲(B)乙(C)丙(D)丁\n" + LAW + "\n全民健康保險的主管機關是衛生福利部，颱風警報由中央氣象署發布。"
                   "\n3.依據我國現行制度，下列何者為地方自治團體？(A)直轄市(B)里(C)鄰(D)社區發展協會")
    assert found_labels(index, boilerplate) == set()
    assert found_labels(index, NEWS + LAW) == set()


def test_short_and_boilerplate_items_are_reported_not_searched(exam):
    index = EvalIndex(read_eval_items([exam]).items)
    short = {index.items[i].qid for e in range(index.entries) if not index.checkable[e] for i in index.entry_items[e]}
    assert short == {"5", "7"}  # 下列敘述何者正確？ 甲乙丙丁, and 一年有幾個月？
    assert found_labels(index, "一年有幾個月？(A)十(B)十一(C)十二(D)十三") == set()
    report = build_report(index, [])
    assert report["benchmarks"]["exam"]["too_short"] == 2 and report["benchmarks"]["exam"]["checked"] == 4


def test_an_ngram_many_items_share_weighs_little(tmp_path):
    # Ten questions that share a long opening: a text with that opening alone holds none of them; with one
    # question's own words it holds that one.
    rows = ["question,A,B,C,D,answer"] + [
        f"依據中華民國憲法增修條文及相關法律之規定，關於第{n}項的敘述，下列何者正確？,{n}甲案通過,{n}乙案否決,{n}丙案撤回,{n}丁案擱置,A"
        for n in "一二三四五六七八九十"]
    (tmp_path / "law_test.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    index = EvalIndex(read_eval_items([tmp_path / "law_test.csv"]).items)
    assert found_labels(index, "依據中華民國憲法增修條文及相關法律之規定，關於本項的敘述，下列何者正確？") == set()
    one = "依據中華民國憲法增修條文及相關法律之規定，關於第三項的敘述，下列何者正確？(A)三甲案通過(B)三乙案否決(C)三丙案撤回(D)三丁案擱置"
    assert found_labels(index, one) == {"law/law/4"}


def _corpus(path: Path) -> Path:
    leak = ("本週讀書會整理了公民科的考古題，供同學練習。\n5.地方自治團體得依法制定自治條例，下列關於自治條例的敘述，何者最為正確？\n"
            "(A)經地方立法機關通過\n(B)由中央主管機關核定即可施行\n(C)不得規定罰鍰\n(D)僅能規範行政機關內部事項\n答案：A\n"
            "讀書會下次將討論地方制度法與各縣市的實際案例，歡迎有興趣的同學一起參加，地點在圖書館三樓的討論室。")
    records = [{"id": "news", "text": NEWS}, {"id": "law", "text": LAW}, {"id": "leak", "text": leak, "url": "u"},
               {"id": "tiny", "text": "依據我國現行制度，全民健康保險的主管機關為下列哪一個中央機關？(A)衛生福利部(B)勞動部(C)內政部(D)財政部"}]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.mark.parametrize("action", ["drop", "cut", "tag"])
def test_stage_actions_and_report(tmp_path, exam, action):
    src = _corpus(tmp_path / "corpus.jsonl")
    report = run_clean(CleanConfig([src], tmp_path / "out", decontaminate=[exam], decontaminate_action=action,
                                   workers=1)).report
    kept = {r["id"]: r for r in map(json.loads, (tmp_path / "out/part-00000.jsonl").read_text().splitlines())}
    found = json.loads((tmp_path / "out/decontamination.json").read_text())
    assert report["balanced"] and report["decontamination"]["documents"] == 2
    assert {f["item"] for f in found["found"]} == {"exam/公民/2", "exam/公民/6"}
    assert found["benchmarks"]["exam"]["found"] == 2 and found["benchmarks"]["exam"]["subjects"]["公民"]["documents"] == 2
    leak = next(f for f in found["found"] if f["item"] == "exam/公民/6")
    assert leak["documents"][0]["id"] == "leak" and "地方自治團體" in leak["documents"][0]["text"][0]
    assert "exam/公民/6" in (tmp_path / "out/decontamination.md").read_text()
    if action == "drop":
        assert set(kept) == {"news", "law"} and report["removed"] == {"decontaminate:contaminated": 2}
        assert found["removed"] == 2 and found["seen_keys"] == []
    elif action == "cut":
        assert set(kept) == {"news", "law", "leak"}  # "tiny" is nothing but the question: too little left
        text = kept["leak"]["text"]
        assert "自治條例" not in text and "財政部" not in text and "中央主管機關" not in text and "答案" not in text
        assert text.startswith("本週讀書會") and text.endswith("討論室。") and kept["leak"]["url"] == "u"
        assert found["cut"] == 1 and found["removed"] == 1 and report["stages"]["decontaminate"]["chars_cut"] > 80
    else:
        assert set(kept) == {"news", "law", "leak", "tiny"}
        assert kept["leak"]["contamination"] == [{"item": "exam/公民/6", "share": 1.0}]
        assert len(found["seen_keys"]) == 2 and found["tagged"] == 2
    assert "decontamination.md" in (tmp_path / "out/stats.md").read_text()


def test_workers_and_ray_get_the_drivers_index(tmp_path, exam, monkeypatch):
    src = _corpus(tmp_path / "corpus.jsonl")
    local = run_clean(CleanConfig([src], tmp_path / "one", decontaminate=[exam], workers=1, batch_docs=2)).report
    two = run_clean(CleanConfig([src], tmp_path / "two", decontaminate=[exam], workers=2, batch_docs=2)).report
    assert two == local and (tmp_path / "two/part-00000.jsonl").read_text() == (tmp_path / "one/part-00000.jsonl").read_text()
    # What workers build their stages from carries the driver's index: they never read the evaluation files.
    config = with_decontamination(None, [exam])
    stages = build_pipeline(config)
    import taide.decontam.index

    monkeypatch.setattr(taide.decontam.index, "read_eval_items", lambda paths: pytest.fail("a worker read them"))
    shipped = [s for s in build_pipeline(worker_pipeline(config, stages)) if isinstance(s, Decontaminate)]
    assert [s.index.digest for s in shipped] == [s.index.digest for s in stages if isinstance(s, Decontaminate)]
    monkeypatch.undo()
    pytest.importorskip("ray")
    on_ray = run_clean(CleanConfig([src], tmp_path / "ray", decontaminate=[exam], executor="ray", workers=2,
                                   batch_docs=2)).report
    assert on_ray == local and (tmp_path / "ray/part-00000.jsonl").read_text() == (tmp_path / "one/part-00000.jsonl").read_text()


def test_a_yaml_entry_tunes_the_stage_and_the_flag_names_the_data(tmp_path, exam):
    config = tmp_path / "pipeline.yaml"
    config.write_text("pipeline:\n  - normalize\n  - {stage: decontaminate, action: tag, enabled: false}\n"
                      "  - exact_dedup\n", encoding="utf-8")
    report = run_clean(CleanConfig([_corpus(tmp_path / "c.jsonl")], tmp_path / "out", config=config,
                                   decontaminate=[exam], workers=1)).report
    assert list(report["stages"]) == ["normalize", "decontaminate", "exact_dedup"]
    assert report["decontamination"]["tagged"] == 2 and report["kept"] == 4


def test_changed_evaluation_data_is_not_mixed_with_an_earlier_run(tmp_path, exam):
    src = _corpus(tmp_path / "corpus.jsonl")
    first = run_clean(CleanConfig([src], tmp_path / "out", decontaminate=[exam], workers=1)).report
    assert run_clean(CleanConfig([src], tmp_path / "out", decontaminate=[exam],
                                 workers=1)).report == first  # the same job: done
    with (exam / "公民_test.csv").open("a", encoding="utf-8") as f:
        f.write("臺灣本島最南端的岬角是哪一個，也是著名的觀光景點？,鵝鑾鼻,富貴角,三貂角,貓鼻頭,A\n")
    with pytest.raises(DataError, match="other inputs or another configuration"):
        run_clean(CleanConfig([src], tmp_path / "out", decontaminate=[exam], workers=1))


def test_bad_settings_are_named(tmp_path, exam):
    with pytest.raises(DataError, match="action: 'erase'"):
        Decontaminate(benchmarks=[str(exam)], action="erase")
    with pytest.raises(DataError, match="give benchmarks"):
        Decontaminate()
    with pytest.raises(DataError, match="threshold"):
        Decontaminate(benchmarks=[str(exam)], threshold=2)
    with pytest.raises(DataError, match="without decontaminate"):
        run_clean(CleanConfig([_corpus(tmp_path / "c.jsonl")], tmp_path / "out", decontaminate_action="cut"))


def test_stage_alone_drops_with_a_detail(exam):
    stage = Decontaminate(benchmarks=[str(exam)])
    result = stage.process(Document("d", "一、" + "依據我國現行制度，全民健康保險的主管機關為下列哪一個中央機關？衛生福利部、勞動部、內政部、財政部",
                                    "s", {}))
    assert isinstance(result, Rejected) and result.reason == "contaminated"
    assert result.detail.startswith("exam/公民/2 (100% of its n-grams)")
    assert stage.findings[0]["id"] == "d" and stage.counters["found_exam"] == 1


def test_seen_items_from_a_report_and_from_a_corpus(tmp_path, exam):
    src = _corpus(tmp_path / "corpus.jsonl")
    run_clean(CleanConfig([src], tmp_path / "tagged", decontaminate=[exam], decontaminate_action="tag",
                          workers=1))
    run_clean(CleanConfig([src], tmp_path / "dropped", decontaminate=[exam], workers=1))
    items = read_eval_items([exam]).items
    by_qid = {i.qid: i.key for i in items}
    status, sources = seen_items(items, [tmp_path / "tagged"])  # the report in a cleaned corpus's folder
    assert {q for q, k in by_qid.items() if status[k] == "seen"} == {"2", "6"}
    assert {q for q, k in by_qid.items() if status[k] == "unchecked"} == {"5", "7"}  # too short to check
    assert sources[0]["kind"] == "report"
    status, _ = seen_items(items, [tmp_path / "dropped"])  # dropped: checked, and not in the training data
    assert {status[k] for q, k in by_qid.items() if q in ("2", "6")} == {"unseen"}
    status, sources = seen_items(items, [src])  # a corpus is searched
    assert {q for q, k in by_qid.items() if status[k] == "seen"} == {"2", "6"}
    assert sources[0] == {"source": str(src), "kind": "corpus", "documents": 4, "unreadable": 0,
                          "unreadable_examples": [], "checked": 4, "seen": 2}


def test_cli_reports_what_it_found_and_names_bad_input(tmp_path, exam):
    import os
    import subprocess
    import sys

    taide = str(Path(sys.executable).with_name("taide"))
    env = {**os.environ, "COLUMNS": "200"}
    src = _corpus(tmp_path / "corpus.jsonl")
    result = subprocess.run([taide, "data", "clean", str(src), "-o", str(tmp_path / "out"), "--decontaminate", str(exam),
                             "--decontaminate-action", "tag"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "decontamination: exam: 4 of 6 items checked, 2 too short to check; 2 found in 2 documents" in result.stdout
    assert "2 documents held evaluation items: 0 removed, 0 cut, 2 tagged" in result.stdout
    for args, message in ((["--decontaminate", str(tmp_path / "nope")], "nope: no such file or directory"),
                          (["--decontaminate", str(exam), "--decontaminate-action", "erase"], "'erase' is not one of")):
        bad = subprocess.run([taide, "data", "clean", str(src), "-o", str(tmp_path / "bad"), *args], capture_output=True,
                             text=True, env=env, timeout=120)
        assert bad.returncode == 1 and message in bad.stderr, bad.stderr
