"""Reference metrics (chrF, BLEU, character ROUGE-L, length) and Traditional-Chinese fidelity."""

from __future__ import annotations

import random

import pytest

from taide.errors import TaideError
from taide.eval.fidelity import aggregate_fidelity, detect_language, fidelity, fidelity_many, mainland_terms
from taide.eval.metrics import (
    answer_length, bleu_tokenizer, corpus_bleu, corpus_chrf, lcs_length, mean_rouge_l, reference_scores, rouge_chars,
    rouge_l, sentence_bleu, sentence_chrf,
)

ZH_REF = "行政院今天通過公共運輸發展計畫，預計投入一千二百億元改善偏鄉公車路網。"


# --- chrF and BLEU ---

def test_identical_scores_100():
    assert corpus_bleu([ZH_REF], [ZH_REF]) == pytest.approx(100)
    assert corpus_chrf([ZH_REF], [ZH_REF]) == pytest.approx(100)
    assert sentence_bleu(ZH_REF, ZH_REF) == pytest.approx(100)
    assert sentence_chrf(ZH_REF, ZH_REF) == pytest.approx(100)
    assert sentence_bleu("The cabinet approved the plan.", "The cabinet approved the plan.", "en") == pytest.approx(100)


def test_unrelated_scores_low_and_partial_in_between():
    unrelated = "我喜歡在夜市吃滷肉飯和蚵仔煎。"
    assert sentence_bleu(unrelated, ZH_REF) < 10
    assert sentence_chrf(unrelated, ZH_REF) < 10
    close = "行政院今天通過公共運輸計畫，將投入一千二百億元改善偏鄉公車。"
    assert 30 < sentence_chrf(close, ZH_REF) < 100
    assert 20 < sentence_bleu(close, ZH_REF) < 100


def test_bleu_tokenizes_chinese_by_character():
    # Without the zh tokenizer an unspaced Chinese sentence is one token, and one wrong character zeroes it.
    hyp, ref = "今天天氣很好我們去公園散步", "今天天氣不好我們去公園散步"
    assert bleu_tokenizer("zh-TW") == "zh" and bleu_tokenizer("en") == "13a"
    assert sentence_bleu(hyp, ref, "zh-TW") > 40
    assert sentence_bleu(hyp, ref, "en") < 10


def test_multiple_and_uneven_references():
    hyps = ["今天天氣很好", "我們去公園"]
    refs = [["天氣很差", "今天天氣很好"], "我們去公園"]  # two references for the first, one for the second
    assert corpus_bleu(hyps, refs) == pytest.approx(100)
    assert corpus_chrf(hyps, refs) == pytest.approx(100)
    with pytest.raises(TaideError, match="2 hypotheses but 1 references"):
        corpus_chrf(hyps, refs[:1])


# --- character ROUGE-L ---

def _lcs_dp(a: str, b: str) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def test_lcs_matches_dynamic_programming():
    rng = random.Random(7)
    for _ in range(500):
        a = "".join(rng.choice("天地玄黃ab") for _ in range(rng.randint(0, 40)))
        b = "".join(rng.choice("天地玄黃abc") for _ in range(rng.randint(0, 40)))
        assert lcs_length(a, b) == _lcs_dp(a, b)


def test_rouge_l_known_values():
    # Punctuation and whitespace are ignored: 我愛台灣 vs 台灣我愛, LCS 2 of 4.
    assert rouge_l("我愛台灣。", "台灣，我愛！") == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5})
    # The textbook pair: LCS("ABCBDAB", "BDCABA") = 4; P = 4/7, R = 4/6, F1 = 8/13.
    assert rouge_l("ABCBDAB", "BDCABA") == pytest.approx({"precision": 4 / 7, "recall": 4 / 6, "f1": 8 / 13})
    assert rouge_l("今天天氣很好", "今天 天氣\n不好")["f1"] == pytest.approx(5 / 6)
    assert rouge_l("今天天氣很好", "今天天氣很好")["f1"] == 1.0
    assert rouge_l("", "今天")["f1"] == 0.0
    assert rouge_chars("Ａ，b　C！\n") == "abc"  # NFKC, case-folded, without punctuation and spaces


def test_rouge_l_best_reference_and_mean():
    assert rouge_l("今天天氣很好", ["完全不同", "今天天氣很好"])["f1"] == 1.0
    assert mean_rouge_l(["我愛台灣", "今天天氣很好"], ["台灣我愛", "今天天氣很好"]) == pytest.approx(0.75)


def test_answer_length_and_all_scores():
    assert answer_length("你好， world\n") == 8
    scores = reference_scores([ZH_REF, "今天"], [ZH_REF, "今天"])
    assert scores["n"] == 2 and scores["rouge_l"] == 1.0 and scores["chrf"] == pytest.approx(100)
    assert scores["mean_length"] == (answer_length(ZH_REF) + 2) / 2


# --- fidelity ---

SIMPLIFIED = "我们的软件可以播放视频，数据库里的信息都来自互联网。"
TAIWAN = "我們的軟體可以播放影片，資料庫裡的資訊都來自網際網路。"


def test_simplified_text():
    r = fidelity(SIMPLIFIED)
    assert r["simplified_chars"] >= 8 and r["traditional_chars"] == 0
    assert r["simplified_share"] == pytest.approx(r["simplified_chars"] / r["cjk_chars"])
    assert r["simplified_share"] > 0.3
    assert r["language"] == "zh-CN" and not r["language_ok"]
    found = {t["term"]: t for t in r["mainland_terms"]}
    assert set(found) == {"軟件", "視頻", "數據庫", "信息", "互聯網"}
    assert found["軟件"]["found"] == ["软件"] and found["軟件"]["taiwan"] == "軟體"


def test_taiwan_text_is_clean():
    r = fidelity(TAIWAN)
    assert r["simplified_chars"] == 0 and r["simplified_share"] == 0.0
    assert r["mainland_terms"] == [] and r["mainland_count"] == 0
    assert r["language"] == "zh-TW" and r["language_ok"]


def test_mainland_words_in_traditional_spelling():
    r = fidelity("這個軟件的屏幕和鼠標都很好用，記得用U盤備份，再用打印機打印出來。")
    assert r["simplified_chars"] == 0  # the script is fine; the words are not
    found = {t["term"]: (t["taiwan"], t["count"]) for t in r["mainland_terms"]}
    assert found == {"軟件": ("軟體", 1), "屏幕": ("螢幕", 1), "鼠標": ("滑鼠", 1), "U盤": ("隨身碟", 1),
                     "打印": ("列印", 2)}
    assert r["mainland_count"] == 6


def test_taiwan_senses_are_not_counted():
    taiwan = ("依行政程序法，訴訟程序應符合程序正義。物體的質量守恆，質量為五公斤。他默認了這件事。"
              "土豆麵筋配稀飯。與誠信息息相關。人際網絡很重要。在線上購物。水平儀放在桌上。")
    assert mainland_terms(taiwan) == []


def test_mainland_senses_are_counted():
    text = "這個應用程序由程序員開發，產品質量不錯，請改默認設置；晚餐吃土豆絲，在線購物，生活水平提高。"
    found = {t["term"]: t["found"] for t in mainland_terms(text)}
    assert found == {"程序": ["應用程序", "程序員"], "質量": ["產品質量"], "默認": ["默認設置"], "土豆": ["土豆絲"],
                     "在線": ["在線"], "水平": ["生活水平"]}
    assert {t["term"] for t in mainland_terms("这个应用程序的产品质量不错")} == {"程序", "質量"}


def test_language_detection():
    assert detect_language("請使用 Python 的 pandas 套件讀取 CSV 檔案。") == "zh-TW"
    assert detect_language("The word 台灣 means Taiwan in Chinese.") == "en"
    assert detect_language("日本語のテキストです。東京は大きい。") == "ja"
    assert detect_language("12345 ...") == "unknown"
    assert fidelity("The museum opens at nine.", "en")["language_ok"]
    r = fidelity("博物館九點開門。", "en")
    assert r["language"] == "zh-TW" and not r["language_ok"]
    assert fidelity("", "zh")["language"] == "unknown" and fidelity("", "zh")["expected_language"] == "zh-TW"
    with pytest.raises(TaideError, match="expected language 'fr'"):
        fidelity("bonjour", "fr")


def test_aggregate():
    out = fidelity_many([SIMPLIFIED, TAIWAN, "Hello there."], ["zh-TW", "zh-TW", "en"])
    s = out["summary"]
    assert s["n"] == 3 and len(out["items"]) == 3
    assert s["language_ok_rate"] == pytest.approx(2 / 3)
    assert s["languages"] == {"zh-CN": 1, "zh-TW": 1, "en": 1}
    assert s["answers_with_simplified"] == 1 and s["answers_with_mainland"] == 1
    assert s["mainland_per_answer"] == pytest.approx(5 / 3)
    assert s["mean_simplified_share"] == pytest.approx(out["items"][0]["simplified_share"] / 3)
    assert {t["term"] for t in s["top_mainland_terms"]} == {"軟件", "視頻", "數據庫", "信息", "互聯網"}
    assert aggregate_fidelity([]) == {"n": 0}
