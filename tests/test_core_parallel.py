"""The parallel smoother (``solver="parallel"``): O(log N) sequential depth, checked on the
program itself, and its accuracy at N = 100,000 against the sequential smoother on the same
float32 points; every solver's float32 decode from the user's float64 points at
N = 10,000 (and "auto" at N = 100,000) against the float64 decode of the same data; and
the posterior covariances by cyclic reduction against the sequential sweep's at N =
100,000.

Its accuracy against 40-digit solutions up to N = 10,000 (float64 and float32) and at the
small sizes that exercise its padding lives with the other solvers in
``test_core_spline.py``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.core import ClosedJaxpr, Jaxpr

import letcc_jax as lc
from letcc_jax.core.spline import _parallel


def _loops(jaxpr, found):
    """Every loop in a jaxpr and its sub-jaxprs: ("scan", length) or ("while", None). A
    scan unrolled whole when lowered (``jnp.searchsorted(method="scan_unrolled")``'s
    log2(N) steps) is straight-line code, not a loop."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "scan":
            length, unroll = eqn.params["length"], eqn.params["unroll"]
            if not (unroll is True or unroll >= length):
                found.append(("scan", length))
        elif eqn.primitive.name == "while":
            found.append(("while", None))
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(sub, ClosedJaxpr):
                    _loops(sub.jaxpr, found)
                elif isinstance(sub, Jaxpr):
                    _loops(sub, found)
    return found


def _decode_loops(N, solver, lam):
    scheme = lc.letcc(8, N, lam_dec=lam, solver=solver)
    Y = jax.ShapeDtypeStruct((N, 3), jnp.float32)
    alive = jax.ShapeDtypeStruct((N,), jnp.bool_)
    jaxpr = jax.make_jaxpr(lambda y, a: scheme.decode(y, a))(Y, alive)
    return _loops(jaxpr.jaxpr, [])


@pytest.mark.parametrize("lam", [1e-6, 0.0])
def test_parallel_decode_has_no_loop_that_grows_with_N(lam):
    """The whole decode with solver="parallel" (lam > 0: the parallel smoother; lam = 0:
    Reinsch by block cyclic reduction) has the same loops at N = 1,000 and N = 100,000,
    none longer than the first solve and its passes of refinement; the sequential smoother, traced the same
    way, has loops of N steps."""
    small, large = _decode_loops(1_000, "parallel", lam), _decode_loops(100_000, "parallel", lam)
    assert small == large
    assert all(kind == "scan" and length <= _parallel.REFINEMENTS + 1
               for kind, length in large), large
    sequential = _decode_loops(100_000, "sris", 1e-6)
    assert ("scan", 100_000) in sequential


def test_parallel_levels_grow_as_log2_N():
    assert [_parallel.levels(n) for n in (2, 3, 5, 9, 1025, 1026, 10**6)] == [1, 1, 2, 3, 10,
                                                                            11, 20]


def _float32_points(x):
    """``x`` rounded to float32, returned as float64 and strictly increasing: a point that
    rounds onto (or below) its predecessor moves to the next float32 above it. Solvers in
    both precisions then fit the same knots, so what separates their results is the
    solvers' own rounding (at N = 100,000 the Chebyshev spacing near +-1, ~5e-10, is below
    float32 resolution, and the rounded points would otherwise merge)."""
    t = np.asarray(x, np.float32)
    for i in range(1, t.size):
        if t[i] <= t[i - 1]:
            t[i] = np.nextafter(t[i - 1], np.float32(np.inf))
    return t.astype(np.float64)


def _case(N, seed=0, float32_points=True):
    """Chebyshev points (rounded to float32 unless asked otherwise), 20% random stragglers,
    noisy smooth outputs, lam = 1e-6."""
    rng = np.random.default_rng(seed)
    scheme = lc.letcc(50, N, lam_dec=1e-6)
    if float32_points:
        scheme = scheme.replace(alpha=jnp.asarray(_float32_points(scheme.alpha)),
                                beta=jnp.asarray(_float32_points(scheme.beta)))
    beta = np.asarray(scheme.beta)
    Y = np.stack([np.sin(3 * beta), np.cos(5 * beta)], 1) + 0.1 * rng.standard_normal((N, 2))
    return scheme, Y, rng.random(N) >= 0.2


_DECODE = jax.jit(lambda s, y, a: s.decode(y, a))


def _error(scheme, solver, Y, alive, dtype, exact):
    """max |decode - exact| / max |exact| of the decode in ``dtype`` by ``solver``."""
    scheme = jax.tree.map(lambda v: jnp.asarray(v, dtype), scheme.replace(solver=solver))
    out = np.asarray(_DECODE(scheme, jnp.asarray(Y, dtype), jnp.asarray(alive)), np.float64)
    return np.max(np.abs(out - exact)) / np.max(np.abs(exact))


def _exact(scheme, Y, alive):
    return np.asarray(_DECODE(scheme.replace(solver="sris"), jnp.asarray(Y),
                              jnp.asarray(alive)))


# The parallel smoother's float32 error on float32 points, relative to the float64 decode
# of the same data (sequential smoother), measured on seeds 0-8 (2 cores, x86-64):
#   N = 10,000:   2.8e-6 ... 3.9e-6   (sequential 9.5e-6 ... 1.1e-5; ratio 0.17 ... 0.40)
#   N = 100,000:  8.5e-5 ... 2.0e-4   (sequential 1.2e-4 ... 1.9e-4; ratio 0.61 ... 1.58)
# Without its pass of iterative refinement the parallel smoother gives 4.0e-5 and 3.1e-3
# (ratios 4 and 22). The bounds below, at N = 100,000 only (each size compiles its own
# programs), are 5x and 3.8x above the largest measured error and ratio, and 3.1x and 3.7x
# below the unrefined solver's. float64: 9e-13 measured; its float64 accuracy is checked
# against 40-digit solutions up to N = 10,000 (test_core_spline), not here, where another
# program of several levels more would take most of a minute to compile.
PARALLEL_FLOAT32_ERROR, PARALLEL_FLOAT32_RATIO = 1e-3, 6.0


def test_parallel_matches_the_sequential_smoother_on_float32_points():
    scheme, Y, alive = _case(100_000)
    exact = _exact(scheme, Y, alive)
    par32 = _error(scheme, "parallel", Y, alive, np.float32, exact)
    seq32 = _error(scheme, "sris", Y, alive, np.float32, exact)
    assert par32 <= PARALLEL_FLOAT32_ERROR, (par32, seq32)
    assert par32 <= PARALLEL_FLOAT32_RATIO * seq32, (par32, seq32)


def _white_noise_case(N, seed, lam):
    """The float32 user's path: the scheme's float64 points with float32 outputs (white
    noise, the hardest case: the decode is ~1/7 of the data's size at N = 10^4 and ~1/25
    at N = 10^5, so the solvers' rounding shows most), 20% random stragglers."""
    rng = np.random.default_rng(seed)
    scheme = lc.letcc(50, N, lam_dec=lam)
    Y = rng.standard_normal((N, 2)).astype(np.float32)
    return scheme, Y, rng.random(N) >= 0.2


# A float32 decode from float64 points against the float64 decode of the same data
# (sequential smoother), max |difference| / max |float64 decode|. The points no longer
# cost anything: spacings and offsets are taken in float64 and only then rounded, which
# moves the float64 decode by ~1e-9, where casting the points to float32 first moved it
# by 2.1e-2 at N = 10^5 (workers merged near +-1). What is left is each solver's own
# float32 rounding. Measured on seeds 0-4 (2 cores, x86-64), lam = 1e-6 unless stated:
#   N = 10,000   "sris" 7.5e-6 ... 1.3e-5, "blocked" 7.9e-6 ... 1.7e-5,
#                "parallel" 1.9e-7 ... 3.6e-7 (2.1e-5 ... 4.5e-5 before its refinement on the
#                augmented system), lam = 0 (Reinsch, every solver) 5.6e-8 ... 1.3e-7
#   N = 100,000  "auto" ("blocked") 8.0e-5 ... 1.4e-4, "sris" 9.8e-5 ... 1.2e-4 (seeds 0-2),
#                "parallel" 6.9e-7 ... 9.3e-7 (4.9e-4 ... 8.9e-4 before)
# Bounds: 3-4x the largest measured. Each size compiles its own programs, so N = 100,000
# runs for "auto" only (what a CPU user gets; "parallel" is checked there against the
# sequential smoother above).
FLOAT32_FROM_FLOAT64_POINTS = {
    (10_000, "sris", 1e-6): 4e-5,
    (10_000, "blocked", 1e-6): 5e-5,
    (10_000, "parallel", 1e-6): 1.5e-6,
    (10_000, "reinsch", 0.0): 5e-7,
    (100_000, "auto", 1e-6): 5e-4,
}


@pytest.mark.parametrize("N, solver, lam", list(FLOAT32_FROM_FLOAT64_POINTS))
def test_float32_decode_from_float64_points(N, solver, lam):
    scheme, Y, alive = _white_noise_case(N, 0, lam)
    exact = _exact(scheme, Y.astype(np.float64), alive)
    out = _DECODE(scheme.replace(solver=solver), jnp.asarray(Y), jnp.asarray(alive))
    assert out.dtype == jnp.float32 and scheme.beta.dtype == jnp.float64
    error = np.max(np.abs(np.asarray(out, np.float64) - exact)) / np.max(np.abs(exact))
    assert error <= FLOAT32_FROM_FLOAT64_POINTS[N, solver, lam], error


# The posterior covariances by cyclic reduction against the sequential sweep's, at N =
# 100,000 Chebyshev workers with 20% random stragglers, relative to the sequential float64
# result. Measured on seeds 0-3 (2 cores, x86-64), lam = 1e-6 / 0 / 1e-3:
#   float64: the variance at the inputs' points 4e-11 ... 7e-11 / 1e-15 / 1.5e-9, every
#            knot's value variance likewise, its neighbour covariance (relative to the
#            two standard deviations) 8e-11 / 2e-15 / 1.5e-9
#   float32 (spacings from float64 points): parallel 4.2e-3 ... 8.7e-3 / 2.1e-6 / 2.0e-2 ...
#            3.9e-2, sequential 6.0e-4 / 2.5e-6 / 1.5e-3: cyclic reduction eliminates knots
#            from neighbours far apart, which costs digits where the knots crowd (the
#            scheme's posterior therefore works in its points' precision, float64 by
#            default; float32 is checked against the dense reference at small n in
#            test_posterior, not here, where it would be one more long compile)
# The slope variances are not compared: at the crowded Chebyshev ends (spacing ~5e-10)
# cyclic reduction leaves them up to 2x off in float64, and they enter a variance only
# times the spacing squared (~1e-19 there).
POSTERIOR_BOUNDS = {1e-6: 1e-9, 0.0: 1e-13, 1e-3: 1e-8}  # lam: bound


def test_parallel_posterior_matches_the_sequential_one_at_N_100000():
    from letcc_jax.core.spline._lsq import spacings
    from letcc_jax.core.spline._posterior import state_covariances, variance_at

    N = 100_000
    scheme = lc.letcc(50, N)
    beta, alpha = jnp.asarray(scheme.beta), jnp.asarray(scheme.alpha)
    alive = jnp.asarray(np.random.default_rng(0).random(N) >= 0.2)
    h = spacings(beta, jnp.float64)

    @jax.jit
    def both(a):
        out = {}
        for name, covariances in (("sris", state_covariances),
                                  ("parallel", _parallel.state_covariances_parallel)):
            sigma, cross = covariances(h, alive, a)
            out[name] = variance_at(beta, sigma, cross, alpha), sigma[:, 0], cross[:-1, 0]
        return out

    for lam, bound in POSTERIOR_BOUNDS.items():
        out = jax.tree.map(np.asarray, both(jnp.asarray(float(alive.sum()) * lam)))
        (var, gg, cross), (v, g, c) = out["sris"], out["parallel"]
        assert np.all(var > 0) and np.all(gg[~np.asarray(alive)] > 0)
        assert np.max(np.abs(v - var) / var) <= bound, lam
        assert np.max(np.abs(g - gg) / np.where(gg > 0, gg, 1.0)) <= bound, lam
        sd = np.sqrt(gg[:-1] * gg[1:])
        assert np.max(np.abs(c - cross) / np.where(sd > 0, sd, 1.0)) <= bound, lam
