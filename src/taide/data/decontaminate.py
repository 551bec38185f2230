"""The ``decontaminate`` stage: training documents that hold evaluation items (exam questions, bench prompts and
answers) are dropped, have the items cut out, or are tagged.

It joins the pipeline when evaluation data is given (``taide data clean … --decontaminate EVAL…``, a recipe's
``data.decontaminate``, or a ``{stage: decontaminate, benchmarks: [...]}`` entry), after the other per-document
stages and before dedup. The driver builds the index once (:class:`taide.decontam.index.EvalIndex`) and hands it
to every worker, local or Ray, so a worker never reads the evaluation files itself. What it found, document by
document, goes to the driver with the counters and becomes ``decontamination.md`` / ``.json`` beside
``stats.md`` (:mod:`taide.decontam.report`).
"""

from __future__ import annotations

import re

from taide.data.base import DataError, Rejected, Stage
from taide.decontam.index import MAX_DF, MIN_WEIGHT, NGRAM, THRESHOLD, EvalIndex
from taide.decontam.keys import folded, text_keys, text_keys_at
from taide.errors import TaideError

ACTIONS = ("drop", "cut", "tag")
_LETTERS = re.compile("[a-h0-9答案]")  # option letters, numbering and 答案 left when a line's options are taken out


class Decontaminate(Stage):
    """Find the evaluation items each document holds (see :mod:`taide.decontam.index`) and act on them.

    Options: ``benchmarks`` — files or folders of evaluation items (exams in any format `taide eval mc` reads,
    taide-bench, JSONL of prompts); ``action`` — ``drop`` the document (the default), ``cut`` the matching text out
    (with the rest of its lines when little else is on them, and the short lines after it: options written one a
    line, an answer line), or ``tag`` it (the record gets ``contamination``: the items and the share of their
    n-grams found) and keep it; ``min_chars`` — a cut document with fewer non-space characters left is dropped;
    ``ngram``, ``threshold``, ``min_weight``, ``max_df`` — the index's (BENCHMARKS.md has the sweep they come from).
    """

    name = "decontaminate"

    def __init__(self, benchmarks: list[str] | None = None, action: str = "drop", ngram: int = NGRAM,
                 threshold: float = THRESHOLD, min_weight: float = MIN_WEIGHT, max_df: int = MAX_DF,
                 min_chars: int = 50, index: EvalIndex | None = None):
        super().__init__()
        if action not in ACTIONS:
            raise DataError(f"decontaminate.action: {action!r} is not one of {', '.join(ACTIONS)}")
        if index is None:
            if not benchmarks:
                raise DataError("decontaminate: give benchmarks, the evaluation files or folders to check against")
            try:
                index = EvalIndex.from_paths(benchmarks if isinstance(benchmarks, list) else [benchmarks], ngram=ngram,
                                             threshold=threshold, min_weight=min_weight, max_df=max_df)
            except TaideError as e:
                raise DataError(f"decontaminate: {e}") from e
        self.index, self.action, self.min_chars = index, action, min_chars

    def _labels(self, hit) -> list[str]:
        return [self.index.items[i].label for i in self.index.entry_items[hit.entry]]

    def process(self, doc):
        hits = self.index.search(doc.text)
        if not hits:
            return doc
        self.counters["contaminated"] += 1
        self.counters["items_found"] += len(hits)
        for benchmark in sorted({self.index.items[i].benchmark for h in hits for i in self.index.entry_items[h.entry]}):
            self.counters[f"found_{benchmark}"] += 1
        options = {o for h in hits for o in self.index.items[self.index.entry_items[h.entry][0]].parts[1:]}
        spans = self._widened(doc.text, self.index.spans(doc.text, hits), options)
        self.findings.append({"id": doc.id, "source": doc.source, "action": self.action,
                              "items": [[self.index.key_of(h.entry), round(h.share, 3)] for h in hits],
                              "text": [doc.text[s:e][:120] for s, e in spans[:3]]})
        if self.action == "tag":
            doc.record["contamination"] = [{"item": label, "share": round(h.share, 3)}
                                           for h in hits for label in self._labels(h)]
            return doc
        if self.action == "cut":
            text, cut = _remove(doc.text, spans)
            left = len("".join(text.split()))
            if left >= self.min_chars:
                self.counters["chars_cut"] += cut
                doc.text = text
                return doc
            self.findings[-1]["action"] = "drop"
        best = max(hits, key=lambda h: h.share)
        more = f" and {len(hits) - 1} more" if len(hits) > 1 else ""
        return Rejected("contaminated", f"{' = '.join(self._labels(best))} ({best.share:.0%} of its n-grams){more}"
                        + (f"; cutting it left {left} characters < {self.min_chars}" if self.action == "cut" else ""))

    def _widened(self, text: str, spans: list[tuple[int, int]], options: set[str]) -> list[tuple[int, int]]:
        """Spans grown to whole lines when little else is on them, and over the lines after them that hold little
        but the item's options (options are often shorter than an n-gram, so no n-gram of theirs matched) or an
        answer line (答案：B); overlapping ones merged."""
        n = self.index.ngram
        table = self.index.table
        option_keys = sorted((folded(o, table) for o in options), key=len, reverse=True)

        def little(piece: str) -> bool:
            rest = folded(piece, table)
            for option in option_keys:
                rest = rest.replace(option, "") if option else rest
            return len(_LETTERS.sub("", rest)) <= n

        grown = []
        for start, end in spans:
            end = self._options_after(text, end, option_keys)
            line_start = text.rfind("\n", 0, start) + 1
            if little(text[line_start:start]):
                start = line_start
            line_end = text.find("\n", end)
            line_end = len(text) if line_end < 0 else line_end
            if little(text[end:line_end]):
                end = line_end
            while end < len(text):
                following = text.find("\n", end + 1)
                following = len(text) if following < 0 else following
                line = text[end + 1:following]
                if not text_keys(line, table).size or not little(line):
                    break
                end = following
            if grown and start <= grown[-1][1]:
                grown[-1] = (grown[-1][0], max(end, grown[-1][1]))
            else:
                grown.append((start, end))
        return grown


    def _options_after(self, text: str, end: int, option_keys: list[str]) -> int:
        """``end`` moved past the options that follow it on its line: (A)雪山(B)玉山… after a matched stem."""
        line_end = text.find("\n", end)
        keys, where = text_keys_at(text[end: len(text) if line_end < 0 else line_end], self.index.table)
        rest = keys.tobytes().decode("utf-32-le")
        i, last = 0, 0
        while i < len(rest):
            option = next((o for o in option_keys if o and rest.startswith(o, i)), None)
            if option:
                i += len(option)
                last = int(where[i - 1]) + 1
            elif _LETTERS.match(rest, i):
                i += 1
            else:
                break
        return end + last


def _remove(text: str, spans: list[tuple[int, int]]) -> tuple[str, int]:
    """``text`` without ``spans`` (sorted, disjoint), no more than one blank line left where they were; and how
    many characters went."""
    pieces, at = [], 0
    for start, end in spans:
        pieces.append(text[at:start])
        at = end
    pieces.append(text[at:])
    kept = "".join(pieces)
    return re.sub(r"\n{3,}", "\n\n", kept).strip(), len(text) - len(kept)
