"""The engine interface on the tiny random-init model: streaming, batching, sampling controls, stop
strings, cancellation and the context-window check."""

from __future__ import annotations

import pytest
from conftest import wait_for

from taide.engines import GenerationParams, load_engine, pick_engine
from taide.engines.base import StopScanner
from taide.errors import ContextLengthError, EngineError
from taide.models import resolve_model

HELLO = [{"role": "user", "content": "你好，請介紹台灣。"}]
GREEDY = GenerationParams(max_tokens=12, temperature=0)


def test_engine_choice(tiny_model_dir, embedded_gguf):
    assert pick_engine(resolve_model(str(tiny_model_dir))) == "transformers"
    assert pick_engine(resolve_model(str(embedded_gguf))) == "llamacpp"
    assert pick_engine(resolve_model("http://127.0.0.1:9/v1")) == "openai"


def test_engine_errors(tiny_model_dir):
    with pytest.raises(EngineError, match="unknown engine 'vllm2'.*llamacpp"):
        load_engine(str(tiny_model_dir), "vllm2")
    with pytest.raises(EngineError, match="runs GGUF files"):
        load_engine(str(tiny_model_dir), "llamacpp")
    with pytest.raises(EngineError, match="talks to an endpoint"):
        load_engine(str(tiny_model_dir), "openai")


def test_greedy_is_deterministic_and_stream_matches_chat(tiny_engine):
    first = tiny_engine.chat(HELLO, GREEDY)
    assert first.completion_tokens == 12 and first.finish_reason == "length"
    assert first.prompt_tokens == tiny_engine.count_tokens(HELLO)
    chunks = list(tiny_engine.stream(HELLO, GREEDY))
    assert chunks[-1].completion is not None
    assert "".join(c.text for c in chunks) == first.text == chunks[-1].completion.text


def test_seeded_sampling_repeats_and_seeds_differ(tiny_engine):
    params = lambda seed: GenerationParams(max_tokens=16, temperature=1.0, seed=seed)  # noqa: E731
    a, b = tiny_engine.chat(HELLO, params(1)), tiny_engine.chat(HELLO, params(1))
    assert a.text == b.text
    others = {tiny_engine.chat(HELLO, params(s)).text for s in range(2, 6)}
    assert len(others | {a.text}) > 1


def test_top_k_one_is_greedy(tiny_engine):
    sampled = tiny_engine.chat(HELLO, GenerationParams(max_tokens=12, temperature=1.5, top_k=1, seed=3))
    assert sampled.text == tiny_engine.chat(HELLO, GREEDY).text


def test_batch_matches_one_by_one(tiny_engine):
    conversations = [HELLO, [{"role": "user", "content": "Hi"}],
                     [{"role": "system", "content": "簡短回答。"}, {"role": "user", "content": "一加一等於多少？多說一點。"}]]
    batched = tiny_engine.generate_batch(conversations, GREEDY)
    single = [tiny_engine.chat(c, GREEDY) for c in conversations]
    assert [r.text for r in batched] == [r.text for r in single]
    assert [r.prompt_tokens for r in batched] == [r.prompt_tokens for r in single]


def test_stop_string_ends_the_answer(tiny_engine):
    full = tiny_engine.chat(HELLO, GenerationParams(max_tokens=30, temperature=0)).text
    stop = full[5:8]
    assert stop and stop in full
    cut = tiny_engine.chat(HELLO, GenerationParams(max_tokens=30, temperature=0, stop=[stop]))
    assert cut.finish_reason == "stop" and cut.text == full[:full.index(stop)]


def test_closing_the_stream_stops_generation(tiny_engine, monkeypatch):
    calls = {"n": 0}
    forward = tiny_engine.lm.forward

    def counting(*args, **kwargs):
        calls["n"] += 1
        return forward(*args, **kwargs)

    monkeypatch.setattr(tiny_engine.lm, "forward", counting)
    stream = tiny_engine.stream(HELLO, GenerationParams(max_tokens=200, temperature=0))
    for chunk in stream:
        if chunk.text:
            break
    stream.close()
    assert calls["n"] < 10  # not the 200 it was allowed


def test_prompt_longer_than_context(tiny_engine):
    long = [{"role": "user", "content": "臺灣" * 400}]
    n = tiny_engine.count_tokens(long)
    with pytest.raises(ContextLengthError) as e:
        tiny_engine.chat(long, GenerationParams(max_tokens=8))
    assert str(n) in str(e.value) and "256" in str(e.value)


def test_prompt_plus_max_tokens_over_context(tiny_engine):
    n = tiny_engine.count_tokens(HELLO)
    with pytest.raises(ContextLengthError, match=f"{n} tokens and max_tokens asks for 300.*256.*at most {256 - n}"):
        tiny_engine.chat(HELLO, GenerationParams(max_tokens=300))
    # max_tokens=None means "up to the end of the window".
    assert tiny_engine.chat(HELLO, GenerationParams(max_tokens=None, temperature=0, stop=["\x00never"])).completion_tokens <= 256 - n


@pytest.mark.parametrize("field, value", [("temperature", -1), ("top_p", 0), ("top_k", -2), ("max_tokens", 0),
                                          ("repetition_penalty", 0), ("stop", [""])])
def test_bad_generation_params_name_the_field(field, value):
    with pytest.raises(EngineError, match=field):
        GenerationParams(**{field: value})


def test_stop_scanner_holds_back_partial_matches():
    scanner = StopScanner(["<END>", "。\n"])
    assert scanner.push("答案是 4 <E") == ("答案是 4 ", False)
    assert scanner.push("N") == ("", False)
    assert scanner.push("X") == ("<ENX", False)
    assert scanner.push("好。") == ("好", False)
    assert scanner.push("\n後面") == ("", True)
    no_stops = StopScanner([])
    assert no_stops.push("abc") == ("abc", False)


def test_detokenizer_never_splits_a_character(tiny_engine):
    text = "中華民國臺灣🙂，測試。"
    ids = tiny_engine.codec.encode_text(text)
    detok = tiny_engine.detokenizer()
    pieces = [detok.add(i) for i in ids] + [detok.flush()]
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)


@pytest.mark.slow
def test_llamacpp_reuses_a_conversations_prefix_from_copies_outside_the_kv_cache():
    """Turn 2 decodes only what turn 1 did not (and at least 64 tokens, so that it is read as fresh prompts are): its
    prompt starts with turn 1's prompt, whose cells were copied out once turn 1's prompt was read, and its greedy
    answer is the one decoded afresh. Scores never use the copies (they must not depend on what ran before). Between
    answers the KV cache is empty (cells left there would slow every later decode step), and the copies hold at
    most n_ctx tokens."""
    import llama_cpp

    from taide.engines import GenerationParams, load_engine

    greedy = GenerationParams(max_tokens=16, temperature=0)
    cached = load_engine("smollm2-135m", "llamacpp", n_ctx=1024, n_parallel=2)
    fresh = load_engine("smollm2-135m", "llamacpp", n_ctx=1024, n_parallel=2, prefix_cache=False)
    try:
        messages = [{"role": "user", "content": "Name three night markets in Taipei and say what to eat there. " * 4}]
        first = cached.chat(messages, greedy)
        messages += [{"role": "assistant", "content": first.text}, {"role": "user", "content": "And in Tainan?"}]
        second = cached.chat(messages, greedy)
        stats = cached.stats()
        assert stats["prefix_hits"] == 1
        assert stats["prefix_tokens_reused"] == min(first.prompt_tokens, second.prompt_tokens - 64)
        assert second.token_ids == fresh.chat(messages, greedy).token_ids
        assert fresh.stats()["prefix_hits"] == 0
        assert second.text and cached.loglikelihood(messages, [second.text]) == fresh.loglikelihood(messages, [second.text])
        assert cached.stats()["prefix_hits"] == 1
        for i in range(6):  # other long prompts: the oldest copies are dropped for them, nothing fails
            prompt = [{"role": "user", "content": f"Topic {i}: " + "Describe Taiwan's mountains in detail. " * 30}]
            assert cached.chat(prompt, greedy).finish_reason in ("stop", "length")
        loop = cached.loop
        assert wait_for(lambda: cached.stats()["active"] == 0)  # the last answer leaves the loop
        assert 0 < sum(len(tokens) for tokens, _ in loop.kept) <= 1024 and len(loop.kept) < 8
        assert all(llama_cpp.llama_memory_seq_pos_max(loop.memory, s) == -1 for s in range(3))  # the spare too
    finally:
        cached.close()
        fresh.close()


def test_a_vanishing_temperature_samples_like_greedy(tiny_engine):
    """temperature 1e-89 and a repetition penalty of 1e-300 (the schema fuzzer's finds) once divided the logits
    into inf and a 500: a temperature below 1e-6 is greedy, and the penalty's range ends at 0.01, where the
    extremes still sample."""
    from taide.engines import GenerationParams
    from taide.errors import EngineError

    messages = [{"role": "user", "content": "Hello"}]
    tiny = tiny_engine.chat(messages, GenerationParams(max_tokens=6, temperature=1e-89, seed=1))
    greedy = tiny_engine.chat(messages, GenerationParams(max_tokens=6, temperature=0))
    assert tiny.text == greedy.text
    with pytest.raises(EngineError, match="repetition_penalty=1e-300 must be between 0.01 and 5.0"):
        GenerationParams(repetition_penalty=1e-300)
    extreme = GenerationParams(max_tokens=6, temperature=5.0, repetition_penalty=0.01, min_p=1.0, seed=1)
    assert tiny_engine.chat(messages, extreme).finish_reason in ("stop", "length")
