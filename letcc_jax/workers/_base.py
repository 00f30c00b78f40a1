"""One round of coded computing on real workers, shared by every backend.

A round: the master encodes the K inputs (K, d) into N coded inputs (N, d); a backend
evaluates f on them (coded input n is worker n's job) and hands back what arrived; the master
decodes from the valid results. Backends differ only in how f runs: ``_compute``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..core._schemes import Scheme
from .._validation import at_least_float32, check_mask
from ._faults import WorkerFaults
from ._stopping import check_tolerance, half_widths, meets, multiplier, needs_posterior, widest

__all__ = ["Backend", "NotEnoughResults", "Timings", "WorkerResult"]


class NotEnoughResults(RuntimeError):
    """Too few valid worker results arrived to estimate every input.

    Raised instead of returning an estimate that silently misses an input. The message says
    how many results were valid, what happened to the others, and what the scheme needs;
    when a worker raised, the first such exception is chained as ``__cause__``.

    Example:
      >>> import jax.numpy as jnp, numpy as np
      >>> import letcc_jax as lc
      >>> from letcc_jax import workers
      >>> try:                                           # one answer cannot be decoded
      ...     workers.run(jnp.sin, lc.letcc(4, 10), jnp.ones((4, 2)), alive=np.arange(10) < 1)
      ... except workers.NotEnoughResults as exc:
      ...     print(type(exc).__name__, isinstance(exc, RuntimeError))
      NotEnoughResults True
    """


class Timings(NamedTuple):
    """Wall-clock seconds of one round.

    Attributes:
      encode_s: encoding on the master.
      compute_s: from handing the coded inputs to the backend until it handed back the
        results used (for Dask: shipping f and cancelling the rest included).
      decode_s: decoding on the master.
      total_s: the whole call, validation included.
      arrival_s: (N,) seconds after dispatch at which worker n's answer reached the master;
        NaN where none did. Lockstep backends give every answering worker the time the
        whole batch took.
      worker_s: (N,) seconds f took on worker n, measured on the worker (injected delays
        excluded); NaN where unknown (lockstep backends time only the whole batch).

    Example:
      >>> import jax.numpy as jnp, numpy as np
      >>> import letcc_jax as lc
      >>> from letcc_jax import workers
      >>> alive = np.arange(10) != 4                     # worker 4 straggles
      >>> timings = workers.run(jnp.sin, lc.bacc(4, 10), jnp.ones((4, 2)), alive=alive).timings
      >>> timings.total_s > 0, np.isnan(timings.arrival_s).tolist()[:6]
      (True, [False, False, False, False, True, False])
    """

    encode_s: float
    compute_s: float
    decode_s: float
    total_s: float
    arrival_s: np.ndarray
    worker_s: np.ndarray


class WorkerResult(NamedTuple):
    """The outcome of one round on real workers (host NumPy arrays).

    Attributes:
      estimate: (K, m) decoded estimates of f(x_1), ..., f(x_K).
      used: (N,) bool, the results the decoder used (answered in time, right shape, finite).
      answered: (N,) bool, workers whose result reached the master before decoding, valid or
        not (a NaN or garbage answer counts as answered but not used).
      outputs: (N, m) what the workers returned; NaN rows where no usable-shaped answer came.
      errors: worker index -> what went wrong there (an exception raised by f or injected, a
        killed worker, a malformed answer). Workers that were merely slow are not listed.
      timings: where the time went, see ``Timings``.
      backend: name of the backend that ran the round.

    Example:
      >>> import jax.numpy as jnp, numpy as np
      >>> import letcc_jax as lc
      >>> from letcc_jax import workers
      >>> alive = np.arange(10) != 4                     # worker 4 straggles
      >>> result = workers.run(jnp.sin, lc.bacc(4, 10), jnp.ones((4, 2)), alive=alive)
      >>> result.estimate.shape, result.used.tolist()[:6], result.errors
      ((4, 2), [True, True, True, True, False, True], {})
    """

    estimate: np.ndarray
    used: np.ndarray
    answered: np.ndarray
    outputs: np.ndarray
    errors: Mapping[int, str]
    timings: Timings
    backend: str


@dataclasses.dataclass(frozen=True)
class Round:
    """What the driver hands a backend for one round.

    Attributes:
      alive: (N,) bool, workers that take part (the others are simulated stragglers).
      wait_for: as passed to ``run`` (None = every worker in ``alive``); ``enough`` applies it.
      deadline: seconds after the backend starts the round at which to stop waiting
        (None = no deadline).
      faults: injected worker faults, or None.
      m: size of one output of f.
      dtype: dtype of the outputs.
      enough: maps an (N,) mask of valid results and the (N, m) outputs so far to whether
        decoding may start.
      tolerance: as passed to ``run`` (None: no stopping at a tolerance); ``enough``
        applies it.
    """

    alive: np.ndarray
    wait_for: int | None
    deadline: float | None
    faults: WorkerFaults | None
    m: int
    dtype: np.dtype
    enough: Callable[[np.ndarray, np.ndarray], bool]
    tolerance: float | None = None


@dataclasses.dataclass
class Answers:
    """What a backend hands back: an (N, m) array of outputs (NaN rows where no usable
    answer), the (N,) ``answered`` mask, per-worker ``arrival_s`` and ``worker_s`` (see
    ``Timings``), and per-worker ``errors``. ``cause`` is the first exception a worker
    raised, chained into ``NotEnoughResults``; ``note`` says why collection stopped early
    (e.g. the deadline), for error messages."""

    outputs: np.ndarray
    answered: np.ndarray
    arrival_s: np.ndarray
    worker_s: np.ndarray
    errors: dict[int, str] = dataclasses.field(default_factory=dict)
    cause: BaseException | None = None
    note: str = ""

    @classmethod
    def empty(cls, N: int, m: int, dtype) -> Answers:
        nan = np.full((N,), np.nan)
        return cls(np.full((N, m), np.nan, dtype), np.zeros((N,), bool), nan, nan.copy())

    def valid(self) -> np.ndarray:
        """(N,) mask of answers the decoder can use (``Scheme.effective_mask``)."""
        return np.asarray(Scheme.effective_mask(self.outputs, self.answered))


class Backend:
    """An execution backend: where and how the N workers evaluate f.

    Every backend runs a round the same way through :meth:`run`; subclasses implement
    ``_compute`` (evaluate f on the coded inputs and report what arrived).

    Example:
      >>> from letcc_jax import workers
      >>> backends = (workers.VmapBackend(), workers.ShardedBackend())
      >>> [(isinstance(b, workers.Backend), b.name) for b in backends]
      [(True, 'vmap'), (True, 'sharded')]
    """

    name: ClassVar[str] = "backend"

    def run(
        self,
        f: Callable,
        scheme: Scheme,
        X,
        *,
        alive=None,
        wait_for: int | None = None,
        deadline: float | None = None,
        faults: WorkerFaults | None = None,
        tolerance: float | None = None,
        level: float = 0.95,
        calibration=None,
    ) -> WorkerResult:
        """Encode X, evaluate f on the N coded inputs with this backend, decode.

        Args:
          f: one input (d,) -> one output (any shape, flattened to (m,)). It must be
            hashable (a function or ``functools.partial``) and, for Dask, picklable
            (cloudpickle). Backends compile (and Dask ships) f once and reuse it for the same
            f object, so f must not change behaviour after its first use: mutating a
            callable object in place is not detected; pass a new f instead.
          scheme: a coding scheme, e.g. ``letcc_jax.letcc(K, N)``.
          X: (K, d) inputs.
          alive: (N,) bool, workers that take part; the others are stragglers whose
            results are never used (default: all). The same mask gives the same decoded
            result on every backend.
          wait_for: asynchronous backends only: decode as soon as at least this many valid
            results have arrived AND they determine every input (for replication, every
            input has an answering replica). Default: all workers in ``alive``.
          deadline: asynchronous backends only: seconds after the backend starts the round
            (shipping f and waiting for workers included) at which to decode from whatever
            valid results have arrived. ``inf`` or None: no deadline.
          faults: asynchronous backends only: injected worker faults (``WorkerFaults``).
          tolerance: asynchronous backends only: decode as soon as every estimate's interval
            half-width ``q * std`` is at most this (on the scale of f's outputs), q the
            calibrated quantile of ``level`` or the Gaussian z; with ``wait_for``, once
            both hold. Needs a scheme with posterior standard errors (LeTCC). The master
            decodes after each arrival to check. None: no such rule.
          level: the intervals' coverage in (0, 1), for ``tolerance``.
          calibration: a ``letcc_jax.Calibration`` holding ``level`` (from
            ``letcc_jax.calibrate``), or None for the Gaussian z.

        Returns:
          A ``WorkerResult``; ``estimate`` is (K, m) in the output dtype of f.

        Raises:
          NotEnoughResults: the valid results that arrived (by the deadline, or at all)
            cannot give every input an estimate.
          TypeError: f not callable or not hashable; f failing on a coded input, or not
            returning one real floating-point array; ``scheme`` not a scheme; ``alive``
            not boolean; ``faults`` not a ``WorkerFaults``; X complex or not numeric.
          ValueError: ``alive`` not (N,); X not (K, d) or not finite; ``wait_for`` not a
            positive int or above the workers in ``alive``; ``deadline`` not > 0;
            ``faults`` naming a worker outside [0, N); ``wait_for``, ``deadline`` or
            ``faults`` on a lockstep backend.
        """
        start = time.perf_counter()
        if not callable(f):
            raise TypeError(f"f must be callable (one input (d,) -> one output), got {f!r}.")
        try:
            hash(f)
        except TypeError:
            raise TypeError(
                f"f must be hashable (backends compile it once per f), got an unhashable "
                f"{type(f).__name__}; pass a function or functools.partial, or give the class "
                "identity hashing (e.g. @dataclass(eq=False))."
            ) from None
        if not isinstance(scheme, Scheme):
            raise TypeError(
                f"scheme must be a letcc_jax scheme (e.g. letcc_jax.letcc(K, N)), got {scheme!r}."
            )
        scheme.check_unpadded("run")
        N = scheme.N
        alive = np.ones((N,), bool) if alive is None else np.asarray(check_mask(alive, N))
        need = _check_wait_for(wait_for, int(alive.sum()))
        deadline = seconds_or_none(deadline, "deadline")
        if tolerance is not None:
            needs_posterior(scheme, "run")
            tolerance = check_tolerance(tolerance)
            need = 0 if wait_for is None else need  # the tolerance, not the count, decides
        if faults is not None:
            if not isinstance(faults, WorkerFaults):
                raise TypeError(f"faults must be a letcc_jax.workers.WorkerFaults, got {faults!r}.")
            faults.check(N)

        encoding = time.perf_counter()
        coded = np.asarray(scheme.encode(X))
        encoded = time.perf_counter()
        m, dtype = _output_spec(f, coded)
        scheme.check_fallback(m)
        q = None if tolerance is None else multiplier(level, calibration, m)

        def enough(valid, outputs):
            if valid.sum() < need:
                return False
            if q is None:
                return bool(np.all(scheme.recovered(valid)))
            # an input not recovered has an infinite half-width, so ``meets`` covers it
            _, half, _, _ = half_widths(scheme, outputs, valid[None], q.astype(outputs.dtype))
            return bool(meets(widest(half), tolerance)[0])

        rnd = Round(alive, wait_for, deadline, faults, m, dtype, enough, tolerance)
        dispatched = time.perf_counter()
        answers = self._compute(f, coded, rnd)
        computed = time.perf_counter()

        estimate, used, recovered = jax.device_get(
            _decode(scheme, answers.outputs, answers.answered))
        _check_enough(scheme, used, recovered, answers, self.name)
        done = time.perf_counter()
        timings = Timings(
            encoded - encoding,
            computed - dispatched,
            done - computed,
            done - start,
            answers.arrival_s,
            answers.worker_s,
        )
        return WorkerResult(
            estimate, used, answers.answered, answers.outputs, dict(answers.errors), timings, self.name
        )

    def _compute(self, f: Callable, coded: np.ndarray, rnd: Round) -> Answers:
        """Evaluate f on the (N, d) coded inputs of the workers in ``rnd.alive``."""
        raise NotImplementedError


def _check_wait_for(wait_for, alive_count: int) -> int:
    if wait_for is None:
        return alive_count
    if not isinstance(wait_for, (int, np.integer)) or isinstance(wait_for, bool) or wait_for < 1:
        raise ValueError(f"wait_for must be a positive int (a number of workers), got {wait_for!r}.")
    if wait_for > alive_count:
        raise ValueError(
            f"wait_for={wait_for} exceeds the {alive_count} workers taking part (alive); "
            "lower wait_for or mark more workers alive."
        )
    return int(wait_for)


def seconds_or_none(value, name: str) -> float | None:
    """A time limit in seconds > 0; None (no limit) for None or ``inf``."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ) or not value > 0:  # also rejects NaN
        raise ValueError(f"{name} must be a number of seconds > 0 (inf or None: no limit), got {value!r}.")
    return None if math.isinf(value) else float(value)


def _output_spec(f, coded: np.ndarray) -> tuple[int, np.dtype]:
    """Size m and dtype of one output of f, from tracing f on one coded input."""
    try:
        out = jax.eval_shape(f, jax.ShapeDtypeStruct(coded.shape[1:], coded.dtype))
    except Exception as exc:
        raise TypeError(
            f"f failed on one input of shape {coded.shape[1:]} and dtype {coded.dtype} "
            f"(traced with jax.eval_shape): {exc}"
        ) from exc
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise TypeError(f"f must return one array, got the structure {jax.tree.structure(out)}.")
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(f"f must return floating-point values, got dtype {out.dtype}.")
    return math.prod(out.shape), np.dtype(out.dtype)


def _check_enough(scheme: Scheme, used: np.ndarray, recovered: np.ndarray, answers: Answers,
                  backend: str):
    """Raise ``NotEnoughResults`` where the decode left an input without an estimate (a
    scheme with a fallback estimates a lost input by it, but not a round with no result)."""
    if scheme.fallback is not None and used.any():
        return
    try:
        scheme.check_recovered(used, recovered)
        if used.any():
            return
        reason = "a fallback estimates lost inputs, not a round without any result."
    except ValueError as exc:
        reason = str(exc)
    lost = np.flatnonzero(~recovered).tolist() or list(range(scheme.K))
    invalid = int((answers.answered & ~used).sum())
    errors = "; ".join(f"worker {n}: {e}" for n, e in list(answers.errors.items())[:3])
    raise NotEnoughResults(
        f"{scheme.name} on the {backend} backend: {int(used.sum())} valid results from N={scheme.N} "
        f"workers leave input(s) {lost[:10]}{'...' if len(lost) > 10 else ''} without an estimate "
        f"({reason}) "
        f"{invalid} answer(s) were non-finite or malformed, {len(answers.errors)} worker(s) "
        f"failed{' (' + errors + ')' if errors else ''}.{' ' + answers.note if answers.note else ''} "
        "Wait longer (deadline), add workers, or use a scheme that tolerates more stragglers."
    ) from answers.cause


@jax.jit
def _decode(scheme, Y, answered):
    """The round's one decode: erasures, recovery and the estimates together, on the device
    (half-precision outputs decode in float32, as ``Scheme.decode`` does)."""
    return scheme.decode_report(at_least_float32(Y), answered)
