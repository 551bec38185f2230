"""PII redaction for Taiwan text, with typed placeholders and counts per type.

Every pattern is bounded by look-arounds on ASCII letters and digits instead of ``\\b``: in Chinese text
PII is glued to the characters around it (請寄至abc@example.com.tw, 字號A123456789), and ``\\b`` sees no
boundary between 至 and a. Numbers are redacted only when they validate: national ID and resident
certificate checksums, the unified business number rule, Luhn for cards, octet ranges for IP addresses.
Dates, amounts, law article numbers and ISBNs are left alone.
"""

from __future__ import annotations
from taide.data.base import DataError, Stage

import re
from collections import Counter

PLACEHOLDERS = {"email": "<EMAIL>", "phone": "<PHONE>", "id": "<ID>", "business_id": "<BUSINESS_ID>",
                "card": "<CARD>", "ip": "<IP>"}

_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![A-Za-z0-9-])")
# Taiwan phone numbers: a candidate is a run of digits and separators that starts with the trunk 0, an area code in
# parentheses or +886 (with an optional "(0)"), and may end in an extension (#123, 分機123, 轉123, ext. 123); it is
# a phone only when its digits fit the numbering plan below. \d is Unicode: full-width digits count too.
_PHONE = re.compile(
    r"(?<![\dA-Za-z+＋])(?<!第)(?<!第 )"  # 第 0890035812 號 is a document number, not a phone
    r"((?:[+＋]886[\s\-－]?(?:[(（]0[)）]\s?)?)?[(（]?"
    r"\d[\d\s\-－‐–.．()（）]{3,18}\d)"
    r"(\s?(?:#|＃|轉分機|分機|轉|ext\.?\s?)\d{1,6})?"
    r"(?!\d)(?!\s?號)")
# Subscriber lengths by area code (after the trunk 0), from the national numbering plan: Taipei 02 (8 digits),
# Taichung 04 (7 or 8), the other two-digit areas (7), Miaoli 037 and Taitung 089 (6), Nantou 049 (7), Kinmen 082
# (6), Wuqiu 0826 and Matsu 0836 (5), mobile 09 (8).
_AREAS = {"826": (5,), "836": (5,), "37": (6,), "49": (7,), "82": (6,), "89": (6,), "2": (7, 8), "3": (7,),
          "4": (7, 8), "5": (7,), "6": (7,), "7": (7,), "8": (7,), "9": (8,)}
_SEPARATORS = re.compile(r"[\s\-－‐–.．()（）]+")


def _phone_digits(number: str) -> str | None:
    """The national form (0 + area + subscriber) of a candidate's digits, or None when they fit no number."""
    international = number.lstrip().startswith(("+", "＋"))
    if international:
        number = re.sub(r"[(（]0[)）]", "", number)  # +886 (0)2 …: the trunk 0 some write in parentheses
    groups = re.findall(r"\d+", number)
    # After the area code, numbers are written in groups of 3 or more digits; runs of 2-digit groups are lottery
    # draws, scores or dates (02　03　27　41), not phones.
    if any(len(g) < 3 for g in groups[2 if international else 1:]):
        return None
    digits = "".join(str(int(c)) for c in number if c.isdigit())
    if international:
        digits = digits.removeprefix("886")
        digits = digits if digits.startswith("0") else "0" + digits  # +886 (0)2 … and +886 2 … alike
    if not digits.startswith("0"):
        return None
    national = digits[1:]
    for area, lengths in _AREAS.items():
        if national.startswith(area) and len(national) - len(area) in lengths:
            return digits
    return None


def _phone_end(number: str) -> int:
    """How much of a candidate is a phone number: all of it, or its longest leading part that ends at a digit
    group (02-2345-6789 2024 → 02-2345-6789); 0 when no part is."""
    if _phone_digits(number):
        return len(number)
    for cut in reversed([m.start() for m in _SEPARATORS.finditer(number)]):
        if _phone_digits(number[:cut]):
            return cut
    return 0


# First letter -> two-digit code of the national ID / resident certificate checksum.
_LETTER = {c: v for c, v in zip("ABCDEFGHJKLMNPQRSTUVXYWZIO", range(10, 36))}
_ID = re.compile(r"(?<![A-Za-z0-9])([A-Z])([1289A-D])(\d{8})(?![0-9])")
_BUSINESS_ID = re.compile(r"(統一編號|統編|營利事業統一編號|公司統編)\s*[:：]?\s*(\d{8})(?!\d)")
_CARD = re.compile(r"(?<![\d])([3-6]\d{3}(?:[ -]?\d{4}){2}[ -]?\d{1,7})(?![\d])")
_IP = re.compile(r"(?<![\d.])((?:\d{1,3}\.){3}\d{1,3})(?![\d.])")


def valid_tw_id(value: str) -> bool:
    """National ID (second character 1/2), new resident certificate (8/9) or old one (A-D), checksum-checked."""
    if len(value) != 10 or value[0] not in _LETTER:
        return False
    first, second, rest = value[0], value[1], value[2:]
    if not rest.isdigit():
        return False
    code = _LETTER[first]
    if second.isdigit():
        second_digit = int(second)
    elif second in "ABCD":
        second_digit = _LETTER[second] % 10  # the old resident certificate's letter counts by its last digit
    else:
        return False
    digits = [code // 10, code % 10, second_digit] + [int(d) for d in rest]
    weights = [1, 9, 8, 7, 6, 5, 4, 3, 2, 1, 1]
    return sum(d * w for d, w in zip(digits, weights)) % 10 == 0


def valid_business_id(value: str) -> bool:
    """統一編號: products with weights 1,2,1,2,1,2,4,1, each product's digits summed; valid when the total
    divides by 5 (the rule since 2023, which also accepts the older divisible-by-10 numbers). A 7th digit
    of 7 gives 7×4 = 28 → 10, which counts as 1 or as 0."""
    if len(value) != 8 or not value.isdigit():
        return False
    total = sum(sum(divmod(int(d) * w, 10)) for d, w in zip(value, (1, 2, 1, 2, 1, 2, 4, 1)))
    if value[6] == "7":
        return (total - 9) % 5 == 0 or (total - 10) % 5 == 0
    return total % 5 == 0


def valid_luhn(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _valid_ip(value: str) -> bool:
    parts = value.split(".")
    return all(p.isdigit() and int(p) <= 255 and (p == "0" or not p.startswith("0")) for p in parts)


# Cheap first looks: a pattern that starts with a character class is scanned at C speed, while the full
# patterns (which start with look-behinds) are tried at every position. Most documents fail the hint.
_HINTS = {"id": re.compile(r"[A-Z][1289A-D]\d{8}"), "card": re.compile(r"[3-6]\d{3}[ -]?\d{4}"),
          "phone": re.compile(r"\d[\d\s\-－‐–.．()（）]{6,}\d"),  # the candidates' own separators
          "ip": re.compile(r"\d\.\d{1,3}\.\d{1,3}\.\d"),
          "business_id": re.compile(r"統一編號|統編")}


def redact_pii(text: str, kinds: tuple[str, ...] = tuple(PLACEHOLDERS)) -> tuple[str, Counter]:
    """Replace PII with typed placeholders; returns the text and how many of each kind were replaced."""
    counts: Counter = Counter()

    def sub(pattern, kind, valid=lambda m: True, keep_prefix=False):
        nonlocal text
        if kind not in kinds or (kind == "email" and "@" not in text) or (kind in _HINTS and not _HINTS[kind].search(text)):
            return

        def repl(m):
            if not valid(m):
                return m.group(0)
            counts[kind] += 1
            return (m.group(1) + "：" if keep_prefix else "") + PLACEHOLDERS[kind]

        text = pattern.sub(repl, text)

    sub(_EMAIL, "email")
    sub(_ID, "id", lambda m: valid_tw_id(m.group(0)))
    sub(_BUSINESS_ID, "business_id", lambda m: valid_business_id(m.group(2)), keep_prefix=True)
    sub(_CARD, "card", lambda m: 13 <= len(re.sub(r"\D", "", m.group(1))) <= 19 and valid_luhn(re.sub(r"\D", "", m.group(1))))
    if "phone" in kinds and _HINTS["phone"].search(text):
        def phone(m):
            end = _phone_end(m.group(1))
            if not end:
                return m.group(0)
            counts["phone"] += 1
            # A whole number takes its extension with it; a cut one leaves the rest of the text as it was.
            return PLACEHOLDERS["phone"] + (m.group(0)[end:] if end < len(m.group(1)) else "")

        text = _PHONE.sub(phone, text)
    sub(_IP, "ip", lambda m: _valid_ip(m.group(1)))
    return text, counts


class RedactPII(Stage):
    name = "pii"

    def __init__(self, kinds: list[str] | None = None):
        super().__init__()
        unknown = set(kinds or []) - set(PLACEHOLDERS)
        if unknown:
            raise DataError(f"pii.kinds: unknown {sorted(unknown)}; choose from {', '.join(PLACEHOLDERS)}")
        self.kinds = tuple(kinds or PLACEHOLDERS)

    def process(self, doc):
        doc.text, counts = redact_pii(doc.text, self.kinds)
        self.counters.update({f"redacted_{k}": v for k, v in counts.items()})
        return doc
