"""Executors run :func:`~taide.data.pipeline.process_batch` over batches of raw records and hand back the
results as they finish. They hold at most a few batches per worker in flight, so memory stays bounded
whatever the corpus size. Each worker builds the stages once from the pipeline configuration.

- ``local``: processes on this machine (one per core by default); with one worker, in this process.
- ``ray``: Ray actors, one per worker, on a local Ray or an existing cluster (``address`` or
  ``RAY_ADDRESS``). Workers on other machines need taide installed (or a Ray runtime_env).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from taide.data.base import DataError
from taide.data.pipeline import BatchResult, build_pipeline, process_batch

EXECUTORS = ("local", "ray")
IN_FLIGHT_PER_WORKER = 2


class _Worker:
    """The stages of one worker and its settings."""

    def __init__(self, pipeline: list | None, text_field: str, keep_rejected: bool):
        self.stages = build_pipeline(pipeline)
        self.text_field, self.keep_rejected = text_field, keep_rejected

    def run(self, index: int, raws: list) -> BatchResult:
        return process_batch(index, raws, self.stages, self.text_field, self.keep_rejected)


_worker: _Worker | None = None  # per worker process


def _init_process(*settings) -> None:
    global _worker
    _worker = _Worker(*settings)


def _run_in_process(index: int, raws: list) -> BatchResult:
    return _worker.run(index, raws)


def run_local(batches: Iterable[tuple[int, list]], settings: tuple, workers: int) -> Iterator[BatchResult]:
    if workers <= 1:
        worker = _Worker(*settings)
        for index, raws in batches:
            yield worker.run(index, raws)
        return
    # spawn, not fork: the caller may have threads (a progress bar), which fork does not copy safely.
    with ProcessPoolExecutor(workers, multiprocessing.get_context("spawn"), initializer=_init_process,
                             initargs=settings) as pool:
        pending = set()
        for index, raws in batches:
            pending.add(pool.submit(_run_in_process, index, raws))
            if len(pending) >= workers * IN_FLIGHT_PER_WORKER:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (f.result() for f in done)
        for future in pending:
            yield future.result()


def run_ray(batches: Iterable[tuple[int, list]], settings: tuple, workers: int | None,
            address: str | None = None) -> Iterator[BatchResult]:
    try:
        import ray
    except ImportError as e:
        raise DataError("--executor ray needs Ray: pip install 'ray[data]'") from e
    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS"), include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    workers = workers or int(ray.cluster_resources().get("CPU", 1))
    actor_class = ray.remote(num_cpus=1)(_Worker)
    idle = [actor_class.remote(*settings) for _ in range(workers)]
    running = {}  # object ref -> actor
    for index, raws in batches:
        if not idle:
            (ref,), _ = ray.wait(list(running), num_returns=1)
            idle.append(running.pop(ref))
            yield ray.get(ref)
        actor = idle.pop()
        running[actor.run.remote(index, raws)] = actor
    for ref in running:
        yield ray.get(ref)


def run_batches(batches: Iterable[tuple[int, list]], settings: tuple, executor: str = "local",
                workers: int | None = None, ray_address: str | None = None) -> Iterator[BatchResult]:
    """Results of every batch, in the order they finish."""
    if executor == "local":
        return run_local(batches, settings, workers or os.cpu_count() or 1)
    if executor == "ray":
        return run_ray(batches, settings, workers, ray_address)
    raise DataError(f"executor {executor!r} is not one of {', '.join(EXECUTORS)}")
