"""Exact and near-duplicate (MinHash-LSH) deduplication on small hand-made Traditional-Chinese documents."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

from taide.data import DataError, Document
from taide.data.pipeline import build_pipeline
from taide.data.dedup import ExactDedup, MinHashDedup, minhash_signature, shingle_hashes

NIGHT_MARKET = [
    "臺灣的夜市是觀光客必訪的地方。", "從士林夜市到六合夜市，每個地方都有自己的特色小吃。", "攤販多半在傍晚五點以後陸續出攤。",
    "蚵仔煎、大腸包小腸與珍珠奶茶是最常見的選擇。", "許多攤位已經接受行動支付，但現金仍然最方便。", "週末人潮擁擠，建議避開晚上八點的尖峰。",
    "部分夜市設有公共廁所與垃圾分類回收站。", "市政府定期檢查攤販的食品衛生與用火安全。", "夏天午後常有雷陣雨，逛夜市最好帶把傘。",
    "老闆的人情味常讓旅客留下深刻印象。", "近年來也有不少攤位推出素食與清真料理。", "夜市周邊的停車位有限，搭捷運前往較為便利。",
    "有些攤販已經在同一個位置經營了三十多年。", "遊戲攤位如射氣球與撈金魚很受孩子歡迎。", "逛完夜市後，不妨到附近的廟宇走走。",
    "地方政府也把夜市當作推廣觀光的重要據點。", "外國遊客常說臺灣夜市是最有生命力的城市風景。", "收攤時間多半在午夜前後，視人潮而定。",
    "清潔人員會在收攤後整理街道，讓隔天早上恢復原貌。", "每個夜市都有自己的招牌美食，值得慢慢品嚐。",
]
TYPHOON = ("颱風季節通常從七月開始，一直持續到十月。中央氣象署會在颱風接近時發布海上與陸上警報，提醒民眾做好防颱準備。"
           "防颱準備包括檢查門窗、清理排水溝、準備手電筒與飲用水。颱風來襲時，各縣市政府會依據風雨情況宣布是否停班停課。"
           "山區容易發生土石流，居民應配合撤離指示。沿海地區則要注意暴潮與長浪，不要到海邊觀浪。颱風過後，農民往往要面對"
           "農作物損失，政府會啟動農業災害救助。電力公司也會派出大批人員搶修受損的線路，盡快恢復供電。")
TEA = ("臺灣的高山茶以清香甘醇聞名，阿里山、梨山與杉林溪都是著名產區。茶農在清晨採摘一心二葉的嫩芽，經過萎凋、浪菁、殺菁、"
       "揉捻與乾燥等步驟製成烏龍茶。不同的焙火程度會帶來截然不同的風味，輕焙火保留花香，重焙火則有熟果與焦糖的氣息。"
       "泡茶時水溫與浸泡時間都會影響口感，一般建議用攝氏九十五度左右的熱水。品茶不只是喝飲料，更是一種生活態度。"
       "許多茶行也提供試飲，讓客人在購買前先比較各種茶款。")
RAILWAY = ("臺灣高速鐵路自二〇〇七年通車以來，大幅縮短了西部走廊的交通時間。從臺北到左營最快只需要一個半小時左右。"
           "高鐵沿線設有十二個車站，其中部分車站位於市郊，需要轉乘接駁公車或臺鐵區間車。尖峰時段的班次相當密集，"
           "但連續假期前後仍然一票難求。旅客可以透過網路、手機應用程式或便利商店訂票。車廂內禁止飲食的規定只適用於"
           "部分區域，自由座車廂在假日時常常擠滿站著的乘客。")
HEALTH = ("全民健康保險自一九九五年開辦，讓絕大多數國民都能以合理的費用就醫。保險費依照投保薪資計算，由被保險人、"
          "雇主與政府共同分擔。民眾看病時只需要出示健保卡，並支付部分負擔。分級醫療制度鼓勵小病先到診所，大病再到醫學中心。"
          "健保署也推動雲端藥歷，讓醫師可以查詢病人的用藥紀錄，避免重複開藥。面對人口老化，健保財務的永續經營成為重要課題。")


def _doc(i, text):
    return Document(id=f"d{i}", text=text, source="test.jsonl", record={})


def _run(stage, texts, positions=None, reader=None):
    positions = positions or list(range(len(texts)))
    docs = [_doc(p, t) for p, t in zip(positions, texts)]
    return stage.duplicates(((p, d.id, stage.signature(d)) for p, d in zip(positions, docs)), texts=reader)


class Reader:
    """The driver's ``texts``: the texts at the positions asked for, and a record of every call."""

    def __init__(self, texts, positions=None):
        self.texts = dict(zip(positions or range(len(texts)), texts))
        self.calls = []

    def __call__(self, positions):
        self.calls.append(list(positions))
        return {p: self.texts[p] for p in positions}

    @property
    def asked(self):
        return {p for call in self.calls for p in call}


def _jaccard(a, b):
    x, y = set(shingle_hashes(a).tolist()), set(shingle_hashes(b).tolist())
    return len(x & y) / len(x | y)


BASE = "".join(NIGHT_MARKET)
ONE_CHANGED = BASE.replace(NIGHT_MARKET[5], "平日晚上人比較少，適合慢慢逛。")
UNRELATED = [TYPHOON, TEA, RAILWAY, HEALTH]


# --- exact ----------------------------------------------------------------------------------------------

def test_exact_dedup_keeps_the_first_copy():
    stage = ExactDedup()
    removed = _run(stage, [TEA, TYPHOON, TEA, TEA, RAILWAY])
    assert set(removed) == {2, 3}
    assert removed[2].reason == "duplicate" and removed[2].detail == "same text as d0"
    assert stage.counters == {"in": 5, "removed_duplicate": 2}


def test_exact_dedup_is_exact():
    assert _run(ExactDedup(), [TEA, TEA + "。", TEA.replace("，", ",", 1)]) == {}


def test_exact_dedup_needs_no_texts():
    reader = Reader([TEA, TEA])
    assert set(_run(ExactDedup(), [TEA, TEA], reader=reader)) == {1} and reader.calls == []


# --- MinHash: what is found and what is not ---------------------------------------------------------

def test_a_copy_with_one_sentence_changed_is_found():
    assert 0.8 < _jaccard(BASE, ONE_CHANGED) < 0.95
    stage = MinHashDedup()
    removed = _run(stage, [BASE, TYPHOON, ONE_CHANGED])
    assert list(removed) == [2]
    assert removed[2].reason == "near_duplicate"
    assert removed[2].detail.startswith("near-duplicate of d0 (estimated Jaccard 0.")
    estimate = float(removed[2].detail.split("Jaccard ")[1].rstrip(")"))
    assert abs(estimate - _jaccard(BASE, ONE_CHANGED)) < 0.08


def test_unrelated_documents_are_not_merged():
    stage = MinHashDedup()
    assert _run(stage, [BASE, *UNRELATED]) == {}
    assert stage.counters["in"] == 5 and stage.counters["removed_near_duplicate"] == 0
    # the same topic in other words is not a near-duplicate either
    reworded = "".join(NIGHT_MARKET[i] for i in range(0, 20, 2)) + TEA
    assert _jaccard(BASE, reworded) < 0.5 and _run(MinHashDedup(), [BASE, reworded]) == {}


def test_heavier_edits_fall_under_the_threshold():
    half = "".join(NIGHT_MARKET[:12]) + HEALTH  # shares 12 of 20 sentences
    assert _jaccard(BASE, half) < 0.6
    assert _run(MinHashDedup(), [BASE, half]) == {}
    assert set(_run(MinHashDedup(threshold=0.3), [BASE, half])) == {1}  # the threshold is the knob


def test_the_first_in_input_order_is_kept():
    removed = _run(MinHashDedup(), [TEA, ONE_CHANGED, RAILWAY, BASE])
    assert list(removed) == [3] and "near-duplicate of d1" in removed[3].detail


def test_layout_and_whitespace_do_not_matter():
    spaced = "\n".join(" ".join(s) for s in NIGHT_MARKET)  # a space between characters, a line per sentence
    assert np.array_equal(minhash_signature(BASE), minhash_signature(spaced))
    assert list(_run(MinHashDedup(), [BASE, spaced])) == [1]
    assert "estimated Jaccard 1.00" in _run(MinHashDedup(), [BASE, spaced])[1].detail


def test_clusters_and_counters():
    v2 = BASE.replace(NIGHT_MARKET[12], "這條街上的老店已經傳到第三代。")
    v3 = TEA.replace("泡茶時", "沖泡高山茶時")
    stage = MinHashDedup()
    removed = _run(stage, [BASE, TEA, ONE_CHANGED, RAILWAY, v3, v2, HEALTH])
    assert set(removed) == {2, 4, 5}
    assert "of d0" in removed[2].detail and "of d1" in removed[4].detail and "of d0" in removed[5].detail
    c = stage.counters
    assert c["in"] == 7 and c["removed_near_duplicate"] == 3 and c["clusters"] == 2
    assert c["verified_pairs"] >= 3 and c["candidate_pairs"] >= c["verified_pairs"]


def _chain():
    """A–B and B–C are near-duplicates, A–C is not."""
    sentences = NIGHT_MARKET + [s + "。" for s in TEA.split("。")[:6]]
    a = "".join(sentences)
    b = "".join(s[::-1] if i in (1, 5) else s for i, s in enumerate(sentences))  # two sentences reversed
    c = "".join(s[::-1] if i in (1, 5, 9, 13) else s for i, s in enumerate(sentences))  # two more
    assert _jaccard(a, b) > 0.83 and _jaccard(b, c) > 0.83 and _jaccard(a, c) < 0.75
    return [a, b, c]


def test_removals_rest_on_a_direct_comparison_with_a_kept_document():
    """B goes as A's near-duplicate; C is not one of A's (B, its near twin, is gone), so C stays."""
    for reader in (None, Reader(_chain())):
        removed = _run(MinHashDedup(), _chain(), reader=reader)
        assert list(removed) == [1] and "near-duplicate of d0" in removed[1].detail


def test_clustering_is_no_longer_an_option():
    with pytest.raises(DataError, match="clustering"):
        build_pipeline([{"stage": "minhash_dedup", "clustering": "connected"}])


# --- exact checks near the threshold --------------------------------------------------------------

def _reversed(*sentences):
    return "".join(s[::-1] if i in sentences else s for i, s in enumerate(NIGHT_MARKET))


def test_with_texts_a_pair_estimated_above_but_truly_below_the_threshold_is_kept(monkeypatch):
    near, below = _reversed(3), _reversed(5, 12)
    assert 0.8 < _jaccard(BASE, near) < 0.9 and 0.75 < _jaccard(BASE, below) < 0.8
    texts, positions = [BASE, TEA, near, RAILWAY, below], [2, 3, 7, 8, 9]
    # every candidate looks like a near-duplicate to the estimate (inside the margin, so it is checked)
    monkeypatch.setattr(MinHashDedup, "similarity", lambda self, sigs, a, b: np.full(len(a), 0.85))
    assert set(_run(MinHashDedup(), texts, positions)) == {7, 9}  # signatures only: both go

    stage, reader = MinHashDedup(), Reader(texts, positions)
    removed = _run(stage, texts, positions, reader)
    assert list(removed) == [7]
    assert removed[7].detail == f"near-duplicate of d2 (exact Jaccard {_jaccard(BASE, near):.2f})"
    # only the candidates' documents were read, each once (TEA and RAILWAY are nobody's candidate)
    assert reader.asked == {2, 7, 9} and sum(map(len, reader.calls)) == 3
    assert stage.counters["exact_checks"] == stage.counters["candidate_pairs"] == 3
    assert stage.counters["verified_pairs"] == 1


def test_clear_cases_need_no_text():
    spaced = "\n".join(" ".join(s) for s in NIGHT_MARKET)
    stage, reader = MinHashDedup(), Reader([BASE, TEA, spaced, HEALTH])
    removed = _run(stage, [BASE, TEA, spaced, HEALTH], reader=reader)
    assert list(removed) == [2] and "(estimated Jaccard 1.00)" in removed[2].detail
    assert reader.calls == [] and stage.counters["exact_checks"] == 0


def test_near_the_threshold_the_true_jaccard_decides():
    """Estimates within the margin are checked (both ways); further away, the estimate decides."""
    texts = [BASE, _reversed(5, 12), TYPHOON, _reversed(3), _reversed(1, 5, 9, 13)]
    stage = MinHashDedup()
    estimates = stage.similarity(np.stack(_signatures(texts)), np.zeros(4, dtype=int), np.arange(1, 5))
    assert estimates[0] < stage.threshold < estimates[2] < stage.threshold + stage.margin
    assert estimates[3] < stage.threshold - stage.margin
    reader = Reader(texts)
    removed = _run(stage, texts, reader=reader)
    assert list(removed) == [3]
    assert removed[3].detail == f"near-duplicate of d0 (exact Jaccard {_jaccard(BASE, texts[3]):.2f})"
    assert reader.asked == {0, 1, 3}  # not TYPHOON, and not the last one: its estimate is clearly below


def test_texts_are_read_in_bounded_chunks():
    family = [BASE] + [_reversed(i) for i in range(0, 20, 2)] + [_reversed(i, i + 1) for i in range(0, 20, 4)]
    whole, reader = MinHashDedup(), Reader(family)
    expected = _run(whole, family, reader=reader)
    assert len(reader.calls) == 1 and whole.counters["exact_checks"] > 4
    chunked, reader = MinHashDedup(), Reader(family)
    chunked.fetch_pairs = 2
    assert _run(chunked, family, reader=reader) == expected
    assert len(reader.calls) > 1 and max(map(len, reader.calls)) <= 4
    # smaller chunks skip more pairs whose earlier document was removed meanwhile
    assert chunked.counters["exact_checks"] <= whole.counters["exact_checks"]
    assert {k: v for k, v in chunked.counters.items() if k != "exact_checks"} == \
        {k: v for k, v in whole.counters.items() if k != "exact_checks"}


def test_a_text_the_driver_cannot_return_is_an_error():
    with pytest.raises(DataError, match="did not return the text"):
        _run(MinHashDedup(), [BASE, _reversed(3)], reader=lambda positions: {})


# --- short documents -------------------------------------------------------------------------------

def test_short_documents_are_their_own_single_shingle():
    stage = MinHashDedup()
    removed = _run(stage, ["你好", "你好", "謝謝", " 你 好\n", "", "", "你好嗎？", BASE])
    # shorter than 5 characters: a near-duplicate only of the same short text (whitespace aside)
    assert set(removed) == {1, 3, 5}
    assert "near-duplicate of d0" in removed[3].detail and "near-duplicate of d4" in removed[5].detail
    assert minhash_signature("").shape == (512,) and minhash_signature("你").dtype == np.uint8


def test_odd_text_has_a_signature():
    for text in ("\ud800 殘缺的代理字元" * 3, "🀄️🀄️🀄️ emoji and ASCII", "\x00" * 10):
        assert minhash_signature(text).shape == (512,)


def test_a_short_text_inside_a_long_one_is_not_its_duplicate():
    assert _run(MinHashDedup(), [NIGHT_MARKET[0][:4], NIGHT_MARKET[0], NIGHT_MARKET[0][:4] + "嗎"]) == {}


# --- determinism ------------------------------------------------------------------------------------

def _signatures(texts):
    return [minhash_signature(t) for t in texts]


TEXTS = [BASE, TEA, ONE_CHANGED, RAILWAY, TEA.replace("甘醇", "甘甜"), HEALTH, TYPHOON, BASE]


def test_deterministic_across_runs_instances_and_processes(monkeypatch):
    first, second = MinHashDedup(), MinHashDedup()
    assert _run(first, TEXTS) == _run(second, TEXTS) and first.counters == second.counters
    # workers in other processes (another hash seed for str, split into chunks) give the same signatures
    monkeypatch.setenv("PYTHONHASHSEED", "123")
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        chunks = pool.map(_signatures, [TEXTS[:3], TEXTS[3:]])
    here = _signatures(TEXTS)
    assert all(np.array_equal(x, y) for x, y in zip(here, chunks[0] + chunks[1]))


def test_the_decision_depends_only_on_order_not_on_positions_or_batching():
    """Positions may skip (documents removed by earlier stages); items may come as a list or a generator."""
    stage = MinHashDedup()
    sigs = _signatures(TEXTS)
    positions = [0, 3, 4, 10, 11, 12, 40, 41]
    removed = stage.duplicates([(p, f"d{p}", s) for p, s in zip(positions, sigs)])
    dense = MinHashDedup().duplicates((i, f"d{p}", s) for i, (p, s) in enumerate(zip(positions, sigs)))
    assert set(removed) == {4, 11, 41}
    assert [positions[i] for i in dense] == list(removed)
    assert [r.detail for r in dense.values()] == [r.detail for r in removed.values()]


def test_seed_changes_signatures_not_decisions():
    assert not np.array_equal(minhash_signature(BASE, seed=1), minhash_signature(BASE, seed=2))
    assert set(_run(MinHashDedup(seed=2), TEXTS)) == set(_run(MinHashDedup(), TEXTS)) == {2, 4, 7}


def test_the_estimate_tracks_the_true_jaccard():
    for other in (ONE_CHANGED, "".join(NIGHT_MARKET[:15]) + TEA[:80], "".join(NIGHT_MARKET[:10]) + TYPHOON):
        estimate = float(np.mean(minhash_signature(BASE) == minhash_signature(other)))
        assert abs(estimate - _jaccard(BASE, other)) < 0.08


# --- options ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("options", [{"bands": 0}, {"bands": 600}, {"num_perm": 8}, {"threshold": 0},
                                     {"threshold": 1.5}, {"ngram": 0}, {"num_perm": "256"}])
def test_bad_options_are_refused(options):
    with pytest.raises(DataError):
        MinHashDedup(**options)


def test_signatures_of_another_shape_are_refused():
    stage = MinHashDedup(num_perm=128, bands=32)
    with pytest.raises(DataError, match="uint8\\[128\\]"):
        stage.duplicates([(0, "a", minhash_signature(TEA)), (1, "b", minhash_signature(TEA))])


def test_other_sizes_work():
    stage = MinHashDedup(ngram=3, num_perm=64, bands=16, threshold=0.7)
    assert stage.signature(_doc(0, TEA)).shape == (64,)
    assert set(_run(stage, [BASE, TEA, ONE_CHANGED])) == {2}
