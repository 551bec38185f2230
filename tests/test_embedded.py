"""The real embedded default (SmolLM2-135M-Instruct) on both CPU engines."""

from __future__ import annotations

import pytest

from taide.engines import GenerationParams

pytestmark = pytest.mark.slow

PROMPTS = [
    [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}],
    [{"role": "system", "content": "You are a concise assistant."}, {"role": "user", "content": "Name three colors."}],
]
TOKENIZER_SET = ["台灣最高的山是玉山，海拔 3,952 公尺。", "The Legislative Yuan (立法院) meets on Tuesdays.",
                 "emoji 🙂🇹🇼 and symbols <|im_end|> <|eot_id|> \\n\t  spaces", "中華民國憲法第一條：「中華民國基於三民主義」",
                 "ｆｕｌｌ－ｗｉｄｔｈ ＡＢＣ１２３", "", "  leading and trailing  "]


@pytest.fixture(scope="module")
def smol_llamacpp_exact():
    """llama.cpp with flash attention off: its sums are then ordered like transformers', so greedy decoding
    follows the reference through near-ties too."""
    from taide.engines import load_engine

    engine = load_engine("smollm2-135m", "llamacpp", n_ctx=2048, n_parallel=1, flash_attn=False)
    yield engine
    engine.close()


@pytest.mark.parametrize("messages", PROMPTS)
def test_both_cpu_engines_give_the_same_greedy_continuation(smol_llamacpp_exact, smol_transformers, messages):
    params = GenerationParams(max_tokens=16, temperature=0)
    assert smol_llamacpp_exact.prompt_ids(messages) == smol_transformers.prompt_ids(messages)
    fast, reference = smol_llamacpp_exact.chat(messages, params), smol_transformers.chat(messages, params)
    assert fast.text == reference.text
    assert fast.completion_tokens == reference.completion_tokens > 3


def test_default_llamacpp_matches_the_reference_on_a_short_answer(smol_llamacpp, smol_transformers):
    params = GenerationParams(max_tokens=16, temperature=0)
    assert smol_llamacpp.chat(PROMPTS[0], params).text == smol_transformers.chat(PROMPTS[0], params).text


def test_tokenizers_agree(smol_llamacpp, smol_transformers):
    for text in TOKENIZER_SET:
        assert smol_llamacpp.codec.encode_text(text) == smol_transformers.codec.encode_text(text), text
    assert set(smol_llamacpp.codec.control_tokens()) >= {"<|im_start|>", "<|im_end|>"}
    for token in ("<|im_start|>", "<|im_end|>"):
        assert smol_llamacpp.codec.token_id(token) == smol_transformers.codec.token_id(token)


def test_end_of_turn_stops_generation(smol_llamacpp):
    answer = smol_llamacpp.chat(PROMPTS[0], GenerationParams(max_tokens=64, temperature=0))
    assert answer.finish_reason == "stop" and answer.completion_tokens < 64
    assert "Paris" in answer.text and "<|im_end|>" not in answer.text


def test_llamacpp_streams_chinese_without_broken_characters(smol_llamacpp):
    chunks = list(smol_llamacpp.stream([{"role": "user", "content": "請用中文說你好。"}],
                                       GenerationParams(max_tokens=24, temperature=0.8, seed=7)))
    text = "".join(c.text for c in chunks)
    assert text == chunks[-1].completion.text
    assert all("\ufffd" not in c.text for c in chunks)


def test_llamacpp_context_window(smol_llamacpp):
    from taide.errors import ContextLengthError

    with pytest.raises(ContextLengthError, match="context window is 2048"):
        smol_llamacpp.chat([{"role": "user", "content": "word " * 3000}], GenerationParams(max_tokens=8))


def test_both_engines_score_continuations_alike(smol_llamacpp, smol_transformers):
    """Log-likelihoods (multiple-choice evaluation) agree across engines and prefer the likely answer."""
    messages = [{"role": "user", "content": "What is the capital of France? Answer with one word."}]
    options = ["Paris", "Banana", "The capital of France is Paris."]
    by_llama = smol_llamacpp.loglikelihood(messages, options)
    by_hf = smol_transformers.loglikelihood(messages, options)
    assert by_hf[0] > by_hf[1] and by_llama[0] > by_llama[1]
    assert all(v < 0 for v in by_hf)
    # llama.cpp multiplies Q4 weights with activations rounded to 8 bits, transformers in float32 with the same weights
    # dequantized: on some CPUs' kernels that alone moves a one-token score by 0.3 nats
    for a, b in zip(by_llama, by_hf):
        assert abs(a - b) < 0.15 * abs(b) + 0.1
    raw = smol_transformers.loglikelihood("The capital of France is", [" Paris", " Tokyo"])
    assert raw[0] > raw[1]


def test_scoring_long_prompts_that_fill_the_batch(smol_llamacpp, smol_transformers):
    """A prompt longer than llama.cpp's batch (512 tokens) is scored across several steps, for one-token
    choices (one pass) and for longer continuations (one sequence each), alike on both engines."""
    context = "台灣的法律規定如下。" * 120 + "問題：以下哪一個是正確答案？答案："
    for options in (["A", "B", "C", "D"], ["甲選項", "乙選項"]):
        by_llama = smol_llamacpp.loglikelihood(context, options)
        by_hf = smol_transformers.loglikelihood(context, options)
        assert len(by_llama) == len(options)
        for a, b in zip(by_llama, by_hf):
            assert abs(a - b) < 0.05 * abs(b) + 0.1
