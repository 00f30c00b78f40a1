"""The parallel smoother (``solver="parallel"``): O(log N) sequential depth, checked on the
program itself, and its accuracy at N = 100,000 against the sequential smoother.

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
    none longer than the refinement's two passes; the sequential smoother, traced the same
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


def _case(N, seed=0):
    """Chebyshev workers, 20% random stragglers, noisy smooth outputs (lam = 1e-6)."""
    rng = np.random.default_rng(seed)
    scheme = lc.letcc(50, N, lam_dec=1e-6)
    beta = np.asarray(scheme.beta)
    Y = np.stack([np.sin(3 * beta), np.cos(5 * beta)], 1) + 0.1 * rng.standard_normal((N, 2))
    return scheme, Y, rng.random(N) >= 0.2


def _decode(scheme, solver, Y, alive, dtype):
    scheme = jax.tree.map(lambda v: jnp.asarray(v, dtype), scheme.replace(solver=solver))
    return np.asarray(jax.jit(lambda s, y, a: s.decode(y, a))(scheme, jnp.asarray(Y, dtype),
                                                             jnp.asarray(alive)), np.float64)


def test_parallel_matches_the_sequential_smoother_at_N_100000():
    """Measured: 1.2e-11 relative in float64. In float32 both are dominated by rounding
    Chebyshev points spaced ~1e-9 apart near the ends (4.3e-3 sequential, 3.4e-3
    parallel, relative to the float64 decode)."""
    scheme, Y, alive = _case(100_000)
    exact = _decode(scheme, "sris", Y, alive, np.float64)
    scale = np.max(np.abs(exact))
    par = _decode(scheme, "parallel", Y, alive, np.float64)
    assert np.max(np.abs(par - exact)) <= 1e-9 * scale
    seq32 = np.max(np.abs(_decode(scheme, "sris", Y, alive, np.float32) - exact)) / scale
    par32 = np.max(np.abs(_decode(scheme, "parallel", Y, alive, np.float32) - exact)) / scale
    assert par32 <= max(2 * seq32, 1e-4), (par32, seq32)
