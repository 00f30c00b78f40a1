"""The pieces of the knot-state least-squares problem that the smoothers triangularise: the
bending-energy rows of every interval and the Givens rotations that eliminate them, unrolled
at trace time entry by entry (``qr_rows``, for loop bodies on scalars) or row by row
(``qr_stacked``, for wide batches of small matrices)."""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float

__all__ = ["givens", "interval_rows", "safe_inv", "qr_rows", "dense", "qr_stacked"]


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


def interval_rows(
    t: Float[Array, " n"], a: Float[Array, ""]
) -> tuple[Float[Array, " n"], Float[Array, " n"], Float[Array, " n"]]:
    """The bending-energy rows of each interval: (W, c, e) with e = sqrt(a/h), c = sqrt(3) e,
    W = 2c/h; zero for the (absent) interval after the last knot, so shape (n,) each."""
    dtype = t.dtype
    # Knots that coincide (distinct nodes rounded to one value in float32) are tied
    # together by a stiff but finite interval rather than an infinite one.
    scale = jnp.maximum(jnp.abs(t[0]), jnp.abs(t[-1]))
    h = jnp.maximum(jnp.diff(t), jnp.finfo(dtype).eps * jnp.where(scale > 0, scale, 1.0))
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
