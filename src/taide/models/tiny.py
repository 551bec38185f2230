"""Tiny random-init models of the families Taiwan chat models are built on, written as Hugging Face directories.

They keep what a family's pipeline depends on — the architecture, the control tokens and their ids' roles, the
chat template, the tokenizer's kind — at a size a CPU trains in seconds:

| family | architecture | tokenizer | chat template |
|---|---|---|---|
| llama3 | LlamaForCausalLM | byte-level BPE, Llama 3's control tokens | Llama 3 (Llama3-TAIDE) |
| llama3.1 | LlamaForCausalLM, rope scaled as Llama 3.1 | as llama3 | Llama 3.1's (its system header dates the chat) |
| gemma3 | Gemma3ForCausalLM | BPE with ``▁`` for spaces and ``<0xNN>`` byte fallback | Gemma 3 |
| qwen2 | Qwen2ForCausalLM (biased q/k/v) | byte-level BPE, Qwen's pre-tokenizer and NFC | Qwen 2.5's (ChatML) |
| qwen3 | Qwen3ForCausalLM (q/k norms) | as qwen2, with ``<think>`` tokens | Qwen 3's |
| mistral | MistralForCausalLM | SentencePiece-style BPE (``▁`` prefix, byte fallback) | Mistral v0.3's |
| phi3 | Phi3ForCausalLM (fused qkv and gate/up) | as mistral, Phi-3's chat tokens | Phi-3.5's |

`taide build --smoke` runs a recipe's every stage on one; the test suite uses them too. With ``tokenizer_from``
(the real base's directory, when it is on the machine) the real vocabulary and template are kept and only the
layers shrink. The templates are the models' own (``models/templates``), byte for byte.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from taide.models.pretokenizers import LLAMA3_REGEX, QWEN2_REGEX

TEMPLATES = Path(__file__).parent / "templates"
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
LLAMA31_SPECIALS = LLAMA3_SPECIALS + ["<|eom_id|>", "<|python_tag|>"]
GEMMA3_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"]
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MISTRAL_SPECIALS = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]"]
PHI3_SPECIALS = ["<unk>", "<s>", "</s>"]
PHI3_CHAT = ["<|endoftext|>", "<|assistant|>", "<|placeholder1|>", "<|placeholder2|>", "<|placeholder3|>",
             "<|placeholder4|>", "<|system|>", "<|end|>", "<|placeholder5|>", "<|placeholder6|>", "<|user|>"]
@dataclass(frozen=True)
class Family:
    name: str
    model_type: str
    template: str  # the template's file under models/templates, or "llama3" / "gemma3" (taide's own constants)
    tokenizer: str  # "llama3", "qwen", "gemma", "sentencepiece"
    layers: int = 2
    config: dict = field(default_factory=dict)  # the family's own config.json fields


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("llama3", "llama", "llama3", "llama3"),
    Family("llama3.1", "llama", "llama3.1.jinja", "llama3",
           config={"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                    "high_freq_factor": 4.0, "original_max_position_embeddings": 128},
                   "rope_theta": 500000.0}),
    Family("gemma3", "gemma3_text", "gemma3", "gemma", layers=6,
           config={"num_key_value_heads": 1, "head_dim": 64, "query_pre_attn_scalar": 64, "sliding_window": 16}),
    Family("qwen2", "qwen2", "qwen2.5.jinja", "qwen", config={"tie_word_embeddings": True}),
    Family("qwen3", "qwen3", "qwen3.jinja", "qwen", config={"tie_word_embeddings": True, "head_dim": 64}),
    Family("mistral", "mistral", "mistral-v0.3.jinja", "sentencepiece", config={"sliding_window": None}),
    Family("phi3", "phi3", "phi3.jinja", "sentencepiece", config={"sliding_window": None}),
)}


def family_of(config: dict) -> str | None:
    """The family of a config.json, or None for one taide cannot shrink."""
    kind = str(config.get("model_type", ""))
    if kind.startswith("gemma3"):
        return "gemma3"
    if kind == "llama":
        scaling = config.get("rope_scaling") or config.get("rope_parameters") or {}
        return "llama3.1" if scaling.get("rope_type") == "llama3" else "llama3"
    return kind if kind in FAMILIES else None


def family_of_gguf(ref) -> str | None:
    """The family of a GGUF file's model (a resolved reference: its metadata only)."""
    arch = ref.architecture or ""
    if arch.startswith("gemma3"):
        return "gemma3"
    return {"llama": "llama3", "qwen2": "qwen2", "qwen3": "qwen3", "phi3": "phi3"}.get(arch)


# A chat template's control tokens, as templates write them: <|im_start|>, <start_of_turn>, [INST].
_CONTROL_IN_TEMPLATE = re.compile(r"<\|[A-Za-z_0-9]+\|>|<(?:start|end)_of_turn>|\[/?INST\]")


def family_template(family: str) -> str:
    """The chat template a family's models carry."""
    from taide.chat.formats import GEMMA3_TEMPLATE, LLAMA3_TEMPLATE

    name = FAMILIES[family].template
    return {"llama3": LLAMA3_TEMPLATE, "gemma3": GEMMA3_TEMPLATE}.get(name) or (TEMPLATES / name).read_text("utf-8")


def _byte_level_tokenizer(texts: list[str], vocab_size: int, specials: list[str], regex: str, nfc: bool = False):
    """Byte-level BPE splitting text by ``regex`` first, as Llama 3 and Qwen do (Qwen NFC-normalizes it too)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    if nfc:
        bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(regex), behavior="isolated"),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe)


def _fallback_vocab(texts: list[str], vocab_size: int, controls: list[str], replace_spaces: bool):
    """(vocab, merges) in Gemma's and SentencePiece's layout: control tokens first, then the 256 byte tokens, then the
    pieces BPE learned (spaces written ``▁``), in the order it learned them."""
    from tokenizers import Tokenizer, models, normalizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = (normalizers.Replace(" ", "\u2581") if replace_spaces else
                      normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")]))
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False))
    trained = json.loads(bpe.to_str())["model"]
    vocab = {t: i for i, t in enumerate(controls + [f"<0x{b:02X}>" for b in range(256)])}
    for token, _ in sorted(trained["vocab"].items(), key=lambda kv: kv[1]):
        vocab.setdefault(token, len(vocab))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in trained["merges"]]
    return vocab, merges


def _tokenizer(family: Family, texts: list[str], vocab_size: int):
    if family.tokenizer == "llama3":
        specials = LLAMA31_SPECIALS if family.name == "llama3.1" else LLAMA3_SPECIALS
        tokenizer = _byte_level_tokenizer(texts, vocab_size, specials, LLAMA3_REGEX)
        tokenizer.add_special_tokens({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                                      "pad_token": "<|end_of_text|>"})
    elif family.tokenizer == "qwen":
        tokenizer = _byte_level_tokenizer(texts, vocab_size, QWEN_SPECIALS, QWEN2_REGEX, nfc=True)
        tokenizer.add_special_tokens({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"})
        if family.name == "qwen3":
            tokenizer.add_tokens(["<think>", "</think>"])  # plain added tokens, as in Qwen 3's vocabulary
    elif family.tokenizer == "gemma":
        from transformers.models.gemma.tokenization_gemma import GemmaTokenizer

        vocab, merges = _fallback_vocab(texts, vocab_size, GEMMA3_SPECIALS, replace_spaces=True)
        tokenizer = GemmaTokenizer(vocab=vocab, merges=merges, add_bos_token=True)
        tokenizer.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
        tokenizer.add_tokens(["\n\n"])
    else:  # SentencePiece-style, as transformers 5 loads Mistral's and Phi-3's: "▁" before the input, byte fallback
        from transformers import LlamaTokenizer

        controls = MISTRAL_SPECIALS if family.name == "mistral" else PHI3_SPECIALS
        vocab, merges = _fallback_vocab(texts, vocab_size, controls, replace_spaces=False)
        tokenizer = LlamaTokenizer(vocab=vocab, merges=merges, legacy=False, add_prefix_space=True,
                                   add_bos_token=family.name == "mistral")  # Phi-3 adds none
        if family.name == "mistral":
            tokenizer.add_special_tokens({"additional_special_tokens": ["[INST]", "[/INST]"]})
        else:  # Phi-3's chat tokens follow Llama 2's vocabulary; <|endoftext|> ends a conversation
            tokenizer.add_special_tokens({"additional_special_tokens": PHI3_CHAT, "eos_token": "<|endoftext|>",
                                          "pad_token": "<|endoftext|>"})
    tokenizer.chat_template = family_template(family.name)
    return tokenizer


def _config(family: Family, tokenizer, hidden: int, layers: int, context_length: int, base: dict | None,
            overrides: dict):
    """The family's config at the tiny size; from a real base it keeps the token ids, rope and norm settings."""
    from transformers import AutoConfig

    ids = tokenizer.convert_tokens_to_ids
    heads = max(1, hidden // 64)
    size = {"vocab_size": len(tokenizer), "hidden_size": hidden, "intermediate_size": 2 * hidden,
            "num_hidden_layers": layers, "num_attention_heads": heads, "max_position_embeddings": context_length}
    own = {"num_key_value_heads": max(1, heads // 2), **family.config}
    eos = [ids(t) for t in {"llama3": ["<|eot_id|>", "<|end_of_text|>"], "qwen": ["<|im_end|>", "<|endoftext|>"],
                            "gemma": ["<eos>", "<end_of_turn>"]}.get(family.tokenizer, [])]
    if family.tokenizer == "sentencepiece":
        eos = [ids("</s>")] if family.name == "mistral" else [ids("<|endoftext|>"), ids("<|end|>")]
    own["eos_token_id"] = eos
    own["bos_token_id"] = tokenizer.bos_token_id
    if tokenizer.pad_token_id is not None:
        own["pad_token_id"] = tokenizer.pad_token_id
    kept = {}
    if base is not None:
        base = base.get("text_config", base)  # Gemma 3's multimodal wrapper: its text model
        kept = {k: v for k, v in base.items() if k.endswith("token_id") or k.startswith(("rope", "rms_norm"))}
    return AutoConfig.for_model(family.model_type, **{**own, **kept, **size, **overrides})


def tiny_model(family: str, out: str | Path, texts: Iterable[str] = (), *, vocab_size: int = 1000,
               hidden: int = 256, layers: int | None = None, context_length: int = 512,
               tokenizer_from: str | Path | None = None, seed: int = 0, template: str | None = None,
               bos_token: str | None = None, eos_token: str | None = None, **overrides) -> Path:
    """Write a random-init ``family`` model to ``out`` and return it. Its tokenizer is trained on ``texts``
    (``vocab_size`` pieces) or, with ``tokenizer_from``, is that directory's tokenizer and config (shrunk to
    ``hidden`` × ``layers``). Hidden 256 is the smallest width llama.cpp's K-quants quantize as such. Gemma gets
    six layers by default: five sliding-window layers and one global, as its pattern has them. ``template`` (with
    ``bos_token``, ``eos_token``): another chat template than the family's (SmolLM2's ChatML on a Llama), whose
    control tokens the learned tokenizer gets. ``overrides``: other config.json fields."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if family not in FAMILIES:
        raise ValueError(f"family {family!r}: one of {', '.join(FAMILIES)}")
    spec, out = FAMILIES[family], Path(out)
    base = None
    if tokenizer_from is not None:
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_from), local_files_only=True)
        base = json.loads((Path(tokenizer_from) / "config.json").read_text(encoding="utf-8"))
    else:
        texts = [t for t in texts if t]
        if not texts:
            raise ValueError("a tiny model's tokenizer needs some texts to learn its pieces from")
        tokenizer = _tokenizer(spec, texts, vocab_size)
        if template is not None:
            controls = list(dict.fromkeys(_CONTROL_IN_TEMPLATE.findall(template) + [t for t in (bos_token, eos_token)
                                                                                    if t]))
            tokenizer.add_special_tokens({"additional_special_tokens": controls,
                                          **({"bos_token": bos_token} if bos_token else {}),
                                          **({"eos_token": eos_token} if eos_token else {})})
            tokenizer.chat_template = template
    tokenizer.save_pretrained(out)
    torch.manual_seed(seed)
    config = _config(spec, tokenizer, hidden, layers or spec.layers, context_length, base, overrides)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(out)
    return out
