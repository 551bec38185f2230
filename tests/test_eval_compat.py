"""taide-bench-eval compatibility: its files are read as they are, and the fixture's average differs between the
two scorers for exactly the documented reasons (score parsing, failures, the zh→en template)."""

from __future__ import annotations

import pytest
from conftest import write_jsonl

from taide.engines.base import Chunk, ChunkStream, Completion, Engine
from taide.eval.bench import judge_responses
from taide.eval.compat import public_average, public_score
from taide.eval.judge import Judge, RetryPolicy
from taide.models import ModelRef

REPLIES = {  # the judge's reply for each answer
    "ANS-1": "理由：正確。\n評分：8分",  # full-width colon and a unit: the public scorer reads 0
    "ANS-2": "理由：尚可。\nScore: 6\n",  # ends in a blank line: the public scorer reads 0
    "ANS-3": "理由：很好。\n評分: 9",  # read alike
    "ANS-4": "這份譯文我無法評分。",  # no score at all: a failure for taide, a 0 for the public scorer
}


class ScriptedJudge(Engine):
    name = "scripted"

    def __init__(self):
        self.model = ModelRef(reference="scripted", name="scripted-judge", kind="stub")
        self.systems: list[str] = []

    def open_stream(self, messages, params=None):
        self.systems.append(messages[0]["content"])
        text = next(reply for marker, reply in REPLIES.items() if marker in messages[1]["content"])
        done = Completion(text, "stop", 0, 0, 0.0, 0.0)
        return ChunkStream(iter([Chunk(text, done)]), lambda: None)

    def open_completion(self, prompt, params=None):
        raise NotImplementedError


@pytest.mark.parametrize("reply, score", [("評分: 7", 7.0), ("Score:8.5", 8.5), ("評分：8分", 0.0), ("評分: 8\n", 0.0),
                                          ("評分: 8分", 0.0), ("", 0.0), ("評分: __import__('os')", 0.0)])
def test_public_parsing_is_emulated_without_evaluating_text(reply, score):
    assert public_score(reply) == score


def test_the_fixture_average_differs_for_exactly_the_documented_reasons(tmp_path):
    bench, run = tmp_path / "bench", tmp_path / "run"
    bench.mkdir()
    run.mkdir()
    # The public tool's own layout: essay.jsonl (our article), rows {qid, prompt, resp} with resp the reference,
    # and resp files of {qid, model, prompt, resp}.
    write_jsonl(bench / "essay.jsonl", [{"qid": i, "prompt": f"題目{i}", "resp": f"參考{i}"} for i in (1, 2, 3)])
    write_jsonl(bench / "zh2en.jsonl", [{"qid": 4, "prompt": "翻譯：你好", "resp": "Hello"}])
    write_jsonl(run / "resp_essay.jsonl", [{"qid": i, "model": "m", "prompt": f"題目{i}", "resp": f"ANS-{i}"}
                                           for i in (1, 2, 3)])
    write_jsonl(run / "resp_zh2en.jsonl", [{"qid": 4, "model": "m", "prompt": "翻譯：你好", "resp": "ANS-4"}])
    engine = ScriptedJudge()
    ours = judge_responses(run, Judge(engine, policy=RetryPolicy(parse_retries=1)), bench)
    public = public_average(run)

    assert ours["tasks"]["article"]["mean"] == pytest.approx((8 + 6 + 9) / 3, abs=1e-4)
    assert ours["tasks"]["zh2en"]["mean"] is None and ours["tasks"]["zh2en"]["failed"] == 1  # left out, not 0
    assert ours["average"] == pytest.approx((8 + 6 + 9) / 3, abs=1e-4)
    assert public["tasks"] == {"article": pytest.approx(9 / 3), "zh2en": 0.0}
    assert public["average"] == pytest.approx((3 + 0) / 2)
    assert {(d["qid"], d["taide"], d["public"]) for d in public["differ"]} == {
        (1, 8.0, 0.0), (2, 6.0, 0.0), (4, None, 0.0)}
    # zh→en is judged for English, not with a Chinese-target template
    assert any("中文翻譯成英文" in system for system in engine.systems)
