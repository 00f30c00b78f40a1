"""Replication's expected loss in closed form.

Replication (``uncoded``) loses input k exactly when all r_k of its replicas straggle, and
otherwise estimates f(x_k) by the mean of its J_k answering replicas, so the paper's loss
needs no sampling:

    E[MSE] = (1/K) sum_k [ P(J_k = 0) ||f(x_k) - fallback||^2
                           + m sigma^2 sum_{j >= 1} P(J_k = j) / j ],

the second term under i.i.d. N(0, sigma^2) output noise. J_k is hypergeometric under
exactly S stragglers (a uniform random S-subset of the N workers), binomial under
independent stragglers with probability p, and r_k without stragglers. Monte Carlo with a
few hundred patterns rarely sees a loss of probability p^{r_k}, and reports (nearly) zero
where the expected loss is dominated by those rare losses.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .. import _validation as check
from . import _rounds
from ..core._schemes import BLOCK_ELEMENTS, Uncoded
from ._evaluate import check_round
from ._models import (
    BernoulliStragglers,
    ExactStragglers,
    FaultModel,
    GaussianNoise,
    NoStragglers,
    StragglerModel,
)

__all__ = ["ReplicationLoss", "replication_loss"]

#: The models whose effect on replication has a closed form.
EXACT_STRAGGLERS = (NoStragglers, ExactStragglers, BernoulliStragglers)
EXACT_FAULTS = (GaussianNoise,)


class ReplicationLoss(NamedTuple):
    """Replication's exact expected loss, as ``replication_loss`` returns it (JAX arrays).

    ``grid`` is the broadcast shape of the swept parameters (empty without a sweep); the
    axis C is there only for inputs given as C batches (C, K, d).

    Attributes:
      mse (jax.Array): float, shape ``(*grid)`` or ``(*grid, C)``: the expected loss
        E[(1/K) sum_k ||f_hat(x_k) - f(x_k)||^2] over straggler patterns and noise.
      per_input (jax.Array): float, shape ``(*grid, K)`` or ``(*grid, C, K)``: the
        expected squared error of each input, in the caller's order (``mse`` is their
        mean).
      p_lost (jax.Array): float, shape ``(*grid, K)``: the probability that every replica
        of input k straggles (it is then estimated by the scheme's ``fallback``).

    Example:
      >>> import jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> loss = lc.replication_loss(jnp.cos, lc.uncoded(2, 5), jnp.zeros((2, 3)),
      ...                            stragglers=lc.ExactStragglers(2))
      >>> loss.mse.shape, loss.per_input.shape, loss.p_lost.shape
      ((), (2,), (2,))
      >>> [round(v, 4) for v in loss.p_lost.tolist()]   # 3 replicas of input 0, 2 of input 1
      [0.0, 0.1]
    """

    mse: Float[Array, "*grid"]
    per_input: Float[Array, "*grid K"]
    p_lost: Float[Array, "*grid K"]


def replication_loss(
    f: Callable,
    scheme: Uncoded,
    X: Float[Array, "*C K d"],
    *,
    stragglers: StragglerModel = NoStragglers(),
    faults: Sequence[FaultModel] = (),
) -> ReplicationLoss:
    """The exact expected loss of replication, in closed form: no Monte Carlo.

    Input k, held by r_k workers (``scheme.owners()``), is lost when all of them straggle,
    with probability P_k = C(N - r_k, S - r_k) / C(N, S) under ``ExactStragglers(S)``,
    p^{r_k} under ``BernoulliStragglers(p)`` and 0 under ``NoStragglers``; it is then
    estimated by the scheme's ``fallback`` (0 if None). Otherwise its estimate is the mean
    of its J >= 1 answering replicas, exact for a deterministic f and with squared error
    m sigma^2 / J in expectation under ``GaussianNoise(sigma)`` (several noise models add
    their variances). So

        E[MSE] = (1/K) sum_k [ P_k ||f(x_k) - fallback||^2
                               + m sigma^2 sum_{j >= 1} P(J_k = j) / j ].

    Use it instead of ``monte_carlo`` to score replication: a Monte Carlo run with a
    hundred patterns rarely sees a loss of probability p^{r_k}, though such losses can
    dominate the expected loss. f runs once on X, in one compiled call (cached on f, the
    structure of the scheme and the models, shapes and dtypes); the formula is traced
    JAX, so it works under ``jit``, ``vmap`` and ``grad`` (in ``p``, ``sigma``, the
    fallback and X). The hypergeometric probabilities are computed in float64 log space
    (N and S are static), so large N neither overflows nor loses precision.

    Args:
      f: one input (d,) -> one output (m,); hashable (compilations are cached per f).
      scheme: a replication scheme (``letcc_jax.uncoded(K, N)``), with any ``order`` and
        ``fallback``; its leaves may carry sweep axes. With ``combine="median"`` the loss
        is exact without output noise only.
      X: (K, d) inputs, or C batches of them (C, K, d).
      stragglers: ``NoStragglers()`` (default), ``ExactStragglers(S)`` or
        ``BernoulliStragglers(p)``; ``p`` may be swept.
      faults: ``GaussianNoise`` models (or none); ``sigma`` may be swept.

    Returns:
      A ``ReplicationLoss``: ``mse`` of shape ``(*grid)`` (``(*grid, C)`` with batches),
      ``per_input`` ``(*grid, K)`` (``(*grid, C, K)``) and ``p_lost`` ``(*grid, K)``,
      in the dtype of f's outputs; grid is the broadcast shape of the swept parameters,
      as in ``monte_carlo``.

    Raises:
      TypeError: a scheme other than replication, or a straggler or fault model whose
        effect has no closed form here (``LatencyStragglers``, ``Adversaries``,
        ``FailedWorkers``): use ``monte_carlo`` for those; f not callable or not
        hashable, or with non-float outputs; models of the wrong type.
      ValueError: ``GaussianNoise`` with ``combine="median"`` (the median of noisy
        replicas has no closed form); X not (K, d) or (C, K, d), or not finite; f not
        finite on X; a fallback whose size is not m; a model that names more workers
        than N or leaves fewer than K survivors; sweep axes that do not broadcast.

    Example:
      >>> import jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> scheme = lc.uncoded(4, 8)                     # workers k and k + 4 copy input k
      >>> X = jnp.zeros((4, 3))                         # f(x_k) = cos(0) = (1, 1, 1)
      >>> loss = lc.replication_loss(jnp.cos, scheme, X,
      ...                            stragglers=lc.BernoulliStragglers(jnp.array([0.1, 0.5])))
      >>> [round(v, 4) for v in loss.p_lost[:, 0].tolist()]   # both replicas straggle: p^2
      [0.01, 0.25]
      >>> [round(v, 4) for v in loss.mse.tolist()]            # p^2 ||f(x_k) - 0||^2 = 3 p^2
      [0.03, 0.75]
      >>> noisy = lc.replication_loss(jnp.cos, scheme, X, stragglers=lc.BernoulliStragglers(0.5),
      ...                             faults=[lc.GaussianNoise(0.1)])
      >>> round(float(noisy.mse), 5)    # + 3 * 0.1^2 * (P(J=1) / 1 + P(J=2) / 2) = 0.01875
      0.76875
    """
    _check_exact(scheme, stragglers)
    single = np.ndim(X) == 2
    X, faults = check_round(f, scheme, X, stragglers, faults, jax.random.key(0), batches=True)
    unsupported = [type(fault).__name__ for fault in faults if not isinstance(fault, EXACT_FAULTS)]
    if unsupported:
        raise TypeError(_unsupported(f"the fault model(s) {', '.join(unsupported)}"))
    if scheme.combine != "mean" and faults:
        raise ValueError(
            f"replication_loss: output noise with combine={scheme.combine!r} has no closed "
            "form (the median of noisy replicas); the loss is exact for the mean of replicas "
            "under GaussianNoise, or for the median without noise. Use monte_carlo instead.")
    result, finite = _replication_loss_compiled(f, scheme, X, stragglers, faults)
    if check.is_concrete(finite) and not np.all(finite):
        where = "" if single else f" (batch {np.flatnonzero(~np.asarray(finite)).tolist()[:5]})"
        raise ValueError(f"f returned NaN or inf on the inputs X{where}: the loss compares the "
                         "estimates with f's outputs there, so they must be finite.")
    if single:
        return ReplicationLoss(result.mse[..., 0], result.per_input[..., 0, :], result.p_lost)
    return result


def _unsupported(what: str) -> str:
    return (f"replication_loss: replication's loss is exact only for "
            f"{', '.join(m.__name__ for m in EXACT_STRAGGLERS)} with "
            f"{', '.join(m.__name__ for m in EXACT_FAULTS)} output noise, got {what}. Use "
            "letcc_jax.monte_carlo for other schemes and models.")


def _check_exact(scheme, stragglers) -> None:
    """A replication scheme and a straggler model with a closed form (types only; the rest
    is ``check_round``'s)."""
    if not isinstance(scheme, Uncoded):
        what = getattr(scheme, "name", None) or repr(scheme)
        raise TypeError(_unsupported(f"the scheme {what} (not replication, "
                                     "letcc_jax.uncoded(K, N))"))
    scheme.check_unpadded("replication_loss")
    if isinstance(stragglers, StragglerModel) and not isinstance(stragglers, EXACT_STRAGGLERS):
        raise TypeError(_unsupported(f"the straggler model {type(stragglers).__name__}"))


# ------------------------------------------------------------------------ kernel


#: log Gamma elementwise on the host (counts of workers: small arrays, float64).
_lgamma = np.vectorize(math.lgamma, otypes=[np.float64])


def _log_comb(n, k) -> np.ndarray:
    """log C(n, k) in float64, -inf where k < 0 or k > n (no way to choose)."""
    n, k = np.broadcast_arrays(np.asarray(n, np.float64), np.asarray(k, np.float64))
    ok = (k >= 0) & (k <= n)
    n, k = np.where(ok, n, 0.0), np.where(ok, k, 0.0)
    return np.where(ok, _lgamma(n + 1) - _lgamma(k + 1) - _lgamma(n - k + 1), -np.inf)


def _answering_replicas(stragglers, N: int, counts: np.ndarray, dtype) -> Array:
    """P(J = j) for an input with r replicas, J of which answer: (len(counts), max r + 1),
    row i for r = counts[i]."""
    r = counts[:, None]
    j = np.arange(counts[-1] + 1)[None, :]
    late = r - j  # replicas that straggle
    if isinstance(stragglers, BernoulliStragglers):
        p = jnp.asarray(stragglers.p, dtype)
        # p^late is written p * p^(late - 1) so that the pmf and its derivative are exact
        # at p = 0, where log p is -inf (and p^0 = 1 needs no log at all).
        safe = jnp.where(p > 0, p, 1)
        log_rest = (jnp.asarray(_log_comb(r, j), dtype) + jnp.asarray(j, dtype) * jnp.log1p(-p)
                    + jnp.asarray(np.maximum(late - 1, 0), dtype) * jnp.log(safe))
        rest = jnp.where((p > 0) | (late <= 1), jnp.exp(log_rest), 0)
        return rest * jnp.where(late >= 1, p, 1)
    S = stragglers.S if isinstance(stragglers, ExactStragglers) else 0
    return jnp.exp(_log_hypergeometric(N, S, counts, dtype)).astype(dtype)


def _log_hypergeometric(N: int, S, counts: np.ndarray, dtype) -> Array:
    """log P(j of r replicas answer) when the S stragglers are a uniform S-subset of the N
    workers: (len(counts), max r + 1), -inf where impossible. S may be traced (a sweep).

    With l = r - j replicas late, C(r, l) C(N - r, S - l) / C(N, S) is
    C(r, l) prod_{i<l} (S - i)/(N - i) prod_{q<j} (N - S - q)/(N - l - q): sums of logs of
    ratios in [0, 1], each of size ~ S/N at most, so float32 keeps ~ r eps relative (the
    log-Gamma form loses eps * log C(N, S), ~ 1e-4 at N = 1,000).
    """
    work = jnp.dtype(dtype) if jnp.finfo(dtype).bits >= 32 else jnp.dtype(jnp.float32)
    S = jnp.asarray(S).astype(work)
    R = int(counts[-1])
    i = jnp.arange(R, dtype=work)

    def log_positive(x):
        return jnp.where(x > 0, jnp.log(jnp.where(x > 0, x, 1)), -jnp.inf)

    # A[l] = sum_{i<l} log((S - i)/(N - i)), l = 0..R
    early = jnp.concatenate([jnp.zeros((1,), work), jnp.cumsum(log_positive((S - i) / (N - i)))])
    # B[l, j] = sum_{q<j} log((N - S - q)/(N - l - q)) = sum log1p(-x), x = (S - l)/(N - l - q)
    l, q = jnp.arange(R + 1, dtype=work)[:, None], i[None, :]
    x = (S - l) / jnp.maximum(N - l - q, 1)  # l + q < r <= N where used
    terms = jnp.where(x < 1, jnp.log1p(-jnp.where(x < 1, x, 0)), -jnp.inf)
    on_time = jnp.concatenate([jnp.zeros((R + 1, 1), work), jnp.cumsum(terms, axis=1)], axis=1)
    r = counts[:, None]
    j = np.arange(R + 1)[None, :]
    late = r - j
    possible = late >= 0
    late_i, j_i = np.where(possible, late, 0), np.broadcast_to(j, late.shape)
    log_pmf = (jnp.asarray(_log_comb(r, late), work) + early[late_i] + on_time[late_i, j_i])
    return jnp.where(jnp.asarray(possible), log_pmf, -jnp.inf)


def _closed_form(scheme, stragglers, faults, truth) -> ReplicationLoss:
    """Replication's loss for outputs ``truth`` (C, K, m), on every grid point."""
    dtype, (K, m), N = truth.dtype, truth.shape[-2:], scheme.N
    # Worker n holds input order[n mod K]: every input has N // K replicas or one more.
    counts = np.arange(N // K, -(-N // K) + 1)
    j = np.arange(counts[-1] + 1)
    mean_inverse = jnp.asarray(np.where(j > 0, 1.0 / np.maximum(j, 1), 0.0), dtype)

    def at(point):
        scheme, stragglers, faults = point
        pmf = _answering_replicas(stragglers, N, counts, dtype)
        row = jnp.bincount(scheme.owners(), length=K) - int(counts[0])
        p_lost, inverse = pmf[row, 0], (pmf @ mean_inverse)[row]  # (K,), E[1/J; J >= 1]
        fallback = (jnp.zeros((m,), dtype) if scheme.fallback is None
                    else scheme.fallback.astype(dtype))
        variance = sum((jnp.asarray(fault.sigma, dtype) ** 2 for fault in faults),
                       jnp.zeros((), dtype))
        gap = jnp.sum((truth - fallback) ** 2, axis=-1)  # (C, K)
        per_input = p_lost * gap + m * variance * inverse
        return ReplicationLoss(jnp.mean(per_input, axis=-1), per_input, p_lost)

    # Grid points in blocks of about BLOCK_ELEMENTS output entries: a sweep over p and sigma
    # would otherwise hold (*grid, C, K, m) differences at once.
    block = max(1, BLOCK_ELEMENTS // truth.size)
    return _rounds.over_grid(at, (scheme, stragglers, faults), batch_size=block)


@functools.partial(jax.jit, static_argnames="f")
def _replication_loss_compiled(f, scheme, X, stragglers, faults):
    """The loss for inputs X (C, K, d), and whether f is finite on each batch."""
    truth = jax.vmap(functools.partial(_rounds.outputs, f))(X)
    finite = jnp.all(jnp.isfinite(truth), axis=(-2, -1))
    return _closed_form(scheme, stragglers, faults, truth), finite
