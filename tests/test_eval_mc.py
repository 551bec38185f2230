"""Multiple-choice exams: reading TMMLU and question/A/B/C/D/answer files, prompts, answer extraction,
scoring by log-likelihood on real engines and by generation, and the accuracy arithmetic."""

from __future__ import annotations

import json

import pytest
from conftest import SHARED

from taide.errors import InputError, TaideError
from taide.eval.mc import (
    MCItem, extract_choice, load_mc, mc_messages, read_mc_file, run_mc, split_options, summarize_mc, write_records,
)

TMMLU = SHARED / "data" / "tmmlu"

TMMLU_CSV = """,content.A,content.Q
0,B,"1.下列何者是臺灣最高的山？
(A) 雪山 (B) 玉山
(C) 合歡山 (D) 阿里山
"
1,D,"2. 依題意，選手 (A) 與選手 (B) 誰先到？
（A）甲　（B）乙　（C）丙　（D）以上(A)(B)皆非"
2,C,"一、請說明臺灣的產業結構。（25 分）"
3,E,"3.何者正確？(A) 一 (B) 二 (C) 三 (D) 四"
4,A,"4.哪一個是
水果？
A. 蘋果
B. 石頭
C. 鐵釘
D. 玻璃"
"""

CHOICE_CSV = "\ufeffquestion,A,B,C,D,answer\n" \
             "臺灣的首都是？,臺北,東京,巴黎,倫敦,A\n" \
             "\"一加一等於\n幾？\",1,2,3,4,(B)\n" \
             "空白選項,甲,,丙,丁,C\n" \
             "欄位太少,甲,乙,C\n" \
             "答案錯誤,甲,乙,丙,丁,Z\n"


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- reading ---

def test_read_tmmlu_format(tmp_path):
    path = write(tmp_path / "subjects" / "地理" / "data.csv", TMMLU_CSV)
    data = read_mc_file(path)
    items = data.subjects["地理"]
    assert [i.qid for i in items] == ["0", "1", "4"]
    first = items[0]
    assert first.question == "下列何者是臺灣最高的山？"  # numbering stripped
    assert first.options == {"A": "雪山", "B": "玉山", "C": "合歡山", "D": "阿里山"}
    assert first.answer == "B" and first.source == f"{path}:2"
    # Full-width markers; the stem's "(A)"/"(B)" and option D's "(A)(B)" do not confuse the split.
    assert items[1].question == "依題意，選手 (A) 與選手 (B) 誰先到？"
    assert items[1].options == {"A": "甲", "B": "乙", "C": "丙", "D": "以上(A)(B)皆非"}
    # Lines starting "A." as a fallback; the hard wrap inside the Chinese stem is undone.
    assert items[2].question == "哪一個是水果？" and items[2].options["D"] == "玻璃"
    essay = "no options (A)…(D) found in the question (an essay question?)"
    assert data.bad_rows == [
        {"source": f"{path}:8", "subject": "地理", "reason": essay},
        {"source": f"{path}:9", "subject": "地理", "reason": "answer 'E' is not one of A, B, C, D"},
    ]


def test_read_question_abcd_answer_format(tmp_path):
    path = write(tmp_path / "geography_test.csv", CHOICE_CSV)
    data = read_mc_file(path)
    items = data.subjects["geography"]  # the split suffix is not part of the subject
    assert [(i.question, i.answer) for i in items] == [("臺灣的首都是？", "A"), ("一加一等於幾？", "B")]
    assert items[1].options == {"A": "1", "B": "2", "C": "3", "D": "4"} and items[1].source == f"{path}:3"
    assert [(b["source"].rsplit(":", 1)[1], b["reason"]) for b in data.bad_rows] == [
        ("5", "options A, B, C, D: need at least A and B, none empty"),
        ("6", "4 fields, the header has 6"),
        ("7", "answer 'Z' is not one of A, B, C, D"),
    ]


def test_read_jsonl_and_directories(tmp_path):
    write(tmp_path / "exam" / "law_dev.jsonl", json.dumps(
        {"id": "q1", "question": "憲法第一條？", "A": "民有", "B": "民治", "C": "民享", "D": "以上皆是", "answer": "D"},
        ensure_ascii=False) + "\nnot json\n")
    write(tmp_path / "exam" / "subjects" / "地理" / "data.csv", TMMLU_CSV)
    data = load_mc(tmp_path / "exam")
    assert sorted(data.subjects) == ["law", "地理"]
    assert data.subjects["law"][0].qid == "q1" and data.n_items == 4
    assert any(b["source"].endswith("law_dev.jsonl:2") and "not valid JSON" in b["reason"] for b in data.bad_rows)
    with pytest.raises(InputError, match="no such file"):
        load_mc(tmp_path / "missing")
    with pytest.raises(InputError, match="unknown exam format"):
        load_mc(write(tmp_path / "other.csv", "a,b\n1,2\n"))


@pytest.mark.skipif(not (TMMLU / "subjects" / "邏輯推理" / "data.csv").is_file(), reason="../shared/data/tmmlu is absent")
def test_real_tmmlu_subject():
    data = read_mc_file(TMMLU / "subjects" / "邏輯推理" / "data.csv")
    items = data.subjects["邏輯推理"]
    assert len(items) == 15 and not data.bad_rows
    assert all(list(i.options) == ["A", "B", "C", "D"] and i.answer in "ABCD" and i.question for i in items)
    assert items[0].options == {"A": "B", "B": "A", "C": "D", "D": "E"} and items[0].answer == "A"
    assert items[0].question.startswith("在一場挑戰武嶺自行車賽中") and "\n" not in items[0].question


def test_split_options():
    assert split_options("甲乙丙") is None
    assert split_options("問題 (A) 一 (B) 二 (C) 三") is None  # no (D)
    stem, options = split_options("問題？(A) 一 (B) 二 (C) (B)的兩倍 (D) 四")
    assert stem == "問題？" and options["C"] == "(B)的兩倍"


# --- prompts ---

def item(qid="1", answer="A", subject="地理", question="臺灣最高的山是？", options=None):
    options = options or {"A": "玉山", "B": "雪山", "C": "合歡山", "D": "阿里山"}
    return MCItem(subject, qid, question, options, answer, f"x.csv:{qid}")


def test_prompt_messages():
    zero = mc_messages(item(), system="你是助理。")
    assert [m["role"] for m in zero] == ["system", "user"]
    assert zero[1]["content"] == ("以下是「地理」的單選題，請選出正確答案，只回答選項代號（A、B、C、D）。\n\n"
                                  "臺灣最高的山是？\n(A) 玉山\n(B) 雪山\n(C) 合歡山\n(D) 阿里山\n答案：")
    shots = mc_messages(item(), [item("e1", "B", question="例題一？"), item("e2", "C", question="例題二？")])
    assert [m["role"] for m in shots] == ["user", "assistant", "user", "assistant", "user"]
    assert shots[0]["content"].startswith("以下是「地理」") and "例題一？" in shots[0]["content"]
    assert [shots[1]["content"], shots[3]["content"]] == ["B", "C"]
    assert shots[4]["content"].startswith("臺灣最高的山是？")


# --- answer extraction ---

OPTIONS = {"A": "玉山", "B": "雪山", "C": "合歡山", "D": "以上皆非"}


@pytest.mark.parametrize("text, letter", [
    ("答案：B", "B"), ("「答案：C」", "C"), ("答案是 (D)。", "D"), ("正確答案為：A", "A"), ("答案：Ｃ", "C"),
    ("(B)", "B"), ("（C）雪山是錯的", "C"), ("B.", "B"), ("B、雪山", "B"), ("D", "D"), ("選B", "B"),
    ("我選擇 (A) 玉山", "A"), ("The answer is D.", "D"), ("我認為是合歡山。", "C"), ("應該是 玉 山", "A"),
])
def test_extract_choice(text, letter):
    assert extract_choice(text, OPTIONS) == letter


@pytest.mark.parametrize("text", [
    "我不知道", "", "(A) 玉山 (B) 雪山", "the answer is a mountain", "Because it is tall", "玉山和雪山都很高",
])
def test_extract_choice_failures(text):
    assert extract_choice(text, OPTIONS) is None


# --- scoring ---

class FakeChatEngine:
    """An endpoint-like engine: it only answers by chat, with canned replies keyed by question text."""

    name = "fake"

    def __init__(self, replies):
        self.replies, self.calls = replies, []

    def chat(self, messages, params=None):
        self.calls.append((messages, params))
        question = messages[-1]["content"]
        text = next(reply for key, reply in self.replies.items() if key in question)

        class Completion:
            pass

        c = Completion()
        c.text = text
        return c


def test_generation_path_with_a_chat_only_engine(tmp_path):
    write(tmp_path / "地理_test.csv", "question,A,B,C,D,answer\n例題？,甲,乙,丙,丁,A\n一？,甲,乙,丙,丁,B\n"
                                     "二？,甲,乙,丙,丁,C\n三？,甲,乙,丙,丁,D\n四？,甲,乙,丙,丁,A\n")
    write(tmp_path / "歷史.csv", "question,A,B,C,D,answer\n例題二？,甲,乙,丙,丁,A\n五？,子時,丑時,寅時,卯時,B\n")
    engine = FakeChatEngine({"一？": "答案：B", "二？": "(C)", "三？": "我不知道", "四？": "答案：C", "五？": "是丑時。"})
    seen = []
    result = run_mc(engine, [tmp_path], shots=1, progress=lambda done, total: seen.append((done, total)))
    assert result["method"] == "generate" and result["shots"] == 1
    params = engine.calls[0][1]
    assert params.temperature == 0 and params.max_tokens <= 32
    assert len(engine.calls) == 5  # the example of each subject is shown, never asked
    assert "例題？" in engine.calls[0][0][0]["content"] and engine.calls[0][0][1] == {"role": "assistant", "content": "A"}
    by_qid = {(r["subject"], r["qid"]): r for r in result["records"]}
    assert [(r["gold"], r["predicted"], r["correct"]) for r in result["records"] if r["subject"] == "地理"] == [
        ("B", "B", True), ("C", "C", True), ("D", None, False), ("A", "C", False)]
    assert by_qid[("地理", "5")]["extraction_failed"] and by_qid[("地理", "5")]["response"] == "我不知道"
    assert result["subjects"]["地理"] == {"n": 4, "correct": 2, "accuracy": 0.5, "chance": 0.25,
                                        "extraction_failures": 1, "errors": 0}
    assert result["subjects"]["歷史"]["accuracy"] == 1.0  # by the option's text
    overall = result["overall"]
    assert (overall["n"], overall["correct"], overall["extraction_failures"]) == (5, 3, 1)
    assert overall["micro_accuracy"] == pytest.approx(3 / 5) and overall["macro_accuracy"] == pytest.approx(0.75)
    assert seen[-1] == (5, 5)
    limited = run_mc(engine, [tmp_path], shots=1, limit_per_subject=2, method="generate")
    assert [r["qid"] for r in limited["records"]] == ["3", "4", "3"]  # qid: the line, for this format
    out = write_records(result["records"], tmp_path / "out" / "records.jsonl")
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 5 and lines[0]["subject"] == "地理"
    with pytest.raises(TaideError, match="method 'vote'"):
        run_mc(engine, [tmp_path], method="vote")


def test_accuracy_arithmetic():
    records = [{"subject": "甲", "gold": "A", "predicted": p, "correct": p == "A", "n_options": 4} for p in "AABC"]
    records += [{"subject": "乙", "gold": "B", "predicted": p, "correct": p == "B", "n_options": 5} for p in "BA"]
    records.append({"subject": "乙", "gold": "B", "predicted": None, "correct": False, "n_options": 5,
                    "extraction_failed": True})
    s = summarize_mc(records)
    assert s["subjects"]["甲"] == {"n": 4, "correct": 2, "accuracy": 0.5, "chance": 0.25, "extraction_failures": 0,
                                  "errors": 0}
    assert s["subjects"]["乙"]["accuracy"] == pytest.approx(1 / 3) and s["subjects"]["乙"]["chance"] == pytest.approx(0.2)
    o = s["overall"]
    assert (o["n"], o["correct"], o["extraction_failures"], o["subjects"]) == (7, 3, 1, 2)
    assert o["micro_accuracy"] == pytest.approx(3 / 7)
    assert o["macro_accuracy"] == pytest.approx((0.5 + 1 / 3) / 2)
    assert o["micro_chance"] == pytest.approx((4 * 0.25 + 3 * 0.2) / 7)
    assert o["macro_chance"] == pytest.approx((0.25 + 0.2) / 2)


SHORT = "question,A,B,C,D,answer\n臺灣最高的山是？,玉山,雪山,合歡山,阿里山,A\n"


def _check_argmax(engine, tmp_path, system):
    """run_mc's prediction is the argmax of the engine's own log-likelihoods of the letters."""
    path = write(tmp_path / "地理.csv", SHORT)
    only = load_mc(path).subjects["地理"][0]
    scores = engine.loglikelihood(mc_messages(only, system=system), ["A", "B", "C", "D"])
    expected = "ABCD"[scores.index(max(scores))]
    result = run_mc(engine, path, system=system)
    record = result["records"][0]
    assert result["method"] == "loglikelihood" and record["method"] == "loglikelihood"
    assert record["predicted"] == expected
    assert list(record["scores"].values()) == pytest.approx(scores, abs=1e-4)
    assert result["overall"]["correct"] == (expected == "A")
    return result


def test_loglikelihood_path_on_the_tiny_engine(tiny_engine, tmp_path):
    _check_argmax(tiny_engine, tmp_path, system="")
    # A question too long for the 256-token window is an error counted wrong, not a crash.
    long_question = "臺灣最高的山是哪一座山呢？" * 40
    write(tmp_path / "long" / "地理.csv", SHORT + f"{long_question},玉山,雪山,合歡山,阿里山,A\n")
    result = run_mc(tiny_engine, tmp_path / "long", system="")
    assert [("error" in r, r["predicted"] is None) for r in result["records"]] == [(False, False), (True, True)]
    assert result["overall"]["errors"] == 1 and result["overall"]["n"] == 2


@pytest.mark.slow
def test_loglikelihood_path_on_the_embedded_model(smol_llamacpp, tmp_path):
    # The prompt is kept short (well under 128 tokens), so the four letters are scored in one batch.
    result = _check_argmax(smol_llamacpp, tmp_path, system=None)
    assert result["subjects"]["地理"]["chance"] == 0.25


# --- the leaderboard's exams as published, and shuffled runs ---
# Small fixtures written for taide in each exam's published layout (the exams themselves are not shipped).

TTQA_JSON = {
    "1": {"category": "地理", "question": "臺灣最高的山是哪一座？", "choices": ["雪山", "玉山", "合歡山", "阿里山"], "answer": 1},
    "2": {"category": "歷史", "question": "臺灣第一條鐵路由誰主持興建？", "choices": ["劉銘傳", "沈葆楨", "丘逢甲", "鄭成功"],
          "answer": 0},
    "3": {"category": "地理", "question": "日月潭位於哪一縣？", "choices": ["南投縣", "嘉義縣", "臺中市", "花蓮縣"], "answer": 0},
    "4": {"category": "歷史", "question": "壞的答案", "choices": ["甲", "乙"], "answer": 5},
}
TMMLU_PLUS_CSV = "question,A,B,C,D,answer\n" + "".join(
    f"第{i}題：臺灣本島最長的河流？,濁水溪,高屏溪,淡水河,{'曾文溪' if i % 2 else '大甲溪'},A\n" for i in range(4))
TMLU_JSONL = "".join(json.dumps({"id": f"t{i}", "question": f"「{w}」的注音是？", "A": "ㄅ", "B": "ㄆ", "C": "ㄇ",
                                  "D": "ㄈ", "answer": "ABCD"[i]}, ensure_ascii=False) + "\n"
                     for i, w in enumerate("八爬媽發"))
TW_LEGAL_CSV = "question,A,B,C,D,answer\n民法規定成年年齡為幾歲？,十六歲,十八歲,二十歲,二十一歲,B\n" \
               "刑法之最重本刑為？,無期徒刑,死刑,有期徒刑三十年,罰金,B\n"


def _exams(tmp_path):
    write(tmp_path / "ttqa" / "TTQA_mc.json", json.dumps(TTQA_JSON, ensure_ascii=False))
    write(tmp_path / "tmmluplus" / "geography_of_taiwan_test.csv", TMMLU_PLUS_CSV)
    write(tmp_path / "tmlu" / "chinese_test.jsonl", TMLU_JSONL)
    write(tmp_path / "twlegal" / "tw_legal_test.csv", TW_LEGAL_CSV)
    return tmp_path


def test_each_published_exam_format_is_read(tmp_path):
    data = load_mc(_exams(tmp_path))
    assert sorted(set(data.formats.values())) == ["TTQA (JSON)", "question, A–D, answer (CSV)",
                                                  "question, A–D, answer (JSONL)"]
    ttqa = data.subjects["TTQA_mc"]
    assert [(i.qid, i.category, i.answer, i.options["B"]) for i in ttqa] == [
        ("1", "地理", "B", "玉山"), ("2", "歷史", "A", "沈葆楨"), ("3", "地理", "A", "嘉義縣")]
    assert data.bad_rows[0]["source"].endswith("TTQA_mc.json:id 4") and "index" in data.bad_rows[0]["reason"]
    assert {i.category for i in data.subjects["geography_of_taiwan"]} == {"Social Sciences"}  # TMMLU+'s category
    assert len(data.subjects["chinese"]) == 4 and len(data.subjects["tw_legal"]) == 2


class OracleOrLetter(FakeChatEngine):
    """Answers with the letter of the right option's text (an oracle), or always ``letter``."""

    def __init__(self, gold_texts: dict[str, str], letter: str | None = None):
        super().__init__({})
        self.gold_texts, self.letter = gold_texts, letter

    def chat(self, messages, params=None):
        question = messages[-1]["content"]
        text = self.letter or next(f"答案：{line[1]}" for line in question.splitlines()
                                   if line.startswith("(") and line[4:] in self.gold_texts.values()
                                   and any(q in question for q, g in self.gold_texts.items() if g == line[4:]))

        class Completion:
            pass

        c = Completion()
        c.text = text
        return c


def test_shuffled_runs_report_mean_and_spread_and_follow_the_gold_option(tmp_path):
    data = load_mc(_exams(tmp_path))
    gold = {i.question: i.options[i.answer] for items in data.subjects.values() for i in items}
    oracle = run_mc(OracleOrLetter(gold), data, runs=3, method="generate")
    assert oracle["spread"]["overall"] == {"mean": 1.0, "std": 0.0, "runs": [1.0, 1.0, 1.0]}
    assert oracle["overall"]["n"] == 3 * data.n_items and {r["run"] for r in oracle["records"]} == {0, 1, 2}

    always_a = run_mc(OracleOrLetter(gold, "答案：A"), data, runs=3, method="generate", seed=7)
    runs = always_a["spread"]["overall"]["runs"]
    assert len(set(runs)) > 1 and always_a["spread"]["overall"]["std"] > 0  # option order moves a letter-picker
    assert always_a["letters"]["top"] == "A" and always_a["letters"]["top_share"] == 1.0
    again = run_mc(OracleOrLetter(gold, "答案：A"), data, runs=3, method="generate", seed=7)
    assert again["spread"] == always_a["spread"]  # the shuffles are seeded
    one = run_mc(OracleOrLetter(gold, "答案：A"), data, method="generate")
    assert "spread" not in one and [r["gold"] for r in one["records"]][:3] == ["B", "A", "A"]  # runs=1: as published
    assert set(always_a["spread"]["categories"]) == {"Social Sciences", "地理", "歷史"}


def test_seen_and_unseen_items_are_scored_apart(tmp_path):
    """`taide eval mc --seen CORPUS`: items the training corpus holds are scored apart from those it does not, and
    from those too short to check; the records say which is which."""
    from taide.eval.commands import EvalMCConfig, run_eval_mc

    write(tmp_path / "exam" / "公民_test.csv", "question,A,B,C,D,answer\n"
          "依據我國現行制度，全民健康保險的主管機關為下列哪一個中央機關？,衛生福利部,勞動部,內政部,財政部,A\n"
          "地方自治團體得依法制定自治條例，下列關於自治條例的敘述，何者最為正確？,經地方立法機關通過,由中央主管機關核定即可施行,"
          "不得規定罰鍰,僅能規範行政機關內部事項,A\n"
          "一年有幾個月？,十,十一,十二,十三,C\n")
    corpus = write(tmp_path / "corpus.jsonl", json.dumps({"id": "leak", "text": "考古題：依據我國現行制度,全民健康保險的主管機關"
                                                          "為下列哪一個中央機關?(A)財政部(B)衛生福利部(C)勞動部(D)內政部"},
                                                         ensure_ascii=False) + "\n")

    class Engine(FakeChatEngine):
        def describe(self):
            return {"model": "fake"}

    engine = Engine({"全民健康保險": "答案：A", "自治條例": "答案：B", "一年": "答案：C"})
    result = run_eval_mc(EvalMCConfig("fake", [tmp_path / "exam"], tmp_path / "out", seen=[corpus]), engine=engine)
    groups = result.summary["seen"]["groups"]
    assert (groups["seen"]["items"], groups["seen"]["overall"]["micro_accuracy"]) == (1, 1.0)
    assert (groups["unseen"]["items"], groups["unseen"]["overall"]["micro_accuracy"]) == (1, 0.0)
    assert groups["unchecked"]["items"] == 1 and result.summary["overall"]["n"] == 3
    assert result.summary["seen"]["sources"][0]["kind"] == "corpus"
    records = [json.loads(line) for line in result.files["records"].read_text(encoding="utf-8").splitlines()]
    assert [r["seen"] for r in records] == ["seen", "unseen", "unchecked"]
    assert json.loads(result.files["summary"].read_text())["seen"]["groups"]["unseen"]["overall"]["n"] == 1
