"""The square-root information smoother (Paige & Saunders 1977): a forward sweep of Givens
rotations triangularises the knot-state least-squares problem knot by knot, a backward sweep
substitutes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Bool, Float

from .._vma import varying_like
from ._lsq import givens, interval_rows, safe_inv

__all__ = ["sris", "sris_step", "pinned_step", "step"]


def sris_step(carry, rows):
    """Absorb knot i's rows into the square-root information of its state x_i = (g_i, s_i).

    The carry is the upper triangle [[P, Qc], [0, Rr]] of the information on x_i from the
    knots before it. Rows: the observation [w_i, 0 | w_i y_i] and the two interval rows
    [W, c, -W, c | 0] and [0, -e, 0, e | 0] on (x_i, x_{i+1}). Six Givens rotations leave
    two rows that give x_i from x_{i+1} and a new upper triangle on x_{i+1}. Returns the new
    carry and the linear maps from (Z1, Z2, w_i y_i) -- the carried right-hand sides and
    the observation's -- to the next carried right-hand sides and to the back-substitution
    x_i = V_i - B_i x_{i+1}, and the inverse of x_i's triangle [[T00, T01], [0, T11]] as
    (1/T00, T01/T00, 1/T11) (the covariances of ``_posterior``; unused by the fit).
    """
    P, Qc, Rr = carry
    w, W, c, e = rows
    c1, s1, P1 = givens(P, w)  # the observation into the first carried row
    Qa, oQ = c1 * Qc, -s1 * Qc
    c2, s2, R1 = givens(Rr, oQ)  # its remainder into the second (then discarded)
    c3, s3, T00 = givens(P1, W)  # the first interval row into the first row
    T01, T02, T03 = c3 * Qa + s3 * c, -s3 * W, s3 * c
    a31, a32, a33 = c3 * c - s3 * Qa, -c3 * W, c3 * c
    c4, s4, R2 = givens(R1, a31)  # its remainder into the second row
    r12, r13 = s4 * a32, s4 * a33
    b32, b33 = c4 * a32, c4 * a33
    c5, s5, T11 = givens(R2, -e)  # the second interval row into the second row
    T12, T13 = c5 * r12, c5 * r13 + s5 * e
    b42, b43 = -s5 * r12, c5 * e - s5 * r13
    c6, s6, Pn = givens(b32, b42)  # what is left on x_{i+1}: the next carry
    Qn, Rn = c6 * b33 + s6 * b43, c6 * b43 - s6 * b33

    # Right-hand sides as coefficients on (Z1, Z2, w_i y_i). None is a zero coefficient.
    z2a = (-s2 * s1, c2, s2 * c1)
    u0 = (c3 * c1, None, c3 * s1)
    r1z = (c4 * z2a[0] - s4 * s3 * c1, c4 * c2, c4 * z2a[2] - s4 * s3 * s1)
    b3z = (-c4 * s3 * c1 - s4 * z2a[0], -s4 * c2, -c4 * s3 * s1 - s4 * z2a[2])
    z1n = tuple(c6 * u - s6 * s5 * v for u, v in zip(b3z, r1z))
    z2n = tuple(-s6 * u - c6 * s5 * v for u, v in zip(b3z, r1z))
    # Back substitution: s_i = (U1 - T12 g' - T13 s') / T11, then g_i from the first row.
    i00, i11 = safe_inv(T00), safe_inv(T11)
    A01 = i00 * T01
    A12, A13 = i11 * T12, i11 * T13
    v1 = tuple(i11 * c5 * v for v in r1z)
    v0 = (i00 * u0[0] - A01 * v1[0], -A01 * v1[1], i00 * u0[2] - A01 * v1[2])
    B = (i00 * T02 - A01 * A12, i00 * T03 - A01 * A13, A12, A13)
    return (Pn, Qn, Rn), (z1n, z2n, v0, v1, B, (i00, A01, i11))


def pinned_step(carry, rows):
    """``sris_step`` for a knot whose value is known, g_i = y_i (an interpolated survivor):
    the carried triangle and the interval rows then inform its slope s_i and x_{i+1} only.
    The carried rows [P, Qc | Z1] and [0, Rr | Z2] become rows on s_i, [Qc | Z1 - P y_i] and
    [Rr | Z2], merged into one; the interval rows, with g_i substituted, are absorbed into
    it, and what is left on x_{i+1} is the next carry. Returns what ``sris_step`` returns,
    with the back substitution g_i = y_i (B's value row 0) and the triangle's inverse as
    (0, 0, 1/T11); ``rows`` has no observation weight (the value is exact)."""
    P, Qc, Rr = carry
    W, c, e = rows
    c0, s0, p = givens(Rr, Qc)  # the carried rows, on s_i alone
    c2, s2, p2 = givens(p, c)  # interval row [c | -W, c | -W y_i] on (s_i | g', s')
    ra2, ra3 = -c2 * W, c2 * c
    c3, s3, T11 = givens(p2, -e)  # interval row [-e | 0, e | 0]
    T12, T13 = -c3 * s2 * W, c3 * s2 * c + s3 * e
    rb2, rb3 = s3 * s2 * W, c3 * e - s3 * s2 * c
    c4, s4, Pn = givens(ra2, rb2)  # what is left on x_{i+1}: the next carry
    Qn, Rn = c4 * ra3 + s4 * rb3, c4 * rb3 - s4 * ra3

    # Right-hand sides as coefficients on (Z1, Z2, y_i), as in ``sris_step``.
    zp = (s0, c0, -s0 * P)
    r1z = (c2 * zp[0], c2 * zp[1], c2 * zp[2] - s2 * W)
    raz = (-s2 * zp[0], -s2 * zp[1], -s2 * zp[2] - c2 * W)
    rbz = tuple(-s3 * v for v in r1z)
    z1n = tuple(c4 * u + s4 * v for u, v in zip(raz, rbz))
    z2n = tuple(c4 * v - s4 * u for u, v in zip(raz, rbz))
    i11 = safe_inv(T11)
    zero, one = jnp.zeros_like(i11), jnp.ones_like(i11)
    v1 = tuple(i11 * c3 * v for v in r1z)
    B = (zero, zero, i11 * T12, i11 * T13)
    return (Pn, Qn, Rn), (z1n, z2n, (zero, zero, one), v1, B, (zero, zero, i11))


def step(carry, rows, pin):
    """One knot of the forward sweep, free (``sris_step``) or, where ``pin`` is set, with
    its value known (``pinned_step``): both are computed and one is kept, so that one
    compiled sweep serves smoothing and interpolation (lam = 0) alike. ``rows`` as for
    ``sris_step``; a pinned knot's observation weight is not used."""
    free = sris_step(carry, rows)
    fixed = pinned_step(carry, rows[1:])

    return jax.tree.map(lambda u, v: jnp.where(pin, u, v), fixed, free)


def _lin(coef, Z1, Z2, y):
    """coef[0] Z1 + coef[1] Z2 + coef[2] y, where a None coefficient is zero."""
    out = coef[0] * Z1 + coef[2] * y
    return out if coef[1] is None else out + coef[1] * Z2


def _forward(carry, inputs):
    """One knot of the forward sweep, applied to the m columns."""
    state, Z1, Z2 = carry
    w, W, c, e, y, pin = inputs
    state, (z1c, z2c, v0c, v1c, B, _) = step(state, (w, W, c, e), pin)
    out = (B, _lin(v0c, Z1, Z2, y), _lin(v1c, Z1, Z2, y))
    return (state, _lin(z1c, Z1, Z2, y), _lin(z2c, Z1, Z2, y)), out


def _backward(carry, inputs):
    """One knot of the backward sweep: x_i = V_i - B_i x_{i+1}."""
    g_next, s_next = carry
    B, v0, v1 = inputs
    g = v0 - B[0] * g_next - B[1] * s_next
    s = v1 - B[2] * g_next - B[3] * s_next
    return (g, s), (g, s)


def sris(
    h: Float[Array, " n-1"], yw: Float[Array, "n m"], w: Float[Array, " n"], a: Float[Array, ""],
    pin: Bool[Array, " n"] | None = None,
) -> tuple[Float[Array, "n m"], Float[Array, "n m"]]:
    """Knot values and slopes by the square-root information smoother: one sequential sweep
    each way. ``h`` are the knot spacings (``_lsq.spacings``), ``w`` the
    observation weights (square roots), ``yw = w y``, ``a > 0`` the bending rows' weight.
    ``pin`` marks knots whose value is known exactly, g_i = yw_i (interpolation: lam = 0,
    the survivors pinned, any ``a > 0`` since only the bending energy is then minimised);
    their ``w`` is not used."""
    m = yw.shape[1]
    dtype = yw.dtype
    W, c, e = interval_rows(h, a)
    pin = jnp.zeros(w.shape, bool) if pin is None else pin
    z0, zm = varying_like((jnp.zeros((), dtype), jnp.zeros((m,), dtype)), w, W, c, e, yw, pin)
    _, (B, V0, V1) = lax.scan(_forward, ((z0, z0, z0), zm, zm), (w, W, c, e, yw, pin))
    _, (g, slope) = lax.scan(_backward, (zm, zm), (B, V0, V1), reverse=True)
    return g, slope
