"""Load a resolved model for computation: tokenizer and transformers weights, the same way for the
transformers engine, training and export.

A GGUF file is dequantized by transformers once and kept as a safetensors directory in taide's cache
(``$TAIDE_CACHE``, default ``~/.cache/taide``): later loads read that directory in seconds instead of
dequantizing again (about 45 s for Gemma 3 270M, whose 262K-token vocabulary is slow to convert).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import shutil
import time
from pathlib import Path

from taide.artifacts import atomic_dir, write_json
from taide.errors import EngineError, ModelError
from taide.models.pretokenizers import PRE_TOKENIZERS
from taide.models.reference import ModelRef, cache_root, resolve_model


def _byte_characters() -> dict[str, int]:
    """Byte-level BPE's table: printable bytes stand for themselves, the others for characters from U+0100 up."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[chr(byte)] = byte
        else:
            table[chr(0x100 + extra)] = byte
            extra += 1
    return table


_BYTE_OF_CHAR = _byte_characters()


class HFCodec:
    """A transformers tokenizer as the chat formats' :class:`~taide.chat.formats.TokenCodec`."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._vocab = tokenizer.get_vocab()

    def encode_text(self, text: str, continuation: bool = False) -> list[int]:
        if continuation and self._continuing is not None:
            return self._continuing.encode(text, add_special_tokens=False).ids
        return self.tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)

    @functools.cached_property
    def _continuing(self):
        """For a tokenizer that writes "▁" before the start of an input only (Metaspace, prepend_scheme "first": how
        transformers loads Mistral's and Phi-3's), a copy that writes none: text in the middle of a prompt."""
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is None:
            return None
        spec = json.loads(backend.to_str())
        found = [p for p in _pre_tokenizers(spec.get("pre_tokenizer"))
                 if p.get("type") == "Metaspace" and p.get("prepend_scheme") == "first"]
        if not found:
            return None
        from tokenizers import Tokenizer

        for p in found:
            p["prepend_scheme"] = "never"
        continuing = Tokenizer.from_str(json.dumps(spec))
        continuing.encode_special_tokens = True  # control-token strings in text stay text
        return continuing

    def token_id(self, token: str) -> int | None:
        return self._vocab.get(token)

    def control_tokens(self) -> list[str]:
        added = [t.content for t in self.tokenizer.added_tokens_decoder.values() if t.special]
        return sorted(set(added) | set(self.tokenizer.all_special_tokens))

    def encode_prompt(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=add_special_tokens)

    def piece(self, token_id: int) -> bytes:
        """The token's bytes: byte-level BPE maps each byte to a printable character, SentencePiece writes a space as
        ▁ and an unknown byte as <0xE5>."""
        token = self.tokenizer.convert_ids_to_tokens(token_id)
        if token is None:
            return b""
        if self._byte_level and all(ch in _BYTE_OF_CHAR for ch in token):
            return bytes(_BYTE_OF_CHAR[ch] for ch in token)
        if len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
            return bytes([int(token[3:5], 16)])
        return token.replace("\u2581", " ").encode("utf-8")

    @functools.cached_property
    def _byte_level(self) -> bool:
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        return backend is not None and "ByteLevel" in json.dumps(json.loads(backend.to_str()).get("decoder"))


def _pre_tokenizers(spec: dict | None) -> list[dict]:
    """A tokenizer.json pre-tokenizer and, for a Sequence, the ones inside it."""
    if not spec:
        return []
    return [spec] + [p for inner in spec.get("pretokenizers", []) for p in _pre_tokenizers(inner)]


def _gguf_key(path: Path) -> str:
    stat = path.stat()
    return hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]


def dequantized_directory(ref: ModelRef, progress=None) -> Path:
    """The safetensors directory of GGUF ``ref``, written on first use (float32: dequantized values are exact).
    The cache entry is keyed by the file's path, size and modification time, and written atomically."""
    if ref.kind != "gguf":
        raise ModelError(f"{ref.reference}: only a GGUF file is dequantized")
    target = cache_root() / "dequantized" / f"{ref.path.stem}-{_gguf_key(ref.path)}"
    if (target / "taide-dequantized.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _evict_stale(target.parent)
    if progress:
        progress(f"dequantizing {ref.path.name} once into {target} (later loads reuse it)")
    with atomic_dir(target) as tmp:  # a concurrent process that finished first keeps its copy
        _write_dequantized(ref, tmp)
    return target


def _evict_stale(cache: Path) -> None:
    """Remove the dequantized copies of GGUF files that are gone or changed since (a GGUF exported to a temporary
    directory and loaded once must not leave a gigabyte behind for good)."""
    for entry in cache.iterdir():
        try:
            note = json.loads((entry / "taide-dequantized.json").read_text(encoding="utf-8"))
            source = Path(note["source"])
            stale = not source.is_file() or entry.name != f"{source.stem}-{_gguf_key(source)}"
        except (OSError, ValueError, KeyError):
            # a write killed an hour ago or more; a finished entry always has its note
            stale = entry.name.startswith(".tmp-") and time.time() - entry.stat().st_mtime > 3600
        if stale:
            shutil.rmtree(entry, ignore_errors=True)


def _write_dequantized(ref: ModelRef, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from taide.chat.formats import chat_format_for

    where, name = str(ref.path.parent), ref.path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(where, gguf_file=name, local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ModelError(f"{ref.path}: transformers cannot load this GGUF: {e}") from e
    model.hf_quantizer = None  # plain tensors now, not a quantized model
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.use_cache = True
    model.save_pretrained(out, safe_serialization=True)
    fmt = chat_format_for(ref.chat_format, ref.chat_template, ref.bos_token, ref.eos_token) if ref.chat_format else None
    if fmt is not None and not tokenizer.chat_template:
        tokenizer.chat_template = fmt.hf_template
    tokenizer.save_pretrained(out)
    repairs = repair_gguf_tokenizer(out, ref)
    if fmt is not None:
        generation = model.generation_config
        generation.eos_token_id = end_of_turn_ids(tokenizer, fmt)
        generation.save_pretrained(out)
    write_json(out / "taide-dequantized.json",  # last: an entry with this note is complete
               {"source": str(ref.path.resolve()), "size": ref.path.stat().st_size, "chat_format": ref.chat_format,
                "tokenizer_repairs": repairs})


def repair_gguf_tokenizer(out: Path, ref: ModelRef) -> list[str]:
    """Make ``out/tokenizer.json`` (written by transformers from GGUF ``ref``) tokenize as llama.cpp does that GGUF;
    returns what was changed."""
    meta = ref.metadata
    path = out / "tokenizer.json"
    tj = json.loads(path.read_text(encoding="utf-8"))
    changes = []
    pre = meta.get("tokenizer.ggml.pre")
    if pre in PRE_TOKENIZERS and tj.get("pre_tokenizer") != PRE_TOKENIZERS[pre]:
        tj["pre_tokenizer"] = json.loads(json.dumps(PRE_TOKENIZERS[pre]))
        for p in [tj["pre_tokenizer"], *tj["pre_tokenizer"].get("pretokenizers", [])]:
            if p.get("type") == "ByteLevel":
                p["trim_offsets"] = True
        changes.append(f"pre-tokenizer set to llama.cpp's {pre!r}")
    if pre == "llama-bpe" and not tj["model"].get("ignore_merges"):
        tj["model"]["ignore_merges"] = True  # as Meta's tokenizer.json and llama.cpp's llama-bpe
        changes.append("ignore_merges on (Llama 3)")
    n_vocab = meta.get("_vocab_size")
    extra = [t for t in tj.get("added_tokens", []) if n_vocab is not None and t["id"] >= n_vocab]
    if extra:
        tj["added_tokens"] = [t for t in tj["added_tokens"] if t["id"] < n_vocab]
        changes.append(f"dropped {', '.join(t['content'] for t in extra)} (past the GGUF's {n_vocab} tokens)")
    bos = meta.get("_bos_token")
    if meta.get("tokenizer.ggml.add_bos_token") and bos:
        bos_id = meta["tokenizer.ggml.bos_token_id"]
        special = {"SpecialToken": {"id": bos, "type_id": 0}}
        tj["post_processor"] = {
            "type": "TemplateProcessing",
            "single": [special, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [special, {"Sequence": {"id": "A", "type_id": 0}}, special, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}}}
        changes.append("BOS added to encoded text, as the GGUF says")
    if changes:
        path.write_text(json.dumps(tj, ensure_ascii=False, indent=2), encoding="utf-8")
        if extra:
            config_path = out / "tokenizer_config.json"
            tc = json.loads(config_path.read_text(encoding="utf-8"))
            dropped = {t["content"] for t in extra}
            for key in ("unk_token", "pad_token"):
                if tc.get(key) in dropped:
                    del tc[key]
            config_path.write_text(json.dumps(tc, ensure_ascii=False, indent=2), encoding="utf-8")
    return changes


def end_of_turn_ids(tokenizer, chat_format) -> list[int]:
    """The tokenizer's EOS and the chat format's end-of-turn tokens: what a generation config stops on."""
    codec = HFCodec(tokenizer)
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    ids.update(i for i in (codec.token_id(t) for t in chat_format.stop_tokens) if i is not None)
    return sorted(ids)


def hf_directory(reference: str | ModelRef, progress=None) -> tuple[ModelRef, Path]:
    """(the resolved reference, the HF directory transformers loads it from)."""
    ref = reference if isinstance(reference, ModelRef) else resolve_model(reference)
    if ref.kind == "hf":
        return ref, ref.path
    if ref.kind == "gguf":
        return ref, dequantized_directory(ref, progress)
    raise ModelError(f"{ref.reference} is an endpoint; loading needs local weights (an HF directory or a GGUF file)")


def load_tokenizer(reference: str | ModelRef):
    from transformers import AutoTokenizer

    ref, where = hf_directory(reference)
    try:
        return AutoTokenizer.from_pretrained(str(where), local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise ModelError(f"{ref.path}: transformers cannot load this tokenizer: {e}") from e


QUANTIZATIONS = ("nf4",)


def quantization_options(quantization: str, device: str, dtype) -> dict:
    """from_pretrained options for 4-bit NF4 weights through bitsandbytes (the card's 4-bit build, on GPU)."""
    import torch

    if quantization.lower() not in QUANTIZATIONS:
        raise EngineError(f"quantization {quantization!r} is not supported; choose nf4 (bitsandbytes 4-bit, GPU), "
                         "or export to GGUF (taide export --quant q4_k_m) for 4-bit on CPU")
    if not device.startswith("cuda") or not torch.cuda.is_available():
        raise EngineError(f"quantization='nf4' needs a CUDA GPU (bitsandbytes' 4-bit kernels), but the device is "
                         f"{device!r}; on CPU, export the model to GGUF (taide export --quant q4_k_m) and use the "
                         "llamacpp engine")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise EngineError("quantization='nf4' needs bitsandbytes: pip install bitsandbytes")
    from transformers import BitsAndBytesConfig

    compute = dtype if dtype in (torch.bfloat16, torch.float16) else torch.bfloat16
    return {"quantization_config": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                      bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute),
            "device_map": {"": device}}


def load_hf(model: str | ModelRef, device: str = "cpu", dtype=None, quantization: str | None = None,
            progress=None):
    """(tokenizer, model in eval mode on ``device``) for an HF directory (safetensors only) or a GGUF file (through
    its dequantized copy), never from a hub. ``quantization="nf4"`` loads 4-bit NF4 weights (bitsandbytes, CUDA)."""
    import torch
    from transformers import AutoModelForCausalLM

    ref, where = hf_directory(model, progress)
    dtype = dtype or torch.float32
    quantized = quantization_options(quantization, device, dtype) if quantization else {}
    tokenizer = load_tokenizer(ref)
    try:
        lm = AutoModelForCausalLM.from_pretrained(str(where), local_files_only=True, dtype=dtype, use_safetensors=True,
                                                  **quantized)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ModelError(f"{ref.path}: transformers cannot load this model: {e}") from e
    return tokenizer, (lm if quantized else lm.to(device)).eval()  # bitsandbytes placed it already
