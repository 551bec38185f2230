"""Engines that fail on purpose, for the server's fault tests: loaded in the engine's child process by
``ProcessEngine(factory="engine_faults:hanging")``."""

from __future__ import annotations

import time

HANG_SEED = 424242  # a request with this seed stalls the decode loop, as a hung native call would


def hanging(reference: str, engine: str, **options):
    """The real engine, whose decode step never returns once a request with HANG_SEED is in its batch."""
    from taide.engines import load_engine

    loaded = load_engine(reference, engine, **options)
    step = loaded.loop.step

    def stalling_step():
        if any(slot.request.params.seed == HANG_SEED for slot in loaded.loop.slots):
            time.sleep(3600)
        step()

    loaded.loop.step = stalling_step
    return loaded
