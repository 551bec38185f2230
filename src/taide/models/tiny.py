"""Tiny random-init models of the families taide builds (Llama 3, Gemma 3), written as Hugging Face directories.

They keep what a family's pipeline depends on — the architecture, the control tokens and their ids' roles, the
chat template, the tokenizer's kind (byte-level BPE for Llama 3; ``▁`` for spaces with ``<0xNN>`` byte
fallback for Gemma) — at a size a CPU trains in seconds. `taide build --smoke` runs a recipe's every stage on one;
the test suite uses them too. With ``tokenizer_from`` (the real base's directory, when it is on the machine) the
real vocabulary is kept and only the layers shrink.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
GEMMA3_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"]
FAMILIES = ("llama3", "gemma3")


def family_of(config: dict) -> str | None:
    """The family of a config.json (``llama3``, ``gemma3``), or None for one taide cannot shrink."""
    kind = config.get("model_type", "")
    if kind.startswith("gemma3"):
        return "gemma3"
    if kind == "llama":
        return "llama3"
    return None


def _llama3_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from taide.chat.formats import LLAMA3_TEMPLATE

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=LLAMA3_SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                        pad_token="<|end_of_text|>")
    tokenizer.chat_template = LLAMA3_TEMPLATE
    return tokenizer


def _gemma3_tokenizer(texts: list[str], vocab_size: int):
    """Gemma's layout: control tokens first (pad 0, eos 1, bos 2), then the 256 byte tokens, then the trained
    pieces; ``\\n\\n`` an added non-special token as in Gemma's vocabulary."""
    from tokenizers import Tokenizer, models, normalizers, trainers
    from transformers.models.gemma.tokenization_gemma import GemmaTokenizer

    from taide.chat.formats import GEMMA3_TEMPLATE

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.Replace(" ", "\u2581")
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False))
    trained = json.loads(bpe.to_str())["model"]
    vocab = {t: i for i, t in enumerate(GEMMA3_SPECIALS + [f"<0x{b:02X}>" for b in range(256)])}
    for token, _ in sorted(trained["vocab"].items(), key=lambda kv: kv[1]):
        vocab.setdefault(token, len(vocab))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in trained["merges"]]
    tokenizer = GemmaTokenizer(vocab=vocab, merges=merges, add_bos_token=True)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    tokenizer.add_tokens(["\n\n"])
    tokenizer.chat_template = GEMMA3_TEMPLATE
    return tokenizer


def _config(family: str, tokenizer, hidden: int, layers: int, context_length: int, base: dict | None,
            overrides: dict):
    """The family's config at the tiny size; from a real base it keeps the token ids, rope and norm settings."""
    from transformers import Gemma3TextConfig, LlamaConfig

    ids = tokenizer.convert_tokens_to_ids
    heads = max(1, hidden // 64)
    size = {"vocab_size": len(tokenizer), "hidden_size": hidden, "intermediate_size": 2 * hidden,
            "num_hidden_layers": layers, "num_attention_heads": heads, "max_position_embeddings": context_length}
    if family == "llama3":
        own = {"num_key_value_heads": max(1, heads // 2), "bos_token_id": ids("<|begin_of_text|>"),
               "eos_token_id": [ids("<|eot_id|>"), ids("<|end_of_text|>")]}
        cls = LlamaConfig
    else:
        own = {"num_key_value_heads": 1, "head_dim": 64, "query_pre_attn_scalar": 64, "sliding_window": 16,
               "bos_token_id": 2, "pad_token_id": 0, "eos_token_id": [1, ids("<end_of_turn>")]}
        cls = Gemma3TextConfig
    kept = {}
    if base is not None:
        base = base.get("text_config", base)  # Gemma 3's multimodal wrapper: its text model
        kept = {k: v for k, v in base.items() if k.endswith("token_id") or k.startswith(("rope", "rms_norm"))}
    return cls(**{**own, **kept, **size, **overrides})


def tiny_model(family: str, out: str | Path, texts: Iterable[str] = (), *, vocab_size: int = 1000,
               hidden: int = 256, layers: int | None = None, context_length: int = 512,
               tokenizer_from: str | Path | None = None, seed: int = 0, **overrides) -> Path:
    """Write a random-init ``family`` model to ``out`` and return it. Its tokenizer is trained on ``texts``
    (``vocab_size`` pieces) or, with ``tokenizer_from``, is that directory's tokenizer and config (shrunk to
    ``hidden`` × ``layers``). Hidden 256 is the smallest width llama.cpp's K-quants quantize as such. Gemma gets
    six layers by default: five sliding-window layers and one global, as its pattern has them. ``overrides``:
    other config.json fields."""
    import torch
    from transformers import AutoTokenizer, Gemma3ForCausalLM, LlamaForCausalLM

    if family not in FAMILIES:
        raise ValueError(f"family {family!r}: one of {', '.join(FAMILIES)}")
    out = Path(out)
    base = None
    if tokenizer_from is not None:
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_from), local_files_only=True)
        base = json.loads((Path(tokenizer_from) / "config.json").read_text(encoding="utf-8"))
    else:
        texts = [t for t in texts if t]
        if not texts:
            raise ValueError("a tiny model's tokenizer needs some texts to learn its pieces from")
        tokenizer = (_llama3_tokenizer if family == "llama3" else _gemma3_tokenizer)(texts, vocab_size)
    tokenizer.save_pretrained(out)
    torch.manual_seed(seed)
    layers = layers or (2 if family == "llama3" else 6)
    config = _config(family, tokenizer, hidden, layers, context_length, base, overrides)
    model = (LlamaForCausalLM if family == "llama3" else Gemma3ForCausalLM)(config)
    model.save_pretrained(out)
    return out
