"""Simplified-Chinese documents: detect them, then convert them to Taiwan Traditional or drop them.

Conversion is OpenCC's ``s2twp`` (characters, phrases, Taiwan vocabulary: 软件→軟體, 视频→影片) applied word by
word. OpenCC alone matches its phrases across word boundaries and writes words the text never had: 少数组织 (少数
組織, "a few organisations") becomes 少陣列織 through 数组→陣列 ("array"), 国内存款 becomes 國記憶體款 through
内存→記憶體. So the text is first cut into words (jieba), and a phrase is converted only inside one word. A
Taiwan-vocabulary phrase must also be the whole word: 电视频道 is one dictionary word, and the 视频→影片 inside it
is not applied (电视|频道 → 電視頻道), while 软件包 keeps 軟體 (软件|包). On our test set of conversion traps
(tests/data/s2tw-cases.jsonl, BENCHMARKS.md) this takes the errors from 17 of 42 sentences to 2; what remains
are single characters whose Traditional form depends on meaning (衣服干了 → 乾, 头发松了 → 鬆; OpenCC gets the
second right only through 发松, a phrase across the boundary 头发|松).

Detection counts two kinds of CJK character. Simplified-only characters are those OpenCC's t2s leaves
alone but s2t changes (们 这 说); Traditional-only ones are those s2t leaves alone but t2s changes (們 這
說). Characters shared by both scripts (人 大 中) say nothing and are ignored. A document is Simplified
when Simplified-only characters dominate the script-bearing ones, so Traditional text quoting a few
Simplified words, and English text with a little Chinese, are left alone.

Both sets are built once per process from OpenCC over the CJK blocks and stored as a code-point lookup
table, so a document is classified with one vectorized lookup; only documents detected as Simplified
pay for the conversion.
"""

from __future__ import annotations

import difflib
import operator
from functools import lru_cache

import numpy as np

from taide.data.base import DataError, Rejected, Stage

_CJK_BLOCKS = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2A6DF), (0x2A700, 0x2EBEF),
               (0x30000, 0x3134F))

# OpenCC's s2t turns these into another character (准→準, 台→臺, 里→裏, 干→幹) because that is one
# reading of the Simplified form, but each is also an ordinary character of Taiwan Traditional text
# (批准, 台灣, 鄰里, 若干, 皇后, 姓余). Counting them as Simplified evidence would make a short Taiwan
# text about 台北市的里長 look half Simplified.
SHARED_IN_TAIWAN = set(
    "干后里台准秘雇占床群游厘佣征岩峰吃咨伙斗晒皂灶于胜霉岳余采庄朴划恒凶几丑范丰涂咸郁云辟尸"
    "痴唇虱杰么仆栖凄凉熏蝎瓮并荐冲")

OTHER, SHARED, SIMPLIFIED, TRADITIONAL, KANA = 0, 1, 2, 3, 4
_KANA_BLOCKS = ((0x3040, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9D))


@lru_cache(maxsize=1)
def cjk_conversions() -> tuple[list[str], list[str], list[str]]:
    """Every character of the CJK blocks, and what OpenCC's t2s and s2t make of it alone (one character, or
    several where OpenCC expands one)."""
    import opencc

    chars = [chr(c) for lo, hi in _CJK_BLOCKS for c in range(lo, hi + 1)]
    # One call per direction: newlines separate the characters, and no dictionary phrase spans a newline.
    joined = "\n".join(chars)
    to_simp = opencc.OpenCC("t2s").convert(joined).split("\n")
    to_trad = opencc.OpenCC("s2t").convert(joined).split("\n")
    if not len(chars) == len(to_simp) == len(to_trad):
        raise DataError("OpenCC changed the number of lines while building the script tables")
    return chars, to_simp, to_trad


@lru_cache(maxsize=1)
def script_table() -> np.ndarray:
    """A uint8 class (OTHER, SHARED, SIMPLIFIED, TRADITIONAL, KANA) for every code point."""
    table = np.zeros(0x110000, dtype=np.uint8)
    for ch, simp, trad in zip(*cjk_conversions()):
        if simp == ch and trad != ch and ch not in SHARED_IN_TAIWAN:
            cls = SIMPLIFIED
        elif trad == ch and simp != ch:
            cls = TRADITIONAL
        else:
            cls = SHARED
        table[ord(ch)] = cls
    for lo, hi in _KANA_BLOCKS:
        table[lo:hi + 1] = KANA
    return table


def _codes(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def script_counts(text: str) -> np.ndarray:
    """Counts of characters per class, indexed by OTHER, SHARED, SIMPLIFIED, TRADITIONAL, KANA."""
    return np.bincount(script_table()[_codes(text)], minlength=5)


def simplified_share(counts: np.ndarray) -> float:
    """Simplified-only characters as a share of all script-bearing (Simplified- or Traditional-only) ones."""
    marked = int(counts[SIMPLIFIED] + counts[TRADITIONAL])
    return float(counts[SIMPLIFIED]) / marked if marked else 0.0


def changed_chars(before: str, after: str) -> int:
    """How many characters a conversion changed. s2twp keeps line breaks, so lines are compared pairwise;
    equal-length lines (the usual case) by position, others (内存→記憶體) with a diff."""
    a_lines, b_lines = before.split("\n"), after.split("\n")
    if list(map(len, a_lines)) == list(map(len, b_lines)):  # every line aligned: compare all at once
        return int(np.count_nonzero(_codes(before) != _codes(after)))
    if len(a_lines) != len(b_lines):
        a_lines, b_lines = [before], [after]
    changed = 0
    for a, b in zip(a_lines, b_lines):
        if a == b:
            continue
        if len(a) == len(b):
            changed += sum(map(operator.ne, a, b))
        else:
            blocks = difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks()
            same = sum(block.size for block in blocks)
            changed += max(len(a), len(b)) - same
    return changed


def _opencc(config: str):
    import opencc

    return opencc.OpenCC(config)


_SEP = "\ue000"  # a private-use character: no OpenCC phrase contains it, so no match crosses it


class WordConverter:
    """OpenCC's ``config`` (``s2twp``) applied one word at a time (see the module docstring). ``s2tw`` (the same
    without Taiwan vocabulary) tells which words the vocabulary changes; only those need the whole-word check."""

    def __init__(self, config: str = "s2twp"):
        import jieba

        jieba.setLogLevel(60)  # no "Building prefix dict" chatter in every worker
        self._cut, self._cut_fine = jieba.cut, jieba.cut_for_search
        self._full = _opencc(config)
        self._plain = _opencc(config.removesuffix("p")) if config.endswith("p") else self._full

    def convert(self, text: str) -> str:
        return self._full.convert(_SEP.join(map(self._word, self._cut(text)))).replace(_SEP, "")

    @lru_cache(maxsize=200_000)  # noqa: B019 - one converter per worker, kept for the process's life
    def _word(self, word: str) -> str:
        """The word, with separators where a Taiwan phrase would otherwise match only part of it."""
        if len(word) < 3 or self._full is self._plain:
            return word
        converted = self._full.convert(word)
        if converted == self._plain.convert(word):
            return word  # no Taiwan phrase in it
        splits = (self._full.convert(word[:i] + _SEP + word[i:]).replace(_SEP, "") for i in range(1, len(word)))
        if all(split != converted for split in splits):
            return word  # every split loses the phrase: it is the whole word (出租车 → 計程車)
        # Part of the word: convert its dictionary sub-words (电视|频道) instead, longest first.
        parts = sorted({p for p in self._cut_fine(word) if 1 < len(p) < len(word)}, key=len, reverse=True)
        pieces, i = [], 0
        while i < len(word):
            piece = next((p for p in parts if word.startswith(p, i)), word[i])
            pieces.append(piece)
            i += len(piece)
        return _SEP.join(pieces)


class Simplified(Stage):
    """Convert (``action: convert``) or drop (``action: drop``) documents written in Simplified Chinese.

    Options: ``threshold`` — the Simplified-only share of script-bearing characters above which a
    document counts as Simplified (0.5: more Simplified evidence than Traditional); ``min_chars`` and
    ``min_share`` — the least Simplified-only characters, absolute and as a share of all CJK characters,
    so a few stray characters in English or mixed text decide nothing; ``config`` — OpenCC's conversion;
    ``by_word`` — convert word by word (the default; false: OpenCC over the whole text, as before); ``max_kana_share`` — Japanese
    text (kana above this share of its CJK and kana characters) is never touched: its shinjitai (国 会 学)
    look Simplified to OpenCC, and converting them would corrupt it.
    """

    name = "simplified"

    def __init__(self, action: str = "convert", threshold: float = 0.5, min_chars: int = 5,
                 min_share: float = 0.03, max_kana_share: float = 0.05, config: str = "s2twp", by_word: bool = True):
        super().__init__()
        if action not in ("convert", "drop"):
            raise DataError(f"simplified.action: {action!r} is not convert or drop")
        if not 0 < threshold <= 1:
            raise DataError(f"simplified.threshold: {threshold} is not in (0, 1]")
        self.action, self.threshold, self.min_chars, self.min_share = action, threshold, min_chars, min_share
        self.max_kana_share, self.config, self.by_word = max_kana_share, config, by_word
        self._converter = self._make_converter()
        script_table()  # build now, not inside the first document's timing

    def is_simplified(self, text: str) -> tuple[bool, np.ndarray]:
        counts = script_counts(text)
        simp = int(counts[SIMPLIFIED])
        cjk = int(counts[SHARED] + counts[SIMPLIFIED] + counts[TRADITIONAL])
        kana = int(counts[KANA])
        detected = (simp >= self.min_chars and simp >= self.min_share * cjk
                    and simplified_share(counts) >= self.threshold and kana <= self.max_kana_share * (cjk + kana))
        return detected, counts

    def _make_converter(self):
        try:
            return WordConverter(self.config) if self.by_word else _opencc(self.config)
        except Exception as e:  # OpenCC raises its own error types for an unknown configuration
            raise DataError(f"simplified.config: OpenCC cannot load {self.config!r}: {e}") from e

    def __getstate__(self):  # the OpenCC converter does not pickle; a worker makes its own
        return {**self.__dict__, "_converter": None}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._converter = self._make_converter()

    def convert(self, text: str) -> str:
        return self._converter.convert(text)

    def process(self, doc):
        detected, counts = self.is_simplified(doc.text)
        if not detected:
            return doc
        share = simplified_share(counts)
        if self.action == "drop":
            return Rejected("simplified", f"Simplified-only share {share:.2f} >= {self.threshold:g} "
                                          f"({int(counts[SIMPLIFIED])} Simplified-only, "
                                          f"{int(counts[TRADITIONAL])} Traditional-only characters)")
        converted = self.convert(doc.text)
        self.counters["converted"] += 1
        self.counters["chars_changed"] += changed_chars(doc.text, converted)
        doc.text = converted
        return doc
