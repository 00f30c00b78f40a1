"""Rational and polynomial interpolation in barycentric form, as linear maps.

Both Berrut's interpolant (weights (-1)^i) and the Lagrange polynomial (weights
1 / prod_{j != i} (z_i - z_j)) have the second barycentric form

    r(x) = sum_i w_i v_i / (x - z_i) / sum_i w_i / (x - z_i),

so one routine builds their interpolation matrices. A node set is given as all candidate
nodes plus a boolean mask, so the shapes stay static; masked-out nodes get weight zero.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float


def berrut_weights(mask: Bool[Array, " n"], dtype) -> Float[Array, " n"]:
    """(-1)^rank over the selected nodes, rank counted among selected nodes only."""
    rank = jnp.cumsum(mask.astype(jnp.int32)) - 1
    return jnp.where(mask, 1 - 2 * (rank % 2), 0).astype(dtype)


def lagrange_weights(nodes: Float[Array, " n"], mask: Bool[Array, " n"]) -> Float[Array, " n"]:
    """Barycentric Lagrange weights of the selected nodes, scaled so the largest is 1.

    Computed from sums of logarithms, so they neither overflow nor underflow for hundreds
    of nodes; the common scale cancels in the barycentric formula.
    """
    n = nodes.shape[0]
    diff = nodes[:, None] - nodes[None, :]
    off = mask[None, :] & ~jnp.eye(n, dtype=bool)
    log_abs = -jnp.sum(jnp.where(off, jnp.log(jnp.abs(jnp.where(off, diff, 1.0))), 0.0), axis=1)
    negatives = jnp.sum(off & (diff < 0), axis=1)
    sign = (1 - 2 * (negatives % 2)).astype(nodes.dtype)
    log_abs = jnp.where(mask, log_abs, -jnp.inf)
    scale = jnp.max(log_abs)
    return jnp.where(mask, sign * jnp.exp(log_abs - scale), 0.0).astype(nodes.dtype)


@jax.custom_jvp
def interpolation_matrix(
    nodes: Float[Array, " n"],
    weights: Float[Array, " n"],
    x: Float[Array, " E"],
) -> Float[Array, "E n"]:
    """Rows map node values to the barycentric interpolant's values at ``x``.

    Nodes with weight zero do not take part. Where ``x`` coincides with a taking-part node
    the row is the unit vector of that node (the formula's 0/0 limit). Derivatives with
    respect to ``nodes``, ``weights`` and ``x`` are those of the interpolant, at and near a
    coinciding node too (``_relative_rows``).
    """
    diff = x[:, None] - nodes[None, :]
    active = weights[None, :] != 0
    hit = (diff == 0) & active
    safe = jnp.where(hit, 1.0, diff)
    c = jnp.where(active, weights[None, :] / safe, 0.0)
    den = jnp.sum(c, axis=1, keepdims=True)
    rows = c / jnp.where(den == 0, 1.0, den)
    hits = hit.astype(x.dtype)
    unit = hits / jnp.maximum(jnp.sum(hits, axis=1, keepdims=True), 1.0)
    return jnp.where(jnp.any(hit, axis=1, keepdims=True), unit, rows)


def _relative_rows(
    nodes: Float[Array, " n"],
    weights: Float[Array, " n"],
    x: Float[Array, " E"],
) -> Float[Array, "E n"]:
    """``interpolation_matrix``'s rows in a form that stays smooth as ``x`` meets a node.

    Numerator and denominator are multiplied by t = x - z_k, z_k the taking-part node
    nearest to x: the terms become w_k and w_j t / (x - z_j), each at most |w_j| in size, so
    the derivative at t = 0 is the limit of the derivatives around it (a unit row whose
    derivative is not zero), and near t = 0 it has no 1/t^2 terms that cancel.
    """
    diff = x[:, None] - nodes[None, :]
    active = weights[None, :] != 0
    k = jnp.argmin(jnp.where(active, jnp.abs(diff), jnp.inf), axis=1)
    nearest = jnp.arange(nodes.shape[0])[None, :] == k[:, None]
    t = jnp.take_along_axis(diff, k[:, None], axis=1)
    safe = jnp.where(nearest | (diff == 0), 1.0, diff)  # other coinciding nodes: no limit
    c = jnp.where(active, jnp.where(nearest, weights[None, :], weights[None, :] * (t / safe)),
                  0.0)
    den = jnp.sum(c, axis=1, keepdims=True)
    return c / jnp.where(den == 0, 1.0, den)


@interpolation_matrix.defjvp
def _interpolation_matrix_jvp(primals, tangents):
    # The values stay the plain formula's; only the derivative comes from the relative form.
    _, tangent = jax.jvp(_relative_rows, primals, tangents)
    return interpolation_matrix(*primals), tangent
