"""Noise removal: HTML to main text, mojibake repair, documents made mostly of non-standard characters,
and too-short documents."""

from __future__ import annotations

import html
import re

from taide.data.base import DataError, Rejected, Stage

_LOOKS_LIKE_PAGE = re.compile(r"\s*(?:<!doctype html|<html[\s>])", re.I)
# Leftover markup inside plain-text records. Tags are matched by name, so 「a<b且c>d」 or <附表> stay.
_BLOCKS = re.compile(r"<(script|style|noscript|iframe)\b[^>]*>.*?</\1\s*>|<!--.*?-->", re.I | re.S)
_TAG_NAMES = ("a|abbr|b|big|blockquote|body|br|center|code|dd|div|dl|dt|em|font|footer|form|h[1-6]|head|header|hr|"
              "html|i|img|input|label|li|link|meta|nav|ol|option|p|pre|s|section|select|small|span|strong|sub|sup|"
              "table|tbody|td|textarea|tfoot|th|thead|title|tr|u|ul|article|aside|main|button|figure|figcaption")
_TAG = re.compile(rf"</?(?:{_TAG_NAMES})\b[^<>]{{0,500}}/?>", re.I)
_BLOCK_TAG = re.compile(r"</?(?:p|div|br|li|tr|h[1-6]|table|ul|ol|blockquote|section|article)\b", re.I)
_ENTITY = re.compile(r"&(?:#\d{1,7}|#x[0-9a-f]{1,6}|[a-z]{2,8});", re.I)
_BOILERPLATE = "script, style, noscript, iframe, nav, header, footer, aside, form, button, select, svg, template"


def _resiliparse(page: str) -> str:
    from resiliparse.extract.html2text import extract_plain_text

    return extract_plain_text(page, main_content=True, alt_texts=False, links=False, comments=False)


def _trafilatura(page: str) -> str:
    import trafilatura

    return trafilatura.extract(page, include_comments=False, include_tables=True, deduplicate=False) or ""


def _selectolax(page: str) -> str:
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(page)
    for node in tree.css(_BOILERPLATE):
        node.decompose()
    body = tree.body or tree.root
    return body.text(separator="\n", strip=True) if body is not None else ""


EXTRACTORS = {"resiliparse": _resiliparse, "trafilatura": _trafilatura, "selectolax": _selectolax}


def strip_markup(text: str) -> tuple[str, int]:
    """Scripts, styles, comments, known tags and entities removed from text that is not a whole page."""
    removed = 0
    if "<" in text:
        text, n = _BLOCKS.subn("", text)
        removed += n
        text = _BLOCK_TAG.sub(lambda m: "\n" + m.group(0), text)  # a block tag separates lines
        text, n = _TAG.subn("", text)
        removed += n
    if "&" in text:
        text, n = _ENTITY.subn(lambda m: html.unescape(m.group(0)), text)
        removed += n
    return text, removed


class HtmlToText(Stage):
    """Pages (HTML files, or records whose text is a whole page) become their main text; other text loses
    leftover scripts, styles, tags and entities. A page with no main text is removed."""

    name = "html"

    def __init__(self, extractor: str = "resiliparse"):
        super().__init__()
        if extractor not in EXTRACTORS:
            raise DataError(f"html.extractor: {extractor!r} is not one of {', '.join(EXTRACTORS)}")
        self.extract = EXTRACTORS[extractor]

    def process(self, doc):
        if doc.is_html or _LOOKS_LIKE_PAGE.match(doc.text):
            text = self.extract(doc.text).strip()
            self.counters["pages"] += 1
            if not text:
                return Rejected("no_main_text", "the page has no main text")
            doc.text, doc.is_html = text, False
            return doc
        doc.text, removed = strip_markup(doc.text)
        if removed:
            self.counters["markup_removed"] += removed
            self.counters["docs_with_markup"] += 1
        return doc


# Characters mojibake is made of: Latin-1 and CP1252 letters and symbols (not × ÷ … •, common in
# Chinese text). Clean Chinese text rarely contains them, so ftfy (slow, pure Python) only looks at documents that do.
_MOJIBAKE_HINT = re.compile("[\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u00ff\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2030\u2039\u203a\u20ac\u2122]")


class FixMojibake(Stage):
    """Repairs text decoded with the wrong charset (ftfy). ftfy's width fixing and quote uncurling are off:
    they would turn Chinese full-width punctuation and 「“」 quotes into ASCII."""

    name = "mojibake"

    def __init__(self):
        super().__init__()
        import ftfy

        self.fix = ftfy.fix_text
        self.config = ftfy.TextFixerConfig(fix_character_width=False, uncurl_quotes=False, unescape_html=False,
                                           fix_latin_ligatures=False, explain=False)

    def process(self, doc):
        if _MOJIBAKE_HINT.search(doc.text):
            fixed = self.fix(doc.text, self.config)
            if fixed != doc.text:
                doc.text = fixed
                self.counters["repaired"] += 1
        return doc


# Characters that carry no text: U+FFFD, private use (BMP and planes 15-16), surrogates, noncharacters,
# and C0/C1 controls other than line breaks and tabs.
_NON_STANDARD = re.compile("[\ufffd\ue000-\uf8ff\U000f0000-\U0010ffff\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff"
                           "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def non_standard_share(text: str) -> float:
    return len(_NON_STANDARD.findall(text)) / len(text) if text else 0.0


class NonStandardChars(Stage):
    """Removes documents in which more than ``max_share`` of the characters carry no text: undecodable or
    corrupted input."""

    name = "non_standard"

    def __init__(self, max_share: float = 0.05):
        super().__init__()
        self.max_share = max_share

    def process(self, doc):
        share = non_standard_share(doc.text)
        if share > self.max_share:
            return Rejected("non_standard_chars", f"{share:.1%} non-standard characters > {self.max_share:.0%}")
        return doc


class MinLength(Stage):
    """Too-short documents go. Length is in characters without whitespace: one Chinese character counts
    as one, so Chinese is not undercounted the way word counts undercount it."""

    name = "min_length"

    def __init__(self, min_chars: int = 50):
        super().__init__()
        self.min_chars = min_chars

    def process(self, doc):
        length = len("".join(doc.text.split()))
        return doc if length >= self.min_chars else Rejected("too_short", f"{length} < {self.min_chars} characters")
