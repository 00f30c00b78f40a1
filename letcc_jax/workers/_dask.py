"""Asynchronous workers on a Dask cluster: decode from the first results, cancel the rest.

Each coded input is one Dask task carrying only its coded input (d,). f (with the
parameters it closes over) is installed once on every Dask worker as a worker plugin: the
scheduler keeps it and hands it to every worker that joins later, so a worker process that
dies and is replaced gets f again, and killed tasks are re-run elsewhere by Dask itself.
Each worker unpickles f and jit-compiles it on first use. The master gathers results in
arrival order and decodes as soon as enough valid ones are in, or at the deadline.

While a round runs, the master asks the scheduler for its workers every ``_WATCH_S``
seconds. A cluster that has had none for ``worker_timeout`` seconds ends the round: the tasks
still unfinished become erasures. The embedded cluster also gets back the workers it gave up
on: a ``LocalCluster`` closes the nanny of a worker whose restart takes longer than
``distributed.deploy.lost-worker-timeout`` (15 s, which a loaded machine reaches) and never
replaces it, so the backend scales the cluster back to its specified size (``cluster.scale``)
whenever it finds a worker missing.

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
from distributed.core import Status
from tornado.ioloop import PeriodicCallback

from .._validation import check_count, check_real, is_int
from ._base import Answers, Backend, NotEnoughResults, Round, seconds_or_none
from ._faults import InjectedFault, TaskFault

__all__ = ["DaskBackend"]

_POLL_S = 0.005  # how often a delayed task checks whether it was cancelled
_GONE = (Status.closing, Status.closed, Status.failed)  # a worker's end: its delays stop too
_WATCH_S = 0.1  # how often a round checks that the cluster still has workers
_RESTORE_S = 0.5  # how often the embedded cluster's size is checked
_EMBEDDED = ("n_workers", "threads_per_worker", "processes")  # settings of the embedded cluster
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
        if task is None or task.state == "cancelled" or worker.status in _GONE:
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
        # finite, as documented, in f's dtype too: a scale beyond it would make inf, an erasure
        top = float(np.finfo(y.dtype).max) if np.issubdtype(y.dtype, np.floating) else np.inf
        y = np.clip(rng.uniform(-fault.garbage_scale, fault.garbage_scale, y.shape),
                    -top, top).astype(y.dtype)
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
    its workers ends as ``KilledWorker`` in ``errors``. A cluster left without any worker
    for ``worker_timeout`` seconds ends the round: its unfinished tasks are listed in
    ``errors`` as lost, and the round decodes from what arrived or raises
    ``NotEnoughResults`` naming the workers that left. The embedded cluster is kept at its
    size: workers it closed (see the module docstring) are started again. Every task that
    gives no usable result is accounted for in ``errors``, unless the round ended first
    (enough results, or the deadline).

    Args:
      client: an existing ``distributed.Client`` (synchronous); left open on ``close``.
      address: a scheduler address ("tcp://host:8786") to connect to instead.
      connect_timeout: with ``address`` only: seconds to wait for the scheduler before
        raising ``ConnectionError`` (default 10).
      n_workers, threads_per_worker, processes: the embedded ``LocalCluster`` made when
        neither ``client`` nor ``address`` is given (default 2, 1 and True). It listens on
        127.0.0.1 only, without a dashboard. With ``processes`` each worker is a separate
        process, which ``WorkerFaults.kill`` needs, and inherits the master's float64
        setting.
      seed: None, an int >= 0 or a ``numpy.random.Generator``; seeds the dispatch order.
        Tasks go out in a fresh random order each round, so that when they queue for
        execution slots, arriving late does not depend on a worker's position: decoders
        tolerate scattered stragglers far better than a missing end of [-1, 1].
      worker_timeout: seconds a round waits for a running worker at its start, and while
        the cluster has no worker during it, before giving up on the cluster (see above; at
        the start it raises ``NotEnoughResults``); the round's deadline, if sooner, bounds
        the wait. ``inf`` or None: wait as long as the deadline allows (forever without
        one).
      **cluster_kwargs: passed on to ``LocalCluster``.

    Raises:
      ValueError: both ``client`` and ``address``; settings of the embedded cluster
        (``n_workers``, ``threads_per_worker``, ``processes``, ``cluster_kwargs``) with
        either of them, or ``connect_timeout`` without ``address``; an asynchronous client;
        an empty ``address``; ``n_workers`` not an int >= 0 or ``threads_per_worker`` not
        an int >= 1; ``seed`` < 0; ``connect_timeout`` or ``worker_timeout`` not > 0.
      TypeError: ``client`` not a ``distributed.Client``; ``address`` not a string;
        ``connect_timeout`` not a real number; ``processes`` not a bool; ``seed`` not an
        int or Generator; ``cluster_kwargs`` that the embedded cluster rejects (the message
        names them).
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
        connect_timeout: float | None = None,
        n_workers: int | None = None,
        threads_per_worker: int | None = None,
        processes: bool | None = None,
        seed: int | np.random.Generator | None = None,
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
        if address is not None and not address.strip():
            raise ValueError('address is empty; pass a scheduler address ("tcp://host:8786").')
        embedded = {
            name: value
            for name, value in zip(_EMBEDDED, (n_workers, threads_per_worker, processes))
            if value is not None
        }
        if client is not None or address is not None:
            if passed := sorted(embedded) + sorted(cluster_kwargs):
                given = "client=" if client is not None else "address="
                raise ValueError(
                    f"{passed} configure the cluster that DaskBackend starts itself; with "
                    f"{given} it uses an existing cluster, which they do not change. Leave them "
                    "out and size that cluster where it is made (e.g. cluster.scale(n)), or "
                    f"leave out {given} to have DaskBackend start a cluster."
                )
        elif connect_timeout is not None:
            raise ValueError(
                "connect_timeout applies only to connecting to a scheduler at address=; leave "
                "it out, or pass address= as well."
            )
        connect_timeout = check_real(10.0 if connect_timeout is None else connect_timeout,
                                     "connect_timeout", "finite seconds > 0", lambda s: s > 0)
        n_workers = check_count(2 if n_workers is None else n_workers, "n_workers", 0)
        threads_per_worker = check_count(
            1 if threads_per_worker is None else threads_per_worker, "threads_per_worker", 1)
        if processes is None:
            processes = True
        elif not isinstance(processes, (bool, np.bool_)):
            raise TypeError(
                f"processes must be True (worker processes) or False (threads in this "
                f"process), got {processes!r}."
            )
        if not (seed is None or is_int(seed) or isinstance(seed, np.random.Generator)):
            raise TypeError(
                f"seed must be None, an int >= 0 or a numpy.random.Generator, got {seed!r}."
            )
        if is_int(seed) and seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}.")
        self._worker_timeout = seconds_or_none(worker_timeout, "worker_timeout")
        self._closed = False
        self._cluster = None
        self._owns_client = client is None
        self._kernels: collections.OrderedDict = collections.OrderedDict()
        self._rng = np.random.default_rng(seed)
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
                    processes=bool(processes),
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
            self._keeper = PeriodicCallback(self._restore, _RESTORE_S * 1000)
            self._cluster.loop.add_callback(self._keeper.start)

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
        if self._cluster is not None:
            self._cluster.loop.add_callback(self._keeper.stop)
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

    def _restore(self):
        """Start again the workers the embedded cluster closed (see the module docstring).

        Runs every ``_RESTORE_S`` seconds on the embedded cluster's event loop.
        """
        cluster = self._cluster
        if not self._closed and cluster.status == Status.running and (
            set(cluster.worker_spec) - set(cluster.workers)
        ):
            cluster.scale(len(cluster.worker_spec))

    async def _workers(self) -> set[str]:
        """Addresses of the scheduler's workers, paused ones included (none if it does not
        answer)."""
        try:
            return set(await self.client.scheduler.ncores())
        except OSError:
            return set()

    async def _watch(self) -> list[str]:
        """Return once the cluster has had no worker for ``worker_timeout`` seconds (never
        without one): the workers seen meanwhile."""
        seen: set[str] = set()
        empty_since = None
        while True:
            present = await self._workers()
            seen |= present
            now = time.monotonic()
            if present:
                empty_since = None
            elif empty_since is None:
                empty_since = now
            elif self._worker_timeout is not None and now - empty_since >= self._worker_timeout:
                return sorted(seen)
            await asyncio.sleep(_WATCH_S)

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
        """Take results in arrival order until ``rnd.enough``, all are in, the timeout, or
        the cluster has had no worker for ``worker_timeout`` seconds."""
        arrivals = as_completed(
            list(futures), loop=self.client.loop, with_results=True, raise_errors=False
        )

        async def take():
            async for future, value in arrivals:
                if _receive(futures[future], value, answers, rnd, start):
                    return

        taking, watching = asyncio.ensure_future(take()), asyncio.ensure_future(self._watch())
        try:
            done, _ = await asyncio.wait(
                (taking, watching), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if taking in done:
                taking.result()  # raises what went wrong while taking results, if anything
                return
            unfinished = [
                n for n in futures.values() if not answers.answered[n] and n not in answers.errors
            ]
            if watching not in done:
                answers.note = (
                    f"The deadline of {rnd.deadline} s passed with {len(unfinished)} task(s) "
                    "unfinished."
                )
                return
            left = watching.result()
            for n in unfinished:
                answers.errors[n] = "lost: no Dask worker was left to run it"
            answers.note = (
                f"The Dask cluster at {self.client.scheduler.address} lost every worker during "
                f"the round ({', '.join(left) or 'none had started'}) and had none "
                f"for worker_timeout={self._worker_timeout:g} s, leaving {len(unfinished)} "
                "task(s) unfinished. Check why the workers died (memory, f itself) and whether "
                "they are replaced; a longer worker_timeout waits longer for replacements."
            )
        finally:
            taking.cancel()
            watching.cancel()
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
