"""Simplified → Taiwan Traditional without invented words: tests/data/s2tw-cases.jsonl holds sentences written for
taide — phrase-boundary traps (少数组织, 国内存款, 电视频道), one-to-many characters (发 干 里 后 台 面 只 系 复)
and Taiwan vocabulary (软件→軟體) — each with its accepted Taiwan forms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taide.data.script import Simplified, WordConverter, _opencc

CASES = [json.loads(line) for line in (Path(__file__).parent / "data/s2tw-cases.jsonl").read_text("utf-8").splitlines()]


def _wrong(convert) -> dict[str, list[str]]:
    wrong: dict[str, list[str]] = {}
    for case in CASES:
        if convert(case["simplified"]) not in case["expected"]:
            wrong.setdefault(case["category"], []).append(case["simplified"])
    return wrong


def test_word_by_word_conversion_invents_no_words_where_opencc_does():
    plain, by_word = _wrong(_opencc("s2twp").convert), _wrong(WordConverter("s2twp").convert)
    # The traps are real: OpenCC alone gets 15 of the 16 boundary cases wrong...
    assert len(plain.get("boundary", [])) >= 15
    # ...and word by word none; what is left are two characters whose form depends on meaning (干 → 乾, 松 → 鬆).
    assert "boundary" not in by_word and "vocabulary" not in by_word
    assert by_word == {"one_to_many": ["衣服干了，他去干活。", "头发松了，松树很高。"]}


@pytest.mark.parametrize("text", ["这个软件\n\n少数组织反对。  第二行 with English words 123",
                                  "“引号”和（括号）都保留，123 与 ABC 也是。"])
def test_conversion_keeps_everything_but_the_characters(text):
    converted = WordConverter().convert(text)
    assert len(converted.splitlines()) == len(text.splitlines()) and "\ue000" not in converted
    assert [c for c in converted if c.isascii()] == [c for c in text if c.isascii()]


def test_the_stage_converts_by_word_unless_told_not_to():
    from taide.data.base import Document

    text = "少数组织反对这项计划，国内存款利率下降，人们都在讨论这个问题。"
    assert "少數組織" in Simplified().process(Document("d", text, "s", {})).text
    assert "少陣列織" in Simplified(by_word=False).process(Document("d", text, "s", {})).text
