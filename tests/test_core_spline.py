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
from letcc_jax.core import spline

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


# lam > 0 at large N, against the exact (40-digit mpmath) solution of the same problem.
# Measured max|difference| / max|value| (large_case: 20% random stragglers + dead ends):
#   float64, library:         <= 4.1e-14 for every N and lam below
#   float64, LAPACK Reinsch:  2.0e-15 (N=200, lam=1e-6) ... 6.1e-08 (N=2000, lam=1e-2)
#                             ... 7.8e-05 (N=10000, lam=1): the normal equations' conditioning
#   float32 (t and y rounded to float32 included), seeds N, N+1, N+2, every lam below:
#                             "auto" (sequential)    "parallel"
#     N = 200, 2000           <= 2.1e-5              <= 5.9e-5
#     N = 10000               <= 1.0e-4              <= 5.1e-4 (lam >= 1e-2; 3e-6 at 1e-6)
#   The error is the solvers' own: the same with the points rounded to float32 first.
# Tolerances: float64 1e-12; float32 at least 3.9x the largest measured, per solver.
LARGE_SMOOTH_FLOAT32_TOL = {("auto", True): 5e-4, ("auto", False): 2e-4,
                            ("parallel", False): 3e-4}
LARGE_SMOOTH_CASES = [(N, lam) for N in (200, 2000, 10_000) for lam in (1e-9, 1e-6, 1e-4, 1e-2, 1.0)]


@pytest.mark.parametrize("N, lam", LARGE_SMOOTH_CASES)
def test_smoothing_decoder_large_N_against_exact(N, lam, jit_decode):
    scheme, beta, alpha, Y, alive = large_case(N, N // 4, seed=N)
    g_exact, _ = ref.reinsch_mp(beta[alive], Y[alive], lam)
    exact = ref.natural_smoothing_spline(beta[alive], g_exact, np.ones(alive.sum(), bool), 0.0,
                                         alpha)
    # The CPU default, and the parallel smoother that "auto" runs on accelerators (whose
    # programs take most of a minute to compile at large N; it is checked at N = 10^4 and
    # 10^5 against the sequential smoother in test_core_parallel).
    for solver in ("auto", "parallel") if N <= 200 else ("auto",):
        scheme = scheme.replace(lam_dec=jnp.asarray(lam, np.float64), solver=solver)
        assert_close(decode(jit_decode, scheme, Y, alive, np.float64), exact, 1e-12,
                     err_msg=solver)
        out32 = decode(jit_decode, scheme, Y.astype(np.float32), alive, np.float32)
        assert_close(out32, exact, LARGE_SMOOTH_FLOAT32_TOL[solver, N > 2000], err_msg=solver)


@pytest.mark.parametrize("lam", [0.0, 1e-6, 1e-2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_both_solvers_match_the_reference_where_reinsch_is_well_conditioned(lam, dtype):
    """N = 60: every solver choice matches LAPACK. Reinsch's normal equations already lose
    digits in float32 at lam = 1e-2 (measured 9e-4 relative), the smoother does not (1e-6)."""
    rng = np.random.default_rng(3)
    N = 60
    t = lc.chebyshev_second(N)
    y = np.stack([np.sin(3 * t), np.cos(2 * t)], 1) + 0.1 * rng.standard_normal((N, 2))
    alive = rng.permutation(N) >= 12
    x = np.linspace(-1.1, 1.1, 23)
    expected = ref.natural_smoothing_spline(t, y, alive, lam, x)
    for method in spline.METHODS:  # at lam = 0 "sris" pins the survivors, the rest use Reinsch
        tol = 1e-11 if dtype == np.float64 else 5e-3 if method == "reinsch" else 2e-5
        out = jax.jit(lc.smoothing_spline, static_argnames="method")(
            jnp.asarray(t, dtype), jnp.asarray(y, dtype), jnp.asarray(alive),
            jnp.asarray(lam, dtype), jnp.asarray(x, dtype), method=method)
        assert_close(np.asarray(out, np.float64), expected, tol, err_msg=method)


# Sizes that leave the two-level smoother's last block partly padded, one block, tiny n.
BLOCKED_SIZES = [2, 5, 17, 50, 257]
# The parallel smoother's: padded to 2^L + 1 knots (2, 50) or not (5, 257); each size is a
# program of its own, 10-30 s to compile on two cores, so 17 (as 5 and 257,
# unpadded) is left out.
PARALLEL_SIZES = [2, 5, 50, 257]


@pytest.mark.parametrize("N, method", [(N, "blocked") for N in BLOCKED_SIZES]
                         + [(N, "parallel") for N in PARALLEL_SIZES])
def test_blocked_smoother_matches_the_reference(N, dtype, method):
    """The two-level and the parallel smoother against the float64 reference, at sizes
    that exercise the padding of the last block (of 2^L + 1 knots for the parallel one);
    survivor patterns with dead ends, runs of dead workers, exactly two survivors, one and
    none."""
    rng = np.random.default_rng(N)
    t = lc.chebyshev_second(N)
    y = np.stack([np.sin(3 * t), np.cos(2 * t)], 1) + 0.1 * rng.standard_normal((N, 2))
    x = np.linspace(-1.2, 1.2, 31)
    idx = np.arange(N)
    patterns = [np.ones(N, bool), rng.random(N) > 0.3, (idx > 0) & (idx < N - 1) if N > 3 else idx < 2,
                np.isin(idx, [0, N - 1]), idx < (N + 1) // 2, np.isin(idx, [N // 2]), np.zeros(N, bool)]
    fn = jax.jit(lc.smoothing_spline, static_argnames="method")
    # float32: the two-level order solves neighbouring knots from different block ends, so
    # slopes at crowded knots lose digits (measured 9e-5 relative after extrapolating 0.2
    # past the knots at N = 257); values inside stay at 2e-5.
    # float64: the LAPACK reference itself is only good to ~3e-10 at lam = 10, so the
    # blocked form is also held to 1e-11 against the sequential smoother (tested to
    # round-off against 40-digit solutions below).
    tol = {np.float32: 3e-4, np.float64: 1e-9}[dtype]
    for lam in (1e-6, 1e-2, 10.0):
        for alive in patterns:
            if alive.sum() >= 2:
                expected = ref.natural_smoothing_spline(t, y, alive, lam, x)
            else:  # the constant through the one survivor, or zero
                expected = np.tile(y[alive].sum(0), (len(x), 1))
            out = fn(jnp.asarray(t, dtype), jnp.asarray(y, dtype), jnp.asarray(alive),
                     jnp.asarray(lam, dtype), jnp.asarray(x, dtype), method=method)
            assert out.dtype == dtype
            assert_close(np.asarray(out, np.float64), expected, tol,
                         err_msg=f"lam={lam} alive={alive.astype(int)}")
            if dtype == np.float64:
                seq = fn(jnp.asarray(t), jnp.asarray(y), jnp.asarray(alive), jnp.asarray(lam),
                         jnp.asarray(x), method="sris")
                assert_close(np.asarray(out), np.asarray(seq), 1e-11)


# Reverse mode through the parallel smoother's unrolled levels compiles slowly (65 s at
# N = 1000, 130 s at N = 5000); forward mode checks the same derivatives along a random
# direction in half that (reverse mode is JAX's transpose of this linearisation). Its
# values are checked at N = 1e5 in test_core_parallel.
@pytest.mark.parametrize("solver, N", [("blocked", 5000), ("parallel", 40)])
def test_blocked_and_sequential_smoothers_agree(solver, N):
    """The orders of elimination solve the same least-squares problem: the two-level and
    the parallel smoother agree with the sequential one to ~1e-13 in values and in
    derivatives w.r.t. Y and lam (the gradient for the two-level smoother, a directional
    derivative for the parallel one), and vmap over masks equals a loop."""
    K = 40
    scheme, beta, alpha, Y, alive = large_case(N, K, seed=11)
    Y = jnp.asarray(Y)
    alive = jnp.asarray(alive)
    lam = jnp.asarray(1e-4)

    def loss(Y, lam, solver):
        out = lc.letcc(K, N, lam_dec=lam, solver=solver).decode(Y, alive)
        return jnp.sum(jnp.sin(out))

    if solver == "blocked":
        auto = jax.jit(jax.value_and_grad(lambda Y, lam: loss(Y, lam, solver), argnums=(0, 1)))
        seq = jax.jit(jax.value_and_grad(lambda Y, lam: loss(Y, lam, "sris"), argnums=(0, 1)))
        (va, (gYa, gla)), (vs, (gYs, gls)) = auto(Y, lam), seq(Y, lam)
        np.testing.assert_allclose(va, vs, rtol=1e-12)
        assert_close(np.asarray(gYa), np.asarray(gYs), 1e-10)
        np.testing.assert_allclose(gla, gls, rtol=1e-9)
    else:
        rng = np.random.default_rng(12)
        dY, dlam = jnp.asarray(rng.standard_normal(Y.shape)), jnp.asarray(3e-5)
        va, ta = jax.jit(lambda: jax.jvp(lambda Y, lam: loss(Y, lam, solver), (Y, lam),
                                         (dY, dlam)))()
        vs, (gYs, gls) = jax.jit(jax.value_and_grad(
            lambda Y, lam: loss(Y, lam, "sris"), argnums=(0, 1)))(Y, lam)
        np.testing.assert_allclose(va, vs, rtol=1e-12)
        expected = float(jnp.sum(gYs * dY) + gls * dlam)
        assert abs(expected) > 1e-3  # not trivially zero
        np.testing.assert_allclose(float(ta), expected, rtol=1e-9)
    # vmap over masks: each row is that mask's decode (the sequential smoother's, vmapped
    # too, is the reference: a loop of the solver's own decodes would compile it again).
    masks = jnp.stack([alive, jnp.roll(alive, 7)])
    batched = {name: jax.jit(jax.vmap(lc.letcc(K, N, lam_dec=lam, solver=name).decode,
                                      in_axes=(None, 0)))(Y, masks)
               for name in (solver, "sris")}
    assert_close(np.asarray(batched[solver]), np.asarray(batched["sris"]), 1e-12)
    assert_close(np.asarray(batched["sris"][1]),
                 np.asarray(lc.letcc(K, N, lam_dec=lam, solver="sris").decode(Y, masks[1])),
                 1e-13)


def test_auto_picks_the_two_level_smoother_only_for_large_fits(monkeypatch):
    """"auto" runs the sequential smoother below BLOCKED_MIN_N knots, the two-level one
    from there on, in float32 as in float64 (checked by which one traces)."""
    calls = []
    for name in ("sris", "sris_blocked"):  # the solvers as ``fit`` looks them up
        real = getattr(spline, name)
        monkeypatch.setattr(spline, name,
                            lambda *a, _real=real, _name=name: calls.append(_name) or _real(*a))
    big = spline.BLOCKED_MIN_N
    for n, dtype, expected in ((big - 1, np.float64, "sris"), (big - 1, np.float32, "sris"),
                               (big, np.float32, "sris_blocked"),
                               (big, np.float64, "sris_blocked")):
        calls.clear()
        t = jnp.linspace(-1.0, 1.0, n, dtype=dtype)
        jax.eval_shape(lambda y: spline.fit(t, y, jnp.ones(n, bool), jnp.asarray(1e-3, dtype)),
                       jax.ShapeDtypeStruct((n, 1), dtype))
        assert calls == [expected], (n, dtype, calls)


def test_auto_interpolates_with_the_sweep_up_to_SWEEP_MAX_N(monkeypatch):
    """With lam traced, "auto" on a CPU compiles one solver (the sweep, survivors pinned at
    lam = 0) up to SWEEP_MAX_N knots and the sweep beside Reinsch above; "sris" never
    compiles Reinsch's system (checked by which solvers trace)."""
    calls = []
    for name in ("sris", "reinsch_all"):
        real = getattr(spline, name)
        monkeypatch.setattr(spline, name,
                            lambda *a, _real=real, _name=name: calls.append(_name) or _real(*a))
    small = spline.SWEEP_MAX_N
    for n, method, expected in ((small, "auto", ["sris"]), (small + 1, "auto", ["sris", "reinsch_all"]),
                                (small + 1, "sris", ["sris"])):
        calls.clear()
        t = jnp.linspace(-1.0, 1.0, n)
        jax.eval_shape(lambda y, lam: spline.fit(t, y, jnp.ones(n, bool), lam, method),
                       jax.ShapeDtypeStruct((n, 1), jnp.float32),
                       jax.ShapeDtypeStruct((), jnp.float32))
        assert calls == expected, (n, method, calls)


@pytest.mark.parametrize("n", [2, 3, 5, 17])
def test_sweep_interpolates_every_small_pattern(n, dtype):
    """The sweep with the survivors pinned (lam = 0, "sris") at the smallest sizes (every
    pattern of two survivors or more up to n = 5, the usual ones at 17), against the float64 natural spline: values and
    slopes at every knot (stragglers' knots lie on the curve, linear past the ends)."""
    rng = np.random.default_rng(n)
    t = np.sort(rng.uniform(-1, 1, n)) if n > 2 else np.array([-0.5, 0.7])
    y = rng.standard_normal((n, 2))
    tol = TOL_INTERP[dtype] * 10 if dtype == np.float32 else TOL_INTERP[dtype]
    fit = jax.jit(lambda t, y, alive: spline.fit(t, y, alive, jnp.zeros((), y.dtype), "sris"))
    patterns = ([np.array([(bits >> i) & 1 for i in range(n)], bool) for bits in range(2 ** n)]
                if n <= 5 else list(masks(n, rng).values()))
    for alive in patterns:
        if alive.sum() < 2:
            continue
        curve = fit(jnp.asarray(t), jnp.asarray(y, dtype), jnp.asarray(alive))
        ref_g = ref.natural_smoothing_spline(t, y, alive, 0.0, t)
        d = 1e-6
        ref_s = (ref.natural_smoothing_spline(t, y, alive, 0.0, t + d)
                 - ref.natural_smoothing_spline(t, y, alive, 0.0, t - d)) / (2 * d)
        assert_close(np.asarray(curve.g, np.float64), ref_g, tol, err_msg=str(alive))
        assert_close(np.asarray(curve.slope, np.float64), ref_s, max(tol, 1e-6) * 100,
                     err_msg=str(alive))


def test_auto_picks_the_parallel_smoother_on_accelerators(monkeypatch):
    """On a GPU or TPU every sequential step is a kernel launch: "auto" then runs the
    parallel smoother at every size and dtype (checked by which one traces)."""
    calls = []
    for name in ("sris", "sris_blocked", "sris_parallel"):
        real = getattr(spline, name)
        monkeypatch.setattr(spline, name,
                            lambda *a, _real=real, _name=name: calls.append(_name) or _real(*a))
    monkeypatch.setattr(spline.jax, "default_backend", lambda: "gpu")
    for n, dtype in ((100, np.float32), (spline.BLOCKED_MIN_N, np.float64)):
        calls.clear()
        t = jnp.linspace(-1.0, 1.0, n, dtype=dtype)
        jax.eval_shape(lambda y: spline.fit(t, y, jnp.ones(n, bool), jnp.asarray(1e-3, dtype)),
                       jax.ShapeDtypeStruct((n, 1), dtype))
        assert calls == ["sris_parallel"], (n, dtype, calls)


def test_fit_reports_the_spline_at_every_knot():
    """``fit`` returns values and slopes at all knots, stragglers included: the stragglers'
    knots lie on the spline through the survivors (Reinsch at lam = 0, the smoothers at
    lam > 0), so evaluating there reproduces them."""
    rng = np.random.default_rng(4)
    N = 40
    t = jnp.asarray(lc.chebyshev_second(N))
    y = jnp.asarray(rng.standard_normal((N, 2)))
    alive = jnp.asarray((rng.random(N) > 0.4) & (np.arange(N) > 2))
    for lam, method in ((0.0, "auto"), (1e-3, "sris"), (1e-3, "blocked"), (1e-3, "reinsch")):
        curve = spline.fit(t, y, alive, jnp.asarray(lam), method)
        assert curve.g.shape == curve.slope.shape == (N, 2)
        expected = ref.natural_smoothing_spline(np.asarray(t), np.asarray(y), np.asarray(alive),
                                                lam, np.asarray(t))
        assert_close(np.asarray(curve.g), expected, 1e-11, err_msg=method)
        # slopes: against central differences of the reference curve
        d = 1e-6
        slope = (ref.natural_smoothing_spline(np.asarray(t), np.asarray(y), np.asarray(alive), lam,
                                              np.asarray(t) + d)
                 - ref.natural_smoothing_spline(np.asarray(t), np.asarray(y), np.asarray(alive), lam,
                                                np.asarray(t) - d)) / (2 * d)
        assert_close(np.asarray(curve.slope), slope, 1e-6, err_msg=method)


def test_unknown_solver_is_a_clear_error():
    with pytest.raises(ValueError, match="solver must be one of"):
        lc.letcc(4, 10, solver="cholesky")
    with pytest.raises(ValueError, match="method must be one of"):
        lc.smoothing_spline(jnp.linspace(-1, 1, 5), jnp.ones((5, 1)), jnp.ones(5, bool),
                            jnp.asarray(0.1), jnp.zeros(2), method="qr")


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


@pytest.mark.parametrize("N", [1000, 2000, 5000])
def test_float32_smoothing_decoder_is_not_destroyed_by_conditioning(N, jit_decode):
    """float32 decoding with lam_dec > 0 on Chebyshev workers stays at float32 accuracy.

    Reinsch's normal equations R + N lam Q^T Q have condition ~ N lam / h_min^4, and in
    float32 R is rounded away: this decode gave 4.8e-3 (N=2000, lam=1e-6), 3.5 (N=2000,
    lam=1e-2) and 1.1 (N=5000, lam=1e-6) with them. The square-root information smoother
    measures <= 1.5e-5 against the float64 decode of the same float32 data here."""
    scheme, beta, alpha, Y, alive = large_case(N, N // 4, seed=N)
    Y32 = Y.astype(np.float32)
    for lam in (1e-6, 1e-4, 1e-2, 1.0):
        scheme = scheme.replace(lam_dec=jnp.asarray(lam, np.float64))
        expected = decode(jit_decode, scheme, Y32.astype(np.float64), alive, np.float64)
        out = decode(jit_decode, scheme, Y32, alive, np.float32)
        assert_close(out, expected, 1e-4, err_msg=f"lam={lam}")


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


def test_float32_values_at_float64_knots_keep_the_knots_apart():
    """float64 knots with float32 values: spacings and offsets are taken in float64 and only
    then rounded, so Chebyshev workers that coincide in float32 (N = 20,000: two pairs)
    stay apart, and so do evaluation points between them. Against scipy's natural
    interpolating spline in float64 through the same float32 values (lam = 0: Reinsch,
    for every method); measured 4.3e-8 ... 8.8e-8 on seeds 6-10, held to 3e-7. Cast to
    float32, the same knots are no longer strictly ascending: ``smoothing_spline`` rejects
    them eagerly, and under jit the fit is NaN."""
    N = 20_000
    t = lc.chebyshev_second(N)
    assert np.unique(t.astype(np.float32)).size < N
    rng = np.random.default_rng(6)
    y = (np.sin(3 * t) + 0.1 * rng.standard_normal(N)).astype(np.float32)[:, None]
    alive = rng.random(N) >= 0.2
    alive[[0, 1, N - 2, N - 1]] = True  # keep the crowded end knots
    near_ends = np.r_[np.arange(12), np.arange(N - 13, N - 1)]
    x = np.sort(np.r_[(t[near_ends] + t[near_ends + 1]) / 2, np.linspace(-1, 1, 9)])
    out = smooth(jnp.asarray(t), jnp.asarray(y), jnp.asarray(alive), jnp.asarray(0.0, np.float32),
                 jnp.asarray(x))
    assert out.dtype == np.float32
    expected = ref.natural_smoothing_spline(t, y.astype(np.float64), alive, 0.0, x)
    assert_close(np.asarray(out, np.float64), expected, 3e-7)
