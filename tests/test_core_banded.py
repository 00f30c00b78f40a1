"""The SPD pentadiagonal solver against dense LAPACK (numpy.linalg.solve), both methods."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import linalg

import letcc_jax as lc
from letcc_jax.core._banded import solve_spd_pentadiagonal

import reference as ref

METHODS = ("ldl", "cr")
# Normwise tolerances, relative to max|x|, for matrices with condition number <~ 1e2.
TOL = {np.float32: 2e-5, np.float64: 1e-12}


def random_spd_pentadiagonal(rng, P):
    """A = L L^T with L lower triangular of bandwidth 2, diagonally dominant rows: random
    SPD pentadiagonal with a moderate condition number."""
    L = np.diag(rng.uniform(1.0, 2.0, P))
    if P > 1:
        L += np.diag(rng.uniform(-0.5, 0.5, P - 1), -1)
    if P > 2:
        L += np.diag(rng.uniform(-0.4, 0.4, P - 2), -2)
    A = L @ L.T
    return np.diag(A).copy(), np.diag(A, 1).copy(), np.diag(A, 2).copy()


_jitted = jax.jit(solve_spd_pentadiagonal, static_argnames="method")


def random_spd_pentadiagonal_banded(rng, P):
    """As random_spd_pentadiagonal, without forming dense matrices (for large P)."""
    l0 = rng.uniform(1.0, 2.0, P)
    l1 = np.concatenate([[0.0], rng.uniform(-0.5, 0.5, P - 1)])  # L[i, i-1]
    l2 = np.concatenate([[0.0, 0.0], rng.uniform(-0.4, 0.4, P - 2)])  # L[i, i-2]
    # (L L^T)[i, i+k] = sum_j L[i, j] L[i+k, j]
    d0 = l0**2 + l1**2 + l2**2
    d1 = l0[:-1] * l1[1:] + l1[:-1] * l2[1:]
    d2 = l0[:-2] * l2[2:]
    return d0, d1, d2


def solve(diags, rhs, dtype, method):
    args = [jnp.asarray(np.asarray(v, dtype)) for v in (*diags, rhs)]
    # Every P is a new shape, so a new compilation: jit is cheapest for the scan-based LDL^T;
    # cyclic reduction runs eagerly, where its per-level ops (shapes set by the padded
    # size, a power of two) are compiled once and reused across P.
    if method == "cr":
        return solve_spd_pentadiagonal(*args, method=method)
    return _jitted(*args, method=method)


def check_against_lapack(diags, rhs, dtype, method):
    x = solve(diags, rhs, dtype, method)
    assert x.dtype == dtype and x.shape == rhs.shape
    # The reference solves the system the solver was given: the inputs rounded to dtype.
    A = ref.pentadiagonal(*(np.asarray(v, dtype) for v in diags))
    expected = np.linalg.solve(A, np.asarray(rhs, dtype).astype(np.float64)) if len(rhs) else rhs
    scale = max(np.max(np.abs(expected), initial=0.0), 1.0)
    tol = TOL[dtype]
    np.testing.assert_allclose(np.asarray(x), expected, rtol=tol, atol=tol * scale)


# Every size is a new compilation (~0.4 s), so: LDL^T (the CPU path) at every size 0..12
# and around powers of two up to 40 in float64; otherwise the degenerate sizes and those
# around the padding boundaries of cyclic reduction (one more than a power of two needs
# the most padding).
LDL_SIZES = tuple(range(0, 13)) + (15, 16, 17, 31, 32, 33, 40)
EDGE_SIZES = (0, 1, 2, 3, 4, 5, 9, 16, 17, 33, 40)
SIZES = {("ldl", np.float64): LDL_SIZES, ("ldl", np.float32): EDGE_SIZES,
         ("cr", np.float64): EDGE_SIZES, ("cr", np.float32): (1, 2, 5, 17, 40)}


@pytest.mark.parametrize("method", METHODS)
def test_small_sizes(method, dtype, rng):
    sizes = SIZES[method, dtype]
    for P in sizes:
        m = 1 + P % 3
        check_against_lapack(random_spd_pentadiagonal(rng, P), rng.standard_normal((P, m)),
                             dtype, method)


@pytest.mark.parametrize("method, dtype", [("ldl", np.float32), ("ldl", np.float64),
                                           ("cr", np.float64)])
def test_large_size_against_dense_solve(method, dtype, rng):
    P = 1025  # one more than a power of two: the most padding cyclic reduction can need
    check_against_lapack(random_spd_pentadiagonal(rng, P), rng.standard_normal((P, 2)),
                         dtype, method)


@pytest.mark.parametrize("method", METHODS)
def test_very_large_size_against_banded_cholesky(method, rng):
    P = 8191  # a dense reference would cost O(P^3); LAPACK's banded Cholesky is O(P)
    d0, d1, d2 = random_spd_pentadiagonal_banded(rng, P)
    rhs = rng.standard_normal((P, 2))
    ab = np.zeros((3, P))
    ab[0, 2:], ab[1, 1:], ab[2] = d2, d1, d0
    expected = linalg.solveh_banded(ab, rhs)
    x = solve((d0, d1, d2), rhs, np.float64, method)
    tol = TOL[np.float64]
    np.testing.assert_allclose(np.asarray(x), expected, rtol=tol,
                               atol=tol * np.max(np.abs(expected)))


def test_auto_matches_explicit_methods(rng):
    diags = random_spd_pentadiagonal(rng, 23)
    rhs = rng.standard_normal((23, 2))
    auto = solve(diags, rhs, np.float64, "auto")
    for method in METHODS:
        explicit = solve(diags, rhs, np.float64, method)
        np.testing.assert_allclose(np.asarray(auto), np.asarray(explicit), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_vmap_over_systems_equals_loop(method, rng):
    P, batch = 13, 4
    systems = [random_spd_pentadiagonal(rng, P) for _ in range(batch)]
    stacked = [jnp.asarray(np.stack([s[i] for s in systems])) for i in range(3)]
    rhs = jnp.asarray(rng.standard_normal((batch, P, 2)))
    batched = jax.jit(jax.vmap(
        lambda a, b, c, r: solve_spd_pentadiagonal(a, b, c, r, method=method)))(*stacked, rhs)
    for i in range(batch):
        single = solve(systems[i], np.asarray(rhs[i]), np.float64, method)
        np.testing.assert_allclose(np.asarray(batched[i]), np.asarray(single), rtol=1e-13,
                                   atol=1e-13)


def test_unknown_method_raises(rng):
    with pytest.raises(ValueError, match="method must be"):
        solve(random_spd_pentadiagonal(rng, 5), np.ones((5, 1)), np.float64, "qr")


def reinsch_system(N, lam):
    """The matrix R + a Q^T Q of the mean-form smoothing spline on N Chebyshev-2 knots:
    SPD, but with entries spanning many orders of magnitude (h_min ~ 5/N^2)."""
    t = lc.chebyshev_second(N)
    h = np.diff(t)
    p = N - 2
    Q = np.zeros((N, p))
    for j in range(p):
        Q[j, j], Q[j + 1, j], Q[j + 2, j] = 1 / h[j], -1 / h[j] - 1 / h[j + 1], 1 / h[j + 1]
    R = np.diag((h[:-1] + h[1:]) / 3) + np.diag(h[1:-1] / 6, 1) + np.diag(h[1:-1] / 6, -1)
    A = R + N * lam * Q.T @ Q
    return (np.diag(A).copy(), np.diag(A, 1).copy(), np.diag(A, 2).copy()), A


def _residual_mp(A, x, rhs):
    """rhs - A x of the pentadiagonal A, in 40-digit arithmetic, rounded to float64."""
    import mpmath

    P = len(rhs)
    out = np.empty(P)
    with mpmath.workdps(40):
        for i in range(P):
            r = mpmath.mpf(float(rhs[i]))
            for j in range(max(0, i - 2), min(P, i + 3)):
                r -= mpmath.mpf(float(A[i, j])) * mpmath.mpf(float(x[j]))
            out[i] = float(r)
    return out


@pytest.mark.parametrize("method", METHODS)
def test_badly_scaled_spline_system_matches_banded_cholesky(method, rng):
    """On the smoothing spline's own system (N = 1000 Chebyshev knots, lam = 1e-3:
    condition number 4e13, entries spanning ~10 orders of magnitude) the solver is
    backward stable, and about as accurate as LAPACK's banded Cholesky
    (scipy.linalg.solveh_banded), both measured against the exact solution of the same
    float64 system.

    Measured max|error| / max|x|: LAPACK 8.3e-10, LDL^T 5.0e-10, cyclic reduction 1.4e-9
    (at N = 5000: 2.1e-7, 5.0e-7, 1.2e-7); componentwise backward errors 8e-17 (LDL^T)
    and 2.3e-16 (cyclic reduction).
    The backward error is the solver's own property and is held to 1e-14 (45 eps). The
    forward error of any backward-stable solver is round-off amplified by the condition
    number, so it is compared with LAPACK's with a floor 7x above the largest measured
    (a ratio alone would fail wherever LAPACK happens to round luckily)."""
    (d0, d1, d2), A = reinsch_system(1000, 1e-3)
    rhs = rng.standard_normal(len(d0))
    x = np.asarray(solve((d0, d1, d2), rhs[:, None], np.float64, method))[:, 0]
    ab = np.zeros((3, len(d0)))
    ab[0, 2:], ab[1, 1:], ab[2] = d2, d1, d0
    lapack = linalg.solveh_banded(ab, rhs)
    # The exact solution of this float64 system: LAPACK's, iteratively refined with the
    # residuals computed in 40-digit arithmetic.
    exact = lapack.copy()
    for _ in range(3):
        exact = exact + linalg.solveh_banded(ab, _residual_mp(A, exact, rhs))
    backward = np.max(np.abs(_residual_mp(A, x, rhs)) / (np.abs(A) @ np.abs(x) + np.abs(rhs)))
    assert backward <= 1e-14, (method, backward)
    scale = np.max(np.abs(exact))
    err_lapack = np.max(np.abs(lapack - exact)) / scale
    err = np.max(np.abs(x - exact)) / scale
    assert err <= max(100 * err_lapack, 1e-8), (method, err, err_lapack)
