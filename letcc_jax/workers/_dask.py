"""Asynchronous workers on a Dask cluster: decode from the first results, cancel the rest.

Each coded input is one Dask task carrying only its coded input (d,). f (with the
parameters it closes over) is installed once on every Dask worker as a worker plugin: the
scheduler keeps it and hands it to every worker that joins later, so a worker process that
dies and is replaced gets f again, and killed tasks are re-run elsewhere by Dask itself.
Each worker unpickles f and jit-compiles it on first use. The master gathers results in
arrival order and decodes as soon as enough valid ones are in, or at the deadline.

f travels as a plugin rather than as scattered data: scattered data that every holder
lost cannot be recomputed (Dask cancels the tasks that need it), and the active memory
manager trims broadcast copies back to one, after which the scheduler runs every task
where that copy lives.

Workers must be able to import ``letcc_jax`` (and unpickle f). Each worker process runs
its own JAX: on accelerators, give each worker its own device (e.g. CUDA_VISIBLE_DEVICES)
or turn off memory preallocation.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from typing import NamedTuple

import cloudpickle
import jax
import numpy as np
from distributed import (
    Client,
    Event,
    Future,
    LocalCluster,
    WorkerPlugin,
    as_completed,
    get_worker,
    rejoin,
    secede,
)

from .._validation import check_real
from ._base import Answers, Backend, NotEnoughResults, Round, seconds_or_none
from ._faults import InjectedFault, TaskFault

__all__ = ["DaskBackend"]

_POLL_S = 0.005  # how often a delayed task checks whether it was cancelled
_KERNELS_KEPT = 8  # distinct f's kept installed on the workers at once


class _Kernel(WorkerPlugin):
    """f as installed on a Dask worker: unpickled and jit-compiled on the worker's first use.

    The master pickles f itself (cloudpickle), so that an f the workers cannot unpickle
    fails in its tasks, where the error is recorded per worker, not while a worker joins.
    """

    def __init__(self, payload: bytes):
        self.payload = payload
        self._jitted = None
        self._lock = threading.Lock()

    def __getstate__(self):
        return {"payload": self.payload}

    def __setstate__(self, state):
        self.__init__(state["payload"])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """f(x) for one coded input x (d,), flattened to (m,)."""
        if self._jitted is None:
            with self._lock:  # the worker's threads share one compiled f
                if self._jitted is None:
                    self._jitted = jax.jit(cloudpickle.loads(self.payload))
        return np.asarray(self._jitted(x)).reshape(-1)


class _Answer(NamedTuple):
    """What a worker's task returns: f's output (m,) and the seconds f took."""

    y: np.ndarray
    seconds: float


@dataclasses.dataclass
class _Shipped:
    """An f this backend ships: held so that id(f) is not reused while it is cached."""

    f: Callable
    name: str  # of the worker plugin holding it
    payload: bytes | None  # f pickled, until the scheduler holds it (then None)


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


def _work(kernel: str, x: np.ndarray, fault: TaskFault | None, master_pid: int):
    """One worker's task: f (the plugin named ``kernel``) on its coded input x (d,), with
    its injected faults.

    Returns an ``_Answer``, or None if cancelled while delayed.
    """
    if fault is not None:
        if fault.delay and not _straggle(fault.delay):
            return None
        if fault.kill:
            _kill_first_attempt(master_pid)
        if fault.fail:
            raise InjectedFault(f"injected failure on worker {fault.worker}")
    worker = get_worker()
    f = worker.plugins.get(kernel)
    if f is None:
        raise RuntimeError(
            f"f is not installed on Dask worker {worker.address}: installing it did not finish "
            "(a worker left, or the deadline passed); the next round installs it again."
        )
    start = time.perf_counter()
    y = f(x)
    seconds = time.perf_counter() - start
    if fault is not None and fault.nan:
        y = np.full_like(y, np.nan)
    elif fault is not None and fault.garbage:
        rng = np.random.default_rng(fault.worker)
        y = rng.uniform(-fault.garbage_scale, fault.garbage_scale, y.shape).astype(y.dtype)
    return _Answer(y, seconds)


class DaskBackend(Backend):
    """Workers as Dask tasks; the master keeps the first valid results and cancels the rest.

    Use it as a context manager (or call ``close``) so that an embedded cluster shuts down.
    An embedded cluster starts worker processes with ``spawn``: a script that makes one
    must do so under ``if __name__ == "__main__":``.

    f is pickled (cloudpickle) and installed on the workers on its first round, and reused
    by later rounds with the same f object: f must not change behaviour after its first
    use (mutating a callable object in place is not detected; pass a new f instead).

    A worker process that dies is survived: Dask re-runs its unfinished tasks on the other
    workers (and on its replacement, which gets f when it joins); a task that keeps killing
    its workers ends as ``KilledWorker`` in ``errors``. Every task that gives no usable
    result is accounted for in ``errors``, unless the round ended first (enough results, or
    the deadline).

    Args:
      client: an existing ``distributed.Client`` (synchronous); left open on ``close``.
      address: a scheduler address ("tcp://host:8786") to connect to instead.
      connect_timeout: seconds to wait for the scheduler at ``address`` before raising
        ``ConnectionError``.
      n_workers, threads_per_worker, processes: the embedded ``LocalCluster`` made when
        neither ``client`` nor ``address`` is given. It listens on 127.0.0.1 only, without
        a dashboard. With ``processes`` (the default) each worker is a separate process,
        which ``WorkerFaults.kill`` needs, and inherits the master's float64 setting.
      seed: seeds the dispatch order. Tasks go out in a fresh random order each round, so
        that when they queue for execution slots, arriving late does not depend on a
        worker's position: decoders tolerate scattered stragglers far better than a missing
        end of [-1, 1].
      worker_timeout: seconds a round waits for the cluster to have a running worker
        before raising ``NotEnoughResults``; the round's deadline, if sooner, bounds the
        wait. ``inf`` or None: wait as long as the deadline allows (forever without one).
      **cluster_kwargs: passed on to ``LocalCluster``.

    Raises:
      ValueError: both ``client`` and ``address``; ``cluster_kwargs`` with either of them;
        an asynchronous client; ``n_workers`` not an int >= 0 or ``threads_per_worker``
        not an int >= 1; ``connect_timeout`` or ``worker_timeout`` not > 0.
      TypeError: ``client`` not a ``distributed.Client``; ``address`` not a string;
        ``connect_timeout`` not a real number; ``cluster_kwargs`` that the embedded
        cluster rejects (the message names them).
      ConnectionError: no scheduler answered at ``address`` within ``connect_timeout``.

    Example:
      Not run by the test suite, since it starts worker processes; in a script, put it
      under ``if __name__ == "__main__":``.

      .. code-block:: python

          import jax.numpy as jnp
          import letcc_jax as lc
          from letcc_jax import workers

          scheme = lc.letcc(8, 16)
          X = jnp.linspace(-1, 1, 16).reshape(8, 2)
          faults = workers.WorkerFaults.slow(16, 3, delay=2.0)   # 3 stragglers, 2 s late
          with workers.DaskBackend(n_workers=4) as dask:
              result = dask.run(jnp.sin, scheme, X, wait_for=12, deadline=10.0,
                                faults=faults)
          result.estimate.shape            # (8, 2), decoded from the first valid results
          int(result.used.sum())           # 12 or more
          result.timings.compute_s         # well under the 2 s of the slow workers
    """

    name = "dask"

    def __init__(
        self,
        client: Client | None = None,
        *,
        address: str | None = None,
        connect_timeout: float = 10.0,
        n_workers: int = 2,
        threads_per_worker: int = 1,
        processes: bool = True,
        seed: int | None = None,
        worker_timeout: float | None = 30.0,
        **cluster_kwargs,
    ):
        if client is not None and address is not None:
            raise ValueError("pass either client= or address=, not both.")
        if client is not None and not isinstance(client, Client):
            raise TypeError(
                f"client must be a distributed.Client, got {type(client).__name__}; to connect "
                "to a scheduler by its address, pass address= instead."
            )
        if address is not None and not isinstance(address, str):
            raise TypeError(
                f'address must be a scheduler address string ("tcp://host:8786"), got {address!r}.'
            )
        connect_timeout = check_real(connect_timeout, "connect_timeout", "finite seconds > 0",
                                     lambda s: s > 0)
        if (client is not None or address is not None) and cluster_kwargs:
            raise ValueError(
                f"{sorted(cluster_kwargs)} configure the embedded cluster; they do not apply "
                "to an existing client or scheduler address."
            )
        for arg, value, low in (("n_workers", n_workers, 0), ("threads_per_worker", threads_per_worker, 1)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
                raise ValueError(f"{arg} must be an int >= {low}, got {value!r}.")
        self._closed = False
        self._cluster = None
        self._owns_client = client is None
        self._kernels: collections.OrderedDict = collections.OrderedDict()
        self._rng = np.random.default_rng(seed)
        self._worker_timeout = seconds_or_none(worker_timeout, "worker_timeout")
        if client is not None:
            if client.asynchronous:
                raise ValueError("DaskBackend needs a synchronous Client (asynchronous=False).")
            self.client = client
        elif address is not None:
            try:
                self.client = Client(address, timeout=connect_timeout)
            except OSError as exc:
                raise ConnectionError(
                    f"could not connect to the Dask scheduler at {address!r} within "
                    f"connect_timeout={connect_timeout:g} s. Check that a scheduler runs there "
                    "(`dask scheduler`) and is reachable from here, or pass a longer "
                    "connect_timeout."
                ) from exc
        else:
            passed = sorted(cluster_kwargs)
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
            try:
                self._cluster = LocalCluster(
                    n_workers=n_workers,
                    threads_per_worker=threads_per_worker,
                    processes=processes,
                    **cluster_kwargs,
                )
            except Exception as exc:
                if not passed:
                    raise
                # LocalCluster forwards unknown keywords to its workers (Nanny, Worker,
                # Server), which reject them only when they start.
                root, error = exc, RuntimeError
                while True:
                    error = TypeError if isinstance(root, TypeError) else error
                    if (inner := root.__cause__ or root.__context__) is None:
                        break
                    root = inner
                raise error(
                    f"starting the embedded LocalCluster failed ({type(root).__name__}: {root}); "
                    f"one of the cluster_kwargs passed, {passed}, may be invalid. Pass only "
                    "arguments that distributed.LocalCluster (or its workers) accept."
                ) from exc
            self.client = Client(self._cluster, direct_to_workers=True)

    def __enter__(self) -> DaskBackend:
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        """Remove f from the workers; close the client and cluster this backend made.

        Closing twice is harmless; ``run`` on a closed backend raises ``RuntimeError``.
        """
        if self._closed:
            return
        self._closed = True
        try:
            if self._owns_client:
                self.client.close()  # the cluster's workers, and f with them, go too
            elif self.client.status == "running":
                for shipped in self._kernels.values():
                    if shipped.payload is None:
                        self._uninstall(shipped.name)
        finally:
            self._kernels.clear()
            if self._cluster is not None:
                self._cluster.close()

    def _uninstall(self, name: str):
        try:
            self.client.unregister_worker_plugin(name)
        except OSError:  # a worker left meanwhile: the scheduler has forgotten f already
            pass

    async def _install_on_workers(self, f: _Kernel, name: str):
        # Awaited on the client's event loop, where the client's methods are coroutines.
        await self.client.register_plugin(f, name=name)

    def _install(self, f, timeout: float | None) -> str:
        """The name under which f is installed on every worker, present and future."""
        shipped = self._kernels.get(id(f))
        if shipped is None:
            try:
                payload = cloudpickle.dumps(f)
            except Exception as exc:
                raise TypeError(
                    f"f must be picklable (with cloudpickle) for the Dask backend, which ships it "
                    f"to every worker; pickling {f!r} failed with {type(exc).__name__}: {exc}. "
                    "Keep unpicklable state (locks, open files, clients, generators) out of f's "
                    "closure and attributes: create it inside f, or build f from module-level "
                    "functions, functools.partial and arrays."
                ) from exc
            if len(self._kernels) >= _KERNELS_KEPT:
                _, old = self._kernels.popitem(last=False)
                if old.payload is None:
                    self._uninstall(old.name)
            shipped = self._kernels[id(f)] = _Shipped(f, f"letcc-f-{uuid.uuid4().hex}", payload)
        self._kernels.move_to_end(id(f))
        if shipped.payload is not None:
            try:
                self.client.sync(
                    self._install_on_workers, _Kernel(shipped.payload), shipped.name,
                    callback_timeout=timeout,
                )
            except (OSError, asyncio.TimeoutError):
                # A worker left mid-install, or the deadline passed: tasks on a worker without
                # f fail (and are recorded); the next round installs f again.
                return shipped.name
            except Exception as exc:
                raise RuntimeError(
                    f"installing f on the Dask workers failed ({type(exc).__name__}: {exc}); the "
                    "workers must be able to import letcc_jax."
                ) from exc
            shipped.payload = None
        return shipped.name

    def _await_workers(self, timeout: float | None):
        try:
            self.client.wait_for_workers(1, timeout=timeout)
        except TimeoutError as exc:  # not raised without a timeout
            raise NotEnoughResults(
                f"the Dask cluster at {self.client.scheduler.address} has no running workers "
                f"(waited {timeout:.3g} s for one). Start workers (`dask worker <scheduler "
                "address>`), give DaskBackend n_workers >= 1, or let the cluster scale up; a "
                "longer deadline or worker_timeout waits longer."
            ) from exc

    def _compute(self, f, coded, rnd: Round) -> Answers:
        if self._closed:
            raise RuntimeError(
                "this DaskBackend is closed; make a new one (e.g. `with DaskBackend() as dask:`) "
                "to run more rounds."
            )
        if self.client.status in ("closing", "closed"):
            raise RuntimeError(
                f"the Dask client of this DaskBackend is {self.client.status}; give it an open "
                "client or make a new DaskBackend."
            )
        begin = time.perf_counter()

        def left() -> float | None:
            """Seconds to the deadline, which bounds the whole round (None: no deadline)."""
            if rnd.deadline is None:
                return None
            return max(rnd.deadline - (time.perf_counter() - begin), 1e-3)

        waits = [t for t in (self._worker_timeout, left()) if t is not None]
        self._await_workers(min(waits) if waits else None)
        kernel = self._install(f, left())
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
            self.client.sync(self._collect, futures, answers, rnd, start, left())
        finally:
            unfinished = [future for future in futures if not future.done()]
            if unfinished:
                self.client.cancel(unfinished)
            if rnd.faults is not None:
                for n in rnd.faults.kill & set(futures.values()):
                    Event(_kill_event(f"letcc-{token}-{n}"), client=self.client).clear()
        return answers

    async def _collect(
        self, futures: dict[Future, int], answers: Answers, rnd: Round, start: float, timeout: float | None
    ):
        """Take results in arrival order until ``rnd.enough``, all are in, or the timeout."""
        arrivals = as_completed(
            list(futures), loop=self.client.loop, with_results=True, raise_errors=False,
            timeout=timeout,
        )
        try:
            async for future, value in arrivals:
                if _receive(futures[future], value, answers, rnd, start):
                    return
        except asyncio.TimeoutError:
            missing = sum(not future.done() for future in futures)
            answers.note = f"The deadline of {rnd.deadline} s passed with {missing} task(s) unfinished."
        finally:
            arrivals.clear()


def _receive(n: int, value, answers: Answers, rnd: Round, start: float) -> bool:
    """Record worker n's outcome; True once the valid results suffice to decode.

    The outcome is read from the value ``as_completed`` gathered, not from the future's
    status, which may have changed since (a worker that held the result died, and Dask is
    computing it again). Every outcome but a usable answer lands in ``answers.errors``.
    """
    if isinstance(value, tuple) and not isinstance(value, _Answer):
        exc = value[1]  # an error: as_completed hands over (type, exception, traceback)
        answers.errors[n] = f"{type(exc).__name__}: {exc}"
        answers.cause = answers.cause or exc
        return False
    if not isinstance(value, _Answer):  # CancelledError, or None: the task saw itself cancelled
        answers.errors[n] = (
            "lost: Dask cancelled the task outside this backend (e.g. the cluster restarted)"
        )
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
    return rnd.enough(answers.valid(), answers.outputs)
