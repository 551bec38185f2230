"""The model side of training: load a model reference as trainable fp32 weights, add LoRA adapters, and
write the result as a Hugging Face directory that transformers, vLLM and `taide export` load:
safetensors, the tokenizer, the chat template, and a generation config whose end-of-sequence ids
include the end-of-turn token (so generation stops at the end of an answer)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from taide.chat.formats import LLAMA3_TEMPLATE, chat_format_for
from taide.engines.transformers_engine import HFCodec, load_hf
from taide.models import resolve_model
from taide.train.config import LoraConfig, TrainConfig, TrainError
from taide.train.parallel import World


def load_for_training(reference: str, device: torch.device):
    """(model in fp32 on ``device``, tokenizer, chat format). GGUF files are dequantized by transformers."""
    ref = resolve_model(reference)
    if ref.kind == "endpoint":
        raise TrainError(f"{reference} is an endpoint; training needs the weights (an HF directory or GGUF file)")
    tokenizer, model = load_hf(ref, str(device), torch.float32)
    if ref.kind == "gguf":  # dequantized on load: the weights are plain tensors now, not a quantized model
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    template = tokenizer.chat_template or ref.chat_template
    chat_format = chat_format_for(ref.chat_format, template, tokenizer.bos_token or ref.bos_token,
                                  tokenizer.eos_token or ref.eos_token)
    model.config.use_cache = False
    return model, tokenizer, chat_format


def apply_lora(model, lora: LoraConfig):
    try:
        from peft import LoraConfig as PeftLora, get_peft_model
    except ImportError as e:
        raise TrainError("lora: needs peft (pip install peft)") from e
    return get_peft_model(model, PeftLora(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                          target_modules=lora.target_modules, task_type="CAUSAL_LM"))


def end_of_turn_ids(tokenizer, chat_format) -> list[int]:
    codec = HFCodec(tokenizer)
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    ids.update(i for i in (codec.token_id(t) for t in chat_format.stop_tokens) if i is not None)
    return sorted(ids)


def save_hf_directory(model, tokenizer, chat_format, config: TrainConfig, world: World, directory: Path) -> Path:
    """Collective (every process calls it); process 0 writes. LoRA adapters are merged into the weights."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if world.main:
        dtype = torch.bfloat16 if world.device.type == "cuda" else torch.float32
        if config.lora is not None:
            # A fresh CPU copy of the base, the trained adapters loaded into it, then merged.
            base, _, _ = load_for_training(config.model, torch.device("cpu"))
            merged = apply_lora(base, config.lora)
            merged.load_state_dict(state, strict=False)
            target, state = merged.merge_and_unload(), None
        else:
            target = model
        directory.mkdir(parents=True, exist_ok=True)
        if state is not None:
            state = {k: v.to(dtype) for k, v in state.items()}
        else:
            target = target.to(dtype)
        target.config.use_cache = True
        target.config.dtype = str(dtype).removeprefix("torch.")
        target.save_pretrained(directory, state_dict=state, safe_serialization=True)
        if chat_format.name == "llama3":
            tokenizer.chat_template = LLAMA3_TEMPLATE
        tokenizer.save_pretrained(directory)
        generation = target.generation_config
        generation.eos_token_id = end_of_turn_ids(tokenizer, chat_format)
        generation.save_pretrained(directory)
        (directory / "taide_training.json").write_text(json.dumps(config.to_dict(), ensure_ascii=False, indent=1,
                                                                  default=str))
    world.barrier()
    return directory
