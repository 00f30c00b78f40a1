"""The Dask backend on an embedded loopback cluster: first-|F| semantics, cancellation,
deadlines, and injected faults (delays, exceptions, NaN, garbage, killed processes)."""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback

import jax
import numpy as np
import psutil
import pytest

pytest.importorskip("distributed")

from dask import config as dask_config  # noqa: E402
from dask.utils import parse_timedelta  # noqa: E402
from test_workers_dask_hostile import _installed  # noqa: E402
from workers_common import ALIVE, F, K, N, SCHEMES, X  # noqa: E402

import letcc_jax as lc  # noqa: E402
from letcc_jax import workers  # noqa: E402

LONG = 60.0  # an injected delay no passing test waits for


@pytest.fixture(scope="module")
def dask():
    """Two worker processes with two threads each, warmed up (JAX imported, f compiled)."""
    with workers.DaskBackend(
        n_workers=2, threads_per_worker=2, silence_logs=logging.CRITICAL
    ) as backend:
        backend.run(F, SCHEMES["bacc"], X)
        yield backend


def _straggling(dask_worker) -> int:
    """Threads of a worker still inside an injected delay (runs on the worker)."""
    return sum(
        any(frame.f_code.co_name == "_straggle" for frame, _ in traceback.walk_stack(top))
        for top in sys._current_frames().values()
    )


def _idle(backend, timeout: float = 5.0) -> bool:
    """Whether every injected delay on the cluster ends within ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not any(backend.client.run(_straggling).values()):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["letcc", "bacc", "uncoded"])
def test_backends_agree_on_the_same_stragglers(dask, name):
    scheme = SCHEMES[name]
    ref = workers.run(F, scheme, X, alive=ALIVE)
    sharded = workers.run(F, scheme, X, alive=ALIVE, backend="sharded")
    masked = dask.run(F, scheme, X, alive=ALIVE)
    slow = workers.WorkerFaults(delay={n: LONG for n in np.flatnonzero(~ALIVE).tolist()})
    delayed = dask.run(F, scheme, X, wait_for=int(ALIVE.sum()), faults=slow)
    for got in (sharded, masked, delayed):
        np.testing.assert_array_equal(got.used, ALIVE)
        np.testing.assert_allclose(got.estimate, ref.estimate, rtol=1e-5, atol=1e-5)
    assert masked.backend == delayed.backend == "dask"
    assert np.isfinite(delayed.timings.worker_s[ALIVE]).all()
    assert np.isnan(delayed.timings.arrival_s[~ALIVE]).all()
    assert _idle(dask)


@pytest.mark.timeout(60)
def test_f_is_shipped_once_per_worker(dask):
    for _ in range(3):
        dask.run(F, SCHEMES["bacc"], X)
    # f stays on every worker when idle: the active memory manager, which trims replicated
    # data back to one copy, does not touch it (else every task would run where f is).
    interval = dask_config.get("distributed.scheduler.active-memory-manager.interval")
    time.sleep(parse_timedelta(interval) + 0.5)
    installed = dask.client.run(_installed)
    assert len(installed) == 2  # every worker holds f
    assert all(len(names) == 1 for names in installed.values())  # once, reused by every round
    assert len(set(sum(installed.values(), []))) == 1


@pytest.mark.timeout(60)
def test_decodes_from_the_first_wait_for_results(dask):
    scheme = SCHEMES["letcc"]
    result = dask.run(F, scheme, X, wait_for=10)
    assert result.used.sum() == result.answered.sum() == 10
    arrival = result.timings.arrival_s
    assert np.nanmax(arrival) <= result.timings.compute_s
    ref = workers.run(F, scheme, X, alive=result.used)
    np.testing.assert_allclose(result.estimate, ref.estimate, rtol=1e-5, atol=1e-5)
    assert _idle(dask)


@pytest.mark.timeout(60)
def test_replication_waits_for_one_replica_of_each_input(dask):
    scheme = SCHEMES["uncoded"]  # replicas n and n + K
    slow = workers.WorkerFaults(delay={3: LONG, 5 + K: LONG})
    result = dask.run(F, scheme, X, wait_for=K, faults=slow)
    assert result.used.sum() >= K and not result.used[[3, 5 + K]].any()
    assert result.used[[3 + K, 5]].all()
    ref = workers.run(F, scheme, X, alive=result.used)
    np.testing.assert_allclose(result.estimate, ref.estimate, rtol=1e-5, atol=1e-5)


@pytest.mark.timeout(60)
def test_cancelled_stragglers_stop(dask):
    slow = workers.WorkerFaults(delay={0: LONG, 1: LONG, 2: LONG, 3: LONG, 4: LONG})
    start = time.perf_counter()
    result = dask.run(F, SCHEMES["bacc"], X, wait_for=N - 5, faults=slow)
    assert time.perf_counter() - start < 10
    assert not result.used[:5].any() and result.used[5:].all()
    assert _idle(dask)  # the delayed tasks noticed the cancellation and ended


@pytest.mark.timeout(60)
def test_deadline_decodes_from_what_arrived(dask):
    late = list(range(N - 4, N))  # submitted last, so the others run first
    slow = workers.WorkerFaults(delay={n: LONG for n in late})
    start = time.perf_counter()
    result = dask.run(F, SCHEMES["bacc"], X, deadline=2.0, faults=slow)
    assert 2.0 <= time.perf_counter() - start < 10
    np.testing.assert_array_equal(result.used, ~np.isin(np.arange(N), late))
    assert _idle(dask)


@pytest.mark.timeout(60)
def test_tolerance_stops_once_every_interval_is_within_it(dask):
    """Four workers hang; the others' results make every half-width small enough, so the
    round ends long before the hung ones, with the estimates the posterior gives on what
    it used. A tolerance no result can meet waits for the deadline instead."""
    scheme = SCHEMES["letcc"]
    late = list(range(N - 4, N))
    slow = workers.WorkerFaults(delay={n: LONG for n in late})
    start = time.perf_counter()
    result = dask.run(F, scheme, X, tolerance=10.0, faults=slow)
    assert time.perf_counter() - start < 20 and not result.used[late].any()
    post = scheme.posterior(result.outputs, result.used)
    np.testing.assert_allclose(result.estimate, post.estimate, rtol=1e-5, atol=1e-5)
    assert float(np.max(1.959963984540054 * np.asarray(post.std))) <= 10.0
    start = time.perf_counter()
    result = dask.run(F, scheme, X, tolerance=1e-12, deadline=2.0, faults=slow)
    assert 2.0 <= time.perf_counter() - start < 10
    np.testing.assert_array_equal(result.used, ~np.isin(np.arange(N), late))
    with pytest.raises(TypeError, match="posterior standard errors"):
        dask.run(F, SCHEMES["bacc"], X, tolerance=1.0)
    assert _idle(dask)


@pytest.mark.timeout(60)
def test_deadline_without_enough_results_raises(dask):
    scheme = lc.uncoded(K, K)
    slow = workers.WorkerFaults(delay={K - 1: LONG})
    # Input 7 is lost whatever else a loaded machine leaves unfinished by the deadline.
    lost = r"input\(s\) \[(\d+, )*7\] without an estimate.*deadline of 3.0 s passed"
    with pytest.raises(workers.NotEnoughResults, match=lost):
        dask.run(F, scheme, X, deadline=3.0, faults=slow)
    assert _idle(dask)


@pytest.mark.timeout(60)
def test_exceptions_are_erasures(dask):
    scheme = SCHEMES["letcc"]
    result = dask.run(F, scheme, X, faults=workers.WorkerFaults(fail=[2, 7, 11]))
    np.testing.assert_array_equal(result.used, ALIVE)
    assert not result.answered[[2, 7, 11]].any()
    assert set(result.errors) == {2, 7, 11}
    assert all(e.startswith("InjectedFault") for e in result.errors.values())
    ref = workers.run(F, scheme, X, alive=ALIVE)
    np.testing.assert_allclose(result.estimate, ref.estimate, rtol=1e-5, atol=1e-5)


@pytest.mark.timeout(60)
def test_a_lost_input_fails_loudly_with_the_cause(dask):
    with pytest.raises(workers.NotEnoughResults, match=r"input\(s\) \[3\]") as info:
        dask.run(F, lc.uncoded(K, K), X, faults=workers.WorkerFaults(fail=[3]))
    assert isinstance(info.value.__cause__, workers.InjectedFault)


@pytest.mark.timeout(60)
def test_nan_and_garbage_outputs(dask):
    scheme = SCHEMES["bacc"]
    faults = workers.WorkerFaults(nan=[2, 7, 11], garbage=[5], garbage_scale=50.0)
    result = dask.run(F, scheme, X, faults=faults)
    assert result.answered.all()
    np.testing.assert_array_equal(result.used, ALIVE)  # NaN rows are erasures
    assert np.isnan(result.outputs[[2, 7, 11]]).all()
    clean = workers.run(F, scheme, X)
    assert np.abs(result.outputs[5]).max() > 1.0 >= np.abs(clean.outputs).max()
    np.testing.assert_allclose(np.delete(result.outputs, [2, 5, 7, 11], 0),
                               np.delete(clean.outputs, [2, 5, 7, 11], 0), rtol=1e-5, atol=1e-6)
    # The garbage is decoded through: the master cannot tell it from a real answer.
    honest = workers.run(F, scheme, X, alive=ALIVE)
    assert np.abs(result.estimate - honest.estimate).max() > 1e-2



@pytest.mark.timeout(60)
def test_garbage_beyond_the_outputs_dtype_stays_finite(dask):
    # a scale beyond float32's range must not become inf, which would make the garbage
    # an erasure (harmless) instead of the undetectable answer it stands for
    faults = workers.WorkerFaults(garbage=[5], garbage_scale=1e39)
    result = dask.run(F, SCHEMES["bacc"], X, faults=faults)
    assert result.outputs.dtype == np.float32 and result.used[5]
    assert np.isfinite(result.outputs[5]).all()
    assert np.abs(result.outputs[5]).max() > 1e37

@pytest.mark.timeout(60)
def test_shared_client_and_scheduler_address(dask):
    with workers.DaskBackend(client=dask.client) as shared:
        a = shared.run(F, SCHEMES["bacc"], X, alive=ALIVE)
    assert dask.client.status == "running"  # a borrowed client stays open
    with workers.DaskBackend(address=dask.client.scheduler.address) as remote:
        b = remote.run(F, SCHEMES["bacc"], X, alive=ALIVE)
    np.testing.assert_allclose(a.estimate, b.estimate, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="either client= or address="):
        workers.DaskBackend(client=dask.client, address="tcp://127.0.0.1:1")


@pytest.mark.timeout(120)
def test_killed_worker_process_loses_no_input(dask):
    """Runs last in this module: the cluster replaces the killed process."""
    pids = set(dask.client.run(os.getpid).values())
    scheme = SCHEMES["letcc"]
    result = dask.run(F, scheme, X, faults=workers.WorkerFaults(kill=[4]), deadline=60.0)
    assert result.used.all()  # the cluster re-ran the task elsewhere
    ref = workers.run(F, scheme, X)
    np.testing.assert_allclose(result.estimate, ref.estimate, rtol=1e-5, atol=1e-5)
    dask.client.wait_for_workers(2, timeout=30)
    assert set(dask.client.run(os.getpid).values()) != pids


def _listening(pid: int) -> set[str]:
    """Addresses on which a process (and its children) accept connections."""
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return {
        c.laddr.ip for p in procs for c in p.net_connections("inet") if c.status == psutil.CONN_LISTEN
    }


@pytest.mark.timeout(60)
def test_embedded_cluster_listens_on_loopback_only(dask):
    assert _listening(os.getpid()) == {"127.0.0.1"}


@pytest.mark.timeout(60)
def test_threads_in_the_master_refuse_to_be_killed():
    with workers.DaskBackend(processes=False, n_workers=1, threads_per_worker=2,
                             silence_logs=logging.CRITICAL) as threads:
        assert _listening(os.getpid()) == {"127.0.0.1"}
        result = threads.run(F, SCHEMES["bacc"], X, faults=workers.WorkerFaults(kill=[1]))
    assert "needs worker processes" in result.errors[1]
    assert not result.used[1] and result.used.sum() == N - 1


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_backend_by_name_starts_and_stops_a_cluster():
    result = workers.run(F, SCHEMES["bacc"], X, backend="dask", alive=ALIVE)
    ref = workers.run(F, SCHEMES["bacc"], X, alive=ALIVE)
    np.testing.assert_allclose(result.estimate, ref.estimate, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_float64_workers_follow_the_master():
    with jax.enable_x64(True):
        scheme = lc.bacc(K, N)
        X64 = X.astype(np.float64)
        with workers.DaskBackend(n_workers=1, silence_logs=logging.CRITICAL) as backend:
            result = backend.run(F, scheme, X64, alive=ALIVE)
        ref = workers.run(F, scheme, X64, alive=ALIVE)
    assert result.estimate.dtype == np.float64
    np.testing.assert_allclose(result.estimate, ref.estimate, rtol=1e-12, atol=1e-12)
