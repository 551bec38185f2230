"""What the export modules share: the error type and config reading (file writes: :mod:`taide.artifacts`)."""

from __future__ import annotations

import json
from pathlib import Path

from taide.errors import TaideError

# HF config model_type -> what it is (the GGUF writer's ARCHITECTURES maps the same names to how each is written).
SUPPORTED_ARCHITECTURES = {
    "llama": "LlamaForCausalLM (Llama 2/3/3.1/3.2/3.3, Llama3-TAIDE, Llama-3.1-TAIDE, SmolLM2)",
    "mistral": "MistralForCausalLM (Mistral 7B v0.2+, Breeze-7B)",
    "qwen2": "Qwen2ForCausalLM (Qwen 2 and 2.5)",
    "qwen3": "Qwen3ForCausalLM (Qwen 3 dense)",
    "phi3": "Phi3ForCausalLM (Phi-3, Phi-3.5 mini)",
    "gemma3_text": "Gemma3ForCausalLM (Gemma 3 270M and 1B)",
    "gemma3": "Gemma3ForConditionalGeneration (Gemma 3 4B and larger: the text model only)",
}


class ExportError(TaideError):
    """A model cannot be exported (unsupported architecture or tokenizer, missing files), or an export failed
    its verification."""


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ExportError(f"{path}: missing") from e
    except json.JSONDecodeError as e:
        raise ExportError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from e


def model_type(config: dict) -> str:
    return str(config.get("model_type") or (config.get("architectures") or ["unknown"])[0]).lower()


def check_architecture(config: dict, where: Path) -> None:
    kind = model_type(config)
    if kind not in SUPPORTED_ARCHITECTURES:
        archs = ", ".join(config.get("architectures") or []) or "no architectures field"
        supported = "; ".join(f"{k}: {v}" for k, v in SUPPORTED_ARCHITECTURES.items())
        raise ExportError(f"{where / 'config.json'}: model_type {kind!r} ({archs}) cannot be exported to GGUF by taide; "
                          f"supported: {supported}. Export it with --format hf, or use llama.cpp's own converter")
    if config.get("quantization_config"):
        method = config["quantization_config"].get("quant_method", "unknown")
        raise ExportError(f"{where / 'config.json'}: the weights are already quantized ({method}); GGUF export needs "
                          "full-precision weights (float32, float16 or bfloat16 safetensors)")
