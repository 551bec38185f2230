"""The data taide ships are checked as data: the SFT set keeps its rules and stays apart from every evaluation set,
and the generated evaluation prompts match their generator."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sft_check():
    spec = importlib.util.spec_from_file_location("check_sft_sample", ROOT / "scripts" / "check_sft_sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shipped_sft_set_keeps_its_rules(sft_check, capsys):
    assert sft_check.validate(sft_check.SFT) == 0
    out = capsys.readouterr().out
    assert "420 conversations" in out and "0 found" in out and out.rstrip().endswith("OK")


def _with_lines(tmp_path: Path, records: list[dict]) -> Path:
    path = tmp_path / "sft.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def test_an_evaluation_prompt_in_the_set_is_an_error(sft_check, tmp_path, capsys):
    prompt = json.loads((ROOT / "src/taide/eval/data/taiwan-prompts.jsonl").read_text(encoding="utf-8")
                        .split("\n", 1)[0])["prompt"]
    leaked = {"id": "short_qa-999", "task": "short_qa",
              "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": "好的，以下是回答。" * 4}]}
    records = [json.loads(line) for line in sft_check.SFT.read_text(encoding="utf-8").splitlines()[:20]]
    assert sft_check.validate(_with_lines(tmp_path, records + [leaked])) == 1
    out = capsys.readouterr().out
    assert "sft.jsonl:21: messages[0] is close to evaluation data taiwan-prompts.jsonl" in out
    assert "sft.jsonl:21: holds evaluation item" in out


def test_a_missing_evaluation_file_is_an_error_not_a_skip(sft_check, tmp_path, capsys):
    records = [json.loads(line) for line in sft_check.SFT.read_text(encoding="utf-8").splitlines()[:5]]
    gone = tmp_path / "heldout-pairs.jsonl"
    assert sft_check.validate(_with_lines(tmp_path, records), [*sft_check.HELDOUT[:1], gone]) == 1
    assert f"evaluation data {gone} is missing" in capsys.readouterr().out


def test_a_line_not_written_the_canonical_way_is_named(sft_check, tmp_path, capsys):
    record = json.loads(sft_check.SFT.read_text(encoding="utf-8").split("\n", 1)[0])
    path = tmp_path / "sft.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")  # \u escapes instead of the characters
    assert sft_check.validate(path) == 1
    assert "sft.jsonl:1: not written as json.dumps(record, ensure_ascii=False)" in capsys.readouterr().out


def test_the_taiwan_prompts_match_their_generator():
    done = subprocess.run([sys.executable, "scripts/make_taiwan_prompts.py", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "matches a fresh build" in done.stdout
