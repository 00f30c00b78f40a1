"""Reinsch's algorithm (Green & Silverman 1994, section 2.3) on the survivors compacted to the
front of a static-size buffer: pentadiagonal normal equations for the second derivatives,
then the spline's values and slopes at every knot."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from .._banded import solve_spd_pentadiagonal
from ._hermite import hermite, take

__all__ = ["reinsch_all"]


def _compact(alive: Bool[Array, " n"]):
    """Permutation that moves survivors to the front, keeping their order (O(n)); with the
    survivor count and, per knot, the number of survivors up to it minus one (its place
    among the survivors, for a survivor)."""
    n = alive.shape[0]
    # Every index in int32, the dtype of cumsum's result: x64's default int64 next to it
    # would be an implicit promotion.
    alive_i = alive.astype(jnp.int32)
    count = jnp.sum(alive_i, dtype=jnp.int32)
    rank = jnp.cumsum(alive_i) - 1
    pos = jnp.where(alive, rank, count + jnp.cumsum(1 - alive_i) - 1)
    order = jnp.zeros((n,), jnp.int32).at[pos].set(jnp.arange(n, dtype=jnp.int32))
    return order, count, rank


def reinsch_all(
    t: Float[Array, " n"], y0: Float[Array, "n m"], alive: Bool[Array, " n"], a: Float[Array, ""],
    banded: str = "auto",
) -> tuple[Float[Array, "n m"], Float[Array, "n m"]]:
    """Reinsch on the compacted survivors, then the spline's values and slopes at every
    knot (the stragglers' knots lie on its cubic pieces or its linear ends). ``y0`` is zero
    on the stragglers, ``a = |F| lam``; ``banded`` is the pentadiagonal solver
    (``letcc_jax.core._banded``: ``"auto"``, ``"ldl"`` or ``"cr"``). The knots ``t`` may be
    in a finer precision than ``y0``: spacings and offsets are taken in it, then cast."""
    n = y0.shape[0]
    dtype = y0.dtype
    order, count, rank = _compact(alive)
    idx = jnp.arange(n, dtype=count.dtype)
    real = idx < count
    last = jnp.maximum(count - 1, 0)
    t_last = take(t, take(order, last))
    # Padding knots continue to the right with unit spacing: finite, increasing, inert.
    tc = jnp.where(real, take(t, order), t_last + (idx - count + 1).astype(t.dtype))
    yc = jnp.where(real[:, None], take(y0, order), 0.0)
    gc, sc = _reinsch(jnp.diff(tc).astype(dtype), yc, count, a, banded)
    j = jnp.clip(rank, 0, jnp.maximum(count - 2, 0))  # the survivor at or before each knot
    t0 = take(tc, j)
    value, deriv = hermite((take(tc, j + 1) - t0).astype(dtype), (t - t0).astype(dtype),
                           take(gc, j), take(gc, j + 1), take(sc, j), take(sc, j + 1))
    t_lo, t_hi = tc[0], take(tc, last)
    g_lo, s_lo, g_hi, s_hi = gc[0], sc[0], take(gc, last), take(sc, last)
    left, right = (t < t_lo)[:, None], (t > t_hi)[:, None]
    g = jnp.where(left, g_lo + s_lo * (t - t_lo).astype(dtype)[:, None],
                  jnp.where(right, g_hi + s_hi * (t - t_hi).astype(dtype)[:, None], value))
    g = jnp.where(alive[:, None], take(gc, jnp.maximum(rank, 0)), g)
    slope = jnp.where(left, s_lo, jnp.where(right, s_hi, deriv))
    slope = jnp.where(alive[:, None], take(sc, jnp.maximum(rank, 0)), slope)
    return g, slope


def _reinsch(
    h: Float[Array, " n-1"], yc: Float[Array, "n m"], count: Int[Array, ""], a: Float[Array, ""],
    banded: str = "auto",
) -> tuple[Float[Array, "n m"], Float[Array, "n m"]]:
    """Knot values and slopes by Reinsch's algorithm (pentadiagonal normal equations), on
    the first ``count`` knots of the compacted buffer, spaced ``h``."""
    n, m = yc.shape
    dtype = yc.dtype
    idx = jnp.arange(n, dtype=count.dtype)
    h = jnp.where(idx[:-1] < count - 1, h, 1.0)
    inv_h = 1.0 / h
    # Interior unknowns gamma_i, i = 1..n-2, are real while i <= count-2.
    i = idx[1:-1]
    inner = i <= count - 2
    q_lo = jnp.where(inner, inv_h[:-1], 0.0)  # Q[i-1, i]
    q_hi = jnp.where(inner, inv_h[1:], 0.0)  # Q[i+1, i]
    q_mid = -(q_lo + q_hi)  # Q[i, i]

    r0 = jnp.where(inner, (h[:-1] + h[1:]) / 3.0, 1.0)
    r1 = jnp.where(inner[:-1] & inner[1:], h[1:-1] / 6.0, 0.0)
    diag0 = r0 + a * (q_lo**2 + q_mid**2 + q_hi**2)
    diag1 = r1 + a * (q_mid[:-1] * q_lo[1:] + q_hi[:-1] * q_mid[1:])
    diag2 = a * q_hi[:-2] * q_lo[2:]
    rhs = q_lo[:, None] * yc[:-2] + q_mid[:, None] * yc[1:-1] + q_hi[:, None] * yc[2:]

    gamma_in = solve_spd_pentadiagonal(diag0, diag1, diag2, rhs, method=banded)
    zero_row = jnp.zeros((1, m), dtype)
    gamma = jnp.concatenate([zero_row, gamma_in, zero_row])
    # (Q gamma)_k = Q[k, k-1] gamma_{k-1} + Q[k, k] gamma_k + Q[k, k+1] gamma_{k+1}.
    zero = jnp.zeros((1,), dtype)
    up = jnp.concatenate([zero, zero, q_hi])[:, None]  # Q[k, k-1] = q_hi[k-1]
    mid = jnp.concatenate([zero, q_mid, zero])[:, None]
    dn = jnp.concatenate([q_lo, zero, zero])[:, None]  # Q[k, k+1] = q_lo[k+1]
    gp = jnp.concatenate([zero_row, gamma[:-1]])
    gn = jnp.concatenate([gamma[1:], zero_row])
    g = yc - a * (up * gp + mid * gamma + dn * gn)
    # Slopes of the cubic pieces: at the left end of interval i, and at the right end of
    # interval i-1 (used for the last real knot).
    hc = h[:, None]
    secant = (g[1:] - g[:-1]) / hc
    left_end = secant - hc * (2.0 * gamma[:-1] + gamma[1:]) / 6.0
    right_end = secant + hc * (gamma[:-1] + 2.0 * gamma[1:]) / 6.0
    slope = jnp.where((idx < count - 1)[:, None],
                      jnp.concatenate([left_end, zero_row]),
                      jnp.concatenate([zero_row, right_end]))
    slope = jnp.where(count >= 2, slope, 0.0)
    return g, slope
