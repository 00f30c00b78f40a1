"""Asynchronous workers on a Dask cluster: decode from the first results, cancel the rest.

Each coded input is one Dask task. f (with the parameters it closes over) is scattered to
every Dask worker once and cached there, jit-compiled on first use; a task carries only its
coded input (d,). The master gathers results in arrival order and decodes as soon as enough
valid ones are in, or at the deadline.

Workers must be able to import ``letcc_jax`` (and unpickle f). Each worker process runs
its own JAX: on accelerators, give each worker its own device (e.g. CUDA_VISIBLE_DEVICES)
or turn off memory preallocation.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import signal
import time
import uuid

import jax
import numpy as np
from distributed import Client, Event, Future, LocalCluster, as_completed, get_worker, rejoin, secede

from ._base import Answers, Backend, Round
from ._faults import InjectedFault, TaskFault

__all__ = ["DaskBackend"]

_POLL_S = 0.005  # how often a delayed task checks whether it was cancelled
_KERNELS_KEPT = 8  # distinct f's kept scattered on the workers at once


class _Kernel:
    """f as shipped to a Dask worker: unpickled once there, jit-compiled on first use."""

    def __init__(self, f):
        self.f = f
        self._jitted = None

    def __getstate__(self):
        return {"f": self.f}

    def __setstate__(self, state):
        self.f = state["f"]
        self._jitted = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """f(x) for one coded input x (d,), flattened to (m,)."""
        if self._jitted is None:
            self._jitted = jax.jit(self.f)
        return np.asarray(self._jitted(x)).reshape(-1)


def _kill_event(key) -> str:
    return f"{key}-killed"


def _straggle(seconds: float) -> bool:
    """Hold this task back ``seconds``; False if it was cancelled meanwhile.

    The wait leaves the worker's thread pool (``secede``): a slow coded worker is a slow
    machine of its own, so it must not take an execution slot from the others. It rejoins
    the pool to compute f.
    """
    worker = get_worker()
    key = worker.get_current_task()
    secede()
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        task = worker.state.tasks.get(key)
        if task is None or task.state == "cancelled":
            return False
        time.sleep(min(left, _POLL_S))
    rejoin()
    return True


def _kill_first_attempt(master_pid: int):
    if os.getpid() == master_pid:
        raise RuntimeError(
            "WorkerFaults.kill needs worker processes, but this worker runs inside the master "
            "process; use DaskBackend(processes=True) or a separate cluster."
        )
    first = Event(_kill_event(get_worker().get_current_task()))
    if not first.is_set():
        first.set()
        os.kill(os.getpid(), signal.SIGKILL)


def _work(kernel: _Kernel, x: np.ndarray, fault: TaskFault | None, master_pid: int):
    """One worker's task: f on its coded input x (d,), with its injected faults.

    Returns (output (m,), seconds f took), or None if cancelled while delayed.
    """
    if fault is not None:
        if fault.delay and not _straggle(fault.delay):
            return None
        if fault.kill:
            _kill_first_attempt(master_pid)
        if fault.fail:
            raise InjectedFault(f"injected failure on worker {fault.worker}")
    start = time.perf_counter()
    y = kernel(x)
    seconds = time.perf_counter() - start
    if fault is not None and fault.nan:
        y = np.full_like(y, np.nan)
    elif fault is not None and fault.garbage:
        rng = np.random.default_rng(fault.worker)
        y = rng.uniform(-fault.garbage_scale, fault.garbage_scale, y.shape).astype(y.dtype)
    return y, seconds


class DaskBackend(Backend):
    """Workers as Dask tasks; the master keeps the first valid results and cancels the rest.

    Use it as a context manager (or call ``close``) so that an embedded cluster shuts down.

    Args:
      client: an existing ``distributed.Client`` (synchronous); left open on ``close``.
      address: a scheduler address ("tcp://host:8786") to connect to instead.
      n_workers, threads_per_worker, processes: the embedded ``LocalCluster`` made when
        neither ``client`` nor ``address`` is given. It listens on 127.0.0.1 only, without
        a dashboard. With ``processes`` (the default) each worker is a separate process,
        which ``WorkerFaults.kill`` needs, and inherits the master's float64 setting.
      seed: seeds the dispatch order. Tasks go out in a fresh random order each round, so
        that when they queue for execution slots, arriving late does not depend on a
        worker's position: decoders tolerate scattered stragglers far better than a missing
        end of [-1, 1].
      **cluster_kwargs: passed on to ``LocalCluster``.
    """

    name = "dask"

    def __init__(
        self,
        client: Client | None = None,
        *,
        address: str | None = None,
        n_workers: int = 2,
        threads_per_worker: int = 1,
        processes: bool = True,
        seed: int | None = None,
        **cluster_kwargs,
    ):
        if client is not None and address is not None:
            raise ValueError("pass either client= or address=, not both.")
        if (client is not None or address is not None) and cluster_kwargs:
            raise ValueError(
                f"{sorted(cluster_kwargs)} configure the embedded cluster; they do not apply "
                "to an existing client or scheduler address."
            )
        self._cluster = None
        self._owns_client = client is None
        if client is not None:
            if client.asynchronous:
                raise ValueError("DaskBackend needs a synchronous Client (asynchronous=False).")
            self.client = client
        elif address is not None:
            self.client = Client(address)
        else:
            if processes and jax.config.jax_enable_x64:
                env = cluster_kwargs.setdefault("env", {})
                env.setdefault("JAX_ENABLE_X64", "1")
            cluster_kwargs.setdefault("silence_logs", logging.ERROR)
            cluster_kwargs.setdefault("host", "127.0.0.1")
            # TCP even for threads: with in-memory comms the HTTP servers bind all interfaces.
            cluster_kwargs.setdefault("protocol", "tcp://")
            # No dashboard; the scheduler's small HTTP server takes a free loopback port.
            cluster_kwargs.setdefault("dashboard_address", "127.0.0.1:0")
            cluster_kwargs["scheduler_kwargs"] = {
                "dashboard": False, **cluster_kwargs.get("scheduler_kwargs", {})
            }
            self._cluster = LocalCluster(
                n_workers=n_workers,
                threads_per_worker=threads_per_worker,
                processes=processes,
                **cluster_kwargs,
            )
            self.client = Client(self._cluster, direct_to_workers=True)
        self._kernels: collections.OrderedDict = collections.OrderedDict()
        self._rng = np.random.default_rng(seed)

    def __enter__(self) -> DaskBackend:
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        """Release f on the workers; close the client and cluster this backend made."""
        self.client.cancel([future for _, future in self._kernels.values()])
        self._kernels.clear()
        if self._owns_client:
            self.client.close()
        if self._cluster is not None:
            self._cluster.close()

    def _kernel(self, f) -> Future:
        """f scattered to every worker, once per f (a few distinct f's are kept)."""
        entry = self._kernels.get(id(f))
        if entry is not None and entry[1].status == "finished":
            self._kernels.move_to_end(id(f))
            return entry[1]
        # Broadcast once; workers that join later fetch it from a peer on first use.
        future = self.client.scatter(_Kernel(f), broadcast=True, hash=False)
        self._kernels[id(f)] = (f, future)  # holding f keeps id(f) from being reused
        if len(self._kernels) > _KERNELS_KEPT:
            _, (_, old) = self._kernels.popitem(last=False)
            self.client.cancel([old])
        return future

    def _compute(self, f, coded, rnd: Round) -> Answers:
        kernel = self._kernel(f)
        token = uuid.uuid4().hex
        master_pid = os.getpid()
        answers = Answers.empty(coded.shape[0], rnd.m, rnd.dtype)
        futures: dict[Future, int] = {}
        start = time.perf_counter()
        for n in self._rng.permutation(np.flatnonzero(rnd.alive)).tolist():
            fault = None if rnd.faults is None else rnd.faults.task(n)
            future = self.client.submit(
                _work, kernel, coded[n], fault, master_pid, key=f"letcc-{token}-{n}", retries=0
            )
            futures[future] = n
        try:
            self.client.sync(self._collect, futures, answers, rnd, start)
        finally:
            unfinished = [future for future in futures if not future.done()]
            if unfinished:
                self.client.cancel(unfinished)
            if rnd.faults is not None:
                for n in rnd.faults.kill & set(futures.values()):
                    Event(_kill_event(f"letcc-{token}-{n}"), client=self.client).clear()
        return answers

    async def _collect(self, futures: dict[Future, int], answers: Answers, rnd: Round, start: float):
        """Take results in arrival order until ``rnd.enough``, all are in, or the deadline."""
        timeout = None
        if rnd.deadline is not None:
            timeout = max(rnd.deadline - (time.perf_counter() - start), 1e-3)
        arrivals = as_completed(
            list(futures), loop=self.client.loop, with_results=True, raise_errors=False,
            timeout=timeout,
        )
        try:
            async for future, value in arrivals:
                if _receive(futures[future], future.status, value, answers, rnd, start):
                    return
        except asyncio.TimeoutError:
            missing = sum(not future.done() for future in futures)
            answers.note = f"The deadline of {rnd.deadline} s passed with {missing} task(s) unfinished."
        finally:
            arrivals.clear()


def _receive(n: int, status: str, value, answers: Answers, rnd: Round, start: float) -> bool:
    """Record worker n's outcome; True once the valid results suffice to decode."""
    if status == "error":  # as_completed hands over (type, exception, traceback)
        exc = value[1]
        answers.errors[n] = f"{type(exc).__name__}: {exc}"
        answers.cause = answers.cause or exc
        return False
    if status != "finished":  # cancelled elsewhere, or its data was lost
        return False
    if value is None:  # stopped early: the task saw itself cancelled
        return False
    y, seconds = value
    answers.arrival_s[n] = time.perf_counter() - start
    answers.worker_s[n] = seconds
    answers.answered[n] = True
    y = np.asarray(y)
    if y.size != rnd.m:
        answers.errors[n] = f"returned {y.size} values (shape {y.shape}); f gives m={rnd.m}"
        return False
    answers.outputs[n] = y.reshape(rnd.m)
    return rnd.enough(answers.valid())
