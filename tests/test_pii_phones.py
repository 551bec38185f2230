"""Every Taiwan phone number, and nothing else: tests/data/tw-phones.jsonl (written for taide) has numbers of the whole
fixed-line plan (02, 03, 037, 04, 049, 05, 06, 07, 08, 089, islands 06-9, 082, 0826, 0836) and mobiles, spelled
with dashes, spaces, dots, parentheses, full-width digits, +886 with and without separators or (0), with
extensions (#, 分機, 轉, ext.), glued to Chinese; and dates, amounts, article, ISBN, document and postal numbers
that must stay."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from taide.data.pii import redact_pii

ROWS = [json.loads(line) for line in (Path(__file__).parent / "data/tw-phones.jsonl").read_text("utf-8").splitlines()]


def scores() -> dict[str, dict]:
    """Per category: phones, found (redacted whole), redactions that were not phones, documents changed wrongly."""
    table: dict[str, dict] = defaultdict(lambda: {"phones": 0, "found": 0, "false": 0})
    for row in ROWS:
        out, counts = redact_pii(row["text"], ("phone",))
        expected = row["text"]
        for phone in row["phones"]:
            expected = expected.replace(phone, "<PHONE>")
        found = sum(phone not in out for phone in row["phones"]) if out == expected else 0
        cell = table[row["category"]]
        cell["phones"] += len(row["phones"])
        cell["found"] += found
        cell["false"] += counts["phone"] - found
    return dict(table)


def test_every_taiwan_phone_spelling_is_found_and_nothing_else_is_touched():
    table = scores()
    phones = sum(c["phones"] for c in table.values())
    assert phones >= 40 and sum(c["found"] for c in table.values()) / phones >= 0.98
    assert all(c["false"] == 0 for c in table.values()), table
    for kept in ("date", "amount", "article", "isbn", "document", "postal"):
        assert table[kept]["phones"] == 0 and table[kept]["false"] == 0


def test_an_extension_goes_with_its_number_and_trailing_digits_do_not_hide_it():
    assert redact_pii("電話02-2345-6789分機123請洽", ("phone",))[0] == "電話<PHONE>請洽"
    assert redact_pii("撥 02 2345 6789 3 次", ("phone",))[0] == "撥 <PHONE> 3 次"
    assert redact_pii("共 0912 345 678 2024 筆", ("phone",))[0] == "共 <PHONE> 2024 筆"
