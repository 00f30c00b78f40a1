"""The form every solver returns: values and slopes at the knots, cubic Hermite between them,
linear outside; and its evaluation."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from jaxtyping import Array, Float

from ..._pytree import pytree_dataclass

__all__ = ["SplineFit", "evaluate", "finer", "hermite", "take"]


@pytree_dataclass
@dataclasses.dataclass(frozen=True)
class SplineFit:
    """The cubic spline through the knots ``t`` (all of them, survivors or not) with values
    ``g`` and slopes ``slope`` there: cubic Hermite on every interval, linear outside.

    ``t`` keeps its own precision, which may be finer than that of ``g`` (float64 knots
    with float32 values): evaluation brackets and offsets points in it (``evaluate``)."""

    t: Float[Array, " n"]
    g: Float[Array, "n m"]
    slope: Float[Array, "n m"]


def finer(*dtypes):
    """The finest of some floating dtypes (the points' precision next to the values'),
    without dtype promotion, which strict promotion forbids between float32 and float64."""
    return max((jnp.dtype(d) for d in dtypes), key=lambda d: jnp.finfo(d).bits)


def take(a, idx):
    """``a[idx]`` along the first axis for indices known to be in range (no clamping)."""
    return a.at[idx].get(mode="promise_in_bounds")


def hermite(h, d, g0, g1, s0, s1):
    """Value and derivative of the cubic Hermite pieces of lengths ``h`` at offsets ``d``
    from their left ends (rows of ``g``/``s`` are (E, m); ``h`` and ``d`` are (E,), in the
    dtype of ``g``). A zero-length piece is its left end."""
    h = jnp.where(h > 0, h, 1.0)[:, None]
    u = d[:, None] / h
    secant = (g1 - g0) / h
    A, B = s0 - secant, s1 - secant
    # The chord plus a correction vanishing at both knots.
    value = g0 + u * (g1 - g0) + h * u * (1.0 - u) * ((1.0 - u) * A - u * B)
    deriv = secant + (1.0 - u) * (1.0 - 3.0 * u) * A - u * (2.0 - 3.0 * u) * B
    return value, deriv


def evaluate(spline: SplineFit, x: Float[Array, " E"], search: str = "scan") -> Float[Array, "E m"]:
    """Evaluate a fitted spline at ``x``: cubic inside the knot range, linear outside.

    ``x`` is bracketed among the knots, and its offsets from them taken, in the finer of
    the two precisions of ``t`` and ``x``; only the offsets and the interval lengths are
    cast to the dtype of the values, so float32 values at float64 points lose nothing to
    the points' rounding. ``search`` is ``jnp.searchsorted``'s method for bracketing x:
    ``"scan"`` (a loop of log2(n) steps) or ``"scan_unrolled"`` (the same steps unrolled:
    no loop in the program, for accelerators)."""
    t, g, slope = spline.t, spline.g, spline.slope
    fine = finer(t.dtype, x.dtype)
    t, x = t.astype(fine), x.astype(fine)
    n = t.shape[0]
    if n < 2:
        return jnp.broadcast_to(g[0], (x.shape[0],) + g.shape[1:])
    dtype = g.dtype
    # When t and x are shared by many fits (vmap over survivor masks), this search runs
    # once and each fit costs a gather.
    j = jnp.clip(jnp.searchsorted(t, x, side="right", method=search) - 1, 0, n - 2)
    t0 = take(t, j)
    cubic, _ = hermite((take(t, j + 1) - t0).astype(dtype), (x - t0).astype(dtype),
                       take(g, j), take(g, j + 1), take(slope, j), take(slope, j + 1))
    left = g[0] + slope[0] * (x - t[0]).astype(dtype)[:, None]
    right = g[-1] + slope[-1] * (x - t[-1]).astype(dtype)[:, None]
    return jnp.where((x < t[0])[:, None], left, jnp.where((x > t[-1])[:, None], right, cubic))
