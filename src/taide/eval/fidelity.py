"""Is an answer written the way a Taiwan reader expects? Three checks, each cheap and explainable.

* **Script**: Simplified-only characters as a share of the answer's CJK characters, with the character
  classes of :mod:`taide.data.script` (built from OpenCC; characters both scripts share say nothing).
* **Mainland vocabulary**: words a Taiwan writer would not use, with the Taiwan word (軟件→軟體,
  視頻→影片), found in Traditional or Simplified spelling. Words that are also ordinary Taiwan usage in
  another sense are counted only inside collocations that are clearly mainland, never bare:

  - 程序 is "procedure" in Taiwan (法律程序, 訴訟程序, 作業程序, 程序正義); it counts only as a
    computer program (應用程序, 程序員, 小程序, 編寫程序, 程序設計 ...).
  - 質量 is physics "mass" in Taiwan (質量守恆, 物體的質量); it counts only as "quality" (產品質量,
    高質量, 質量管理, 服務質量 ...).
  - 默認 is "tacitly admit" in Taiwan (他默認了); it counts only as a software default (默認設置,
    默認值, 系統默認 ...).
  - 土豆 is "peanut" in Taiwan (土豆麵筋); only 土豆絲/土豆泥/土豆片 (potato dishes) count.
  - 水平 is "horizontal" in Taiwan; only "level" collocations (生活水平, 技術水平 ...) count.
  - 信息 inside 誠信息息相關 (誠信 + 息息相關), 網絡 in 人際網絡/社會網絡/關係網絡 (used in
    Taiwan) and 在線 in 在線上 (在 + 線上) are not counted.

  The list favours precision: a term it reports is mainland usage; it does not try to find them all.
* **Language**: CJK characters against Latin letters (a letter weighs a third of a character, roughly
  the information per symbol), so a Chinese answer naming Python or CSV is still Chinese and an English
  one quoting 台灣 is still English; a Chinese answer whose script-bearing characters are mostly
  Simplified is zh-CN, and one with enough kana is ja.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from taide.data.script import KANA, SHARED, SIMPLIFIED, TRADITIONAL, script_counts
from taide.errors import TaideError

LANGUAGES = ("zh-TW", "en")
LATIN_LETTER_WEIGHT = 1 / 3  # one Latin letter counts as this many CJK characters in the language vote
KANA_SHARE_JA = 0.2  # kana above this share of CJK + kana characters: Japanese


@dataclass(frozen=True)
class MainlandTerm:
    term: str  # the mainland word in Traditional spelling
    taiwan: str  # what a Taiwan writer says
    only_in: tuple[str, ...] = ()  # if given, the term counts only inside these collocations
    not_in: tuple[str, ...] = ()  # Taiwan phrases containing the term, where it is not counted


def _t(term, taiwan, only_in="", not_in=""):
    return MainlandTerm(term, taiwan, tuple(only_in.split()), tuple(not_in.split()))


# Written for this project. Each mainland word is listed once, in Traditional spelling; the Simplified
# spelling is derived with OpenCC.
MAINLAND_TERMS: tuple[MainlandTerm, ...] = (
    # computing and electronics
    _t("軟件", "軟體"), _t("硬件", "硬體"), _t("網絡", "網路", not_in="人際網絡 社會網絡 關係網絡"),
    _t("互聯網", "網際網路"), _t("信息", "資訊", not_in="信息息"), _t("視頻", "影片"), _t("音頻", "音訊"),
    _t("數據庫", "資料庫"), _t("屏幕", "螢幕"), _t("顯示屏", "螢幕"), _t("觸摸屏", "觸控螢幕"),
    _t("鼠標", "滑鼠"), _t("光標", "游標"), _t("文件夾", "資料夾"), _t("文檔", "文件"), _t("打印", "列印"),
    _t("復印", "影印"), _t("內存", "記憶體"), _t("硬盤", "硬碟"), _t("光盤", "光碟"), _t("U盤", "隨身碟"),
    _t("服務器", "伺服器"), _t("操作系統", "作業系統"), _t("芯片", "晶片"), _t("筆記本電腦", "筆記型電腦"),
    _t("數碼", "數位"), _t("寬帶", "寬頻"), _t("攝像頭", "鏡頭"), _t("鏈接", "連結"), _t("激活", "啟用"),
    _t("源代碼", "原始碼"), _t("編程", "寫程式"), _t("雲計算", "雲端運算"), _t("郵箱", "信箱"),
    _t("賬號", "帳號"), _t("賬戶", "帳戶"), _t("短信", "簡訊"), _t("博客", "部落格"), _t("帖子", "貼文"),
    _t("高清", "高畫質"), _t("充電寶", "行動電源"), _t("在線", "線上", not_in="在線上"),
    _t("人工智能", "人工智慧"), _t("智能手機", "智慧型手機"),
    _t("移動電話", "行動電話"), _t("移動設備", "行動裝置"), _t("移動支付", "行動支付"),
    _t("程序", "程式", only_in="應用程序 小程序 程序員 計算機程序 電腦程序 源程序 主程序 安裝程序 "
                            "編寫程序 寫程序 程序設計 程序代碼 程序語言 運行程序 程序運行 程序崩潰"),
    _t("默認", "預設", only_in="默認設置 默認值 默認為 默認選項 默認情況下 系統默認 默認的設置 默認瀏覽器"),
    # everyday life
    _t("質量", "品質", only_in="高質量 低質量 產品質量 服務質量 教學質量 教育質量 生活質量 空氣質量 睡眠質量 "
                            "工程質量 質量管理 質量問題 質量保證 質量監督 質量控制 質量好 質量很好 質量很高 質量差 質量不錯 "
                            "提高質量 提升質量 保證質量"),
    _t("水平", "水準", only_in="生活水平 技術水平 專業水平 英語水平 語言水平 收入水平 教育水平 醫療水平 "
                            "水平很高 提高水平"),
    _t("土豆", "馬鈴薯", only_in="土豆絲 土豆泥 土豆片"),
    _t("出租車", "計程車"), _t("打車", "叫車"), _t("公交車", "公車"), _t("激光", "雷射"),
    _t("方便麵", "泡麵"), _t("西紅柿", "番茄"), _t("酸奶", "優格"), _t("奶酪", "起司"), _t("盒飯", "便當"),
    _t("衛生間", "洗手間"), _t("性價比", "CP值"), _t("靠譜", "可靠"), _t("反饋", "回饋"), _t("早上好", "早安"),
)


@lru_cache(maxsize=1)
def _term_patterns() -> list[tuple[MainlandTerm, re.Pattern, re.Pattern | None]]:
    """Per term: a pattern for where it counts (the term, or its collocations) in both spellings, and one
    for the Taiwan phrases that overrule it."""
    import opencc

    t2s, s2t = opencc.OpenCC("t2s"), opencc.OpenCC("s2t")

    def spellings(phrase: str) -> set[str]:
        simp = t2s.convert(phrase)
        return {phrase, simp, s2t.convert(simp)}

    def alternation(phrases) -> re.Pattern:
        forms = sorted({s for p in phrases for s in spellings(p)}, key=lambda s: (-len(s), s))
        return re.compile("|".join(map(re.escape, forms)), re.IGNORECASE)

    return [(t, alternation(t.only_in or [t.term]), alternation(t.not_in) if t.not_in else None)
            for t in MAINLAND_TERMS]


def mainland_terms(text: str) -> list[dict]:
    """Mainland words in ``text``: ``{"term", "taiwan", "found", "count"}`` per term, in order of first
    appearance (``found``: the spellings as written). Overlapping finds keep the longest."""
    hits = []  # (start, end, term, as written)
    for term, pattern, exclude in _term_patterns():
        blocked = [m.span() for m in exclude.finditer(text)] if exclude else []
        for m in pattern.finditer(text):
            if not any(s <= m.start() and m.end() <= e for s, e in blocked):
                hits.append((m.start(), m.end(), term, m.group()))
    hits.sort(key=lambda h: (h[0], -(h[1] - h[0])))
    kept, end = [], -1
    for hit in hits:
        if hit[0] >= end:
            kept.append(hit)
            end = hit[1]
    found: dict[str, dict] = {}
    for _, _, term, written in kept:
        entry = found.setdefault(term.term, {"term": term.term, "taiwan": term.taiwan, "found": [], "count": 0})
        entry["count"] += 1
        if written not in entry["found"]:
            entry["found"].append(written)
    return list(found.values())


def _latin_letters(text: str) -> int:
    return sum(1 for ch in text if ch.isalpha() and (ch.isascii() or "\u00c0" <= ch <= "\u024f"))


def normalize_language(language: str) -> str:
    code = language.strip().replace("_", "-").lower()
    if code in ("zh", "zh-tw", "zh-hant", "zh-hant-tw"):
        return "zh-TW"
    if code == "en" or code.startswith("en-"):
        return "en"
    raise TaideError(f"expected language {language!r}: choose one of {', '.join(LANGUAGES)}")


def detect_language(text: str, counts=None) -> str:
    """``zh-TW``, ``zh-CN``, ``ja``, ``en`` or ``unknown`` (no letters at all)."""
    counts = script_counts(text) if counts is None else counts
    cjk = int(counts[SHARED] + counts[SIMPLIFIED] + counts[TRADITIONAL])
    kana = int(counts[KANA])
    latin = _latin_letters(text)
    if cjk + kana == 0 and latin == 0:
        return "unknown"
    if cjk + kana < latin * LATIN_LETTER_WEIGHT:
        return "en"
    if kana > KANA_SHARE_JA * (cjk + kana):
        return "ja"
    return "zh-CN" if counts[SIMPLIFIED] > counts[TRADITIONAL] else "zh-TW"


DEGENERATE_RUN, DEGENERATE_REPEATS = 10, 4
_DEGENERATE = re.compile(rf"(.{{{DEGENERATE_RUN},}}?)\1{{{DEGENERATE_REPEATS - 1},}}", re.S)


def degenerate(text: str) -> bool:
    """Whether the answer loops: some run of at least 10 characters repeated 4 times in a row (40 「與」 in a row
    count too, as a run of ten repeated four times)."""
    return _DEGENERATE.search(text) is not None


def fidelity(text: str, expected_language: str = "zh-TW") -> dict:
    """How Taiwan-Traditional an answer is, and whether it is in the requested language.

    Returns ``cjk_chars``, ``simplified_chars``, ``traditional_chars``, ``simplified_share`` (Simplified-only
    characters / CJK characters), ``mainland_terms`` (see :func:`mainland_terms`) and ``mainland_count``,
    ``latin_letters``, ``language`` (detected), ``expected_language``, ``language_ok`` and ``degenerate``.
    """
    expected = normalize_language(expected_language)
    counts = script_counts(text)
    cjk = int(counts[SHARED] + counts[SIMPLIFIED] + counts[TRADITIONAL])
    terms = mainland_terms(text)
    detected = detect_language(text, counts)
    return {
        "cjk_chars": cjk, "simplified_chars": int(counts[SIMPLIFIED]), "traditional_chars": int(counts[TRADITIONAL]),
        "simplified_share": int(counts[SIMPLIFIED]) / cjk if cjk else 0.0,
        "mainland_terms": terms, "mainland_count": sum(t["count"] for t in terms),
        "latin_letters": _latin_letters(text),
        "language": detected, "expected_language": expected, "language_ok": detected == expected,
        "degenerate": degenerate(text),
    }


def aggregate_fidelity(results: Iterable[dict]) -> dict:
    """Summary over many :func:`fidelity` results: answers, language accuracy and detected languages,
    mean Simplified share, answers with any Simplified-only character, Simplified share over all CJK
    characters, mainland words per answer, answers with any, and the most frequent words."""
    results = list(results)
    n = len(results)
    if not n:
        return {"n": 0}
    cjk = sum(r["cjk_chars"] for r in results)
    terms: Counter = Counter()
    taiwan = {}
    for r in results:
        for t in r["mainland_terms"]:
            terms[t["term"]] += t["count"]
            taiwan[t["term"]] = t["taiwan"]
    return {
        "n": n,
        "language_ok_rate": sum(r["language_ok"] for r in results) / n,
        "languages": dict(Counter(r["language"] for r in results).most_common()),
        "mean_simplified_share": sum(r["simplified_share"] for r in results) / n,
        "simplified_share_overall": sum(r["simplified_chars"] for r in results) / cjk if cjk else 0.0,
        "answers_with_simplified": sum(r["simplified_chars"] > 0 for r in results),
        "mainland_per_answer": sum(r["mainland_count"] for r in results) / n,
        "answers_with_mainland": sum(r["mainland_count"] > 0 for r in results),
        "degenerate_rate": sum(r.get("degenerate", False) for r in results) / n,
        "top_mainland_terms": [{"term": t, "taiwan": taiwan[t], "count": c} for t, c in terms.most_common(20)],
    }


def fidelity_many(texts: Iterable[str], expected_language: str | Iterable[str] = "zh-TW") -> dict:
    """:func:`fidelity` of each answer (one expected language for all, or one per answer), plus the summary:
    ``{"items": [...], "summary": {...}}``."""
    texts = list(texts)
    langs = [expected_language] * len(texts) if isinstance(expected_language, str) else list(expected_language)
    if len(langs) != len(texts):
        raise TaideError(f"{len(texts)} answers but {len(langs)} expected languages")
    items = [fidelity(t, lang) for t, lang in zip(texts, langs)]
    return {"items": items, "summary": aggregate_fidelity(items)}
