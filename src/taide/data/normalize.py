"""Character normalization that keeps Taiwan text Taiwanese: NFC; CJK compatibility ideographs and
Kangxi radicals to their unified forms; full-width ASCII letters and digits to half-width while Chinese
punctuation (，。、；：？！「」『』（）) stays full-width; zero-width and control characters removed;
whitespace tidied without touching line structure."""

from __future__ import annotations
from taide.data.base import Stage

import re
import unicodedata
from dataclasses import dataclass

_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff\u00ad"
# Full-width ASCII letters and digits only: Ａ-Ｚ ａ-ｚ ０-９. Punctuation such as ，（） keeps its width.
_FULLWIDTH_ALNUM = {c: c - 0xFEE0 for r in ((0xFF10, 0xFF19), (0xFF21, 0xFF3A), (0xFF41, 0xFF5A))
                    for c in range(r[0], r[1] + 1)}
_COMPAT_RANGES = ((0xF900, 0xFAFF), (0x2F800, 0x2FA1F), (0x2F00, 0x2FDF), (0x2E80, 0x2EFF))  # compat ideographs, radicals


def _is_compat(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _COMPAT_RANGES)


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
    counts = NormalizeCounts()
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    out = []
    for ch in text:
        cp = ord(ch)
        if cp in _FULLWIDTH_ALNUM:
            out.append(chr(_FULLWIDTH_ALNUM[cp]))
            counts.width += 1
        elif ch in _ZERO_WIDTH or (unicodedata.category(ch) == "Cc" and ch not in "\n\t"):
            counts.invisible += 1
        elif _is_compat(ch):
            unified = _unify(ch)
            counts.compat += unified != ch
            out.append(unified)
        else:
            out.append(ch)
    text = "".join(out)
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
