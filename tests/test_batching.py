"""Local engines decode concurrent requests together, and a cancelled request stops costing compute."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import wait_for

from taide.engines import GenerationParams

QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]




def test_transformers_batch_runs_in_one_decode(tiny_engine):
    params = GenerationParams(max_tokens=10, temperature=0)
    before = tiny_engine.stats()
    results = tiny_engine.generate_batch([QUESTION] * 4, params)
    assert wait_for(lambda: tiny_engine.stats()["active"] == 0)
    after = tiny_engine.stats()
    assert len({r.text for r in results}) == 1
    assert after["steps"] - before["steps"] == 10  # four answers of 10 tokens in 10 steps
    assert after["finished"] - before["finished"] == 4


def test_cancel_from_another_thread(tiny_engine):
    handle = tiny_engine.open_stream(QUESTION, GenerationParams(max_tokens=180, temperature=0))
    cancelled_before = tiny_engine.stats()["cancelled"]
    first = next(handle)
    threading.Timer(0.05, handle.cancel).start()
    rest = list(handle)
    assert rest[-1].completion.finish_reason == "cancelled"
    assert rest[-1].completion.completion_tokens < 180
    assert wait_for(lambda: tiny_engine.stats()["cancelled"] == cancelled_before + 1)
    assert wait_for(lambda: tiny_engine.stats()["active"] == 0)
    assert first.text is not None


@pytest.mark.slow
def test_llamacpp_slots_decode_concurrent_streams_together(smol_llamacpp):
    params = GenerationParams(max_tokens=24, temperature=0)
    alone = smol_llamacpp.chat(QUESTION, params)
    before = smol_llamacpp.stats()
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda _: smol_llamacpp.chat(QUESTION, params), range(8)))
    assert wait_for(lambda: smol_llamacpp.stats()["active"] == 0)
    after = smol_llamacpp.stats()
    assert {r.text for r in together} == {alone.text}
    tokens = after["tokens"] - before["tokens"]
    assert alone.finish_reason == "stop"
    assert tokens == 8 * (alone.completion_tokens + 1)  # the loop also counts each end-of-turn token it decoded
    assert after["steps"] - before["steps"] < tokens / 2  # one llama_decode serves many sequences


@pytest.mark.slow
def test_llamacpp_mixed_parameters_in_one_batch(smol_llamacpp):
    greedy = GenerationParams(max_tokens=16, temperature=0)
    sampled = GenerationParams(max_tokens=16, temperature=1.0, seed=11)
    alone_greedy, alone_sampled = smol_llamacpp.chat(QUESTION, greedy), smol_llamacpp.chat(QUESTION, sampled)
    with ThreadPoolExecutor(4) as pool:
        mixed = list(pool.map(lambda p: smol_llamacpp.chat(QUESTION, p), [greedy, sampled, greedy, sampled]))
    # Greedy rows are unaffected by their neighbours. Sampled rows are not compared with the lone run: a
    # batch changes the last bits of the logits, which can move a seeded draw (as in vLLM and llama.cpp).
    assert mixed[0].text == mixed[2].text == alone_greedy.text
    assert all(m.completion_tokens > 0 for m in mixed) and alone_sampled.completion_tokens > 0


@pytest.mark.slow
def test_llamacpp_cancel_frees_the_slot(smol_llamacpp):
    handle = smol_llamacpp.open_stream(QUESTION + [{"role": "assistant", "content": "Paris."},
                                                   {"role": "user", "content": "Now write a very long essay."}],
                                       GenerationParams(max_tokens=1000, temperature=0.8, seed=1))
    before = smol_llamacpp.stats()
    next(handle)
    handle.cancel()
    list(handle)
    assert wait_for(lambda: smol_llamacpp.stats()["active"] == 0)
    after = smol_llamacpp.stats()
    assert after["cancelled"] == before["cancelled"] + 1
    assert after["tokens"] - before["tokens"] < 200
