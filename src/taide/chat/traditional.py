"""The Traditional-Chinese output guard: Simplified characters in model output become Taiwan
Traditional (OpenCC ``s2twp``, phrase level: 软件→軟體, 视频→影片), and the guard counts what it changed.

Streaming text is converted a clause at a time, because phrase conversion needs whole words.
"""

from __future__ import annotations

import difflib

_CLAUSE_END = set("。！？；，、：\n」』）.!?;,")


class TraditionalGuard:
    def __init__(self):
        import opencc

        self._converter = opencc.OpenCC("s2twp")
        self._pending = ""
        self.changed = 0  # characters changed so far

    def convert(self, text: str) -> str:
        """Convert a whole text at once, adding to :attr:`changed`."""
        out = self._converter.convert(text)
        if out != text:
            self.changed += _changed_chars(text, out)
        return out

    def push(self, piece: str) -> str:
        """Feed streamed text; returns the converted text of every completed clause."""
        self._pending += piece
        cut = max((i for i, ch in enumerate(self._pending) if ch in _CLAUSE_END), default=-1)
        if cut < 0:
            return ""
        ready, self._pending = self._pending[:cut + 1], self._pending[cut + 1:]
        return self.convert(ready)

    def flush(self) -> str:
        ready, self._pending = self._pending, ""
        return self.convert(ready) if ready else ""


def _changed_chars(before: str, after: str) -> int:
    ops = difflib.SequenceMatcher(None, before, after, autojunk=False).get_opcodes()
    return sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in ops if tag != "equal")
