"""Executors run :func:`~taide.data.pipeline.process_batch` over batches of raw records and hand back the
results as they finish. They hold at most a few batches per worker in flight, so memory stays bounded
whatever the corpus size. Each worker builds the stages once from the pipeline configuration.

- ``local``: processes on this machine (one per core by default); with one worker, in this process.
- ``ray``: Ray actors, one per worker, on the cluster the caller names (``address``, else ``RAY_ADDRESS``), or on
  a Ray of its own started on this machine and shut down afterwards. Workers on other machines need taide
  installed (or a Ray runtime_env).
"""

from __future__ import annotations

import multiprocessing
import os
import socket
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager

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


RAY_ANSWER_S = 5.0  # how long a named Ray cluster may take to accept a connection
RAY_OPTIONS = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}


def _check_cluster(address: str, origin: str) -> None:
    """Raise DataError, within RAY_ANSWER_S, when nothing accepts a connection at the cluster ``address``
    (``origin`` says where it came from): ray.init itself retries a dead cluster for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=RAY_ANSWER_S).close()
    except (OSError, ValueError) as e:
        why = "not HOST:PORT" if isinstance(e, ValueError) else e.strerror or str(e) or "no answer"
        raise DataError(f"executor ray: no Ray cluster answers at {address}, {origin} ({why}). Start it (ray "
                        "start --head), name another with --ray-address HOST:PORT (or a recipe's data.ray_address, or "
                        "RAY_ADDRESS), or name none (or --ray-address local) for a Ray of this machine's own") from e


@contextmanager
def _loopback_only():
    """While a local Ray starts: nothing of it reaches past this machine. Ray's defaults do: the node finds its IP
    by opening a socket towards 8.8.8.8, and the dashboard process it starts even with include_dashboard=False
    asks the cloud metadata services (169.254.169.254, metadata.google.internal) which cloud it runs on. Ray's
    loopback-only switch (its default on macOS and Windows) covers the first; the head starts without the
    dashboard, which the pipeline does not use, for the second. Ray's processes keep the environment they started
    with; this process gets its own back."""
    from ray._private import node, ray_constants

    variable = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR
    saved = os.environ.get(variable), ray_constants.ENABLE_RAY_CLUSTER, node.Node.start_api_server
    os.environ[variable], ray_constants.ENABLE_RAY_CLUSTER = "0", False
    node.Node.start_api_server = lambda self, *_, **__: setattr(self, "_webui_url", None)
    try:
        yield
    finally:
        if saved[0] is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = saved[0]
        ray_constants.ENABLE_RAY_CLUSTER, node.Node.start_api_server = saved[1:]


def _start_ray(ray, address: str | None) -> None:
    """Join the cluster at ``address`` (else ``RAY_ADDRESS``; ``auto``: the one ``ray start`` last recorded on this
    machine), or, when neither names one (or ``address`` is ``local``), start a Ray of this machine's own — never
    the cluster that this machine's Ray state points at, whose head may be long gone."""
    given, origin = ((address, "the address given with --ray-address or data.ray_address") if address else
                     (os.environ.get("RAY_ADDRESS"), "the address in RAY_ADDRESS"))
    if not given or given == "local":
        with _loopback_only():
            ray.init(address="local", **RAY_OPTIONS)
        return
    if given == "auto":
        from ray._private.utils import get_ray_address_file, read_ray_address

        given, origin = read_ray_address(), f"auto: the cluster `ray start` recorded in {get_ray_address_file(None)}"
        if not given:
            raise DataError(f"executor ray: auto names no cluster: {get_ray_address_file(None)} is absent (no `ray "
                            "start` on this machine); name one with --ray-address HOST:PORT, or name none for a Ray "
                            "of this machine's own")
    _check_cluster(given, origin)
    ray.init(address=given, **RAY_OPTIONS)


def run_ray(batches: Iterable[tuple[int, list]], settings: tuple, workers: int | None,
            address: str | None = None) -> Iterator[BatchResult]:
    try:
        import ray
    except ImportError as e:
        raise DataError("--executor ray needs Ray: pip install 'ray[data]'") from e
    started = not ray.is_initialized()  # a Ray the caller started is theirs to keep
    if started:
        _start_ray(ray, address)
    try:
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
    finally:
        if started:
            ray.shutdown()  # stops the Ray it started here; only disconnects from a cluster


def run_batches(batches: Iterable[tuple[int, list]], settings: tuple, executor: str = "local",
                workers: int | None = None, ray_address: str | None = None) -> Iterator[BatchResult]:
    """Results of every batch, in the order they finish."""
    if executor == "local":
        return run_local(batches, settings, workers or os.cpu_count() or 1)
    if executor == "ray":
        return run_ray(batches, settings, workers, ray_address)
    raise DataError(f"executor {executor!r} is not one of {', '.join(EXECUTORS)}")
