"""The smoothing spline's posterior variances: the fit read as a Gaussian-process posterior.

The natural cubic smoothing spline is the posterior mean of f under the prior
f(t) = b0 + b1 t + tau W2(t) (W2 the integrated Wiener process, (b0, b1) diffuse) from
observations y_i = f(t_i) + noise of variance sigma^2, with a = |F| lam = sigma^2 / tau^2
(Kimeldorf & Wahba 1970; Wahba 1983). Its knot states x_i = (f(t_i), f'(t_i)) are a Markov
chain whose transition's negative log-density is the Hermite bending energy of the interval
(the rows of ``_lsq.interval_rows``), so the least-squares problem of the smoothers is the
negative log-posterior of the states, and its square-root information R (R^T R = A^T A) gives
their posterior covariance sigma^2 (A^T A)^-1 = R^-1 R^-T. R is block upper bidiagonal, so the
diagonal blocks Sigma_i and the neighbour blocks Cov(x_i, x_{i+1}) follow from one backward
sweep (x_i = V_i - B_i x_{i+1}, with V_i's noise independent of x_{i+1}):

    Sigma_i = D_i + B_i Sigma_{i+1} B_i^T,    Cov(x_i, x_{i+1}) = -B_i Sigma_{i+1},

D_i = T_i^-1 T_i^-T for x_i's own triangle T_i. Between knots, f given both states is cubic
Hermite in them plus an independent bridge of variance tau^2 u^3 (h - u)^3 / (3 h^3) at offset
u in an interval of length h; outside the knots, linear in the end state plus tau^2 d^3 / 3 at
distance d. At lam = 0 (interpolation, sigma = 0) the survivors' values are known exactly: a
survivor's step then keeps only its slope as unknown ("pinned"), and the covariance is that of
the limit sigma -> 0, the squared power function of the kernel for the survivor set.

Everything here is in units of tau^2 (``variance_at`` returns the squared power function at
lam = 0); ``scale`` estimates tau^2 per output column by restricted maximum likelihood.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Bool, Float

from .._vma import varying_like
from ._hermite import take
from ._lsq import interval_rows
from ._sris import step

__all__ = ["state_covariances", "variance_at", "scale"]


def _forward(carry, inputs):
    w, W, c, e, pin = inputs
    carry, (*_, B, inverse) = step(carry, (w, W, c, e), pin)
    return carry, (B, inverse)


def _backward(carry, inputs):
    gg1, gs1, ss1 = carry  # Sigma_{i+1}
    (b0, b1, b2, b3), (i00, A01, i11) = inputs
    m00, m01 = b0 * gg1 + b1 * gs1, b0 * gs1 + b1 * ss1  # B Sigma_{i+1}
    m10, m11 = b2 * gg1 + b3 * gs1, b2 * gs1 + b3 * ss1
    v11 = i11 * i11
    gg = i00 * i00 + A01 * A01 * v11 + m00 * b0 + m01 * b1
    gs = -A01 * v11 + m00 * b2 + m01 * b3
    ss = v11 + m10 * b2 + m11 * b3
    return (gg, gs, ss), ((gg, gs, ss), (-m00, -m01, -m10, -m11))


def state_covariances(
    h: Float[Array, " n-1"], alive: Bool[Array, " n"], a: Float[Array, ""]
) -> tuple[Float[Array, "n 3"], Float[Array, "n 4"]]:
    """Posterior covariances of the knot states in units of tau^2: per knot Sigma_i as
    (gg, gs, ss) and Cov(x_i, x_{i+1}) as (gg', gs', sg', ss') (0 for the last knot).

    ``h``: the knot spacings (``_lsq.spacings``), ``alive``: the survivors (two at least),
    ``a = |F| lam``: sigma^2 / tau^2, 0 for interpolation (the survivors' values pinned).
    One forward and one backward sweep of n steps."""
    dtype = h.dtype
    smoothing = a > 0
    W, c, e = interval_rows(h, jnp.where(smoothing, a, 1.0).astype(dtype))
    w = jnp.where(smoothing, alive, False).astype(dtype)
    pin = alive & ~smoothing
    z0 = varying_like(jnp.zeros((), dtype), w, W, c, e, pin)
    _, (B, inverse) = lax.scan(_forward, (z0, z0, z0), (w, W, c, e, pin))
    _, (sigma, cross) = lax.scan(_backward, (z0, z0, z0), (B, inverse), reverse=True)
    # Rows of weight 1 and bending rows of weight a give sigma^2 (A^T A)^-1 with sigma = 1,
    # tau^2 = 1 / a: a (A^T A)^-1 in units of tau^2. Pinned rows are in tau^2 units already.
    unit = jnp.where(smoothing, a, 1.0).astype(dtype)
    return unit * jnp.stack(sigma, -1), unit * jnp.stack(cross, -1)


def variance_at(
    t: Float[Array, " n"], sigma: Float[Array, "n 3"], cross: Float[Array, "n 4"],
    x: Float[Array, " E"],
) -> Float[Array, " E"]:
    """Posterior variance of f at ``x`` in units of tau^2, from ``state_covariances``: the
    Hermite form of the two neighbouring states plus the bridge between them; linear in the
    end state plus tau^2 d^3 / 3 outside the knots. ``t`` and ``x`` are bracketed in their
    own precision, offsets cast to the covariances' dtype."""
    dtype = sigma.dtype
    n = t.shape[0]
    j = jnp.clip(jnp.searchsorted(t, x, side="right") - 1, 0, n - 2)
    t0 = take(t, j)
    h = (take(t, j + 1) - t0).astype(dtype)
    u = (x - t0).astype(dtype)
    U = u / jnp.where(h > 0, h, 1.0)
    V = 1.0 - U
    c0, c1 = V * V * (1.0 + 2.0 * U), h * U * V * V  # Hermite basis on (g0, s0, g1, s1)
    c2, c3 = U * U * (1.0 + 2.0 * V), -h * U * U * V
    s0, s1, cr = take(sigma, j), take(sigma, j + 1), take(cross, j)
    inside = (c0 * c0 * s0[:, 0] + 2 * c0 * c1 * s0[:, 1] + c1 * c1 * s0[:, 2]
              + c2 * c2 * s1[:, 0] + 2 * c2 * c3 * s1[:, 1] + c3 * c3 * s1[:, 2]
              + 2 * (c0 * c2 * cr[:, 0] + c0 * c3 * cr[:, 1] + c1 * c2 * cr[:, 2]
                     + c1 * c3 * cr[:, 3])
              + h ** 3 * (U * V) ** 3 / 3.0)

    def outside(end, d):  # linear from the end state, plus the process beyond it
        S = sigma[end]
        return S[0] + 2 * d * S[1] + d * d * S[2] + jnp.abs(d) ** 3 / 3.0

    left = outside(0, (x - t[0]).astype(dtype))
    right = outside(n - 1, (x - t[-1]).astype(dtype))
    var = jnp.where(x < t[0], left, jnp.where(x > t[-1], right, inside))
    return jnp.maximum(var, 0.0)


def scale(
    h: Float[Array, " n-1"], y: Float[Array, "n m"], g: Float[Array, "n m"],
    slope: Float[Array, "n m"], alive: Bool[Array, " n"], a: Float[Array, ""],
    tied: Bool[Array, " n-1"] | None = None,
) -> Float[Array, " m"]:
    """tau^2 per output column by restricted maximum likelihood, given a = sigma^2 / tau^2:
    (RSS / a + E) / (|F| - 2), with E the bending energy of the fit (g, slope) and RSS its
    residual on the survivors (Wahba 1990, section 4.8); at a = 0, E / (|F| - 2). A residual
    r_i = y_i - g_i cancels to rounding where the fit nearly interpolates (a h^-3 small):
    there it is taken from the normal equations, r_i = a (J^T J x)_{g_i}, whose rounding is
    a W^2 eps |g| against eps |y| (W^2 = 12 / h^3), whichever is smaller per survivor. inf
    with fewer than three survivors (no degree of freedom left). ``tied``: the intervals
    between coinciding knots (``_lsq.spacings``' ties), which hold no energy: their stiff
    rows would turn the rounding of g into energy (a 1e7 times larger scale at n = 19)."""
    dtype = g.dtype
    W, c, e = (v[:-1, None] for v in interval_rows(h, jnp.ones((), dtype)))
    if tied is not None:
        W, c, e = (jnp.where(tied[:, None], jnp.zeros((), dtype), v) for v in (W, c, e))
    bend = W * (g[:-1] - g[1:]) + c * (slope[:-1] + slope[1:])  # (n-1, m)
    twist = e * (slope[1:] - slope[:-1])
    energy = jnp.sum(bend * bend + twist * twist, axis=0)
    zero = jnp.zeros_like(bend[:1])
    normal = jnp.concatenate([W * bend, zero]) - jnp.concatenate([zero, W * bend])
    stiff = jnp.concatenate([W * W, zero[:, :1]]) + jnp.concatenate([zero[:, :1], W * W])
    near = (a * stiff < 1.0)[:, 0]  # where the normal equations round less
    root_a = jnp.sqrt(jnp.where(a > 0, a, 1.0))  # a = 0 masked below (a finite gradient)
    residual_a = jnp.where(near[:, None], normal * root_a, (y - g) / root_a)
    rss_a = jnp.where(a > 0, jnp.sum(jnp.where(alive[:, None], residual_a ** 2, 0.0), axis=0), 0.0)
    dof = jnp.sum(alive.astype(jnp.int32)) - 2
    return jnp.where(dof > 0, (rss_a + energy) / jnp.maximum(dof, 1).astype(dtype), jnp.inf)
