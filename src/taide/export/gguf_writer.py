"""Write a Hugging Face directory (Llama 2/3.x, Mistral, Qwen 2/2.5/3, Phi-3, Gemma 3) as a GGUF file llama.cpp
(and Ollama) load.

What goes in, the way llama.cpp's loader reads it:
- architecture metadata, per family (see :class:`Architecture`): context length, embedding/FFN sizes, block
  count, heads and KV heads, head size, rope base and scaling, RMS-norm epsilon; Gemma 3 adds its sliding
  window and final-logit soft-capping;
- tensors renamed to llama.cpp's names (``blk.N.attn_q.weight``...) and converted where the two sides compute
  differently:

  - Llama: Q and K permuted. HF Llama checkpoints rotate the two *halves* of each head (``rotate_half``),
    llama.cpp's LLAMA rope (type NORM) rotates *adjacent pairs*, so the rows of each head are re-ordered as
    Meta's original checkpoint had them (row ``j`` of the first half goes to ``2j``, of the second half to
    ``2j+1``). The scores are unchanged;
  - Gemma 3: every RMSNorm weight plus one. Gemma's RMSNorm multiplies by ``1 + w`` and HF stores ``w``;
    llama.cpp multiplies by the stored weight (transformers' GGUF reader takes the one off again). Gemma's
    rope is NEOX (halves) on both sides: no permutation. llama.cpp scales queries by a fixed rule (1/sqrt(head_dim),
    or 1/sqrt(hidden/heads) at 62 layers); a ``query_pre_attn_scalar`` that differs is folded into the query norm;
  - Qwen 2/3 and Phi-3 use NEOX rope too: no permutation; Qwen 2's q/k/v biases and Qwen 3's query/key norms are
    written as they are, Phi-3's fused ``qkv_proj`` and ``gate_up_proj`` as llama.cpp's fused tensors;
- tied embeddings (SmolLM2, Gemma): no ``output.weight``; llama.cpp then uses ``token_embd`` as the output;
- the tokenizer, as transformers builds it from the directory: byte-level BPE (Llama 3, Qwen, SmolLM2) as
  llama.cpp's ``gpt2`` model (tokens, merges, and the pre-tokenizer name llama.cpp keys its splitting rules on),
  or SentencePiece-style BPE with byte fallback (Gemma, Mistral, Phi-3) as llama.cpp's ``llama`` model (tokens and
  scores, which rank its merges); both with token types, special ids (BOS, EOS, end of turn, padding, unknown),
  ``add_bos_token`` and the chat template. Where llama.cpp's tokenizer has no switch for what transformers does
  (NFC before Qwen's BPE; "▁" before the start of an input only, as transformers loads Mistral's and Phi-3's),
  ``taide.tokenizer.*`` keys say so and taide's llama.cpp engine does it (see :data:`TAIDE_TOKENIZER_KEYS`).

Tensors are streamed: the plan (names, shapes, types) is written first from the safetensors headers,
then each tensor is read, converted and written, so memory holds one tensor at a time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from taide.artifacts import atomic_write
from taide.export.common import ExportError, check_architecture, model_type, read_json
from taide.models.pretokenizers import PRE_TOKENIZERS

# GGUF token types (llama.cpp's llama_token_type)
NORMAL, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 3, 4, 5, 6


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
class ModelParams:
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
    sliding_window: int | None = None  # Gemma 3: the window of its local layers; None when every layer is global
    final_logit_softcapping: float | None = None  # Gemma 3: tanh cap on the logits, None (the released models) for none
    query_scale: float = 1.0  # Gemma 3: folded into the query norm where llama.cpp's fixed query scaling differs
    rope_dims: int | None = None  # rotated dimensions per head when not all (Phi-3's partial_rotary_factor)

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


def _model_name(config: dict, where: Path) -> str:
    return str(config.get("_name_or_path") or config.get("_model_name_or_path") or where.name)


def _llama_params(config: dict, where: Path, tensor_names: set[str]) -> ModelParams:
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
    return ModelParams(
        n_vocab=int(config["vocab_size"]), n_embd=int(config["hidden_size"]),
        n_ff=int(config["intermediate_size"]), n_layer=int(config["num_hidden_layers"]), n_head=n_head,
        n_head_kv=int(config.get("num_key_value_heads") or n_head),
        head_dim=int(config.get("head_dim") or config["hidden_size"] // n_head),
        n_ctx=int(config.get("max_position_embeddings") or 2048),
        rms_eps=float(config.get("rms_norm_eps", 1e-6)), rope_theta=float(theta),
        rope_scaling=None if kind == "default" else {**scaling, "rope_type": kind},
        tied="lm_head.weight" not in tensor_names or bool(config.get("tie_word_embeddings", False)),
        name=_model_name(config, where),
    )


def _qwen_params(config: dict, where: Path, tensor_names: set[str]) -> ModelParams:
    if config.get("use_sliding_window") and config.get("sliding_window"):
        raise ExportError(f"{where / 'config.json'}: use_sliding_window is set; llama.cpp's qwen2/qwen3 attend to the "
                          "whole context, so the export would compute another model")
    return _llama_params(config, where, tensor_names)


def _mistral_params(config: dict, where: Path, tensor_names: set[str]) -> ModelParams:
    window, context = config.get("sliding_window"), config.get("max_position_embeddings") or 0
    if window and window < context:
        raise ExportError(f"{where / 'config.json'}: sliding_window {window} is shorter than the context ({context}); "
                          "llama.cpp's llama architecture attends to the whole context (Mistral v0.1's window is "
                          "not supported; v0.2 and later have none)")
    return _llama_params(config, where, tensor_names)


def _phi3_params(config: dict, where: Path, tensor_names: set[str]) -> ModelParams:
    """Phi-3's hyper-parameters; its "longrope" (the 128K models) as llama.cpp takes it: long and short factor
    tensors and an attention factor from the scale."""
    params = _llama_params({**config, "rope_scaling": None, "rope_parameters": None}, where, tensor_names)
    scaling = dict(config.get("rope_scaling") or config.get("rope_parameters") or {})
    kind = scaling.get("rope_type") or scaling.get("type") or "default"
    partial = float(config.get("partial_rotary_factor") or 1.0)
    params.rope_dims = int(params.head_dim * partial)
    params.rope_theta = float(scaling.get("rope_theta", config.get("rope_theta", 10000.0)))
    if kind in ("longrope", "su"):
        original = int(scaling.get("original_max_position_embeddings") or config.get("original_max_position_embeddings")
                       or params.n_ctx)
        scale = params.n_ctx / original
        for key in ("long_factor", "short_factor"):
            if len(scaling.get(key) or []) != params.rope_dims // 2:
                raise ExportError(f"{where / 'config.json'}: rope_scaling.{key} must have {params.rope_dims // 2} "
                                  "values (one per rotated pair)")
        params.rope_scaling = {"rope_type": "longrope", "original_max_position_embeddings": original,
                               "long_factor": scaling["long_factor"], "short_factor": scaling["short_factor"],
                               "attention_factor": scaling.get("attention_factor") or (
                                   math.sqrt(1 + math.log(scale) / math.log(original)) if scale > 1 else 1.0)}
    elif kind != "default":
        raise ExportError(f"{where / 'config.json'}: Phi-3 rope scaling {kind!r} is not supported; supported: "
                          "default, longrope")
    return params


# llama.cpp fixes some of Gemma 3 in code rather than reading it from the GGUF (its own converter writes none of
# it): every 6th layer is global and the others slide, the local layers' rope base is 10000 and unscaled, and
# queries are scaled by 1/sqrt(head_dim) (by 1/sqrt(hidden/heads) for the 62-layer 27B). A checkpoint that
# differs would load and run, wrongly; it is refused instead.
GEMMA3_SWA_PERIOD = 6
GEMMA3_LOCAL_ROPE_THETA = 10000.0
_GEMMA3_27B_LAYERS = 62


def _gemma3_text_config(config: dict, where: Path):
    """Gemma 3's text hyper-parameters as transformers reads them. A Gemma3ForConditionalGeneration's config.json
    keeps them in a sparse ``text_config`` (the rest are Gemma3TextConfig's defaults); reading either through
    transformers' own class also gives the layer types and rope parameters exactly as the model that verify
    runs against sees them."""
    from transformers import Gemma3TextConfig

    text = dict(config.get("text_config") or {}) if model_type(config) == "gemma3" else dict(config)
    for key in ("model_type", "architectures", "transformers_version", "auto_map"):
        text.pop(key, None)
    try:
        return Gemma3TextConfig(**text)
    except (TypeError, ValueError, KeyError) as e:
        raise ExportError(f"{where / 'config.json'}: transformers cannot read its Gemma 3 text config: {e}") from e


def _gemma3_params(config: dict, where: Path, tensor_names: set[str]) -> ModelParams:
    c = _gemma3_text_config(config, where)
    at = where / "config.json"
    n_layer, n_embd, n_head, head_dim = c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.head_dim
    if c.attn_logit_softcapping is not None:
        raise ExportError(f"{at}: attn_logit_softcapping is {c.attn_logit_softcapping}; llama.cpp's gemma3 has no "
                          "attention soft-capping (that was Gemma 2), so the export would compute another model")
    if getattr(c, "use_bidirectional_attention", False):
        raise ExportError(f"{at}: use_bidirectional_attention is set (an embedding model such as EmbeddingGemma); "
                          "taide exports causal language models only")
    if c.hidden_activation != "gelu_pytorch_tanh":
        raise ExportError(f"{at}: hidden_activation {c.hidden_activation!r} is not supported; llama.cpp's gemma3 "
                          "uses gelu_pytorch_tanh")
    # llama.cpp scales queries by 1/sqrt(head_dim), at 62 layers by 1/sqrt(hidden/heads), and reads no other value;
    # scaling the query norm's weights by the ratio gives the model's own 1/sqrt(query_pre_attn_scalar) (rope is
    # linear, so the scale passes through it).
    assumed = n_embd // n_head if n_layer == _GEMMA3_27B_LAYERS else head_dim
    query_scale = math.sqrt(assumed / float(c.query_pre_attn_scalar))
    sliding = [t == "sliding_attention" for t in c.layer_types]
    standard = [i % GEMMA3_SWA_PERIOD != GEMMA3_SWA_PERIOD - 1 for i in range(n_layer)]
    if any(sliding) and sliding != standard:
        raise ExportError(f"{at}: layer_types {''.join('S' if s else 'G' for s in sliding)} (S sliding, G global) "
                          f"differ from Gemma 3's pattern, every {GEMMA3_SWA_PERIOD}th layer global, which llama.cpp "
                          "assumes for gemma3")
    theta, scaling = _gemma3_rope(c, at)
    return ModelParams(
        n_vocab=int(c.vocab_size), n_embd=n_embd, n_ff=int(c.intermediate_size), n_layer=n_layer, n_head=n_head,
        n_head_kv=int(c.num_key_value_heads), head_dim=int(head_dim), n_ctx=int(c.max_position_embeddings),
        rms_eps=float(c.rms_norm_eps), rope_theta=theta, rope_scaling=scaling,
        tied="lm_head.weight" not in tensor_names or bool(c.tie_word_embeddings),
        name=_model_name(config, where),
        sliding_window=int(c.sliding_window) if any(sliding) else None,
        final_logit_softcapping=c.final_logit_softcapping, query_scale=query_scale,
    )


def _gemma3_rope(c, at: Path) -> tuple[float, dict | None]:
    """(the global layers' rope base, their scaling or None). Gemma 3 4B and larger scale the global layers'
    rope linearly (factor 8), which llama.cpp applies to exactly those layers; the local layers' rope is fixed
    in llama.cpp, so it must be what llama.cpp assumes."""
    params = dict(c.rope_parameters or {})
    full = params.get("full_attention", params)
    local = params.get("sliding_attention", {"rope_type": "default", "rope_theta": GEMMA3_LOCAL_ROPE_THETA})
    local_kind = local.get("rope_type", "default")
    if local_kind != "default" or float(local.get("rope_theta", 0)) != GEMMA3_LOCAL_ROPE_THETA:
        raise ExportError(f"{at}: the sliding layers' rope is {local_kind} with base {local.get('rope_theta')}; "
                          f"llama.cpp's gemma3 fixes it at default, base {GEMMA3_LOCAL_ROPE_THETA:g}")
    kind = full.get("rope_type", "default")
    if kind not in ("default", "linear"):
        raise ExportError(f"{at}: the global layers' rope scaling {kind!r} is not supported for Gemma 3; supported: "
                          "default, linear")
    scaling = {"rope_type": "linear", "factor": float(full["factor"])} if kind == "linear" else None
    return float(full.get("rope_theta", 1_000_000.0)), scaling


# --- architectures --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Architecture:
    """One model family as llama.cpp names and computes it; the rest of the writer is shared.

    ``tensor_map`` rows: (regex on the HF tensor name, llama.cpp's name, conversion), the conversion being
    "q"/"k" (rows permuted for llama.cpp's rope, with the query/key head count), "norm" (``norm_offset`` added),
    "q_norm" (a norm that also carries ``query_scale``) or None."""

    name: str  # llama.cpp's general.architecture
    label: str  # for messages: "a Llama model does not have ..."
    tensor_map: tuple[tuple[str, str, str | None], ...]
    block_tensors: tuple[str, ...]  # every blk.N must have these
    params: Callable[[dict, Path, set], ModelParams]
    metadata: Callable  # (GGUFWriter, ModelParams) -> None: the family's hyper-parameter keys
    norm_offset: float = 0.0
    renames: tuple[tuple[str, str], ...] = ()  # HF name prefixes of a multimodal checkpoint → the text model's
    ignore: str = r".*rotary_emb\.inv_freq"  # tensors not exported


def _llama_metadata(w, params: ModelParams) -> None:
    import gguf

    _common_hparams(w, params)
    if params.head_dim != params.n_embd // params.n_head:
        w.add_key_length(params.head_dim)
        w.add_value_length(params.head_dim)
    w.add_rope_dimension_count(params.rope_dims or params.head_dim)
    w.add_rope_freq_base(params.rope_theta)
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
    elif s and s["rope_type"] == "longrope":  # Phi-3 128K: factors are tensors (see plan_tensors)
        w.add_rope_scaling_attn_factors(float(s["attention_factor"]))
        w.add_rope_scaling_orig_ctx_len(int(s["original_max_position_embeddings"]))


def _gemma3_metadata(w, params: ModelParams) -> None:
    """The keys google/gemma-3-*'s GGUFs from llama.cpp's converter carry (head size always written: Gemma's is
    not hidden/heads)."""
    import gguf

    _common_hparams(w, params)
    w.add_key_length(params.head_dim)
    w.add_value_length(params.head_dim)
    w.add_rope_freq_base(params.rope_theta)
    if params.sliding_window is not None:
        w.add_sliding_window(params.sliding_window)
    if params.final_logit_softcapping is not None:
        w.add_final_logit_softcapping(float(params.final_logit_softcapping))
    if params.rope_scaling:  # linear, on the global layers
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(float(params.rope_scaling["factor"]))


def _common_hparams(w, params: ModelParams) -> None:
    w.add_context_length(params.n_ctx)
    w.add_embedding_length(params.n_embd)
    w.add_block_count(params.n_layer)
    w.add_feed_forward_length(params.n_ff)
    w.add_head_count(params.n_head)
    w.add_head_count_kv(params.n_head_kv)
    w.add_layer_norm_rms_eps(params.rms_eps)


_L = r"model\.layers\.(\d+)\."
LLAMA = Architecture(
    name="llama", label="Llama",
    tensor_map=(
        (r"model\.embed_tokens\.weight", "token_embd.weight", None),
        (r"model\.norm\.weight", "output_norm.weight", "norm"),
        (r"lm_head\.weight", "output.weight", None),
        (_L + r"input_layernorm\.weight", "blk.{}.attn_norm.weight", "norm"),
        (_L + r"self_attn\.q_proj\.(weight|bias)", "blk.{}.attn_q.{}", "q"),
        (_L + r"self_attn\.k_proj\.(weight|bias)", "blk.{}.attn_k.{}", "k"),
        (_L + r"self_attn\.v_proj\.(weight|bias)", "blk.{}.attn_v.{}", None),
        (_L + r"self_attn\.o_proj\.(weight|bias)", "blk.{}.attn_output.{}", None),
        (_L + r"post_attention_layernorm\.weight", "blk.{}.ffn_norm.weight", "norm"),
        (_L + r"mlp\.gate_proj\.(weight|bias)", "blk.{}.ffn_gate.{}", None),
        (_L + r"mlp\.up_proj\.(weight|bias)", "blk.{}.ffn_up.{}", None),
        (_L + r"mlp\.down_proj\.(weight|bias)", "blk.{}.ffn_down.{}", None),
    ),
    block_tensors=("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up",
                   "ffn_down"),
    params=_llama_params, metadata=_llama_metadata,
)

# Gemma 3 has four norms per block: HF's post_attention_layernorm is llama.cpp's post_attention_norm (Llama's
# post_attention_layernorm is the norm *before* the FFN, llama.cpp's ffn_norm, which Gemma calls
# pre_feedforward_layernorm), plus RMSNorms on the queries and keys.
GEMMA3 = Architecture(
    name="gemma3", label="Gemma 3",
    tensor_map=(
        (r"model\.embed_tokens\.weight", "token_embd.weight", None),
        (r"model\.norm\.weight", "output_norm.weight", "norm"),
        (r"lm_head\.weight", "output.weight", None),
        (_L + r"input_layernorm\.weight", "blk.{}.attn_norm.weight", "norm"),
        (_L + r"self_attn\.q_proj\.weight", "blk.{}.attn_q.weight", None),
        (_L + r"self_attn\.k_proj\.weight", "blk.{}.attn_k.weight", None),
        (_L + r"self_attn\.v_proj\.weight", "blk.{}.attn_v.weight", None),
        (_L + r"self_attn\.o_proj\.weight", "blk.{}.attn_output.weight", None),
        (_L + r"self_attn\.q_norm\.weight", "blk.{}.attn_q_norm.weight", "q_norm"),
        (_L + r"self_attn\.k_norm\.weight", "blk.{}.attn_k_norm.weight", "norm"),
        (_L + r"post_attention_layernorm\.weight", "blk.{}.post_attention_norm.weight", "norm"),
        (_L + r"pre_feedforward_layernorm\.weight", "blk.{}.ffn_norm.weight", "norm"),
        (_L + r"post_feedforward_layernorm\.weight", "blk.{}.post_ffw_norm.weight", "norm"),
        (_L + r"mlp\.gate_proj\.weight", "blk.{}.ffn_gate.weight", None),
        (_L + r"mlp\.up_proj\.weight", "blk.{}.ffn_up.weight", None),
        (_L + r"mlp\.down_proj\.weight", "blk.{}.ffn_down.weight", None),
    ),
    block_tensors=("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "attn_q_norm", "attn_k_norm",
                   "post_attention_norm", "ffn_norm", "post_ffw_norm", "ffn_gate", "ffn_up", "ffn_down"),
    params=_gemma3_params, metadata=_gemma3_metadata,
    norm_offset=1.0,
    # Gemma3ForConditionalGeneration: the text model under language_model (transformers 5: model.language_model.*,
    # transformers 4: language_model.model.*); the vision tower and projector stay out (llama.cpp's mmproj).
    renames=(("model.language_model.", "model."), ("language_model.model.", "model."),
             ("language_model.lm_head.", "lm_head.")),
    ignore=r".*rotary_emb\.inv_freq|(model\.)?(vision_tower|multi_modal_projector)\..*",
)

_LLAMA_BODY = LLAMA.tensor_map[:3] + (
    (_L + r"input_layernorm\.weight", "blk.{}.attn_norm.weight", None),
    (_L + r"self_attn\.q_proj\.(weight|bias)", "blk.{}.attn_q.{}", None),
    (_L + r"self_attn\.k_proj\.(weight|bias)", "blk.{}.attn_k.{}", None),
) + LLAMA.tensor_map[6:]
# Qwen 2 (and 2.5): Llama's tensors with q/k/v biases, rope in halves (no permutation).
QWEN2 = Architecture(name="qwen2", label="Qwen 2", tensor_map=_LLAMA_BODY, block_tensors=LLAMA.block_tensors,
                     params=_qwen_params, metadata=_llama_metadata)
# Qwen 3: no biases, an RMSNorm on queries and keys, a head size of its own.
QWEN3 = Architecture(name="qwen3", label="Qwen 3", tensor_map=_LLAMA_BODY + (
    (_L + r"self_attn\.q_norm\.weight", "blk.{}.attn_q_norm.weight", None),
    (_L + r"self_attn\.k_norm\.weight", "blk.{}.attn_k_norm.weight", None)),
    block_tensors=LLAMA.block_tensors + ("attn_q_norm", "attn_k_norm"),
    params=_qwen_params, metadata=_llama_metadata)
# Mistral: llama.cpp's llama architecture (Q and K permuted), as its own converter writes it.
MISTRAL = Architecture(name="llama", label="Mistral", tensor_map=LLAMA.tensor_map, block_tensors=LLAMA.block_tensors,
                       params=_mistral_params, metadata=_llama_metadata)
# Phi-3: fused qkv and gate/up projections (llama.cpp splits them the same way: gate first), rope in halves.
PHI3 = Architecture(
    name="phi3", label="Phi-3",
    tensor_map=LLAMA.tensor_map[:3] + (
        (_L + r"input_layernorm\.weight", "blk.{}.attn_norm.weight", None),
        (_L + r"self_attn\.qkv_proj\.weight", "blk.{}.attn_qkv.weight", None),
        (_L + r"self_attn\.o_proj\.weight", "blk.{}.attn_output.weight", None),
        (_L + r"post_attention_layernorm\.weight", "blk.{}.ffn_norm.weight", None),
        (_L + r"mlp\.gate_up_proj\.weight", "blk.{}.ffn_up.weight", None),
        (_L + r"mlp\.down_proj\.weight", "blk.{}.ffn_down.weight", None),
    ),
    block_tensors=("attn_norm", "attn_qkv", "attn_output", "ffn_norm", "ffn_up", "ffn_down"),
    params=_phi3_params, metadata=_llama_metadata)

# HF config model_type → the family that writes it (SUPPORTED_ARCHITECTURES in common.py says the same in words).
ARCHITECTURES: dict[str, Architecture] = {"llama": LLAMA, "mistral": MISTRAL, "qwen2": QWEN2, "qwen3": QWEN3,
                                          "phi3": PHI3, "gemma3_text": GEMMA3, "gemma3": GEMMA3}


def architecture_for(config: dict, where: Path) -> Architecture:
    check_architecture(config, where)
    return ARCHITECTURES[model_type(config)]


# --- tokenizer ------------------------------------------------------------------------------------

@dataclass
class Vocab:
    model: str  # llama.cpp's tokenizer model: "gpt2" (byte-level BPE) or "llama" (SentencePiece-style)
    tokens: list[str]
    types: list[int]
    scores: list[float] | None  # "llama" only: they rank its merges
    merges: list[str]  # "gpt2" only
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
    add_space_prefix: bool = False
    taide_keys: tuple[tuple[str, str], ...] = ()


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
                      f"supported: {', '.join(PRE_TOKENIZERS)} (Llama 3, Qwen 2/3, SmolLM2, GPT-2 byte-level BPE)")


def _tokenizer_spec(directory: Path, tok) -> dict:
    """The tokenizer transformers runs for ``directory``, as tokenizer.json writes it. That, not the file, is what
    llama.cpp must match: transformers rebuilds some tokenizers from their vocabulary (Mistral's and Phi-3's become
    a Metaspace tokenizer whatever their file's normalizer says)."""
    path = directory / "tokenizer.json"
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:
        raise ExportError(f"{path}: transformers loads this tokenizer as {type(tok).__name__}, not from tokenizer.json "
                          "(a Rust tokenizer); convert it with llama.cpp's convert_hf_to_gguf.py")
    import json

    tj = json.loads(backend.to_str())
    kind = (tj.get("model") or {}).get("type")
    if kind != "BPE":
        raise ExportError(f"{path}: tokenizer model {kind!r} is not supported; GGUF export handles BPE tokenizers: "
                          "byte-level (Llama 3, Qwen, SmolLM2) or with byte fallback (Gemma, Mistral, Phi-3)")
    return tj


# Keys taide adds where llama.cpp's tokenizer has no switch for what transformers does; taide's llama.cpp engine
# reads them (engines/llamacpp_engine.LlamaCppCodec), other llama.cpp programs ignore them.
TAIDE_TOKENIZER_KEYS = {
    "taide.tokenizer.normalizer": "NFC: text is NFC-normalized before BPE (Qwen)",
    "taide.tokenizer.space_prefix": 'where "▁" goes before text: "first" (the start of an input, unless it starts '
                                    'with a space) or "always" (every stretch between control tokens, likewise)',
}


@dataclass(frozen=True)
class TokenizerKind:
    model: str  # llama.cpp's tokenizer.ggml.model: "gpt2" (byte-level BPE) or "llama" (SentencePiece-style)
    add_space_prefix: bool = False  # llama.cpp's: "▁" before every stretch of text, as SentencePiece does
    taide_keys: tuple[tuple[str, str], ...] = ()  # see TAIDE_TOKENIZER_KEYS


def tokenizer_model(tj: dict, path: Path) -> TokenizerKind:
    """How llama.cpp must tokenize what ``tj`` tokenizes: byte-level BPE ("gpt2"; a normalizer only NFC, as Qwen's),
    or SentencePiece-style BPE with byte fallback ("llama") writing spaces as "▁": with a Replace normalizer alone
    (Gemma: no prefix), with Llama 2's Prepend + Replace (a "▁" before every stretch: llama.cpp's space prefix), or
    with a Metaspace pre-tokenizer (transformers' Mistral and Phi-3: a "▁" before the start of the input only).
    ExportError for anything llama.cpp would split otherwise."""
    normalizer = tj.get("normalizer") or {}
    steps = normalizer.get("normalizers", []) if normalizer.get("type") == "Sequence" else [normalizer] if normalizer else []
    types = [s.get("type") for s in steps]
    pre = tj.get("pre_tokenizer")
    if not tj["model"].get("byte_fallback"):
        if types == ["NFC"]:
            return TokenizerKind("gpt2", taide_keys=(("taide.tokenizer.normalizer", "NFC"),))
        if steps:
            raise ExportError(f"{path}: the tokenizer has a normalizer ({', '.join(map(str, types))}), which "
                              "llama.cpp's byte-level BPE does not apply; supported: none, or NFC (Qwen)")
        return TokenizerKind("gpt2")

    def replaces_spaces(step: dict) -> bool:
        return step.get("type") == "Replace" and step.get("pattern") == {"String": " "} and step.get("content") == "\u2581"

    no_split = not pre or (pre.get("type") == "Split" and pre.get("pattern") == {"String": " "})
    if len(steps) == 1 and replaces_spaces(steps[0]) and no_split:
        return TokenizerKind("llama")  # Gemma
    if (len(steps) == 2 and steps[0].get("type") == "Prepend" and steps[0].get("prepend") == "\u2581"
            and replaces_spaces(steps[1]) and no_split):
        return TokenizerKind("llama", add_space_prefix=True)  # Llama 2's, SentencePiece's own rule
    if not steps and pre and pre.get("type") == "Metaspace" and pre.get("replacement") == "\u2581" \
            and not pre.get("split", True):
        scheme = pre.get("prepend_scheme", "always")
        keys = (("taide.tokenizer.space_prefix", scheme),) if scheme in ("first", "always") else ()
        return TokenizerKind("llama", taide_keys=keys)
    if pre and pre.get("type") == "Metaspace":
        raise ExportError(f"{path}: pre-tokenizer Metaspace splits the text at spaces before BPE (split: true); "
                          "llama.cpp's SentencePiece tokenizer does not")
    if pre and not no_split:
        raise ExportError(f"{path}: pre-tokenizer {pre.get('type')} splits the text before BPE; llama.cpp's "
                          "SentencePiece tokenizer does not (a Split on ' ', which the normalizer leaves nothing "
                          "to split, is the only one supported)")
    raise ExportError(f"{path}: a byte-fallback BPE tokenizer must write spaces as '▁': with a Replace normalizer "
                      "(Gemma), Prepend + Replace (Llama 2) or a Metaspace pre-tokenizer (Mistral, Phi-3); its "
                      f"normalizer is {', '.join(map(str, types)) or 'none'}")


def sentencepiece_scores(types: list[int], tj: dict, path: Path) -> list[float]:
    """Scores for llama.cpp's SentencePiece tokenizer, which merges the adjacent pair whose joined text has the
    highest score. HF's BPE applies its merges in list order, and a SentencePiece-made ``tokenizer.json`` lists
    them in the order of the ids of the tokens they make; so a token's score falls with its id: ``-(id - first)``,
    ``first`` being the first normal token's id (0 for it, as llama.cpp's converter gives google/gemma-3 from
    SentencePiece's own scores; single characters, which no merge makes, rank nothing). Control, user-defined
    and unused tokens get -1000, byte tokens 0, as there. The merges are checked to be in that order: a
    tokenizer whose merges are not would tokenize differently in llama.cpp."""
    vocab = tj["model"]["vocab"]
    latest, latest_merge = -1, None
    made: set[int] = set()
    for rank, merge in enumerate(tj["model"].get("merges", [])):
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        i = vocab.get(left + right)
        if i is None or i in made:  # a merge HF cannot use; a second way to make a token (ranked as the first)
            continue
        if i < latest:
            raise ExportError(f"{path}: merge {rank} ({left!r} + {right!r}) makes token {i}, after a merge made token "
                              f"{latest} ({latest_merge!r}); llama.cpp ranks merges by token scores, which taide "
                              "derives from ids, so merges must come in the order of the ids they make")
        made.add(i)
        latest, latest_merge = i, left + right
    first = next((i for i, t in enumerate(types) if t == NORMAL), 0)
    return [0.0 if t == BYTE else float(first - i) if t == NORMAL else -1000.0 for i, t in enumerate(types)]


_BYTE_TOKEN = re.compile(r"<0x[0-9A-F]{2}>")


def read_vocab(directory: Path, n_vocab: int, ref=None) -> Vocab:
    """The tokenizer of an HF directory in GGUF terms, as transformers runs it (see :func:`tokenizer_model`)."""
    from transformers import AutoTokenizer

    from taide.chat.formats import chat_format_for
    from taide.models import resolve_model

    if not (directory / "tokenizer.json").is_file():
        extra = (" (it has only tokenizer.model: SentencePiece tokenizers such as Llama 2's are not supported; "
                 "convert with llama.cpp's convert_hf_to_gguf.py)" if (directory / "tokenizer.model").is_file() else "")
        raise ExportError(f"{directory}: missing tokenizer files: GGUF export needs tokenizer.json{extra}")
    tok = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    tj = _tokenizer_spec(directory, tok)
    path = directory / "tokenizer.json"
    tokenizer = tokenizer_model(tj, path)
    kind = tokenizer.model
    model = tj["model"]
    tokens: list[str | None] = [None] * n_vocab
    types = [NORMAL] * n_vocab
    for text, i in model["vocab"].items():
        if i >= n_vocab:
            raise ExportError(f"{path}: token {text!r} has id {i} but config.json's vocab_size is {n_vocab}")
        tokens[i] = text
        if kind == "llama" and _BYTE_TOKEN.fullmatch(text):
            types[i] = BYTE  # byte fallback: llama.cpp turns a character no token covers into these
    for added in tj.get("added_tokens", []):
        i = added["id"]
        if i >= n_vocab:
            raise ExportError(f"{path}: added token {added['content']!r} has id {i} but config.json's vocab_size "
                              f"is {n_vocab}")
        tokens[i] = added["content"]
        types[i] = CONTROL if added.get("special") else USER_DEFINED
    for i, t in enumerate(tokens):
        if t is None:  # embedding rows the tokenizer never produces (vocab padded to a multiple of 64, say)
            tokens[i], types[i] = f"[PAD{i}]", UNUSED
    if kind == "llama":
        pre, merges, scores = "default", [], sentencepiece_scores(types, tj, path)
    else:
        pre, scores = pre_tokenizer_name(tj, directory), None
        merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]

    probe = tok("a").input_ids
    ref = ref or resolve_model(directory)
    template = tok.chat_template if isinstance(tok.chat_template, str) else ref.chat_template
    eot_id = None
    if ref.chat_format:
        fmt = chat_format_for(ref.chat_format, template, tok.bos_token, tok.eos_token)
        vocab = tok.get_vocab()
        stops = [vocab[t] for t in fmt.stop_tokens if t in vocab]
        eot_id = stops[0] if stops else None
    return Vocab(model=kind, tokens=tokens, types=types, scores=scores, merges=merges, pre=pre,
                 bos_id=tok.bos_token_id, eos_id=tok.eos_token_id, eot_id=eot_id, pad_id=tok.pad_token_id,
                 unk_id=tok.unk_token_id, add_bos=tok.bos_token_id is not None and probe[:1] == [tok.bos_token_id],
                 add_eos=tok.eos_token_id is not None and probe[-1:] == [tok.eos_token_id],
                 chat_template=template, chat_format=ref.chat_format, add_space_prefix=tokenizer.add_space_prefix,
                 taide_keys=tokenizer.taide_keys)


# --- tensors --------------------------------------------------------------------------------------

@dataclass
class TensorPlan:
    name: str  # llama.cpp's
    source: str | None  # HF name as stored (None: computed, e.g. rope_freqs)
    file: Path | None
    shape: tuple[int, ...]
    convert: str | None  # "q" | "k" | "norm" | None, see Architecture
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


def _text_model_name(key: str, arch: Architecture) -> str:
    for prefix, replacement in arch.renames:
        if key.startswith(prefix):
            return replacement + key[len(prefix):]
    return key


def plan_tensors(directory: Path) -> tuple[Architecture, ModelParams, list[TensorPlan]]:
    from safetensors import safe_open

    config = read_json(directory / "config.json")
    arch = architecture_for(config, directory)
    found: dict[str, tuple[str, Path, tuple[int, ...]]] = {}  # text-model name -> (stored name, file, shape)
    for f in safetensors_files(directory):
        with safe_open(str(f), "pt") as st:
            for key in st.keys():
                if not re.fullmatch(arch.ignore, key):
                    found[_text_model_name(key, arch)] = (key, f, tuple(st.get_slice(key).get_shape()))
    params = arch.params(config, directory, set(found))
    plans: list[TensorPlan] = []
    unknown = []
    for name, (key, f, shape) in found.items():
        if name == "lm_head.weight" and params.tied:
            continue  # tied: llama.cpp reuses token_embd
        for pattern, target, convert in arch.tensor_map:
            m = re.fullmatch(pattern, name)
            if m:
                plans.append(TensorPlan(target.format(*m.groups()), key, f, shape, convert))
                break
        else:
            unknown.append(key)
    if unknown:
        raise ExportError(f"{directory}: tensors a {arch.label} model does not have: {', '.join(unknown[:5])}"
                          f"{' ...' if len(unknown) > 5 else ''}; is this really a plain {arch.label} checkpoint?")
    names = {p.name for p in plans}
    needed = ["token_embd.weight", "output_norm.weight"] + [
        f"blk.{i}.{t}.weight" for i in range(params.n_layer) for t in arch.block_tensors]
    missing = [n for n in needed if n not in names]
    if missing:
        raise ExportError(f"{directory}: the weights lack {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if params.rope_scaling and params.rope_scaling["rope_type"] == "llama3":
        plans.append(TensorPlan("rope_freqs.weight", None, None, (params.head_dim // 2,), None))
    if params.rope_scaling and params.rope_scaling["rope_type"] == "longrope":
        for which in ("long", "short"):
            plans.append(TensorPlan(f"rope_factors_{which}.weight", None, None, (params.rope_dims // 2,), None))
    out_name = "token_embd.weight" if params.tied else "output.weight"
    for p in plans:
        p.is_output = p.name == out_name
    order = {n: i for i, n in enumerate(["token_embd.weight", "rope_freqs.weight", "rope_factors_long.weight",
                                         "rope_factors_short.weight", "output_norm.weight", "output.weight"])}

    def sort_key(p: TensorPlan):
        m = re.match(r"blk\.(\d+)\.", p.name)
        return (1, int(m.group(1)), p.name) if m else (0 if p.name in order else 2, order.get(p.name, 0), p.name)

    plans.sort(key=sort_key)
    return arch, params, plans


def _load(plan: TensorPlan, arch: Architecture, params: ModelParams, handles: dict) -> np.ndarray:
    if plan.name == "rope_freqs.weight":
        return params.llama3_rope_factors()
    if plan.name.startswith("rope_factors_"):
        which = plan.name.removeprefix("rope_factors_").removesuffix(".weight")
        return np.asarray(params.rope_scaling[f"{which}_factor"], dtype=np.float32)
    from safetensors import safe_open

    if plan.file not in handles:
        handles[plan.file] = safe_open(str(plan.file), "pt")
    data = handles[plan.file].get_tensor(plan.source).float().numpy()
    if plan.convert == "q":
        data = permute_rows(data, params.n_head)
    elif plan.convert == "k":
        data = permute_rows(data, params.n_head_kv)
    elif plan.convert in ("norm", "q_norm") and arch.norm_offset:
        data = data + np.float32(arch.norm_offset)
    if plan.convert == "q_norm" and params.query_scale != 1.0:
        data = data * np.float32(params.query_scale)
    return np.ascontiguousarray(data, dtype=np.float32)


# --- writing --------------------------------------------------------------------------------------

def write_gguf(directory: str | Path, out: str | Path, qtype_for, file_type: int, progress=None, ref=None) -> Path:
    """Write ``directory`` (an HF directory of a supported family) to ``out``. ``qtype_for(plan)`` picks each tensor's
    GGML type (see :mod:`taide.export.quantize`); ``file_type`` is llama.cpp's ``general.file_type``; ``ref``: the
    directory's resolved :class:`~taide.models.ModelRef`, if the caller has it."""
    import gguf

    directory, out = Path(directory), Path(out)
    arch, params, plans = plan_tensors(directory)
    vocab = read_vocab(directory, params.n_vocab, ref)
    for p in plans:
        p.qtype = qtype_for(p)
    def write(tmp: Path) -> None:  # the GGUF appears under its name only when whole
        w = gguf.GGUFWriter(str(tmp), arch.name)
        _write_metadata(w, arch, params, vocab, file_type, plans)
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
                data = _load(p, arch, params, handles)
                w.write_tensor_data(gguf.quants.quantize(data, p.qtype))
                if progress:
                    progress(i + 1, len(plans), p.name)
        finally:
            w.close()
            handles.clear()
    return atomic_write(out, write)


def _write_metadata(w, arch: Architecture, params: ModelParams, vocab: Vocab, file_type: int,
                    plans: list[TensorPlan]) -> None:
    import gguf

    w.add_type("model")
    w.add_name(params.name)
    arch.metadata(w, params)
    w.add_file_type(file_type)
    if any(p.qtype not in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16,
                           gguf.GGMLQuantizationType.BF16) for p in plans):
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_tokenizer_model(vocab.model)
    w.add_tokenizer_pre(vocab.pre)
    w.add_token_list(vocab.tokens)
    if vocab.scores is not None:
        w.add_token_scores(vocab.scores)
    w.add_token_types(vocab.types)
    if vocab.merges:
        w.add_token_merges(vocab.merges)
    for value, add in ((vocab.bos_id, w.add_bos_token_id), (vocab.eos_id, w.add_eos_token_id),
                       (vocab.eot_id, w.add_eot_token_id), (vocab.pad_id, w.add_pad_token_id),
                       (vocab.unk_id, w.add_unk_token_id)):
        if value is not None:
            add(int(value))
    w.add_add_bos_token(vocab.add_bos)
    w.add_add_eos_token(vocab.add_eos)
    w.add_add_space_prefix(vocab.add_space_prefix)
    for key, value in vocab.taide_keys:
        w.add_string(key, value)
    if vocab.chat_template:
        w.add_chat_template(vocab.chat_template)
