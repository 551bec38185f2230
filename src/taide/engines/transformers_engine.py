"""The reference engine: a transformers causal LM (from an HF directory or a dequantized GGUF) on CPU
or GPU, with our own KV-cached decode loop so streaming, batching and cancellation are plain Python."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from taide.chat.formats import chat_format_for
from taide.engines.base import Detokenizer, LocalEngine
from taide.engines.params import GenerationParams
from taide.engines.json_constraint import JsonGrammars
from taide.engines.loop import DecodeLoop, token_logprob
from taide.engines.sampling import choose_next
from taide.errors import EngineError
from taide.models import ModelRef
from taide.models.loading import HFCodec, load_hf


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
        for request in batch:
            if request.params.prompt_logprobs:
                request.prompt_logprobs = self.engine.prompt_logprobs(request.prompt_ids, request.params.logprobs or 0)
        steps = self.engine.token_steps([r.prompt_ids for r in batch], [r.params for r in batch],
                                        max(r.max_new for r in batch))
        try:
            for tokens, logprobs in steps:
                self.stats["steps"] += 1
                for i, (request, token) in enumerate(zip(batch, tokens)):
                    if request not in self.live:
                        continue
                    if request.cancelled.is_set():
                        self._drop(request, "cancelled")
                        continue
                    if request.params.logprobs is not None:
                        request.logprobs.append(token_logprob(logprobs[i], token, request.params.logprobs))
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
        self.grammars = JsonGrammars(self._llguidance_tokenizer, self.vocab_size)
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

    def _llguidance_tokenizer(self):
        import llguidance.hf

        return llguidance.hf.from_tokenizer(self.tokenizer, n_vocab=self.vocab_size, eos_token=sorted(self.eos_ids))

    @property
    def vocab_size(self) -> int:
        return self.lm.get_output_embeddings().weight.shape[0]

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
    def prompt_logprobs(self, ids: list[int], k: int) -> list[tuple[int, float, list[tuple[int, float]]]]:
        """Each prompt token's log-probability after the tokens before it, with the ``k`` most likely there."""
        logits = self.lm(input_ids=torch.tensor([ids], device=self.device)).logits[0, :-1].float()
        rows = torch.log_softmax(logits, -1).cpu().numpy()
        return [token_logprob(row, token, k) for row, token in zip(rows, ids[1:])]

    @torch.inference_mode()
    def token_steps(self, prompts: list[list[int]], params: list[GenerationParams], max_new: int) -> Iterator[list[int]]:
        """Decode the prompts together; each step yields the next token of every row and, when a row asks for
        log-probabilities, the rows' log-probabilities (else None). Closing the iterator stops the computation."""
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
        generators = [torch.Generator(device=self.device).manual_seed(  # torch takes seeds in [0, 2**64)
            p.seed % 2**64 if p.seed is not None else int(torch.randint(0, 2**31 - 1, ()).item())) for p in params]

        out = self.lm(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                      logits_to_keep=1)  # the prompt's other logits would cost batch×length×vocab floats
        cache = out.cache
        constraints = {i: self.grammars.constraint(p.json_schema) for i, p in enumerate(params) if p.json_schema}
        with_logprobs = any(p.logprobs is not None for p in params)
        for _ in range(max_new):
            logits = out.logits[:, -1, :].float()
            logprobs = torch.log_softmax(logits, -1).cpu().numpy() if with_logprobs else None  # the model's own
            for i, constraint in constraints.items():
                logits[i].masked_fill_(torch.from_numpy(constraint.disallowed()).to(logits.device), float("-inf"))
            next_ids = choose_next(logits, seen, params, generators)
            for i, constraint in constraints.items():
                next_ids[i] = constraint.accept(int(next_ids[i]), logits[i])
            yield next_ids.tolist(), logprobs
            seen[torch.arange(batch, device=self.device), next_ids] = True
            mask = torch.cat([mask, mask.new_ones((batch, 1))], dim=-1)
            positions = positions[:, -1:] + 1
            out = self.lm(input_ids=next_ids[:, None], attention_mask=mask, position_ids=positions,
                          cache=cache, use_cache=True)
            cache = out.cache
