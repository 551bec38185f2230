"""scripts/make_sample_corpus.py rebuilds the shipped sample byte for byte from its data file, and says
which file and line is wrong when that file is missing or malformed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("zstandard")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "make_sample_corpus.py"
DATA = ROOT / "scripts" / "sample_corpus_base.jsonl"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--check", *args], cwd=ROOT, capture_output=True, text=True,
                          check=False, timeout=120, stdin=subprocess.DEVNULL)


def test_check_passes_on_the_shipped_sample():
    done = run()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "matches a fresh build" in done.stdout
    assert "PROBLEM" not in done.stdout


def test_missing_data_file_fails_clearly(tmp_path):
    missing = tmp_path / "nowhere.jsonl"
    done = run("--data", str(missing))
    assert done.returncode == 1
    assert str(missing) in done.stderr and "Traceback" not in done.stderr


def test_malformed_line_is_named(tmp_path):
    lines = DATA.read_text(encoding="utf-8").split("\n")
    lines[4] = lines[4][:-1]  # the closing brace of line 5
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines), encoding="utf-8")
    done = run("--data", str(bad))
    assert done.returncode == 1
    assert f"{bad} line 5: not valid JSON" in done.stderr and "Traceback" not in done.stderr
