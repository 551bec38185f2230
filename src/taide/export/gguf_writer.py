"""Write a Hugging Face Llama directory as a GGUF file llama.cpp (and Ollama) load.

What goes in, the way llama.cpp's loader reads it:
- architecture metadata: context length, embedding/FFN sizes, block count, heads and KV heads, head
  size, rope base and scaling, RMS-norm epsilon, vocabulary size;
- tensors renamed to llama.cpp's names (``blk.N.attn_q.weight``...), with Q and K permuted: HF Llama
  checkpoints rotate the two *halves* of each head (``rotate_half``), llama.cpp's LLAMA rope (type NORM)
  rotates *adjacent pairs*, so the rows of each head are re-ordered as Meta's original checkpoint had
  them (row ``j`` of the first half goes to ``2j``, of the second half to ``2j+1``). The scores are unchanged;
- tied embeddings (SmolLM2): no ``output.weight``; llama.cpp then uses ``token_embd`` as the output;
- the byte-level BPE tokenizer: tokens, merges, token types, the pre-tokenizer name llama.cpp keys its
  splitting rules on (read off tokenizer.json's pre-tokenizer), special ids (BOS, EOS, end of turn,
  padding, unknown), ``add_bos_token``, and the chat template.

Tensors are streamed: the plan (names, shapes, types) is written first from the safetensors headers,
then each tensor is read, converted and written, so memory holds one tensor at a time.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from taide.export.common import ExportError, check_architecture, read_json, replace_atomically

# llama.cpp's pre-tokenizer names, and the tokenizer.json pre-tokenizers they implement.
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_BYTELEVEL_REGEX = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
_BYTELEVEL_NO_REGEX = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}
PRE_TOKENIZERS: dict[str, dict] = {
    "llama-bpe": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": LLAMA3_REGEX}, "behavior": "Isolated", "invert": False},
        _BYTELEVEL_NO_REGEX]},
    "smollm": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, _BYTELEVEL_REGEX]},
    "gpt-2": _BYTELEVEL_REGEX,
}

# Which HF tensor goes where: (regex on the HF name, llama.cpp name, how Q/K rows are permuted).
_TENSOR_MAP = [
    (r"model\.embed_tokens\.weight", "token_embd.weight", None),
    (r"model\.norm\.weight", "output_norm.weight", None),
    (r"lm_head\.weight", "output.weight", None),
    (r"model\.layers\.(\d+)\.input_layernorm\.weight", "blk.{}.attn_norm.weight", None),
    (r"model\.layers\.(\d+)\.self_attn\.q_proj\.(weight|bias)", "blk.{}.attn_q.{}", "q"),
    (r"model\.layers\.(\d+)\.self_attn\.k_proj\.(weight|bias)", "blk.{}.attn_k.{}", "k"),
    (r"model\.layers\.(\d+)\.self_attn\.v_proj\.(weight|bias)", "blk.{}.attn_v.{}", None),
    (r"model\.layers\.(\d+)\.self_attn\.o_proj\.(weight|bias)", "blk.{}.attn_output.{}", None),
    (r"model\.layers\.(\d+)\.post_attention_layernorm\.weight", "blk.{}.ffn_norm.weight", None),
    (r"model\.layers\.(\d+)\.mlp\.gate_proj\.(weight|bias)", "blk.{}.ffn_gate.{}", None),
    (r"model\.layers\.(\d+)\.mlp\.up_proj\.(weight|bias)", "blk.{}.ffn_up.{}", None),
    (r"model\.layers\.(\d+)\.mlp\.down_proj\.(weight|bias)", "blk.{}.ffn_down.{}", None),
]
_SKIP = re.compile(r".*rotary_emb\.inv_freq$")


def permute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF's half-split rotary layout → llama.cpp's interleaved one, per head (rows of a weight, or a bias)."""
    head_dim = w.shape[0] // n_head
    return w.reshape(n_head, 2, head_dim // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """The inverse of :func:`permute_rows`."""
    head_dim = w.shape[0] // n_head
    return w.reshape(n_head, head_dim // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# --- hyper-parameters ------------------------------------------------------------------------------

@dataclass
class LlamaParams:
    n_vocab: int
    n_embd: int
    n_ff: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ctx: int
    rms_eps: float
    rope_theta: float
    rope_scaling: dict | None  # {"rope_type": "linear"|"yarn"|"llama3", ...}; None for plain rope
    tied: bool
    name: str

    @classmethod
    def from_config(cls, config: dict, where: Path, tensor_names: set[str]) -> LlamaParams:
        check_architecture(config, where)
        missing = [k for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                               "vocab_size") if k not in config]
        if missing:
            raise ExportError(f"{where / 'config.json'}: missing {', '.join(missing)}")
        n_head = int(config["num_attention_heads"])
        rope = dict(config.get("rope_parameters") or {})  # transformers 5
        legacy = config.get("rope_scaling") or {}  # transformers 4 (rope_theta beside it)
        theta = rope.get("rope_theta", config.get("rope_theta", 10000.0))
        scaling = {**legacy, **rope}
        kind = scaling.get("rope_type") or scaling.get("type") or "default"
        if kind not in ("default", "linear", "yarn", "llama3"):
            raise ExportError(f"{where / 'config.json'}: rope scaling {kind!r} is not supported; supported: "
                              "default, linear, yarn, llama3")
        return cls(
            n_vocab=int(config["vocab_size"]), n_embd=int(config["hidden_size"]),
            n_ff=int(config["intermediate_size"]), n_layer=int(config["num_hidden_layers"]), n_head=n_head,
            n_head_kv=int(config.get("num_key_value_heads") or n_head),
            head_dim=int(config.get("head_dim") or config["hidden_size"] // n_head),
            n_ctx=int(config.get("max_position_embeddings") or 2048),
            rms_eps=float(config.get("rms_norm_eps", 1e-6)), rope_theta=float(theta),
            rope_scaling=None if kind == "default" else {**scaling, "rope_type": kind},
            tied="lm_head.weight" not in tensor_names or bool(config.get("tie_word_embeddings", False)),
            name=str(config.get("_name_or_path") or config.get("_model_name_or_path") or where.name),
        )

    def llama3_rope_factors(self) -> np.ndarray:
        """Per-frequency divisors of Llama 3.1's rope scaling (llama.cpp reads them from ``rope_freqs.weight``)."""
        s = self.rope_scaling
        factor = float(s["factor"])
        low, high = float(s.get("low_freq_factor", 1.0)), float(s.get("high_freq_factor", 4.0))
        old_ctx = float(s.get("original_max_position_embeddings", 8192))
        freqs = 1.0 / (self.rope_theta ** (np.arange(0, self.head_dim, 2, dtype=np.float64) / self.head_dim))
        wavelen = 2 * math.pi / freqs
        smooth = (old_ctx / wavelen - low) / (high - low)
        factors = np.where(wavelen < old_ctx / high, 1.0,
                           np.where(wavelen > old_ctx / low, factor, 1.0 / ((1 - smooth) / factor + smooth)))
        return factors.astype(np.float32)


# --- tokenizer ------------------------------------------------------------------------------------

@dataclass
class Vocab:
    tokens: list[str]
    types: list[int]
    merges: list[str]
    pre: str
    bos_id: int | None
    eos_id: int | None
    eot_id: int | None
    pad_id: int | None
    unk_id: int | None
    add_bos: bool
    add_eos: bool
    chat_template: str | None
    chat_format: str | None


def pre_tokenizer_name(tokenizer_json: dict, where: Path) -> str:
    """llama.cpp's name for the pre-tokenizer in ``tokenizer.json``, or ExportError naming what it is."""
    pre = tokenizer_json.get("pre_tokenizer") or {}

    def shape(p: dict) -> dict:  # the fields that decide how text is split
        if p.get("type") == "Sequence":
            return {"type": "Sequence", "pretokenizers": [shape(x) for x in p.get("pretokenizers", [])]}
        keep = {"ByteLevel": ("add_prefix_space", "use_regex"), "Digits": ("individual_digits",),
                "Split": ("pattern", "behavior", "invert")}.get(p.get("type"), ())
        return {"type": p.get("type"), **{k: p.get(k, True if k == "use_regex" else None) for k in keep}}

    for name, known in PRE_TOKENIZERS.items():
        if shape(pre) == shape(known):
            return name
    summary = pre.get("type") if pre.get("type") != "Sequence" else \
        "Sequence[" + ", ".join(p.get("type", "?") for p in pre.get("pretokenizers", [])) + "]"
    raise ExportError(f"{where / 'tokenizer.json'}: pre-tokenizer {summary} is not one taide maps to llama.cpp; "
                      f"supported: {', '.join(PRE_TOKENIZERS)} (Llama 3, SmolLM2, GPT-2 byte-level BPE)")


def read_vocab(directory: Path, n_vocab: int, ref=None) -> Vocab:
    """The tokenizer of an HF directory in GGUF terms. Only byte-level BPE (``tokenizer.json``) is supported."""
    from transformers import AutoTokenizer

    from taide.chat.formats import chat_format_for
    from taide.models import resolve_model

    path = directory / "tokenizer.json"
    if not path.is_file():
        extra = (" (it has tokenizer.model: SentencePiece tokenizers such as Llama 2's are not supported)"
                 if (directory / "tokenizer.model").is_file() else "")
        raise ExportError(f"{directory}: missing tokenizer files: GGUF export needs tokenizer.json{extra}")
    tj = read_json(path)
    model = tj.get("model") or {}
    if model.get("type") != "BPE":
        raise ExportError(f"{path}: tokenizer model {model.get('type')!r} is not supported; GGUF export handles "
                          "byte-level BPE tokenizers (Llama 3, SmolLM2)")
    if tj.get("normalizer"):
        raise ExportError(f"{path}: the tokenizer has a normalizer ({tj['normalizer'].get('type')}), which llama.cpp's "
                          "byte-level BPE does not apply; not supported")
    pre = pre_tokenizer_name(tj, directory)
    tokens: list[str | None] = [None] * n_vocab
    types = [int(1)] * n_vocab  # NORMAL
    for text, i in model["vocab"].items():
        if i >= n_vocab:
            raise ExportError(f"{path}: token {text!r} has id {i} but config.json's vocab_size is {n_vocab}")
        tokens[i] = text
    for added in tj.get("added_tokens", []):
        i = added["id"]
        if i >= n_vocab:
            raise ExportError(f"{path}: added token {added['content']!r} has id {i} but config.json's vocab_size "
                              f"is {n_vocab}")
        tokens[i] = added["content"]
        types[i] = 3 if added.get("special") else 4  # CONTROL : USER_DEFINED
    for i, t in enumerate(tokens):
        if t is None:  # embedding rows the tokenizer never produces (vocab padded to a multiple of 64, say)
            tokens[i], types[i] = f"[PAD{i}]", 5  # UNUSED
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]

    tok = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    probe = tok("a").input_ids
    ref = ref or resolve_model(directory)
    template = tok.chat_template if isinstance(tok.chat_template, str) else ref.chat_template
    eot_id = None
    if ref.chat_format:
        fmt = chat_format_for(ref.chat_format, template, tok.bos_token, tok.eos_token)
        vocab = tok.get_vocab()
        stops = [vocab[t] for t in fmt.stop_tokens if t in vocab]
        eot_id = stops[0] if stops else None
    return Vocab(tokens=tokens, types=types, merges=merges, pre=pre, bos_id=tok.bos_token_id, eos_id=tok.eos_token_id,
                 eot_id=eot_id, pad_id=tok.pad_token_id, unk_id=tok.unk_token_id,
                 add_bos=tok.bos_token_id is not None and probe[:1] == [tok.bos_token_id],
                 add_eos=tok.eos_token_id is not None and probe[-1:] == [tok.eos_token_id],
                 chat_template=template, chat_format=ref.chat_format)


# --- tensors --------------------------------------------------------------------------------------

@dataclass
class TensorPlan:
    name: str  # llama.cpp's
    source: str | None  # HF name (None: computed, e.g. rope_freqs)
    file: Path | None
    shape: tuple[int, ...]
    permute: str | None  # "q" | "k" | None
    qtype: object = None  # gguf.GGMLQuantizationType, set by the quantization policy
    is_output: bool = False  # the output projection (output.weight, or token_embd when tied)


def safetensors_files(directory: Path) -> list[Path]:
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(read_json(index)["weight_map"].values()))
        return [directory / f for f in files]
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        pickles = [p.name for p in directory.iterdir() if p.suffix in (".bin", ".pt", ".pth")]
        extra = f" (it has {', '.join(pickles)}: pickled weights are never loaded)" if pickles else ""
        raise ExportError(f"{directory}: no weights: expected model.safetensors or sharded *.safetensors{extra}")
    return files


def plan_tensors(directory: Path, params_from_config=None) -> tuple[LlamaParams, list[TensorPlan]]:
    from safetensors import safe_open

    config = read_json(directory / "config.json")
    check_architecture(config, directory)
    found: dict[str, tuple[Path, tuple[int, ...]]] = {}
    for f in safetensors_files(directory):
        with safe_open(str(f), "pt") as st:
            for key in st.keys():
                found[key] = (f, tuple(st.get_slice(key).get_shape()))
    params = LlamaParams.from_config(config, directory, set(found))
    plans: list[TensorPlan] = []
    unknown = []
    for key, (f, shape) in found.items():
        if _SKIP.match(key):
            continue
        if key == "lm_head.weight" and params.tied:
            continue  # tied: llama.cpp reuses token_embd
        for pattern, target, perm in _TENSOR_MAP:
            m = re.fullmatch(pattern, key)
            if m:
                plans.append(TensorPlan(target.format(*m.groups()), key, f, shape, perm))
                break
        else:
            unknown.append(key)
    if unknown:
        raise ExportError(f"{directory}: tensors a Llama model does not have: {', '.join(unknown[:5])}"
                          f"{' ...' if len(unknown) > 5 else ''}; is this really a plain Llama checkpoint?")
    names = {p.name for p in plans}
    needed = ["token_embd.weight", "output_norm.weight"] + [
        f"blk.{i}.{t}.weight" for i in range(params.n_layer)
        for t in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")]
    missing = [n for n in needed if n not in names]
    if missing:
        raise ExportError(f"{directory}: the weights lack {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if params.rope_scaling and params.rope_scaling["rope_type"] == "llama3":
        plans.append(TensorPlan("rope_freqs.weight", None, None, (params.head_dim // 2,), None))
    out_name = "token_embd.weight" if params.tied else "output.weight"
    for p in plans:
        p.is_output = p.name == out_name
    order = {n: i for i, n in enumerate(["token_embd.weight", "rope_freqs.weight", "output_norm.weight", "output.weight"])}

    def sort_key(p: TensorPlan):
        m = re.match(r"blk\.(\d+)\.", p.name)
        return (1, int(m.group(1)), p.name) if m else (0 if p.name in order else 2, order.get(p.name, 0), p.name)

    plans.sort(key=sort_key)
    return params, plans


def _load(plan: TensorPlan, params: LlamaParams, handles: dict) -> np.ndarray:
    if plan.name == "rope_freqs.weight":
        return params.llama3_rope_factors()
    from safetensors import safe_open

    if plan.file not in handles:
        handles[plan.file] = safe_open(str(plan.file), "pt")
    data = handles[plan.file].get_tensor(plan.source).float().numpy()
    if plan.permute == "q":
        data = permute_rows(data, params.n_head)
    elif plan.permute == "k":
        data = permute_rows(data, params.n_head_kv)
    return np.ascontiguousarray(data, dtype=np.float32)


# --- writing --------------------------------------------------------------------------------------

def write_gguf(directory: str | Path, out: str | Path, qtype_for, file_type: int, progress=None, ref=None) -> Path:
    """Write ``directory`` (an HF Llama directory) to ``out``. ``qtype_for(plan)`` picks each tensor's GGML type
    (see :mod:`taide.export.quantize`); ``file_type`` is llama.cpp's ``general.file_type``; ``ref``: the directory's
    resolved :class:`~taide.models.ModelRef`, if the caller has it."""
    import gguf

    directory, out = Path(directory), Path(out)
    params, plans = plan_tensors(directory)
    vocab = read_vocab(directory, params.n_vocab, ref)
    for p in plans:
        p.qtype = qtype_for(p)
    tmp = out.with_name(out.name + ".partial")
    out.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(tmp), "llama")
    _write_metadata(w, params, vocab, file_type, plans)
    for p in plans:
        block, type_size = gguf.GGML_QUANT_SIZES[p.qtype]
        n = math.prod(p.shape)
        nbytes = n // block * type_size
        if p.qtype in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            w.add_tensor_info(p.name, p.shape, np.dtype(np.float32 if p.qtype == gguf.GGMLQuantizationType.F32
                                                        else np.float16), nbytes)
        else:
            w.add_tensor_info(p.name, gguf.quant_shape_to_byte_shape(p.shape, p.qtype), np.dtype(np.uint8), nbytes,
                              raw_dtype=p.qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    handles: dict = {}
    try:
        for i, p in enumerate(plans):
            data = _load(p, params, handles)
            w.write_tensor_data(gguf.quants.quantize(data, p.qtype))
            if progress:
                progress(i + 1, len(plans), p.name)
    finally:
        w.close()
        handles.clear()
    return replace_atomically(tmp, out)


def _write_metadata(w, params: LlamaParams, vocab: Vocab, file_type: int, plans: list[TensorPlan]) -> None:
    import gguf

    w.add_type("model")
    w.add_name(params.name)
    w.add_context_length(params.n_ctx)
    w.add_embedding_length(params.n_embd)
    w.add_block_count(params.n_layer)
    w.add_feed_forward_length(params.n_ff)
    w.add_head_count(params.n_head)
    w.add_head_count_kv(params.n_head_kv)
    if params.head_dim != params.n_embd // params.n_head:
        w.add_key_length(params.head_dim)
        w.add_value_length(params.head_dim)
    w.add_rope_dimension_count(params.head_dim)
    w.add_rope_freq_base(params.rope_theta)
    w.add_layer_norm_rms_eps(params.rms_eps)
    w.add_vocab_size(params.n_vocab)
    s = params.rope_scaling
    if s and s["rope_type"] == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(float(s["factor"]))
    elif s and s["rope_type"] == "yarn":
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(float(s["factor"]))
        if s.get("original_max_position_embeddings"):
            w.add_rope_scaling_orig_ctx_len(int(s["original_max_position_embeddings"]))
        if s.get("attention_factor") is not None:
            w.add_rope_scaling_attn_factors(float(s["attention_factor"]))
        if s.get("beta_fast") is not None:
            w.add_rope_scaling_yarn_beta_fast(float(s["beta_fast"]))
        if s.get("beta_slow") is not None:
            w.add_rope_scaling_yarn_beta_slow(float(s["beta_slow"]))
    w.add_file_type(file_type)
    if any(p.qtype not in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16,
                           gguf.GGMLQuantizationType.BF16) for p in plans):
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(vocab.pre)
    w.add_token_list(vocab.tokens)
    w.add_token_types(vocab.types)
    w.add_token_merges(vocab.merges)
    for value, add in ((vocab.bos_id, w.add_bos_token_id), (vocab.eos_id, w.add_eos_token_id),
                       (vocab.eot_id, w.add_eot_token_id), (vocab.pad_id, w.add_pad_token_id),
                       (vocab.unk_id, w.add_unk_token_id)):
        if value is not None:
            add(int(value))
    w.add_add_bos_token(vocab.add_bos)
    w.add_add_eos_token(vocab.add_eos)
    w.add_add_space_prefix(False)
    if vocab.chat_template:
        w.add_chat_template(vocab.chat_template)
