"""The corpus pipeline's text transforms: normalization, layout line breaks, PII (hard cases first)."""

from __future__ import annotations

import gzip
import json
import re

import pytest
from conftest import SHARED

from taide.data.linebreaks import join_layout_breaks
from taide.data.normalize import normalize_text
from taide.data.pii import redact_pii, valid_business_id, valid_luhn, valid_tw_id


# --- normalization ---
def test_fullwidth_letters_and_digits_become_halfwidth_but_chinese_punctuation_stays():
    text, counts = normalize_text("ＴＡＩＤＥ模型在２０２４年發布，效果「很好」；（測試）！？、：")
    assert text == "TAIDE模型在2024年發布，效果「很好」；（測試）！？、："
    assert counts.width == 9


def test_compatibility_ideographs_radicals_and_invisibles():
    # U+F900 (compat 豈), U+2F00 (Kangxi radical 一), zero-width space, a control character, BOM
    text, counts = normalize_text("\ufeff\uf900\u2f00二\u200b三\x07")
    assert text == "豈一二三"
    assert counts.invisible == 3 and counts.compat >= 1


def test_whitespace_is_tidied_but_lines_and_ideographic_space_kept():
    text, _ = normalize_text("  第一行   有  空白 \r\n\r\n\r\n\u3000\u3000第二段\t\t開頭 ")
    assert text == "第一行 有 空白\n\n\u3000\u3000第二段 開頭"



@pytest.mark.parametrize("raw", ["a b", "a  b", "a\tb", "a \tb", "a\t b", "a\u00a0b", "a \u00a0 \t b", "a\t\t\tb",
                                 "x \ny", "x\n y", "x  \n  y", "x\n\ny", "x\n \n \ny", "x\n\n\n\ny", "\u3000x \u3000y"])
def test_whitespace_patterns_change_only_what_they_must(raw):
    """The patterns skip single spaces and bare line breaks (nothing to change there); the text comes out as the
    whole-run rules say: runs of spaces, tabs and no-break spaces are one space, none around a line break, at most
    one blank line."""
    expected = re.sub(r"\n{3,}", "\n\n", re.sub(r" *\n *", "\n", re.sub(r"[ \t\u00a0]+", " ", raw))).strip()
    assert normalize_text(raw)[0] == expected


# --- layout line breaks ---
def test_layout_broken_paragraph_is_joined():
    broken = "中山先生創立中華民國之遺\n教，為鞏固國權，保障民權\n，奠定社會安寧，增進人民\n福利。"
    text, n = join_layout_breaks(broken)
    assert text == "中山先生創立中華民國之遺教，為鞏固國權，保障民權，奠定社會安寧，增進人民福利。" and n == 3


@pytest.mark.parametrize("kept", [
    "本法之主管機關如下：\n一、中央為內政部。\n二、直轄市為直轄市政府。",  # clause end, list items
    "第 1 條\n本法依憲法第一百七十條制定之。",  # article heading
    "行政院今日通過計畫\n\n預計投入新臺幣一千二百億元改善公車路網。",  # paragraph break
    "臺灣夜市文化\n夜市是臺灣人生活中不可或缺的一部分，從北到南都有。",  # short heading line
    "He said hello\nand left.",  # not East Asian text
    "第一句話結束了。\n第二句話開始了，而且很長很長很長。",  # sentence end
])
def test_meaningful_breaks_are_kept(kept):
    assert join_layout_breaks(kept) == (kept, 0)


@pytest.mark.skipif(not (SHARED / "data/tw-laws/laws-zh.jsonl.gz").is_file(), reason="../shared is absent")
def test_law_corpus_structure_survives():
    """Real law texts: article headings and numbered items keep their own lines."""
    with gzip.open(SHARED / "data/tw-laws/laws-zh.jsonl.gz", "rt", encoding="utf-8") as f:
        texts = [json.loads(next(f))["text"] for _ in range(300)]
    joined = checked = 0
    for raw in texts:
        clean = normalize_text(raw)[0]
        text, n = join_layout_breaks(clean)
        joined += n
        headings = [line for line in clean.split("\n") if re.fullmatch(r"第 \S+ 條", line)]
        assert all(h in text.split("\n") for h in headings)
        checked += len(headings)
        items = [line for line in clean.split("\n") if re.match(r"[一二三四五六七八九十]+、", line)]
        assert all(any(line.startswith(item) for line in text.split("\n")) for item in items)  # still start a line
    assert checked > 1000
    assert joined > 0  # the corpus does have layout breaks (the Constitution's preamble, for one)


# --- PII ---
@pytest.mark.parametrize("text, expected, kind", [
    ("請寄至abc.lin@example.com.tw，謝謝", "請寄至<EMAIL>，謝謝", "email"),
    ("聯絡信箱：service@gov.taipei。", "聯絡信箱：<EMAIL>。", "email"),
    ("字號A123456789的人", "字號<ID>的人", "id"),
    ("電話0912-345-678找我", "電話<PHONE>找我", "phone"),
    ("請撥(02)2345-6789", "請撥<PHONE>", "phone"),
    ("總機02-2345-6789轉分機", "總機<PHONE>轉分機", "phone"),
    ("國際+886 912 345 678", "國際<PHONE>", "phone"),
    ("手機0912345678", "手機<PHONE>", "phone"),
    ("統一編號：04595257", "統一編號：<BUSINESS_ID>", "business_id"),
    ("卡號4111-1111-1111-1111", "卡號<CARD>", "card"),
    ("來源IP為140.112.8.116", "來源IP為<IP>", "ip"),
])
def test_pii_glued_to_chinese_is_found(text, expected, kind):
    out, counts = redact_pii(text)
    assert out == expected and counts == {kind: 1}


@pytest.mark.parametrize("text", [
    "字號A123456788的人",  # checksum fails: not an ID
    "統編12345678",  # fails the business-number rule
    "卡號4111-1111-1111-1112",  # fails Luhn
    "民國113年1月2日、新臺幣1,200,000元、第 12 條、20240101",  # dates, amounts, articles
    "ISBN 978-986-123-456-7、版本1.2.3.4.5、999.1.1.1",  # ISBN, version strings, octet > 255
    "依第三百零二條規定，罰金新臺幣三萬元。",
    "89.12.12.衛署藥字第 0890035812 號之相關規定",  # a document number (字號)
])
def test_non_pii_numbers_are_left_alone(text):
    assert redact_pii(text) == (text, {})


def test_checksums():
    assert valid_tw_id("A123456789") and not valid_tw_id("A123456780")
    assert valid_business_id("04595257") and not valid_business_id("04595258")
    assert valid_business_id("10000010")  # total 5: valid under the divisible-by-5 rule of 2023 only
    assert valid_business_id("10000270")  # 7th digit 7: its 10 counts as 0, total 5
    assert not valid_business_id("10000011")
    assert valid_luhn("4111111111111111") and not valid_luhn("4111111111111112")


def test_layout_breaks_next_to_digits_and_latin_join_but_english_and_labels_stay():
    wrapped = ("教育部公布最新大專校院新生註冊率統計，今年有19\n所學校註冊率低於六成，其中有5所已連續兩年未達標準\n"
               "，將被列為專案輔導學校，詳細名單請洽承辦人信箱\nabc@example.com.tw。")
    text, joined = join_layout_breaks(wrapped)
    assert joined == 3 and "\n" not in text and "有19所" in text and "信箱abc@example" in text
    header = "臺灣臺北地方法院民事簡易判決　113年度北簡字第4321號\n原告　陳○華\n被告　張○傑"
    assert join_layout_breaks(header) == (header, 0)
    english = "The museum will extend its opening hours on\nweekends and offer free guided tours."
    assert join_layout_breaks(english) == (english, 0)
