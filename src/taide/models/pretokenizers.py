"""How byte-level BPE tokenizers split text before merging, by llama.cpp's name for each split (its
``tokenizer.ggml.pre``), as ``tokenizer.json`` writes it: the GGUF writer maps a tokenizer to its name, and the tiny
models of :mod:`taide.models.tiny` split text as their families' real tokenizers do."""

from __future__ import annotations

LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
               r"|\s+(?!\S)|\s+")  # Llama 3's with single digits

_BYTELEVEL_REGEX = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
_BYTELEVEL_NO_REGEX = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}


def _split_then_bytes(regex: str) -> dict:
    return {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}, _BYTELEVEL_NO_REGEX]}


PRE_TOKENIZERS: dict[str, dict] = {
    "llama-bpe": _split_then_bytes(LLAMA3_REGEX),
    "qwen2": _split_then_bytes(QWEN2_REGEX),
    "smollm": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, _BYTELEVEL_REGEX]},
    "gpt-2": _BYTELEVEL_REGEX,
}
