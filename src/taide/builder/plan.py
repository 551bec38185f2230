"""The arithmetic of a build plan, before anything runs: parameters and FLOPs per token from a model's
shape (config.json), and GPU-hours from tokens × FLOPs per token ÷ (peak × expected MFU).

The FLOPs count is torchtitan's, as training's MFU uses it (:func:`taide.train.metrics.flops_per_token`):
6 × parameters without the input embedding, plus 12 × layers × heads × head_dim × sequence length for
attention. For Llama 3 8B at 8K context: 6 × 7.50e9 + 1.29e10 ≈ 5.8e10 FLOPs per token, so the card's
43B tokens at 30% MFU on H100s (989 TFLOP/s dense bf16) take ≈ 2,330 GPU-hours — the card reports 2,336.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

# Shapes of public models, for planning when the weights are not on this machine (config.json fields).
KNOWN_SHAPES = {
    "llama-3-8b": {"vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                   "num_attention_heads": 32, "num_key_value_heads": 8, "tie_word_embeddings": False},
    "llama-3-70b": {"vocab_size": 128256, "hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
                    "num_attention_heads": 64, "num_key_value_heads": 8, "tie_word_embeddings": False},
    "llama-3.2-1b": {"vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
                     "num_attention_heads": 32, "num_key_value_heads": 8, "tie_word_embeddings": True},
    "llama-3.2-3b": {"vocab_size": 128256, "hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 28,
                     "num_attention_heads": 24, "num_key_value_heads": 8, "tie_word_embeddings": True},
    "gemma-3-12b": {"vocab_size": 262208, "hidden_size": 3840, "intermediate_size": 15360, "num_hidden_layers": 48,
                    "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 256, "tie_word_embeddings": True,
                    "sliding_window": 1024, "sliding_window_pattern": 6},
    "smollm2-135m": {"vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
                     "num_attention_heads": 9, "num_key_value_heads": 3, "tie_word_embeddings": True},
}

# Dense bf16 peak FLOP/s by device name, for GPU-hour estimates.
DEVICE_PEAK = {"h100": 989e12, "h200": 989e12, "a100": 312e12, "l40s": 362e12, "mi300x": 1307e12}


@dataclass(frozen=True)
class Shape:
    vocab: int
    hidden: int
    ffn: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool
    attention: tuple = ()  # config.json's sliding-window fields: (("sliding_window", 1024), ...)

    @classmethod
    def from_config(cls, config: dict) -> Shape:
        heads = config["num_attention_heads"]
        attention = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in config.items()
                          if k in ("sliding_window", "sliding_window_pattern", "layer_types") and v)
        return cls(config["vocab_size"], config["hidden_size"], config["intermediate_size"],
                   config["num_hidden_layers"], heads, config.get("num_key_value_heads") or heads,
                   config.get("head_dim") or config["hidden_size"] // heads, bool(config.get("tie_word_embeddings")),
                   attention)

    @property
    def parameters(self) -> int:
        attention = self.hidden * self.heads * self.head_dim * 2 + self.hidden * self.kv_heads * self.head_dim * 2
        layer = attention + 3 * self.hidden * self.ffn + 2 * self.hidden  # + two RMSNorm weights
        embedding = self.vocab * self.hidden
        return self.layers * layer + self.hidden + embedding + (0 if self.tied else embedding)

    def flops_per_token(self, seq_len: int) -> float:
        from taide.train.metrics import attended_positions

        without_input_embedding = self.parameters - (0 if self.tied else self.vocab * self.hidden)
        config = {"num_hidden_layers": self.layers, **{k: list(v) if isinstance(v, tuple) else v
                                                       for k, v in self.attention}}
        return 6 * without_input_embedding + 12 * self.heads * self.head_dim * attended_positions(config, seq_len)


def model_shape(model: str, fallback: str | None = None) -> tuple[Shape, str]:
    """The shape of ``model`` (an HF directory's config.json, a known name, or the embedded default) and
    where it came from; ``fallback`` names a known shape to use when the directory is not here."""
    config = Path(model) / "config.json"
    if config.is_file():
        return Shape.from_config(json.loads(config.read_text(encoding="utf-8"))), str(config)
    key = model.lower() if model.lower() in KNOWN_SHAPES else fallback
    if key in KNOWN_SHAPES:
        note = key if key == model.lower() else f"{key} (the shape of {model}, which is not on this machine)"
        return Shape.from_config(KNOWN_SHAPES[key]), note
    from taide.models import resolve_model

    ref = resolve_model(model)  # a GGUF's metadata
    meta = ref.metadata or {}
    arch = meta.get("general.architecture", "llama")
    try:
        config = {"vocab_size": meta.get(f"{arch}.vocab_size") or meta.get("_vocab_size", 0),
                  "hidden_size": meta[f"{arch}.embedding_length"], "intermediate_size": meta[f"{arch}.feed_forward_length"],
                  "num_hidden_layers": meta[f"{arch}.block_count"], "num_attention_heads": meta[f"{arch}.attention.head_count"],
                  "num_key_value_heads": meta.get(f"{arch}.attention.head_count_kv"),
                  "head_dim": meta.get(f"{arch}.attention.key_length"),
                  "sliding_window": meta.get(f"{arch}.attention.sliding_window"),
                  "sliding_window_pattern": 6 if arch == "gemma3" else None,  # llama.cpp's fixed gemma3 pattern
                  "tie_word_embeddings": True}
    except KeyError as e:
        from taide.errors import TaideError

        raise TaideError(f"{model}: cannot tell the model's shape (missing {e}); give base_shape in the recipe") from e
    return Shape.from_config(config), f"{model} (GGUF metadata)"


def device_peak(device: str) -> float:
    peak = DEVICE_PEAK.get(device.lower())
    if peak is None:
        from taide.errors import TaideError

        raise TaideError(f"compute.device: {device!r} is not one of {', '.join(DEVICE_PEAK)}")
    return peak


def gpu_hours(tokens: float, flops_per_token: float, device: str, mfu: float) -> float:
    return tokens * flops_per_token / (device_peak(device) * mfu) / 3600


def implied_mfu(flops: float, hours: float, device: str) -> float:
    """The MFU a published GPU-hour figure implies for ``flops`` of training: above 1, the figure cannot be a
    full-parameter run of that many tokens on that many GPU-hours."""
    return flops / (hours * 3600 * device_peak(device))
