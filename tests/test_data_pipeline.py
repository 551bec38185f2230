"""The cleaning pipeline: every record accounted for, fields carried through, stages configurable."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED

from taide.data import DataError, build_pipeline, clean

LONG = "臺灣的夜市是觀光客必訪的地方，從士林夜市到六合夜市，每個地方都有自己的特色小吃與人情味，值得慢慢品嚐。"


def _corpus(path: Path) -> Path:
    records = [
        {"id": "a", "text": LONG, "source_url": "https://example.tw/a", "year": 2024},
        {"id": "b", "text": "ＡＢＣ１２３ " + LONG},  # full-width: normalized, then kept
        {"id": "c", "text": LONG.replace("夜市", "夜市 ", 1).replace("夜市 ", "夜市", 1)},  # same text as a
        {"id": "d", "text": "太短了。"},
        {"id": "e", "text": "聯絡我：0912-345-678，或寄信到someone@example.com.tw。" + LONG},
        {"id": "f", "content": "no text field"},
    ]
    lines = [json.dumps(r, ensure_ascii=False) for r in records] + ['{"id": "g", "text": ']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_every_record_is_accounted_for(tmp_path):
    src = _corpus(tmp_path / "corpus.jsonl")
    report = clean([src], tmp_path / "out", keep_rejected=tmp_path / "rejected")
    assert report["read"] == 7 and report["balanced"]
    assert report["kept"] == 3 and report["unreadable"] == 2
    assert report["removed"] == {"min_length:too_short": 1, "exact_dedup:duplicate": 1}
    kept = {r["id"]: r for r in map(json.loads, (tmp_path / "out/part-00000.jsonl").read_text().splitlines())}
    assert kept["a"]["source_url"] == "https://example.tw/a" and kept["a"]["year"] == 2024  # carried through
    assert kept["b"]["text"].startswith("ABC123 ")
    assert "<PHONE>" in kept["e"]["text"] and "<EMAIL>" in kept["e"]["text"]
    assert report["stages"]["pii"] == {"in": 5, "redacted_phone": 1, "redacted_email": 1}
    rejected = [json.loads(l) for l in (tmp_path / "rejected/rejected-00000.jsonl").read_text().splitlines()]
    assert {(r["id"], r["reason"]) for r in rejected} == {("c", "duplicate"), ("d", "too_short")}
    assert "corpus.jsonl:6" in report["unreadable_examples"][0] and "corpus.jsonl:7" in report["unreadable_examples"][1]
    md = (tmp_path / "out/stats.md").read_text()
    assert "7 read = 3 kept + 2 removed + 2 unreadable" in md


def test_yaml_reorders_disables_and_tunes_stages(tmp_path):
    src = _corpus(tmp_path / "corpus.jsonl")
    config = tmp_path / "pipeline.yaml"
    config.write_text("pipeline:\n  - normalize\n  - stage: min_length\n    min_chars: 5\n"
                      "  - stage: pii\n    kinds: [email]\n  - stage: exact_dedup\n    enabled: false\n")
    report = clean([src], tmp_path / "out", config=config)
    assert list(report["stages"]) == ["normalize", "min_length", "pii"]
    assert report["kept"] == 4 and report["removed"] == {"min_length:too_short": 1}
    kept = (tmp_path / "out/part-00000.jsonl").read_text()
    assert "0912-345-678" in kept and "<EMAIL>" in kept


@pytest.mark.parametrize("config, match", [
    ([{"stage": "translate"}], r"pipeline\[0\]\.stage: 'translate'"),
    ([{"stage": "min_length", "min_words": 3}], r"pipeline\[0\] \(min_length\).*min_words"),
    ([{"stage": "pii", "kinds": ["ssn"]}], r"pii\.kinds: unknown \['ssn'\]"),
])
def test_bad_configuration_is_named(config, match):
    with pytest.raises(DataError, match=match):
        build_pipeline(config)


def test_bad_yaml_names_the_line(tmp_path):
    config = tmp_path / "p.yaml"
    config.write_text("pipeline:\n  - normalize\n  - [unclosed\n")
    with pytest.raises(DataError, match=r"p.yaml:\d+: invalid YAML"):
        clean([_corpus(tmp_path / "c.jsonl")], tmp_path / "out", config=config)


def test_non_utf8_input_is_counted_not_lost(tmp_path):
    src = tmp_path / "big5.jsonl"
    src.write_bytes(json.dumps({"id": "x", "text": LONG}, ensure_ascii=False).encode("big5") + b"\n")
    report = clean([src], tmp_path / "out")
    assert report["read"] == 1 and report["unreadable"] == 1 and "not UTF-8" in report["unreadable_examples"][0]


def test_cli_clean(tmp_path):
    src = _corpus(tmp_path / "corpus.jsonl")
    gz = tmp_path / "corpus.jsonl.gz"
    gz.write_bytes(gzip.compress(src.read_bytes()))
    taide = str(Path(sys.executable).with_name("taide"))
    result = subprocess.run([taide, "data", "clean", str(gz), "-o", str(tmp_path / "out")], capture_output=True,
                            text=True, env={**os.environ, "COLUMNS": "200"}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "7 read = 3 kept + 2 removed + 2 unreadable" in result.stdout
    missing = subprocess.run([taide, "data", "clean", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "o2")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "nope.jsonl: no such file" in missing.stderr


@pytest.mark.skipif(not (SHARED / "data/tw-laws/laws-zh.jsonl.gz").is_file(), reason="../shared is absent")
def test_law_corpus_loses_at_most_one_percent_outside_dedup(tmp_path):
    report = clean([SHARED / "data/tw-laws/laws-zh.jsonl.gz"], tmp_path / "out")
    assert report["balanced"] and report["unreadable"] == 0
    outside_dedup = sum(v for k, v in report["removed"].items() if not k.startswith("exact_dedup"))
    assert outside_dedup <= 0.01 * report["read"]
