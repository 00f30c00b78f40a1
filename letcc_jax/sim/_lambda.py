"""Choosing the smoothing parameters: Monte Carlo grid search on a calibration batch, and
generalised cross-validation (GCV) for the decoder on one round of worker outputs."""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float
from tqdm.auto import tqdm

from ..core import spline as _spline
from ._evaluate import _check_inputs, _monte_carlo
from ._models import NoStragglers
from ..core._schemes import LeTCC
from .._validation import check_mask, check_matrix, float_array

__all__ = ["DEFAULT_LAMBDA_GRID", "LambdaSearch", "select_lambda", "gcv"]

DEFAULT_LAMBDA_GRID = tuple(float(v) for v in np.concatenate([[0.0], np.logspace(-9, 0, 19)]))


class LambdaSearch(NamedTuple):
    """Result of ``select_lambda``.

    Attributes:
      scheme: the input scheme with the best (lam_enc, lam_dec).
      lam_enc: (G_enc,) grid searched for the encoder.
      lam_dec: (G_dec,) grid searched for the decoder.
      mse: (G_enc, G_dec) Monte Carlo mean loss for every pair (same random patterns).
    """

    scheme: LeTCC
    lam_enc: np.ndarray
    lam_dec: np.ndarray
    mse: np.ndarray


def _grid(values, name):
    grid = np.asarray(values, np.float64).reshape(-1)
    if grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid < 0):
        raise ValueError(f"{name} must be a non-empty sequence of finite values >= 0.")
    return grid


def select_lambda(
    f: Callable,
    scheme: LeTCC,
    X_cal: Float[Array, "K d"],
    key: jax.Array,
    *,
    lam_enc_grid: Sequence[float] = (0.0,),
    lam_dec_grid: Sequence[float] = DEFAULT_LAMBDA_GRID,
    trials: int = 100,
    stragglers=NoStragglers(),
    faults: Sequence = (),
    progress: bool = True,
) -> LambdaSearch:
    """Grid search of (lam_enc, lam_dec) minimising the Monte Carlo loss on a calibration
    batch ``X_cal`` (keep it disjoint from the inputs you evaluate on).

    Every grid point sees the same straggler patterns and noise draws (common random
    numbers), so differences between points are not sampling noise. The scheme is a
    pytree whose lambdas are leaves: the search compiles once.
    """
    if not isinstance(scheme, LeTCC):
        raise TypeError(f"select_lambda tunes a LeTCC scheme, got {type(scheme).__name__}.")
    X_cal = _check_inputs(f, scheme, X_cal, stragglers)
    grid_enc, grid_dec = _grid(lam_enc_grid, "lam_enc_grid"), _grid(lam_dec_grid, "lam_dec_grid")
    labels = jnp.zeros((scheme.K,), jnp.int32)
    batch = min(64, trials)
    losses = np.empty((grid_enc.size, grid_dec.size))
    pairs = [(i, j) for i in range(grid_enc.size) for j in range(grid_dec.size)]
    for i, j in tqdm(pairs, desc="lambda grid", disable=not progress, leave=False):
        candidate = scheme.replace(
            lam_enc=jnp.asarray(grid_enc[i], scheme.alpha.dtype),
            lam_dec=jnp.asarray(grid_dec[j], scheme.alpha.dtype),
        )
        result = _monte_carlo(
            f, candidate, X_cal, key, labels, trials, stragglers, tuple(faults), False, batch
        )
        losses[i, j] = float(jnp.mean(result.mse))
    i, j = np.unravel_index(np.nanargmin(losses), losses.shape)
    best = scheme.replace(
        lam_enc=jnp.asarray(grid_enc[i], scheme.alpha.dtype),
        lam_dec=jnp.asarray(grid_dec[j], scheme.alpha.dtype),
    )
    return LambdaSearch(best, grid_enc, grid_dec, losses)


@jax.jit
def _gcv_scores(beta, Y, alive, grid):
    return jax.vmap(lambda lam: _spline.gcv_score(beta, Y, alive, lam))(grid)


def gcv(
    scheme: LeTCC,
    Y: Float[Array, "N m"],
    alive: Bool[Array, " N"] | None = None,
    lam_grid: Sequence[float] = DEFAULT_LAMBDA_GRID[1:],
) -> tuple[float, np.ndarray]:
    """Decoder smoothing parameter by generalised cross-validation on worker outputs.

    Needs no ground truth: it scores how well each lambda predicts left-out survivors.
    Use it when the outputs are noisy; for noiseless outputs GCV drifts to the smallest
    lambda on the grid, and interpolation (lam_dec = 0) is right.

    Returns:
      ``(best_lambda, scores)`` with scores of shape (len(lam_grid),).
    """
    if not isinstance(scheme, LeTCC):
        raise TypeError(f"gcv tunes a LeTCC decoder, got {type(scheme).__name__}.")
    Y = float_array(Y, "Y")
    check_matrix(Y, scheme.N, "Y", "N")
    alive = jnp.ones((scheme.N,), bool) if alive is None else check_mask(alive, scheme.N)
    alive = scheme.effective_mask(Y, alive)
    if int(jnp.sum(alive)) < 4:
        raise ValueError("gcv needs at least 4 valid worker results.")
    grid = _grid(lam_grid, "lam_grid")
    if np.any(grid == 0):
        raise ValueError("gcv: lambda = 0 interpolates, where GCV is undefined; drop it from lam_grid.")
    scores = np.asarray(
        _gcv_scores(scheme.beta.astype(Y.dtype), jnp.where(alive[:, None], Y, 0.0), alive,
                    jnp.asarray(grid, Y.dtype))
    )
    return float(grid[int(np.nanargmin(scores))]), scores
