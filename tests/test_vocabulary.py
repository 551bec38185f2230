"""The vocabulary signal: mainland and Hong Kong words per document, in stats; tag or drop on request; quotes and
the English side never count."""

from __future__ import annotations

from pathlib import Path

import pytest

from taide.data.base import DataError, Document, Rejected
from taide.data.vocabulary import Vocabulary

MAINLAND = "這個軟件的視頻功能很好，數據庫放在服務器上，用戶反饋說質量很高。"
HONG_KONG = "我哋搭的士去食芝士蛋糕，佢哋已經埋單咗。"
TAIWAN = "這個軟體的影片功能很好，資料庫放在伺服器上，法律程序與物體的質量都照舊。"


def _doc(text):
    return Document("d", text, "s", {"text": text})


def test_counts_by_region_and_leaves_taiwan_wording_alone():
    stage = Vocabulary()
    for text in (MAINLAND, HONG_KONG, TAIWAN):
        assert stage.process(_doc(text)).text == text  # count: stats only
    assert stage.counters["documents_with_terms"] == 2
    assert stage.counters["mainland_terms"] >= 5 and stage.counters["hongkong_terms"] >= 4


def test_quotes_and_english_do_not_count():
    stage = Vocabulary(action="tag")
    quoted = stage.process(_doc("報導引述對方的說法：「我們的軟件和視頻都在服務器上」，並附上英文 software video。"))
    assert "vocabulary_terms" not in quoted.record and not stage.counters


def test_tag_and_drop():
    tagged = Vocabulary(action="tag").process(_doc(MAINLAND))
    assert tagged.record["vocabulary_terms"] >= 5
    dropped = Vocabulary(action="drop").process(_doc(MAINLAND))
    assert isinstance(dropped, Rejected) and "軟件→軟體" in dropped.detail
    assert not isinstance(Vocabulary(action="drop", min_terms=20).process(_doc(MAINLAND)), Rejected)
    with pytest.raises(DataError, match="vocabulary.action"):
        Vocabulary(action="filter")


@pytest.mark.skipif(not (Path(__file__).resolve().parents[2] / "shared/data/tw-laws/laws-zh.jsonl.gz").is_file(),
                    reason="../shared is absent")
def test_taiwan_laws_are_taiwan_wording():
    """Taiwan's own laws (11,547) are the false-positive check: few have any listed word, none is dropped."""
    import gzip
    import json

    path = Path(__file__).resolve().parents[2] / "shared/data/tw-laws/laws-zh.jsonl.gz"
    stage = Vocabulary(action="drop")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        results = [stage.process(_doc(json.loads(line)["text"])) for line in f if line.strip()]
    assert not any(isinstance(r, Rejected) for r in results)
    assert stage.counters["documents_with_terms"] < 0.005 * len(results)
