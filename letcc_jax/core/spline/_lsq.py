"""The pieces of the knot-state least-squares problem that both smoothers triangularise: the
bending-energy rows of every interval and the Givens rotations that eliminate them."""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float

__all__ = ["givens", "interval_rows", "safe_inv"]


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
