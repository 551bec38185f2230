"""Any OpenAI-compatible endpoint (vLLM, llama.cpp's server, TGI, another `taide serve`) as an engine.
This is how taide's chat, tasks and evaluation use a GPU cluster: the server applies the chat format."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

from taide.chat.formats import validate_messages
from taide.engines.base import Chunk, ChunkStream, Completion, Engine
from taide.engines.params import GenerationParams, TokenLogprob
from taide.errors import EngineError
from taide.models import ModelRef


def _logprobs(shaped) -> list[TokenLogprob] | None:
    """An upstream choice's log-probabilities, in chat's shape (``content``) or completions' (``tokens``, ...)."""
    if shaped is None:
        return None
    content = getattr(shaped, "content", None)
    if content is not None:
        return [TokenLogprob(e.token, list(e.bytes or e.token.encode()), e.logprob,
                             [TokenLogprob(t.token, list(t.bytes or t.token.encode()), t.logprob)
                              for t in e.top_logprobs or []]) for e in content]
    tokens = getattr(shaped, "tokens", None) or []
    tops = getattr(shaped, "top_logprobs", None) or [None] * len(tokens)
    return [TokenLogprob(token, list(token.encode()), logprob,
                         [TokenLogprob(t, list(t.encode()), lp) for t, lp in sorted((top or {}).items(),
                                                                                    key=lambda kv: -kv[1])])
            for token, logprob, top in zip(tokens, shaped.token_logprobs, tops)]


class OpenAIEngine(Engine):
    name = "openai"

    def __init__(self, model: ModelRef, api_key: str | None = None, served_model: str | None = None,
                 timeout: float = 600.0, max_concurrency: int = 8, max_retries: int = 2, **_ignored):
        import openai

        self._openai = openai
        self.parallelism = max_concurrency  # the server batches; we keep this many requests in flight
        base_url = model.url if model.url.endswith("/v1") else model.url + "/v1"
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or os.environ.get("OPENAI_API_KEY") or "none",
                                    timeout=timeout, max_retries=max_retries)
        self.served_model = served_model or self._first_served_model()
        self.model = ModelRef(reference=model.reference, name=self.served_model, kind="endpoint", url=base_url)

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except self._openai.APIConnectionError as e:
            raise EngineError(f"cannot reach the endpoint {self.client.base_url}: {e}") from e
        except self._openai.APIStatusError as e:
            error = EngineError(f"the endpoint {self.client.base_url} answered HTTP {e.status_code}: {e.message}")
            error.status = e.status_code  # a gateway passes the upstream's 4xx on as it came
            raise error from e

    def check(self) -> None:
        """Fail now when the endpoint is unreachable or refuses the key (listing its models is cheap); an endpoint
        that does not list models (HTTP 404/405) passes."""
        try:
            self._call(self.client.models.list)
        except EngineError as e:
            if getattr(e, "status", None) in (None, 401, 403):
                raise

    def _first_served_model(self) -> str:
        models = self._call(self.client.models.list).data
        if not models:
            raise EngineError(f"the endpoint {self.client.base_url} serves no model")
        first = models[0]
        # vLLM reports the window as max_model_len; use it to refuse over-long prompts early.
        self.context_length = getattr(first, "max_model_len", None) or (first.model_extra or {}).get("max_model_len")
        return first.id

    def _request(self, messages, params: GenerationParams, prompt: str | None = None) -> dict:
        body = {"model": self.served_model, "temperature": params.temperature, "top_p": params.top_p}
        if prompt is None:
            body["messages"] = validate_messages(messages)
        else:
            body["prompt"] = prompt
        if params.max_tokens is not None:
            body["max_tokens"] = params.max_tokens
        if params.stop:
            body["stop"] = params.stop
        if params.seed is not None:
            body["seed"] = params.seed
        if params.prompt_logprobs:
            error = EngineError("echo with logprobs: the prompt's log-probabilities are not passed through a gateway; "
                                "ask the upstream server")
            error.status = 400
            raise error
        if params.logprobs is not None and prompt is None:
            body.update(logprobs=True, top_logprobs=params.logprobs)
        elif params.logprobs is not None:
            body["logprobs"] = params.logprobs
        if params.json_schema:
            body["response_format"] = ({"type": "json_object"} if params.json_schema is True else
                                       {"type": "json_schema", "json_schema": {"name": "answer", "strict": True,
                                                                               "schema": params.json_schema}})
        extra = {}
        if params.top_k:
            extra["top_k"] = params.top_k
        if params.repetition_penalty != 1.0:
            extra["repetition_penalty"] = params.repetition_penalty  # vLLM's and taide's name
            extra["repeat_penalty"] = params.repetition_penalty  # llama.cpp's name
        if prompt is not None and "response_format" in body:  # not in OpenAI's completions; vLLM and taide take it
            extra["response_format"] = body.pop("response_format")
        if extra:
            body["extra_body"] = extra
        return body

    def open_stream(self, messages, params=None):
        params = params or GenerationParams()
        started = time.perf_counter()
        response = self._call(self.client.chat.completions.create, **self._request(messages, params), stream=True,
                              stream_options={"include_usage": True})
        # Closing the HTTP stream is how a client cancels: the server stops generating.
        return ChunkStream(self._chunks(response, started), response.close)

    def open_completion(self, prompt, params=None):
        params = params or GenerationParams()
        started = time.perf_counter()
        response = self._call(self.client.completions.create, **self._request(None, params, prompt), stream=True,
                              stream_options={"include_usage": True})
        return ChunkStream(self._chunks(response, started), response.close)

    def _chunks(self, response, started):
        first_at = None
        parts: list[str] = []
        logprobs: list[TokenLogprob] | None = None
        finish, usage = None, None
        try:
            for event in response:
                if event.usage is not None:
                    usage = event.usage
                for choice in event.choices:
                    delta = getattr(choice, "delta", None)  # chat chunks carry a delta, completion chunks text
                    text = (delta.content or "") if delta is not None else (getattr(choice, "text", None) or "")
                    pieces = _logprobs(choice.logprobs)
                    if pieces is not None:
                        logprobs = (logprobs or []) + pieces
                    if text or pieces:
                        first_at = first_at or time.perf_counter()
                        parts.append(text)
                        yield Chunk(text, logprobs=pieces)
                    finish = choice.finish_reason or finish
        except self._openai.APIError as e:
            raise EngineError(f"the endpoint {self.client.base_url} failed mid-answer: {e}") from e
        finally:
            response.close()
        now = time.perf_counter()
        yield Chunk("", Completion(
            text="".join(parts), finish_reason=finish or "stop",
            # Servers that leave usage out of streams: the prompt is uncounted, each piece taken as a token.
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else len(parts),
            time_to_first_token=(first_at or now) - started, elapsed=now - started, logprobs=logprobs))

    def chat(self, messages, params=None):
        # Not streamed: every server reports usage here, while some omit it from streams.
        params = params or GenerationParams()
        started = time.perf_counter()
        response = self._call(self.client.chat.completions.create, **self._request(messages, params))
        elapsed = time.perf_counter() - started
        choice, usage = response.choices[0], response.usage
        return Completion(text=choice.message.content or "", finish_reason=choice.finish_reason or "stop",
                          prompt_tokens=usage.prompt_tokens if usage else 0,
                          completion_tokens=usage.completion_tokens if usage else 0,
                          time_to_first_token=elapsed, elapsed=elapsed, logprobs=_logprobs(choice.logprobs))

    def generate_batch(self, conversations, params=None):
        # The server batches; we only keep several requests in flight.
        with ThreadPoolExecutor(max_workers=self.parallelism) as pool:
            return list(pool.map(lambda m: self.chat(m, params), conversations))

    def close(self) -> None:
        self.client.close()



