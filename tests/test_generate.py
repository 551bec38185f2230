"""`taide generate`: batched, resumable, and precise about bad input."""

from __future__ import annotations

import json

import pytest
from conftest import write_jsonl

from taide.chat.presets import TAIDE_SYSTEM_PROMPT
from taide.engines import GenerationParams
from taide.errors import InputError
from taide.generate import generate_file

PARAMS = GenerationParams(max_tokens=6, temperature=0)


def _records(n):
    return [{"id": f"q{i}", "prompt": f"第 {i} 題：請說明。", "source": "test"} for i in range(n)]


def test_generates_every_record_and_carries_fields(tiny_engine, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", _records(3) + [{"id": 7, "messages": [
        {"role": "system", "content": "簡答"}, {"role": "user", "content": "好"}]}])
    progress = []
    report = generate_file(tiny_engine, src, tmp_path / "out.jsonl", PARAMS, batch_size=2,
                           on_progress=lambda d, t: progress.append((d, t)))
    rows = [json.loads(l) for l in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["q0", "q1", "q2", 7]
    assert all(r["source"] == "test" for r in rows[:3]) and rows[3]["messages"][0]["content"] == "簡答"
    assert all(r["usage"]["completion_tokens"] == 6 and r["finish_reason"] == "length" for r in rows)
    assert report.generated == 4 and report.already_done == 0 and progress[-1] == (4, 4)
    # TAIDE-format model and no system message: the TAIDE system prompt is applied.
    with_system = tiny_engine.chat([{"role": "system", "content": TAIDE_SYSTEM_PROMPT},
                                    {"role": "user", "content": "第 0 題：請說明。"}], PARAMS)
    assert rows[0]["answer"] == with_system.text


def test_resume_skips_done_ids_and_repairs_a_torn_line(tiny_engine, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", _records(5))
    out = tmp_path / "out.jsonl"
    generate_file(tiny_engine, src, out, PARAMS, batch_size=5)
    complete = out.read_text().splitlines()
    # A crash after two records, in the middle of writing the third:
    out.write_text("\n".join(complete[:2]) + "\n" + complete[2][:25])
    report = generate_file(tiny_engine, src, out, PARAMS, batch_size=2)
    assert (report.already_done, report.generated, report.total) == (2, 3, 5)
    assert out.read_text().splitlines() == complete
    again = generate_file(tiny_engine, src, out, PARAMS)
    assert again.generated == 0 and out.read_text().splitlines() == complete


def test_a_corrupt_line_before_the_end_stops_resume_and_changes_nothing(tiny_engine, tmp_path):
    """Only a torn last line is repaired: a bad line with answers after it is an error naming file:line, and every
    answer stays on disk."""
    src = write_jsonl(tmp_path / "in.jsonl", _records(4))
    out = tmp_path / "out.jsonl"
    generate_file(tiny_engine, src, out, PARAMS, batch_size=4)
    lines = out.read_text().splitlines()
    lines[1] = lines[1][:20]
    damaged = "\n".join(lines) + "\n"
    out.write_text(damaged)
    with pytest.raises(InputError, match=r"out.jsonl:2: not a JSON object"):
        generate_file(tiny_engine, src, out, PARAMS)
    assert out.read_text() == damaged


@pytest.mark.parametrize("lines, match", [
    (['{"id": 1, "prompt": "ok"}', '{"id": 2, "prompt": '], r"in.jsonl:2: not valid JSON"),
    (['{"id": 1, "messages": [{"role": "bot", "content": "x"}]}'], r"in.jsonl:1: field messages\[0\]\.role"),
    (['{"id": 1, "prompt": "a"}', '', '{"id": 1, "prompt": "b"}'], r"in.jsonl:3: field 'id': '1' repeats line 1"),
    (['{"id": 1, "text": "a"}'], r"in.jsonl:1: needs a 'messages' list"),
    (['[1, 2]'], r"in.jsonl:1: expected a JSON object"),
    (['{"id": 1, "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}'],
     r"in.jsonl:1: .*last message is the assistant's"),
])
def test_bad_records_are_named_before_anything_runs(tiny_engine, tmp_path, lines, match):
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=match):
        generate_file(tiny_engine, src, tmp_path / "out.jsonl", PARAMS)
    assert not (tmp_path / "out.jsonl").exists()


def test_missing_input_file(tiny_engine, tmp_path):
    with pytest.raises(InputError, match="nope.jsonl: no such file"):
        generate_file(tiny_engine, tmp_path / "nope.jsonl", tmp_path / "out.jsonl", PARAMS)
