"""Noise removal: HTML to main text, mojibake repair, documents made mostly of non-standard characters,
and too-short documents."""

from __future__ import annotations

from taide.data.base import Rejected, Stage


class MinLength(Stage):
    """Too-short documents go. Length is in characters without whitespace: one Chinese character counts
    as one, so Chinese is not undercounted the way word counts undercount it."""

    name = "min_length"

    def __init__(self, min_chars: int = 50):
        super().__init__()
        self.min_chars = min_chars

    def process(self, doc):
        length = sum(not ch.isspace() for ch in doc.text)
        return doc if length >= self.min_chars else Rejected("too_short", f"{length} < {self.min_chars} characters")

