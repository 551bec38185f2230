"""Decode loops: one thread owns a local model's compute and serves every caller's requests, so
concurrent conversations are decoded together (batched) instead of one after another.

A caller submits a :class:`TokenRequest` and reads token ids from it; ``cancel()`` from any thread
(a client that went away, a stop string that was reached) frees its place at the next step.
"""

from __future__ import annotations

import queue
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from taide.engines.params import GenerationParams
from taide.errors import EngineError

_END = object()


@dataclass(eq=False)
class TokenRequest:
    prompt_ids: list[int]
    params: GenerationParams
    max_new: int
    tokens: queue.SimpleQueue = field(default_factory=queue.SimpleQueue, repr=False)
    cancelled: threading.Event = field(default_factory=threading.Event, repr=False)
    generated: int = 0  # loop side: tokens emitted so far
    # Scoring instead of generating, then finishing: with score_from, the loop emits the summed
    # log-probability of prompt_ids[score_from:] given what precedes it; with candidates, the list of
    # each candidate token's log-probability as the next token after prompt_ids.
    score_from: int | None = None
    candidates: list[int] | None = None
    # With params.logprobs set, the loop appends each emitted token's (id, log-probability, top alternatives) here
    # before emitting it; with params.prompt_logprobs, it fills prompt_logprobs (one entry per prompt token after
    # the first) before the first token.
    logprobs: list = field(default_factory=list, repr=False)
    prompt_logprobs: list | None = None
    # Set by a reader that must not block (the server's event loop): called on the loop thread after each item is
    # queued, with True for the last (the answer is over); iterating then yields None when nothing is queued
    # instead of waiting.
    wake: Callable[[bool], None] | None = field(default=None, repr=False)

    @property
    def scoring(self) -> bool:
        return self.score_from is not None or self.candidates is not None

    def cancel(self) -> None:
        self.cancelled.set()

    # --- loop side ---
    def emit(self, token_id: int) -> None:
        self.generated += 1
        self._put(token_id)

    def finish(self, error: Exception | None = None) -> None:
        self._put(error if error is not None else _END)

    def _put(self, item) -> None:
        self.tokens.put(item)
        if self.wake is not None:
            self.wake(item is _END or isinstance(item, Exception))

    # --- caller side ---
    def __iter__(self):
        while True:
            if self.wake is None:
                item = self.tokens.get()
            else:
                try:
                    item = self.tokens.get_nowait()
                except queue.Empty:
                    yield None
                    continue
            if item is _END:
                return
            if isinstance(item, Exception):
                raise item
            yield item


def log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float32, copy=False)
    top = logits.max()
    return logits - top - np.log(np.exp(logits - top).sum())


def token_logprob(logprobs: np.ndarray, token: int, k: int) -> tuple[int, float, list[tuple[int, float]]]:
    """``token``'s log-probability and the ``k`` most likely tokens (best first) from a row of log-probabilities."""
    top = []
    if k:
        best = np.argpartition(-logprobs, k - 1)[:k]
        top = [(int(i), float(logprobs[i])) for i in best[np.argsort(-logprobs[best], kind="stable")]]
    return int(token), float(logprobs[token]), top


class DecodeLoop(ABC):
    """The thread and the waiting line; subclasses decide how requests are batched in :meth:`step`."""

    def __init__(self, name: str):
        self.name = name
        self._pending: deque[TokenRequest] = deque()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.stats = {"submitted": 0, "finished": 0, "cancelled": 0, "failed": 0, "active": 0, "waiting": 0,
                      "steps": 0, "tokens": 0}

    def submit(self, *requests: TokenRequest) -> None:
        """Queue requests; several given at once are queued together, so they can share a batch."""
        with self._wake:
            if self._closed:
                raise EngineError(f"the {self.name} engine is closed")
            self._pending.extend(requests)
            self.stats["submitted"] += len(requests)
            self.stats["waiting"] = len(self._pending)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"taide-{self.name}-decode", daemon=True)
                self._thread.start()
            self._wake.notify()

    def take(self, limit: int, wait: bool) -> list[TokenRequest]:
        """Up to ``limit`` waiting requests (cancelled ones are dropped); with ``wait``, block until one comes."""
        with self._wake:
            while wait and not self._pending and not self._closed:
                self._wake.wait()
            taken = []
            while self._pending and len(taken) < limit:
                request = self._pending.popleft()
                if request.cancelled.is_set():
                    self.stats["cancelled"] += 1
                    request.finish()
                else:
                    taken.append(request)
            self.stats["waiting"] = len(self._pending)
            return taken

    def peek(self) -> TokenRequest | None:
        with self._wake:
            return self._pending[0] if self._pending else None

    def put_back(self, request: TokenRequest) -> None:
        with self._wake:
            self._pending.appendleft(request)
            self.stats["waiting"] = len(self._pending)

    def retire(self, request: TokenRequest, outcome: str, error: Exception | None = None) -> None:
        """A request leaves the batch; ``outcome`` is "finished" (end of turn or token limit), "cancelled"
        or "failed"."""
        self.stats[outcome] += 1
        request.finish(error)

    @property
    def closed(self) -> bool:
        return self._closed

    def _run(self) -> None:
        while not self._closed:
            try:
                self.step()
            except Exception as e:  # a failed step must not leave callers waiting forever
                self.fail_all(EngineError(f"the {self.name} engine failed while decoding: {e}"))

    @abstractmethod
    def step(self) -> None:
        """Admit waiting requests and advance the batch; called in a loop on the decode thread."""

    @abstractmethod
    def fail_all(self, error: Exception) -> None:
        """Fail every request in the batch (used when a step raised)."""

    def close(self) -> None:
        with self._wake:
            self._closed = True
            pending, self._pending = list(self._pending), deque()
            self._wake.notify_all()
        for request in pending:
            request.finish(EngineError(f"the {self.name} engine was closed"))
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
