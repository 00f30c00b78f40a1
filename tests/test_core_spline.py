"""LeTCC's smoothing splines against scipy.interpolate and float64 Reinsch references.

Conventions checked: mean-form lambda (scipy's make_smoothing_spline takes |F| * lambda),
lambda = 0 is the natural cubic interpolating spline (scipy make_interp_spline with
bc_type="natural"), and the curve is LINEAR outside the survivors' range, which matters
whenever end workers straggle. Values are compared normwise: atol = tol * max|reference|.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.interpolate import make_smoothing_spline

import letcc_jax as lc

import reference as ref

# Small-N tolerances, relative to max|reference|, per dtype.
TOL_INTERP = {np.float32: 2e-5, np.float64: 1e-12}
TOL_SCIPY_SMOOTH = {np.float32: 2e-5, np.float64: 1e-10}

smooth = jax.jit(lc.smoothing_spline)


def masks(N, rng):
    """Survivor patterns, most with dead end workers so that decoding extrapolates."""
    idx = np.arange(N)
    out = {
        "all": np.ones(N, bool),
        "first_dead": idx >= 2,
        "last_dead": idx < N - 2,
        "both_ends_dead": (idx >= 3) & (idx < N - 4),
        "random": rng.permutation(N) >= N // 3,
        "left_half_only": idx < N // 2,
        "three_survivors": np.isin(idx, [2, N // 2, N - 4]),
        "two_survivors": np.isin(idx, [3, N - 5]),
    }
    out["random_and_ends"] = out["random"] & out["both_ends_dead"]
    return out


def decode(jit_decode, scheme, Y, alive, dtype):
    out = jit_decode(scheme, jnp.asarray(Y, dtype), jnp.asarray(alive))
    assert out.dtype == dtype and out.shape == (scheme.K, Y.shape[1])
    return np.asarray(out, np.float64)


def assert_close(actual, expected, tol, **kw):
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * np.max(np.abs(expected)),
                               **kw)


# ------------------------------------------------------------------ small N, both dtypes

K_SMALL, N_SMALL = 6, 17


@pytest.mark.parametrize("pattern", list(masks(N_SMALL, np.random.default_rng(0))))
def test_interpolating_decoder_matches_scipy_natural_spline(pattern, dtype, jit_decode):
    rng = np.random.default_rng(1)
    scheme = lc.letcc(K_SMALL, N_SMALL)
    alive = masks(N_SMALL, np.random.default_rng(0))[pattern]
    Y = rng.standard_normal((N_SMALL, 3)).astype(dtype)
    beta, alpha = np.asarray(scheme.beta), np.asarray(scheme.alpha)
    if pattern not in ("all", "random"):  # the decoder must extrapolate past a dead end
        assert alpha.max() > beta[alive].max() or alpha.min() < beta[alive].min()
    expected = ref.natural_smoothing_spline(beta, Y, alive, 0.0, alpha)
    tol = TOL_INTERP[dtype]
    assert_close(decode(jit_decode, scheme, Y, alive, dtype), expected, tol)


@pytest.mark.parametrize("lam", [1e-6, 1e-3, 1e-1])
@pytest.mark.parametrize("pattern", ["all", "both_ends_dead", "random_and_ends"])
def test_smoothing_decoder_matches_scipy_make_smoothing_spline(pattern, lam, dtype, jit_decode):
    rng = np.random.default_rng(2)
    scheme = lc.letcc(K_SMALL, N_SMALL, lam_dec=lam)
    alive = masks(N_SMALL, np.random.default_rng(0))[pattern]
    beta, alpha = np.asarray(scheme.beta), np.asarray(scheme.alpha)
    Y = (np.sin(2 * beta)[:, None] + 0.3 * rng.standard_normal((N_SMALL, 3))).astype(dtype)
    # scipy's sum form: lam * |F|; linear extrapolation added by the reference.
    expected = ref.natural_smoothing_spline(beta, Y, alive, lam, alpha, use_scipy_fit=True)
    tol = TOL_SCIPY_SMOOTH[dtype]
    assert_close(decode(jit_decode, scheme, Y, alive, dtype), expected, tol)
    # The fit really smooths: it differs from interpolation by far more than the tolerance.
    interp = ref.natural_smoothing_spline(beta, Y, alive, 0.0, alpha)
    assert np.max(np.abs(expected - interp)) > 100 * tol * np.max(np.abs(expected))


def test_mean_form_lambda_is_scipy_lambda_over_survivor_count(jit_decode):
    """At a fixed mean-form lambda, scipy's sum-form lambda must scale with the survivor
    count (9, then 17 survivors): the convention, not just one configuration."""
    rng = np.random.default_rng(3)
    scheme = lc.letcc(K_SMALL, N_SMALL, lam_dec=1e-2)
    beta, alpha = np.asarray(scheme.beta), np.asarray(scheme.alpha)
    Y = rng.standard_normal((N_SMALL, 3))
    for alive in (np.arange(N_SMALL) % 2 == 0, np.ones(N_SMALL, bool)):
        n = int(alive.sum())
        spl = make_smoothing_spline(beta[alive], Y[alive, 0], lam=n * 1e-2)
        inside = (alpha >= beta[alive].min()) & (alpha <= beta[alive].max())
        out = decode(jit_decode, scheme, Y, alive, np.float64)[:, 0]
        np.testing.assert_allclose(out[inside], spl(alpha[inside]), rtol=1e-10, atol=1e-10)


def test_huge_lambda_gives_the_least_squares_line(dtype, jit_decode):
    """lam -> infinity: the penalty forces u'' = 0, the fit is the least-squares line
    through the survivors, and that line is also the extrapolation."""
    scheme = lc.letcc(K_SMALL, N_SMALL, lam_dec=1e8)
    beta, alpha = np.asarray(scheme.beta), np.asarray(scheme.alpha)
    alive = masks(N_SMALL, np.random.default_rng(0))["random_and_ends"]
    Y = np.random.default_rng(7).standard_normal((N_SMALL, 3)).astype(dtype)
    A = np.stack([np.ones(alive.sum()), beta[alive]], 1)
    coef = np.linalg.lstsq(A, Y[alive].astype(np.float64), rcond=None)[0]
    line = np.stack([np.ones(K_SMALL), alpha], 1) @ coef
    tol = {np.float32: 1e-4, np.float64: 1e-6}[dtype]  # the O(1/lam) distance dominates
    assert_close(decode(jit_decode, scheme, Y, alive, dtype), line, tol)


@pytest.mark.parametrize("lam", [0.0, 1e-3, 1e-1])
def test_encoder_matches_scipy(lam, dtype, jit_encode):
    """The encoder fits all K data points (alpha) and evaluates at the N workers (beta),
    which reach beyond the data range (+-1 vs Chebyshev-1 points): linear there."""
    scheme = lc.letcc(K_SMALL, N_SMALL, lam_enc=lam)
    alpha, beta = np.asarray(scheme.alpha), np.asarray(scheme.beta)
    X = np.random.default_rng(6).standard_normal((K_SMALL, 3)).astype(dtype)
    coded = jit_encode(scheme, jnp.asarray(X))
    assert coded.dtype == dtype and coded.shape == (N_SMALL, 3)
    expected = ref.natural_smoothing_spline(alpha, X, np.ones(K_SMALL, bool), lam, beta,
                                            use_scipy_fit=True)
    tol = TOL_INTERP[dtype] if lam == 0 else TOL_SCIPY_SMOOTH[dtype]
    assert_close(np.asarray(coded, np.float64), expected, tol)


def test_public_smoothing_spline_extrapolates_linearly(dtype):
    rng = np.random.default_rng(4)
    t = np.sort(rng.uniform(-1, 1, 9))
    y = rng.standard_normal((9, 2))
    alive = np.ones(9, bool)
    alive[[0, 7, 8]] = False
    x = np.array([-3.0, -1.0, t[1] - 0.01, t[1], 0.0, t[6], t[6] + 0.2, 2.5])
    for lam in (0.0, 1e-2):
        out = smooth(jnp.asarray(t, dtype), jnp.asarray(y, dtype), jnp.asarray(alive),
                     jnp.asarray(lam, dtype), jnp.asarray(x, dtype))
        assert out.dtype == dtype and out.shape == (8, 2)
        expected = ref.natural_smoothing_spline(t, y, alive, lam, x)
        tol = TOL_INTERP[dtype] if lam == 0 else TOL_SCIPY_SMOOTH[dtype]
        assert_close(np.asarray(out, np.float64), expected, tol)
    # Linear, not cubic, beyond the last survivor: equal second differences vanish.
    far = np.asarray(smooth(jnp.asarray(t), jnp.asarray(y), jnp.asarray(alive), jnp.asarray(0.0),
                            jnp.asarray([2.0, 3.0, 4.0])))
    np.testing.assert_allclose(far[0] - 2 * far[1] + far[2], 0.0, rtol=0, atol=1e-12)


def test_one_survivor_is_constant_and_none_is_zero():
    t = jnp.linspace(-1.0, 1.0, 6)
    y = jnp.arange(12.0).reshape(6, 2) + 1.0
    x = jnp.asarray([-2.0, 0.1, 3.0])
    one = jnp.zeros(6, bool).at[4].set(True)
    out = smooth(t, y, one, jnp.asarray(0.0), x)
    np.testing.assert_allclose(np.asarray(out), np.tile(np.asarray(y[4]), (3, 1)), rtol=0, atol=0)
    none = smooth(t, y, jnp.zeros(6, bool), jnp.asarray(0.0), x)
    np.testing.assert_array_equal(np.asarray(none), 0.0)


# ----------------------------------------------------------------------------- large N


def large_case(N, K, seed, pattern="random_ends"):
    """Chebyshev-2 workers, noisy smooth outputs and a survivor pattern:
    "random_ends": 20% random stragglers plus the first and last 2% of workers dead (the
    decoder extrapolates a little at both ends); "gaps": the last 30% of workers and two
    blocks of 5% inside dead (long gaps, far extrapolation on the right)."""
    rng = np.random.default_rng(seed)
    scheme = lc.letcc(K, N)
    beta, alpha = np.asarray(scheme.beta), np.asarray(scheme.alpha)
    Y = np.stack([np.sin(3 * beta), np.cos(5 * beta)], 1) + 0.1 * rng.standard_normal((N, 2))
    if pattern == "random_ends":
        alive = rng.permutation(N) >= N // 5
        ends = max(3, N // 50)
        alive[:ends] = alive[-ends:] = False
        assert alpha.min() < beta[alive].min()
    else:
        idx = np.arange(N)
        block = N // 20
        alive = (idx < 0.7 * N) & ~((idx >= N // 5) & (idx < N // 5 + block))
        alive &= ~((idx >= N // 2) & (idx < N // 2 + block))
    assert alpha.max() > beta[alive].max()
    return scheme, beta, alpha, Y, alive


# Interpolation (lam = 0) must match scipy's natural interpolating spline to 1e-9 relative
# in float64 at any N; float32 is checked at N = 2000 with its own tolerance.
TOL_LARGE_INTERP = {np.float32: 1e-4, np.float64: 1e-9}


@pytest.mark.parametrize(
    "N, dtype, pattern",
    [(200, np.float64, "random_ends"), (2000, np.float64, "random_ends"),
     (2000, np.float32, "random_ends"), (10_000, np.float64, "random_ends"),
     (2000, np.float64, "gaps"), (10_000, np.float64, "gaps")],
    ids=lambda v: np.dtype(v).name if isinstance(v, type) else str(v),
)
def test_interpolating_decoder_large_N(N, dtype, pattern, jit_decode):
    scheme, beta, alpha, Y, alive = large_case(N, N // 4, seed=N, pattern=pattern)
    expected = ref.natural_smoothing_spline(beta, Y, alive, 0.0, alpha)
    tol = TOL_LARGE_INTERP[dtype]
    assert_close(decode(jit_decode, scheme, Y.astype(dtype), alive, dtype), expected, tol)


# lam > 0 at large N: the Reinsch system has condition ~ N lam / h_min^4 on Chebyshev
# nodes, so agreement degrades as N * lam grows. Measured max|difference| / max|value| of
# the decoded values (large_case: 20% random stragglers + dead ends, 2 columns), library vs
# the LAPACK Reinsch reference / vs the exact (40-digit) solution of the same problem:
#   N=200:  lam=1e-6 7.8e-15/3.8e-15   1e-3 6.2e-12/2.9e-12   1e-2 7.3e-12/9.1e-12
#   N=2000: lam=1e-9 1.9e-13/8.2e-14   1e-6 3.7e-12/4.6e-12   1e-4 2.4e-09/1.0e-09
#           lam=1e-3 2.1e-08/1.1e-08   1e-2 1.1e-07/3.7e-08
#   N=5000 (not run): 1e-6 7.7e-11/5.6e-11, 1e-3 5.1e-07/3.1e-07, 1e-2 3.0e-06/1.4e-06
# The LAPACK reference itself is off the exact values by as much (e.g. 1.7e-08 at N=2000,
# lam=1e-3): this is the conditioning of the formulation, not a solver defect. scipy's
# make_smoothing_spline is 100-1000x further off (1.4e-05 at N=2000, lam=1e-3).
# Tolerances: ~10-50x the measurement.
TOL_LARGE_SMOOTH = {
    (200, 1e-6): 2e-13, (200, 1e-3): 1e-10, (200, 1e-2): 2e-10,
    (2000, 1e-9): 1e-11, (2000, 1e-6): 1e-10, (2000, 1e-4): 3e-8, (2000, 1e-3): 3e-7,
    (2000, 1e-2): 1e-6,
}


@pytest.mark.parametrize("N, lam", list(TOL_LARGE_SMOOTH))
def test_smoothing_decoder_large_N_against_reinsch_and_exact(N, lam, jit_decode):
    scheme, beta, alpha, Y, alive = large_case(N, N // 4, seed=N)
    scheme = scheme.replace(lam_dec=jnp.asarray(lam, np.float64))
    out = decode(jit_decode, scheme, Y, alive, np.float64)
    tol = TOL_LARGE_SMOOTH[N, lam]
    lapack = ref.natural_smoothing_spline(beta, Y, alive, lam, alpha)
    assert_close(out, lapack, tol)
    g_exact, _ = ref.reinsch_mp(beta[alive], Y[alive, :1], lam)
    exact = ref.natural_smoothing_spline(beta[alive], g_exact, np.ones(alive.sum(), bool), 0.0,
                                         alpha)
    assert_close(out[:, :1], exact, tol)


def test_library_is_a_better_minimiser_than_scipy_at_large_N():
    """N = 2000 Chebyshev workers, lam = 1e-3 (mean form): scipy's make_smoothing_spline
    (B-spline basis) loses accuracy and its objective is HIGHER than the library's, which is
    within rounding of the exact minimum. Objective: (1/n) sum (y - u)^2 + lam int u''^2,
    exact for the piecewise-linear u''."""
    N, lam = 2000, 1e-3
    rng = np.random.default_rng(5)
    t = lc.chebyshev_second(N)
    y = np.sin(3 * t) + 0.1 * rng.standard_normal(N)
    ours = np.asarray(smooth(jnp.asarray(t), jnp.asarray(y[:, None]), jnp.ones(N, bool),
                             jnp.asarray(lam), jnp.asarray(t)))[:, 0]
    J_ours = ref.spline_objective(t, y, ours, ref.natural_second_derivatives(t, ours), lam)[0]
    spl = make_smoothing_spline(t, y, lam=N * lam)
    J_scipy = ref.spline_objective(t, y, spl(t), spl.derivative(2)(t), lam)[0]
    g_exact, gamma_exact = ref.reinsch_mp(t, y, lam)
    J_exact = ref.spline_objective(t, y, g_exact, gamma_exact, lam)[0]
    assert J_scipy > J_ours
    assert (J_scipy - J_exact) > 1e3 * abs(J_ours - J_exact)
    np.testing.assert_allclose(J_ours, J_exact, rtol=1e-9, atol=0)


@pytest.mark.xfail(
    strict=True,
    reason="known defect: the Reinsch system is too ill-conditioned for float32 when "
    "lam_dec > 0 at large N on Chebyshev workers; a better-conditioned formulation is needed",
)
def test_float32_smoothing_decoder_is_not_destroyed_by_conditioning(jit_decode):
    # KNOWN DEFECT (accuracy, float32): decoding with lam_dec > 0 in float32 on Chebyshev
    # workers silently returns garbage at realistic sizes, and float32 is JAX's default.
    # Measured max|err| / max|value| against the float64 result (large_case, 20% stragglers):
    #   N = 1000: lam 1e-6 7.2e-4, 1e-4 3.5e-2, 1e-2 1.2e+1, 1 1.6e+0
    #   N = 2000: lam 1e-6 1.8e-3, 1e-4 2.3e-1, 1e-2 3.5e+0, 1 2.4e+0
    # (float64 at N = 2000, lam = 1e-2 is within 1e-7.) The cause is the Reinsch
    # formulation, not the solver: its matrix R + N lam Q^T Q has condition ~ N lam / h_min^4
    # (h_min ~ 5 / N^2); LAPACK's float32 banded Cholesky on the same system is off by 0.14
    # at N = 1000, lam = 1e-4 and finds it not positive definite at lam = 1e-2. The problem
    # itself is well conditioned (the smoother matrix is a contraction), so a different
    # formulation (e.g. a state-space / Kalman smoother, or an orthogonal-factorisation
    # B-spline fit), or float64 internally where available, or at least a warning, is needed.
    N, lam = 2000, 1e-2
    scheme, beta, alpha, Y, alive = large_case(N, N // 4, seed=N)
    scheme = scheme.replace(lam_dec=jnp.asarray(lam, np.float64))
    expected = ref.natural_smoothing_spline(beta, Y, alive, lam, alpha)
    out = decode(jit_decode, scheme, Y.astype(np.float32), alive, np.float32)
    assert_close(out, expected, 1e-3)


def test_float32_default_points_at_large_N_give_no_nan(jit_decode):
    # See test_core_conformance.py::test_workers_that_coincide_in_float32_do_not_give_nan:
    # with N = 20000 Chebyshev-2 workers two pairs of points coincide in float32.
    N = 20_000
    scheme = lc.letcc(16, N)
    beta, alpha = np.asarray(scheme.beta), np.asarray(scheme.alpha)
    assert np.unique(beta.astype(np.float32)).size < N  # the collision is real
    Y = np.sin(3 * beta)[:, None].astype(np.float32)
    out = decode(jit_decode, scheme, Y, np.ones(N, bool), np.float32)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[:, 0], np.sin(3 * alpha), rtol=0, atol=1e-5)
