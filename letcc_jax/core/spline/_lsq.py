"""The pieces of the knot-state least-squares problem that the smoothers triangularise: the
bending-energy rows of every interval and the Givens rotations that eliminate them, unrolled
at trace time entry by entry (``qr_rows``, for loop bodies on scalars) or row by row
(``qr_stacked``, for wide batches of small matrices)."""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Bool, Float

__all__ = ["givens", "spacings", "tied", "to_last_tied", "interval_rows", "safe_inv", "qr_rows",
           "dense", "qr_stacked"]


def givens(a, b):
    """``(c, s, rho)`` with [[c, s], [-s, c]] @ [a, b] = [rho, 0]; identity for a = b = 0."""
    r2 = a * a + b * b
    nz = r2 > 0
    inv = lax.rsqrt(jnp.where(nz, r2, 1.0))
    return jnp.where(nz, a * inv, 1.0), b * inv, r2 * inv


def safe_inv(x):
    """``1 / x``, and 0 where x = 0; the inner ``where`` keeps inf out of the gradient."""
    nz = x != 0
    return jnp.where(nz, 1.0 / jnp.where(nz, x, 1.0), 0.0)


def spacings(t: Float[Array, " n"], dtype) -> Float[Array, " n-1"]:
    """The knot spacings h_i = t_{i+1} - t_i, computed in the knots' own precision and only
    then cast to ``dtype`` (the values' working precision).

    float64 knots keep spacings far below float32 resolution (Chebyshev ends at n = 10^5:
    ~5e-10 next to 1) as float32 numbers of full relative accuracy, where knots cast to
    float32 first would merge. Knots that coincide in their own precision (equal nodes, or
    distinct ones rounded to one value) are tied together by a stiff but finite interval,
    eps of ``dtype`` times the knots' scale, rather than an infinite one (eps of float64
    would overflow float32's rotations where several such ties follow each other).
    """
    scale = jnp.maximum(jnp.abs(t[0]), jnp.abs(t[-1]))
    scale = jnp.where(scale > 0, scale, 1.0)
    floor = jnp.finfo(t.dtype).eps * scale
    tie = float(jnp.finfo(dtype).eps) * scale
    return jnp.where(tied(t), tie, jnp.maximum(jnp.diff(t), floor)).astype(dtype)


def tied(t: Float[Array, " n"]) -> Bool[Array, " n-1"]:
    """Which intervals join knots that coincide in their own precision (``spacings`` gives
    them a stiff tie)."""
    return ~(jnp.diff(t) > 0)


def to_last_tied(t: Float[Array, " n"], alive: Bool[Array, " n"],
                 y: Float[Array, "n m"] | None = None):
    """``alive`` (and ``y``, if given) with each survivor moved to the last knot that
    coincides with it (``tied``: equal knots, in their own precision). The fit is the same wherever
    in its group of tied knots a survivor sits, but the sequential sweep that pins an
    interpolated survivor's value loses its slope to the stiff tie that follows it (3e-2
    off at n = 11 in float64); pinned last in its group, no tie follows it. At most one
    survivor per group of ties (``decode`` keeps the first result at a point). Returns
    the moved mask, or ``(mask, y)`` with ``y``."""
    n = t.shape[0]
    ends = jnp.concatenate([~tied(t), jnp.ones((1,), bool)])
    last = lax.cummin(jnp.where(ends, jnp.arange(n), n), reverse=True)
    moved = jnp.zeros_like(alive).at[last].max(alive)
    if y is None:
        return moved
    values = jnp.zeros_like(y).at[last].add(jnp.where(alive[:, None], y, jnp.zeros((), y.dtype)))
    return moved, values


def interval_rows(
    h: Float[Array, " n-1"], a: Float[Array, ""]
) -> tuple[Float[Array, " n"], Float[Array, " n"], Float[Array, " n"]]:
    """The bending-energy rows of each interval of length ``h`` (``spacings``): (W, c, e)
    with e = sqrt(a/h), c = sqrt(3) e, W = 2c/h; zero for the (absent) interval after the
    last knot, so shape (n,) each."""
    dtype = h.dtype
    # W^2 = 12 a / h^3 must stay finite when the rotations square and add a few such rows:
    # spacings finer than the knots' precision allows in the values' dtype (float64
    # Chebyshev ends with float32 values and a large lam) are widened to where
    # W^2 <= max / 20. Untouched at the usual a; it only keeps huge lam from overflowing,
    # and it is no parameter of the problem, so no gradient flows through it.
    h = jnp.maximum(h, lax.stop_gradient(jnp.cbrt(240.0 * a / jnp.finfo(dtype).max)))
    e = jnp.sqrt(a / h)
    c = jnp.sqrt(jnp.asarray(3.0, dtype)) * e
    W = 2.0 * c / h
    zero = jnp.zeros((1,), dtype)
    return tuple(jnp.concatenate([v, zero]) for v in (W, c, e))


def _mul(coef, x):
    """``coef * x`` where x may be a right-hand side with a trailing column axis; None is 0."""
    if x is None:
        return None
    return (coef if coef.ndim == x.ndim else coef[..., None]) * x


def _add(x, y):
    return y if x is None else x if y is None else x + y


def qr_rows(rows, ncols):
    """Givens QR of a few rows with known zeros, unrolled at trace time.

    Each row is a list of ``ncols`` coefficients and a right-hand side (last entry); an
    entry is an array or None for a structural zero, so no work is spent on zeros. Returns
    the rows triangularised on the ``ncols`` columns (row k is None left of column k);
    rows past ``ncols`` are residuals.
    """
    rows = [list(r) for r in rows]
    for k in range(ncols):
        for r in range(k + 1, len(rows)):
            if rows[r][k] is None:
                continue
            if rows[k][k] is None:
                rows[k], rows[r] = rows[r], rows[k]
                continue
            c, s, rho = givens(rows[k][k], rows[r][k])
            top, bot = [None] * (ncols + 1), [None] * (ncols + 1)
            top[k] = rho
            for col in range(k + 1, ncols + 1):
                x, y = rows[k][col], rows[r][col]
                top[col] = _add(_mul(c, x), _mul(s, y))
                bot[col] = _add(_mul(-s, x), _mul(c, y))
            rows[k], rows[r] = top, bot
    return rows


def dense(entries, like):
    """Structural zeros (None) as arrays shaped like ``like`` (a trace-time list)."""
    return [jnp.zeros_like(like) if v is None else v for v in entries]


def qr_stacked(rows, support, ncols):
    """Givens QR of a few rows that are whole arrays, unrolled at trace time.

    ``rows[i]`` has shape (..., C): row i of a batch of small matrices, its columns (the
    unknowns first, then right-hand sides) on the last axis. ``support[i]`` is the set of
    columns among the first ``ncols`` where row i may be nonzero (static): rotations that
    would zero a structural zero are skipped. Each rotation acts on whole rows, a few large
    vectorised operations, which keeps the compiled program small. Returns the rows
    triangularised on the first ``ncols`` columns; rows past ``ncols`` are residuals.
    """
    rows, support = list(rows), [set(s) for s in support]
    for k in range(ncols):
        for r in range(k + 1, len(rows)):
            if k not in support[r]:
                continue
            if k not in support[k]:
                rows[k], rows[r] = rows[r], rows[k]
                support[k], support[r] = support[r], support[k]
                continue
            c, s, _ = givens(rows[k][..., k], rows[r][..., k])
            c, s = c[..., None], s[..., None]
            rows[k], rows[r] = c * rows[k] + s * rows[r], c * rows[r] - s * rows[k]
            both = support[k] | support[r]
            support[k], support[r] = both, both - {k}
    return rows
