"""The text a contamination check compares: every character folded by one lookup table, so copies that differ
only in form meet.

- NFKC, so full-width letters and digits, compatibility ideographs and Kangxi radicals take their plain form;
- punctuation, whitespace, control and format characters and combining marks left out, so re-punctuated,
  re-spaced and re-wrapped copies (「，」 for 「,」, a line break inside a sentence, 答案 (A) or A.) meet;
- letters in lower case;
- every Traditional character to its Simplified form (OpenCC's t2s, one character at a time): Traditional text
  and a Simplified copy of it then have the same keys. Folding this way rather than Simplified→Traditional
  is what makes it one-to-one in the direction that matters: t2s is many-to-one (髮 and 發 both → 发, 乾 and 幹
  both → 干), so 頭髮 and 头发 meet, while a character table s2t must choose one reading of 发 and writes 头发
  as 頭發. Keys are never shown; reports quote the original text.

A table of one uint32 per code point (0: left out) does all of it in one vectorized lookup.
"""

from __future__ import annotations

import hashlib
import unicodedata
from functools import lru_cache

import numpy as np

_LEFT_OUT = ("P", "Z", "C")  # punctuation, separators (spaces), control/format/private/unassigned
_MARKS = ("Mn", "Me")  # combining marks, variation selectors
_LAST_CJK = 0x323AF  # the end of CJK Unified Ideographs Extension H


def _left_out(ch: str) -> bool:
    category = unicodedata.category(ch)
    return category[0] in _LEFT_OUT or category in _MARKS


@lru_cache(maxsize=1)
def key_table() -> np.ndarray:
    """uint32 per code point: the character a key keeps for it, 0 for characters keys leave out."""
    from taide.data.script import cjk_conversions

    to_simplified = {ch: simp for ch, simp, _ in zip(*cjk_conversions()) if len(simp) == 1}
    table = np.zeros(0x110000, dtype=np.uint32)
    # Up to the last CJK block, and the variation selectors of plane 14; above that (unassigned planes, tags,
    # private use) nothing is kept.
    for code in (*range(0xD800), *range(0xE000, _LAST_CJK + 1), *range(0xE0100, 0xE01F0)):
        ch = chr(code)
        if _left_out(ch):
            continue
        folded = unicodedata.normalize("NFKC", ch)
        if len(folded) != 1:  # ㈱ → (株) → 株; ½ → 1⁄2 stays itself
            kept = [c for c in folded if not _left_out(c)]
            folded = kept[0] if len(kept) == 1 else ch
        lower = folded.lower()
        folded = lower if len(lower) == 1 else folded
        table[code] = ord(to_simplified.get(folded, folded))
    return table


def _codes(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def text_keys(text: str, table: np.ndarray | None = None) -> np.ndarray:
    """The folded characters of ``text`` that keys keep (uint32)."""
    mapped = (key_table() if table is None else table)[_codes(text)]
    return mapped[mapped != 0]


def text_keys_at(text: str, table: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The kept folded characters and, for each, its index in ``text``."""
    mapped = (key_table() if table is None else table)[_codes(text)]
    where = np.flatnonzero(mapped)
    return mapped[where], where


def folded(text: str, table: np.ndarray | None = None) -> str:
    """The key characters as text."""
    return text_keys(text, table).tobytes().decode("utf-32-le")


def keys_of(texts: list[str], table: np.ndarray | None = None) -> list[np.ndarray]:
    """:func:`text_keys` of each text, with one lookup over all of them (an index reads many short texts)."""
    if not texts:
        return []
    mapped = (key_table() if table is None else table)[_codes("".join(texts))]
    kept = mapped != 0
    before = np.concatenate([[0], np.cumsum(kept)])[np.cumsum([0, *map(len, texts)])]  # kept keys before each text
    keys = mapped[kept]
    return [keys[a:b] for a, b in zip(before[:-1].tolist(), before[1:].tolist())]


def content_keys(contents: list[tuple[list[str] | tuple[str, ...], bool]]) -> list[str]:
    """A short identity of each content ``(parts, ordered)``: the same for copies that differ only in form, and,
    when not ordered, for the first part followed by the others in any order (a question and its options)."""
    keys = iter(keys_of([p for parts, _ in contents for p in parts]))
    out = []
    for parts, ordered in contents:
        mine = [next(keys).tobytes() for _ in parts]
        if not ordered:
            mine = mine[:1] + sorted(mine[1:])
        out.append(hashlib.blake2b(b"\x00".join(mine), digest_size=8).hexdigest())
    return out


def content_key(parts: list[str] | tuple[str, ...], ordered: bool = True) -> str:
    return content_keys([(parts, ordered)])[0]
