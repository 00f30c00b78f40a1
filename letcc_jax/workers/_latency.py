"""Latency against accuracy: what one round would have decoded, and when, under a deadline.

A round that waits for every worker records when each answer arrived
(``WorkerResult.timings.arrival_s``). Replaying those arrivals gives, for any deadline, the
results a master with that deadline would have held, and the moment it would have stopped
waiting, without running the round again: every deadline, and every scheme run on the same
injected delays, is compared on the same arrivals.

Stopping rules (``POLICIES``):
  - ``"deadline"``: decode from the valid results that arrived by the deadline; the round
    ends at min(deadline, last arrival). With ``inf`` this is waiting for all.
  - ``"first_replica"`` (replication only, ``letcc_jax.uncoded``): keep the first valid
    answer of each input; the round ends once every input has one, or at the deadline, and
    an input without one by then is lost.
An input the decoder cannot estimate from what it holds is estimated as 0 (and reported
in ``recovered``), as in every Monte Carlo trial of the core.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .. import _validation as check
from ..core._schemes import Scheme, Uncoded, decode_masks
from ._stopping import check_tolerance, half_widths, meets, multiplier, needs_posterior, widest

__all__ = ["POLICIES", "DeadlineDecode", "decode_at_deadlines", "ToleranceDecode",
           "decode_at_tolerances"]

POLICIES = ("deadline", "first_replica")

# One compiled decode for all the deadlines' masks of a round.
class DeadlineDecode(NamedTuple):
    """What a round would have given under each of D deadlines (host NumPy arrays).

    Attributes:
      deadline_s: (D,) the deadlines, seconds after dispatch (``inf``: none).
      latency_s: (D,) seconds after dispatch at which the master stops waiting and decodes
        (decoding time itself excluded).
      estimate: (D, K, m) decoded estimates; 0 for an input not recovered.
      used: (D, N) the results the decoder used.
      recovered: (D, K) which inputs got a genuine estimate.

    Example:
      >>> import jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> from letcc_jax import workers
      >>> scheme = lc.bacc(4, 10)
      >>> result = workers.run(jnp.sin, scheme, jnp.ones((4, 2)))
      >>> replay = workers.decode_at_deadlines(scheme, result, [1e-9, float("inf")])
      >>> replay.estimate.shape, replay.recovered.all(axis=1).tolist()  # 1 ns: nothing yet
      ((2, 4, 2), [False, True])
    """

    deadline_s: np.ndarray
    latency_s: np.ndarray
    estimate: np.ndarray
    used: np.ndarray
    recovered: np.ndarray


def _deadlines(deadlines) -> np.ndarray:
    try:
        values = np.asarray(deadlines, np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"deadlines must be a sequence of seconds, got {deadlines!r}.") from None
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"deadlines must be a non-empty 1-D sequence of seconds, got shape "
                         f"{values.shape}.")
    if np.any(np.isnan(values)) or np.any(values <= 0):
        raise ValueError(f"deadlines must be seconds > 0 (inf: no deadline), got {values.tolist()}.")
    return values


def _round_record(result, N: int):
    """(outputs (N, m), used (N,), arrival_s (N,)) of a ``WorkerResult``, checked."""
    try:
        outputs, used, arrival = result.outputs, result.used, result.timings.arrival_s
    except AttributeError:
        raise TypeError(
            "result must be a letcc_jax.workers.WorkerResult (outputs, used, timings.arrival_s), "
            f"got {type(result).__name__}."
        ) from None
    outputs = check.float_array(outputs, "result.outputs")
    check.check_matrix(outputs, N, "result.outputs", "N")
    used = np.asarray(check.check_mask(used, N, "result.used"))
    arrival = np.asarray(arrival)
    if arrival.shape != (N,) or not np.issubdtype(arrival.dtype, np.floating):
        raise ValueError(f"result.timings.arrival_s must be (N,) = ({N},) seconds, got "
                         f"{arrival.dtype} of shape {arrival.shape}.")
    arrival = arrival.astype(np.float64)
    if np.any(arrival < 0) or np.any(np.isinf(arrival)):
        raise ValueError("result.timings.arrival_s must be seconds >= 0, or NaN where no answer "
                         f"came; got {arrival.tolist()}.")
    missing = np.flatnonzero(used & np.isnan(arrival))
    if missing.size:
        raise ValueError(f"worker(s) {missing[:10].tolist()} are marked used but have no arrival "
                         "time (NaN in result.timings.arrival_s).")
    if np.all(np.isnan(arrival)):
        raise ValueError("no worker answered in this round (every arrival time is NaN): there "
                         "is nothing to replay.")
    return outputs, used, arrival


def _first_replicas(K: int, used: np.ndarray, arrival: np.ndarray) -> tuple[np.ndarray, float]:
    """(mask of each input's first valid replica, time by which every input has one: inf if
    some input never gets one); worker n holds input n mod K."""
    N = used.size
    first = np.zeros((N,), bool)
    covered = 0.0
    owner = np.arange(N) % K
    for k in range(K):
        replicas = np.flatnonzero((owner == k) & used)
        if replicas.size == 0:
            covered = math.inf
            continue
        n = replicas[np.argmin(arrival[replicas])]
        first[n] = True
        covered = max(covered, float(arrival[n]))
    return first, covered


def decode_at_deadlines(scheme: Scheme, result, deadlines, *,
                        policy: str = "deadline") -> DeadlineDecode:
    """Replay a round that waited for every worker under each deadline in ``deadlines``.

    Args:
      scheme: the scheme the round ran (unswept), e.g. ``letcc_jax.letcc(K, N)``; another
        decoder of the same N (a LeTCC with a different ``lam_dec``) may replay it too.
      result: the round's ``WorkerResult`` (its ``outputs``, ``used`` and
        ``timings.arrival_s``). Replay is faithful only up to the round's own end: run it
        with ``wait_for=None`` and no deadline, so that every worker's arrival is known.
      deadlines: (D,) seconds after dispatch, > 0; ``inf`` for none.
      policy: a stopping rule in ``POLICIES``; see the module docstring.

    Returns:
      A ``DeadlineDecode`` with one entry per deadline; the estimates are in the dtype of
      ``result.outputs`` (float32 for half precision).

    Raises:
      TypeError: ``scheme`` is not a letcc_jax scheme, or ``result`` is not a
        ``WorkerResult``.
      ValueError: a bad deadline, a policy outside ``POLICIES``, ``"first_replica"`` for a
        scheme other than replication, a swept scheme, or a ``result`` whose shapes do not
        match the scheme or whose arrival times are inconsistent.

    Example:
      A lockstep round, in which every worker arrives when the batch is done:

      >>> import jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> from letcc_jax import workers
      >>> def f(x):
      ...     return jnp.sin(x)
      >>> scheme = lc.bacc(4, 10)
      >>> result = workers.run(f, scheme, jnp.ones((4, 2)))
      >>> replay = workers.decode_at_deadlines(scheme, result, [float("inf")])
      >>> replay.estimate.shape, replay.recovered.tolist()
      ((1, 4, 2), [[True, True, True, True]])
    """
    if not isinstance(scheme, Scheme):
        raise TypeError(f"scheme must be a letcc_jax scheme (e.g. letcc_jax.letcc(K, N)), got "
                        f"{scheme!r}.")
    scheme.check_unpadded("decode_at_deadlines")
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose from {POLICIES}.")
    if policy == "first_replica" and not isinstance(scheme, Uncoded):
        raise ValueError(f'policy "first_replica" keeps the first answer of each input, which '
                         f"only replication (letcc_jax.uncoded) has; got {scheme.name}. Use "
                         '"deadline" for coded schemes.')
    if scheme.swept:
        raise ValueError(f"decode_at_deadlines: the {scheme.name} scheme is a sweep; replay one "
                         "parameter value at a time (scheme.replace(lam_dec=value)).")
    deadline_s = _deadlines(deadlines)
    outputs, used, arrival = _round_record(result, scheme.N)

    last = float(np.nanmax(arrival))
    arrived = np.where(np.isnan(arrival), np.inf, arrival)
    if policy == "first_replica":
        first, covered = _first_replicas(scheme.K, used, arrived)
        latency = np.minimum(deadline_s, min(covered, last))
        masks = first[None, :] & (arrived[None, :] <= latency[:, None])
    else:
        latency = np.minimum(deadline_s, last)
        masks = used[None, :] & (arrived[None, :] <= deadline_s[:, None])
    estimate, used_by, recovered = decode_masks(scheme, outputs, masks)
    return DeadlineDecode(deadline_s, latency, np.asarray(estimate), np.asarray(used_by),
                          np.asarray(recovered))


class ToleranceDecode(NamedTuple):
    """What a round would have given under each of T tolerances (host NumPy arrays): the
    master decodes as results arrive and stops once every estimate's interval half-width
    ``q * std`` is at most the tolerance (q: a calibrated quantile, or the Gaussian z).

    Attributes:
      tolerance: (T,) the tolerances, on the scale of f's outputs.
      latency_s: (T,) seconds after dispatch at which the master stops: the arrival that
        met the tolerance, or the deadline (or the last arrival) if none did.
      met: (T,) whether the tolerance was met (False: the round ran out).
      estimate: (T, K, m) the estimates when the master stops.
      half_width: (T, K, m) their interval half-widths (inf for an input not recovered).
      used: (T, N) the results the decoder used.
      recovered: (T, K) which inputs got a genuine estimate.

    Example:
      >>> import jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> from letcc_jax import workers
      >>> scheme = lc.letcc(4, 12)
      >>> result = workers.run(jnp.sin, scheme, jnp.linspace(0, 1, 8).reshape(4, 2))
      >>> replay = workers.decode_at_tolerances(scheme, result, [1e-9, 1.0])
      >>> replay.met.tolist(), bool((replay.half_width[1] <= 1.0).all())
      ([False, True], True)
    """

    tolerance: np.ndarray
    latency_s: np.ndarray
    met: np.ndarray
    estimate: np.ndarray
    half_width: np.ndarray
    used: np.ndarray
    recovered: np.ndarray

    def promise_kept(self, truth) -> np.ndarray:
        """The share of estimates whose realised error is within the tolerance, per
        tolerance: (T,). With calibrated intervals at level q, about q or more.

        Args:
          truth: (K, m) the true outputs f(x_k) (or (T, K, m)).

        Returns:
          (T,) float64 shares in [0, 1].
        """
        truth = np.asarray(truth, np.float64)
        if truth.shape not in (self.estimate.shape[1:], self.estimate.shape):
            raise ValueError(f"truth must be (K, m) = {self.estimate.shape[1:]}, got "
                             f"{truth.shape}.")
        error = np.abs(np.asarray(self.estimate, np.float64) - truth)
        return np.mean(error <= self.tolerance[:, None, None], axis=(1, 2))


def decode_at_tolerances(scheme: Scheme, result, tolerances, *, level: float = 0.95,
                         calibration=None, deadline: float | None = None) -> ToleranceDecode:
    """Replay a round that waited for every worker under the stopping rule "stop once every
    estimate's interval half-width is at most the tolerance", for each of ``tolerances``.

    The valid results are taken in arrival order; after each, the estimates and their
    posterior standard errors are what ``scheme.posterior`` gives on the results in, and
    the half-widths are ``q * std`` with q the calibrated quantile of ``level``
    (``calibration``) or the Gaussian z. The master stops at the first arrival after which
    every half-width is within the tolerance, or at the deadline (or the last arrival),
    decoding what it holds then. Every tolerance is replayed on the same arrivals, in one
    compiled program for all the prefixes of the round.

    Args:
      scheme: the scheme the round ran (unswept, with posterior standard errors: LeTCC or
        a variant), e.g. ``letcc_jax.letcc(K, N)``.
      result: the round's ``WorkerResult``, run with ``wait_for=None`` and no deadline, so
        that every worker's arrival is known.
      tolerances: (T,) numbers > 0 on the scale of f's outputs; ``inf`` stops at the first
        arrival after which every estimate has a finite half-width.
      level: the intervals' coverage in (0, 1).
      calibration: a ``letcc_jax.Calibration`` holding ``level`` (from
        ``letcc_jax.calibrate``), or None for the Gaussian z (uncalibrated).
      deadline: seconds after dispatch at which the master stops whatever the tolerance;
        None or ``inf``: none.

    Returns:
      A ``ToleranceDecode`` with one entry per tolerance; estimates and half-widths in the
      dtype of ``result.outputs`` (float32 for half precision).

    Raises:
      TypeError: ``scheme`` is not a scheme with posterior standard errors; ``result`` is
        not a ``WorkerResult``; ``calibration`` is not a ``Calibration``.
      ValueError: a tolerance that is not > 0; ``level`` not in (0, 1) or not calibrated;
        a bad deadline; a swept or padded scheme; a ``result`` that does not match the
        scheme.

    Example:
      >>> import jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> from letcc_jax import workers
      >>> scheme = lc.letcc(4, 12)
      >>> X = jnp.linspace(0, 1, 8).reshape(4, 2)
      >>> result = workers.run(jnp.sin, scheme, X)
      >>> replay = workers.decode_at_tolerances(scheme, result, [0.1, 1e-9])
      >>> replay.estimate.shape, replay.met.tolist()
      ((2, 4, 2), [True, False])
      >>> replay.promise_kept(jnp.sin(X)).tolist()      # every estimate within 0.1
      [1.0, 0.0]
    """
    if not isinstance(scheme, Scheme):
        raise TypeError(f"scheme must be a letcc_jax scheme (e.g. letcc_jax.letcc(K, N)), got "
                        f"{scheme!r}.")
    needs_posterior(scheme, "decode_at_tolerances")
    scheme.check_unpadded("decode_at_tolerances")
    if scheme.swept:
        raise ValueError(f"decode_at_tolerances: the {scheme.name} scheme is a sweep; replay "
                         "one parameter value at a time (scheme.replace(lam_dec=value)).")
    try:
        values = np.asarray(tolerances, np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"tolerances must be a sequence of numbers, got {tolerances!r}.") from None
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"tolerances must be a non-empty 1-D sequence, got shape {values.shape}.")
    tolerance = np.array([check_tolerance(float(t), "tolerances") for t in values])
    limit = math.inf if deadline is None else float(_deadlines([deadline])[0])
    outputs, used, arrival = _round_record(result, scheme.N)
    q = multiplier(level, calibration, outputs.shape[1])
    arrived = np.where(np.isnan(arrival), np.inf, arrival)
    # prefix j: the results in by the j-th valid arrival (prefix 0: none)
    times = np.concatenate([[0.0], np.sort(arrived[used])])
    masks = used[None, :] & (arrived[None, :] <= times[:, None])
    estimate, half, used_by, recovered = (np.asarray(v) for v in half_widths(
        scheme, outputs, masks, np.asarray(q, outputs.dtype)))
    widest_half = widest(half)
    end = min(limit, float(np.nanmax(arrival)))
    ran_out = int(np.flatnonzero(times <= end)[-1])
    pick, latency, met = [], [], []
    for t in tolerance:
        ok = np.flatnonzero(meets(widest_half, t) & (times <= limit))
        j = int(ok[0]) if ok.size else ran_out
        pick.append(j)
        latency.append(float(times[j]) if ok.size else end)
        met.append(bool(ok.size))
    pick = np.asarray(pick)
    return ToleranceDecode(tolerance, np.asarray(latency), np.asarray(met), estimate[pick],
                           half[pick], used_by[pick], recovered[pick])
