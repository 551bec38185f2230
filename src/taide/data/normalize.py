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
_FULLWIDTH_CHARS = "\uff10-\uff19\uff21-\uff3a\uff41-\uff5a"
_HALFWIDTH = {chr(c): chr(c - 0xFEE0) for c in range(0xFF10, 0xFF5B) if chr(c).isalnum()}
# Zero-width characters, the soft hyphen, and control characters other than line breaks and tabs.
_INVISIBLE_CHARS = "\u200b\u200c\u200d\u2060\ufeff\u00ad\x00-\x08\x0b-\x1f\x7f-\x9f"
# CJK compatibility ideographs, Kangxi radicals and CJK radicals supplement.
_COMPAT_CHARS = "\uf900-\ufaff\U0002f800-\U0002fa1f\u2f00-\u2fdf\u2e80-\u2eff"
_FULLWIDTH_ALNUM = re.compile(f"[{_FULLWIDTH_CHARS}]")
_INVISIBLE = re.compile(f"[{_INVISIBLE_CHARS}]")
_COMPAT = re.compile(f"[{_COMPAT_CHARS}]")
# Any of the three: most documents hold none, and one scan tells.
_ANY_TO_CHANGE = re.compile(f"[{_FULLWIDTH_CHARS}{_INVISIBLE_CHARS}{_COMPAT_CHARS}]")
# Runs of spaces become one space (the ideographic space U+3000 is kept: indentation), spaces around line breaks
# go, at most one blank line stays. The patterns match only what changes: a pattern that matched every single
# space or line break, to put it back, was most of this stage's time.
_SPACE_RUNS = re.compile(r" [ \t\u00a0]+|[\t\u00a0][ \t\u00a0]*")
_SPACED_BREAK = re.compile(r" +\n *|\n +")
_BLANK_LINES = re.compile(r"\n{3,}")


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
    # Each step is one regular expression over the text, or none where a cheaper test shows it has nothing to do:
    # C speed, no per-character Python.
    counts = NormalizeCounts()
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    if _ANY_TO_CHANGE.search(text):
        text, counts.width = _FULLWIDTH_ALNUM.subn(lambda m: _HALFWIDTH[m.group(0)], text)
        text, counts.invisible = _INVISIBLE.subn("", text)
        if _COMPAT.search(text):
            def unify(match):
                unified = _unify(match.group(0))
                counts.compat += unified != match.group(0)
                return unified

            text = _COMPAT.sub(unify, text)
    text = _SPACE_RUNS.sub(" ", text)
    text = _SPACED_BREAK.sub("\n", text)
    if "\n\n\n" in text:
        text = _BLANK_LINES.sub("\n\n", text)
    return text.strip(), counts


class Normalize(Stage):
    name = "normalize"

    def process(self, doc):
        doc.text, counts = normalize_text(doc.text)
        self.counters.update({"fullwidth_to_halfwidth": counts.width, "compat_unified": counts.compat,
                              "invisible_removed": counts.invisible})
        return doc
