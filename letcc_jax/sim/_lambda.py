"""Choosing the smoothing parameters: Monte Carlo grid search on calibration inputs, and
generalised cross-validation (GCV) for the decoder on one round of worker outputs."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from .. import _validation as check
from . import _rounds
from ..core import spline as _spline
from ..core._schemes import LeTCC, usable
from ._evaluate import check_round, check_truth
from ._models import FaultModel, NoStragglers, StragglerModel

__all__ = ["DEFAULT_LAMBDA_GRID", "LambdaSearch", "select_lambda", "gcv"]

DEFAULT_LAMBDA_GRID = tuple(float(v) for v in np.concatenate([[0.0], np.logspace(-9, 0, 19)]))


class LambdaSearch(NamedTuple):
    """Result of ``select_lambda``: the best scheme and the loss of every lambda pair.

    Attributes:
      scheme: the input scheme with the best (lam_enc, lam_dec); for swept straggler or
        fault models, a swept scheme holding the best pair of every grid point (lambdas
        of shape ``(*grid)``), which pairs up with the same models in ``monte_carlo``.
      lam_enc: (G_enc,) float64 grid searched for the encoder.
      lam_dec: (G_dec,) float64 grid searched for the decoder.
      mse: ``(G_enc, G_dec, *grid)`` float64 Monte Carlo mean loss for every pair (same
        random patterns for every pair).

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np
      >>> import letcc_jax as lc
      >>> X_cal = jnp.linspace(-1, 1, 16).reshape(2, 4, 2)
      >>> search = lc.select_lambda(jnp.tanh, lc.letcc(4, 12), X_cal, jax.random.key(0),
      ...                           lam_dec_grid=[0.0, 1e-6, 1e-3], trials=8,
      ...                           stragglers=lc.ExactStragglers(3),
      ...                           faults=[lc.GaussianNoise(0.01)])
      >>> search.lam_enc.tolist(), search.lam_dec.tolist(), search.mse.shape
      ([0.0], [0.0, 1e-06, 0.001], (1, 3))
    """

    scheme: LeTCC
    lam_enc: np.ndarray
    lam_dec: np.ndarray
    mse: np.ndarray


def _grid(values, name):
    try:
        if isinstance(values, (str, bytes)) or np.asarray(values).dtype.kind not in "fiu":
            raise TypeError
        grid = np.asarray(values, np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a non-empty sequence of finite values >= 0, "
                         f"got {values!r}.") from None
    if grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid < 0):
        raise ValueError(f"{name} must be a non-empty sequence of finite values >= 0.")
    return grid


def select_lambda(
    f: Callable,
    scheme: LeTCC,
    X_cal: Float[Array, "C K d"],
    key: jax.Array,
    *,
    lam_enc_grid: Sequence[float] | None = None,
    lam_dec_grid: Sequence[float] = DEFAULT_LAMBDA_GRID,
    trials: int = 100,
    stragglers: StragglerModel = NoStragglers(),
    faults: Sequence[FaultModel] = (),
) -> LambdaSearch:
    """Grid search of (lam_enc, lam_dec) minimising the Monte Carlo loss
    (``expected_loss``) on calibration inputs ``X_cal`` (keep them disjoint from the inputs
    you evaluate on).

    The whole grid is one compiled sweep: every pair sees the same straggler patterns and
    noise draws (common random numbers), so differences between pairs are not sampling
    noise. ``X_cal`` is one (K, d) batch or C batches (C, K, d) whose losses are averaged.
    Straggler and fault models may themselves be swept (e.g. ``GaussianNoise(sigmas)``):
    the best pair is then chosen per noise level. Runs eagerly (not under ``jit``).

    Args:
      f: one input (d,) -> one output (m,), as in ``monte_carlo`` (hashable).
      scheme: the scheme whose lambdas are searched: any scheme with the scalar leaves
        ``lam_enc`` and ``lam_dec`` (LeTCC, ``bspline``, a scheme of your own), unswept,
        padded by ``Scheme.pad_workers`` or not. The grids must follow their fields' rules
        (``bspline``'s lambdas are positive: leave 0 out).
      X_cal: (K, d) or (C, K, d) float calibration inputs, finite; f must be finite on
        them.
      key: PRNG key of the straggler patterns and fault draws.
      lam_enc_grid: encoder lambdas to try, finite and >= 0 (default: the scheme's own
        ``lam_enc`` only).
      lam_dec_grid: decoder lambdas to try, finite and >= 0 (default
        ``DEFAULT_LAMBDA_GRID``).
      trials: straggler patterns per batch and pair.
      stragglers: straggler model (default: everyone answers); may be swept.
      faults: output fault models; may be swept.

    Returns:
      A ``LambdaSearch``: the scheme with the best pair, the two grids and the loss of
      every pair.

    Raises:
      TypeError: ``scheme`` has no ``lam_enc`` and ``lam_dec``; called under a JAX
        transformation;
        f, the models or the key of the wrong type (as ``monte_carlo``).
      ValueError: a grid that is empty, not finite or negative; ``trials`` not a positive
        int; a swept scheme; X_cal not (K, d) or (C, K, d), or not finite; f not finite
        on X_cal; a straggler model that leaves fewer survivors than the scheme needs.

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np
      >>> import letcc_jax as lc
      >>> X_cal = jnp.linspace(-1, 1, 16).reshape(2, 4, 2)          # C = 2 batches
      >>> search = lc.select_lambda(jnp.tanh, lc.letcc(4, 12), X_cal, jax.random.key(0),
      ...                           lam_dec_grid=[0.0, 1e-6, 1e-3], trials=8,
      ...                           stragglers=lc.ExactStragglers(3),
      ...                           faults=[lc.GaussianNoise(0.01)])
      >>> search.mse.shape                                           # (G_enc, G_dec)
      (1, 3)
      >>> i, j = np.unravel_index(np.argmin(search.mse), search.mse.shape)
      >>> bool(np.isclose(search.scheme.lam_dec, search.lam_dec[j]))  # the best pair
      True
    """
    names = {f.name for f in dataclasses.fields(scheme)} if dataclasses.is_dataclass(
        scheme) else set()
    if not {"lam_enc", "lam_dec"} <= names:
        raise TypeError(f"select_lambda searches the scalar leaves lam_enc and lam_dec, which "
                        f"{type(scheme).__name__} does not have; sweep a field of your own "
                        "with scheme.replace(name=grid) through lc.expected_loss.")
    _require_eager("select_lambda", scheme, X_cal, key)
    if lam_enc_grid is None:
        lam_enc_grid = np.asarray(scheme.lam_enc, np.float64).reshape(1)
    trials = check.check_positive_int(trials, "trials")
    X, faults = check_round(f, scheme, X_cal, stragglers, faults, key, name="X_cal",
                            batches=True)
    if _rounds.batch_shape(scheme):
        raise ValueError("select_lambda searches the lambdas of one scheme; this one is a sweep.")
    grid_enc, grid_dec = _grid(lam_enc_grid, "lam_enc_grid"), _grid(lam_dec_grid, "lam_dec_grid")
    setting = _rounds.batch_shape((stragglers, faults))
    ones = (1,) * len(setting)
    dtype = jnp.result_type(scheme.alpha)
    swept = scheme.replace(lam_enc=jnp.asarray(grid_enc.reshape((-1, 1) + ones), dtype),
                           lam_dec=jnp.asarray(grid_dec.reshape((-1,) + ones), dtype))
    losses, finite = _rounds.expected_loss_compiled(f, swept, X, key, stragglers, faults,
                                                    trials=trials)
    check_truth(finite, X, "X_cal")
    losses = np.asarray(losses, np.float64)
    flat = losses.reshape(grid_enc.size * grid_dec.size, -1)
    if np.all(np.isnan(flat), axis=0).any():
        raise ValueError("select_lambda: every lambda pair gave a NaN loss; check f and X_cal.")
    i, j = np.unravel_index(np.nanargmin(flat, axis=0), (grid_enc.size, grid_dec.size))
    best = scheme.replace(lam_enc=jnp.asarray(grid_enc[i].reshape(setting), dtype),
                          lam_dec=jnp.asarray(grid_dec[j].reshape(setting), dtype))
    return LambdaSearch(best, grid_enc, grid_dec, losses)


@functools.partial(jax.jit, static_argnames="method")
def _gcv_scores(beta, Y, alive, grid, method):
    """The scores of Y in the units of its largest column scaled by a power of two to unit
    size, their relative uncertainty from the rounding of Y (one eps of every output, to
    first order: ``letcc_jax.core.spline.gcv_terms``), and that scale (one program). Every
    column is fitted at unit size by a power of two of its own (exact), so that a column
    far smaller than the largest keeps its digits; its residuals then count in the largest
    column's units, where they may underflow (they are that much smaller)."""
    Y = jnp.where(alive[:, None], Y, jnp.zeros((), Y.dtype))
    column = _spline.power_of_two_scale(jnp.max(jnp.abs(Y), axis=0), 0)
    scale = jnp.min(column)
    weight = (scale / column) ** 2  # powers of two, at most 1
    eps = jnp.finfo(Y.dtype).eps

    def score(lam):
        rss, sensitivity, dof = _spline.gcv_terms(beta, Y * column, alive, lam, method)
        total = jnp.sum(rss * weight)
        spread = eps * jnp.sum(sensitivity * weight) / jnp.where(total > 0, total, 1.0)
        return (total / jnp.sum(alive).astype(Y.dtype)) / dof**2, spread

    scores, spread = jax.vmap(score)(grid)
    return scores, spread, scale


def gcv(
    scheme: LeTCC,
    Y: Float[Array, "N m"],
    alive: Bool[Array, " N"] | None = None,
    lam_grid: Sequence[float] = DEFAULT_LAMBDA_GRID[1:],
) -> tuple[float, np.ndarray]:
    """Decoder smoothing parameter by generalised cross-validation on worker outputs.

    Needs no ground truth: it scores how well each lambda predicts left-out survivors.
    Use it when the outputs are noisy; for noiseless outputs GCV drifts to the small
    lambdas of the grid, and interpolation (lam_dec = 0) is right. The grid is one
    compiled, vmapped call. Runs eagerly (not under ``jit``).

    Args:
      scheme: a ``LeTCC`` scheme; its worker tags ``beta`` are the knots (its lambdas are
        not used).
      Y: (N, m) float worker outputs; non-finite rows are erasures.
      alive: (N,) bool mask of the workers that answered; default all.
      lam_grid: decoder lambdas to score, finite and > 0 (default
        ``DEFAULT_LAMBDA_GRID`` without its 0).

    Returns:
      ``(best_lambda, scores)``: a Python float, and a float NumPy array of shape
      (len(lam_grid),), in the dtype of Y. ``best_lambda`` is the largest lambda whose
      score is within the scores' own uncertainty of the least: near interpolation a score
      moves with the rounding of Y (about 1e-3 relative in float32 at N = 40), so lambdas
      whose scores differ by less are ties, and the smoothest of them is taken. A score
      scales with the square of Y and its minimiser does not, so the choice is made on Y
      scaled by a power of two to unit size, each column by its own: outputs of any size
      choose as unit-size ones do, even where their scores, reported in Y's units,
      underflow to 0 or overflow to inf. Near interpolation the residuals are read from
      the fit's third derivative, not from differences that cancel
      (``letcc_jax.core.spline.gcv_terms``).

    Raises:
      TypeError: ``scheme`` has no ``lam_enc`` and ``lam_dec``; called under a JAX
        transformation; Y
        complex or not numeric; ``alive`` not boolean.
      ValueError: Y not (N, m); ``alive`` not (N,); fewer than 4 valid results; a grid
        that is empty, negative, not finite or contains 0; a swept ``beta``; scores that
        are not finite.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> scheme = lc.letcc(8, 40)
      >>> noise = 0.1 * jax.random.normal(jax.random.key(0), (40, 1))
      >>> Y = jnp.sin(3 * scheme.beta)[:, None] + noise     # noisy outputs of the workers
      >>> lam, scores = lc.gcv(scheme, Y)
      >>> scores.shape, lam > 0
      ((19,), True)
      >>> scheme.replace(lam_dec=lam).decode(Y).shape       # the denoised estimates
      (8, 1)
    """
    if not isinstance(scheme, LeTCC):
        raise TypeError(f"gcv tunes a LeTCC decoder, got {type(scheme).__name__}.")
    scheme.check_unpadded("gcv")
    _require_eager("gcv", scheme, Y, alive)
    scheme.validate()
    Y = check.float_array(Y, "Y")
    check.check_matrix(Y, scheme.N, "Y", "N")
    alive = np.ones((scheme.N,), bool) if alive is None else check.check_mask(alive, scheme.N)
    used = np.asarray(usable(Y, alive))
    if int(used.sum()) < 4:
        raise ValueError("gcv needs at least 4 valid worker results.")
    grid = _grid(lam_grid, "lam_grid")
    if np.any(grid == 0):
        raise ValueError("gcv: lambda = 0 interpolates, where GCV is undefined; drop it from "
                         "lam_grid.")
    if jnp.ndim(scheme.beta) != 1:
        raise ValueError(f"gcv scores one decoder: the scheme's worker tags beta carry sweep "
                         f"axes (shape {jnp.shape(scheme.beta)}); call gcv once per scheme.")
    # A score scales with the square of Y and its minimiser does not: choose on Y scaled
    # by a power of two to unit size (exact), so that tiny or huge outputs neither
    # underflow nor overflow, and report the scores in Y's own units.
    scaled, spread, scale = _gcv_scores(scheme.beta, Y, jnp.asarray(used),
                                        jnp.asarray(grid, Y.dtype), scheme.solver)
    scaled = np.asarray(scaled)
    if not np.all(np.isfinite(scaled)):
        raise ValueError("gcv: the scores are not finite for some lambdas of lam_grid (the "
                         "smoother failed on these outputs); check Y and lam_grid.")
    _, exponent = np.frexp(float(scale))  # scale = 2^(exponent - 1)
    with np.errstate(over="ignore", under="ignore"):
        scores = np.ldexp(scaled.astype(np.float64), -2 * (int(exponent) - 1)).astype(
            scaled.dtype)
    return float(grid[_least(scaled, np.asarray(spread, np.float64), grid)]), scores


def _least(scores: np.ndarray, spread: np.ndarray, grid: np.ndarray) -> int:
    """Index of GCV's choice: the largest lambda whose score is within the scores' own
    uncertainty of the least. Near interpolation a score is determined by the outputs only
    to the rounding of the outputs (in float32 about 1e-3 relative at lambda = 1e-9, N = 40:
    Y and 3 * Y round differently), and the scores there differ by less, so a plain argmin
    would follow that rounding. ``spread`` is each score's relative uncertainty from that
    rounding (``gcv_terms``'s first-order bound for one eps of every output), doubled, and
    at least sqrt(eps) for the computation's own error (float32: up to 6.5e-5 against
    float64 scores of the same outputs at N = 10); among the lambdas GCV cannot tell from
    the best, the largest gives the smoothest fit."""
    floor = float(np.sqrt(np.finfo(scores.dtype).eps))
    scores = scores.astype(np.float64)
    spread = np.maximum(2.0 * spread, floor)
    best = int(np.argmin(scores))
    tied = np.flatnonzero(scores * (1.0 - spread) <= scores[best] * (1.0 + spread[best]))
    return int(tied[np.argmax(grid[tied])])


def _require_eager(name: str, *args):
    """``name`` chooses among values in Python: its arguments must be concrete."""
    if not check.is_concrete(*jax.tree.leaves(args)):
        raise TypeError(f"{name} runs eagerly (it chooses among the values it computes); "
                        "call it outside jax.jit / jax.vmap / jax.grad.")
