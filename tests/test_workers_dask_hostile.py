"""Hostile conditions and inputs for the worker backends: killed worker processes, a
cluster without workers, the backend's life cycle, f that cannot be shipped or changes,
and arguments no backend can use. The argument table runs on every backend (Dask ones
only where ``distributed`` is installed)."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import threading
import time

import jax.numpy as jnp
import numpy as np
import pytest
from workers_common import F, K, N, SCHEMES, X

from letcc_jax import workers

BACKENDS = ["vmap", "sharded", "dask"]


@pytest.fixture(scope="module")
def dask():
    """Three single-threaded worker processes, warmed up (JAX imported, f compiled)."""
    pytest.importorskip("distributed")
    with workers.DaskBackend(n_workers=3, silence_logs=logging.CRITICAL, seed=0) as backend:
        backend.run(F, SCHEMES["bacc"], X)
        yield backend


@pytest.fixture
def backend(request):
    if request.param == "dask":
        return request.getfixturevalue("dask")
    return workers.VmapBackend() if request.param == "vmap" else workers.ShardedBackend()


def _installed(dask_worker) -> list[str]:
    """Names of the f's installed on a worker (runs on the worker)."""
    return [name for name in dask_worker.plugins if name.startswith("letcc-f-")]


def _scaled():
    """f(x; a) = a F(x), built in a function so that cloudpickle ships it by value."""

    def f(x, a):
        return a * F(x)

    return f


def _fails_on_the_workers():
    """An f that traces on the master but raises in every other process."""
    master = os.getpid()

    def f(x):
        if os.getpid() != master:
            raise RuntimeError("f cannot run here")
        return F(x)

    return f


class _Unhashable:
    __hash__ = None

    def __call__(self, x):
        return F(x)


_REJECTED = [
    ({"wait_for": True}, ValueError, "wait_for"),
    ({"wait_for": 12.0}, ValueError, "wait_for"),
    ({"wait_for": 0}, ValueError, "wait_for"),
    ({"wait_for": -3}, ValueError, "wait_for"),
    ({"wait_for": "12"}, ValueError, "wait_for"),
    ({"deadline": float("nan")}, ValueError, "deadline"),
    ({"deadline": -1.0}, ValueError, "deadline"),
    ({"deadline": 0}, ValueError, "deadline"),
    ({"deadline": True}, ValueError, "deadline"),
    ({"deadline": "5"}, ValueError, "deadline"),
    ({"alive": np.ones(N - 1, bool)}, ValueError, "alive"),
    ({"alive": np.ones((N, 1), bool)}, ValueError, "alive"),
    ({"alive": np.ones(N, np.int32)}, TypeError, "alive"),
    ({"faults": workers.WorkerFaults(nan=[N])}, ValueError, "outside"),
    ({"X": np.concatenate([X, X[:1]])}, ValueError, "X must have shape"),
    ({"X": np.where(np.eye(K, X.shape[1], dtype=bool), np.nan, X)}, ValueError, "non-finite"),
    ({"f": lambda x: F(x).astype(jnp.complex64)}, TypeError, "floating"),
    ({"f": lambda x: F(x).astype(jnp.int32)}, TypeError, "floating"),
    ({"f": _Unhashable()}, TypeError, "hashable"),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("kwargs, error, match", _REJECTED)
def test_unusable_arguments_are_named(backend, kwargs, error, match):
    args = {"f": F, "X": X, **kwargs}
    with pytest.raises(error, match=match):
        backend.run(args.pop("f"), SCHEMES["bacc"], args.pop("X"), **args)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_infinite_deadline_means_none(backend):
    result = backend.run(F, SCHEMES["bacc"], X, deadline=float("inf"))
    assert result.used.all()
    ref = workers.run(F, SCHEMES["bacc"], X)
    np.testing.assert_allclose(result.estimate, ref.estimate, rtol=1e-5, atol=1e-5)


@pytest.mark.timeout(60)
def test_numpy_numbers_are_accepted(dask):
    scheme = SCHEMES["letcc"]
    result = dask.run(F, scheme, X, wait_for=np.int64(12), deadline=np.float32(60.0))
    assert result.used.sum() >= 12
    ref = workers.run(F, scheme, X, alive=result.used)
    np.testing.assert_allclose(result.estimate, ref.estimate, rtol=1e-5, atol=1e-5)


@pytest.mark.timeout(60)
def test_f_failing_on_every_worker_raises_with_the_cause(dask):
    with pytest.raises(workers.NotEnoughResults, match="cannot run here") as info:
        dask.run(_fails_on_the_workers(), SCHEMES["bacc"], X)
    assert isinstance(info.value.__cause__, RuntimeError)


@pytest.mark.timeout(60)
def test_unpicklable_f_says_what_to_do(dask):
    lock = threading.Lock()

    def f(x):
        with lock:
            return F(x)

    with pytest.raises(TypeError, match=r"f must be picklable \(with cloudpickle\)") as info:
        dask.run(f, SCHEMES["bacc"], X)
    assert info.value.__cause__ is not None


@pytest.mark.timeout(120)
def test_a_rebuilt_f_is_picked_up(dask):
    """Each round gets a fresh f (more than the backend keeps installed), the previous one
    garbage-collected: ids may repeat, results must not."""
    scheme = SCHEMES["bacc"]
    estimates = []
    for a in np.linspace(0.5, 3.0, 10).tolist():
        f = functools.partial(_scaled(), a=a)
        got = dask.run(f, scheme, X).estimate
        np.testing.assert_allclose(got, workers.run(f, scheme, X).estimate, rtol=1e-5, atol=1e-5)
        estimates.append(got)
        del f
    assert len({e.tobytes() for e in estimates}) == len(estimates)
    installed = dask.client.run(_installed)
    assert all(1 <= len(names) <= 8 for names in installed.values())  # old f's are removed


@pytest.mark.timeout(60)
def test_a_borrowed_client_outlives_the_backend(dask):
    before = dask.client.run(_installed)
    with workers.DaskBackend(client=dask.client) as shared:
        shared.run(F, SCHEMES["bacc"], X)
        assert all(len(names) == len(before[w]) + 1 for w, names in dask.client.run(_installed).items())
    assert dask.client.run(_installed) == before  # its f is gone from the workers
    assert dask.client.status == "running"
    shared.close()  # closing twice is harmless
    with pytest.raises(RuntimeError, match="this DaskBackend is closed"):
        shared.run(F, SCHEMES["bacc"], X)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_workers": -1}, "n_workers"),
        ({"n_workers": 1.5}, "n_workers"),
        ({"threads_per_worker": 0}, "threads_per_worker"),
        ({"worker_timeout": 0.0}, "worker_timeout"),
        ({"worker_timeout": float("nan")}, "worker_timeout"),
    ],
)
def test_unusable_cluster_settings_are_named(kwargs, match):
    pytest.importorskip("distributed")
    with pytest.raises(ValueError, match=match):
        workers.DaskBackend(**kwargs)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"client": "tcp://127.0.0.1:8786"}, TypeError, "client must be a distributed.Client"),
        ({"address": 8786}, TypeError, "address must be"),
        ({"address": "tcp://127.0.0.1:1", "connect_timeout": 0}, ValueError, "connect_timeout"),
        ({"n_workers": 1, "processes": False, "bogus_kw": 1, "silence_logs": logging.CRITICAL},
         TypeError, r"bogus_kw.*may be invalid"),
        ({"address": "tcp://127.0.0.1:1", "n_workers": 3}, ValueError,
         r"\['n_workers'\] configure the cluster that DaskBackend starts.*leave out address="),
        ({"address": "tcp://127.0.0.1:1", "processes": False, "threads_per_worker": 2},
         ValueError, r"\['processes', 'threads_per_worker'\] configure"),
        ({"address": ""}, ValueError, "address is empty"),
        ({"connect_timeout": 5.0, "n_workers": 0, "processes": False}, ValueError,
         "connect_timeout applies only to connecting to a scheduler at address="),
        ({"n_workers": 0, "processes": "no"}, TypeError, "processes must be True"),
        ({"n_workers": 0, "processes": False, "seed": "abc"}, TypeError,
         "seed must be None, an int >= 0 or a numpy.random.Generator, got 'abc'"),
        ({"n_workers": 0, "processes": False, "seed": 1.5}, TypeError, "seed must be None"),
        ({"n_workers": 0, "processes": False, "seed": -1}, ValueError, "seed must be an int >= 0"),
    ],
)
def test_unusable_backend_arguments_are_named(kwargs, error, match):
    pytest.importorskip("distributed")
    with pytest.raises(error, match=match):
        workers.DaskBackend(**kwargs)


@pytest.mark.timeout(30)
def test_an_invalid_cluster_keyword_in_worker_processes_is_named():
    pytest.importorskip("distributed")
    with pytest.raises(TypeError, match=r"unexpected keyword.*bogus_kw.*may be invalid") as info:
        workers.DaskBackend(n_workers=1, bogus_kw=1, silence_logs=logging.CRITICAL)
    assert info.value.__cause__ is not None


@pytest.mark.timeout(60)
def test_a_borrowed_client_takes_no_cluster_settings(dask):
    with pytest.raises(ValueError, match=r"\['n_workers'\] configure.*leave out client="):
        workers.DaskBackend(client=dask.client, n_workers=3)


@pytest.mark.timeout(20)
def test_an_unreachable_scheduler_is_a_clear_error():
    pytest.importorskip("distributed")
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match=r"tcp://127.0.0.1:1.*connect_timeout=0.5") as info:
        workers.DaskBackend(address="tcp://127.0.0.1:1", connect_timeout=0.5)
    assert time.perf_counter() - start < 10
    assert isinstance(info.value.__cause__, OSError)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"delay": {0: "1"}}, TypeError, r"delay\[0\] must be a real number"),
        ({"delay": [1, 2]}, TypeError, "delay must be a mapping"),
        ({"delay": {0.5: 1.0}}, TypeError, "delay must hold worker indices"),
        ({"fail": 3}, TypeError, "fail must be a collection"),
        ({"nan": "12"}, TypeError, "nan must be a collection"),
        ({"garbage_scale": "big"}, TypeError, "garbage_scale must be a real number"),
        ({"garbage_scale": float("inf")}, ValueError, "garbage_scale must be finite"),
    ],
)
def test_worker_faults_fields_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        workers.WorkerFaults(**kwargs)


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        ((16, 2.5, 1.0), {}, ValueError, "S must be an int"),
        (("16", 2, 1.0), {}, ValueError, "N must be an int"),
        ((16, 2, "1"), {}, TypeError, "delay must be a real number"),
        ((16, 2, 1.0), {"seed": "x"}, TypeError, "seed must be an int"),
    ],
)
def test_worker_faults_slow_arguments_are_named(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        workers.WorkerFaults.slow(*args, **kwargs)


def test_worker_faults_accept_numpy_numbers():
    faults = workers.WorkerFaults.slow(np.int64(16), np.int32(2), np.float32(0.5), seed=np.int64(3))
    assert len(faults.delay) == 2 and set(faults.delay.values()) == {0.5}
    faults = workers.WorkerFaults(delay={np.int64(1): np.float64(2)}, fail=np.array([1, 2]),
                                  garbage_scale=np.float32(3))
    assert faults.delay == {1: 2.0} and faults.fail == {1, 2} and faults.garbage_scale == 3.0


@pytest.mark.timeout(60)
def test_close_is_idempotent_and_final():
    pytest.importorskip("distributed")
    backend = workers.DaskBackend(processes=False, n_workers=1, silence_logs=logging.CRITICAL)
    backend.run(F, SCHEMES["bacc"], X)
    backend.close()
    backend.close()
    with pytest.raises(RuntimeError, match="this DaskBackend is closed"):
        backend.run(F, SCHEMES["bacc"], X)


@contextlib.contextmanager
def _in_process_cluster(n_workers: int, worker_timeout: float):
    """A quiet in-process ``LocalCluster`` of ``n_workers``, its client, and a borrowing
    ``DaskBackend`` with ``worker_timeout``: ``(cluster, client, backend)``."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=n_workers, processes=False, host="127.0.0.1", protocol="tcp://",
            dashboard_address="127.0.0.1:0", scheduler_kwargs={"dashboard": False},
            silence_logs=logging.CRITICAL,
        ) as cluster,
        distributed.Client(cluster) as client,
        workers.DaskBackend(client=client, worker_timeout=worker_timeout) as backend,
    ):
        yield cluster, client, backend


@pytest.mark.timeout(60)
def test_a_cluster_without_workers_is_a_clear_error():
    with _in_process_cluster(n_workers=0, worker_timeout=1.0) as (cluster, client, backend):
        for deadline in (None, 0.5):  # the deadline bounds the wait, like worker_timeout
            start = time.perf_counter()
            with pytest.raises(workers.NotEnoughResults, match="no running workers"):
                backend.run(F, SCHEMES["bacc"], X, deadline=deadline)
            assert time.perf_counter() - start < 10
        cluster.scale(1)  # a worker that joins later gets f
        result = backend.run(F, SCHEMES["bacc"], X, deadline=60.0)
    assert result.used.all()
    ref = workers.run(F, SCHEMES["bacc"], X)
    np.testing.assert_allclose(result.estimate, ref.estimate, rtol=1e-5, atol=1e-5)


@pytest.mark.timeout(60)
def test_a_round_that_loses_every_worker_ends():
    """The cluster's only worker leaves mid-round and none replaces it: a round without a
    deadline ends worker_timeout later, its unfinished tasks lost, naming the worker."""
    with _in_process_cluster(n_workers=1, worker_timeout=0.5) as (cluster, client, backend):
        (address,) = client.nthreads()

        def leave():
            _until(lambda: any(client.processing().values()))
            cluster.scale(0)

        leaving = threading.Thread(target=leave)
        leaving.start()
        slow = workers.WorkerFaults(delay={n: 20.0 for n in range(N)})  # in flight until then
        start = time.perf_counter()
        with pytest.raises(workers.NotEnoughResults, match=rf"lost every worker during the "
                           rf"round \({address}\).*worker_timeout=0.5 s") as info:
            backend.run(F, SCHEMES["bacc"], X, faults=slow)
        assert time.perf_counter() - start < 10
        leaving.join()
    assert "lost: no Dask worker was left to run it" in str(info.value)


def _until(condition, timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.1)
    return True


def _kill_when_busy(client, pids):
    """Kill the processes ``pids`` once the cluster has tasks to run."""
    _until(lambda: any(client.processing().values()))
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(150)
def test_workers_the_cluster_gave_up_on_are_started_again(dask):
    """A LocalCluster closes the nanny of a worker whose restart outlasts
    distributed.deploy.lost-worker-timeout (15 s, which a loaded machine reaches) and never
    replaces it; the backend starts it again. A timeout of 0 makes every restart too slow."""
    dask_config = pytest.importorskip("dask.config")
    pids = dask.client.run(os.getpid)
    victim = pids[min(pids)]
    slow = workers.WorkerFaults(delay={n: 1.0 for n in range(N)})
    with dask_config.set({"distributed.deploy.lost-worker-timeout": "0s"}):
        killer = threading.Thread(target=_kill_when_busy, args=(dask.client, [victim]))
        killer.start()
        result = dask.run(F, SCHEMES["bacc"], X, faults=slow, deadline=90.0)
        killer.join()
        dask.client.wait_for_workers(3, timeout=60)
    assert result.used.all() and result.errors == {}, result.errors
    assert victim not in dask.client.run(os.getpid).values()
    assert _until(lambda: all(dask.client.run(_installed).values()))  # the new one holds f


@pytest.mark.timeout(120)
def test_killed_worker_processes_lose_no_result(dask):
    """Runs last in this module: worker processes are killed mid-round (as many kills as
    processes). Whatever the dispatch order, Dask re-runs the killed tasks, and the
    replacement processes get f, so the round decodes from every result, as it asked."""
    scheme = SCHEMES["letcc"]
    pids = set(dask.client.run(os.getpid).values())
    killed = [1, 6, 11]
    result = dask.run(F, scheme, X, faults=workers.WorkerFaults(kill=killed), deadline=90.0)
    assert result.used.all() and result.errors == {}, result.errors
    full = workers.run(F, scheme, X)
    np.testing.assert_allclose(result.estimate, full.estimate, rtol=1e-5, atol=1e-5)
    dask.client.wait_for_workers(3, timeout=60)
    assert set(dask.client.run(os.getpid).values()) != pids  # processes were replaced
    assert _until(lambda: all(dask.client.run(_installed).values()))  # and hold f
    # Asked for fewer results, the round still never decodes from fewer. (Kills may still
    # land after it returns, so nothing runs on the cluster after it.)
    result = dask.run(F, scheme, X, wait_for=N - 3, faults=workers.WorkerFaults(kill=killed),
                      deadline=90.0)
    assert result.used.sum() >= N - 3 and result.errors == {}, result.errors
    ref = workers.run(F, scheme, X, alive=result.used)
    np.testing.assert_allclose(result.estimate, ref.estimate, rtol=1e-5, atol=1e-5)
