"""`taide serve`: the OpenAI API, metrics and a web chat over one engine.

Requests pass a bounded admission line (429 when it is full) and are handed to the engine, whose
decode loop batches everything in flight. A stream's client that goes away cancels its generation.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from taide.chat.presets import SYSTEM_PRESETS, TASKS
from taide.engines import ChunkStream, Engine
from taide.errors import ChatFormatError, ContextLengthError, EngineError, TaideError
from taide.serve.admission import Admission, QueueFull
from taide.serve.metrics import Metrics
from taide.serve.schemas import ChatCompletionRequest, CompletionRequest

STATIC = Path(__file__).parent / "static"
PUBLIC_PATHS = {"/health", "/", "/favicon.ico"}  # the page is static; everything with data needs the key


@dataclass
class ServeConfig:
    served_model_name: str | None = None  # default: the model's name
    api_key: str | None = None
    concurrency: int | None = None  # requests in the engine at once; default: what the engine batches
    max_waiting: int = 64  # requests allowed to wait beyond that; more get 429
    system_prompt: str | None = "auto"  # "auto": the TAIDE prompt for TAIDE-format models; None: never
    default_max_tokens: int | None = None  # None: up to the end of the context window
    retry_after: int = 2  # seconds, in the 429's Retry-After


class APIError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict | None = None):
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers or {}


def _error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class _Server:
    """What the routes share: the engine once loaded, admission, metrics and configuration."""

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
        if self.config.system_prompt == "auto":
            return self.engine.default_system_prompt
        return self.config.system_prompt

    def require_engine(self) -> Engine:
        if self.engine is None:
            message = f"the model failed to load: {self.load_error}" if self.load_error else "the model is still loading"
            raise APIError(503, message, "server_error", code="model_not_ready")
        return self.engine

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


def _engine_error(e: TaideError) -> APIError:
    if isinstance(e, ContextLengthError):
        return APIError(400, str(e), param="messages", code="context_length_exceeded")
    if isinstance(e, ChatFormatError):
        return APIError(400, str(e), param="messages")
    upstream_status = getattr(e, "status", None)  # from an upstream endpoint (gateway mode)
    if upstream_status and 400 <= upstream_status < 500:
        return APIError(upstream_status, str(e))
    return APIError(500, str(e), "server_error")


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


async def _pumped(handle: ChunkStream):
    """The engine's chunks, read by one thread for the whole answer and handed to the event loop; yields
    lists of whatever arrived since the last read. Leaving early cancels the answer."""
    loop = asyncio.get_running_loop()
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
    try:
        while True:
            items = [await queue.get()]
            while not queue.empty():
                items.append(queue.get_nowait())
            finished = items[-1] is done
            if finished:
                items.pop()
            if items:
                yield items
            if finished:
                return
    finally:
        handle.cancel()


def _sse(payload) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def create_app(load: Callable[[], Engine] | Engine, config: ServeConfig | None = None) -> FastAPI:
    """The FastAPI app. ``load`` is an engine or a function that loads one (in the background, so
    `/health` can answer 503 meanwhile)."""
    config = config or ServeConfig()
    owns_engine = not isinstance(load, Engine)  # an engine passed in belongs to the caller, who closes it
    server = _Server(load if owns_engine else (lambda: load), config)

    @asynccontextmanager
    async def lifespan(app):
        server.start_loading()
        yield
        if owns_engine and server.engine is not None:
            server.engine.close()

    app = FastAPI(title="taide", version="1", description="OpenAI-compatible API for taide models", lifespan=lifespan)
    app.state.server = server

    # --- errors in OpenAI's shape ---
    @app.exception_handler(APIError)
    async def _api_error(request, e: APIError):
        return JSONResponse(_error_body(e.message, e.type, e.param, e.code), status_code=e.status, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, e: RequestValidationError):
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

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, e: StarletteHTTPException):
        return JSONResponse(_error_body(str(e.detail), "invalid_request_error"), status_code=e.status_code)

    @app.middleware("http")
    async def _auth_and_count(request: Request, call_next):
        if request.method == "POST" and "json" not in request.headers.get("content-type", ""):
            # The bodies are JSON whatever the client says (curl -d sends a form content type).
            request.scope["headers"] = [(k, v) for k, v in request.scope["headers"] if k != b"content-type"] + [
                (b"content-type", b"application/json")]
        key = config.api_key
        if key and request.url.path not in PUBLIC_PATHS:
            given = request.headers.get("authorization", "")
            token = given[7:] if given.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
            if not secrets.compare_digest(token.encode(), key.encode()):
                return JSONResponse(_error_body("invalid or missing API key: send 'Authorization: Bearer KEY'",
                                                "invalid_request_error", code="invalid_api_key"), status_code=401)
        response = await call_next(request)
        if server.metrics is not None and request.url.path.startswith("/v1/"):
            server.metrics.requests.labels(request.url.path, str(response.status_code)).inc()
        return response

    # --- routes ---
    @app.get("/health", include_in_schema=False)
    async def health():
        if server.engine is None:
            status = {"status": "error", "error": server.load_error} if server.load_error else {"status": "loading"}
            return JSONResponse(status, status_code=503)
        return {"status": "ok", "model": server.model_name}

    @app.get("/metrics", include_in_schema=False)
    async def metrics():
        server.require_engine()
        return Response(server.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    @app.get("/v1/models")
    async def models():
        engine = server.require_engine()
        info = engine.describe()
        return {"object": "list", "data": [{
            "id": server.model_name, "object": "model", "created": int(time.time()), "owned_by": "taide",
            "max_model_len": engine.context_length,
            "taide": {"engine": info["engine"], "reference": info["reference"], "chat_format": info["chat_format"],
                      "system_prompt": server.system_prompt}}]}

    @app.get("/v1/presets")
    async def presets():
        """taide's own: the system-prompt presets and the card's office tasks, for clients and the web page."""
        return {"system_prompts": SYSTEM_PRESETS,
                "tasks": [{"name": t.name, "title": t.title, "instruction": t.instruction,
                           "output_language": t.output_language, "example": t.example} for t in TASKS.values()]}

    async def _open(body, opener, *args) -> ChunkStream:
        """Admit the request and start it on the engine; prompt errors come back as 400 before any work."""
        engine = server.require_engine()
        server.check_model(body.model)
        if body.logprobs:
            raise APIError(400, f"logprobs are not available from the {engine.name} engine", param="logprobs")
        try:
            params = body.params(config.default_max_tokens)
        except EngineError as e:
            raise APIError(400, str(e)) from e
        await server.admit()
        try:
            return await run_in_threadpool(opener, *args, params)
        except TaideError as e:
            server.admission.leave()
            raise _engine_error(e) from e
        except BaseException:
            server.admission.leave()
            raise

    def _finisher(handle: ChunkStream) -> Callable[[], None]:
        done = []

        def finish():
            if not done:  # once, whichever way the request ended
                done.append(True)
                handle.cancel()
                server.admission.leave()
        return finish

    async def _complete(request: Request, handle: ChunkStream, finish):
        """Run a non-streamed answer to the end, cancelling it if the client disconnects meanwhile."""
        async def watch():
            while (await request.receive())["type"] != "http.disconnect":
                pass
            handle.cancel()

        watcher = asyncio.create_task(watch())
        try:
            chunks = await run_in_threadpool(list, handle)
        except TaideError as e:
            raise _engine_error(e) from e
        finally:
            watcher.cancel()
            finish()
        return chunks[-1].completion

    async def _stream(handle: ChunkStream, route: str, head: dict, choice, include_usage: bool, opening: dict | None):
        if opening is not None:
            yield _sse({**head, "choices": [opening]})
        async for chunks in _pumped(handle):
            events = []
            for chunk in chunks:
                if isinstance(chunk, TaideError):
                    events.append(_sse(_error_body(str(chunk), "server_error")))
                    continue
                if chunk.text:
                    events.append(_sse({**head, "choices": [choice(chunk.text, None, False)]}))
                if chunk.completion is not None:
                    events.append(_sse({**head, "choices": [choice("", chunk.completion.finish_reason, False)]}))
                    if include_usage:
                        events.append(_sse({**head, "choices": [], "usage": chunk.completion.usage()}))
                    server.metrics.record(route, chunk.completion)
            yield "".join(events)  # pieces that came while the last write was going out leave together
        yield "data: [DONE]\n\n"

    async def _respond(request: Request, body, handle: ChunkStream, route: str, id_prefix: str,
                       objects: tuple[str, str], choice, opening: dict | None = None):
        """The answer as a server-sent-event stream or as one JSON body. ``choice(text, finish_reason, whole)``
        shapes a choice; ``objects`` names the stream's and the whole answer's object type."""
        finish = _finisher(handle)
        head = {"id": f"{id_prefix}-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": server.model_name}
        if body.stream:
            include = bool(body.stream_options and body.stream_options.include_usage)
            return _CleanStreamingResponse(
                _stream(handle, route, {**head, "object": objects[0]}, choice, include, opening),
                cleanup=finish, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        completion = await _complete(request, handle, finish)
        server.metrics.record(route, completion)
        return {**head, "object": objects[1], "choices": [choice(completion.text, completion.finish_reason, True)],
                "usage": completion.usage()}

    def _chat_choice(text, finish_reason, whole):
        if whole:
            return {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                    "finish_reason": finish_reason}
        return {"index": 0, "delta": {"content": text} if text else {}, "logprobs": None,
                "finish_reason": finish_reason}

    def _text_choice(text, finish_reason, whole):
        return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        messages = [m.model_dump() for m in body.messages]
        system = server.system_prompt
        if system and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": system}] + messages
        handle = await _open(body, server.engine.open_stream, messages)
        opening = {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
        return await _respond(request, body, handle, "chat", "chatcmpl", ("chat.completion.chunk", "chat.completion"),
                              _chat_choice, opening)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        prompt = body.prompt
        if isinstance(prompt, list):
            if len(prompt) != 1:
                raise APIError(400, "prompt: give one prompt per request (a string, or a list of one)", param="prompt")
            prompt = prompt[0]
        handle = await _open(body, server.engine.open_completion, prompt)
        return await _respond(request, body, handle, "completions", "cmpl", ("text_completion", "text_completion"),
                              _text_choice)

    return app


def serve(model: str, engine: str = "auto", host: str = "127.0.0.1", port: int = 8000,
          config: ServeConfig | None = None, log_level: str = "info", **engine_options) -> None:
    """Load ``model`` and serve it until interrupted."""
    import uvicorn

    from taide.engines import load_engine

    app = create_app(lambda: load_engine(model, engine, **engine_options), config)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
