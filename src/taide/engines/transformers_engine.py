"""The reference engine: a transformers causal LM (from an HF directory or a dequantized GGUF) on CPU
or GPU, with our own KV-cached decode loop so streaming, batching and cancellation are plain Python."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from taide.chat.formats import chat_format_for
from taide.engines.base import Detokenizer, GenerationParams, LocalEngine
from taide.engines.loop import DecodeLoop
from taide.engines.sampling import choose_next
from taide.errors import EngineError, ModelError
from taide.models import ModelRef


class HFCodec:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._vocab = tokenizer.get_vocab()

    def encode_text(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)

    def token_id(self, token: str) -> int | None:
        return self._vocab.get(token)

    def control_tokens(self) -> list[str]:
        added = [t.content for t in self.tokenizer.added_tokens_decoder.values() if t.special]
        return sorted(set(added) | set(self.tokenizer.all_special_tokens))

    def encode_prompt(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)


class HFDetokenizer(Detokenizer):
    """Decodes a sliding window of ids and emits the new text once it no longer ends in a broken character."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix = self.read = 0

    def _decode(self, ids):
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def add(self, token_id: int) -> str:
        self.ids.append(token_id)
        before = self._decode(self.ids[self.prefix:self.read])
        now = self._decode(self.ids[self.prefix:])
        if len(now) > len(before) and not now.endswith("\ufffd"):
            self.prefix, self.read = self.read, len(self.ids)
            return now[len(before):]
        return ""

    def flush(self) -> str:
        before = self._decode(self.ids[self.prefix:self.read])
        now = self._decode(self.ids[self.prefix:])
        self.prefix = self.read = len(self.ids)
        return now[len(before):].rstrip("\ufffd")  # a character cut off by the token limit is dropped


QUANTIZATIONS = ("nf4",)


def quantization_options(quantization: str, device: str, dtype: torch.dtype) -> dict:
    """from_pretrained options for 4-bit NF4 weights through bitsandbytes (the card's 4-bit build, on GPU)."""
    import importlib.util

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


def load_hf(model: ModelRef, device: str, dtype: torch.dtype, quantization: str | None = None):
    """Tokenizer and model from an HF directory (safetensors only) or a GGUF file, never from a hub.
    ``quantization="nf4"`` loads the weights as 4-bit NF4 with bitsandbytes (CUDA only)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quantized = quantization_options(quantization, device, dtype) if quantization else {}
    if model.kind == "hf":
        where, extra = str(model.path), {"use_safetensors": True}
    elif model.kind == "gguf":
        where, extra = str(model.path.parent), {"gguf_file": model.path.name}
    else:
        raise EngineError(f"the transformers engine loads local models; {model.reference} is an endpoint "
                          "(use --engine openai)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=True, **extra)
        lm = AutoModelForCausalLM.from_pretrained(where, local_files_only=True, dtype=dtype, **extra, **quantized)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ModelError(f"{model.path}: transformers cannot load this model: {e}") from e
    return tokenizer, (lm if quantized else lm.to(device)).eval()  # bitsandbytes placed it already


class StaticBatchLoop(DecodeLoop):
    """Takes up to ``max_batch`` waiting requests and decodes them together until all are done; requests
    that come meanwhile wait for the next batch (a KV cache of rows of different ages would need paging)."""

    def __init__(self, engine: TransformersEngine, max_batch: int):
        super().__init__("transformers")
        self.engine, self.max_batch = engine, max_batch
        self.live: list = []

    def step(self) -> None:
        batch = self.take(self.max_batch, wait=True)
        for request in [r for r in batch if r.scoring]:
            batch.remove(request)
            request.emit(self.engine.score(request.prompt_ids, request.score_from, request.candidates))
            self.retire(request, "finished")
        if not batch:
            return
        self.live = list(batch)
        self.stats["active"] = len(batch)
        steps = self.engine.token_steps([r.prompt_ids for r in batch], [r.params for r in batch],
                                        max(r.max_new for r in batch))
        try:
            for tokens in steps:
                self.stats["steps"] += 1
                for request, token in zip(batch, tokens):
                    if request not in self.live:
                        continue
                    if request.cancelled.is_set():
                        self._drop(request, "cancelled")
                        continue
                    request.emit(token)
                    self.stats["tokens"] += 1
                    if token in self.engine.eos_ids or request.generated >= request.max_new:
                        self._drop(request, "finished")
                if not self.live:
                    break
        finally:
            steps.close()
        for request in list(self.live):  # only when the steps ran out early
            self._drop(request, "finished")

    def _drop(self, request, outcome: str, error=None) -> None:
        self.live.remove(request)
        self.stats["active"] = len(self.live)
        self.retire(request, outcome, error)

    def fail_all(self, error: Exception) -> None:
        for request in list(self.live):
            self._drop(request, "failed", error)


class TransformersEngine(LocalEngine):
    name = "transformers"

    def __init__(self, model: ModelRef, chat_format: str | None = None, device: str | None = None,
                 dtype: str | None = None, max_batch: int = 8, quantization: str | None = None, **_ignored):
        self.model = model
        self.parallelism = max_batch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        # bf16 on GPU; fp32 on CPU, where bf16 matmuls are slow and less exact.
        torch_dtype = getattr(torch, dtype) if dtype else (torch.bfloat16 if self.device.startswith("cuda") else torch.float32)
        self.quantization = quantization
        self.tokenizer, self.lm = load_hf(model, self.device, torch_dtype, quantization)
        self.codec = HFCodec(self.tokenizer)
        template = self.tokenizer.chat_template or model.chat_template
        self.chat_format = chat_format_for(chat_format or model.chat_format, template,
                                           self.tokenizer.bos_token or model.bos_token,
                                           self.tokenizer.eos_token or model.eos_token)
        self.context_length = int(getattr(self.lm.config, "max_position_embeddings", None) or model.context_length or 2048)
        self.eos_ids = self._end_ids()
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.eos_ids)
        self.loop = StaticBatchLoop(self, max_batch)

    def _end_ids(self) -> set[int]:
        ids = set()
        eos = getattr(self.lm.generation_config, "eos_token_id", None)
        ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        ids.update(i for i in (self.codec.token_id(t) for t in self.chat_format.stop_tokens) if i is not None)
        if not ids:
            raise EngineError(f"{self.model.reference}: the model defines no end-of-turn token; generation could not stop")
        return ids

    def detokenizer(self) -> Detokenizer:
        return HFDetokenizer(self.tokenizer)

    @torch.inference_mode()
    def score(self, ids: list[int], score_from: int | None, candidates: list[int] | None = None) -> float | list[float]:
        """log P(ids[score_from:] | ids[:score_from]), or each candidate's log P as the token after ids."""
        if candidates is not None:
            logits = self.lm(input_ids=torch.tensor([ids], device=self.device), logits_to_keep=1).logits[0, -1]
            return torch.log_softmax(logits.float(), -1)[candidates].tolist()
        logits = self.lm(input_ids=torch.tensor([ids], device=self.device)).logits[0, score_from - 1:-1].float()
        targets = torch.tensor(ids[score_from:], device=self.device)
        return float(torch.log_softmax(logits, -1).gather(-1, targets[:, None]).sum())

    @torch.inference_mode()
    def token_steps(self, prompts: list[list[int]], params: list[GenerationParams], max_new: int) -> Iterator[list[int]]:
        """Decode the prompts together; each step yields the next token of every row. Closing the
        iterator stops the computation."""
        batch, width = len(prompts), max(len(p) for p in prompts)
        # Left padding keeps every row's next token at the last position.
        input_ids = torch.full((batch, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((batch, width), dtype=torch.long)
        for i, p in enumerate(prompts):
            input_ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        vocab = self.lm.get_output_embeddings().weight.shape[0]
        seen = torch.zeros((batch, vocab), dtype=torch.bool, device=self.device)
        for i, (prompt, p) in enumerate(zip(prompts, params)):
            if p.repetition_penalty != 1.0:
                seen[i, torch.tensor(prompt, device=self.device)] = True
        generators = [torch.Generator(device=self.device).manual_seed(
            p.seed if p.seed is not None else int(torch.randint(0, 2**31 - 1, ()).item())) for p in params]

        out = self.lm(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                      logits_to_keep=1)  # the prompt's other logits would cost batch×length×vocab floats
        cache = out.cache
        for _ in range(max_new):
            next_ids = choose_next(out.logits[:, -1, :], seen, params, generators)
            yield next_ids.tolist()
            seen[torch.arange(batch, device=self.device), next_ids] = True
            mask = torch.cat([mask, mask.new_ones((batch, 1))], dim=-1)
            positions = positions[:, -1:] + 1
            out = self.lm(input_ids=next_ids[:, None], attention_mask=mask, position_ids=positions,
                          cache=cache, use_cache=True)
            cache = out.cache
