"""A local engine in a process of its own, supervised: what `taide serve` runs, so that no request can take the
server down.

llama.cpp and torch are native code: an assertion in llama.cpp aborts the process (its JSON grammar sampler once
did on a tiny repetition penalty), a bad kernel segfaults, a decode step can hang. In the server's own process any of these ends every user's stream and the
server with them. Here the engine (llama.cpp or transformers, loaded by :func:`taide.engines.load_engine`) runs in
a child process; the server holds a :class:`ProcessEngine`, which speaks the :class:`~taide.engines.Engine`
interface over a pipe. When the child dies (a signal, an abort, an exit) or stops making progress while it has
work (no decode step for ``hang_timeout`` seconds: it is killed), the requests it was serving end with an
:class:`EngineFault` (streams: an error event, then ``[DONE]``), new ones get :class:`EngineUnavailable` (503 with
Retry-After) while a new child loads the model, and the server never stops answering. vLLM splits its engine core
from its API server the same way.

The pipe carries pickled tuples. Parent to child: ``("open", rid, kind, payload, params)``, ``("cancel", rid)``,
``("call", rid, method, args)``. Child to parent: ``("ready", info)``, ``("opened", rid)``, ``("chunk", rid,
chunk)``, ``("done", rid)``, ``("result", rid, value)``, ``("error", rid, error)``, ``("beat", steps)``, and
``("load_failed", message)``.
"""

from __future__ import annotations

import collections
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

from taide.chat.formats import chat_format_for
from taide.engines.base import ChunkStream, Engine
from taide.engines.params import GenerationParams
from taide.errors import ChatFormatError, ContextLengthError, EngineError, ModelError, TaideError

HANG_TIMEOUT = 120.0  # seconds without a decode step while requests wait: the child is taken for hung
LOAD_TIMEOUT = 900.0  # seconds a child may take to load the model
_END = object()


class EngineFault(EngineError):
    """The engine process died or hung while serving this request; the server restarts it."""


class EngineUnavailable(EngineError):
    """The engine process is restarting after a fault: try again in ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


# --- errors across the pipe ---------------------------------------------------------------------------------------

def _portable(error: BaseException) -> tuple:
    if isinstance(error, ContextLengthError):
        return ("ContextLengthError", (error.prompt_tokens, error.max_tokens, error.context_length))
    kind = next((c.__name__ for c in (ChatFormatError, ModelError, EngineError, TaideError) if isinstance(error, c)),
                "EngineError")
    return (kind, (str(error) if isinstance(error, TaideError) else f"{type(error).__name__}: {error}",))


def _rebuilt(portable: tuple) -> TaideError:
    kind, args = portable
    cls = {"ContextLengthError": ContextLengthError, "ChatFormatError": ChatFormatError, "ModelError": ModelError,
           "TaideError": TaideError}.get(kind, EngineError)
    return cls(*args)


# --- the child ----------------------------------------------------------------------------------------------------

def _child(conn) -> None:
    """The engine's process: load what the first message names, then answer the parent until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the server, which closes this process
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # an abort ends it at once, not after a model-sized core file
    reference, engine_name, options, factory, path = conn.recv()
    sys.path[:0] = [p for p in path if p not in sys.path]  # the parent's: a test's factory module imports here too
    send_lock = threading.Lock()

    def send(message) -> None:
        with send_lock:
            conn.send(message)

    try:
        if factory:  # "module:function", for tests that need an engine of their own
            import importlib

            module, function = factory.split(":")
            engine = getattr(importlib.import_module(module), function)(reference, engine_name, **options)
        else:
            from taide.engines import load_engine

            engine = load_engine(reference, engine_name, **options)
    except BaseException as e:  # noqa: BLE001 - said to the parent, which shows it in /health
        send(("load_failed", str(e) if isinstance(e, TaideError) else f"{type(e).__name__}: {e}"))
        return
    fmt = engine.chat_format
    send(("ready", {"name": engine.name, "model": engine.model, "context_length": engine.context_length,
                    "parallelism": engine.parallelism, "pid": os.getpid(),
                    "chat_format": (fmt.name, fmt.hf_template, getattr(fmt, "bos_token", None),
                                    getattr(fmt, "eos_token", None)) if fmt else None}))
    handles: dict[int, ChunkStream] = {}

    def beat() -> None:  # progress, not liveness: the decode steps done so far
        while True:
            time.sleep(1.0)
            try:
                send(("beat", engine.stats().get("steps", 0)))
            except (OSError, ValueError):
                return

    def relay(rid: int, handle: ChunkStream) -> None:
        try:
            try:
                for chunk in handle:
                    send(("chunk", rid, chunk))
            except Exception as e:  # noqa: BLE001 - a failure ends this answer, named, and not the others
                send(("error", rid, _portable(e)))
            else:
                send(("done", rid))
        except (OSError, ValueError):  # the parent went away
            pass
        finally:
            handles.pop(rid, None)

    threading.Thread(target=beat, name="taide-engine-beat", daemon=True).start()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        kind, rid = message[0], message[1]
        if kind == "cancel":
            handle = handles.get(rid)
            if handle is not None:
                handle.cancel()
        elif kind == "open":
            _, _, what, payload, params = message
            try:
                handle = (engine.open_stream if what == "stream" else engine.open_completion)(payload, params)
            except Exception as e:  # noqa: BLE001 - a request's own error: 400 in the server
                send(("error", rid, _portable(e)))
                continue
            handles[rid] = handle
            send(("opened", rid))
            threading.Thread(target=relay, args=(rid, handle), name=f"taide-relay-{rid}", daemon=True).start()
        elif kind == "call":
            _, _, method, args = message
            try:
                send(("result", rid, getattr(engine, method)(*args)))
            except Exception as e:  # noqa: BLE001
                send(("error", rid, _portable(e)))
    for handle in list(handles.values()):
        handle.cancel()
    engine.close()


# --- the parent ---------------------------------------------------------------------------------------------------

@dataclass(eq=False)
class _Pending:
    """A request the child is serving: its chunks as they come, or the reply to an open or a call."""

    rid: int
    replied: threading.Event
    reply: object = None
    chunks: collections.deque = None
    ready: threading.Condition = None
    wake: object = None  # the reader's callback, for a watched stream
    streaming: bool = False


class ProcessEngine(Engine):
    """``load_engine(reference, engine, **options)`` in a child process, restarted when it dies or hangs.

    Construct it where the model would be loaded: it blocks until the first child is ready (raising what the child
    raised when loading fails). ``health()`` says whether it is serving, restarting or has given up."""

    def __init__(self, reference: str, engine: str = "auto", hang_timeout: float = HANG_TIMEOUT,
                 factory: str | None = None, **options):
        self.reference, self.engine_name, self.options, self.factory = str(reference), engine, options, factory
        self.hang_timeout = hang_timeout
        self.restarts = 0
        self.last_fault: str | None = None
        self._lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._next_rid = 0
        self._closed = False
        self._state = "loading"  # then "ready"; "restarting" after a fault until a new child is ready
        self._loading = False  # a child is loading the model
        self._kill_reason: str | None = None  # why the watchdog stopped the child, if it did
        self._process = self._conn = None
        self._steps, self._progress_at = -1, time.monotonic()
        self._ready = threading.Event()
        self._load_error: str | None = None
        self._start()
        self._ready.wait(LOAD_TIMEOUT)
        if self._load_error or self._state != "ready":
            self.close()
            raise ModelError(self._load_error or f"the engine process did not load {reference} in "
                                                 f"{LOAD_TIMEOUT:.0f} s")
        threading.Thread(target=self._watchdog, name="taide-engine-watchdog", daemon=True).start()

    # --- the child's life ---
    def _start(self) -> None:
        """A fresh interpreter (``python -m taide.engines.process FD``: no threads or locks copied into it, and no
        re-import of the caller's main module, as multiprocessing's spawn would do) joined by a socket pair."""
        ours, theirs = socket.socketpair()
        process = subprocess.Popen([sys.executable, "-m", "taide.engines.process", str(theirs.fileno())],
                                   pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        theirs.close()
        conn = Connection(ours.detach())
        conn.send((self.reference, self.engine_name, self.options, self.factory, sys.path))
        self._loading = True
        self._process, self._conn = process, conn
        threading.Thread(target=self._read, args=(process, conn), name="taide-engine-reader", daemon=True).start()

    def _read(self, process, conn) -> None:
        """Route the child's messages; when the pipe ends, the child is gone: fail its requests and restart it."""
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            except Exception:  # noqa: BLE001 - a message that does not unpickle: the child is in no state to trust
                break
            self._dispatch(message)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # the pipe broke but the process lingers: it is of no more use
            process.kill()
            process.wait()
        self._died(process)

    def _dispatch(self, message) -> None:
        kind = message[0]
        if kind == "ready":
            info = message[1]
            self.name, self.model = info["name"], info["model"]
            self.context_length, self.parallelism, self.pid = info["context_length"], info["parallelism"], info["pid"]
            fmt = info["chat_format"]
            self.chat_format = chat_format_for(fmt[0], fmt[1], fmt[2], fmt[3]) if fmt else None
            with self._lock:
                self._state, self._loading = "ready", False
                self._progress_at = time.monotonic()
            self._ready.set()
            return
        if kind == "load_failed":
            self._load_error = message[1]
            self._ready.set()
            return
        if kind == "beat":
            if message[1] != self._steps:
                self._steps, self._progress_at = message[1], time.monotonic()
            return
        rid = message[1]
        with self._lock:
            pending = self._pending.get(rid)
        if pending is None:
            return
        self._progress_at = time.monotonic()
        if kind in ("opened", "result") or (kind == "error" and not pending.streaming):
            pending.reply = message[2] if kind == "result" else _rebuilt(message[2]) if kind == "error" else None
            if kind == "opened":
                pending.streaming = True
            else:
                self._forget(rid)
            pending.replied.set()
        elif kind == "chunk":
            self._push(pending, message[2])
        elif kind in ("done", "error"):
            self._push(pending, _END if kind == "done" else _rebuilt(message[2]), last=True)

    def _push(self, pending: _Pending, item, last: bool = False) -> None:
        with pending.ready:
            pending.chunks.append(item)
            pending.ready.notify_all()
        if last:
            self._forget(pending.rid)
        if pending.wake is not None:
            pending.wake(last)

    def _forget(self, rid: int) -> None:
        with self._lock:
            self._pending.pop(rid, None)

    def _died(self, process) -> None:
        code = process.returncode
        how = (f"was killed by signal {signal.Signals(-code).name}" if code is not None and code < 0
               else f"exited with status {code}")
        with self._lock:
            if self._closed or process is not self._process:
                return
            if self._loading:  # the caller waiting for the load (the constructor, or the restart loop) says it
                self._loading = False
                self._load_error = self._load_error or f"the engine process {how} while loading the model"
                self._ready.set()
                return
            self.last_fault, self._kill_reason = self._kill_reason or f"the engine process {how}", None
            self._state = "restarting"
            pending, self._pending = list(self._pending.values()), {}
        fault = EngineFault(f"{self.last_fault} while answering this request; the server is restarting it")
        for p in pending:
            if p.streaming:
                self._push(p, fault, last=True)
            else:
                p.reply = fault
                p.replied.set()
        threading.Thread(target=self._restart, name="taide-engine-restart", daemon=True).start()

    def _restart(self) -> None:
        delay = 0.5
        while not self._closed:
            self.restarts += 1
            self._ready.clear()
            self._load_error = None
            self._start()
            self._ready.wait(LOAD_TIMEOUT)
            if self._state == "ready":
                return
            time.sleep(delay)  # a child that cannot load any more: keep trying, less and less often
            delay = min(delay * 2, 60.0)

    def _watchdog(self) -> None:
        while not self._closed:
            time.sleep(min(1.0, self.hang_timeout / 4))
            with self._lock:
                busy = self._state == "ready" and any(p.streaming or not p.replied.is_set()
                                                       for p in self._pending.values())
                stuck = busy and time.monotonic() - self._progress_at > self.hang_timeout
                process = self._process
            if stuck and process is not None and process.poll() is None:
                self._kill_reason = (f"the engine made no progress for {self.hang_timeout:g} s with requests "
                                     "waiting, and was stopped")
                process.kill()  # the reader sees the pipe end and restarts it

    # --- requests ---
    def _send(self, message) -> None:
        try:
            self._conn.send(message)
        except (OSError, ValueError) as e:
            raise self._unavailable() from e

    def _unavailable(self) -> EngineUnavailable:
        why = self.last_fault or "the engine process is not running"
        return EngineUnavailable(f"{why}; the server is restarting it", retry_after=5)

    def _new(self, streaming: bool = False) -> _Pending:
        with self._lock:
            if self._state != "ready":
                raise self._unavailable()
            self._next_rid += 1
            if not any(p.streaming or not p.replied.is_set() for p in self._pending.values()):
                self._progress_at = time.monotonic()  # idle until now: the wait for progress starts here
            pending = _Pending(self._next_rid, threading.Event(), chunks=collections.deque(),
                               ready=threading.Condition())
            self._pending[pending.rid] = pending
            return pending

    def _await(self, pending: _Pending):
        """The child's reply; a child that gives none while it makes no progress is left to the watchdog."""
        while not pending.replied.wait(1.0):
            if self._state != "ready" or time.monotonic() - self._progress_at > self.hang_timeout:
                self._forget(pending.rid)
                raise self._unavailable()
        if isinstance(pending.reply, Exception):
            raise pending.reply
        return pending.reply

    def _call(self, method: str, *args):
        pending = self._new()
        self._send(("call", pending.rid, method, args))
        return self._await(pending)

    def _open(self, what: str, payload, params: GenerationParams | None) -> ChunkStream:
        pending = self._new()
        self._send(("open", pending.rid, what, payload, params or GenerationParams()))
        self._await(pending)
        conn = self._conn

        def chunks():
            while True:
                with pending.ready:
                    while not pending.chunks:
                        if pending.wake is not None:
                            break
                        pending.ready.wait()
                    item = pending.chunks.popleft() if pending.chunks else None
                if item is None:
                    yield None  # a watched stream with nothing queued yet
                    continue
                if item is _END:
                    return
                if isinstance(item, Exception):
                    raise item
                yield item

        def cancel():
            if pending.rid in self._pending and conn is self._conn:
                try:
                    conn.send(("cancel", pending.rid))
                except (OSError, ValueError):
                    pass

        def watch(wake):
            pending.wake = wake

        return ChunkStream(chunks(), cancel, watch)

    def open_stream(self, messages, params=None) -> ChunkStream:
        return self._open("stream", messages, params)

    def open_completion(self, prompt, params=None) -> ChunkStream:
        return self._open("completion", prompt, params)

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        return self._call("prompt_ids", messages)

    def tokenize(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self._call("tokenize", text, add_special_tokens)

    def detokenize(self, ids: list[int]) -> str:
        return self._call("detokenize", ids)

    def loglikelihood_many(self, items):
        return self._call("loglikelihood_many", items)

    def loglikelihood(self, context, continuations):
        return self.loglikelihood_many([(context, continuations)])[0]

    def stats(self) -> dict:
        """The child's counters, and this supervisor's: restarts and whether it is serving."""
        try:
            counters = self._call("stats") if self._state == "ready" else {}
        except EngineError:
            counters = {}
        return {**counters, "restarts": self.restarts}

    def health(self) -> dict:
        return {"status": "ok" if self._state == "ready" else "restarting", "restarts": self.restarts,
                "last_fault": self.last_fault, "pid": getattr(self, "pid", None)}

    def describe(self) -> dict:
        return {**super().describe(), "engine": self.name, "process": "isolated"}

    def close(self) -> None:
        with self._lock:
            self._closed = True
            process, conn = self._process, self._conn
        if conn is not None:
            conn.close()  # the child's recv ends: it closes its engine and exits
        if process is not None:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


if __name__ == "__main__":
    _child(Connection(int(sys.argv[1])))
