"""Natural cubic smoothing splines as linear smoothers, in O(n) with a survivor mask.

Convention (mean form): for knots t_1 < ... < t_n, values y_i and the survivor set F,
the fitted curve minimises

    (1/|F|) sum_{i in F} (y_i - u(t_i))^2 + lam * integral u''(t)^2 dt,

over the second-order Sobolev space. ``lam = 0`` gives the natural cubic interpolating
spline through the survivors. The minimiser is a natural cubic spline with knots at the
survivors, linear outside [min t_F, max t_F]. scipy's ``make_smoothing_spline`` uses the
sum form: its ``lam`` is ``|F| * lam`` here.

Implementation (Reinsch's algorithm, Green & Silverman 1994, section 2.3):
survivors are compacted to the front of a static-size buffer (one compiled function serves
every mask), the second derivatives gamma solve the SPD pentadiagonal system
(R + a Q^T Q) gamma = Q^T y with a = |F| lam, and the knot values are g = y - a Q gamma.
Padding rows of the buffer are decoupled identity rows, so they never touch the fit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from ._banded import solve_spd_pentadiagonal

__all__ = ["SplineFit", "fit", "evaluate", "smooth"]


class SplineFit:
    """The natural cubic spline through compacted knots ``t`` with values ``g`` and second
    derivatives ``gamma``; the first ``count`` rows are real, the rest padding."""

    def __init__(self, t, g, gamma, count):
        self.t, self.g, self.gamma, self.count = t, g, gamma, count


def _take(a, idx):
    """``a[idx]`` along the first axis for indices known to be in range (no clamping)."""
    return a.at[idx].get(mode="promise_in_bounds")


def _compact(alive: Bool[Array, " n"]):
    """Permutation that moves survivors to the front, keeping their order (O(n))."""
    n = alive.shape[0]
    alive_i = alive.astype(jnp.int32)
    count = jnp.sum(alive_i)
    pos = jnp.where(alive, jnp.cumsum(alive_i) - 1, count + jnp.cumsum(1 - alive_i) - 1)
    order = jnp.zeros((n,), jnp.int32).at[pos].set(jnp.arange(n, dtype=jnp.int32))
    return order, count


def fit(
    t: Float[Array, " n"],
    y: Float[Array, "n m"],
    alive: Bool[Array, " n"],
    lam: Float[Array, ""],
) -> SplineFit:
    """Fit the smoothing spline to the rows of ``y`` whose ``alive`` flag is set.

    Rows that are not alive are ignored entirely (their values may be anything finite).
    """
    n, m = y.shape
    dtype = y.dtype
    order, count = _compact(alive)
    idx = jnp.arange(n)
    real = idx < count
    t_last = t[order[jnp.maximum(count - 1, 0)]]
    t_order, y_order = _take(t, order), _take(y, order)
    # Padding knots continue to the right with unit spacing: finite, increasing, inert.
    tc = jnp.where(real, t_order, t_last + (idx - count + 1).astype(dtype))
    yc = jnp.where(real[:, None], y_order, 0.0)

    h = jnp.diff(tc)  # (n-1,)
    h = jnp.where(idx[:-1] < count - 1, h, 1.0)
    inv_h = 1.0 / h
    # Interior unknowns gamma_i, i = 1..n-2, are real while i <= count-2.
    i = idx[1:-1]
    inner = i <= count - 2
    q_lo = jnp.where(inner, inv_h[:-1], 0.0)  # Q[i-1, i]
    q_hi = jnp.where(inner, inv_h[1:], 0.0)  # Q[i+1, i]
    q_mid = -(q_lo + q_hi)  # Q[i, i]
    a = count.astype(dtype) * lam

    r0 = jnp.where(inner, (h[:-1] + h[1:]) / 3.0, 1.0)
    r1 = jnp.where(inner[:-1] & inner[1:], h[1:-1] / 6.0, 0.0)
    diag0 = r0 + a * (q_lo**2 + q_mid**2 + q_hi**2)
    diag1 = r1 + a * (q_mid[:-1] * q_lo[1:] + q_hi[:-1] * q_mid[1:])
    diag2 = a * q_hi[:-2] * q_lo[2:]
    rhs = q_lo[:, None] * yc[:-2] + q_mid[:, None] * yc[1:-1] + q_hi[:, None] * yc[2:]

    gamma_in = solve_spd_pentadiagonal(diag0, diag1, diag2, rhs)
    zero_row = jnp.zeros((1, m), dtype)
    gamma = jnp.concatenate([zero_row, gamma_in, zero_row])
    # (Q gamma)_k = Q[k, k-1] gamma_{k-1} + Q[k, k] gamma_k + Q[k, k+1] gamma_{k+1}.
    zero = jnp.zeros((1,), dtype)
    up = jnp.concatenate([zero, zero, q_hi])[:, None]  # Q[k, k-1] = q_hi[k-1]
    mid = jnp.concatenate([zero, q_mid, zero])[:, None]
    dn = jnp.concatenate([q_lo, zero, zero])[:, None]  # Q[k, k+1] = q_lo[k+1]
    gp = jnp.concatenate([zero_row, gamma[:-1]])
    gn = jnp.concatenate([gamma[1:], zero_row])
    q_gamma = up * gp + mid * gamma + dn * gn
    g = jnp.where(real[:, None], yc - a * q_gamma, 0.0)
    return SplineFit(tc, g, gamma, count)


def evaluate(spline: SplineFit, x: Float[Array, " E"]) -> Float[Array, "E m"]:
    """Evaluate a fitted spline at ``x``: cubic inside the knot range, linear outside.

    With one knot the curve is the constant through it; with none it is zero.
    """
    t, g, gamma, count = spline.t, spline.g, spline.gamma, spline.count
    x = x.astype(t.dtype)
    last = jnp.maximum(count - 1, 1)
    j = jnp.clip(jnp.searchsorted(t, x, side="right") - 1, 0, last - 1)
    tj, tj1 = _take(t, j), _take(t, j + 1)
    g_j, g_j1, gamma_j, gamma_j1 = _take(g, j), _take(g, j + 1), _take(gamma, j), _take(gamma, j + 1)
    hj = tj1 - tj
    dl = (x - tj)[:, None]
    dr = (tj1 - x)[:, None]
    hc = hj[:, None]
    cubic = (dl * g_j1 + dr * g_j) / hc - (dl * dr / 6.0) * (
        (1.0 + dl / hc) * gamma_j1 + (1.0 + dr / hc) * gamma_j
    )
    # Natural end conditions (gamma = 0 at both end knots) give the end slopes.
    h0 = t[1] - t[0]
    slope0 = (g[1] - g[0]) / h0 - h0 * gamma[1] / 6.0
    hl = t[last] - t[last - 1]
    slope1 = (g[last] - g[last - 1]) / hl + hl * gamma[last - 1] / 6.0
    left = g[0] + slope0 * (x - t[0])[:, None]
    right = g[last] + slope1 * (x - t[last])[:, None]
    out = jnp.where((x < t[0])[:, None], left, jnp.where((x > t[last])[:, None], right, cubic))
    out = jnp.where(count >= 2, out, jnp.where(count == 1, g[0], jnp.zeros_like(g[0])))
    return out


def smooth(
    t: Float[Array, " n"],
    y: Float[Array, "n m"],
    alive: Bool[Array, " n"],
    lam: Float[Array, ""],
    x: Float[Array, " E"],
) -> Float[Array, "E m"]:
    """Fit the smoothing spline to the alive rows of ``(t, y)`` and evaluate it at ``x``."""
    return evaluate(fit(t, y, alive, lam), x)


jax.tree_util.register_pytree_node(
    SplineFit,
    lambda s: ((s.t, s.g, s.gamma, s.count), None),
    lambda _, c: SplineFit(*c),
)


def gcv_score(
    t: Float[Array, " n"],
    y: Float[Array, "n m"],
    alive: Bool[Array, " n"],
    lam: Float[Array, ""],
) -> Float[Array, ""]:
    """Generalised cross-validation score of the smoothing spline (Craven & Wahba 1979).

    GCV(lam) = (1/|F|) ||y_F - g_F||^2 / (1 - tr(S_lam)/|F|)^2, summed over the m
    columns, where S_lam is the smoother matrix on the survivors. The trace is computed
    exactly by smoothing the identity, O(n^2): fine for the n of a decoder.
    """
    n = t.shape[0]
    spline = fit(t, y, alive, lam)
    order, count = _compact(alive)
    real = jnp.arange(n) < count
    yc = jnp.where(real[:, None], y[order], 0.0)
    rss = jnp.sum(jnp.where(real[:, None], (yc - spline.g) ** 2, 0.0))
    hat = fit(t, jnp.eye(n, dtype=y.dtype), alive, lam).g  # rows compacted, columns original
    trace = jnp.sum(jnp.where(real, hat[jnp.arange(n), order], 0.0))
    nf = count.astype(y.dtype)
    return (rss / nf) / (1.0 - trace / nf) ** 2
