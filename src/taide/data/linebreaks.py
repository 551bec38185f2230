"""Join lines broken for layout, as CSS Text 3's segment-break transform does for East Asian text: a single
line break between two wide (East-Asian-Width F or W) characters disappears, and so does one between a
wide character and an ASCII letter or digit (有19⏎所). Breaks that mean something stay: paragraph breaks
(blank lines), breaks after a sentence or clause end (。！？；：…), before list items (一、 （二） 3.),
article headings (第 5 條) or label lines (原告　陳○華, 主旨：…), and after a line shorter than the block's other lines
(a heading or the end of a paragraph — layout-broken lines all run to the same width)."""

from __future__ import annotations
from taide.data.base import Stage

import re
import unicodedata

_KEEP_AFTER = set("。！？；：…」』）】》〉.!?;:")
_ITEM_START = re.compile(r"^(?:[一二三四五六七八九十百千]+[、\u3000 ．.]|[（(][一二三四五六七八九十\d]+[）)]|\d+[.、)．]|第\s*\S{1,6}\s*[條章節編款項]"
                         r"|[^\s\u3000:：]{1,6}(?:\u3000|[:：]))")  # 原告　陳○華, 主旨：… label lines
FULL_LINE_SHARE = 0.85  # a line at least this share of the block's longest line counts as full


def _wide(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in ("F", "W")


_WORDLIKE = re.compile(r"[A-Za-z0-9@._-]")  # inside numbers, words, emails and URLs


def _joinable(before: str, after: str) -> bool:
    """Both sides of the break are wide, or one is and the other is an ASCII letter or digit (有19⏎所,
    信箱⏎abc@…): the break splits Chinese text. Two ASCII sides are English, which wraps at spaces."""
    wide_before, wide_after = _wide(before), _wide(after)
    return (wide_before or wide_after) and (wide_before or _WORDLIKE.match(before) is not None) and \
        (wide_after or _WORDLIKE.match(after) is not None)


def join_layout_breaks(text: str, min_width: int = 8) -> tuple[str, int]:
    """Returns the text with layout breaks removed, and how many were removed."""
    joined = 0
    paragraphs = []
    for block in re.split(r"(\n\s*\n)", text):
        if not block or block.isspace():
            paragraphs.append(block)
            continue
        lines = block.split("\n")
        width = max(len(line) for line in lines)
        out = lines[0]
        for prev, line in zip(lines, lines[1:]):
            p, n = prev.rstrip(), line.lstrip()
            join = (width >= min_width and p and n and len(prev) >= FULL_LINE_SHARE * width
                    and _joinable(p[-1], n[0]) and p[-1] not in _KEEP_AFTER and not _ITEM_START.match(n))
            if join:
                out = out.rstrip() + n
                joined += 1
            else:
                out += "\n" + line
        paragraphs.append(out)
    return "".join(paragraphs), joined


class JoinLayoutBreaks(Stage):
    name = "line_breaks"

    def __init__(self, min_width: int = 8):
        super().__init__()
        self.min_width = min_width

    def process(self, doc):
        doc.text, joined = join_layout_breaks(doc.text, self.min_width)
        self.counters["breaks_joined"] += joined
        return doc
