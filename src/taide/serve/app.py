"""`taide serve`: the OpenAI API, metrics and a web chat over one engine.

Requests pass a bounded admission line (429 when it is full) and are handed to the engine, whose
decode loop batches everything in flight. A stream's client that goes away cancels its generation.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException

from taide.chat.presets import SYSTEM_PRESETS, TASKS, messages_with_system, resolve_system_prompt
from taide.engines import ChunkStream, Completion, Engine, GenerationParams
from taide.engines.params import TokenLogprob
from taide.engines.process import EngineFault, EngineUnavailable, ProcessEngine
from taide.errors import ChatFormatError, ContextLengthError, EngineError, TaideError
from taide.serve.admission import Admission, QueueFull
from taide.serve.metrics import Metrics
from taide.serve.schemas import (LIMITS, ChatCompletionRequest, CompletionRequest, DetokenizeRequest,
                                 ErrorResponse, TokenizeRequest)

STATIC = Path(__file__).parent / "static"
PUBLIC_PATHS = {"/health", "/", "/favicon.ico"}  # the page is static; everything with data needs the key


@dataclass
class ServeConfig:
    """``taide serve``. ``create_app`` reads the fields after ``n_ctx``; :func:`run_serve` all of them."""
    model: str | None = None  # None: models.default_model(), the newest build (else the embedded SmolLM2)
    engine: str = "auto"
    host: str = "127.0.0.1"
    port: int = 8000
    upstream: str | None = None  # gateway mode: serve this OpenAI-compatible endpoint instead of ``model``
    upstream_api_key: str | None = None
    chat_format: str | None = None
    n_ctx: int | None = None
    served_model_name: str | None = None  # default: the model's name
    api_key: str | None = None
    concurrency: int | None = None  # requests in the engine at once; default: what the engine batches
    max_waiting: int = 64  # requests allowed to wait beyond that; more get 429
    # For requests without a system message: "auto" (the TAIDE prompt for TAIDE-format models), "none", a preset or text
    system_prompt: str | None = "auto"
    # Tokens an answer may have when the request gives no max_tokens (None: up to the end of the context window).
    default_max_tokens: int | None = 512
    retry_after: int = 2  # seconds, in the 429's Retry-After
    # A local model runs in a child process the server supervises (engines/process.py): a crash or a hang of the
    # engine costs only the requests it was serving. False: in the server's own process (debugging).
    isolate: bool = True
    engine_timeout: float = 120.0  # seconds without a decode step while requests wait: the engine is restarted
    # Least time between two writes of a local engine's stream: tokens decoded meanwhile leave together, each still
    # its own event. 0: every token at once. Neither the first token nor the last waits.
    stream_interval: float = 0.05

    def __post_init__(self):
        if not 0 <= self.stream_interval <= 1:
            raise TaideError(f"stream_interval must be between 0 and 1 second, not {self.stream_interval}")
        if self.default_max_tokens is not None and self.default_max_tokens < 1:
            raise TaideError(f"default_max_tokens must be at least 1 (or None), not {self.default_max_tokens}")
        if self.engine_timeout <= 0:
            raise TaideError(f"engine_timeout must be more than 0 seconds, not {self.engine_timeout}")


class APIError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict | None = None):
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers or {}


def _error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _engine_error(e: TaideError, engine: Engine, param: str = "messages") -> APIError:
    if isinstance(e, EngineUnavailable):
        return APIError(503, str(e), "server_error", code="engine_restarting",
                        headers={"Retry-After": str(e.retry_after)})
    if isinstance(e, EngineFault):
        return APIError(500, str(e), "server_error", code="engine_fault")
    if isinstance(e, ContextLengthError):
        return APIError(400, e.message_for(param), param=param, code="context_length_exceeded")
    if isinstance(e, ChatFormatError):
        return APIError(400, str(e), param="messages")
    upstream_status = getattr(e, "status", None)  # from an upstream endpoint (gateway mode)
    if upstream_status and 400 <= upstream_status < 500:
        return APIError(upstream_status, str(e))
    if not engine.model.is_local:  # the upstream failed or cannot be reached
        return APIError(502, str(e), "server_error", code="upstream_error")
    # A local engine raises when it opens a request only for what the request asks (an empty prompt, ...).
    return APIError(400, str(e))


class _CleanStreamingResponse(StreamingResponse):
    """Runs ``cleanup`` however the response ends, even when the client left before the body began."""

    def __init__(self, content, cleanup: Callable[[], None], **kwargs):
        super().__init__(content, **kwargs)
        self._cleanup = cleanup

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._cleanup()


async def _pumped(handle: ChunkStream, interval: float):
    """The engine's chunks on the event loop; yields lists of whatever arrived since the last read. A local engine's
    stream is read without blocking, at most once per ``interval`` seconds; any other (an upstream's HTTP stream) is
    read by a thread of its own. Leaving early cancels the answer."""
    loop = asyncio.get_running_loop()
    read = _read_in_thread(handle, loop) if handle.watch is None else _read_watched(handle, loop, interval)
    try:
        while True:
            items, finished = await read()
            if items:
                yield items
            if finished:
                return
    finally:
        handle.cancel()


def _read_watched(handle: ChunkStream, loop, interval: float):
    """For a local engine's stream: the loop reads it itself, woken by the decode thread only while it waits for a
    token. After a read it lets ``interval`` pass before the next, so tokens decoded meanwhile leave in one write
    (each still its own event); the answer's end cuts the pause short, so the last token never waits. On a machine
    whose cores all decode, each write and wake-up (the server's and the client's) takes time from the decode."""
    ready = asyncio.Event()
    waiting = False  # whether the loop waits for a token; otherwise only the answer's end wakes it
    next_read = 0.0  # loop time: the first token leaves at once

    def wake(last: bool):
        nonlocal waiting
        if not (waiting or last):
            return
        waiting = False
        try:
            loop.call_soon_threadsafe(ready.set)
        except RuntimeError:  # the event loop has closed: nobody is listening any more
            handle.cancel()

    async def read():
        nonlocal waiting, next_read
        pause = next_read - loop.time()
        if pause > 0:
            timer = loop.call_later(pause, ready.set)
            await ready.wait()
            timer.cancel()
        while True:
            ready.clear()
            waiting = True  # before draining: a token queued from here on wakes the loop
            items = []
            try:
                for chunk in handle:
                    if chunk is None:
                        break
                    items.append(chunk)
                else:
                    return items, True
            except TaideError as e:
                return [*items, e], True
            if items:
                waiting = False
                ready.clear()
                next_read = loop.time() + interval
                return items, False
            await ready.wait()

    handle.watch(wake)
    return read


def _read_in_thread(handle: ChunkStream, loop):
    """For streams that block: one thread reads the whole answer and hands chunks to the event loop."""
    queue: asyncio.Queue = asyncio.Queue()
    done = object()

    def hand_over(item):
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the event loop has closed: nobody is listening any more
            handle.cancel()

    def pump():
        try:
            for chunk in handle:
                hand_over(chunk)
        except TaideError as e:
            hand_over(e)
        finally:
            hand_over(done)

    threading.Thread(target=pump, name="taide-answer", daemon=True).start()

    async def read():
        items = [await queue.get()]
        while not queue.empty():
            items.append(queue.get_nowait())
        finished = items[-1] is done
        if finished:
            items.pop()
        return items, finished

    return read


def _usage(completions: list[Completion]) -> dict:
    prompt, answer = sum(c.prompt_tokens for c in completions), sum(c.completion_tokens for c in completions)
    return {"prompt_tokens": prompt, "completion_tokens": answer, "total_tokens": prompt + answer}


def _token_json(entry: TokenLogprob) -> dict:
    return {"token": entry.token, "logprob": entry.logprob, "bytes": entry.bytes}


class ChatShape:
    """Choices of /v1/chat/completions: a message, or deltas; log-probabilities as ``logprobs.content``."""

    route, id_prefix, object, chunk_object = "chat", "chatcmpl", "chat.completion", "chat.completion.chunk"

    def __init__(self, logprobs: bool):
        self.logprobs = logprobs

    def _logprobs(self, entries: list[TokenLogprob] | None) -> dict | None:
        if not self.logprobs:
            return None
        return {"content": [{**_token_json(e), "top_logprobs": [_token_json(t) for t in e.top]}
                            for e in entries or [] if not e.ends_turn], "refusal": None}

    def opening(self, index: int) -> dict:
        return {"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}

    def piece(self, index: int, chunk) -> dict | None:
        if not chunk.text and not (self.logprobs and any(not e.ends_turn for e in chunk.logprobs or [])):
            return None
        return {"index": index, "delta": {"content": chunk.text} if chunk.text else {},
                "logprobs": self._logprobs(chunk.logprobs), "finish_reason": None}

    def end(self, index: int, completion: Completion) -> dict:
        return {"index": index, "delta": {}, "logprobs": None, "finish_reason": completion.finish_reason}

    def whole(self, index: int, completion: Completion) -> dict:
        return {"index": index, "message": {"role": "assistant", "content": completion.text},
                "logprobs": self._logprobs(completion.logprobs), "finish_reason": completion.finish_reason}


class CompletionShape:
    """Choices of /v1/completions: text, with the prompt first when echoed; log-probabilities as ``tokens``,
    ``token_logprobs``, ``top_logprobs`` (the chosen token among them, as vLLM does) and ``text_offset`` (characters
    into the choice's text)."""

    route, id_prefix, object, chunk_object = "completions", "cmpl", "text_completion", "text_completion"

    def __init__(self, echoed: list[str | None], logprobs: bool):
        self.echoed, self.logprobs = echoed, logprobs
        self._bytes = [b""] * len(echoed)  # each choice's text so far, as the tokens' bytes: where the next one starts

    def _shaped(self, index: int, entries: list[TokenLogprob]) -> dict | None:
        if not self.logprobs:
            return None
        out = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        for e in entries:
            out["text_offset"].append(len(self._bytes[index].decode("utf-8", errors="ignore")))
            self._bytes[index] += bytes(e.bytes)
            out["tokens"].append(e.token)
            out["token_logprobs"].append(e.logprob)
            out["top_logprobs"].append(None if e.logprob is None else
                                       {**{t.token: t.logprob for t in e.top}, e.token: e.logprob})
        return out

    def _start(self, index: int, prompt_logprobs) -> tuple[str, list[TokenLogprob]]:
        """The echoed prompt and its tokens' log-probabilities, or nothing."""
        echo = self.echoed[index]
        if echo is None:
            return "", []
        if not self.logprobs:
            self._bytes[index] = echo.encode()
        return echo, list(prompt_logprobs or [])

    def opening(self, index: int) -> dict | None:
        if self.echoed[index] is None or self.logprobs:  # with log-probabilities the echo leaves with the first piece
            return None
        echo, _ = self._start(index, None)
        return {"index": index, "text": echo, "logprobs": None, "finish_reason": None}

    def piece(self, index: int, chunk) -> dict | None:
        text, entries = chunk.text, list(chunk.logprobs or [])
        if chunk.prompt_logprobs is not None:
            echo, prompt = self._start(index, chunk.prompt_logprobs)
            text, entries = echo + text, prompt + entries
        if not text and not (self.logprobs and entries):
            return None
        return {"index": index, "text": text, "logprobs": self._shaped(index, entries), "finish_reason": None}

    def end(self, index: int, completion: Completion) -> dict:
        return {"index": index, "text": "", "logprobs": None, "finish_reason": completion.finish_reason}

    def whole(self, index: int, completion: Completion) -> dict:
        echo, prompt = self._start(index, completion.prompt_logprobs)
        return {"index": index, "text": echo + completion.text,
                "logprobs": self._shaped(index, prompt + (completion.logprobs or [])),
                "finish_reason": completion.finish_reason}


def _sse(payload) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


class _Server:
    """The app's state, which every route reads: the engine once loaded, admission, metrics and configuration; and
    the steps every answer goes through (admit, start, stream or complete, leave)."""

    def __init__(self, load: Callable[[], Engine], config: ServeConfig):
        self.load, self.config = load, config
        self.engine: Engine | None = None
        self.load_error: str | None = None
        self.admission: Admission | None = None
        self.metrics: Metrics | None = None

    def start_loading(self) -> None:
        def run():
            try:
                engine = self.load()
            except Exception as e:  # shown by /health; the process stays up to say why
                self.load_error = str(e)
                return
            concurrency = self.config.concurrency or getattr(engine, "parallelism", 1)
            self.admission = Admission(concurrency, self.config.max_waiting)
            self.metrics = Metrics(engine.stats, self.admission)
            self.engine = engine

        threading.Thread(target=run, name="taide-load", daemon=True).start()

    @property
    def model_name(self) -> str:
        return self.config.served_model_name or self.engine.model.name

    @property
    def system_prompt(self) -> str | None:
        return resolve_system_prompt(self.config.system_prompt, self.engine.default_system_prompt)

    def require_engine(self) -> Engine:
        """The engine, or 503 while it loads (or when it failed to), or while it restarts after a fault: every route
        that needs it asks here first."""
        if self.engine is None:
            message = f"the model failed to load: {self.load_error}" if self.load_error else "the model is still loading"
            raise APIError(503, message, "server_error", code="model_not_ready",
                           headers={"Retry-After": str(self.config.retry_after)})
        health = self.engine_health()
        if health["status"] != "ok":
            raise APIError(503, f"{health['last_fault']}; the engine is restarting", "server_error",
                           code="engine_restarting", headers={"Retry-After": "5"})
        return self.engine

    def engine_health(self) -> dict:
        return self.engine.health() if isinstance(self.engine, ProcessEngine) else {"status": "ok"}

    def require_local_engine(self) -> Engine:
        """The engine, when it has the model's tokenizer (a local model, in this process or its own)."""
        engine = self.require_engine()
        if not engine.model.is_local:
            raise APIError(400, f"the {engine.name} engine has no tokenizer here; ask the upstream server")
        return engine

    @property
    def body_limit(self) -> int:
        """The largest request body, in bytes: 64 bytes a token of the context window (more text than any prompt
        that fits it) and 64 KiB for the rest of the request (a JSON schema, say); 1 MiB until the model is loaded."""
        context = getattr(self.engine, "context_length", None) if self.engine is not None else None
        return 64 * context + 65536 if context else 1 << 20

    def check_model(self, requested: str | None) -> None:
        if requested and requested != self.model_name:
            raise APIError(404, f"model '{requested}' is not served here; this server serves '{self.model_name}'",
                           param="model", code="model_not_found")

    async def admit(self) -> None:
        try:
            await self.admission.enter()
        except QueueFull:
            raise APIError(429, f"the server is busy: {self.admission.running} requests running and "
                                f"{self.admission.waiting} waiting (limit {self.admission.max_waiting}); retry later",
                           "rate_limit_error", code="queue_full",
                           headers={"Retry-After": str(self.config.retry_after)}) from None

    async def open(self, body, starts: list[Callable[[GenerationParams], ChunkStream]]) -> list[ChunkStream]:
        """Admit the request and start its answers on the engine; prompt errors come back as 400 before any work."""
        engine = self.require_engine()
        self.check_model(body.model)
        try:
            params = body.params(self.config.default_max_tokens)
        except EngineError as e:
            raise APIError(400, str(e)) from e
        await self.admit()
        handles: list[ChunkStream] = []
        try:
            for start in starts:
                handles.append(await run_in_threadpool(start, params))
            return handles
        except BaseException as e:
            for handle in handles:
                handle.cancel()
            self.admission.leave()
            if isinstance(e, TaideError):
                raise _engine_error(e, engine, "prompt" if isinstance(body, CompletionRequest) else "messages") from e
            raise

    def _finisher(self, handles: list[ChunkStream]) -> Callable[[], None]:
        done = []

        def finish():
            if not done:  # once, whichever way the request ended
                done.append(True)
                for handle in handles:
                    handle.cancel()
                self.admission.leave()
        return finish

    async def _complete(self, request: Request, handles: list[ChunkStream], finish) -> list[Completion]:
        """Run non-streamed answers to the end, cancelling them if the client disconnects meanwhile."""
        async def watch():
            while (await request.receive())["type"] != "http.disconnect":
                pass
            for handle in handles:
                handle.cancel()

        watcher = asyncio.create_task(watch())
        try:
            return await run_in_threadpool(lambda: [list(handle)[-1].completion for handle in handles])
        except (EngineFault, EngineUnavailable) as e:
            raise _engine_error(e, self.engine) from e
        except TaideError as e:
            raise APIError(502 if not self.engine.model.is_local else 500, str(e), "server_error") from e
        finally:
            watcher.cancel()
            finish()

    async def _stream(self, handles: list[ChunkStream], shape, head: dict, include_usage: bool):
        """The choices one after another (they were all started together, so the engine batches them)."""
        completions = []
        for index, handle in enumerate(handles):
            opening = shape.opening(index)
            if opening is not None:
                yield _sse({**head, "choices": [opening]})
            async for chunks in _pumped(handle, self.config.stream_interval):
                events = []
                for chunk in chunks:
                    if isinstance(chunk, TaideError):
                        events.append(_sse(_error_body(str(chunk), "server_error")))
                        continue
                    piece = shape.piece(index, chunk)
                    if piece is not None:
                        events.append(_sse({**head, "choices": [piece]}))
                    if chunk.completion is not None:
                        events.append(_sse({**head, "choices": [shape.end(index, chunk.completion)]}))
                        completions.append(chunk.completion)
                        self.metrics.record(shape.route, chunk.completion)
                yield "".join(events)  # pieces that came while the last write was going out leave together
        if include_usage:
            yield _sse({**head, "choices": [], "usage": _usage(completions)})
        yield "data: [DONE]\n\n"

    async def respond(self, request: Request, body, handles: list[ChunkStream], shape):
        """The answers as a server-sent-event stream or as one JSON body, shaped by ``shape``."""
        finish = self._finisher(handles)
        head = {"id": f"{shape.id_prefix}-{uuid.uuid4().hex[:24]}", "created": int(time.time()),
                "model": self.model_name}
        if body.stream:
            include = bool(body.stream_options and body.stream_options.include_usage)
            return _CleanStreamingResponse(self._stream(handles, shape, {**head, "object": shape.chunk_object}, include),
                                           cleanup=finish, media_type="text/event-stream",
                                           headers={"Cache-Control": "no-cache"})
        completions = await self._complete(request, handles, finish)
        for completion in completions:
            self.metrics.record(shape.route, completion)
        return {**head, "object": shape.object, "choices": [shape.whole(i, c) for i, c in enumerate(completions)],
                "usage": _usage(completions)}


# ------------------------------------------------------------------------------------------------ errors

async def _api_error(request, e: APIError):
    return JSONResponse(_error_body(e.message, e.type, e.param, e.code), status_code=e.status, headers=e.headers)


async def _invalid(request, e: RequestValidationError):
    """A body that is not JSON or does not fit the schema: 400 naming the field (never FastAPI's 422)."""
    first = e.errors()[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        where = f" at character {loc[0]}" if loc else ""
        detail = (first.get("ctx") or {}).get("error", first.get("msg"))
        return JSONResponse(_error_body(f"the request body is not valid JSON{where}: {detail}",
                                        "invalid_request_error"), status_code=400)
    param = ".".join(loc) or None
    message = f"{param}: {first.get('msg')}" if param else first.get("msg", "invalid request")
    return JSONResponse(_error_body(message, "invalid_request_error", param), status_code=400)


async def _http_error(request, e: StarletteHTTPException):
    return JSONResponse(_error_body(str(e.detail), "invalid_request_error"), status_code=e.status_code)


async def _bounded_body(receive, limit: int):
    """Read a body of unknown length, stopping once it passes ``limit`` bytes: (whether it did, a ``receive`` that
    gives the messages read first, then the connection's own)."""
    read, size = collections.deque(), 0
    while True:
        message = await receive()
        read.append(message)
        if message["type"] != "http.request":
            break
        size += len(message.get("body", b""))
        if size > limit or not message.get("more_body"):
            break

    async def replay():
        return read.popleft() if read else await receive()

    return size > limit, replay


class _AuthAndCount:
    """Checks the API key, refuses a body larger than the server takes (413, before reading more of it), treats every
    POST body as JSON and counts `/v1/` responses by status. Plain ASGI, not
    Starlette's BaseHTTPMiddleware, which relays every streamed chunk (one per token) through a task and a memory
    stream."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        server: _Server = scope["app"].state.server
        headers = scope["headers"]
        if scope["method"] == "POST" and b"json" not in dict(headers).get(b"content-type", b""):
            # The bodies are JSON whatever the client says (curl -d sends a form content type).
            scope = {**scope, "headers": [(k, v) for k, v in headers if k != b"content-type"]
                     + [(b"content-type", b"application/json")]}
        path, key = scope["path"], server.config.api_key
        if key and path not in PUBLIC_PATHS:
            given = Headers(scope=scope)
            auth = given.get("authorization", "")
            token = auth[7:] if auth.lower().startswith("bearer ") else given.get("x-api-key", "")
            if not secrets.compare_digest(token.encode(), key.encode()):
                response = JSONResponse(_error_body("invalid or missing API key: send 'Authorization: Bearer KEY'",
                                                    "invalid_request_error", code="invalid_api_key"), status_code=401)
                return await response(scope, receive, send)
        if scope["method"] in ("POST", "PUT", "PATCH"):
            limit = server.body_limit
            length = Headers(scope=scope).get("content-length")
            too_long = length is not None and (not length.isdigit() or int(length) > limit)
            if not too_long and length is None:  # a chunked body: read it, at most the limit, before anything else
                too_long, receive = await _bounded_body(receive, limit)
            if too_long:
                response = JSONResponse(_error_body(
                    f"the request body is larger than {limit:,} bytes, the most this server takes (64 bytes for each "
                    "token of the model's context window, and 64 KiB)", "invalid_request_error",
                    code="request_too_large"), status_code=413)
                return await response(scope, receive, send)
        if server.metrics is None or not path.startswith("/v1/"):
            return await self.app(scope, receive, send)

        async def counted(message):
            if message["type"] == "http.response.start":
                server.metrics.requests.labels(path, str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counted)


# ------------------------------------------------------------------------------------------------ routes

router = APIRouter()

# Every status a client can meet, in OpenAI's error shape (FastAPI's own 422 is never sent: see _invalid).
_ERRORS = {400: "invalid request (the message names the field)", 401: "missing or wrong API key",
           404: "another model than the one served", 413: "the request body is larger than the server takes",
           429: "busy: retry after Retry-After seconds",
           500: "the engine process failed while answering (code engine_fault); the server restarts it",
           502: "the upstream endpoint failed (gateway mode)",
           503: "the model is still loading, failed to load, or the engine is restarting: retry after Retry-After"}
DOCUMENTED = {status: {"model": ErrorResponse, "description": what} for status, what in _ERRORS.items()}
ANSWERS = {**DOCUMENTED, 200: {"description": "the answer; a text/event-stream of chunks with stream: true",
                               "content": {"text/event-stream": {}}}}


def _server(request: Request) -> _Server:
    return request.app.state.server


@router.get("/health", include_in_schema=False)
async def health(request: Request):
    server = _server(request)
    if server.engine is None:
        status = {"status": "error", "error": server.load_error} if server.load_error else {"status": "loading"}
        return JSONResponse(status, status_code=503)
    health = {"model": server.model_name, **server.engine_health()}
    if health["status"] != "ok":  # restarting after an engine fault: the server itself answers
        return JSONResponse(health, status_code=503, headers={"Retry-After": "5"})
    return health


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request):
    server = _server(request)
    server.require_engine()
    return Response(server.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/", include_in_schema=False)
async def page():
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")


@router.get("/v1/models", responses=DOCUMENTED)
async def models(request: Request):
    server = _server(request)
    engine = server.require_engine()
    info = engine.describe()
    return {"object": "list", "data": [{
        "id": server.model_name, "object": "model", "created": int(time.time()), "owned_by": "taide",
        "max_model_len": engine.context_length,
        "taide": {"engine": info["engine"], "reference": info["reference"], "chat_format": info["chat_format"],
                  "system_prompt": server.system_prompt, "default_max_tokens": server.config.default_max_tokens,
                  "limits": {**LIMITS, "body_bytes": server.body_limit}}}]}


@router.get("/v1/presets", responses=DOCUMENTED)
async def presets():
    """taide's own: the system-prompt presets and the card's office tasks, for clients and the web page."""
    return {"system_prompts": SYSTEM_PRESETS,
            "tasks": [{"name": t.name, "title": t.title, "instruction": t.instruction,
                       "output_language": t.output_language, "example": t.example} for t in TASKS.values()]}


@router.post("/v1/chat/completions", responses=ANSWERS)
async def chat_completions(body: ChatCompletionRequest, request: Request):
    server = _server(request)
    engine = server.require_engine()  # before anything reads the engine: 503 while it loads
    messages = messages_with_system([m.model_dump() for m in body.messages], server.system_prompt)
    handles = await server.open(body, [functools.partial(engine.open_stream, messages)])
    return await server.respond(request, body, handles, ChatShape(body.logprobs))


@router.post("/v1/completions", responses=ANSWERS)
async def completions(body: CompletionRequest, request: Request):
    server = _server(request)
    engine = server.require_engine()
    prompts = body.prompts()
    echoed = [None] * len(prompts)
    if body.echo:
        try:
            echoed = [p if isinstance(p, str) else engine.detokenize(p) for p in prompts]
        except EngineError as e:
            raise APIError(400, str(e), param="prompt") from e
    handles = await server.open(body, [functools.partial(engine.open_completion, p) for p in prompts])
    return await server.respond(request, body, handles, CompletionShape(echoed, body.logprobs is not None))


# vLLM's tokenizer routes: lm-evaluation-harness's tokenizer_backend=remote counts tokens with them.
@router.post("/tokenize", responses=DOCUMENTED)
async def tokenize(body: TokenizeRequest, request: Request):
    server = _server(request)
    engine = server.require_local_engine()
    server.check_model(body.model)
    if (body.prompt is None) == (body.messages is None):
        raise APIError(400, "give either prompt or messages", param="prompt")
    try:
        if body.messages is not None:
            tokens = engine.prompt_ids([m.model_dump() for m in body.messages])
        else:
            tokens = engine.tokenize(body.prompt, body.add_special_tokens)
    except TaideError as e:
        raise _engine_error(e, engine, "messages" if body.messages is not None else "prompt") from e
    return {"count": len(tokens), "max_model_len": engine.context_length, "tokens": tokens}


@router.post("/detokenize", responses=DOCUMENTED)
async def detokenize(body: DetokenizeRequest, request: Request):
    server = _server(request)
    engine = server.require_local_engine()
    server.check_model(body.model)
    try:
        return {"prompt": engine.detokenize(body.tokens)}
    except EngineError as e:
        raise APIError(400, str(e), param="tokens") from e


@router.get("/tokenizer_info", responses=DOCUMENTED)
async def tokenizer_info(request: Request):
    engine = _server(request).require_local_engine()
    return {"tokenizer_class": engine.name, "bos_token": engine.model.bos_token, "eos_token": engine.model.eos_token,
            "pad_token": None, "model_max_length": engine.context_length,
            "chat_template": engine.chat_format.hf_template if engine.chat_format else None}


def _openapi(app: FastAPI) -> dict:
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for path in schema["paths"].values():
            for operation in path.values():
                operation["responses"].pop("422", None)  # bad bodies answer 400 (see _invalid)
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = schema
    return app.openapi_schema


def create_app(load: Callable[[], Engine] | Engine, config: ServeConfig | None = None) -> FastAPI:
    """The FastAPI app. ``load`` is an engine or a function that loads one (in the background, so
    `/health` can answer 503 meanwhile)."""
    owns_engine = not isinstance(load, Engine)  # an engine passed in belongs to the caller, who closes it
    server = _Server(load if owns_engine else (lambda: load), config or ServeConfig())

    @asynccontextmanager
    async def lifespan(app):
        server.start_loading()
        yield
        if owns_engine and server.engine is not None:
            server.engine.close()

    app = FastAPI(title="taide", version="1", description="OpenAI-compatible API for taide models", lifespan=lifespan)
    app.state.server = server
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(_AuthAndCount)
    app.include_router(router)
    app.openapi = functools.partial(_openapi, app)
    return app


def run_serve(config: ServeConfig, log_level: str = "info") -> None:
    """Load the model (or connect to the upstream) and serve it until interrupted."""
    import uvicorn

    from taide.engines import load_engine
    from taide.models import default_model

    target = config.upstream or config.model or default_model()

    def load() -> Engine:
        options = {"chat_format": config.chat_format, "n_ctx": config.n_ctx}
        if config.upstream is None and config.isolate:
            return ProcessEngine(target, config.engine, hang_timeout=config.engine_timeout,
                                 **{k: v for k, v in options.items() if v is not None})
        return load_engine(target, config.engine, api_key=config.upstream_api_key, **options)

    app = create_app(load, config)
    uvicorn.run(app, host=config.host, port=config.port, log_level=log_level)
