"""Character normalization that keeps Taiwan text Taiwanese: NFC; CJK compatibility ideographs and
Kangxi radicals to their unified forms; full-width ASCII letters and digits to half-width while Chinese
punctuation (，。、；：？！「」『』（）) stays full-width; zero-width and control characters removed;
whitespace tidied without touching line structure."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from taide.data.base import Stage

# Full-width ASCII letters and digits only: Ａ-Ｚ ａ-ｚ ０-９. Punctuation such as ，（） keeps its width.
_FULLWIDTH_ALNUM = re.compile("[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a]")
_TO_HALFWIDTH = {c: c - 0xFEE0 for r in ((0xFF10, 0xFF19), (0xFF21, 0xFF3A), (0xFF41, 0xFF5A))
                 for c in range(r[0], r[1] + 1)}
# Zero-width characters, the soft hyphen, and control characters other than line breaks and tabs.
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad\x00-\x08\x0b-\x1f\x7f-\x9f]")
# CJK compatibility ideographs, Kangxi radicals and CJK radicals supplement.
_COMPAT = re.compile("[\uf900-\ufaff\U0002f800-\U0002fa1f\u2f00-\u2fdf\u2e80-\u2eff]")


def _unify(ch: str) -> str:
    folded = unicodedata.normalize("NFKC", ch)
    unified = len(folded) == 1 and ("\u4e00" <= folded <= "\u9fff" or "\u3400" <= folded <= "\u4dbf")
    return folded if unified else ch


@dataclass
class NormalizeCounts:
    width: int = 0  # full-width letters/digits made half-width
    compat: int = 0  # compatibility ideographs or radicals unified
    invisible: int = 0  # zero-width and control characters removed


def normalize_text(text: str) -> tuple[str, NormalizeCounts]:
    # Each step is one regular expression or translate() over the text: C speed, no per-character Python.
    counts = NormalizeCounts()
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    counts.width = len(_FULLWIDTH_ALNUM.findall(text))
    if counts.width:
        text = text.translate(_TO_HALFWIDTH)
    text, counts.invisible = _INVISIBLE.subn("", text)
    if _COMPAT.search(text):
        def unify(match):
            unified = _unify(match.group(0))
            counts.compat += unified != match.group(0)
            return unified

        text = _COMPAT.sub(unify, text)
    text = re.sub(r"[ \t\u00a0]+", " ", text)  # runs of spaces; the ideographic space U+3000 is kept (indentation)
    text = re.sub(r" *\n *", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip(), counts


class Normalize(Stage):
    name = "normalize"

    def process(self, doc):
        doc.text, counts = normalize_text(doc.text)
        self.counters.update({"fullwidth_to_halfwidth": counts.width, "compat_unified": counts.compat,
                              "invisible_removed": counts.invisible})
        return doc
