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

__all__ = ["POLICIES", "DeadlineDecode", "decode_at_deadlines"]

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
