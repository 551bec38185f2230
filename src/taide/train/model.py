"""The model side of training: load a model reference as trainable fp32 weights, add LoRA adapters, and
write the result as a Hugging Face directory that transformers, vLLM and `taide export` load:
safetensors, the tokenizer, the chat template, and a generation config whose end-of-sequence ids
include the end-of-turn token (so generation stops at the end of an answer)."""

from __future__ import annotations

from pathlib import Path

import torch

from taide.artifacts import write_json
from taide.chat.formats import chat_format_for
from taide.models.loading import end_of_turn_ids, load_hf
from taide.models import resolve_model
from taide.train.config import LoraConfig, TrainConfig, TrainError
from taide.train.parallel import World


def load_for_training(reference: str, device: torch.device, chat_date: str | None = None):
    """(model in fp32 on ``device``, tokenizer, chat format). GGUF files are dequantized by transformers.
    ``chat_date``: the day a dated chat template renders (see TemplateFormat)."""
    ref = resolve_model(reference)
    if ref.kind == "endpoint":
        raise TrainError(f"{reference} is an endpoint; training needs the weights (an HF directory or GGUF file)")
    tokenizer, model = load_hf(ref, str(device), torch.float32)
    template = tokenizer.chat_template or ref.chat_template
    chat_format = chat_format_for(ref.chat_format, template, tokenizer.bos_token or ref.bos_token,
                                  tokenizer.eos_token or ref.eos_token, chat_date)
    model.config.use_cache = False
    return model, tokenizer, chat_format


def freeze(model, config: TrainConfig) -> None:
    """Stop gradients where the config says: the embeddings (with a 262K vocabulary they are most of a small
    model's weights) and every block below the top ``trainable_layers``. Backward then ends at the lowest trained
    block, so a CPU step costs about half as much with half the blocks frozen."""
    if config.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    if config.trainable_layers is not None:
        layers = getattr(model.get_decoder(), "layers", None)
        if layers is None:
            raise TrainError(f"trainable_layers: {type(model).__name__} has no list of transformer blocks to freeze")
        if config.trainable_layers > len(layers):
            raise TrainError(f"trainable_layers: {config.trainable_layers} is more than the model's {len(layers)} blocks")
        for layer in layers[:len(layers) - config.trainable_layers]:
            layer.requires_grad_(False)


@torch.no_grad()
def end_of_turn_from_eos(model, tokenizer, chat_format) -> list[str]:
    """Copy EOS's embedding row into the chat format's end-of-turn tokens; returns the tokens changed.

    A pretrained base (Gemma 3 270M) has never predicted ``<end_of_turn>``: its row is as untrained as the unused
    tokens' (cosine 0.95 with ``<start_of_turn>``), so an instruction-tuned answer ends in whatever unused token
    lies nearest, and with frozen embeddings it cannot learn better. EOS's row is one the base predicts at every
    document end; from there the end of an answer is learned in a few steps (and both end the turn)."""
    eos = tokenizer.eos_token_id
    weight = model.get_input_embeddings().weight
    changed = []
    for token in chat_format.stop_tokens:
        token_id = tokenizer.get_vocab().get(token)
        if token_id is not None and eos is not None and token_id != eos:
            weight[token_id] = weight[eos]
            changed.append(token)
    return changed


def apply_lora(model, lora: LoraConfig):
    try:
        from peft import LoraConfig as PeftLora, get_peft_model
    except ImportError as e:
        raise TrainError("lora: needs peft (pip install peft)") from e
    return get_peft_model(model, PeftLora(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                          target_modules=lora.target_modules, task_type="CAUSAL_LM"))


def save_hf_directory(model, tokenizer, chat_format, config: TrainConfig, world: World, directory: Path) -> Path:
    """Collective (every process calls it); process 0 writes. LoRA adapters are merged into the weights."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if world.main:
        dtype = torch.bfloat16 if world.device.type == "cuda" else torch.float32
        if config.lora is not None:
            # A fresh CPU copy of the base, the trained adapters loaded into it, then merged.
            base, _, _ = load_for_training(config.model, torch.device("cpu"), config.chat_date)
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
        if not tokenizer.chat_template:  # a pretrained base without one: the format it was trained in
            tokenizer.chat_template = chat_format.hf_template
        tokenizer.save_pretrained(directory)  # the base's own template otherwise, byte for byte
        generation = target.generation_config
        generation.eos_token_id = end_of_turn_ids(tokenizer, chat_format)
        generation.save_pretrained(directory)
        write_json(directory / "taide_training.json", config.to_dict())
    world.barrier()
    return directory


def simplified_counterparts(ids, tokenizer) -> set[int]:
    """Tokens of the Simplified forms of the given tokens' Chinese text (這 → 这): the tokens a data-vocabulary loss
    must also cover, so that training on Traditional text teaches the model to prefer it over the Simplified forms
    the base may favour (a loss that never sees 这 cannot make it less likely)."""
    import opencc

    to_simplified = opencc.OpenCC("t2s")
    found = set()
    for token_id in ids:
        text = tokenizer.decode([int(token_id)])
        simplified = to_simplified.convert(text)
        if simplified != text:
            found.update(tokenizer.encode(simplified, add_special_tokens=False))
    return found


class DataHead:
    """The output layer over ``ids`` only, for a loss whose softmax covers the tokens the data holds and their
    Simplified forms (``head_vocabulary: data``): logits are the hidden states times those rows of the output weights
    (soft-capped as the model caps its own, Gemma's way), and targets are renumbered into them. The model itself is
    untouched."""

    def __init__(self, model, ids, device: torch.device, full_share: float = 0.0):
        base = model.get_base_model() if hasattr(model, "get_base_model") else model  # under LoRA, the wrapped model
        self.decoder = base.get_decoder()
        head = base.get_output_embeddings()
        config = getattr(base.config, "text_config", base.config)
        self.softcap = getattr(config, "final_logit_softcapping", None)
        self.ids = torch.as_tensor(ids, dtype=torch.long, device=device)
        self.weight, self.bias = head.weight, head.bias
        # A frozen head (frozen or tied embeddings) gives the same rows every step: take them once.
        self.rows = None if head.weight.requires_grad else head.weight.detach()[self.ids]
        self.index = torch.full((head.weight.shape[0],), -1, dtype=torch.long, device=device)
        self.index[self.ids] = torch.arange(len(self.ids), device=device)
        self.full_share = full_share

    def hidden(self, input_ids, position_ids):
        return self.decoder(input_ids=input_ids, position_ids=position_ids, use_cache=False).last_hidden_state

    def logits(self, hidden: torch.Tensor, full: bool = False) -> torch.Tensor:
        """The data tokens' logits, or with ``full`` every token's (the model's own output layer)."""
        if full:
            rows, bias = self.weight, self.bias
        else:
            rows = self.rows if self.rows is not None else self.weight[self.ids]
            bias = self.bias[self.ids] if self.bias is not None else None
        logits = torch.nn.functional.linear(hidden, rows.to(hidden.dtype), bias)
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def loss_sum(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Summed cross-entropy at positions ``hidden`` [batch, n, H] with ``targets`` [batch, n] (full-vocabulary
        ids, -100 for none): over the data tokens, except at a random ``full_share`` of the positions, scored over
        every token, so the loss still pushes down tokens the data never holds (a stray script, another language)
        instead of leaving them where the base had them."""
        full = torch.rand(targets.shape[1], device=targets.device) < self.full_share
        total = hidden.new_zeros(())
        for where, over_all in ((~full, False), (full, True)):
            if not bool(where.any()):
                continue
            wanted = targets[:, where] if over_all else self.targets(targets[:, where])
            logits = self.logits(hidden[:, where], full=over_all)
            total = total + torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), wanted.flatten(),
                                                              ignore_index=-100, reduction="sum")
        return total

    def targets(self, targets: torch.Tensor) -> torch.Tensor:
        mapped = self.index[targets.clamp(min=0)]
        if bool(((mapped < 0) & (targets != -100)).any()):
            raise TrainError("head_vocabulary data: a target token is not among the data's tokens")
        return torch.where(targets == -100, targets, mapped)
