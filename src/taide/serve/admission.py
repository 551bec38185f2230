"""A bounded waiting line in front of the engine: at most ``concurrency`` requests run, at most
``max_waiting`` wait; anyone beyond that is turned away at once (HTTP 429) instead of piling up."""

from __future__ import annotations

import asyncio


class QueueFull(Exception):
    pass


class Admission:
    def __init__(self, concurrency: int, max_waiting: int):
        self.concurrency, self.max_waiting = concurrency, max_waiting
        self._slots = asyncio.Semaphore(concurrency)
        self.running = 0
        self.waiting = 0

    async def enter(self) -> None:
        if self.running + self.waiting >= self.concurrency + self.max_waiting:
            raise QueueFull()
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1

    def leave(self) -> None:
        self.running -= 1
        self._slots.release()
