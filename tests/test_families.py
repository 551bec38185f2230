"""Bring your own base: every family Taiwan chat models are built on, through the whole chain.

For each family a tiny random-init model with the family's real chat template and tokenizer kind (``models/tiny``)
goes through info → train sft (full, and LoRA) on conversations with system messages and several turns → export
to GGUF → verify against transformers → chat on both engines. Every conversation must train; the trained
directory must carry its base's template and render exactly as transformers' ``apply_chat_template``; each
assistant turn's trained tokens must be exactly what the model writes after its generation prompt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CORPUS, write_jsonl

from taide.models.tiny import FAMILIES, family_template, tiny_model

SYSTEM = "你是一個來自台灣的AI助理。"
CONVERSATIONS = [
    [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "台灣最高的山是哪一座？"},
     {"role": "assistant", "content": "玉山，海拔 3,952 公尺。"}],
    [{"role": "user", "content": "請把「早安」翻成英文。"}, {"role": "assistant", "content": "Good morning."}],
    [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "滷肉飯是什麼？"},
     {"role": "assistant", "content": "一種台灣小吃。"}, {"role": "user", "content": "哪裡吃得到？"},
     {"role": "assistant", "content": "夜市和小吃店都有。"}],
    [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "你好！"},
     {"role": "user", "content": "Thanks"}, {"role": "assistant", "content": "不客氣。"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "1+1=?"},
     {"role": "assistant", "content": "2"}, {"role": "user", "content": "2+2=?"}, {"role": "assistant", "content": "4"},
     {"role": "user", "content": "3+3=?"}, {"role": "assistant", "content": "6"}],
    [{"role": "user", "content": "立法院在哪裡？"}, {"role": "assistant", "content": "在臺北市中正區。"}],
    [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "寫一句問候語。"},
     {"role": "assistant", "content": "祝您有美好的一天！"}],
    [{"role": "user", "content": "珍珠奶茶"}, {"role": "assistant", "content": "台灣的手搖飲。"}],
]


def answers(messages: list[dict]) -> list[str]:
    return [m["content"] for m in messages if m["role"] == "assistant"]


@pytest.fixture(scope="module")
def sft_data(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("sft") / "conversations.jsonl",
                       [{"messages": m} for m in CONVERSATIONS])


@pytest.fixture(scope="module", params=list(FAMILIES))
def base(request, tmp_path_factory) -> tuple[str, Path]:
    family = request.param
    texts = CORPUS * 4 + [m["content"] for c in CONVERSATIONS for m in c] * 2
    path = tiny_model(family, tmp_path_factory.mktemp(family) / "base", texts, vocab_size=600,
                      hidden=256 if family == "gemma3" else 128, layers=None if family == "gemma3" else 2)
    return family, path


def test_info_names_the_family_and_its_own_template(base):
    from taide.models import resolve_model

    family, path = base
    ref = resolve_model(path)
    assert ref.chat_template == family_template(family)
    # the formats written in code stand in only where they render as the model's template, byte for byte
    assert ref.chat_format == {"llama3": "llama3", "gemma3": "gemma"}.get(family, "template")


def test_every_answer_is_trained_in_the_context_the_model_answers_it_in(base):
    """Per conversation: each sequence is the whole conversation as transformers tokenizes it, or a prompt as
    transformers tokenizes it (the messages before an answer, with the generation prompt) followed by the answer;
    each trained run starts right after such a prompt and decodes to what the model writes: the content and the end
    of its turn (for Qwen 3 after the empty think block its template writes first). Every answer is trained once."""
    from transformers import AutoTokenizer

    from taide.chat.formats import chat_format_for
    from taide.models import resolve_model
    from taide.models.loading import HFCodec

    family, path = base
    tok = AutoTokenizer.from_pretrained(path)
    ref = resolve_model(path)
    fmt = chat_format_for(ref.chat_format, tok.chat_template, tok.bos_token, tok.eos_token)
    codec = HFCodec(tok)
    think = "<think>\n\n</think>\n\n" if family == "qwen3" else ""
    end = {"llama3": "<|eot_id|>", "llama3.1": "<|eot_id|>", "gemma3": "<end_of_turn>", "qwen2": "<|im_end|>",
           "qwen3": "<|im_end|>", "mistral": "</s>", "phi3": "<|end|>"}[family]
    for messages in CONVERSATIONS:
        whole = tok.apply_chat_template(messages, tokenize=True, return_dict=False)
        prompts = [tok.apply_chat_template(messages[:i], tokenize=True, add_generation_prompt=True, return_dict=False)
                   for i, m in enumerate(messages) if m["role"] == "assistant"]
        learned = []
        for ids, mask in fmt.training_sequences(messages, codec):
            starts = [k for k in range(len(ids)) if mask[k] and (k == 0 or not mask[k - 1])]
            assert ids == whole or (len(starts) == 1 and ids[:starts[0]] in prompts), (family, messages)
            for k in starts:
                assert ids[:k] in prompts, (family, tok.decode(ids[:k]))
                stop = next((j for j in range(k, len(ids)) if not mask[j]), len(ids))
                learned.append(tok.decode(ids[k:stop], skip_special_tokens=False))
        assert sorted(learned) == sorted(f"{think}{a}{end}" for a in answers(messages)), (family, learned)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_sft_keeps_every_conversation_and_the_base_template(base, sft_data, tmp_path, lora, capfd):
    from transformers import AutoTokenizer

    from taide.train import TrainConfig, run_train

    family, path = base
    config = TrainConfig(mode="sft", model=str(path), data=[str(sft_data)], out=str(tmp_path / "run"), seq_len=256,
                         global_batch_tokens=256, micro_batch_size=1, max_steps=2, lr=1e-3, warmup_steps=1,
                         holdout_fraction=0.0, dtype="float32", lora={"r": 4, "alpha": 8} if lora else None)
    result = run_train(config)
    assert f"read {len(CONVERSATIONS)} messages conversations from {sft_data}" in capfd.readouterr().err
    summary = json.loads((tmp_path / "run" / "data.json").read_text())
    assert summary["bad_records"] == 0 and not summary["conversations"]["left_out"]
    assert summary["conversations"]["sources"][0]["conversations"] == len(CONVERSATIONS)
    assert (result.out / "chat_template.jinja").read_text(encoding="utf-8") == family_template(family)
    trained, original = AutoTokenizer.from_pretrained(result.out), AutoTokenizer.from_pretrained(path)
    for messages in CONVERSATIONS:
        for prompt in (True, False):
            assert trained.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt) == \
                original.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)


def test_export_verify_and_chat_on_both_engines(base, tmp_path):
    """f16 GGUF in llama.cpp's architecture for the family; verify (tokenizer, metadata, greedy, log-probabilities)
    passes; a chat on the GGUF answers with the tokens transformers gives on the source."""
    from taide.engines import GenerationParams, load_engine
    from taide.export import export_model, verify_gguf

    family, path = base
    result = export_model(path, "gguf", "f16", tmp_path)
    report = verify_gguf(result.path, str(path))
    assert report.ok, report.summary()
    assert not report.tokenizer_mismatches and report.top1_agreement >= 0.95
    params = GenerationParams(max_tokens=8, temperature=0.0)
    messages = CONVERSATIONS[2][:4]
    replies, scores = [], []
    for reference, engine_name in ((result.path, "llamacpp"), (path, "transformers")):
        engine = load_engine(str(reference), engine_name)
        try:
            replies.append(engine.chat(messages, params).token_ids)
            # what `taide eval mc` asks of an engine: each choice's log-probability after the question
            scores.append(engine.loglikelihood(messages[:2], ["夜市", "玉山", "Good morning."]))
        finally:
            engine.close()
    assert replies[0] == replies[1] and len(replies[0]) > 0
    assert scores[0] == pytest.approx(scores[1], abs=0.01)


def test_a_family_llamacpp_cannot_express_is_refused_before_any_work(tmp_path):
    from taide.export import ExportError, export_model

    path = tiny_model("llama3", tmp_path / "m", CORPUS * 4, vocab_size=300, hidden=64, layers=1)
    config = json.loads((path / "config.json").read_text())
    config.update(model_type="olmo2", architectures=["Olmo2ForCausalLM"])
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExportError, match=r"model_type 'olmo2' .* cannot be exported to GGUF by taide; supported: "
                                          r".*qwen3.*llama.cpp's own converter"):
        export_model(path, "gguf", "f16", tmp_path / "out")
    assert not (tmp_path / "out").exists()
