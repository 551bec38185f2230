"""Taiwan-correct cleaning, measured on the test sets written for taide (tests/data/):

- Simplified → Traditional: the share of sentences converted wrongly by OpenCC ``s2twp`` over the whole text
  (the anchor, and taide's conversion before) and by taide's word-by-word conversion, per category:
  phrase-boundary traps, one-to-many characters, Taiwan vocabulary (s2tw-cases.jsonl: each sentence with the
  Taiwan forms accepted);
- phone numbers: recall and wrong redactions per category of tw-phones.jsonl (the numbering plan's areas,
  mobiles, +886, full-width, extensions; dates, amounts, ISBNs, document and postal numbers that must stay),
  for taide's ``pii`` stage now and as it was before this work (git revision ``--before``, 01c1c65).

    .venv/bin/python -m bench.taiwan_cleaning [--no-write]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from bench.report import publish

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def conversion_errors(convert) -> dict[str, tuple[int, int]]:
    """category -> (wrong, sentences)."""
    table: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for case in _rows("s2tw-cases.jsonl"):
        table[case["category"]][0] += convert(case["simplified"]) not in case["expected"]
        table[case["category"]][1] += 1
    return {k: tuple(v) for k, v in table.items()}


def phone_scores(redact) -> dict[str, tuple[int, int, int]]:
    """category -> (phones found whole, phones, redactions that were not a listed phone)."""
    table: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in _rows("tw-phones.jsonl"):
        out, counts = redact(row["text"], ("phone",))
        found = sum(out.count(phone) < row["text"].count(phone) for phone in row["phones"])
        cell = table[row["category"]]
        cell[0] += found
        cell[1] += len(row["phones"])
        cell[2] += max(0, counts["phone"] - found)
    return {k: tuple(v) for k, v in table.items()}


def _module_at(revision: str, path: str, name: str):
    """A module as it was at a git revision (taide's own code before this work, for the comparison)."""
    source = subprocess.run(["git", "show", f"{revision}:{path}"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout
    file = Path(tempfile.mkdtemp()) / f"{name}.py"
    file.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="01c1c65", help="git revision of taide's pii stage to compare with")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    from taide.data.pii import redact_pii
    from taide.data.script import WordConverter, _opencc

    plain, by_word = conversion_errors(_opencc("s2twp").convert), conversion_errors(WordConverter().convert)
    lines = ["## Taiwan-correct cleaning: Simplified → Traditional and Taiwan phone numbers", "",
             "Test sets written for taide (`tests/data/s2tw-cases.jsonl`, `tests/data/tw-phones.jsonl`); the suite "
             "asserts the same figures.", "",
             "Simplified → Taiwan Traditional, sentences converted wrongly (a sentence is right when it equals one of "
             "its accepted Taiwan forms):", "",
             "| category | sentences | OpenCC `s2twp` over the text (before) | word by word (taide now) |",
             "|---|---:|---:|---:|"]
    for category in plain:
        wrong, n = plain[category]
        lines.append(f"| {category} | {n} | {wrong} ({wrong / n:.0%}) | {by_word[category][0]} "
                     f"({by_word[category][0] / n:.0%}) |")
    total = sum(n for _, n in plain.values())
    before, after = sum(w for w, _ in plain.values()), sum(w for w, _ in by_word.values())
    lines += [f"| **all** | {total} | **{before} ({before / total:.0%})** | **{after} ({after / total:.0%})** |", "",
              "What word by word still gets wrong: single characters whose Traditional form depends on the meaning "
              "(衣服干了 → 乾, 头发松了 → 鬆). OpenCC over the whole text gets 头发松了 right, through a phrase "
              "(发松 → 髮鬆) that crosses the word boundary 头发|松: the one case where matching across words "
              "helped.", ""]

    old = _module_at(args.before, "src/taide/data/pii.py", "pii_before")
    now, then = phone_scores(redact_pii), phone_scores(old.redact_pii)
    lines += ["Taiwan phone numbers (`pii` stage), found whole / phones, and redactions of anything else:", "",
              f"| category | phones | found, before ({args.before}) | wrong, before | found, now | wrong, now |",
              "|---|---:|---:|---:|---:|---:|"]
    for category in now:
        f0, n, w0 = then[category]
        f1, _, w1 = now[category]
        recall = lambda f: f"{f} ({f / n:.0%})" if n else "–"  # noqa: E731
        lines.append(f"| {category} | {n} | {recall(f0)} | {w0} | {recall(f1)} | {w1} |")
    phones = sum(v[1] for v in now.values())
    f0, f1 = sum(v[0] for v in then.values()), sum(v[0] for v in now.values())
    w0, w1 = sum(v[2] for v in then.values()), sum(v[2] for v in now.values())
    lines += [f"| **all** | {phones} | **{f0} ({f0 / phones:.1%})** | {w0} | **{f1} ({f1 / phones:.1%})** | {w1} |", "",
              "Precision now: " + (f"{f1 / (f1 + w1):.1%}" if f1 + w1 else "–") + f" ({w1} wrong of {f1 + w1} "
              "redactions).", "", "Reproduce: `.venv/bin/python -m bench.taiwan_cleaning`"]
    publish("taiwan-cleaning", "\n".join(lines), write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
