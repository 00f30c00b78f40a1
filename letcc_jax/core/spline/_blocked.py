"""The square-root information smoother in two levels, O(sqrt(n)) sequential steps deep.

The knots are cut into blocks of L intervals that share their end knots (separators).
Inside every block at once (vmapped), a sweep of Givens rotations eliminates the L - 1
interior states while keeping the block's first separator as an unknown: what is left is
the square-root information on the block's two separators. A sequential sweep of the same
kind over the separators (the reduced chain) solves for them, and every block then
substitutes back for its interior. The same orthogonal transformations of the same
least-squares problem as the sequential smoother (``_sris``), in a different elimination
order.

The rotations act on a few rows with many structural zeros; ``_lsq.qr_rows`` unrolls them at
trace time and spends no work on the zeros.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float

from .._vma import varying_like
from ._lsq import dense as _dense
from ._lsq import interval_rows, safe_inv
from ._lsq import qr_rows as _qr

__all__ = ["sris_blocked"]


#: Knots per block in float32, in units of sqrt(n).
FLOAT32_BLOCK_FACTOR = 4


def _block_size(n, dtype):
    """Knots per block of the two-level smoother: about sqrt(n) in float64, balancing the two
    levels; 4 sqrt(n) in float32, where the rounding that the block ends bring grows with
    the number of blocks. White-noise decode at n = 10^5 (K = 50, m = 10, lam = 1e-6, 20%
    stragglers), seeds 0-4, relative error against float64 / best time of one decode on an
    idle 2-core CPU: 4 sqrt(n) 1.2e-4 ... 2.4e-4 / 47-48 ms; 8 sqrt(n) 8.5e-5 ... 1.4e-4 /
    60-64 ms; sqrt(n) 1.8e-4 ... 6.0e-4 / 41 ms; the sequential smoother 9.8e-5 ... 1.2e-4 /
    171 ms."""
    factor = FLOAT32_BLOCK_FACTOR if jnp.finfo(dtype).bits <= 32 else 1
    return max(2, min(factor * int(math.ceil(math.sqrt(n))), n - 1))


def _blocks(v, nb, L, start, stop):
    """Columns ``start:stop`` of ``v`` cut into ``nb`` blocks of ``L`` knots (leading axis
    the block): block b's knot j is b L + j."""
    return v[: nb * L].reshape((nb, L) + v.shape[1:])[:, start:stop]


def _eliminate_step(zero, zm, carry, inputs):
    """Absorb interior knot j of a block: its observation and the interval j -> j+1.

    The carry holds the upper triangle on [x_j, s_b] (flattened, 10 entries) and its four
    right-hand sides; what comes out are the two rows that give x_j from (x_{j+1}, s_b),
    for the substitution, and the carry moves to [x_{j+1}, s_b]. ``zero``/``zm``: a scalar
    and an (m,) row of zeros.
    """
    flat, z = carry
    wj, yj, Wj, cj, ej = inputs
    R = [[flat[0], flat[1], flat[2], flat[3]], [None, flat[4], flat[5], flat[6]],
         [None, None, flat[7], flat[8]], [None, None, None, flat[9]]]
    # Columns: x_j (g, s), x_{j+1} (g, s), s_b (g, s); then the right-hand side.
    rows = [[R[k][0], R[k][1], None, None, R[k][2], R[k][3], z[k]] for k in range(4)]
    rows += [[wj, None, None, None, None, None, yj],
             [Wj, cj, -Wj, cj, None, None, None],
             [None, -ej, None, ej, None, None, None]]
    rows = _qr(rows, 6)
    nxt = [rows[2 + k][2 + k:6] for k in range(4)]
    flat = _dense([v for row in nxt for v in row], zero)
    z = _dense([rows[2 + k][6] for k in range(4)], zm)
    back = (_dense(rows[0][:6] + rows[1][1:6], zero), _dense([rows[0][6], rows[1][6]], zm))
    return (flat, z), back


def _eliminate(zero, zm, first, interior):
    """One block: eliminate its interior, keep (next state, first separator).

    ``first``: the (W, c, e) rows of the block's first interval; ``interior``: per interior
    knot its weight, weighted value, and the rows of the interval after it. Returns the
    triangle on [s_{b+1}, s_b] with its right-hand sides, and every interior knot's
    substitution rows.
    """
    W0, c0, e0 = first
    # The first interval's rows on (s_b, x_1), as a carry on [x_1, s_b].
    R = [[-W0, c0, W0, c0], [None, e0, zero, -e0], [None, None, zero, zero],
         [None, None, None, zero]]
    flat = [v for row in R for v in row if v is not None]
    carry = varying_like((flat, [zm, zm, zm, zm]), zm)
    (flat, z), back = lax.scan(functools.partial(_eliminate_step, zero, zm), carry, interior)
    return (flat, z), back


def _close(v):
    """``v`` with a zero block appended: the empty block that closes the reduced chain."""
    return jnp.concatenate([v, jnp.zeros((1,) + v.shape[1:], v.dtype)])


def _reduce_step(zero, zm, carry, inputs):
    """One separator of the reduced chain: the carried triangle on s_b, its observation and
    block b's rows on [s_{b+1}, s_b], triangularised on [s_b, s_{b+1}]."""
    (p00, p01, p11), (z0, z1) = carry
    wb, yb, f, zb = inputs
    rows = [[p00, p01, None, None, z0], [None, p11, None, None, z1],
            [wb, None, None, None, yb],
            [f[2], f[3], f[0], f[1], zb[0]], [f[5], f[6], None, f[4], zb[1]],
            [f[7], f[8], None, None, zb[2]], [None, f[9], None, None, zb[3]]]
    rows = _qr(rows, 4)
    carry = ((rows[2][2], rows[2][3], rows[3][3]), (rows[2][4], rows[3][4]))
    back = (_dense(rows[0][:4] + rows[1][1:4], zero), _dense([rows[0][4], rows[1][4]], zm))
    return carry, back


def _solve2(T, z, nxt):
    """The state from two triangular rows [T00 T01 | T0.], [0 T11 | T1.] (flattened as
    T00, T01, T0., T11, T1.) and right-hand sides z, given the known states ``nxt``."""
    k = len(nxt)
    row0, row1 = T[: 2 + k], T[2 + k:]
    s = safe_inv(row1[0]) * (z[1] - sum(row1[1 + q] * nxt[q] for q in range(k)))
    g = safe_inv(row0[0]) * (z[0] - row0[1] * s - sum(row0[2 + q] * nxt[q] for q in range(k)))
    return g, s


def _reduce_back(nxt, inputs):
    """One separator of the reduced chain's back substitution."""
    T, z = inputs
    x = _solve2(T, z, nxt)
    return x, x


def _substitute_step(left, nxt, inputs):
    """One interior knot of a block's back substitution, given the next knot's state and
    the block's first separator ``left``."""
    T, z = inputs
    x = _solve2(T, z, (nxt[0], nxt[1], left[0], left[1]))
    return x, x


def _substitute(back, right, left):
    """One block: its interior states from its substitution rows and both separators."""
    _, x = lax.scan(functools.partial(_substitute_step, left), right, back, reverse=True)
    return x


def sris_blocked(
    h: Float[Array, " n-1"], yw: Float[Array, "n m"], w: Float[Array, " n"], a: Float[Array, ""]
) -> tuple[Float[Array, "n m"], Float[Array, "n m"]]:
    """Knot values and slopes by the two-level square-root information smoother (module
    docstring). ``h`` are the knot spacings (``_lsq.spacings``), ``w`` the
    observation weights (square roots), ``yw = w y``, ``a > 0``."""
    n, m = yw.shape
    dtype = yw.dtype
    L = _block_size(n, dtype)
    nb = -(-(n - 1) // L)  # blocks
    n_pad = nb * L + 1
    W, c, e = interval_rows(h, a)
    pad = n_pad - n
    # Padding knots are tied to the last knot (rows x_{i+1} - x_i = 0: W = 1, c = 0,
    # e = -1), which adds no information on the real knots and keeps every state pinned.
    tie = (jnp.arange(n_pad - 1) >= n - 1)
    W = jnp.where(tie, 1.0, jnp.pad(W[:-1], (0, pad)))
    c = jnp.where(tie, 0.0, jnp.pad(c[:-1], (0, pad)))
    e = jnp.where(tie, -1.0, jnp.pad(e[:-1], (0, pad)))
    w = jnp.pad(w, (0, pad))
    yw = jnp.pad(yw, ((0, pad), (0, 0)))

    # Interior knots of block b are b L + j, j = 1..L-1; intervals b L + j - 1 -> b L + j
    # for j = 1..L.
    interior = tuple(_blocks(v, nb, L, 1, L) for v in (w, yw, W, c, e))
    first = tuple(_blocks(v, nb, L, 0, 1)[:, 0] for v in (W, c, e))
    zero, zm = varying_like((jnp.zeros((), dtype), jnp.zeros((m,), dtype)), W, c, e, w, yw)
    (flat, zsep), back = jax.vmap(_eliminate, in_axes=(None, None, 0, 0))(
        zero, zm, first, interior)

    # The reduced chain on the separators s_0..s_nb. Block b's rows on [s_{b+1}, s_b]
    # (upper triangular) become rows on [s_b, s_{b+1}]; a last empty block closes the chain.
    flat = [_close(v) for v in flat]
    zsep = [_close(v) for v in zsep]
    sep = (w[::L], yw[::L], flat, zsep)
    _, (Tr, zr) = lax.scan(functools.partial(_reduce_step, zero, zm),
                           ((zero, zero, zero), (zm, zm)), sep)
    _, (gs, ss) = lax.scan(_reduce_back, (zm, zm), (Tr, zr), reverse=True)

    gi, si = jax.vmap(_substitute)(back, (gs[1:], ss[1:]), (gs[:-1], ss[:-1]))
    g = jnp.concatenate([gs[:-1, None], gi], axis=1).reshape(nb * L, m)
    slope = jnp.concatenate([ss[:-1, None], si], axis=1).reshape(nb * L, m)
    g = jnp.concatenate([g, gs[-1:]])[:n]
    slope = jnp.concatenate([slope, ss[-1:]])[:n]
    return g, slope
