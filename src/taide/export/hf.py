"""`--format hf`: any model reference → a merged Hugging Face directory (safetensors) that transformers,
vLLM and the GGUF writer load.

- an HF directory is re-saved as safetensors (in its own dtype unless ``dtype`` is given);
- a LoRA adapter directory (``adapter_config.json`` + ``adapter_model.safetensors``) is loaded onto its base
  model with peft and merged into the weights;
- a GGUF file (the embedded default, say) is dequantized by transformers, and its tokenizer repaired where
  transformers' GGUF reader is not faithful to llama.cpp: the pre-tokenizer llama.cpp uses for it
  (``tokenizer.ggml.pre``: SmolLM2's splits digits one by one, Llama 3's has its own regex), BOS added when
  the GGUF says so, and no extra tokens past the vocabulary.

The directory always carries the chat template and a generation config whose end-of-sequence ids include
the end-of-turn token, plus a ``manifest.json`` saying what produced it.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from taide.artifacts import write_manifest
from taide.export.common import ExportError, read_json
from taide.models import ModelRef, resolve_model


def is_adapter_dir(path: Path) -> bool:
    return path.is_dir() and (path / "adapter_config.json").is_file() and not (path / "config.json").is_file()


def _torch_dtype(dtype: str | None, default):
    import torch

    if dtype in (None, "auto"):
        return default
    if not hasattr(torch, dtype):
        raise ExportError(f"dtype {dtype!r}: choose float32, float16 or bfloat16")
    return getattr(torch, dtype)


def load_source(reference: str | Path, dtype: str | None = None):
    """(model, tokenizer, ModelRef) on CPU, for any local reference (HF dir or GGUF); weights never downloaded.
    A GGUF comes through its dequantized copy (float32: dequantized values are exact)."""
    import torch

    from taide.models.loading import load_hf

    ref = reference if isinstance(reference, ModelRef) else resolve_model(reference)
    if ref.kind == "endpoint":
        raise ExportError(f"{ref.reference} is an endpoint; export needs the weights (an HF directory or GGUF file)")
    tokenizer, model = load_hf(ref, "cpu", _torch_dtype(dtype, "auto" if ref.kind == "hf" else torch.float32))
    return model, tokenizer, ref


def _merge_lora(adapter: Path, base: str | None, dtype: str | None):
    config = read_json(adapter / "adapter_config.json")
    if not (adapter / "adapter_model.safetensors").is_file():
        found = [p.name for p in adapter.glob("adapter_model*")]
        raise ExportError(f"{adapter}: missing adapter_model.safetensors"
                          + (f" (found {', '.join(found)}; pickled adapters are never loaded)" if found else ""))
    base_ref = base or config.get("base_model_name_or_path")
    if not base_ref:
        raise ExportError(f"{adapter / 'adapter_config.json'}: no base_model_name_or_path; pass the base model")
    try:
        from peft import PeftModel
    except ImportError as e:
        raise ExportError("merging a LoRA adapter needs peft: pip install peft") from e
    try:
        model, tokenizer, ref = load_source(base_ref, dtype)
    except Exception as e:
        raise ExportError(f"{adapter}: cannot load the adapter's base model {base_ref!r} ({e}); pass the base "
                          "model's local directory or GGUF") from e
    merged = PeftModel.from_pretrained(model, str(adapter), is_trainable=False).merge_and_unload()
    if (adapter / "tokenizer.json").is_file():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(adapter), local_files_only=True)
    return merged, tokenizer, ref


def export_hf(reference: str | Path | ModelRef, out: str | Path, *, dtype: str | None = None, base: str | None = None,
              overwrite: bool = False) -> Path:
    """Write ``reference`` (HF dir, GGUF file, embedded name, or LoRA adapter dir) to ``out`` as a merged HF
    directory; returns ``out``."""
    from taide.chat.formats import chat_format_for, detect_chat_format
    from taide.models.loading import end_of_turn_ids, repair_gguf_tokenizer

    started = time.time()
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ExportError(f"{out}: exists and is not empty; pass overwrite=True (--overwrite) or another directory")
        shutil.rmtree(out)
    source = None if isinstance(reference, ModelRef) else Path(str(reference)).expanduser()
    if source is not None and is_adapter_dir(source):
        model, tokenizer, ref = _merge_lora(source, base, dtype)
        kind = "lora"
    else:
        model, tokenizer, ref = load_source(reference, dtype)
        kind = ref.kind
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else ref.chat_template
    has_llama3 = all(t in tokenizer.get_vocab() for t in ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"))
    fmt_name = ref.chat_format or detect_chat_format(template, has_llama3, bos_token=tokenizer.bos_token,
                                                     eos_token=tokenizer.eos_token)
    out.mkdir(parents=True, exist_ok=True)
    model.config.use_cache = True
    model.save_pretrained(out, safe_serialization=True)
    if fmt_name and fmt_name != "template" and not template:
        tokenizer.chat_template = chat_format_for(fmt_name).hf_template
    tokenizer.save_pretrained(out)
    changes = repair_gguf_tokenizer(out, ref) if ref.kind == "gguf" else []
    if fmt_name:
        fmt = chat_format_for(fmt_name, tokenizer.chat_template, tokenizer.bos_token, tokenizer.eos_token)
        generation = model.generation_config
        generation.eos_token_id = end_of_turn_ids(tokenizer, fmt)
        generation.save_pretrained(out)
    config = {"source": reference.reference if isinstance(reference, ModelRef) else str(reference),
              "base": str(ref.path) if kind == "lora" else None,
              "dtype": str(next(model.parameters()).dtype).removeprefix("torch.")}
    write_manifest(out / "manifest.json", "taide export --format hf", config,
                   counts={"parameters": sum(p.numel() for p in model.parameters())}, source_kind=kind,
                   chat_format=fmt_name, tokenizer_repairs=changes, seconds=round(time.time() - started, 1))
    return out
