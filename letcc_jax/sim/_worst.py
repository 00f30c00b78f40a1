"""Worst-case stragglers: the S workers whose absence hurts a scheme most on given inputs.

Coded computing's guarantees hold for straggler sets the master does not choose; the
average over random sets (``monte_carlo``) can hide the sets that break a scheme (for
replication: every replica of one input). ``worst_stragglers`` finds, for fixed inputs
X and f, the set of S stragglers that maximises the decoding error

    (1/K) sum_k ||f_hat(x_k) - f(x_k)||^2,

with the library's failure semantics (an input the survivors cannot determine is estimated
as 0, so losing it costs ||f(x_k)||^2 / K). f runs once on the K inputs and once on the N
coded inputs; every candidate set is then one decode, and candidates are scored in vmapped
batches of one compiled program.

- ``"exhaustive"``: every one of the C(N, S) sets; exact.
- ``"search"``: swap local search (each round scores all S (N - S) exchanges of one
  straggler for one survivor in one call and takes the best, until none improves) from
  several starts: the greedy set (S steps, each removing the worker whose loss raises the
  error most, all N candidates in one call), the worst run of S workers consecutive in
  tag order (a gap, or all replicas of one input: sets that single swaps cannot assemble
  when every partial step leaves the error unchanged), and a few random sets. The best
  local optimum: a lower bound on the worst case, equal to it in the cases
  ``tests/test_worst.py`` enumerates.
- ``"auto"``: exhaustive when C(N, S) is at most ``exhaustive_max``, else search.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .. import _validation as check
from . import _rounds
from ..core._schemes import Scheme, decode_masks
from ._evaluate import check_round, check_truth
from ._models import ExactStragglers

__all__ = ["WorstCase", "worst_stragglers"]

METHODS = ("auto", "exhaustive", "search")


class WorstCase(NamedTuple):
    """The worst straggler set found by ``worst_stragglers``.

    Attributes:
      stragglers: (S,) int64 sorted indices of the straggling workers.
      alive: (N,) bool, the workers that answer.
      mse: the decoding error (1/K) sum_k ||f_hat(x_k) - f(x_k)||^2 with these stragglers
        (a Python float).
      exact: True when every set was scored (``"exhaustive"``): ``mse`` is the worst case;
        False for ``"search"``, a local optimum (a lower bound on the worst case).
      evaluated: straggler sets scored.
      rounds: swap rounds of the local searches, all starts together (0 for exhaustive).

    Example:
      >>> import jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> X = jnp.array([[0.1], [0.2], [0.3], [0.9]])
      >>> worst = lc.worst_stragglers(jnp.tanh, lc.uncoded(4, 8), X, 2)
      >>> worst.alive.tolist(), worst.exact, worst.evaluated     # C(8, 2) = 28 sets
      ([True, True, True, False, True, True, True, False], True, 28)
    """

    stragglers: np.ndarray
    alive: np.ndarray
    mse: float
    exact: bool
    evaluated: int
    rounds: int


@jax.jit
def _scores(scheme, Y, truth, masks):
    """The decoding error for every survivor mask in ``masks`` (B, N)."""
    estimate, _, _ = decode_masks(scheme, Y, masks)
    return jax.vmap(_rounds.mse, in_axes=(0, None))(estimate, truth)


class _Scorer:
    """Scores survivor masks (B, n) of the n workers that exist in batches of ``batch``, the
    last padded (one compiled program per scheme and shape: a wasted few microseconds per
    padded mask cost less than compiling a program per batch width), counting the masks
    scored. A padded scheme's padding workers (n to N) are added as stragglers."""

    def __init__(self, scheme, Y, truth, batch: int):
        self.args, self.batch, self.count = (scheme, Y, truth), batch, 0
        self.padding = scheme.N - _rounds.existing_workers(scheme)

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(masks), self.batch):
            chunk = masks[start:start + self.batch]
            size = len(chunk)
            padded = np.concatenate([chunk, np.repeat(chunk[:1], self.batch - size, axis=0)])
            padded = np.pad(padded, ((0, 0), (0, self.padding)))  # the padding never answers
            out.append(np.asarray(_scores(*self.args, jnp.asarray(padded)))[:size])
        self.count += len(masks)
        return np.concatenate(out) if out else np.zeros((0,))


def _exhaustive(score: _Scorer, N: int, S: int):
    best, best_set = -np.inf, None
    combos = itertools.combinations(range(N), S)
    while True:
        sets = list(itertools.islice(combos, score.batch))
        if not sets:
            return best_set, best
        idx = np.asarray(sets, dtype=np.int64).reshape(len(sets), S)
        masks = np.ones((len(sets), N), bool)
        np.put_along_axis(masks, idx, False, axis=1)
        values = score(masks)
        i = int(np.argmax(values))
        if values[i] > best:
            best, best_set = float(values[i]), idx[i]


def _greedy(score: _Scorer, N: int, S: int) -> np.ndarray:
    """S steps, each dropping the worker whose loss hurts most (N candidates per call)."""
    alive = np.ones(N, bool)
    for _ in range(S):
        candidates = np.repeat(alive[None], N, axis=0)
        candidates[np.arange(N), np.arange(N)] = False
        values = np.where(alive, score(candidates), -np.inf)
        alive[int(np.argmax(values))] = False
    return alive


def _windows(score: _Scorer, order: np.ndarray, S: int) -> np.ndarray:
    """The worst run of S workers consecutive in tag order ``order``: a gap, what hurts a
    decoder that interpolates, or every replica of an input (replicas share a tag)."""
    N = len(order)
    starts = np.arange(N - S + 1)
    masks = np.ones((len(starts), N), bool)
    for k in range(S):
        masks[starts, order[starts + k]] = False
    return masks[int(np.argmax(score(masks)))]


def _swaps(score: _Scorer, alive: np.ndarray, max_rounds: int):
    """Swap one straggler for one survivor, the best of all S (N - S) exchanges per call,
    until none improves."""
    value = float(score(alive[None])[0])
    rounds = 0
    while rounds < max_rounds:
        dead, live = np.flatnonzero(~alive), np.flatnonzero(alive)
        pairs = np.asarray(list(itertools.product(dead, live)), dtype=np.int64)
        candidates = np.repeat(alive[None], len(pairs), axis=0)
        rows = np.arange(len(pairs))
        candidates[rows, pairs[:, 0]] = True
        candidates[rows, pairs[:, 1]] = False
        values = score(candidates)
        i = int(np.argmax(values))
        # A relative margin keeps round-off from cycling between equal sets.
        if not values[i] > value * (1 + 1e-12) + np.finfo(np.float64).tiny:
            break
        alive, value = candidates[i], float(values[i])
        rounds += 1
    return alive, value, rounds


def _search(score: _Scorer, order: np.ndarray, S: int, max_rounds: int, restarts: int,
            seed: int):
    """Swap search from the greedy set, the worst window in tag order ``order`` and
    ``restarts`` random sets; the best local optimum."""
    rng = np.random.default_rng(seed)
    N = len(order)
    starts = [_greedy(score, N, S), _windows(score, order, S)]
    for _ in range(restarts):
        alive = np.ones(N, bool)
        alive[rng.choice(N, S, replace=False)] = False
        starts.append(alive)
    best_alive, best, total = None, -np.inf, 0
    for alive in starts:
        alive, value, rounds = _swaps(score, alive, max_rounds)
        total += rounds
        if value > best:
            best_alive, best = alive, value
    return np.flatnonzero(~best_alive), best, total


def worst_stragglers(
    f: Callable,
    scheme: Scheme,
    X: Float[Array, "K d"],
    S: int,
    *,
    method: str = "auto",
    exhaustive_max: int = 20_000,
    max_rounds: int = 1_000,
    restarts: int = 4,
    seed: int = 0,
    batch: int = 1024,
) -> WorstCase:
    """The set of ``S`` stragglers that maximises the decoding error on the inputs ``X``.

    Args:
      f: one input (d,) -> one output (m,), as in ``monte_carlo`` (hashable).
      scheme: a coding scheme (not swept). A padded scheme (``Scheme.pad_workers``)
        gives what the unpadded one gives: the stragglers are among its existing workers,
        and the padding never answers.
      X: (K, d) inputs, finite; f must be finite on them.
      S: number of stragglers, 0 <= S < N (the existing workers, if padded).
      method: ``"auto"`` (default: ``"exhaustive"`` when C(N, S) <= ``exhaustive_max``,
        else ``"search"``), ``"exhaustive"`` or ``"search"`` (module docstring).
      exhaustive_max: the most sets ``"auto"`` enumerates.
      max_rounds: the most swap rounds of each local search.
      restarts: random starting sets of the local search, besides the greedy set and the
        worst run of S consecutive workers.
      seed: seed of the random starting sets.
      batch: candidate sets scored per compiled call.

    Returns:
      A ``WorstCase``: the stragglers, the survivor mask, the error, whether it is exact,
      and how many sets were scored.

    Raises:
      ValueError: S out of range; N - S workers too few for the scheme; an unknown
        method; ``batch`` not a positive int; ``exhaustive_max``, ``max_rounds``,
        ``restarts`` or ``seed`` not an int >= 0; a swept scheme; X not (K, d) or not
        finite; f not finite on X.
      TypeError: f not callable or hashable, or with complex, integer or tuple outputs;
        scheme not a scheme; S not an int; a call inside ``jax.jit``, ``vmap`` or ``grad``
        (the search runs eagerly: call it outside).

    Example:
      >>> import jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> X = jnp.array([[0.1], [0.2], [0.3], [0.9]])
      >>> worst = lc.worst_stragglers(jnp.tanh, lc.uncoded(4, 8), X, 2)
      >>> worst.stragglers.tolist(), round(worst.mse, 3)  # both replicas of x_4: tanh(0.9)^2 / 4
      ([3, 7], 0.128)
      >>> round(lc.worst_stragglers(jnp.tanh, lc.letcc(4, 8), X, 2).mse, 3)  # LeTCC copes
      0.003
    """
    check.require_eager("worst_stragglers", scheme, X, S)
    if not check.is_int(S):
        raise TypeError(f"S must be an int (the number of stragglers), got {S!r}.")
    S = int(S)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
    batch = check.check_positive_int(batch, "batch")
    max_rounds = check.check_count(max_rounds, "max_rounds")
    restarts = check.check_count(restarts, "restarts")
    seed = check.check_count(seed, "seed")
    exhaustive_max = check.check_count(exhaustive_max, "exhaustive_max")
    if isinstance(scheme, Scheme):
        scheme.validate()
        if _rounds.batch_shape(scheme):
            raise ValueError("worst_stragglers takes one scheme; its parameters are swept.")
        # a padded scheme (Scheme.workers): the stragglers are among its n existing workers
        n = _rounds.existing_workers(scheme)
        if not 0 <= S < n:
            raise ValueError(f"S must be in [0, N) = [0, {n}), got {S}.")
    # check_round validates f, the scheme and X, and that N - S workers can decode.
    X, _ = check_round(f, scheme, X, ExactStragglers(max(S, 1)), None, jax.random.key(0),
                       single=True)
    truth, Y = _rounds.honest_outputs(f, scheme, X)  # the scheme is unswept: Y is (N, m)
    check_truth(jnp.all(jnp.isfinite(truth))[None], X)
    score = _Scorer(scheme, Y, truth, batch)
    # S = 0: the one empty set, enumerated
    exhaustive = S == 0 or method == "exhaustive" or (
        method == "auto" and math.comb(n, S) <= exhaustive_max)
    if exhaustive:
        dead, value = _exhaustive(score, n, S)
        rounds = 0
    else:
        order = np.argsort(np.asarray(scheme.beta)[:n], kind="stable")
        dead, value, rounds = _search(score, order, S, max_rounds, restarts, seed)
    alive = np.arange(scheme.N) < n
    alive[dead] = False
    return WorstCase(np.sort(np.asarray(dead, np.int64)), alive, value, exhaustive,
                     score.count, rounds)
