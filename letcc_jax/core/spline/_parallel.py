"""The square-root information smoother by orthogonal cyclic reduction: O(log n) depth.

The same least-squares problem over the knot states x_i = (g_i, s_i) as ``_sris``, with the
same kind of Givens rotations, eliminated in odd-even order. Each interval i carries a
factor: the rows of the problem on (x_i, x_{i+1}) (knot i's observation and the interval's
two bending rows), triangularised on those four unknowns. One level eliminates every other
knot at once: the two factors that meet at an odd knot x_o are stacked (eight rows on x_o
and its neighbours), rotated to upper-triangular form with x_o first, and split into the two
rows that give x_o from its neighbours and four rows on the neighbours alone, the factor of
the next level. After ceil(log2(n - 1)) levels one factor on the first and the last knot is
left; solving it and substituting back level by level gives every knot.

Every level is one vectorised step over all the knots it eliminates, with no loop whose
length grows with n (the levels are unrolled at trace time): on an accelerator, where every
step of a sequential sweep costs at least one kernel launch, a fit at n = 10^6 takes ~20
levels each way instead of 10^6 steps. Orthogonal transformations of the rows themselves,
never the normal equations. Eliminating a knot from neighbours far apart costs digits where
knots crowd (Chebyshev ends: 4e-5 relative in float32 at n = 10^4, against 6e-6 for the
sequential sweep), so one pass of iterative refinement follows: the same solve for the
residual of the first solution, computed from the problem's own rows. With it the error is
below the sequential smoother's (1e-6 in float32 at n = 10^4, 6e-15 in float64;
``tests/test_core_spline.py``). The price is arithmetic: two solves of about ten times the
work of ``_sris`` each, in wide vectorised steps. On a 2-core CPU one fit is still 1.2-1.7x
faster than ``_sris`` but 4-5x slower than ``_blocked``, and it compiles longer, so "auto"
uses it on accelerators only (``benchmarks/RESULTS.md``).

Padding knots up to n = 2^L + 1 are tied to the last knot, as in ``_blocked``.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float

from ._lsq import interval_rows, qr_stacked, safe_inv

__all__ = ["sris_parallel", "levels", "REFINEMENTS"]


#: Passes of iterative refinement after the first solve (one loop of fixed length, compiled
#: once).
REFINEMENTS = 1


def levels(n: int) -> int:
    """Reduction levels for n knots: 2^levels >= n - 1 intervals."""
    return max(1, (n - 2).bit_length())


def _interval_factors(w, W, c, e, w_end, rhs):
    """Level 0: every interval's rows on (x_i, x_{i+1}) = (g_i, s_i, g_{i+1}, s_{i+1}), with
    the right-hand sides after them, triangularised: shape (F, 4, 4 + m). Knot i's
    observation and the interval's two bending rows; the last interval also holds the last
    knot's observation (weight ``w_end``, zero on the other intervals). ``rhs``: the four
    rows' right-hand sides, each (F, m)."""
    z = jnp.zeros_like(w)
    coef = [(w, z, z, z), (W, c, -W, c), (z, -e, z, e), (z, z, w_end, z)]
    rows = [jnp.concatenate([jnp.stack(k, -1), r], -1) for k, r in zip(coef, rhs)]
    return jnp.stack(qr_stacked(rows, [{0}, {0, 1, 2, 3}, {1, 3}, {2}], 4), -2)


def _level(factor):
    """One level: eliminate the knot shared by each consecutive pair of factors.

    ``factor`` (F, 4, 4 + m): upper-triangular rows on (x_left, x_right), right-hand sides
    after. Returns the next level's factors (F/2, 4, 4 + m) and, per eliminated knot x_o,
    its two substitution rows on (x_o, x_left, x_right) with right-hand sides (F/2, 2, 6 + m).
    """
    L, R = factor[0::2], factor[1::2]
    zero = jnp.zeros(L.shape[:-1] + (2,), L.dtype)
    # Columns: x_o (g, s), x_left (g, s), x_right (g, s), then the right-hand sides.
    # L is upper triangular on (x_left, x_o), R on (x_o, x_right).
    Ls = jnp.concatenate([L[..., 2:4], L[..., 0:2], zero, L[..., 4:]], -1)
    Rs = jnp.concatenate([R[..., 0:2], zero, R[..., 2:4], R[..., 4:]], -1)
    rows = [Ls[:, k] for k in range(4)] + [Rs[:, k] for k in range(4)]
    support = ([{0, 1, 2, 3}, {0, 1, 3}, {0, 1}, {1}]
               + [{0, 1, 4, 5}, {1, 4, 5}, {4, 5}, {5}])
    rows = qr_stacked(rows, support, 6)
    nxt = jnp.stack(rows[2:6], -2)[..., 2:]
    back = jnp.stack(rows[0:2], -2)
    return nxt, back


def _solve_top(T):
    """Both knots of the last factor (4, 4 + m), upper triangular: (2, 2, m) as
    (knot, value/slope, column)."""
    z = T[:, 4:]
    s1 = safe_inv(T[3, 3]) * z[3]
    g1 = safe_inv(T[2, 2]) * (z[2] - T[2, 3] * s1)
    s0 = safe_inv(T[1, 1]) * (z[1] - T[1, 2] * g1 - T[1, 3] * s1)
    g0 = safe_inv(T[0, 0]) * (z[0] - T[0, 1] * s0 - T[0, 2] * g1 - T[0, 3] * s1)
    return jnp.stack([jnp.stack([g0, s0]), jnp.stack([g1, s1])])


def _substitute(back, X):
    """The finer level's knots: the known ones ``X`` (P + 1, 2, m) with the eliminated
    ones between them, x_o from its substitution rows ``back`` (P, 2, 6 + m)."""
    known = jnp.concatenate([X[:-1], X[1:]], axis=1)  # (P, 4, m): left (g, s), right (g, s)
    r = back[:, :, 6:] - jnp.einsum("pij,pjm->pim", back[:, :, 2:6], known)
    s = safe_inv(back[:, 1, 1])[:, None] * r[:, 1]
    g = safe_inv(back[:, 0, 0])[:, None] * (r[:, 0] - back[:, 0, 1][:, None] * s)
    body = jnp.stack([X[:-1], jnp.stack([g, s], 1)], 1).reshape((-1,) + X.shape[1:])
    return jnp.concatenate([body, X[-1:]])


def sris_parallel(
    h: Float[Array, " n-1"], yw: Float[Array, "n m"], w: Float[Array, " n"], a: Float[Array, ""]
) -> tuple[Float[Array, "n m"], Float[Array, "n m"]]:
    """Knot values and slopes by orthogonal cyclic reduction (module docstring): O(log n)
    vectorised levels each way. ``h`` are the knot spacings (``_lsq.spacings``), ``w`` the
    observation weights (square roots), ``yw = w y``, ``a > 0``."""
    n, m = yw.shape
    depth = levels(n)
    F = 1 << depth  # intervals after padding
    pad = F + 1 - n
    W, c, e = interval_rows(h, a)
    # Padding knots are tied to the last knot (x_{i+1} - x_i = 0: W = 1, c = 0, e = -1),
    # which adds no information on the real knots and keeps every state pinned.
    tie = jnp.arange(F) >= n - 1
    W = jnp.where(tie, 1.0, jnp.pad(W[:-1], (0, pad)))
    c = jnp.where(tie, 0.0, jnp.pad(c[:-1], (0, pad)))
    e = jnp.where(tie, -1.0, jnp.pad(e[:-1], (0, pad)))
    w = jnp.pad(w, (0, pad))
    yw = jnp.pad(yw, ((0, pad), (0, 0)))
    last = jnp.arange(F) == F - 1
    w_end = jnp.where(last, w[F], 0.0)

    def solve(r_obs, r_bend, r_slope):
        """The least-squares solution for right-hand sides on the observation rows
        (F + 1, m) and on the two bending rows of every interval (F, m each)."""
        end = jnp.where(last[:, None], r_obs[F], 0.0)
        factor = _interval_factors(w[:F], W, c, e, w_end, (r_obs[:F], r_bend, r_slope, end))
        backs = []
        for _ in range(depth):
            factor, back = _level(factor)
            backs.append(back)
        X = _solve_top(factor[0])
        for back in reversed(backs):
            X = _substitute(back, X)
        return X[:, 0], X[:, 1]

    def refine(state, _):
        """x += the solution for the residual b - A x (from x = 0, the first pass solves
        for b itself). The residual is small, so the second pass adds only its own
        rounding: one pass of refinement takes the float32 error at n = 10^4 from about
        4e-5 to 1e-6, below the sequential smoother's."""
        g, s = state
        r_obs = yw - w[:, None] * g
        r_bend = -(W[:, None] * (g[:-1] - g[1:]) + c[:, None] * (s[:-1] + s[1:]))
        r_slope = -(e[:, None] * (s[1:] - s[:-1]))
        dg, ds = solve(r_obs, r_bend, r_slope)
        return (g + dg, s + ds), None

    zero = jnp.zeros((F + 1, m), yw.dtype)
    (g, s), _ = lax.scan(refine, (zero, zero), None, length=REFINEMENTS + 1)
    return g[:n], s[:n]
