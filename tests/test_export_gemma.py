"""taide export for Gemma 3: HF (Gemma3ForCausalLM, or the text model of Gemma3ForConditionalGeneration) → GGUF
with llama.cpp's ``gemma3`` architecture, checked against transformers.

A tiny random Gemma 3 built here (6 layers: five sliding, one global, as Gemma 3's pattern has them; a window of
16 tokens, far shorter than the texts scored; random norm weights, so the ``1 + w`` conversion shows) with a
byte-fallback BPE tokenizer in Gemma's shape (``▁`` for spaces, ``<0xNN>`` byte tokens, Gemma's control tokens)
goes through f16, q8_0 and q4_k_m. The real Gemma 3 vocabulary (262K tokens, read from the embedded
google/gemma-3-270m GGUF) is checked against llama.cpp's own conversion of it in a slow test."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import CORPUS
from taide.export import ExportError, export_model, verify_gguf
from taide.export.verify import TOKENIZER_TEXTS, LlamaCppScorer, TransformersScorer
from taide.models.tiny import GEMMA3_SPECIALS, tiny_model
from test_export import CONVERSATIONS, TAIDE_PROMPT, go_render, gguf_fields

SCORES_KEYS = ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type")


def build_tiny_gemma3(path: Path, seed: int = 0, **config) -> Path:
    """taide's tiny Gemma 3 (6 layers, hidden 256, so q4_k_m gets real K-quants; a byte-fallback BPE tokenizer
    trained here) with random norm weights: HF initialises Gemma's norms at 0 (a multiplier of 1), and the "+1"
    conversion should matter."""
    import torch
    from transformers import Gemma3ForCausalLM

    tiny_model("gemma3", path, CORPUS * 4, vocab_size=600, seed=seed, **config)
    model = Gemma3ForCausalLM.from_pretrained(path)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_(0.0, 0.5)
    model.save_pretrained(path)
    return path


def _edit_config(src: Path, dst: Path, **changes) -> Path:
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    config.update(changes)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


@pytest.fixture(scope="module")
def tiny_gemma(tmp_path_factory) -> Path:
    return build_tiny_gemma3(tmp_path_factory.mktemp("tiny-gemma3") / "hf")


@pytest.fixture(scope="module")
def gemma_ref(tiny_gemma):
    from taide.engines import load_engine

    engine = load_engine(str(tiny_gemma), "transformers")
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def gemma_ggufs(tiny_gemma, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("gemma-ggufs")
    return {q: export_model(tiny_gemma, "gguf", q, out).path for q in ("f16", "q8_0", "q4_k_m")}


# --- round trip ---------------------------------------------------------------------------------------

def test_f16_gguf_matches_transformers(gemma_ggufs, gemma_ref):
    report = verify_gguf(gemma_ggufs["f16"], gemma_ref.model.reference, reference_engine=gemma_ref)
    assert report.ok, report.summary()
    assert not report.tokenizer_mismatches
    assert all(report.metadata.values()) and "llamacpp_template_render" in report.metadata, report.metadata
    assert all(g.identical for g in report.greedy) and sum(len(g.gguf) for g in report.greedy) > 40
    assert report.scored_tokens > 200  # far past the 16-token sliding window
    assert report.logprob_mean_diff < 0.002 and report.logprob_max_diff < 0.01 and report.top1_agreement >= 0.95


@pytest.mark.parametrize("quant", ["f16", "q8_0"])
def test_prefix_cache_keeps_greedy_answers_with_a_sliding_window(gemma_ggufs, quant):
    """The tiny Gemma's window is 16 tokens; every prompt here is longer than 64 (shorter ones are not cached). With
    the prefix cache, the next turn of a conversation goes on from the copy of the last turn's prompt, an edited
    question goes back inside a copy (more than a window before its end), a repeated prompt reuses all of a copy but
    its last 64 tokens, and a prompt sharing only the chat template's first tokens reuses those: every greedy answer
    is the one decoded afresh, token for token (f16, and q8_0 as `taide build` exports)."""
    from taide.engines import GenerationParams, load_engine

    greedy = GenerationParams(max_tokens=24, temperature=0)
    question = "請用三句話介紹台灣的夜市文化，並說明最有名的小吃。" * 2

    def session(engine) -> list[list[int]]:
        answers, messages = [], []
        for turn in (question, "Tell me more about the night markets of Tainan, in detail.", "還有呢？" * 6):
            messages.append({"role": "user", "content": turn})
            answer = engine.chat(messages, greedy)
            answers.append(answer.token_ids)
            messages.append({"role": "assistant", "content": answer.text})
        edited = messages[:4] + [{"role": "user", "content": "What about Hualien? " * 4}]
        answers.append(engine.chat(edited, greedy).token_ids)
        answers.append(engine.chat(edited, greedy).token_ids)
        answers.append(engine.chat([{"role": "user", "content": "The Legislative Yuan is " * 12}], greedy).token_ids)
        return answers

    cached = load_engine(str(gemma_ggufs[quant]), "llamacpp", n_ctx=512, n_parallel=2)
    fresh = load_engine(str(gemma_ggufs[quant]), "llamacpp", n_ctx=512, n_parallel=2, prefix_cache=False)
    try:
        assert cached.loop.window == 16
        with_cache, without = session(cached), session(fresh)
        assert all(len(a) > 8 for a in without)
        assert with_cache == without
        stats = cached.stats()
        assert stats["prefix_hits"] == 5 and stats["prefix_tokens_reused"] > 200, stats
        assert fresh.stats()["prefix_hits"] == 0
    finally:
        cached.close()
        fresh.close()


# Measured on this model (random weights, nearly flat distributions, which quantization reorders easily; f16: 0.0005
# mean |Δ|, 100% top-1): q8_0 0.011 mean |Δ|, 93.5% top-1; q4_k_m 0.098, 54%. google/gemma-3-270m: q8_0 0.095, 91.5%;
# q4_k_m 0.12, 88%.
@pytest.mark.parametrize("quant,min_top1,max_mean", [("q8_0", 0.85, 0.02), ("q4_k_m", 0.45, 0.2)])
def test_quantized_ggufs_within_tolerance(gemma_ggufs, gemma_ref, quant, min_top1, max_mean):
    report = verify_gguf(gemma_ggufs[quant], gemma_ref.model.reference, reference_engine=gemma_ref)
    assert report.quant == quant
    assert not report.tokenizer_mismatches and all(report.metadata.values())
    assert report.top1_agreement >= min_top1 and report.logprob_mean_diff <= max_mean, report.summary()
    assert report.ok, report.summary()


def test_metadata_and_tensors_are_llamacpps_gemma3(gemma_ggufs, tiny_gemma):
    from safetensors import safe_open

    import gguf

    from taide.export.gguf_info import read_header

    f = gguf_fields(gemma_ggufs["f16"])
    meta = read_header(gemma_ggufs["f16"], arrays=SCORES_KEYS).metadata
    assert f["general.architecture"] == "gemma3"
    expected = {"context_length": 512, "embedding_length": 256, "block_count": 6, "feed_forward_length": 512,
                "attention.head_count": 4, "attention.head_count_kv": 1, "attention.key_length": 64,
                "attention.value_length": 64, "attention.sliding_window": 16, "rope.freq_base": 1_000_000.0}
    assert {k: f[f"gemma3.{k}"] for k in expected} == expected
    assert f["gemma3.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-6)
    assert not any(k.startswith("gemma3.rope.scaling") or k == "gemma3.final_logit_softcapping" for k in f)
    tokens, scores, types = (meta[k] for k in SCORES_KEYS)
    ids = {t: i for i, t in enumerate(tokens)}
    assert f["tokenizer.ggml.model"] == "llama" and f["tokenizer.ggml.pre"] == "default"
    assert f["tokenizer.ggml.add_space_prefix"] is False and f["tokenizer.ggml.add_bos_token"] is True
    assert (f["tokenizer.ggml.bos_token_id"], f["tokenizer.ggml.eos_token_id"], f["tokenizer.ggml.padding_token_id"],
            f["tokenizer.ggml.unknown_token_id"]) == (2, 1, 0, 3)
    assert f["tokenizer.ggml.eot_token_id"] == ids["<end_of_turn>"] == 6
    assert f["tokenizer.chat_template"].startswith("{{ bos_token }}")
    assert [types[ids[t]] for t in GEMMA3_SPECIALS] == [3] * 7 and types[ids["\n\n"]] == 4
    assert {types[i] for i in range(7, 263)} == {6} and {scores[i] for i in range(7, 263)} == {0.0}
    normal = [i for i, t in enumerate(types) if t == 1]
    assert normal[0] == 263 and all(scores[i] == -(i - 263) for i in normal)  # merges rank by id
    # tensors: llama.cpp's gemma3 names, no output (tied), norms float32 and shifted by one
    blk = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "attn_q_norm", "attn_k_norm",
           "post_attention_norm", "ffn_norm", "post_ffw_norm", "ffn_gate", "ffn_up", "ffn_down"}
    assert set(f["_tensors"]) == {"token_embd.weight", "output_norm.weight"} | {
        f"blk.{i}.{t}.weight" for i in range(6) for t in blk}
    assert f["_tensors"]["blk.5.post_ffw_norm.weight"] == "F32" and f["_tensors"]["blk.5.ffn_up.weight"] == "F16"
    data = {t.name: np.array(t.data) for t in gguf.GGUFReader(str(gemma_ggufs["f16"])).tensors
            if t.name in ("blk.2.post_attention_norm.weight", "blk.2.ffn_norm.weight", "blk.2.attn_k_norm.weight",
                          "output_norm.weight", "blk.2.attn_q.weight")}
    with safe_open(str(tiny_gemma / "model.safetensors"), "pt") as st:
        hf = lambda name: st.get_tensor(name).float().numpy()  # noqa: E731
        for ours, theirs in (("blk.2.post_attention_norm", "model.layers.2.post_attention_layernorm"),
                             ("blk.2.ffn_norm", "model.layers.2.pre_feedforward_layernorm"),
                             ("blk.2.attn_k_norm", "model.layers.2.self_attn.k_norm"), ("output_norm", "model.norm")):
            assert np.array_equal(data[f"{ours}.weight"], hf(f"{theirs}.weight") + 1), ours
        # no permutation of Q (NEOX rope on both sides): f16 of the same rows
        q = hf("model.layers.2.self_attn.q_proj.weight")
        assert np.array_equal(data["blk.2.attn_q.weight"], q.astype(np.float16))


def test_q4_k_m_gets_llamacpps_k_quant_mix(gemma_ggufs):
    f = gguf_fields(gemma_ggufs["q4_k_m"])
    assert f["general.file_type"] == 15
    kinds = set(f["_tensors"].values())
    assert {"Q4_K", "Q6_K"} <= kinds and f["_tensors"]["blk.0.attn_norm.weight"] == "F32"
    q8 = gguf_fields(gemma_ggufs["q8_0"])["_tensors"]
    assert q8["token_embd.weight"] == "Q8_0" and q8["blk.0.attn_q.weight"] == "Q8_0"


def test_gemma_modelfile(gemma_ggufs):
    text = (gemma_ggufs["f16"].parent / "Modelfile").read_text()
    assert f"FROM ./{gemma_ggufs['f16'].name}\n" in text
    assert 'PARAMETER stop "<end_of_turn>"' in text and text.count("PARAMETER stop") == 1
    assert "<start_of_turn>model" in text and f'SYSTEM """{TAIDE_PROMPT}"""' in text
    assert "PARAMETER num_ctx 512" in text


@pytest.mark.parametrize("conversation", CONVERSATIONS)
def test_gemma_modelfile_template_renders_the_chat_format(conversation):
    """Ollama passes the system prompt as .System and, as a message, first in .Messages (the Modelfile's SYSTEM
    when the conversation has none); BOS is the tokenizer's (add_bos_token)."""
    from taide.chat.formats import GEMMA3_TEMPLATE, GemmaFormat, TemplateFormat
    from taide.export.modelfile import GEMMA_GO_TEMPLATE

    system = next((m["content"] for m in conversation if m["role"] == "system"), TAIDE_PROMPT)
    messages = conversation if conversation[0]["role"] == "system" else [
        {"role": "system", "content": system}, *conversation]
    ours = "<bos>" + go_render(GEMMA_GO_TEMPLATE, system, messages)
    assert ours == GemmaFormat().render_text(messages)
    assert ours == TemplateFormat(GEMMA3_TEMPLATE, "<bos>").render_text(messages)  # google/gemma-3-*-it's own
    # an open final assistant message is continued, as Ollama's own templates do
    partial = go_render(GEMMA_GO_TEMPLATE, system, [*messages, {"role": "assistant", "content": "好"}])
    assert partial.endswith("<start_of_turn>model\n好")


# --- what the conversion does, position by position -----------------------------------------------------

def _logprobs_both(hf_dir: Path, gguf: Path, n: int = 240):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf_dir)
    ids = tok.encode(" ".join(CORPUS * 4))[:n]
    lm = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    scorer = LlamaCppScorer(gguf, n_ctx=256)
    try:
        return TransformersScorer(lm).logprobs(ids), scorer.logprobs(ids)
    finally:
        scorer.close()


@pytest.mark.parametrize("rope", [None, {"rope_type": "linear", "factor": 8.0}], ids=["default", "linear"])
def test_f32_gguf_reproduces_transformers_logits(tiny_gemma, tmp_path, rope):
    """Every position's whole distribution over 240 positions, with the 16-token window and the global layer's
    rope (linearly scaled, as Gemma 3 4B+ are) in play: transformers runs the model a changed config describes
    (wider window, other rope) far from the original, so the match checks them."""
    d = tiny_gemma
    if rope:
        d = _edit_config(tiny_gemma, tmp_path / "linear", rope_parameters={
            "full_attention": {"rope_theta": 1_000_000.0, **rope},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}})
    path = export_model(d, "gguf", "f32", tmp_path / "m.gguf", modelfile=False).path
    ref, ours = _logprobs_both(d, path)
    assert np.abs(ref - ours).max() < 2e-3  # measured 1.0e-3
    assert (ref.argmax(-1) == ours.argmax(-1)).mean() > 0.98
    wide, _ = _logprobs_both(_edit_config(d, tmp_path / "wide", sliding_window=512), path)
    assert np.abs(wide - ref).max() > 0.05  # the window changes the model, far beyond the tolerance
    if rope:
        assert gguf_fields(path)["gemma3.rope.scaling.factor"] == 8.0
        base, _ = _logprobs_both(tiny_gemma, path)
        assert np.abs(base - ref).max() > 0.05


def test_export_without_the_norm_offset_fails_verification(tiny_gemma, tmp_path, monkeypatch):
    from taide.export import gguf_writer

    monkeypatch.setitem(gguf_writer.ARCHITECTURES, "gemma3_text",
                        replace(gguf_writer.GEMMA3, norm_offset=0.0))
    with pytest.raises(ExportError, match="does not match its source"):
        export_model(tiny_gemma, "gguf", "f32", tmp_path / "bad.gguf", verify=True)


# --- Gemma3ForConditionalGeneration: the text model --------------------------------------------------------

def test_conditional_generation_exports_its_text_model(tiny_gemma, tmp_path):
    """Gemma 3 4B and larger ship as Gemma3ForConditionalGeneration (a SigLIP tower, a projector and the text model
    under ``language_model``): the GGUF holds the text model, which computes what transformers' full model does on
    text."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, Gemma3Config, Gemma3ForConditionalGeneration, SiglipVisionConfig

    text_config = json.loads((tiny_gemma / "config.json").read_text())
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                image_size=28, patch_size=14)
    config = Gemma3Config(text_config=text_config, vision_config=vision.to_dict(), mm_tokens_per_image=1,
                          boi_token_index=4, eoi_token_index=4, image_token_index=4)
    torch.manual_seed(1)
    model = Gemma3ForConditionalGeneration(config).eval()
    text = {k.removeprefix("model."): v for k, v in load_file(tiny_gemma / "model.safetensors").items()}
    model.model.language_model.load_state_dict(text)
    d = tmp_path / "multimodal"
    model.save_pretrained(d)
    AutoTokenizer.from_pretrained(tiny_gemma).save_pretrained(d)
    saved = json.loads((d / "config.json").read_text())
    assert saved["model_type"] == "gemma3" and any("vision_tower" in k for k in load_file(d / "model.safetensors"))
    path = export_model(d, "gguf", "f32", tmp_path / "mm.gguf", modelfile=False).path
    assert not any(n.startswith(("v.", "mm.")) for n in gguf_fields(path)["_tensors"])
    ids = AutoTokenizer.from_pretrained(d).encode(" ".join(CORPUS))[:120]
    with torch.no_grad():
        ref = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1).numpy()
    scorer = LlamaCppScorer(path, n_ctx=128)
    try:
        ours = scorer.logprobs(ids)
    finally:
        scorer.close()
    assert np.abs(ref - ours).max() < 2e-3


# --- what llama.cpp cannot run is refused ----------------------------------------------------------------

@pytest.mark.parametrize("changes,message", [
    ({"layer_types": ["sliding_attention", "full_attention"] * 3}, r"layer_types SGSGSG .*every 6th layer global"),
    ({"attn_logit_softcapping": 50.0}, r"attn_logit_softcapping is 50.0; llama.cpp's gemma3 has no attention"),
    ({"hidden_activation": "silu"}, r"hidden_activation 'silu' is not supported"),
    ({"rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                          "sliding_attention": {"rope_type": "default", "rope_theta": 5e4}}},
     r"sliding layers' rope is default with base 50000.0; llama.cpp's gemma3 fixes it at default, base 10000"),
    ({"rope_parameters": {"full_attention": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e6},
                          "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}},
     r"global layers' rope scaling 'yarn' is not supported for Gemma 3"),
], ids=["layer-pattern", "attn-softcap", "activation", "local-rope", "yarn"])
def test_gemma_configs_llamacpp_would_run_wrongly_are_refused(tiny_gemma, tmp_path, changes, message):
    d = _edit_config(tiny_gemma, tmp_path / "m", **changes)
    with pytest.raises(ExportError, match=message) as e:
        export_model(d, "gguf", "f16", tmp_path / "x.gguf")
    assert str(d / "config.json") in str(e.value)
    assert not (tmp_path / "x.gguf").exists()


def test_a_query_scale_llamacpp_does_not_read_is_folded_into_the_query_norm(tiny_gemma, tmp_path):
    """Gemma 3 27B scales queries by 1/sqrt(hidden/heads), not 1/sqrt(head_dim); llama.cpp reads no such value and
    keys its rule on the layer count. A model of any size with its own query_pre_attn_scalar exports exactly: the
    ratio goes into the query norm's weights."""
    d = _edit_config(tiny_gemma, tmp_path / "m", query_pre_attn_scalar=144)
    result = export_model(d, "gguf", "f16", tmp_path / "x.gguf")
    report = verify_gguf(result.path, str(d))
    assert report.ok and report.logprob_mean_diff < 0.002 and report.top1_agreement >= 0.95, report.summary()


def _edit_tokenizer(src: Path, dst: Path, edit) -> Path:
    """A copy whose tokenizer.json is edited, and loaded by transformers as written (GemmaTokenizer would rebuild
    itself from the vocabulary): export must match what transformers runs."""
    shutil.copytree(src, dst)
    tj = json.loads((dst / "tokenizer.json").read_text())
    edit(tj)
    (dst / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False))
    config = json.loads((dst / "tokenizer_config.json").read_text())
    (dst / "tokenizer_config.json").write_text(json.dumps({**config, "tokenizer_class": "TokenizersBackend"}))
    return dst


def test_tokenizers_llamacpp_would_split_otherwise_are_refused(tiny_gemma, tmp_path):
    def swapped(tj):  # two merges out of the order of the tokens they make
        merges = tj["model"]["merges"]
        merges[10], merges[20] = merges[20], merges[10]

    def metaspace(tj):
        tj["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}

    for name, edit, message in (("swapped", swapped, r"merge 11 .* makes token \d+, after a merge made token"),
                                ("metaspace", metaspace, r"pre-tokenizer Metaspace splits the text")):
        d = _edit_tokenizer(tiny_gemma, tmp_path / name, edit)
        with pytest.raises(ExportError, match=message) as e:
            export_model(d, "gguf", "f16", tmp_path / f"{name}.gguf")
        assert str(d / "tokenizer.json") in str(e.value)


# --- the real Gemma 3 vocabulary ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gemma_vocab_dir(tmp_path_factory) -> Path:
    """Tiny weights (hidden 64) over google/gemma-3-270m's tokenizer, as transformers reads it from the embedded
    GGUF (20 s: it rebuilds the 514K merges)."""
    import torch
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    from taide.models import embedded_gguf_path

    gguf_path = embedded_gguf_path("gemma3-270m")
    d = tmp_path_factory.mktemp("gemma3-vocab") / "hf"
    tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, local_files_only=True)
    tok.save_pretrained(d)
    torch.manual_seed(0)
    Gemma3ForCausalLM(Gemma3TextConfig(vocab_size=262144, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                       num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                                       query_pre_attn_scalar=32, sliding_window=16, max_position_embeddings=512,
                                       bos_token_id=2, eos_token_id=1, pad_token_id=0)).save_pretrained(d)
    return d


@pytest.mark.slow
def test_real_gemma3_vocabulary_tokenizes_as_llamacpps_own_conversion(gemma_vocab_dir, tmp_path):
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    from taide.models import embedded_gguf_path

    shipped_path = embedded_gguf_path("gemma3-270m")
    from taide.export.gguf_info import read_header

    path = export_model(gemma_vocab_dir, "gguf", "f16", tmp_path / "vocab.gguf", modelfile=False).path
    ours = gguf_fields(path)
    a = read_header(path, arrays=SCORES_KEYS).metadata
    b = read_header(shipped_path, arrays=SCORES_KEYS).metadata
    for key in ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.bos_token_id",
                "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id",
                "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_space_prefix"):
        assert ours[key] == b[key], key
    assert ours["tokenizer.ggml.eot_token_id"] == 106  # <end_of_turn>
    tokens, scores, types = (a[k] for k in SCORES_KEYS)
    shipped = b["tokenizer.ggml.tokens"]
    # google's tokenizer has 30 runs of 2-31 spaces as user-defined tokens; the tokenizer.json transformers makes
    # from the GGUF lists them as plain tokens of "▁"s, which is what this GGUF then holds
    spaces = [i for i, t in enumerate(shipped) if len(t) > 1 and not t.strip(" ")]
    assert len(spaces) == 30 and [i for i, t in enumerate(tokens) if t != shipped[i]] == spaces
    assert all(tokens[i] == shipped[i].replace(" ", "\u2581") and types[i] == 1 for i in spaces)
    # The other types are llama.cpp's converter's, and the scores of the tokens merges make rank them as there:
    # the same less a constant (the first plain token, which scores 0, is the first of the "▁" runs here, 356
    # before google's first, "▁t"). Single characters, which no merge makes, rank nothing.
    assert [i for i, t in enumerate(types) if t != b["tokenizer.ggml.token_type"][i]] == spaces
    plain = [i for i, t in enumerate(types) if t == 1 and len(tokens[i]) > 1 and i not in set(spaces)]
    assert len(plain) > 230_000 and {b["tokenizer.ggml.scores"][i] - scores[i] for i in plain} == {356.0}
    # and llama.cpp tokenizes text with our GGUF as with google's, and as transformers does
    texts = [*TOKENIZER_TEXTS, *CORPUS, "\t\tindented\n\n\n  code\t", "▁literal ▁ marks", "<start_of_turn>user"]
    texts += [p.read_text(encoding="utf-8", errors="replace")
              for p in sorted(Path(__file__).parents[1].glob("src/taide/data/sample/raw/txt/*.txt"))[:12]]
    tok = AutoTokenizer.from_pretrained(gemma_vocab_dir)
    expected = [tok.encode(t, add_special_tokens=False, split_special_tokens=True) for t in texts]
    for gguf_file in (path, shipped_path):
        llm = Llama(str(gguf_file), vocab_only=True, verbose=False)
        try:
            got = [llm.tokenize(t.encode(), add_bos=False, special=False) if t else [] for t in texts]
        finally:
            llm.close()
        mismatched = [(t[:20], e[:8], g[:8]) for t, e, g in zip(texts, expected, got) if e != g]
        if gguf_file == shipped_path:  # a typed "▁" by a space: google's "▁▁▁" is 3 spaces, HF's not
            mismatched = [m for m in mismatched if "\u2581" not in m[0]]
        assert not mismatched, (gguf_file.name, mismatched)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("TAIDE_EXPORT_REAL"), reason="minutes of CPU: dequantizes google/gemma-3-270m "
                    "(1 GB float32), exports it and runs both sides; set TAIDE_EXPORT_REAL=1")
def test_real_gemma3_270m_q8_0_matches_transformers(tmp_path):
    """The embedded google/gemma-3-270m (Q4_K_M) → HF (float32, dequantized) → q8_0 GGUF, verified against the HF
    directory. Measured: 91.5% top-1, 0.095 mean |Δ|, perplexity 26.47 vs 26.19 (see the export report)."""
    result = export_model("gemma3-270m", "gguf", "q8_0", tmp_path, verify=True)
    report = result.verification
    assert report.ok and not report.tokenizer_mismatches, report.summary()
    assert report.top1_agreement >= 0.85 and report.logprob_mean_diff <= 0.15


def test_greedy_parting_at_a_near_tie_is_no_failure():
    """google/gemma-3-270m at f16 parts from transformers on one prompt where its top two tokens are 0.00009 apart
    in log-probability: float16 rounding, not a wrong export. A parting with a real margin still fails."""
    from taide.export.verify import GreedyResult, VerifyReport, _judge, tolerance_for

    report = VerifyReport("m.gguf", "m", "f16", top1_agreement=1.0, logprob_mean_diff=0.001,
                          tolerance=tolerance_for("f16"))
    report.greedy = [GreedyResult("tie", [5, 6, 7], [5, 6, 9], margin=0.00009),
                     GreedyResult("wrong", [5, 6], [5, 8], margin=0.4), GreedyResult("same", [5], [5])]
    _judge(report)
    assert len(report.failures) == 1 and report.failures[0].startswith("greedy: 'wrong' parts after 1 tokens")
    assert "'tie' parts at a 0.00009 margin" in report.summary()


def test_a_bad_output_type_fails_before_any_work(tmp_path):
    from taide.export import export_model
    from taide.export.common import ExportError

    with pytest.raises(ExportError, match="output type 'q3': choose f32, f16"):
        export_model("no-such-dir-is-read", "gguf", "q8_0", tmp_path / "x.gguf", output_type="q3")
    assert not list(tmp_path.iterdir())
