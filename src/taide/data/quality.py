"""Quality heuristics in the spirit of Gopher's rules, measured in characters so they work for Chinese,
where word counts mean nothing: repeated lines and paragraphs, one n-gram dominating the text, and
documents made mostly of symbols or digits, or with few letters at all.

Every share is over visible characters: not whitespace, and not the box-drawing frames and fill-in
blanks of tables and forms, which Taiwan statutes (fee tables, staff tables) are full of; table rows are
layout, not repeated lines, and their frames are not symbol spam. Letters are CJK ideographs plus the
letters of any script
(Latin, kana, Hangul), so English documents, which belong in the corpus, pass the letter check just as
Chinese ones do; nothing here asks for Chinese in particular.

Text in Latin script (English) is also checked for keyword stuffing ("vpn taiwan free, cheap vpn taiwan,
fast vpn asia, cheap vpn taiwan, ..."): the share of its word characters in phrases — runs of at least
two words between punctuation or line breaks, table rows left out as layout — that repeat an earlier
phrase. Prose rarely says the same phrase twice; statutes do ("alteration of items recorded on a
license", in every item of a list), so the limit sits well above what English law reaches (at most 0.48
in the translated Taiwan statutes, against 0.86 for a keyword list). Character n-grams cannot see this
in English: a word is several characters, and a list of ten phrases has no dominant 4-gram.

Characters are classified with one code-point lookup table (numpy), and n-grams are counted by sorting
packed integer keys, so a document is measured without a Python loop over its characters.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from functools import lru_cache

import numpy as np

from taide.data.base import Rejected, Stage

SPACE, CJK, LETTER, DIGIT, PUNCT, SYMBOL, RULE, OTHER = range(8)
# Box drawing and block elements: the frames of tables (fee tables and staff tables in Taiwan law are
# drawn with them). They are layout, not the symbol spam the symbol check is after.
_RULE_BLOCKS = ((0x2500, 0x259F),)
# Runs of these draw the blanks of a form (姓名：＿＿＿＿, ˍˍˍˍ in older statutes): layout as well.
_FILL = "_\uff3f\u02cd\u2017\ufe4d\ufe4e\ufe4f"
_HAN_BLOCKS = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x323AF))


@lru_cache(maxsize=1)
def char_classes() -> np.ndarray:
    """A uint8 class for every code point (SPACE, CJK, LETTER, DIGIT, PUNCT, SYMBOL, RULE, OTHER)."""
    table = np.full(0x110000, OTHER, dtype=np.uint8)
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        cat = unicodedata.category(ch)
        if ch.isspace():
            table[cp] = SPACE
        elif cat[0] == "L":
            table[cp] = LETTER
        elif cat == "Nd":
            table[cp] = DIGIT
        elif cat[0] == "P":
            table[cp] = PUNCT
        elif cat[0] == "S":
            table[cp] = SYMBOL
    for lo, hi in _HAN_BLOCKS:
        table[lo:hi + 1] = CJK
    for lo, hi in _RULE_BLOCKS:
        table[lo:hi + 1] = RULE
    for ch in _FILL:
        table[ord(ch)] = RULE
    table[0xFFFD] = SYMBOL  # the replacement character: what is left of broken encodings
    # ○ and 〇 write zero in Chinese numerals (○．○○五 in a table of limits), like 一 and 二 do the
    # other digits; they are not the decoration So would make them.
    table[0x25CB] = table[0x3007] = CJK
    return table


def _top_ngram_count(codes: np.ndarray, rule: np.ndarray, alnum: np.ndarray, n: int, enough: float = 0) -> int:
    """Occurrences of the most frequent character n-gram (overlapping windows), keys packed 21 bits a
    character. Windows that touch layout (RULE) or hold no letter or digit (------, ……) are skipped:
    separators are the symbol and letter checks' business, and a table's frame is not repetition.
    ``rule`` and ``alnum`` are prefix sums (length len(codes) + 1) of those two kinds of character.

    With ``enough``, a count shown to be at most that by a cheap upper bound (the keys hashed into 4,096
    buckets: a bucket holds the top n-gram and maybe others) is returned as that bound; sorting the keys
    for the exact count is left to the rare text that comes close."""
    if len(codes) < n:
        return 0
    windows = len(codes) - n + 1
    keys = codes[:windows].astype(np.uint64)
    for i in range(1, n):
        nxt = codes[i: windows + i].astype(np.uint64)
        if i < 3:
            keys = (keys << np.uint64(21)) | nxt
        else:  # a fourth character does not fit in 64 bits: mix it in (a collision only overcounts)
            keys = (keys * np.uint64(0x9E3779B97F4A7C15)) ^ nxt
    keep = (rule[n:] == rule[:-n]) & (alnum[n:] > alnum[:-n])
    if not keep.any():
        return 0
    keys = keys[keep]
    if enough:
        bound = int(np.bincount((keys * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(52), minlength=4096).max())
        if bound <= enough:
            return bound
    _, counts = np.unique(keys, return_counts=True)
    return int(counts.max())


def _lines(text: str, codes: np.ndarray, classes: np.ndarray) -> tuple[list[str], list[str]]:
    """The text's non-empty lines (stripped), split into text lines and layout lines: a table row (it holds a
    box-drawing character) or a line with no letter or digit. Per-line counts come from prefix sums over the
    character classes, so no line is scanned in Python."""
    breaks = np.flatnonzero(codes == 10)
    starts, ends = np.concatenate(([0], breaks + 1)), np.concatenate((breaks, [len(codes)]))
    box = np.concatenate(([0], np.cumsum((codes >= _RULE_BLOCKS[0][0]) & (codes <= _RULE_BLOCKS[0][1]))))
    word = np.concatenate(([0], np.cumsum((classes == CJK) | (classes == LETTER) | (classes == DIGIT))))
    is_layout = ((box[ends] - box[starts]) > 0) | ((word[ends] - word[starts]) == 0)
    lines, layout = [], []
    for line, flag in zip(text.split("\n"), is_layout.tolist()):
        line = line.strip()
        if line:
            (layout if flag else lines).append(line)
    return lines, layout


def _duplicate_share(parts: list[str], layout: list[str] = ()) -> float:
    """Characters in parts that repeat an earlier part, as a share of the characters of all parts and
    layout parts (layout counts toward the total but never as a repeat)."""
    seen: set[str] = set()
    total = sum(map(len, layout))
    dup = 0
    for part in parts:
        total += len(part)
        if part in seen:
            dup += len(part)
        else:
            seen.add(part)
    return dup / total if total else 0.0


# Where a phrase ends: punctuation of either script, brackets, quotes, slashes, bars, bullets, dashes and
# other separators, line breaks (and a hyphen between spaces, "Baccarat - Slots - Live dealer", replaced
# by a comma first). A list of them, not "anything but a letter": that is a class the regex engine can
# skip ahead with, 2x faster.
_PHRASE_BREAK = re.compile(r"[,;:.!?()\[\]{}<>\"“”|/\\•·*#=~_–—、，；：。！？（）「」【】《》\n\t]+")


def _dup_phrase_share(text: str) -> float:
    """Word characters in phrases of two or more words that repeat an earlier phrase (in any case), as a
    share of the word characters of the text."""
    phrases = Counter([p.strip() for p in _PHRASE_BREAK.split(text.lower().replace(" - ", ","))])
    total = dup = 0
    for phrase, n in phrases.items():
        chars = len(phrase) - phrase.count(" ")
        total += chars * n
        if n > 1 and " " in phrase:
            dup += chars * (n - 1)
    return dup / total if total else 0.0


def measure(text: str, ngrams: tuple[int, ...] = (2, 3, 4), min_ngram_chars: int = 0,
            min_phrase_words: int = 50, ngram_limits: dict[int, float] | None = None) -> dict[str, float]:
    """Every signal of :class:`Quality` for one text; n-gram shares are 0 below ``min_ngram_chars``
    visible characters, and the repeated-phrase share is 0 unless the text is mostly letters of other
    scripts than Chinese (English) and has ``min_phrase_words`` words. With ``ngram_limits`` ({n: share}), an
    n-gram share that a cheap upper bound shows to be within its limit is that bound, not the exact share."""
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    classes = char_classes()[codes]
    counts = np.bincount(classes, minlength=8)
    visible = max(int(len(codes) - counts[SPACE] - counts[RULE]), 1)
    # Table rows (lines drawn with box-drawing characters) repeat by nature: the same frame, the same
    # 日│日│日 cells. Lines with no letter or digit are rules and separators. Both are layout; the
    # symbol check judges them, not the duplicate-line check.
    lines, layout = _lines(text, codes, classes)
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    signals = {
        "dup_line_chars": _duplicate_share(lines, layout),
        "dup_paragraph_chars": _duplicate_share(paragraphs) if len(paragraphs) > 1 else 0.0,
        "symbols": counts[SYMBOL] / visible,
        "digits": counts[DIGIT] / visible,
        "letters": (counts[CJK] + counts[LETTER]) / visible,
        "dup_phrase_chars": 0.0,
    }
    if counts[LETTER] > counts[CJK] and len(text.split(None, min_phrase_words)) >= min_phrase_words:
        # Lines only: a table's rows (their Latin names of pesticides, say) are layout here as well.
        signals["dup_phrase_chars"] = _dup_phrase_share("\n".join(lines))
    nonspace = classes != SPACE
    dense, dense_classes = codes[nonspace], classes[nonspace]
    rule = np.concatenate(([0], np.cumsum(dense_classes == RULE)))
    is_alnum = (dense_classes == CJK) | (dense_classes == LETTER) | (dense_classes == DIGIT)
    alnum = np.concatenate(([0], np.cumsum(is_alnum)))
    for n in ngrams:
        enough = (ngram_limits or {}).get(n, 0) * visible / n
        top = _top_ngram_count(dense, rule, alnum, n, enough) if visible >= min_ngram_chars else 0
        signals[f"top_{n}gram"] = min(1.0, top * n / visible)
    return signals


class Quality(Stage):
    """Remove low-quality documents; the reason names the failed signal, the detail its value and limit.

    Options (shares of visible characters): ``max_dup_line_chars`` (characters in lines that repeat an
    earlier line), ``max_dup_paragraph_chars`` (same for blank-line-separated paragraphs),
    ``max_top_ngram`` (``{n: share}``: the most frequent character n-gram's share; only the n listed are
    checked), ``max_symbols``, ``max_digits``, ``min_letters`` (CJK plus letters of any script).
    ``min_chars``: shorter documents are not judged (min_length decides about them);
    ``min_ngram_chars``: below this many visible characters the n-gram check is skipped, since one name
    said twice in a two-line notice (內政部消防署編制表) is a quarter of its 4-grams.

    Reasons: repetition_paragraphs, repetition_lines, repetition_phrases, top_ngram, symbols, digits,
    few_letters.
    """

    name = "quality"

    def __init__(self, max_dup_line_chars: float = 0.35, max_dup_paragraph_chars: float = 0.35,
                 max_top_ngram: dict | None = None, max_symbols: float = 0.15, max_digits: float = 0.35,
                 min_letters: float = 0.5, min_chars: int = 50, min_ngram_chars: int = 200,
                 max_dup_phrase_chars: float = 0.6, min_phrase_words: int = 50):
        super().__init__()
        self.max_dup_line_chars, self.max_dup_paragraph_chars = max_dup_line_chars, max_dup_paragraph_chars
        self.max_top_ngram = {int(n): float(v) for n, v in (max_top_ngram or {2: 0.3, 3: 0.3, 4: 0.3}).items()}
        self.max_symbols, self.max_digits, self.min_letters = max_symbols, max_digits, min_letters
        self.min_chars, self.min_ngram_chars = min_chars, min_ngram_chars
        self.max_dup_phrase_chars, self.min_phrase_words = max_dup_phrase_chars, min_phrase_words
        char_classes()  # build now, not inside the first document's timing

    def check(self, text: str) -> Rejected | None:
        """The first failed signal as a rejection, or None."""
        if len(text) < self.min_chars:
            return None
        s = measure(text, tuple(self.max_top_ngram), self.min_ngram_chars, self.min_phrase_words, self.max_top_ngram)
        # Paragraphs before lines: a repeated paragraph also repeats its lines, and is the better name.
        over = [("repetition_paragraphs", "duplicate-paragraph share", s["dup_paragraph_chars"],
                 self.max_dup_paragraph_chars),
                ("repetition_lines", "duplicate-line share", s["dup_line_chars"], self.max_dup_line_chars),
                ("repetition_phrases", "duplicate-phrase share", s["dup_phrase_chars"], self.max_dup_phrase_chars),
                *(("top_ngram", f"top {n}-gram share", s[f"top_{n}gram"], limit)
                  for n, limit in sorted(self.max_top_ngram.items())),
                ("symbols", "symbol share", s["symbols"], self.max_symbols),
                ("digits", "digit share", s["digits"], self.max_digits)]
        for reason, what, value, limit in over:
            if value > limit:
                return Rejected(reason, f"{what} {value:.3f} > {limit:g}")
        if s["letters"] < self.min_letters:
            return Rejected("few_letters", f"letter share {s['letters']:.3f} < {self.min_letters:g}")
        return None

    def process(self, doc):
        rejected = self.check(doc.text)
        return rejected if rejected else doc
