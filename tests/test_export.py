"""taide export: HF directory → GGUF (llama.cpp) and merged HF directories, checked against the source model.

The end-to-end tests use the real embedded default (SmolLM2-135M, tied embeddings, SmolLM2's pre-tokenizer);
the layout tests use tiny random Llamas built here (Llama 3 chat format, rope scalings, LoRA, the real
Llama 3 vocabulary from ../shared)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import CORPUS, LLAMA3_VOCAB, needs_shared
from taide.errors import EngineError, TaideError
from taide.export import ExportError, export_model, gguf_stats, modelfile_text, verify_gguf
from taide.export.gguf_writer import permute_rows, unpermute_rows
from taide.export.verify import LlamaCppScorer, TransformersScorer

TAIDE_PROMPT = "你是一個來自台灣的AI助理，你的名字是 TAIDE，樂於以台灣人的立場幫助使用者，會用繁體中文回答問題。"


VOCAB_KEYS = ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type")


def gguf_fields(path: Path, vocab: bool = False) -> dict:
    """A GGUF's metadata and tensor types; the tokens, merges and token types too with ``vocab``."""
    from taide.export.gguf_info import read_header

    header = read_header(path, arrays=VOCAB_KEYS if vocab else ())
    return {**header.metadata, "_tensors": {t.name: t.type_name for t in header.tensors}}


# --- the embedded default, end to end ---------------------------------------------------------------

@pytest.fixture(scope="module")
def smol_hf(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "smol-hf"
    result = export_model("smollm2-135m", "hf", out=out)
    assert result.format == "hf" and (out / "model.safetensors").is_file() and result.parameters > 1e8
    return out


@pytest.fixture(scope="module")
def smol_ref(smol_hf):
    from taide.engines import load_engine

    engine = load_engine(str(smol_hf), "transformers")
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def smol_ggufs(smol_hf, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("ggufs")
    return {q: export_model(smol_hf, "gguf", q, out).path for q in ("f16", "q8_0", "q4_0", "q4_k_m")}


def test_hf_export_of_the_embedded_gguf(smol_hf):
    manifest = json.loads((smol_hf / "manifest.json").read_text())
    assert manifest["source_kind"] == "gguf" and manifest["chat_format"] == "template"
    # transformers reads SmolLM2's tokenizer from GGUF without its digit splitting; llama.cpp's 'smollm' has it
    assert any("smollm" in c for c in manifest["tokenizer_repairs"])
    config = json.loads((smol_hf / "config.json").read_text())
    assert config["tie_word_embeddings"] is True and config["model_type"] == "llama"
    generation = json.loads((smol_hf / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [2]  # <|im_end|>: generation stops at the end of a turn


@pytest.mark.slow
def test_f16_gguf_matches_transformers(smol_ggufs, smol_ref):
    report = verify_gguf(smol_ggufs["f16"], smol_ref.model.reference, reference_engine=smol_ref)
    assert report.ok, report.summary()
    assert not report.tokenizer_mismatches
    assert all(report.metadata.values()), report.metadata
    assert all(g.identical for g in report.greedy) and len(report.greedy) == 4
    assert sum(len(g.gguf) for g in report.greedy) > 40
    assert report.logprob_mean_diff < 0.02 and report.logprob_max_diff < 0.1 and report.top1_agreement >= 0.95


# Stated tolerances (measured: q8_0 0.096 mean |Δ|, 92% top-1; q4_k_m 0.36, 76%; q4_0 0.80, 56%; the source's
# weights were 4-bit already, and llama.cpp quantizes activations to 8 bits for any quantized weight).
@pytest.mark.parametrize("quant,min_top1,max_mean", [("q8_0", 0.85, 0.15), ("q4_k_m", 0.65, 0.6), ("q4_0", 0.45, 1.2)])
def test_quantized_ggufs_within_tolerance(smol_ggufs, smol_ref, quant, min_top1, max_mean):
    report = verify_gguf(smol_ggufs[quant], smol_ref.model.reference, reference_engine=smol_ref)
    assert report.quant == quant
    assert not report.tokenizer_mismatches and all(report.metadata.values())
    assert report.top1_agreement >= min_top1 and report.logprob_mean_diff <= max_mean, report.summary()
    assert report.ok, report.summary()


def test_metadata_is_what_llamacpp_expects(smol_ggufs, embedded_gguf):
    ours, shipped = gguf_fields(smol_ggufs["f16"], vocab=True), gguf_fields(embedded_gguf, vocab=True)
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type", "tokenizer.ggml.pre",
                "tokenizer.ggml.model", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                "tokenizer.ggml.add_bos_token", "tokenizer.chat_template", "llama.context_length",
                "llama.embedding_length", "llama.feed_forward_length", "llama.block_count", "llama.attention.head_count",
                "llama.attention.head_count_kv", "llama.rope.freq_base", "llama.vocab_size",
                "llama.rope.dimension_count"):
        assert ours[key] == shipped[key], key
    assert ours["tokenizer.ggml.pre"] == "smollm"
    assert ours["tokenizer.ggml.eot_token_id"] == 2  # <|im_end|>
    assert "output.weight" not in ours["_tensors"]  # tied embeddings: llama.cpp reuses token_embd
    assert set(ours["_tensors"]) == set(shipped["_tensors"])
    assert {ours["_tensors"]["blk.3.attn_q.weight"], ours["_tensors"]["token_embd.weight"]} == {"F16"}
    assert ours["_tensors"]["blk.3.attn_norm.weight"] == "F32"
    q4 = gguf_fields(smol_ggufs["q4_0"])["_tensors"]
    assert q4["blk.0.ffn_up.weight"] == "Q4_0" and q4["token_embd.weight"] == "Q8_0"  # the (tied) output stays 8-bit
    km = gguf_fields(smol_ggufs["q4_k_m"])
    assert km["general.file_type"] == 15 and "Q4_K" in km["_tensors"].values() and "Q6_K" in km["_tensors"].values()
    sizes = {q: gguf_stats(p)["bits_per_weight"] for q, p in smol_ggufs.items()}
    assert sizes["f16"] == pytest.approx(16, abs=0.1) and sizes["q8_0"] == pytest.approx(8.5, abs=0.1)
    assert sizes["q4_0"] < sizes["q4_k_m"] < sizes["q8_0"]


def test_llamacpp_stops_at_the_end_of_a_turn(smol_ggufs):
    """llama-cpp-python's own chat path (the GGUF's template, its EOS/EOG ids) with no help from taide."""
    from taide.engines.llamacpp_engine import open_llama

    llm = open_llama(smol_ggufs["f16"], n_ctx=512, verbose=False)
    try:
        answer = llm.create_chat_completion([{"role": "user", "content": "What is the capital of France?"}],
                                            max_tokens=64, temperature=0)
    finally:
        llm.close()
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["usage"]["completion_tokens"] < 64 and "Paris" in answer["choices"][0]["message"]["content"]


def test_modelfile_for_a_chatml_model(smol_ggufs):
    text = (smol_ggufs["f16"].parent / "Modelfile").read_text()
    assert text.count("FROM ") == 1 and f"FROM ./{smol_ggufs['f16'].name}\n" in text
    assert 'PARAMETER stop "<|im_end|>"' in text and "<|im_start|>assistant" in text
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM, trained by Hugging Face"""' in text
    assert "TAIDE" not in text
    # the other quants in the same directory got their own Modelfile
    assert (smol_ggufs["q8_0"].parent / f"{smol_ggufs['q8_0'].stem}.Modelfile").is_file()
    assert json.loads(smol_ggufs["q8_0"].with_name(smol_ggufs["q8_0"].name + ".json").read_text())["config"]["quant"] == "q8_0"


# --- the Q/K permutation and rope -------------------------------------------------------------------

def test_qk_permutation_turns_rotate_half_into_adjacent_pairs():
    """rope on HF's layout (halves) of W·x equals llama.cpp's rope (adjacent pairs) on the permuted W·x."""
    rng = np.random.default_rng(0)
    n_head, head_dim, d, pos = 3, 8, 12, 5
    w = rng.normal(size=(n_head * head_dim, d))
    x = rng.normal(size=d)
    theta = pos * 10000.0 ** (-np.arange(head_dim // 2) * 2 / head_dim)
    cos, sin = np.cos(theta), np.sin(theta)
    q = (w @ x).reshape(n_head, head_dim)
    a, b = q[:, :head_dim // 2], q[:, head_dim // 2:]
    hf = np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=1)  # rotate_half
    p = (permute_rows(w, n_head) @ x).reshape(n_head, head_dim)
    even, odd = p[:, 0::2], p[:, 1::2]
    ours = np.empty_like(p)
    ours[:, 0::2], ours[:, 1::2] = even * cos - odd * sin, even * sin + odd * cos  # GGML rope, NORM mode
    assert np.allclose(ours[:, 0::2], hf[:, :head_dim // 2]) and np.allclose(ours[:, 1::2], hf[:, head_dim // 2:])
    assert np.array_equal(unpermute_rows(permute_rows(w, n_head), n_head), w)


def _sharp_tiny(src: Path, dst: Path, rope: dict | None = None) -> Path:
    """The tiny model with 5× Q/K weights, so attention depends on positions (rope scalings change the logits by
    > 0.1, 500× llama.cpp's numerical difference; much sharper and near-ties between keys flip), and a rope scaling."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    weights = load_file(dst / "model.safetensors")
    for k in weights:
        if k.endswith(("q_proj.weight", "k_proj.weight")):
            weights[k] = (weights[k] * 5).contiguous()
    save_file(weights, dst / "model.safetensors", metadata={"format": "pt"})
    if rope:
        config = json.loads((dst / "config.json").read_text())
        config["rope_parameters"] = {"rope_theta": 10000.0, **rope}
        (dst / "config.json").write_text(json.dumps(config))
    return dst


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


@pytest.fixture(scope="module")
def sharp_default(tiny_model_dir, tmp_path_factory):
    d = _sharp_tiny(tiny_model_dir, tmp_path_factory.mktemp("sharp") / "default")
    return d, _logprobs_both(d, export_model(d, "gguf", "f32", d.parent / "default.gguf").path)


@pytest.mark.parametrize("rope", [
    None,
    {"rope_type": "linear", "factor": 4.0},
    {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
     "original_max_position_embeddings": 32},
    {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64},
], ids=["default", "linear", "llama3", "yarn"])
def test_f32_gguf_reproduces_transformers_logits(tiny_model_dir, sharp_default, tmp_path, rope):
    base_dir, (base_ref, _) = sharp_default
    d = _sharp_tiny(tiny_model_dir, tmp_path / "m", rope) if rope else base_dir
    path = export_model(d, "gguf", "f32", tmp_path / "m.gguf", modelfile=False).path
    ref, ours = _logprobs_both(d, path)
    assert np.abs(ref - ours).max() < 1e-3  # every position's whole distribution, 240 positions (measured 2e-4)
    assert (ref.argmax(-1) == ours.argmax(-1)).all()
    if rope:  # the scaling really changes the model, far beyond the tolerance
        assert np.abs(ref - base_ref).max() > 0.05
        if rope["rope_type"] == "llama3":
            assert gguf_fields(path)["_tensors"]["rope_freqs.weight"] == "F32"


def test_export_without_the_permutation_fails_verification(tiny_model_dir, tmp_path, monkeypatch):
    d = _sharp_tiny(tiny_model_dir, tmp_path / "m")
    monkeypatch.setattr("taide.export.gguf_writer.permute_rows", lambda w, n: w)
    with pytest.raises(ExportError, match="does not match its source"):
        export_model(d, "gguf", "f32", tmp_path / "bad.gguf", verify=True)


# --- Llama 3 format (TAIDE) --------------------------------------------------------------------------

def test_tiny_llama3_format_model_exports_and_verifies(tiny_model_dir, tmp_path):
    result = export_model(tiny_model_dir, "gguf", "f32", tmp_path, verify=True)
    report = result.verification
    assert report.ok and all(report.metadata.values()), report.summary()
    fields = gguf_fields(result.path, vocab=True)
    eot = fields["tokenizer.ggml.tokens"].index("<|eot_id|>")
    assert fields["tokenizer.ggml.eot_token_id"] == eot and fields["tokenizer.ggml.eos_token_id"] == eot
    assert fields["tokenizer.ggml.pre"] == "llama-bpe"  # the fixture's own BPE splits text as Llama 3's does
    assert fields["tokenizer.ggml.token_type"][eot] == 3  # control
    assert "output.weight" in fields["_tensors"]  # not tied
    modelfile = result.modelfile.read_text()
    assert f'SYSTEM """{TAIDE_PROMPT}"""' in modelfile
    for stop in ("<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"):
        assert f'PARAMETER stop "{stop}"' in modelfile
    assert "PARAMETER num_ctx 256" in modelfile


def _llama3_tokenizer(directory: Path):
    """Meta's Llama 3 tokenizer.json rebuilt from ../shared's vocab-only GGUF (transformers' GGUF reader adds a
    token and drops ignore_merges and BOS)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from taide.chat.formats import LLAMA3_TEMPLATE
    from taide.models.pretokenizers import LLAMA3_REGEX

    fields = gguf_fields(LLAMA3_VOCAB / "ggml-vocab-llama-bpe.gguf", vocab=True)
    tokens, types = fields["tokenizer.ggml.tokens"], fields["tokenizer.ggml.token_type"]
    vocab = {t: i for i, t in enumerate(tokens) if types[i] == 1}
    merges = [tuple(m.split(" ")) for m in fields["tokenizer.ggml.merges"]]
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=True))
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_REGEX), "isolated"),
                                                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False) for i in range(len(vocab), len(tokens))])
    tk.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                                      special_tokens=[("<|begin_of_text|>", 128000)])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")
    tok.chat_template = LLAMA3_TEMPLATE
    tok.save_pretrained(directory)
    return tok


@pytest.mark.slow
@needs_shared
def test_real_llama3_vocabulary_exports_with_the_llama_bpe_pre_tokenizer(tmp_path):
    import torch
    from llama_cpp import Llama
    from transformers import LlamaConfig, LlamaForCausalLM

    d = tmp_path / "llama3-vocab"
    tok = _llama3_tokenizer(d)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=128256, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                                 rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
                                 bos_token_id=128000, eos_token_id=[128009, 128001])).save_pretrained(d)
    result = export_model(d, "gguf", "f16", tmp_path, verify=True)
    assert result.verification.ok, result.verification.summary()
    fields = gguf_fields(result.path, vocab=True)
    assert fields["tokenizer.ggml.pre"] == "llama-bpe" and fields["tokenizer.ggml.add_bos_token"] is True
    assert fields["tokenizer.ggml.eot_token_id"] == 128009 and fields["tokenizer.ggml.bos_token_id"] == 128000
    shipped = gguf_fields(LLAMA3_VOCAB / "ggml-vocab-llama-bpe.gguf", vocab=True)
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type"):
        assert fields[key] == shipped[key], key
    # llama.cpp's own tokenizer test vectors for this vocabulary: our GGUF and our HF tokenizer both give them
    texts = (LLAMA3_VOCAB / "ggml-vocab-llama-bpe.gguf.inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")[:-1]
    expected = [[int(i) for i in line.split()] for line in
                (LLAMA3_VOCAB / "ggml-vocab-llama-bpe.gguf.out").read_text(encoding="utf-8").split("\n")[:len(texts)]]
    llm = Llama(str(result.path), vocab_only=True, verbose=False)
    try:
        got = [llm.tokenize(t.encode(), add_bos=False, special=False) for t in texts]
    finally:
        llm.close()
    assert got == expected
    assert [tok.encode(t, add_special_tokens=False) for t in texts] == expected


# --- LoRA adapters, the HF format, NF4 -------------------------------------------------------------

def test_lora_adapter_is_merged(tiny_model_dir, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    torch.manual_seed(1)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                                 init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    ids = torch.tensor([[0, 5, 17, 42, 99, 7, 3]])
    with torch.no_grad():
        expected = torch.log_softmax(peft_model(input_ids=ids).logits[0], -1).numpy()
    result = export_model(tmp_path / "adapter", "hf", out=tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(result.path, dtype=torch.float32)
    with torch.no_grad():
        got = torch.log_softmax(merged(input_ids=ids).logits[0], -1).numpy()
    assert np.abs(got - expected).max() < 1e-4
    assert json.loads((result.path / "manifest.json").read_text())["source_kind"] == "lora"
    assert (result.path / "tokenizer.json").is_file() and (result.path / "chat_template.jinja").is_file()
    # and straight to GGUF
    path = export_model(tmp_path / "adapter", "gguf", "f32", tmp_path / "lora.gguf").path
    scorer = LlamaCppScorer(path, n_ctx=64)
    try:
        ours = scorer.logprobs(ids[0].tolist())
    finally:
        scorer.close()
    assert np.abs(ours - expected).max() < 2e-3


def test_nf4_needs_a_gpu_and_bitsandbytes(tiny_model_dir, monkeypatch):
    """No GPU on this machine: only the error paths are tested."""
    import torch

    from taide.engines import load_engine

    with pytest.raises(EngineError, match="needs a CUDA GPU"):
        load_engine(str(tiny_model_dir), "transformers", device="cpu", quantization="nf4")
    with pytest.raises(EngineError, match="choose nf4"):
        load_engine(str(tiny_model_dir), "transformers", quantization="int3")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(EngineError, match="pip install bitsandbytes"):
        load_engine(str(tiny_model_dir), "transformers", device="cuda", quantization="nf4")


# --- clear errors -----------------------------------------------------------------------------------

def _copy_without(src: Path, dst: Path, *names: str) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*names))
    return dst


def test_unsupported_architecture_is_refused(tiny_model_dir, tmp_path):
    d = _copy_without(tiny_model_dir, tmp_path / "gpt2")
    (d / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
                                               "vocab_size": 400, "n_embd": 64}))
    with pytest.raises(ExportError, match=r"model_type 'gpt2' \(GPT2LMHeadModel\) cannot be exported to GGUF.*llama"):
        export_model(d, "gguf", "f16", tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


def test_missing_tokenizer_files_are_named(tiny_model_dir, tmp_path):
    d = _copy_without(tiny_model_dir, tmp_path / "notok", "tokenizer.json", "tokenizer_config.json")
    with pytest.raises(TaideError, match="missing tokenizer files.*tokenizer.json"):
        export_model(d, "gguf", "f16", tmp_path / "x.gguf")
    (d / "tokenizer.model").write_bytes(b"\x00")  # a SentencePiece model (Llama 2): resolvable, not exportable
    with pytest.raises(ExportError, match="SentencePiece tokenizers .* are not supported"):
        export_model(d, "gguf", "f16", tmp_path / "x.gguf")


def test_bad_quant_and_existing_output(tiny_model_dir, tmp_path):
    with pytest.raises(ExportError, match="unknown quantization 'q3_x'.*q4_k_m"):
        export_model(tiny_model_dir, "gguf", "q3_x", tmp_path / "x.gguf")
    (tmp_path / "x.gguf").write_bytes(b"")
    with pytest.raises(ExportError, match="exists"):
        export_model(tiny_model_dir, "gguf", "f16", tmp_path / "x.gguf")
    with pytest.raises(ExportError, match="unknown export format"):
        export_model(tiny_model_dir, "onnx")


# --- the Modelfile's Go template renders what taide renders -------------------------------------------

def go_render(template: str, system: str | None, messages: list[dict]) -> str:
    """A small interpreter for the Go-template subset the Modelfiles use: {{- -}} trimming, if/else if/end,
    range $i, $_ := .Messages, $var := ..., eq/ne/not/len/slice, .System/.Role/.Content."""
    parts = re.split(r"(\{\{-?\s*.*?\s*-?\}\})", template, flags=re.S)
    items = []
    for i, part in enumerate(parts):
        if part.startswith("{{"):
            if part.startswith("{{-"):
                items[-1] = ("text", items[-1][1].rstrip()) if items and items[-1][0] == "text" else items[-1]
            items.append(("act", part.strip("{}").strip("-").strip(), part.endswith("-}}")))
        else:
            if items and items[-1][0] == "act" and items[-1][2]:
                part = part.lstrip()
            items.append(("text", part))
    root = {"System": system or "", "Messages": [{"Role": m["role"], "Content": m["content"]} for m in messages]}

    def atoms(expr):
        return re.findall(r'\(|\)|"[^"]*"|[^\s()]+', expr)

    def value(tokens, dot, env):
        tok = tokens.pop(0)
        if tok == "(":
            v = call(tokens, dot, env)
            tokens.pop(0)
            return v
        if tok.startswith('"'):
            return tok[1:-1]
        if tok.isdigit():
            return int(tok)
        if tok.startswith("$."):
            return root[tok[2:]]
        if tok.startswith("$"):
            return env[tok]
        if tok.startswith("."):
            return dot[tok[1:]]
        funcs = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "not": lambda a: not a, "len": len,
                 "slice": lambda a, i: a[i:], "and": lambda a, b: a and b, "or": lambda a, b: a or b}
        args = []
        while tokens and tokens[0] != ")":
            args.append(value(tokens, dot, env))
        return funcs[tok](*args)

    def call(tokens, dot, env):
        return value(tokens, dot, env)

    def run(pos, dot, env, out) -> int:
        """Render items from pos until an unmatched else/end; return that item's index."""
        while pos < len(items):
            kind, text, *_ = items[pos]
            if kind == "text":
                out.append(text)
                pos += 1
                continue
            word = text.split()[0]
            if word in ("end", "else"):
                return pos
            if word == "if":
                taken = False
                cond = value(atoms(text[2:]), dot, env)
                while True:
                    branch = []
                    stop = run(pos + 1, dot, env, branch)
                    if cond and not taken:
                        out.extend(branch)
                        taken = True
                    head = items[stop][1]
                    if head == "end":
                        pos = stop + 1
                        break
                    rest = head[4:].strip()  # "else" or "else if COND"
                    cond = value(atoms(rest[2:]), dot, env) if rest.startswith("if") else True
                    pos = stop
            elif word == "range":
                m = re.match(r"range (\$\w+), (\$\w+) := (.*)", text)
                seq = value(atoms(m.group(3)), dot, env)
                stop = pos
                for i, item in enumerate(seq):
                    stop = run(pos + 1, item, {**env, m.group(1): i, m.group(2): item}, out)
                if not seq:
                    stop = run(pos + 1, {}, env, [])
                pos = stop + 1
            elif ":=" in text:
                name, expr = text.split(":=")
                env[name.strip()] = value(atoms(expr), dot, env)
                pos += 1
            else:
                out.append(str(value(atoms(text), dot, env)))
                pos += 1
        return pos

    out: list[str] = []
    run(0, root, {}, out)
    return "".join(out)


CONVERSATIONS = [
    [{"role": "user", "content": "你好"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "台灣最高的山？"}, {"role": "assistant", "content": "玉山。"}, {"role": "user", "content": "多高？"}],
]


@pytest.mark.parametrize("conversation", CONVERSATIONS)
def test_modelfile_templates_render_the_chat_format(conversation, embedded_gguf):
    from taide.chat.formats import Llama3Format, TemplateFormat
    from taide.export.gguf_info import model_ref
    from taide.export.modelfile import CHATML_GO_TEMPLATE, LLAMA3_GO_TEMPLATE, chatml_default_system

    system = next((m["content"] for m in conversation if m["role"] == "system"), None)
    # Llama 3 / TAIDE: Ollama adds BOS when tokenizing (add_bos_token), so the template starts at the first header
    taide = Llama3Format().render_text(conversation if system else
                                       [{"role": "system", "content": TAIDE_PROMPT}, *conversation])
    assert "<|begin_of_text|>" + go_render(LLAMA3_GO_TEMPLATE, system or TAIDE_PROMPT, conversation) == taide
    # ChatML (SmolLM2), whose template supplies its own default system prompt
    template = model_ref(embedded_gguf).chat_template
    default = chatml_default_system(template)
    assert default.startswith("You are a helpful AI assistant named SmolLM")
    assert go_render(CHATML_GO_TEMPLATE, system or default, conversation) == TemplateFormat(template).render_text(conversation)


def test_modelfile_text_for_an_unknown_format():
    text = modelfile_text("./m.gguf", "template", "{{ messages }}")
    assert "FROM ./m.gguf" in text and "\nTEMPLATE" not in text and "PARAMETER stop" not in text
