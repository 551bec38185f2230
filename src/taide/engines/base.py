"""The one interface every engine implements, and the decoding bookkeeping local engines share.

An engine turns messages into an answer: ``chat`` (whole answer), ``stream`` (pieces as they
come), ``generate_batch`` (many conversations). Local engines (transformers, llama.cpp) render the
prompt with the shared chat format and only supply a token loop; the openai engine forwards to an
OpenAI-compatible server.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from taide.chat.formats import ChatFormat, TokenCodec, validate_messages
from taide.chat.presets import default_system_prompt
from taide.engines.json_constraint import JsonGrammars
from taide.engines.loop import DecodeLoop, TokenRequest
from taide.engines.params import GenerationParams, TokenLogprob
from taide.errors import ContextLengthError, EngineError
from taide.models import ModelRef


@dataclass
class Completion:
    text: str
    finish_reason: str  # "stop" (end of turn or a stop string) or "length"
    prompt_tokens: int
    completion_tokens: int
    time_to_first_token: float  # seconds from the call to the first generated token
    elapsed: float  # seconds for the whole call
    logprobs: list[TokenLogprob] | None = None  # each generated token's, with params.logprobs
    prompt_logprobs: list[TokenLogprob] | None = None  # each prompt token's, with params.prompt_logprobs
    token_ids: list[int] | None = None  # the answer's token ids, end of turn included (local engines)

    @property
    def tokens_per_second(self) -> float:
        """Decode speed: tokens after the first, over the time after the first."""
        decode_time = self.elapsed - self.time_to_first_token
        if self.completion_tokens < 2 or decode_time <= 0:
            return math.nan
        return (self.completion_tokens - 1) / decode_time

    def usage(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}


@dataclass
class Chunk:
    """A streamed piece of the answer; the last chunk carries the finished :class:`Completion`."""

    text: str
    completion: Completion | None = None
    logprobs: list[TokenLogprob] | None = None  # the tokens read since the last chunk, with params.logprobs
    prompt_logprobs: list[TokenLogprob] | None = None  # on the first chunk, with params.prompt_logprobs


class ChunkStream:
    """An answer being generated: iterate it for :class:`Chunk` s; ``cancel()`` from any thread (say, when
    the client went away) stops the generation.

    A stream that can also be read without blocking has ``watch``: after ``watch(wake)``, ``wake(last)`` is called
    from the producing thread whenever chunks may be ready (``last``: the answer is over), and iterating yields
    ``None`` when none is ready yet (the server reads local engines this way on its event loop, with no thread in
    between)."""

    def __init__(self, chunks: Iterator[Chunk | None], cancel: Callable[[], None],
                 watch: Callable[[Callable[[bool], None]], None] | None = None):
        self._chunks, self._cancel, self.watch = chunks, cancel, watch

    def __iter__(self):
        return self

    def __next__(self) -> Chunk | None:
        return next(self._chunks)

    def cancel(self) -> None:
        self._cancel()


class Engine(ABC):
    name: str
    model: ModelRef
    context_length: int | None = None
    chat_format: ChatFormat | None = None  # None for endpoints: the server applies its own
    parallelism: int = 1  # how many requests it usefully runs at once (its batch)

    @abstractmethod
    def open_stream(self, messages: list[dict], params: GenerationParams | None = None) -> ChunkStream:
        """Start an answer; prompt errors (bad messages, context overflow) are raised here, before any work."""

    @abstractmethod
    def open_completion(self, prompt: str | list[int], params: GenerationParams | None = None) -> ChunkStream:
        """Like :meth:`open_stream` for a raw prompt (text, or token ids), with no chat format applied
        (`/v1/completions`)."""

    def stream(self, messages: list[dict], params: GenerationParams | None = None) -> Iterator[Chunk]:
        """Yield the answer in pieces; the last chunk has ``completion`` set. Closing the iterator early
        stops generation."""
        handle = self.open_stream(messages, params)
        try:
            yield from handle
        finally:
            handle.cancel()

    def chat(self, messages: list[dict], params: GenerationParams | None = None) -> Completion:
        return self._result(self.open_stream(messages, params))

    def complete(self, prompt: str | list[int], params: GenerationParams | None = None) -> Completion:
        """The whole answer to a raw prompt (see :meth:`open_completion`)."""
        return self._result(self.open_completion(prompt, params))

    def _result(self, handle: ChunkStream) -> Completion:
        try:
            for chunk in handle:
                if chunk.completion is not None:
                    return chunk.completion
        finally:
            handle.cancel()
        raise EngineError(f"engine {self.name} ended the stream without a final result")

    def generate_batch(self, conversations: list[list[dict]], params: GenerationParams | None = None) -> list[Completion]:
        return [self.chat(messages, params) for messages in conversations]

    def check(self) -> None:
        """Raise EngineError when the engine cannot answer (an endpoint that is unreachable or refuses the key),
        before a long job relies on it. Local engines answer once loaded."""

    def stats(self) -> dict:
        """Counters for metrics: requests submitted, active, waiting, cancelled, tokens, decode steps."""
        return {}

    @property
    def default_system_prompt(self) -> str | None:
        """The system prompt used when a conversation has none: TAIDE's for TAIDE-format models."""
        return default_system_prompt(self.chat_format.name if self.chat_format else None)

    def detokenize(self, ids: list[int]) -> str:
        raise EngineError(f"the {self.name} engine has no tokenizer here; send text, or ask the upstream server")

    def loglikelihood(self, context: str | list[dict], continuations: list[str]) -> list[float]:
        """log P(continuation | context) for each continuation; engines that hold the weights can say."""
        raise EngineError(f"the {self.name} engine cannot score continuations; multiple choice over an endpoint "
                          "is answered by generation instead")

    def loglikelihood_many(self, items: list[tuple[str | list[dict], list[str]]]) -> list[list[float]]:
        """:meth:`loglikelihood` for many (context, continuations) pairs."""
        return [self.loglikelihood(context, continuations) for context, continuations in items]

    def describe(self) -> dict:
        """What this engine runs, for logs, `taide info` and the server's model list."""
        return {"engine": self.name, "model": self.model.name, "reference": self.model.reference,
                "context_length": self.context_length,
                "chat_format": self.chat_format.name if self.chat_format else None}

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class StopScanner:
    """Finds stop strings in streamed text, holding back a tail that might be the start of one."""

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self._buf = ""

    def push(self, text: str) -> tuple[str, bool]:
        """Returns (text safe to emit, whether a stop string was reached)."""
        self._buf += text
        if not self.stops:
            out, self._buf = self._buf, ""
            return out, False
        hits = [i for i in (self._buf.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self._buf = self._buf[:min(hits)], ""
            return out, True
        hold = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(self._buf)), hold, -1):
                if self._buf.endswith(s[:k]):
                    hold = k
                    break
        cut = len(self._buf) - hold
        out, self._buf = self._buf[:cut], self._buf[cut:]
        return out, False

    def flush(self) -> str:
        out, self._buf = self._buf, ""
        return out


class Detokenizer(ABC):
    """Token ids in, text out, never splitting a multi-byte character (Chinese tokens often do)."""

    @abstractmethod
    def add(self, token_id: int) -> str: ...

    @abstractmethod
    def flush(self) -> str: ...


class _Answer:
    """One answer being decoded: end-of-turn ids, stop strings, the token budget and timing."""

    def __init__(self, engine: LocalEngine, params: GenerationParams, prompt_tokens: int, max_new: int, started: float):
        self.detok = engine.detokenizer()
        self.scanner = StopScanner(params.stop)
        self.eos_ids = engine.eos_ids
        self.prompt_tokens, self.max_new, self.started = prompt_tokens, max_new, started
        self.parts: list[str] = []
        self.logprobs: list[TokenLogprob] = []
        self.ids: list[int] = []
        self.tokens = 0
        self.first_token_at: float | None = None
        self.finish_reason: str | None = None

    def add(self, token_id: int) -> str:
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self.ids.append(token_id)
        if token_id in self.eos_ids:
            self.finish_reason = "stop"
            return self._emit(self.scanner.push(self.detok.flush())[0] + self.scanner.flush())
        self.tokens += 1
        text, hit = self.scanner.push(self.detok.add(token_id))
        if hit:
            self.finish_reason = "stop"
            return self._emit(text)
        if self.tokens >= self.max_new:
            tail, hit = self.scanner.push(self.detok.flush())
            self.finish_reason = "stop" if hit else "length"
            return self._emit(text + tail + ("" if hit else self.scanner.flush()))
        return self._emit(text)

    def _emit(self, text: str) -> str:
        if text:
            self.parts.append(text)
        return text

    def completion(self) -> Completion:
        now = time.perf_counter()
        return Completion(text="".join(self.parts), finish_reason=self.finish_reason or "length",
                          prompt_tokens=self.prompt_tokens, completion_tokens=self.tokens,
                          time_to_first_token=(self.first_token_at or now) - self.started,
                          elapsed=now - self.started, token_ids=self.ids)


class LocalEngine(Engine):
    """An engine that holds the weights: renders prompts itself and hands token requests to its decode
    loop, which batches whatever requests are in flight."""

    codec: TokenCodec
    eos_ids: set[int]
    loop: DecodeLoop
    grammars: JsonGrammars  # structured output: JSON schemas as token masks over this engine's vocabulary

    @abstractmethod
    def detokenizer(self) -> Detokenizer: ...

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        return self.chat_format.render_ids(validate_messages(messages), self.codec, add_generation_prompt=True)

    def count_tokens(self, messages: list[dict]) -> int:
        return len(self.prompt_ids(messages))

    def budget(self, prompt_tokens: int, params: GenerationParams) -> int:
        """New tokens allowed, or ContextLengthError naming both numbers."""
        room = self.context_length - prompt_tokens
        wanted = params.max_tokens if params.max_tokens is not None else room
        if room <= 0 or wanted > room:
            raise ContextLengthError(prompt_tokens, wanted, self.context_length)
        return wanted

    def check_params(self, params: GenerationParams) -> None:
        """Raise EngineError for what this engine cannot do with ``params`` (before any work): a JSON schema its
        masks cannot enforce."""
        if params.json_schema:
            self.grammars.constraint(params.json_schema)

    def _request(self, messages, params) -> TokenRequest:
        self.check_params(params)
        prompt = self.prompt_ids(messages)
        return TokenRequest(prompt, params, self.budget(len(prompt), params))

    def tokenize(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """``text`` as token ids, control tokens written in it included; ``add_special_tokens`` adds the beginning of
        text where the model has one."""
        return self.codec.encode_prompt(text, add_special_tokens)

    def detokenize(self, ids: list[int]) -> str:
        self._check_ids(ids)
        detok = self.detokenizer()
        return "".join(detok.add(i) for i in ids) + detok.flush()

    def _check_ids(self, ids: list[int]) -> None:
        bad = next((i for i in ids if not 0 <= i < self.vocab_size), None)
        if bad is not None:
            raise EngineError(f"prompt: token id {bad} is outside the vocabulary (0 to {self.vocab_size - 1})")

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    def open_completion(self, prompt, params=None):
        """``prompt``: text, or token ids given as they are."""
        started = time.perf_counter()
        params = params or GenerationParams()
        self.check_params(params)
        if isinstance(prompt, str):
            ids = self.codec.encode_prompt(prompt)
        else:
            ids = list(prompt)
            self._check_ids(ids)
        if not ids:
            raise EngineError("prompt: empty")
        request = TokenRequest(ids, params, self.budget(len(ids), params))
        self.loop.submit(request)
        return self._answer(request, started)

    def _answer(self, request: TokenRequest, started: float) -> ChunkStream:
        answer = _Answer(self, request.params, len(request.prompt_ids), request.max_new, started)
        with_logprobs = request.params.logprobs is not None

        def chunks():
            pending: list[TokenLogprob] = []  # tokens read whose text has not been sent yet
            prompt = None
            try:
                for token_id in request:
                    if token_id is None:  # a watched stream with nothing queued yet
                        yield None
                        continue
                    if prompt is None and request.prompt_logprobs is not None:  # filled before the first token
                        prompt = self._prompt_logprobs(request)
                    text = answer.add(token_id)
                    if with_logprobs:
                        pending.append(self._token_logprob(request.logprobs[len(answer.logprobs)]))
                        pending[-1].ends_turn = token_id in self.eos_ids
                        answer.logprobs.append(pending[-1])
                    if text:
                        yield Chunk(text, logprobs=pending if with_logprobs else None, prompt_logprobs=prompt)
                        pending, prompt = [], False
                    if answer.finish_reason:
                        break
            finally:
                request.cancel()  # a stop string, or our caller leaving: the loop frees the slot
            if not answer.finish_reason and request.cancelled.is_set():
                answer.finish_reason = "cancelled"
            completion = answer.completion()
            if with_logprobs:
                completion.logprobs = answer.logprobs
            if request.prompt_logprobs is not None:
                completion.prompt_logprobs = self._prompt_logprobs(request)
            yield Chunk("", completion, logprobs=pending if with_logprobs else None,
                        prompt_logprobs=prompt if prompt is not False else None)

        def watch(wake: Callable[[bool], None]) -> None:
            request.wake = wake

        return ChunkStream(chunks(), request.cancel, watch)

    def _piece(self, token_id: int) -> tuple[str, list[int]]:
        pieces = self.__dict__.setdefault("_pieces", {})  # token id -> its bytes, looked up once
        if token_id not in pieces:
            pieces[token_id] = self.codec.piece(token_id)
        return pieces[token_id].decode("utf-8", errors="replace"), list(pieces[token_id])

    def _token_logprob(self, entry: tuple[int, float, list[tuple[int, float]]]) -> TokenLogprob:
        token_id, logprob, top = entry
        return TokenLogprob(*self._piece(token_id), logprob, [TokenLogprob(*self._piece(i), lp) for i, lp in top])

    def _prompt_logprobs(self, request: TokenRequest) -> list[TokenLogprob]:
        return [TokenLogprob(*self._piece(request.prompt_ids[0]), None),
                *(self._token_logprob(entry) for entry in request.prompt_logprobs)]

    def open_stream(self, messages, params=None):
        started = time.perf_counter()
        request = self._request(messages, params or GenerationParams())
        self.loop.submit(request)
        return self._answer(request, started)

    def generate_batch(self, conversations, params=None):
        params = params or GenerationParams()
        started = time.perf_counter()
        requests = [self._request(m, params) for m in conversations]  # every prompt checked before any runs
        self.loop.submit(*requests)
        return [list(self._answer(r, started))[-1].completion for r in requests]

    def loglikelihood(self, context: str | list[dict], continuations: list[str]) -> list[float]:
        """The log-probability of each continuation after ``context`` (a raw prompt, or messages rendered
        with the chat format and the assistant's header), summed over the continuation's tokens."""
        return self.loglikelihood_many([(context, continuations)])[0]

    def loglikelihood_many(self, items: list[tuple[str | list[dict], list[str]]]) -> list[list[float]]:
        """:meth:`loglikelihood` of many (context, continuations) pairs, queued together so that the decode loop
        scores them in one batch where it batches (llama.cpp's slots). Every pair is checked before any runs."""
        groups = [self._scoring_requests(context, continuations) for context, continuations in items]
        self.loop.submit(*[request for group in groups for request in group])
        return [next(iter(group[0])) if group[0].candidates is not None else [next(iter(r)) for r in group]
                for group in groups]

    def _scoring_requests(self, context, continuations: list[str]) -> list[TokenRequest]:
        prefix = self.prompt_ids(context) if isinstance(context, list) else self.codec.encode_prompt(context)
        encoded = [self.codec.encode_text(c, continuation=True) for c in continuations]
        for i, ids in enumerate(encoded):
            if not ids or not prefix:
                raise EngineError(f"continuations[{i}]: empty" if prefix else "context: empty")
            if len(prefix) + len(ids) > self.context_length:
                raise ContextLengthError(len(prefix), len(ids), self.context_length)
        if all(len(ids) == 1 for ids in encoded):  # choices of one token (A/B/C/D): one pass over the prefix
            return [TokenRequest(prefix, GenerationParams(), 0, candidates=[ids[0] for ids in encoded])]
        return [TokenRequest(prefix + ids, GenerationParams(), 0, score_from=len(prefix)) for ids in encoded]

    def stats(self) -> dict:
        return dict(self.loop.stats)

    def close(self) -> None:
        self.loop.close()
