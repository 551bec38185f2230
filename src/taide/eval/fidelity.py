"""Is an answer written the way a Taiwan reader expects? Three checks, each cheap and explainable.

* **Script**: Simplified-only characters as a share of the answer's CJK characters, with the character
  classes of :mod:`taide.data.script` (built from OpenCC; characters both scripts share say nothing).
* **Mainland vocabulary**: words a Taiwan writer would not use, with the Taiwan word (軟件→軟體,
  視頻→影片), from the list in :mod:`taide.data.vocabulary` (which says how words with a Taiwan sense too,
  such as 程序 and 質量, are counted only in their mainland collocations).
* **Language**: CJK characters against Latin letters (a letter weighs a third of a character, roughly
  the information per symbol), so a Chinese answer naming Python or CSV is still Chinese and an English
  one quoting 台灣 is still English; a Chinese answer whose script-bearing characters are mostly
  Simplified is zh-CN, and one with enough kana is ja.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from taide.data.script import KANA, SHARED, SIMPLIFIED, TRADITIONAL, script_counts
from taide.data.vocabulary import mainland_terms
from taide.errors import TaideError

LANGUAGES = ("zh-TW", "en")
LATIN_LETTER_WEIGHT = 1 / 3  # one Latin letter counts as this many CJK characters in the language vote
KANA_SHARE_JA = 0.2  # kana above this share of CJK + kana characters: Japanese


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
