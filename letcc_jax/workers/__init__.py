"""Coded computing on real workers: one execution interface, interchangeable backends.

The master encodes the K inputs (K, d) into N coded inputs (N, d), the workers evaluate f on
them, and the master decodes the (K, m) estimates from the valid results that arrived.

Backends:
  - ``"vmap"`` (``VmapBackend``): all N workers vectorised on one device.
  - ``"sharded"`` (``ShardedBackend``): the workers spread over a mesh axis "workers" with
    ``jax.shard_map``, on any platform and across hosts.
  - ``"dask"`` (``DaskBackend``, needs the ``dask`` extra): each coded input is a Dask
    task; the master decodes from the first ``wait_for`` valid results or at a deadline and
    cancels the rest. ``WorkerFaults`` injects delays (also drawn from the shifted-exponential
    and Pareto service times of the straggler literature), exceptions, killed processes, NaN
    and garbage.

``decode_at_deadlines`` replays a round that waited for every worker under a range of
deadlines (or first-replica stopping for replication): the estimate and the latency of each,
for latency-against-accuracy comparisons on the same arrivals. ``run(..., tolerance=)``
stops a Dask round once every estimate's (calibrated) interval half-width is within the
tolerance, and ``decode_at_tolerances`` replays a recorded round under many tolerances.

Quick start::

    import letcc_jax as lc
    from letcc_jax import workers

    scheme = lc.letcc(K=8, N=16)
    result = workers.run(f, scheme, X)                    # vmap, every worker answers
    with workers.DaskBackend(n_workers=4) as dask:        # in a script: under __main__
        result = dask.run(f, scheme, X, wait_for=12, deadline=5.0)
    result.estimate, result.used, result.timings.total_s  # (K, m), (N,), seconds

The lockstep backends take stragglers as a mask (``alive=``); the Dask backend also meets
real ones. The same ``alive`` mask gives the same decoded result on every backend.
"""

from __future__ import annotations

from collections.abc import Callable

from ..core._schemes import Scheme
from ._base import Backend, NotEnoughResults, Timings, WorkerResult
from ._faults import InjectedFault, WorkerFaults
from ._latency import (POLICIES, DeadlineDecode, ToleranceDecode, decode_at_deadlines,
                       decode_at_tolerances)
from ._local import ShardedBackend, VmapBackend

__all__ = [
    "BACKENDS",
    "POLICIES",
    "Backend",
    "DaskBackend",
    "DeadlineDecode",
    "InjectedFault",
    "NotEnoughResults",
    "ShardedBackend",
    "Timings",
    "ToleranceDecode",
    "VmapBackend",
    "WorkerFaults",
    "WorkerResult",
    "decode_at_deadlines",
    "decode_at_tolerances",
    "run",
]

BACKENDS = ("vmap", "sharded", "dask")


def __getattr__(name):
    # Dask is an optional dependency: import it only when asked for.
    if name == "DaskBackend":
        from ._dask import DaskBackend

        return DaskBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run(
    f: Callable,
    scheme: Scheme,
    X,
    *,
    backend: str | Backend = "vmap",
    alive=None,
    wait_for: int | None = None,
    deadline: float | None = None,
    faults: WorkerFaults | None = None,
    tolerance: float | None = None,
    level: float = 0.95,
    calibration=None,
) -> WorkerResult:
    """One round of coded computing on real workers: encode X, evaluate f, decode.

    Args:
      f: one input (d,) -> one output (flattened to (m,)); hashable, and picklable
        (cloudpickle) for Dask. f is compiled (and shipped) once per f object, so it must not
        change behaviour after its first use; pass a new f instead of mutating one.
      scheme: a coding scheme, e.g. ``letcc_jax.letcc(K, N)``.
      X: (K, d) inputs.
      backend: a name in ``BACKENDS`` or a ``Backend`` instance. By name, ``"dask"`` starts
        an embedded local cluster for this call only (its worker processes are spawned: call
        it under ``if __name__ == "__main__":`` in a script); make a ``DaskBackend`` once to
        run many rounds.
      alive: (N,) bool, workers that take part; the rest are stragglers (default: all).
      wait_for: Dask only: decode once this many valid results are in and they determine
        every input (default: all workers in ``alive``).
      deadline: Dask only: seconds after the round starts (shipping f included) at which to
        decode from what arrived; ``inf`` or None: no deadline.
      faults: Dask only: ``WorkerFaults`` to inject.
      tolerance: Dask only: decode as soon as every estimate's interval half-width is at
        most this (a scheme with posterior standard errors; see ``Backend.run``), e.g. with
        ``calibration=lc.calibrate(...)``; ``decode_at_tolerances`` replays a recorded
        round under many tolerances.
      level, calibration: the intervals of ``tolerance`` (see ``Backend.run``).

    Returns:
      A ``WorkerResult``: ``estimate`` (K, m), ``used`` and ``answered`` (N,) masks,
      ``outputs`` (N, m), per-worker ``errors``, and ``timings``.

    Raises:
      NotEnoughResults: the valid results cannot give every input an estimate.
      ValueError: an unknown backend name; and as ``Backend.run``: ``alive``, X,
        ``wait_for`` or ``deadline`` out of shape or range, or an option that needs the
        Dask backend.
      TypeError: as ``Backend.run``: f not callable or hashable, or not giving one real
        array; a scheme, ``alive`` or ``faults`` of the wrong type.

    Example:
      >>> import jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> from letcc_jax import workers
      >>> def f(x):
      ...     return jnp.sin(x)
      >>> result = workers.run(f, lc.bacc(4, 10), jnp.ones((4, 2)))  # every worker answers
      >>> result.estimate.shape, int(result.used.sum()), result.backend
      ((4, 2), 10, 'vmap')
    """
    options = dict(alive=alive, wait_for=wait_for, deadline=deadline, faults=faults,
                   tolerance=tolerance, level=level, calibration=calibration)
    if isinstance(backend, Backend):
        return backend.run(f, scheme, X, **options)
    if backend == "vmap":
        return VmapBackend().run(f, scheme, X, **options)
    if backend == "sharded":
        return ShardedBackend().run(f, scheme, X, **options)
    if backend == "dask":
        from ._dask import DaskBackend

        with DaskBackend() as dask:
            return dask.run(f, scheme, X, **options)
    raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS} or pass a Backend instance.")
