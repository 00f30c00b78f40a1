"""Choosing the smoothing parameters: Monte Carlo grid search (select_lambda) and
generalised cross-validation (gcv) against a float64 reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import letcc_jax as lc
from letcc_jax.core import spline

import reference as ref

# The Monte Carlo configuration of test_core_evaluate.py (same f, sizes, stragglers,
# noise and trials), so that monte_carlo compiles once for both files.
from test_core_evaluate import K, N, S, SIGMA, TRIALS, f


def test_select_lambda_picks_the_grid_minimum():
    scheme = lc.letcc(K, N)
    X = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (K, 2)))
    key = jax.random.key(1)
    stragglers, faults, trials = lc.ExactStragglers(S), (lc.GaussianNoise(SIGMA),), TRIALS
    enc_grid, dec_grid = (0.0, 1e-3), (0.0, 1e-6, 1e-4, 1e-2, 1.0)
    search = lc.select_lambda(f, scheme, X, key, lam_enc_grid=enc_grid, lam_dec_grid=dec_grid,
                              trials=trials, stragglers=stragglers, faults=faults)
    assert isinstance(search, lc.LambdaSearch)
    np.testing.assert_array_equal(search.lam_enc, enc_grid)
    np.testing.assert_array_equal(search.lam_dec, dec_grid)
    assert search.mse.shape == (2, 5) and np.all(np.isfinite(search.mse))
    # Every entry is the Monte Carlo loss of that pair, on the same random patterns: one
    # (K, d) batch is C = 1, whose key is the first of jax.random.split(key, 1).
    for i, lam_enc in enumerate(enc_grid):
        for j, lam_dec in enumerate(dec_grid):
            candidate = scheme.replace(lam_enc=jnp.asarray(lam_enc, jnp.float64),
                                       lam_dec=jnp.asarray(lam_dec, jnp.float64))
            mc = lc.monte_carlo(f, candidate, X, jax.random.split(key, 1)[0], trials=trials,
                                stragglers=stragglers, faults=faults)
            np.testing.assert_allclose(search.mse[i, j], float(np.mean(mc.mse)), rtol=1e-12,
                                       atol=0)
    i, j = np.unravel_index(np.argmin(search.mse), search.mse.shape)
    assert isinstance(search.scheme, lc.LeTCC)
    assert float(search.scheme.lam_enc) == enc_grid[i]
    assert float(search.scheme.lam_dec) == dec_grid[j]
    assert search.scheme.lam_dec.dtype == scheme.lam_dec.dtype
    np.testing.assert_array_equal(np.asarray(search.scheme.beta), np.asarray(scheme.beta))
    # With noisy workers, smoothing beats interpolation.
    assert dec_grid[j] > 0 and search.mse[i, j] < search.mse[i, 0]


# --------------------------------------------------------------------------------- GCV

N_GCV = 120
GRID = np.asarray(lc.DEFAULT_LAMBDA_GRID[1:])  # gcv's default grid: 1e-9 .. 1
# GCV scores against the float64 reference (smoother matrix built column by column with
# LAPACK). float32 is compared for lam <= 1e-4 only: at larger N * lam the Reinsch system
# is too ill-conditioned for float32 (measured relative error 1e-4 at lam = 1e-3, 2e-2 at
# lam = 1; float64 stays below 3e-11 on the whole grid).
GCV_CHECK = {np.float32: (GRID <= 1e-4, 2e-5), np.float64: (GRID <= 1.0, 1e-9)}


def gcv_case(sigma, seed=0):
    scheme = lc.letcc(20, N_GCV)
    beta = np.asarray(scheme.beta)
    rng = np.random.default_rng(seed)
    alive = rng.permutation(N_GCV) >= N_GCV // 5
    Y = np.stack([np.sin(3 * beta), np.cos(2 * beta)], 1) + sigma * rng.standard_normal((N_GCV, 2))
    return scheme, beta, Y, alive


def test_gcv_scores_match_reference(dtype):
    scheme, beta, Y, alive = gcv_case(0.1)
    best, scores = lc.gcv(scheme, jnp.asarray(Y, dtype), jnp.asarray(alive), lam_grid=GRID)
    assert scores.shape == GRID.shape and np.all(np.isfinite(scores))
    expected = np.array([ref.gcv_score(beta[alive], Y[alive], lam) for lam in GRID])
    checked, rtol = GCV_CHECK[dtype]
    np.testing.assert_allclose(scores[checked], expected[checked], rtol=rtol, atol=0)
    assert best == GRID[np.nanargmin(scores)] and np.isfinite(best)
    if dtype == np.float64:
        assert best == GRID[np.argmin(expected)]


@pytest.mark.parametrize("solver", ["sris", "blocked", "parallel"])
def test_gcv_scores_with_the_schemes_solver(solver, monkeypatch):
    """GCV fits with the scheme's own solver (seen by the fits it traces), and every
    smoother gives the reference scores."""
    scheme, beta, Y, alive = gcv_case(0.1, seed=3)
    seen = []
    fit = spline.fit

    def spy(*args, **kwargs):
        seen.append(args[4] if len(args) > 4 else kwargs.get("method", "auto"))
        return fit(*args, **kwargs)

    monkeypatch.setattr(spline, "fit", spy)
    grid = GRID[:-1] * 1.01  # a grid of its own shape: the scores compile (and trace) anew
    _, scores = lc.gcv(scheme.replace(solver=solver), jnp.asarray(Y), jnp.asarray(alive),
                       lam_grid=grid)
    assert seen and set(seen) == {solver}
    expected = np.array([ref.gcv_score(beta[alive], Y[alive], lam) for lam in grid])
    np.testing.assert_allclose(scores, expected, rtol=1e-6, atol=0)


def test_gcv_treats_non_finite_rows_as_erasures():
    scheme, _, Y, alive = gcv_case(0.1)
    corrupt = Y.copy()
    corrupt[[5, 50]] = np.nan
    erased = alive.copy()
    erased[[5, 50]] = False
    _, scores = lc.gcv(scheme, jnp.asarray(corrupt), jnp.asarray(alive), lam_grid=GRID)
    _, expected = lc.gcv(scheme, jnp.asarray(Y), jnp.asarray(erased), lam_grid=GRID)
    np.testing.assert_allclose(scores, expected, rtol=1e-13, atol=0)


def test_gcv_picks_larger_lambda_for_larger_noise():
    best = []
    for sigma in (0.003, 0.03, 0.3):
        scheme, _, Y, alive = gcv_case(sigma)  # the same noise draw, scaled
        lam, _ = lc.gcv(scheme, jnp.asarray(Y), jnp.asarray(alive))  # the default grid
        best.append(lam)
    assert all(np.isfinite(best)) and 0 < best[0] < best[1] < best[2], best
