"""GGUF models on llama.cpp (llama-cpp-python): the fast CPU engine.

llama-cpp-python's high-level API decodes one sequence at a time. This engine instead drives
llama.cpp's batch API the way llama.cpp's own server does with parallel slots: several sequences
live in one context (each with its own sequence id and KV-cache cells), and every step decodes the
next token of all of them in one ``llama_decode`` call, while long prompts are prefilled in chunks
between steps. The prompt comes from taide's chat format as token ids.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import os
import random
import re
import unicodedata
from dataclasses import dataclass

import numpy as np

from taide.chat.formats import chat_format_for
from taide.engines.base import Detokenizer, LocalEngine
from taide.engines.json_constraint import JsonConstraint, JsonGrammars
from taide.engines.loop import DecodeLoop, TokenRequest, log_softmax, token_logprob
from taide.errors import EngineError, ModelError
from taide.models import ModelRef

DEFAULT_MAX_CONTEXT = 8192  # the KV cache of a 128K-context model would not fit a laptop; raise with n_ctx
PENALTY_WINDOW = 64  # repetition penalty looks at the last 64 tokens, as llama.cpp does by default
# llama.cpp's CPU kernels compute a batch of fewer than 64 tokens another way (flash attention's; without it, the
# bound is lower), which rounds differently: a prompt is read in pieces of at least this many tokens (unless it is
# shorter), so each of its tokens is computed alike whatever piece it falls in, and a prefix copy changes no answer.
MIN_PIECE = 64


def _has_amx() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return "amx_int8" in f.read()
    except OSError:
        return False


@contextlib.contextmanager
def plain_cpu_buffers():
    """Models opened inside use llama.cpp's plain CPU buffers on CPUs with AMX.

    There, llama.cpp (llama-cpp-python 0.3.36) repacks quantized weights into AMX buffers, and the first evaluation
    then crashes the process (a segmentation fault, with the embedded models' own GGUFs too). Llama() has no option
    for it, so llama.cpp's default model parameters are patched while the block runs."""
    import llama_cpp.llama_cpp as lib

    if not _has_amx():
        yield
        return
    default = lib.llama_model_default_params

    def without_extra_buffers():
        params = default()
        params.use_extra_bufts = False
        return params

    lib.llama_model_default_params = without_extra_buffers
    try:
        yield
    finally:
        lib.llama_model_default_params = default


def open_llama(path, **options):
    """``llama_cpp.Llama(path, **options)``, the one way taide opens a GGUF with llama.cpp (see
    :func:`plain_cpu_buffers`)."""
    import llama_cpp

    with plain_cpu_buffers():
        return llama_cpp.Llama(model_path=str(path), **options)


class LlamaCppCodec:
    """llama.cpp's tokenizer as a :class:`~taide.chat.formats.TokenCodec`. Where the GGUF's ``taide.tokenizer.*``
    keys say transformers does what llama.cpp has no switch for (export/gguf_writer.TAIDE_TOKENIZER_KEYS), it is
    done here: NFC before tokenizing, a "▁" before the start of the input (a space, which llama.cpp writes as "▁")."""

    def __init__(self, llm):
        self.llm = llm
        self._controls: list[str] | None = None
        meta = getattr(llm, "metadata", None) or {}
        self._nfc = meta.get("taide.tokenizer.normalizer") == "NFC"
        self._space_prefix = meta.get("taide.tokenizer.space_prefix")  # None, "first" or "always"

    def _prepare(self, text: str, continuation: bool) -> str:
        if self._nfc:
            text = unicodedata.normalize("NFC", text)
        if self._space_prefix == "always" or (self._space_prefix == "first" and not continuation):
            if text and not text.startswith(" "):
                text = " " + text
        return text

    def encode_text(self, text: str, continuation: bool = False) -> list[int]:
        text = self._prepare(text, continuation)
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False) if text else []

    def token_id(self, token: str) -> int | None:
        ids = self.llm.tokenize(token.encode("utf-8"), add_bos=False, special=True)
        return ids[0] if len(ids) == 1 else None

    def encode_prompt(self, text: str, add_special_tokens: bool = True) -> list[int]:
        if self._space_prefix or self._nfc:  # the text between control tokens, as transformers treats it
            controls = sorted(self.control_tokens(), key=len, reverse=True)
            parts = re.split("(" + "|".join(map(re.escape, controls)) + ")", text) if controls else [text]
            text = "".join(part if k % 2 else self._prepare(part, continuation=k > 0) for k, part in enumerate(parts))
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_special_tokens, special=True)

    def piece(self, token_id: int) -> bytes:
        return self.llm.detokenize([token_id], special=True)

    def control_tokens(self) -> list[str]:
        if self._controls is None:
            import llama_cpp

            vocab = self.llm._model
            self._controls = [vocab.token_get_text(i) for i in range(vocab.n_vocab())
                              if vocab.token_get_attr(i) & llama_cpp.LLAMA_TOKEN_ATTR_CONTROL]
        return self._controls


class LlamaCppDetokenizer(Detokenizer):
    """Token pieces are bytes; an incremental UTF-8 decoder holds a character split across tokens."""

    def __init__(self, llm):
        self.llm = llm
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def add(self, token_id: int) -> str:
        return self.decoder.decode(self.llm.detokenize([token_id]))

    def flush(self) -> str:
        self.decoder.reset()  # bytes of a character cut off by the token limit are dropped
        return ""


@dataclass(eq=False)
class _Slot:
    seq_id: int
    request: TokenRequest
    sampler: object
    constraint: JsonConstraint | None = None  # the answer's JSON grammar, with params.json_schema
    prefilled: int = 0  # prompt tokens already in the KV cache
    next_token: int | None = None  # the sampled token to feed at the next step
    batch_index: int = -1  # where this slot's logits are in the current batch (-1: none)
    score: float | list = 0.0  # scoring requests: log-probability summed so far, or the candidates' ones
    score_rows: list = None  # scoring requests: (batch index, next token) whose logits this step scores

    @property
    def position(self) -> int:
        return self.prefilled + self.request.generated - 1

    @property
    def need(self) -> int:
        return len(self.request.prompt_ids) + self.request.max_new


def _common_prefix(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


class SlotLoop(DecodeLoop):
    """Continuous batching over ``n_parallel`` sequence slots that share one KV cache of ``n_ctx`` cells.
    A request is admitted when a slot is free and its prompt + max_tokens fit the cells not yet reserved.

    Prefix caching: once a prompt is read, its cells are copied out of the KV cache into memory, with the tokens
    they hold. A new request whose prompt shares a prefix with a kept one has the longest such copy put back into
    its sequence, and only the rest of the prompt is decoded: turn 5 of a conversation reads turns 1–4 from the copy
    and decodes turn 4's answer and the new question. Copies, not cells left in place: every decode step attends over
    the cache up to its highest used cell, so cells kept in place for idle conversations slowed every later answer
    (by a sixth, for one stream after eight, on SmolLM2). The answer's own cells are not kept: they were computed one
    token at a time, and llama.cpp's quantized kernels round differently than for the same tokens read in a batch,
    which would make greedy answers depend on the cache. The copies hold at most ``n_ctx`` tokens, least recently
    used dropped first. Scores never use them; recurrent models are not cached.

    Sliding-window models (Gemma 3) are cached the same way. What once parted their greedy answers from fresh ones:
    llama.cpp's copy of a sequence holds only the window cells its last position attends to, so a copy put back
    under a shorter prompt left the window layers with nothing before the cut, and one put back under a longer
    prompt put the window cells first in the cache, where a fresh decode has them after the cells the window has
    passed (llama.cpp's sums follow the cells' order). Copies are therefore taken piece by piece, each piece at most
    a window long (so nothing in it is left out), and put back in order (:meth:`_keep`, :meth:`_put_back`)."""

    def __init__(self, llm, eos_ids: set[int], n_ctx: int, n_parallel: int, n_batch: int, n_threads: int,
                 flash_attn: bool, grammars: JsonGrammars, prefix_cache: bool = True):
        import llama_cpp

        super().__init__("llamacpp")
        self.lib = llama_cpp
        self.eos_ids, self.grammars = eos_ids, grammars
        self.n_ctx, self.n_batch = n_ctx, n_batch
        self.min_piece = max(1, min(MIN_PIECE, n_batch // 2))
        self.n_vocab = llm.n_vocab()
        params = llama_cpp.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch = n_ctx, n_batch, n_batch
        params.n_seq_max = n_parallel + 1  # and a spare sequence, which prompt copies pass through
        params.kv_unified = True  # every slot may use the whole window; admission keeps the sum in bounds
        params.n_threads = params.n_threads_batch = n_threads
        params.no_perf = True
        params.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn
                                  else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        self.ctx = llama_cpp.llama_init_from_model(llm._model.model, params)
        if not self.ctx:
            raise ModelError(f"llama.cpp could not create a context of {n_ctx} tokens × {n_parallel} sequences")
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self.free_ids = list(range(n_parallel))
        self.slots: list[_Slot] = []
        self.reserved = 0
        model = llm._model.model
        # a recurrent model's state is one cell per sequence: no prefix of it can be cut out
        self.prefix_cache = prefix_cache and not (llama_cpp.llama_model_is_recurrent(model)
                                                  or llama_cpp.llama_model_is_hybrid(model))
        self.window = llama_cpp.llama_model_n_swa(model)  # 0: every layer attends to every position
        self.spare = n_parallel
        # (prompt tokens, copies of their cells: (first position, bytes) per piece of at most a window), oldest first
        self.kept: list[tuple[list[int], list[tuple[int, ctypes.Array]]]] = []
        self.stats.update(prefix_hits=0, prefix_tokens_reused=0)

    # --- sampling ---
    def _sampler(self, request: TokenRequest):
        lib, p = self.lib, request.params
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        if p.repetition_penalty != 1.0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_penalties(
                self.n_vocab, PENALTY_WINDOW, p.repetition_penalty, 0.0, 0.0))
        if p.greedy:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
        else:
            if p.top_k > 0:
                lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_k(p.top_k))
            if p.top_p < 1.0:
                lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(p.top_p, 1))
            if p.min_p > 0:
                lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_min_p(p.min_p, 1))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(p.temperature))
            seed = p.seed if p.seed is not None else random.randrange(2**31)
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        if p.repetition_penalty != 1.0:
            for token in request.prompt_ids[-PENALTY_WINDOW:]:
                lib.llama_sampler_accept(chain, token)
        return chain

    # --- the loop ---
    def _admit(self) -> None:
        while self.free_ids:
            waiting = self.take(1, wait=not self.slots)
            if not waiting:
                return
            request = waiting[0]
            need = len(request.prompt_ids) + request.max_new
            if self.slots and self.reserved + need > self.n_ctx:
                self.put_back(request)  # waits until running answers free their cells
                return
            self.reserved += need
            seq_id, reused = self._sequence_for(request)
            sampler = None if request.scoring else self._sampler(request)
            schema = request.params.json_schema
            constraint = self.grammars.constraint(schema) if schema and not request.scoring else None
            if request.params.prompt_logprobs:
                request.prompt_logprobs = []
            self.slots.append(_Slot(seq_id, request, sampler, constraint, prefilled=reused))
            self.stats["active"] = len(self.slots)

    def _sequence_for(self, request: TokenRequest) -> tuple[int, int]:
        """A free sequence for the request's prompt and how many of its first tokens are already in its cells: the
        longest prefix a kept copy shares with the prompt, put back. A score (and a prompt whose own
        log-probabilities are asked for: completions' echo, how evaluation harnesses score) starts from nothing, so
        an exam's numbers do not depend on what ran before."""
        seq_id = self.free_ids.pop(0)
        if request.scoring or request.params.prompt_logprobs:
            return seq_id, 0
        prompt = request.prompt_ids
        best, reused = None, 0
        for entry in self.kept:
            common = _common_prefix(entry[0], prompt)
            if common > reused:
                best, reused = entry, common
        reused = min(reused, len(prompt) - self.min_piece)  # the rest is read as one piece of full size
        if reused <= 0 or not self._put_back(best[1], seq_id, reused):
            return seq_id, 0
        self.kept.remove(best)
        self.kept.append(best)  # the most recently used last
        self.stats["prefix_hits"] += 1
        self.stats["prefix_tokens_reused"] += reused
        return seq_id, reused

    def _keep(self, seq_id: int, prompt: list[int]) -> None:
        """Copy a prompt's cells into memory; called once the prompt is read, before any answer token is decoded.

        llama.cpp's copy of a sequence leaves out the window layers' cells that its last position no longer attends
        to, so the copy is taken piece by piece, each at most a window long, through the spare sequence."""
        lib, pieces = self.lib, []
        step = self.window or len(prompt)
        for start in range(0, len(prompt), step):
            lib.llama_memory_seq_cp(self.memory, seq_id, self.spare, start, start + step)
            size = lib.llama_state_seq_get_size(self.ctx, self.spare)
            cells = (ctypes.c_uint8 * size)()
            copied = lib.llama_state_seq_get_data(self.ctx, cells, size, self.spare) == size
            lib.llama_memory_seq_rm(self.memory, self.spare, -1, -1)
            if not copied:
                return
            pieces.append((start, cells))
        # a conversation's earlier turns are a prefix of its latest: one copy serves them all
        self.kept = [k for k in self.kept if _common_prefix(k[0], prompt) < len(k[0])] + [(list(prompt), pieces)]
        while sum(len(tokens) for tokens, _ in self.kept) > self.n_ctx:
            self.kept.pop(0)

    def _put_back(self, pieces: list[tuple[int, ctypes.Array]], seq_id: int, reused: int) -> bool:
        """Put the pieces of a copy that hold its first ``reused`` positions back into the (empty) sequence, in order,
        so that its cells lie where decoding the prompt afresh would have put them (llama.cpp's sums follow the
        cells' order: elsewhere, greedy answers part). False, with the sequence empty again, where llama.cpp has no
        room for them or they cannot go on at ``reused``."""
        lib, memory = self.lib, self.memory
        for cells in (cells for start, cells in pieces if start < reused):
            restored = lib.llama_state_seq_set_data(self.ctx, cells, len(cells), self.spare) == len(cells)
            if restored:
                lib.llama_memory_seq_cp(memory, self.spare, seq_id, -1, -1)
            lib.llama_memory_seq_rm(memory, self.spare, -1, -1)
            if not restored:
                break
        else:
            if lib.llama_memory_seq_rm(memory, seq_id, reused, -1) and self._goes_on_from(seq_id, reused):
                return True
        lib.llama_memory_seq_rm(memory, seq_id, -1, -1)
        return False

    def _goes_on_from(self, seq_id: int, position: int) -> bool:
        """Whether the sequence's cells are enough to decode ``position`` next: with a sliding window, the window
        layers' lowest cell must be no later than the first one ``position`` attends to (llama.cpp may have reused
        cells the window had left behind while the prompt was read beside other answers)."""
        lowest = self.lib.llama_memory_seq_pos_min(self.memory, seq_id)
        return 0 <= lowest <= max(0, position - self.window + 1) if self.window else lowest == 0

    def _release(self, slot: _Slot, outcome: str, error: Exception | None = None) -> None:
        self.lib.llama_memory_seq_rm(self.memory, slot.seq_id, -1, -1)
        if slot.sampler is not None:
            self.lib.llama_sampler_free(slot.sampler)
        self.slots.remove(slot)
        self.free_ids.append(slot.seq_id)
        self.reserved -= slot.need
        self.stats["active"] = len(self.slots)
        self.retire(slot.request, outcome, error)

    def _add(self, n: int, token: int, position: int, seq_id: int, logits: bool) -> None:
        b = self.batch
        b.token[n], b.pos[n], b.n_seq_id[n], b.logits[n] = token, position, 1, logits
        b.seq_id[n][0] = seq_id

    def step(self) -> None:
        self._admit()
        for slot in [s for s in self.slots if s.request.cancelled.is_set()]:
            self._release(slot, "cancelled")
        if not self.slots:
            return
        n = 0
        for slot in self.slots:  # answers being decoded: one token each
            slot.batch_index = -1
            if slot.next_token is not None:
                self._add(n, slot.next_token, slot.position, slot.seq_id, True)
                slot.batch_index, n = n, n + 1
        for slot in self.slots:  # prompts: chunks in whatever room is left
            slot.score_rows = []
            prompt = slot.request.prompt_ids
            if slot.next_token is not None or n >= self.n_batch:
                continue
            left = len(prompt) - slot.prefilled
            take = min(left, self.n_batch - n)
            if take < left and left - take < self.min_piece:
                take = left - self.min_piece  # no short last piece
            if take < min(left, self.min_piece):
                continue  # too little room in this batch: the next step has more
            request = slot.request
            for i in range(slot.prefilled, slot.prefilled + take):
                last = i == len(prompt) - 1
                if request.candidates is not None:  # next-token choices: the last position's logits
                    scored = last
                elif request.score_from is not None:
                    scored = request.score_from - 1 <= i < len(prompt) - 1
                else:  # an answer's prompt: every position's logits when its log-probabilities are asked for
                    scored = request.params.prompt_logprobs and not last
                self._add(n, prompt[i], i, slot.seq_id, scored or (last and not request.scoring))
                if scored:
                    slot.score_rows.append((n, None if request.candidates is not None else prompt[i + 1]))
                elif last and not request.scoring:
                    slot.batch_index = n
                n += 1
            slot.prefilled += take
        self.batch.n_tokens = n
        status = self.lib.llama_decode(self.ctx, self.batch)
        if status != 0:
            raise EngineError(f"llama_decode returned {status} for a batch of {n} tokens")
        self.stats["steps"] += 1
        for slot in list(self.slots):
            if slot.request.scoring:
                self._score(slot)
                continue
            k = slot.request.params.logprobs
            for index, token in slot.score_rows:  # the prompt's log-probabilities, before its first token
                slot.request.prompt_logprobs.append(token_logprob(self._logprobs(index), token, k or 0))
            if slot.batch_index < 0:
                continue
            logits = self._logits(slot.batch_index)
            logprobs = log_softmax(logits) if k is not None else None  # the model's, before sampling
            try:
                if slot.constraint:  # in place, so llama.cpp's samplers see only the tokens JSON allows
                    slot.constraint.mask(logits)
                token = self.lib.llama_sampler_sample(slot.sampler, self.ctx, slot.batch_index)
                if slot.constraint:
                    token = slot.constraint.accept(token, logits)
            except EngineError as e:  # this answer's grammar failed (a parser limit): the others go on
                self._release(slot, "failed", e)
                continue
            if logprobs is not None:
                slot.request.logprobs.append(token_logprob(logprobs, token, k))
            slot.request.emit(token)
            self.stats["tokens"] += 1
            if (slot.next_token is None and self.prefix_cache and not slot.request.params.prompt_logprobs
                    and len(slot.request.prompt_ids) >= self.min_piece):  # a shorter prompt was read as a short piece
                self._keep(slot.seq_id, slot.request.prompt_ids)  # the prompt is read, no answer token decoded yet
            slot.next_token = token
            if token in self.eos_ids or slot.request.generated >= slot.request.max_new:
                self._release(slot, "finished")

    def _logits(self, batch_index: int) -> np.ndarray:
        """The logits of a batch position: a view of llama.cpp's own buffer, which its samplers read."""
        return np.ctypeslib.as_array(self.lib.llama_get_logits_ith(self.ctx, batch_index), shape=(self.n_vocab,))

    def _logprobs(self, batch_index: int) -> np.ndarray:
        return log_softmax(self._logits(batch_index))

    def _score(self, slot: _Slot) -> None:
        for index, token in slot.score_rows:
            logprobs = self._logprobs(index)
            if token is None:
                slot.score = [float(logprobs[c]) for c in slot.request.candidates]
            else:
                slot.score += float(logprobs[token])
        if slot.prefilled == len(slot.request.prompt_ids):
            slot.request.emit(slot.score)
            self._release(slot, "finished")

    def fail_all(self, error: Exception) -> None:
        for slot in list(self.slots):
            self._release(slot, "failed", error)

    def close(self) -> None:
        super().close()
        self.fail_all(EngineError("the llamacpp engine was closed"))
        if self.ctx:
            self.lib.llama_batch_free(self.batch)
            self.lib.llama_free(self.ctx)
            self.ctx = None


class LlamaCppEngine(LocalEngine):
    name = "llamacpp"

    def __init__(self, model: ModelRef, chat_format: str | None = None, n_ctx: int | None = None,
                 n_parallel: int = 8, n_batch: int = 512, n_threads: int | None = None, n_gpu_layers: int = 0,
                 flash_attn: bool = True, prefix_cache: bool = True, **_ignored):
        if model.kind != "gguf":
            raise EngineError(f"the llamacpp engine runs GGUF files; {model.reference} is a {model.kind} model "
                              "(use --engine transformers, or export it to GGUF)")
        try:
            import llama_cpp  # noqa: F401
        except ImportError as e:
            raise EngineError("the llamacpp engine needs llama-cpp-python: pip install llama-cpp-python") from e
        self.model = model
        self.parallelism = n_parallel
        self.context_length = n_ctx or min(model.context_length or DEFAULT_MAX_CONTEXT, DEFAULT_MAX_CONTEXT)
        try:
            # This Llama object holds the weights and the tokenizer; decoding happens in SlotLoop's own
            # context, so its context is kept tiny.
            self.llm = open_llama(model.path, n_ctx=64, n_batch=64, n_gpu_layers=n_gpu_layers, verbose=False)
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"{model.path}: llama.cpp cannot load this model: {e}") from e
        self.codec = LlamaCppCodec(self.llm)
        self.chat_format = chat_format_for(chat_format or model.chat_format, model.chat_template,
                                           model.bos_token, model.eos_token)
        import llama_cpp

        vocab = self.llm._model.vocab
        ends = {i for i in range(self.llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, i)}
        ends.update(i for i in (self.codec.token_id(t) for t in self.chat_format.stop_tokens) if i is not None)
        self.eos_ids = ends
        self.grammars = JsonGrammars(self._llguidance_tokenizer, self.vocab_size)
        # Flash attention on, as llama.cpp's own server does: about 10% faster decoding here, single or batched.
        # Its sums are ordered differently from transformers', so greedy answers can part on near-ties.
        self.loop = SlotLoop(self.llm, ends, self.context_length, n_parallel, n_batch, n_threads or os.cpu_count(),
                             flash_attn, self.grammars, prefix_cache)

    def detokenizer(self) -> Detokenizer:
        return LlamaCppDetokenizer(self.llm)

    def _llguidance_tokenizer(self):
        import llguidance.llamacpp

        return llguidance.llamacpp.lltokenizer_from_vocab(self.llm._model.vocab, n_vocab=self.vocab_size,
                                                          eos_token=sorted(self.eos_ids))

    @property
    def vocab_size(self) -> int:
        return self.llm.n_vocab()

    def close(self) -> None:
        loop, self.loop = getattr(self, "loop", None), None
        if loop is not None:
            loop.close()
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            llm.close()
