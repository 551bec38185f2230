"""Which HTML-to-text extractor the `html` stage should use: quality and speed on the sample corpus's
pages, whose main text is known (the generator keeps it beside each page).

Quality is measured on character 5-grams: recall = share of the main text's 5-grams found in the
extraction; precision = share of the extraction's 5-grams that belong to the main text (the rest is
navigation, footers, ads, cookie banners, script text that leaked). Speed in MB/s of HTML.

    .venv/bin/python -m bench.html_extractors
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from bench.report import write_section

ROOT = Path(__file__).resolve().parents[1]
REPEAT = 20


def _grams(text: str, n: int = 5) -> set[str]:
    text = "".join(text.split())
    return {text[i:i + n] for i in range(len(text) - n + 1)}


def main() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    from make_sample_corpus import generate

    from taide.data.noise import EXTRACTORS

    _, docs = generate()
    pages = [d for d in docs if d.raw is not None and d.kind not in ("html_boilerplate_only",)]
    size = sum(len(d.raw.encode("utf-8")) for d in pages)
    rows = []
    for name, extract in EXTRACTORS.items():
        recall, precision = [], []
        for d in pages:
            got, want = _grams(extract(d.raw)), _grams(d.text)
            recall.append(len(got & want) / max(len(want), 1))
            precision.append(len(got & want) / max(len(got), 1))
        start = time.perf_counter()
        for _ in range(REPEAT):
            for d in pages:
                extract(d.raw)
        seconds = time.perf_counter() - start
        rows.append((name, sum(recall) / len(pages), min(recall), sum(precision) / len(pages), min(precision),
                     size * REPEAT / seconds / 1e6))
    anchor = next(r for r in rows if r[0] == "trafilatura")
    lines = [f"{len(pages)} pages of the sample corpus ({size / 1e3:.0f} kB), each extracted {REPEAT}× for speed.",
             "", "| extractor | recall mean | recall worst | precision mean | precision worst | MB/s | speed vs trafilatura |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r_mean, r_min, p_mean, p_min, mbs in rows:
        lines.append(f"| {name} | {r_mean:.1%} | {r_min:.1%} | {p_mean:.1%} | {p_min:.1%} | {mbs:.1f} | "
                     f"{mbs / anchor[5]:.1f}× |")
    lines += ["", "Reproduce: `.venv/bin/python -m bench.html_extractors`"]
    body = "## HTML to main text: which extractor\n\n" + "\n".join(lines)
    print(body)
    write_section("html-extractors", body)


if __name__ == "__main__":
    main()
