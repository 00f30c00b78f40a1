"""Split-conformal calibration of LeTCC's posterior standard errors.

``LeTCC.posterior`` reads its standard errors from a Gaussian-process model of f along
the encoder's curve; when f is rougher or smoother than that model (inputs in random
order, say) the nominal Gaussian intervals ``estimate +- z_q std`` miss more or less
often than 1 - q.
Split-conformal prediction (Vovk et al. 2005; Lei et al. 2018; Angelopoulos and Bates
2021) rescales them with no model at all: on calibration rounds whose truth is known, the
scores ``|estimate - truth| / std`` are ranked, and their ``ceil((n + 1) q)``-th smallest
value, the conformal quantile, replaces ``z_q``. For a new round exchangeable with the
calibration rounds, ``estimate +- quantile * std`` then covers the truth with probability
at least q (and below q + 1 / (n + 1) for continuous scores).

``conformal_quantiles`` is the rule on recorded data (real workers, any source);
``calibrate`` simulates the calibration rounds (``posterior_rounds``) and returns a
``Calibration`` whose ``interval`` gives the calibrated intervals; ``coverage`` measures
intervals on held-out rounds.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics
from collections.abc import Callable, Sequence
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Bool, Float, Int

from .. import _validation as check
from .._pytree import pytree_dataclass
from ..core._schemes import Posterior, Scheme
from . import _rounds
from ._evaluate import check_round, check_truth
from ._models import FaultModel, StragglerModel

__all__ = ["Calibration", "calibrate", "conformal_quantiles", "coverage", "posterior_rounds"]


# ------------------------------------------------------------------ traced rules


def conformal_scores(estimate, std, truth) -> tuple[Float[Array, "..."], Bool[Array, "..."]]:
    """The scores ``|estimate - truth| / std`` and which of them count: the entries with a
    finite std and a defined score. An exact estimate scores 0 even where std is 0; the
    scores that do not count are set to inf (they sort last)."""
    error = jnp.abs(estimate - truth)
    score = jnp.where(error == 0, jnp.zeros((), error.dtype), error / std)
    valid = jnp.isfinite(std) & ~jnp.isnan(score)
    return jnp.where(valid, score, jnp.inf), valid


#: The largest denominator of a level taken as an exact fraction: every product of the
#: rank rule stays below 2^31 (int32) when denominators are at most sqrt(2^31).
MAX_DENOMINATOR = 46340


def level_arrays(levels: tuple[float, ...]):
    """The levels for ``conformal_rank``: (q as floats, numerators, denominators), each
    (L,). A level that is a fraction P / D with D <= ``MAX_DENOMINATOR`` up to its binary
    rounding (every decimal of up to four places: 0.95 = 19/20) keeps (P, D); others get
    D = 0 (ranked in floating point)."""
    pairs = []
    for q in levels:
        frac = Fraction(q).limit_denominator(MAX_DENOMINATOR)
        exact = abs(float(frac) - q) <= 4 * np.finfo(np.float64).eps * q
        pairs.append((frac.numerator, frac.denominator) if exact else (0, 0))
    numerators, denominators = (jnp.asarray(v, jnp.int32) for v in zip(*pairs))
    return jnp.asarray(levels, jnp.result_type(float)), numerators, denominators


def conformal_rank(n: Int[Array, "*c"], levels, numerators, denominators) -> Int[Array, "L *c"]:
    """ceil((n + 1) q) for every level q and count n, at least 1.

    A level that is a fraction P / D (``level_arrays``) is ranked in integers, exactly at
    any n (as (n + 1) = a D + b: a P + ceil(b P / D), no product beyond 2^31); others in
    their floating dtype, where a product within a few roundings of an integer counts as
    that integer."""
    shape = (-1,) + (1,) * n.ndim
    u = (n + 1)[None]
    p = numerators.astype(n.dtype).reshape(shape)
    d = jnp.maximum(denominators.astype(n.dtype).reshape(shape), 1)
    exact = (u // d) * p + ((u % d) * p + d - 1) // d
    q = levels.reshape(shape)
    rounded = jnp.ceil(u.astype(q.dtype) * q * (1 - 8 * jnp.finfo(q.dtype).eps)).astype(n.dtype)
    rank = jnp.where(denominators.reshape(shape) > 0, exact, rounded)
    return jnp.maximum(rank, 1)


def quantiles_of(scores, valid, levels, per_column: bool) -> Float[Array, "L *m"]:
    """The conformal quantile of the valid scores at every level (``levels``: the arrays
    of ``level_arrays``): pooled, or per column (the last axis). inf where the rank exceeds
    the number of valid scores."""
    columns = scores.shape[-1] if per_column else 1
    scores, valid = scores.reshape(-1, columns), valid.reshape(-1, columns)
    n = jnp.sum(valid, axis=0)
    ordered = jnp.sort(scores, axis=0)
    rank = conformal_rank(n, *levels)
    picked = jnp.take_along_axis(ordered, jnp.clip(rank - 1, 0, ordered.shape[0] - 1), axis=0)
    out = jnp.where(rank <= n, picked, jnp.inf)
    return out if per_column else out[:, 0]


def trial_keys(key, batches: int, trials: int, batched: bool):
    """(C, T) keys as ``monte_carlo`` gives its trials: with ``batched`` inputs, batch c's
    trial t uses key t of the split of key c of the split of ``key``; otherwise (C = 1)
    key t of the split of ``key``."""
    if batched:
        return jax.vmap(lambda k: jax.random.split(k, trials))(jax.random.split(key, batches))
    return jax.random.split(key, trials)[None]


def posterior_trials(f, scheme, X, keys, stragglers, faults, *,
                     batch_size: int = 64) -> tuple[Posterior, Float[Array, "C T K m"]]:
    """The posterior of the rounds with ``keys`` (C, T) on each batch of inputs X
    (C, K, d), and f on the inputs broadcast to the estimates' shape: every field has
    leading axes (C, T)."""

    def batch(inputs):
        x, keys = inputs
        honest = _rounds.outputs(f, scheme.encode_report(x)[0])

        def trial(key):
            Y, answered = _rounds.sample_round(scheme, stragglers, faults, honest, key)
            return scheme.posterior_report(Y, answered)[0]

        post = _rounds.padded_map(trial, keys, batch_size)
        return post, jnp.broadcast_to(_rounds.outputs(f, x), post.estimate.shape)

    return lax.map(batch, (X, keys))


def calibration_summary(estimate, std, truth, levels, gaussian, per_column: bool):
    """(quantiles, the coverage of the Gaussian half-widths ``gaussian * std``, the number
    of valid scores) of calibration rounds."""
    scores, valid = conformal_scores(estimate, std, truth)
    count = jnp.sum(valid)
    z = gaussian.astype(scores.dtype).reshape((-1,) + (1,) * scores.ndim)
    hits = jnp.sum((valid & (scores <= z)).reshape(len(gaussian), -1), axis=1)
    return (quantiles_of(scores, valid, levels, per_column),
            hits.astype(scores.dtype) / count.astype(scores.dtype), count)


def covered(lower, upper, truth) -> tuple[Float[Array, ""], Int[Array, ""]]:
    """(the fraction of the entries with finite bounds whose truth lies inside, how many
    entries have finite bounds)."""
    finite = jnp.isfinite(lower) & jnp.isfinite(upper)
    count = jnp.sum(finite)
    inside = jnp.sum(finite & (lower <= truth) & (truth <= upper))
    return inside.astype(lower.dtype) / count.astype(lower.dtype), count


def half_widths(std, multiplier) -> Float[Array, "*T K m"]:
    """``multiplier * std``, inf where std is not finite (also for a multiplier of 0)."""
    return jnp.where(jnp.isfinite(std), multiplier.astype(std.dtype) * std, jnp.inf)


def band(estimate, std, multiplier):
    """(estimate - half-width, estimate + half-width)."""
    half = half_widths(std, multiplier)
    return estimate - half, estimate + half


_quantiles_compiled = jax.jit(
    lambda estimate, std, truth, levels, per_column: quantiles_of(
        *conformal_scores(estimate, std, truth), levels, per_column),
    static_argnames="per_column")
_summary_compiled = jax.jit(calibration_summary, static_argnames="per_column")
_covered_compiled = jax.jit(covered)
_half_widths_compiled = jax.jit(half_widths)
_band_compiled = jax.jit(band)


@functools.partial(jax.jit, static_argnames="f")
def _posterior_trials_compiled(f, scheme, X, keys, stragglers, faults):
    """``posterior_trials`` at every point of the sweep grid (leading axes (*grid, C, T))."""
    post, truth = _rounds.over_grid(
        lambda point: posterior_trials(f, point[0], X, keys, *point[1:]),
        (scheme, stragglers, faults))
    return post, truth, _rounds.finite_truth(f, X)


# The keys in a program of their own: one batch of inputs, given as (K, d) or (1, K, d),
# then shares the rounds' program.
_trial_keys_compiled = jax.jit(trial_keys, static_argnames=("batches", "trials", "batched"))


# ------------------------------------------------------------------------ checks


def _levels(levels) -> tuple[float, ...]:
    """Coverage levels: real numbers strictly between 0 and 1, distinct, as a tuple."""
    if not check.is_concrete(*jax.tree.leaves(levels)):
        raise TypeError("levels must be concrete numbers (e.g. (0.8, 0.95)), not traced values.")
    try:
        if isinstance(levels, (str, bytes)):
            raise TypeError
        values = np.asarray(levels, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise TypeError(f"levels must be real numbers in (0, 1), e.g. (0.8, 0.95); got "
                        f"{levels!r}.") from None
    if values.size == 0 or not np.all((values > 0) & (values < 1)):
        raise ValueError(f"levels must be a non-empty sequence of coverage levels strictly "
                         f"between 0 and 1 (e.g. (0.8, 0.95)), got {levels!r}.")
    if len(set(values.tolist())) != values.size:
        raise ValueError(f"levels must be distinct, got {levels!r}.")
    return tuple(values.tolist())


def _level(level) -> float:
    """One coverage level, a real number strictly between 0 and 1."""
    if not check.is_int(level) and not isinstance(level, (float, np.floating)):
        raise TypeError(f"level must be a real number in (0, 1), e.g. 0.95; got {level!r}.")
    if not 0 < level < 1:
        raise ValueError(f"level must be strictly between 0 and 1, got {level!r}.")
    return float(level)


def _gaussian(levels: tuple[float, ...]) -> np.ndarray:
    """z_q, the half-width of the two-sided Gaussian interval of level q, per level."""
    return np.array([statistics.NormalDist().inv_cdf((1 + q) / 2) for q in levels])


def _check_flag(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}.")
    return bool(value)


def _common_dtype(*arrays):
    """The arrays in their promoted dtype (the library's tests run strict promotion)."""
    dtype = functools.reduce(np.promote_types, (a.dtype for a in arrays))
    return [a if a.dtype == dtype else a.astype(dtype) for a in arrays]


def _check_rounds(estimate, std, truth, per_column: bool):
    """estimate and std of one shape (rounds, ..., m), truth broadcasting to it; on
    concrete values, std >= 0 where finite, and estimate and truth finite there."""
    estimate, std, truth = (check.float_array(x, name) for x, name in
                            ((estimate, "estimate"), (std, "std"), (truth, "truth")))
    estimate, std, truth = _common_dtype(estimate, std, truth)
    if estimate.shape != std.shape or estimate.size == 0:
        raise ValueError(f"estimate and std must have one non-empty shape ((K, m), or (T, K, "
                         f"m) with a leading rounds axis), got {estimate.shape} and "
                         f"{std.shape}.")
    if per_column and estimate.ndim < 2:
        raise ValueError(f"per_column needs estimates with an output axis (..., m), got shape "
                         f"{estimate.shape}.")
    if not _broadcasts(truth.shape, estimate.shape):
        raise ValueError(f"truth must have the estimates' shape {estimate.shape} (or one that "
                         f"broadcasts to it, e.g. (K, m) for every round), got {truth.shape}.")
    values = [check.concrete_values(x) for x in (estimate, std, truth)]
    if all(v is not None for v in values):
        e, s, t = values
        finite = np.isfinite(s)
        if np.any(s[finite] < 0):
            raise ValueError("std must be >= 0 (or inf/NaN for an entry to ignore); it has "
                             "negative entries.")
        bad = finite & ~(np.isfinite(e) & np.isfinite(np.broadcast_to(t, e.shape)))
        if bad.any():
            raise ValueError(f"estimate and truth must be finite wherever std is finite; not at "
                             f"indices {np.argwhere(bad)[:5].tolist()}. Set std to inf there to "
                             "leave such entries out.")
    return estimate, std, truth


def _broadcasts(shape, target) -> bool:
    """Whether an array of ``shape`` broadcasts to ``target`` (without growing it)."""
    try:
        return np.broadcast_shapes(shape, target) == target
    except ValueError:
        return False


def _has_posterior(scheme, caller: str) -> None:
    if not (isinstance(scheme, Scheme) and callable(getattr(scheme, "posterior_report", None))):
        what = type(scheme).__name__ if isinstance(scheme, Scheme) else repr(scheme)
        raise TypeError(f"{caller} needs a scheme with posterior standard errors: a LeTCC "
                        f"scheme (e.g. letcc_jax.letcc(K, N)), got {what}. Other schemes "
                        "have no standard errors to calibrate.")
    scheme.check_unpadded(caller)


def _simulate_rounds(f, scheme, X, key, stragglers, faults, trials, caller, name,
                     sweeps: bool = False):
    """Checked, simulated posterior rounds, shared by ``posterior_rounds`` and ``calibrate``:
    (posterior and truth with leading axes (*grid, C, T), whether X came in batches, the
    grid). A sweep grid is an error unless ``sweeps``."""
    _has_posterior(scheme, caller)
    trials = check.check_positive_int(trials, "trials")
    batched = np.ndim(X) == 3
    X, faults = check_round(f, scheme, X, stragglers, faults, key, name=name, batches=True)
    grid = _rounds.batch_shape((scheme, stragglers, faults))
    if grid and not sweeps:
        raise ValueError(
            f"{caller} calibrates one setting; its parameters are swept over {grid}. Simulate "
            "the sweep's rounds with posterior_rounds and calibrate each point with "
            "Calibration.from_rounds, or calibrate each setting separately.")
    post, truth, finite = _posterior_trials_compiled(
        f, scheme, X, _trial_keys_compiled(key, X.shape[0], trials, batched), stragglers, faults)
    check_truth(finite, X, name)
    return post, truth, batched, grid


# --------------------------------------------------------------- public entries


def conformal_quantiles(
    estimate: Float[Array, "*T K m"],
    std: Float[Array, "*T K m"],
    truth: Float[Array, "*T K m"],
    levels: Sequence[float] = (0.8, 0.95),
    *,
    per_column: bool = False,
) -> Float[Array, "L *m"]:
    """Split-conformal quantiles of the scores ``|estimate - truth| / std``.

    For calibration rounds whose truth is known (recorded from real workers, or simulated),
    the conformal quantile at level q is the ``ceil((n + 1) q)``-th smallest score, n being
    the number of entries with a finite ``std`` (entries with inf or NaN ``std``, such as
    inputs the survivors could not determine, are left out; an exact estimate scores 0 even
    where ``std`` is 0); it is inf when that rank exceeds n. For a new entry exchangeable
    with the calibration entries, ``estimate +- quantile * std`` then covers the truth with
    probability at least q. A level that is a decimal of up to four places (or a fraction
    with a denominator up to 46,340) is ranked exactly, in integers; others in floating
    point. Works under ``jit`` and ``vmap`` (value checks are skipped on traced values);
    compiled once per shape, dtype and ``per_column``.

    Args:
      estimate: (K, m) float estimates of one round, or (T, K, m) of T rounds (any leading
        axes).
      std: their standard errors, same shape as ``estimate``; inf or NaN leaves an entry
        out.
      truth: the true outputs, of ``estimate``'s shape or one that broadcasts to it.
      levels: coverage levels, distinct numbers strictly between 0 and 1 (a concrete
        sequence, or one number).
      per_column: one quantile per output column (the last axis) instead of one pooled.

    Returns:
      (L,) float quantiles, or (L, m) with ``per_column``, in the promoted dtype of the
      inputs.

    Raises:
      TypeError: inputs that are not real arrays; levels that are not real numbers;
        ``per_column`` not a bool.
      ValueError: estimate and std of different or empty shapes, truth that does not
        broadcast to them; levels not in (0, 1) or repeated; on concrete values, a
        negative ``std``, or a non-finite estimate or truth where ``std`` is finite.

    Example:
      >>> import jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> errors = jnp.arange(1.0, 20.0)[:, None]           # n = 19 scores 1, 2, ..., 19
      >>> lc.conformal_quantiles(errors, jnp.ones((19, 1)), jnp.zeros((19, 1)),
      ...                        levels=(0.5, 0.9, 0.99)).tolist()   # ranks 10, 18, beyond n
      [10.0, 18.0, inf]
    """
    per_column = _check_flag(per_column, "per_column")
    estimate, std, truth = _check_rounds(estimate, std, truth, per_column)
    return _quantiles_compiled(estimate, std, truth, level_arrays(_levels(levels)), per_column)


def coverage(
    interval: tuple[Float[Array, "*T K m"], Float[Array, "*T K m"]],
    truth: Float[Array, "*T K m"],
) -> Float[Array, ""]:
    """The fraction of entries whose truth lies inside their interval [lower, upper].

    Entries with an infinite bound (an input the survivors could not determine, whose
    standard error is inf) are left out, as ``conformal_quantiles`` leaves them out. Use it
    on held-out rounds to compare intervals before and after calibration
    (``Calibration.interval`` with ``calibrated=False`` and ``True``). Works under ``jit``
    (then a fraction with no finite interval is NaN).

    Args:
      interval: ``(lower, upper)``, two float arrays of one shape, e.g. (T, K, m).
      truth: the true outputs, of that shape or one that broadcasts to it.

    Returns:
      A float JAX scalar in the intervals' dtype.

    Raises:
      TypeError: ``interval`` is not a pair of real arrays.
      ValueError: bounds of different shapes, truth that does not broadcast to them; on
        concrete values, no interval with finite bounds.

    Example:
      >>> import jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> lower, upper = jnp.zeros(4), jnp.array([1.0, 1.0, 1.0, jnp.inf])
      >>> truth = jnp.array([0.5, 2.0, 1.0, 9.0])     # inside, outside, on the bound, left out
      >>> round(float(lc.coverage((lower, upper), truth)), 4)
      0.6667
    """
    if not isinstance(interval, (tuple, list)) or len(interval) != 2:
        raise TypeError(f"interval must be a pair (lower, upper) of arrays, got "
                        f"{type(interval).__name__}.")
    lower, upper, truth = (check.float_array(x, name) for x, name in
                           ((interval[0], "lower"), (interval[1], "upper"), (truth, "truth")))
    lower, upper, truth = _common_dtype(lower, upper, truth)
    if lower.shape != upper.shape:
        raise ValueError(f"lower and upper must have one shape, got {lower.shape} and "
                         f"{upper.shape}.")
    if not _broadcasts(truth.shape, lower.shape):
        raise ValueError(f"truth must have the intervals' shape {lower.shape} (or one that "
                         f"broadcasts to it), got {truth.shape}.")
    fraction, finite = _covered_compiled(lower, upper, truth)
    if check.is_concrete(finite) and int(finite) == 0:
        raise ValueError("coverage: no interval has finite bounds (every standard error is "
                         "inf), so there is nothing to measure.")
    return fraction


def posterior_rounds(
    f: Callable,
    scheme: Scheme,
    X: Float[Array, "*C K d"],
    key: jax.Array,
    *,
    stragglers: StragglerModel,
    faults: Sequence[FaultModel] | None = None,
    trials: int = 100,
) -> tuple[Posterior, Float[Array, "*C T K m"]]:
    """The posteriors of ``trials`` simulated rounds, with the truth they estimate.

    Encodes X, runs f on the workers once, and decodes each round's straggler pattern and
    fault draws with ``scheme.posterior``: the rounds ``calibrate`` ranks, for evaluating
    a calibration on held-out rounds. Trial t uses the key of trial t of ``monte_carlo``
    (its pattern is ``run_coded``'s with that key). One compiled call, cached on f, the
    structure of the scheme and models, shapes and dtypes (``calibrate`` with the same
    arguments reuses it).

    Args:
      f: one input (d,) -> one output (m,); hashable (compilations are cached per f).
      scheme: a LeTCC scheme (it has posterior standard errors); swept parameters of the
        scheme and the models (as for ``monte_carlo``) give every point of their grid the
        same rounds.
      X: (K, d) inputs, or C batches of them (C, K, d); batch c uses key c of
        ``jax.random.split(key, C)`` in place of ``key``.
      key: PRNG key of the straggler patterns and fault draws.
      stragglers: straggler model, e.g. ``ExactStragglers(S)``.
      faults: output fault models (noise, adversaries, failed workers), applied in order.
      trials: rounds per batch.

    Returns:
      ``(posterior, truth)``: a ``Posterior`` whose fields have leading axes (T,), or
      (C, T) with batches (``estimate`` and ``std`` (T, K, m), ``scale`` (T, m), ``power``
      (T, K)), each after the sweep grid's axes ``(*grid, ...)``, and f(X) broadcast to the
      estimates' shape.

    Raises:
      TypeError: a scheme without posterior standard errors (not LeTCC); f, the models or
        the key of the wrong type (as ``monte_carlo``).
      ValueError: ``trials`` not a positive int; X not (K, d) or (C, K, d), or not
        finite; f not finite on X; swept parameters that do not broadcast together; a
        model that leaves fewer survivors than the scheme needs.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> X_test = jax.random.normal(jax.random.key(2), (4, 8, 2))     # C = 4 batches
      >>> post, truth = lc.posterior_rounds(jnp.sin, lc.letcc(8, 24), X_test,
      ...                                   jax.random.key(3), stragglers=lc.ExactStragglers(4),
      ...                                   trials=16)
      >>> post.estimate.shape, post.std.shape, post.power.shape, truth.shape
      ((4, 16, 8, 2), (4, 16, 8, 2), (4, 16, 8), (4, 16, 8, 2))
      >>> sweep = lc.letcc(8, 24).replace(lam_dec=jnp.array([0.0, 1e-4, 1e-2]))
      >>> post, _ = lc.posterior_rounds(jnp.sin, sweep, X_test[0], jax.random.key(3),
      ...                               stragglers=lc.ExactStragglers(4), trials=16)
      >>> post.std.shape                                    # (lam_dec, T, K, m)
      (3, 16, 8, 2)
    """
    post, truth, batched, grid = _simulate_rounds(f, scheme, X, key, stragglers, faults,
                                                  trials, "posterior_rounds", "X", sweeps=True)
    if batched:
        return post, truth
    return jax.tree.map(lambda v: jnp.squeeze(v, len(grid)), (post, truth))  # C = 1


@pytree_dataclass
@dataclasses.dataclass(frozen=True)
class Calibration:
    """Split-conformal rescaling of LeTCC's standard errors (``calibrate``).

    ``interval(posterior, level)`` is ``estimate +- quantile * std`` with this
    calibration's quantile for ``level`` in place of the Gaussian z_q. A pytree: the levels
    are static, the rest are leaves, so it passes through ``jit``.

    Attributes:
      levels (tuple[float, ...]): the calibrated coverage levels (static).
      quantiles (jax.Array): (L,) float conformal quantiles of the scores
        ``|estimate - truth| / std``, one per level; (L, m) when calibrated per output column.
      uncalibrated_coverage (jax.Array): (L,) float, how often the uncalibrated Gaussian
        intervals ``estimate +- z_q std`` covered the truth on the calibration rounds
        (q = 0.95 is z = 1.96); compare with ``levels``.
      count (jax.Array): int, n, the number of finite scores ranked (entries with an
        infinite std are left out).

    Example:
      >>> import jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> cal = lc.Calibration((0.8, 0.95), jnp.array([1.5, 3.0]), jnp.array([0.7, 0.85]),
      ...                      jnp.array(400))
      >>> cal.quantile(0.95).tolist(), [round(q, 3) for q in cal.uncalibrated_coverage.tolist()]
      (3.0, [0.7, 0.85])
    """

    levels: tuple[float, ...] = dataclasses.field(metadata={"static": True})
    quantiles: Float[Array, "L *m"]
    uncalibrated_coverage: Float[Array, " L"]
    count: Int[Array, ""]

    @classmethod
    def from_rounds(cls, estimate: Float[Array, "*T K m"], std: Float[Array, "*T K m"],
                    truth: Float[Array, "*T K m"], levels: Sequence[float] = (0.8, 0.95), *,
                    per_column: bool = False) -> Calibration:
        """The calibration of rounds whose truth is known, recorded rather than simulated
        (real workers, replayed deadlines): ``calibrate``'s quantiles and Gaussian coverage
        for your own ``(estimate, std, truth)``, e.g. the ``Posterior`` fields of recorded
        rounds.

        Args:
          estimate: (K, m) float estimates of one round, or (T, K, m) of T rounds (any
            leading axes).
          std: their standard errors, same shape; inf or NaN leaves an entry out.
          truth: the true outputs, of ``estimate``'s shape or one that broadcasts to it.
          levels: coverage levels, distinct numbers strictly between 0 and 1.
          per_column: one quantile per output column instead of one pooled.

        Returns:
          A ``Calibration``, as ``calibrate`` returns.

        Raises:
          TypeError: inputs that are not real arrays; levels that are not numbers.
          ValueError: as ``conformal_quantiles``; on concrete values, no finite standard
            error, or too few for a level (its quantile would be inf).

        Example:
          >>> import jax.numpy as jnp
          >>> import letcc_jax as lc
          >>> errors = jnp.arange(1.0, 20.0)[:, None]        # n = 19 scores 1, 2, ..., 19
          >>> cal = lc.Calibration.from_rounds(errors, jnp.ones((19, 1)), jnp.zeros((19, 1)),
          ...                                  levels=(0.5, 0.9))
          >>> cal.quantiles.tolist(), int(cal.count)       # ranks 10 and 18
          ([10.0, 18.0], 19)
        """
        levels = _levels(levels)
        per_column = _check_flag(per_column, "per_column")
        estimate, std, truth = _check_rounds(estimate, std, truth, per_column)
        return _calibration(estimate, std, truth, levels, per_column, "Calibration.from_rounds")

    def quantile(self, level: float) -> Float[Array, "*m"]:
        """The calibrated multiplier of the standard errors at ``level``.

        Args:
          level: one of ``levels``.

        Returns:
          A float JAX scalar, or (m,) when calibrated per output column.

        Raises:
          ValueError: ``level`` was not calibrated (the message lists those that were).
          TypeError: ``level`` is not a real number.

        Example:
          >>> import jax.numpy as jnp
          >>> import letcc_jax as lc
          >>> cal = lc.Calibration((0.9,), jnp.array([2.5]), jnp.array([0.8]), jnp.array(99))
          >>> float(cal.quantile(0.9))
          2.5
        """
        level = _level(level)
        matches = [i for i, q in enumerate(self.levels) if abs(q - level) <= 1e-12]
        if not matches:
            raise ValueError(f"level {level} was not calibrated; this calibration holds levels "
                             f"{list(self.levels)}. Call calibrate with levels=(..., {level}).")
        return self.quantiles[matches[0]]

    def half_width(self, posterior: Posterior, level: float) -> Float[Array, "*T K m"]:
        """The calibrated half-widths ``quantile * std`` at ``level`` (inf where std is).

        Args:
          posterior: a ``Posterior`` (from ``LeTCC.posterior`` or ``posterior_rounds``;
            any leading axes).
          level: one of ``levels``.

        Returns:
          A float array of ``posterior.std``'s shape and dtype.

        Raises:
          TypeError: ``posterior`` has no ``std``; ``level`` is not a real number.
          ValueError: ``level`` was not calibrated; a per-column calibration whose m
            differs from the posterior's.

        Example:
          >>> import jax.numpy as jnp
          >>> import letcc_jax as lc
          >>> scheme = lc.letcc(4, 12)
          >>> post = scheme.posterior(jnp.sin(scheme.beta)[:, None])
          >>> cal = lc.Calibration((0.9,), jnp.array([2.0]), jnp.array([0.8]), jnp.array(99))
          >>> bool(jnp.allclose(cal.half_width(post, 0.9), 2 * post.std))
          True
        """
        return _half_widths_compiled(_posterior_field(posterior, "std"),
                                     self._multiplier(posterior, level))

    def interval(self, posterior: Posterior, level: float, *, calibrated: bool = True) -> tuple[
            Float[Array, "*T K m"], Float[Array, "*T K m"]]:
        """The interval ``estimate +- half-width`` at ``level``, per estimate.

        Args:
          posterior: a ``Posterior`` (from ``LeTCC.posterior`` or ``posterior_rounds``;
            any leading axes).
          level: one of ``levels`` (any level in (0, 1) with ``calibrated=False``).
          calibrated: False for the uncalibrated Gaussian interval ``estimate +- z_q std``,
            to compare with.

        Returns:
          ``(lower, upper)``, two float arrays of ``posterior.estimate``'s shape; infinite
          where ``std`` is.

        Raises:
          TypeError: ``posterior`` has no ``estimate`` and ``std``; ``level`` is not a real
            number.
          ValueError: ``level`` was not calibrated (with ``calibrated=True``) or is not in
            (0, 1).

        Example:
          >>> import jax.numpy as jnp
          >>> import letcc_jax as lc
          >>> scheme = lc.letcc(4, 12)
          >>> post = scheme.posterior(jnp.sin(scheme.beta)[:, None])
          >>> cal = lc.Calibration((0.9,), jnp.array([2.0]), jnp.array([0.8]), jnp.array(99))
          >>> lower, upper = cal.interval(post, 0.9)
          >>> bool(jnp.allclose(upper - lower, 4 * post.std))
          True
        """
        estimate, std = (_posterior_field(posterior, name) for name in ("estimate", "std"))
        if _check_flag(calibrated, "calibrated"):
            multiplier = self._multiplier(posterior, level)
        else:
            multiplier = jnp.asarray(_gaussian((_level(level),))[0], std.dtype)
        return _band_compiled(estimate, std, multiplier)

    def _multiplier(self, posterior, level: float):
        """``quantile(level)``, checked against the posterior's output columns."""
        q = self.quantile(level)
        std = _posterior_field(posterior, "std")
        if np.ndim(q) and std.shape[-1:] != np.shape(q):
            raise ValueError(f"this calibration is per output column, for m = {np.size(q)}; the "
                             f"posterior's std has shape {std.shape}.")
        return q


def _posterior_field(posterior, name: str):
    value = getattr(posterior, name, None)
    if value is None:
        raise TypeError(f"posterior must be a letcc_jax.Posterior (from scheme.posterior or "
                        f"posterior_rounds), got {type(posterior).__name__} without .{name}.")
    return jnp.asarray(value)


def calibrate(
    f: Callable,
    scheme: Scheme,
    X_cal: Float[Array, "*C K d"],
    key: jax.Array,
    *,
    stragglers: StragglerModel,
    faults: Sequence[FaultModel] | None = None,
    trials: int = 100,
    levels: Sequence[float] = (0.8, 0.95),
    per_column: bool = False,
) -> Calibration:
    """Calibrate LeTCC's posterior standard errors on simulated rounds (split conformal).

    Runs ``trials`` rounds per batch of ``X_cal`` (``posterior_rounds``: straggler
    patterns and fault draws from the models, the posterior of each), scores every estimate
    with a finite standard error by ``|estimate - truth| / std``, and takes the conformal
    quantile of the scores at each level (``conformal_quantiles``). The intervals
    ``estimate +- quantile * std`` (``Calibration.interval``) then cover the truth of a new
    round with probability at least q, if that round is exchangeable with the calibration
    rounds: the same f, scheme and models, and inputs drawn like ``X_cal`` (keep them
    disjoint from the inputs you evaluate on; several batches C make the calibration
    cover the inputs' variety, not only the patterns'). Coverage here is over all entries
    of a round, which are correlated: count rounds, not entries, when judging it.

    Args:
      f: one input (d,) -> one output (m,); hashable (compilations are cached per f).
      scheme: a LeTCC scheme (it has posterior standard errors), unswept.
      X_cal: (K, d) or (C, K, d) float calibration inputs; f must be finite on them.
      key: PRNG key of the straggler patterns and fault draws.
      stragglers: the straggler model to calibrate for, e.g. ``ExactStragglers(S)``.
      faults: output fault models, applied in order.
      trials: rounds per batch.
      levels: coverage levels, distinct numbers strictly between 0 and 1.
      per_column: one quantile per output column instead of one pooled (for outputs of
        different roughness).

    Returns:
      A ``Calibration``: the levels, their quantiles, the coverage the uncalibrated
      Gaussian intervals had on the calibration rounds, and the number of scores.

    Raises:
      TypeError: a scheme without posterior standard errors (not LeTCC); f, the models or
        the key of the wrong type (as ``monte_carlo``); levels that are not numbers.
      ValueError: ``trials`` not a positive int; levels not in (0, 1) or repeated; X_cal
        not (K, d) or (C, K, d), or not finite; f not finite on X_cal; swept parameters;
        on concrete values, no finite standard error in any round, or too few for a level
        (its quantile would be inf).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> X_cal = jax.random.normal(jax.random.key(1), (4, 8, 2))      # C = 4 batches
      >>> cal = lc.calibrate(jnp.sin, lc.letcc(8, 24), X_cal, jax.random.key(0),
      ...                    stragglers=lc.ExactStragglers(4), trials=16)
      >>> cal.levels, cal.quantiles.shape, int(cal.count)       # 4 * 16 rounds of 8 x 2
      ((0.8, 0.95), (2,), 1024)
    """
    levels = _levels(levels)
    per_column = _check_flag(per_column, "per_column")
    post, truth, *_ = _simulate_rounds(f, scheme, X_cal, key, stragglers, faults, trials,
                                      "calibrate", "X_cal")
    return _calibration(post.estimate, post.std, truth, levels, per_column, "calibrate")


def _calibration(estimate, std, truth, levels: tuple[float, ...], per_column: bool,
                 caller: str) -> Calibration:
    """The ``Calibration`` of rounds (estimate, std, truth), checked values: what
    ``calibrate`` returns for simulated rounds and ``Calibration.from_rounds`` for
    recorded ones."""
    quantiles, before, count = _summary_compiled(
        estimate, std, truth, level_arrays(levels),
        jnp.asarray(_gaussian(levels), jnp.result_type(float)), per_column)
    if check.is_concrete(count, quantiles):
        if int(count) == 0:
            raise ValueError(f"{caller}: no calibration round gave a finite standard error "
                             "(every input was lost, or fewer than three distinct workers "
                             "answered, which leaves the scale unknown); use fewer stragglers "
                             "or more workers.")
        values = np.asarray(quantiles).reshape(len(levels), -1)
        lost = [q for q, row in zip(levels, values) if not np.all(np.isfinite(row))]
        if lost:
            need = max(math.ceil(q / (1 - q)) for q in lost)
            raise ValueError(f"{caller}: the conformal quantile at levels {lost} is infinite: "
                             f"{int(count)} finite scores in all are too few (level q needs "
                             f"about q / (1 - q){' per column' if per_column else ''}, here "
                             f"{need}), or "
                             "the scores there are infinite (a zero standard error with a "
                             "nonzero error). Run more trials or lower the level.")
    return Calibration(levels, quantiles, before, count)
