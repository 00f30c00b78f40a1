"""Natural cubic smoothing splines as linear smoothers, in O(n) with a survivor mask.

Convention (mean form): for knots t_1 < ... < t_n, values y_i and the survivor set F,
the fitted curve minimises

    (1/|F|) sum_{i in F} (y_i - u(t_i))^2 + lam * integral u''(t)^2 dt,

over the second-order Sobolev space. ``lam = 0`` gives the natural cubic interpolating
spline through the survivors. The minimiser is a natural cubic spline with knots at the
survivors, linear outside [min t_F, max t_F]. scipy's ``make_smoothing_spline`` uses the
sum form: its ``lam`` is ``|F| * lam`` here.

The fit is represented by the values g_i and slopes s_i of the spline at every knot,
survivor or not (cubic Hermite form): a natural spline with knots at the survivors is also
a C^1 piecewise cubic on the finer grid of all knots, so one compiled function and one set
of knots serve every survivor mask, and evaluation points are bracketed once for all masks.
With a = |F| lam, the objective is the weighted least-squares problem over the knot states
x_i = (g_i, s_i)

    sum_i w_i (y_i - g_i)^2 + a sum_i [3 (s_i + s_{i+1} - 2 (g_{i+1} - g_i)/h_i)^2
                                       + (s_{i+1} - s_i)^2] / h_i,

with w_i = 1 for survivors and 0 for stragglers; the second sum is the exact bending
energy of the cubic Hermite piece on each interval, so the minimiser over C^1 piecewise
cubics is the smoothing spline itself. The problem is block bidiagonal. Solvers:

- ``"sris"`` (square-root information smoother): a forward sweep of Givens rotations
  triangularises the problem knot by knot and a backward sweep substitutes (Paige &
  Saunders 1977; the square-root form of the Kalman smoother of the integrated Wiener
  process). Orthogonal transformations of the rows themselves, never the normal equations:
  accurate to a few units of round-off at any n and lam, in float32 too. Two sequential
  sweeps of n steps: the cheapest per knot, so the best under ``vmap`` over many masks.
- ``"blocked"``: the same least-squares problem and the same kind of rotations in a
  two-level order. Blocks of about sqrt(n) knots (4 sqrt(n) in float32) eliminate their
  interiors all at once (vectorised), a short sweep over the block ends solves for them,
  and the blocks then substitute back: O(sqrt(n)) sequential steps instead of O(n), 4x
  faster than ``"sris"`` for one fit at n = 100,000. The price: neighbouring knots are no
  longer solved from each other, so where knots crowd (Chebyshev ends, spacing ~ 1/n^2)
  the slopes lose about eps / h_min relative and the values eps times the spread of
  spacings in a block: measured against ``"sris"`` in float64, 1e-12 relative in the
  decoded values at n = 10,000 and 1e-11 at n = 100,000. In float32 the rounding at the
  block ends grows with the number of blocks, hence the longer blocks there: a float32
  decode of white noise from float64 points is then as close to the float64 one as
  ``"sris"``'s (1.7e-5 at n = 10,000, 1.4e-4 at n = 100,000, against 1.3e-5 and 1.2e-4;
  6.0e-4 with sqrt(n) blocks) at the same speed. Twice the arithmetic of ``"sris"``, so
  it also loses under ``vmap`` over many masks.
- ``"parallel"``: the same problem and rotations in odd-even order (orthogonal cyclic
  reduction, ``_parallel``): every level eliminates every other remaining knot at once,
  ceil(log2(n - 1)) levels each way, no loop whose length grows with n; two passes of
  iterative refinement on the augmented system (the least-squares residual carried beside
  the solution, Bjorck 1967) restore the digits that eliminating far-apart neighbours and
  a large least-squares residual (noisy data) cost. Measured against ``"sris"`` in
  float64: 1e-14 relative in the decoded values at n = 10,000, 3e-14 at n = 100,000; in
  float32 (white-noise decode from float64 points, seeds 0-4) within 1.9e-7 ... 3.6e-7 of
  the float64 decode at n = 10,000 and 6.9e-7 ... 9.3e-7 at n = 100,000, below the
  sequential smoother's own float32 error (one pass of refinement as for a square
  system left 4.5e-5 and 8.9e-4). About twenty
  times the arithmetic of ``"sris"``: the choice on accelerators, where a sequential step
  costs a kernel launch, not on a CPU. With lam = 0 it solves Reinsch's system by block
  cyclic reduction, so no part of it loops over the knots.
- ``"reinsch"`` (Green & Silverman 1994, section 2.3), on the survivors compacted to the
  front of a static-size buffer: the second derivatives solve the pentadiagonal normal
  equations (R + a Q^T Q) gamma = Q^T y and g = y - a Q gamma. Least work, exact for
  interpolation (a = 0, where the system is R alone, well conditioned); but for a > 0 the
  matrix has condition number ~ a / h_min^4, and R is rounded away when a/h_min^3
  approaches 1/eps: 1e-7 relative error at n = 2,000 in float64, 1e-2 at n = 100,000 with
  lam = 1e-4, and meaningless results in float32 from n ~ 1,000.

Interpolation (lam = 0) weighs the bending rows by nothing: ``"sris"`` then pins the
survivors' values (g_i = y_i, only the slopes and the stragglers' states unknown) and
minimises the bending energy alone, in the same sweep, so one compiled solver serves every
lam; ``"blocked"`` and ``"parallel"`` hand interpolation to Reinsch's system, behind a
``lax.cond`` on lam that compiles both. Pinned interpolation by the sweep matches Reinsch's
to round-off (float64: 5e-16 relative against scipy's ``CubicSpline`` from n = 5 to
10,000), compiles a LeTCC Monte Carlo program about 1 s (30%) faster and runs it as fast
under ``vmap`` over masks, but a single jitted decode at lam = 0 is 6x slower (2.3 ms
against 0.35 ms at n = 1,000 in float32); ``"auto"`` on a CPU takes it up to
``SWEEP_MAX_N`` knots, where compiling dominates. ``"auto"`` (the default) takes
``"parallel"`` for lam > 0 on an accelerator (GPU, TPU); on a CPU ``"sris"``, and
``"blocked"`` from ``BLOCKED_MIN_N`` knots on, in float32 as in float64, where one sequential sweep would take tens of
milliseconds (in float32 at n = 100,000: 57 ms against 167 ms on a busy 2-core CPU;
``"blocked"`` is already the faster from about 1,000 knots, but below ``BLOCKED_MIN_N``
one sweep is fast enough and ``"sris"`` slightly the more accurate).

Precision of the points. Knots and evaluation points may come in a finer precision than
the values (the schemes' float64 nodes with float32 data): every solver then receives the
spacings h_i = t_{i+1} - t_i, computed in the points' precision and only then rounded to
the values' dtype, and evaluation brackets x and takes its offset x - t_j in the points'
precision too. Relative rounding of h and of the offsets moves a decode by ~1e-9, where
rounding the points themselves to float32 moved it by 2.1e-2 at n = 100,000 (Chebyshev
spacing near +-1, ~5e-10, is below float32 resolution there, and workers merged). With
jax_enable_x64 off the points are float32 to begin with; the spacings of float32 points
are exact, but those points already merged where the float64 ones would not have.

Modules: ``_hermite`` (the fit's form, ``SplineFit``, and ``evaluate``), ``_lsq`` (the
spacings, interval rows and Givens rotations the smoothers share), ``_sris``, ``_blocked``,
``_parallel`` and ``_reinsch`` (one solver each); this one dispatches between them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Bool, Float

from ._blocked import sris_blocked
from ._hermite import SplineFit, evaluate, finer
from ._lsq import spacings, tied, to_last_tied
from ._parallel import sris_parallel, state_covariances_parallel
from ._posterior import scale as _reml_scale
from ._posterior import state_covariances, variance_at
from ._reinsch import reinsch_all
from ._sris import sris

__all__ = ["SplineFit", "fit", "evaluate", "finer", "smooth", "posterior", "gcv_score",
           "gcv_terms", "power_of_two_scale", "column_scale", "from_unit", "METHODS",
           "BLOCKED_MIN_N", "SWEEP_MAX_N"]

METHODS = ("auto", "sris", "blocked", "parallel", "reinsch")

#: From this many knots on, ``"auto"`` runs the smoother in its two-level form on a CPU.
BLOCKED_MIN_N = 20_000

#: Up to this many knots, ``"auto"`` on a CPU interpolates (lam = 0) with the smoother's own
#: sweep, the survivors' values pinned, instead of Reinsch's: one solver to compile instead
#: of two, about 1 s less per LeTCC program, for a slower single decode at lam = 0.
SWEEP_MAX_N = 2048


def fit(
    t: Float[Array, " n"],
    y: Float[Array, "n m"],
    alive: Bool[Array, " n"],
    lam: Float[Array, ""],
    method: str = "auto",
) -> SplineFit:
    """Fit the smoothing spline to the rows of ``y`` whose ``alive`` flag is set.

    Rows that are not alive are ignored entirely (their values may be anything, NaN
    included). The fit is returned on all of ``t``: values and slopes of the spline at
    every knot, survivor or not. ``method`` is one of ``METHODS`` (see the module
    docstring). The knots ``t`` may be in a finer precision than ``y`` (float64 knots,
    float32 values): the spacings are computed in it and only then cast to the dtype of
    ``y``, in which the solver works; the fit keeps ``t`` as given.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    n = y.shape[0]
    dtype = y.dtype
    count = jnp.sum(alive.astype(jnp.int32), dtype=jnp.int32)
    y0 = jnp.where(alive[:, None], y, 0.0)
    if n < 2:
        return SplineFit(t, y0, jnp.zeros_like(y0))
    ok = count >= 2
    a = count.astype(dtype) * lam
    # "parallel" keeps every part free of sequential loops over the knots, lam = 0 too.
    banded = "cr" if _loop_free(method) else "auto"
    if method == "reinsch":
        g, slope = reinsch_all(t, y0, alive, a)
    else:
        h = spacings(t, dtype)
        smoother = {"sris": sris, "blocked": sris_blocked, "parallel": sris_parallel}.get(
            method) or _auto_smoother(n)
        # With fewer than two survivors the curve is a constant (or zero): solve a
        # well-posed stand-in problem instead, so that no branch ever sees a singular one.
        w = jnp.where(ok, alive, True).astype(dtype)
        if method == "sris" or (method == "auto" and smoother is sris and n <= SWEEP_MAX_N):
            # One sweep for lam = 0 too: the survivors' values pinned, the bending energy
            # (rows of weight 1) minimised; no second solver to compile.
            # A survivor sits last among the knots tied to it (``to_last_tied``).
            moved, y_moved = to_last_tied(t, alive, y0)
            w = jnp.where(ok, moved, True).astype(dtype)
            pin = ok & moved & (lam <= 0)
            a_w = jnp.where(ok & (lam > 0), a, 1.0)
            g, slope = sris(h, w[:, None] * y_moved, w, a_w, pin)  # w = 1 where pinned
        else:
            a_w = jnp.where(ok, a, 1.0)
            g, slope = lax.cond(
                lam > 0,
                lambda: smoother(h, w[:, None] * y0, w, a_w),
                lambda: reinsch_all(t, y0, alive, a, banded),
            )
    single = jnp.sum(y0, axis=0)  # the only survivor's row when count == 1, else unused
    g = jnp.where(ok, g, jnp.where(count == 1, single, 0.0))
    slope = jnp.where(ok, slope, 0.0)
    return SplineFit(t, g, slope)


def _loop_free(method: str) -> bool:
    """Whether a fit by ``method`` avoids loops over the knots: ``"parallel"``, and
    ``"auto"`` on an accelerator, where every sequential step costs a kernel launch."""
    return method == "parallel" or (method == "auto" and jax.default_backend() != "cpu")


def _auto_smoother(n: int):
    """``"auto"``'s smoother for lam > 0: on an accelerator the parallel one; on a CPU the
    sequential sweep, from ``BLOCKED_MIN_N`` knots on in its two-level form."""
    if _loop_free("auto"):
        return sris_parallel
    return sris_blocked if n >= BLOCKED_MIN_N else sris


def smooth(
    t: Float[Array, " n"],
    y: Float[Array, "n m"],
    alive: Bool[Array, " n"],
    lam: Float[Array, ""],
    x: Float[Array, " E"],
    method: str = "auto",
) -> Float[Array, "E m"]:
    """Fit the smoothing spline to the alive rows of ``(t, y)`` and evaluate it at ``x``.

    Mean-form ``lam`` (0 interpolates); the curve is linear outside the survivors' range.
    ``method``: ``"auto"`` (on a CPU the square-root information smoother, and Reinsch
    for lam = 0 above ``SWEEP_MAX_N`` knots), ``"sris"``, ``"blocked"``, ``"parallel"`` or
    ``"reinsch"``; see the module ``letcc_jax.core.spline``.

    The knots ``t`` and points ``x`` may be in a finer precision than ``y`` (float64 points,
    float32 values): they are bracketed and differenced in it, and only spacings and
    offsets are cast to the dtype of ``y``, so points that float32 cannot tell apart (the
    Chebyshev ends at N = 10^5) keep their float64 spacings.

    Knots and values far from unit scale are first scaled by powers of two (exact), and
    lam with them (t -> s t takes lam to lam s^3), so that no intermediate overflows or
    underflows; lam is capped where the fit is the straight line to working precision.
    Each column of values has its own scale (columns never mix), so a column of 1e-30 next
    to one of 1e30 is fitted as it would be alone. Knots within [2^-10, 2^10] and columns
    within [2^-20, 2^20] in magnitude run unscaled.
    """
    t, x, s, v, lam = _unit_scale(t, y, alive, lam, x)
    out = evaluate(fit(t, y * v, alive, lam, method), x,
                   search="scan_unrolled" if _loop_free(method) else "scan")
    return from_unit(out, v)


#: How far (in units of eps, relative) a fit at unit scale may stray above the largest value
#: of the dtype by round-off alone: 8x the most measured on constant data at the dtype's
#: largest value (16 eps, Reinsch's system at lam = 1; 1 to 4 eps for the smoothers).
EDGE_EPS = 128


def column_scale(y: Float[Array, "n m"], alive: Bool[Array, " n"]) -> Float[Array, " m"]:
    """Per column of ``y``, the power of two that takes its largest finite value among the
    ``alive`` rows to [1, 2) (``power_of_two_scale``; 1 for columns within [2^-20, 2^20]).
    One scale per column: the columns of a linear smoother or code never mix, and one
    shared scale would flush a column far smaller than the largest to zero (1e-30 next to
    1e30 in float32). Constant under differentiation (the maps it scales are linear)."""
    rows = alive[:, None] & jnp.isfinite(y)
    magnitude = jnp.max(jnp.where(rows, jnp.abs(y), jnp.zeros((), y.dtype)), axis=0)
    return lax.stop_gradient(power_of_two_scale(magnitude, 20))


def from_unit(out, v):
    """``out / v``: a fit at unit scale back in the caller's units. A column whose values
    reach the largest finite number of the dtype (a constant 3.4e38 in float32) is fitted a
    few units of round-off from them, and the ones above would become inf: values beyond the
    largest finite number by at most ``EDGE_EPS`` eps (round-off) are that number; values
    further beyond (the curve overshoots the data) still overflow to inf."""
    info = jnp.finfo(out.dtype)
    limit = info.max * v  # exact (v <= 1 where it matters; inf where v > 1: never reached)
    edge = (jnp.abs(out) > limit) & (jnp.abs(out) <= limit * (1 + EDGE_EPS * info.eps))
    return jnp.where(edge, jnp.sign(out) * limit, out) / v


def _unit_scale(t, y, alive, lam, x):
    """``smooth``'s scaling, shared with ``posterior``: the knots and points in their finer
    precision, times s; the scales s, of the knots, and v, (m,) of the alive values per
    column (powers of two); lam in y's dtype for the scaled knots (lam s^3, capped)."""
    dtype = y.dtype
    fine = finer(t.dtype, x.dtype)  # the points' precision
    t, x = t.astype(fine), x.astype(fine)
    s = power_of_two_scale(jnp.max(jnp.abs(t)), 10)
    v = column_scale(y, alive)
    lam = jnp.asarray(lam, dtype)
    big = finer(fine, dtype)  # s^3 may leave the range of y's dtype
    cap = LAM_MAX_EPS / float(jnp.finfo(dtype).eps)
    scaled = jnp.minimum(lam.astype(big) * s.astype(big) ** 3, cap)
    return t * s, x * s, s, v, jnp.where(lam > 0, scaled.astype(dtype), lam)


def posterior(
    t: Float[Array, " n"],
    y: Float[Array, "n m"],
    alive: Bool[Array, " n"],
    lam: Float[Array, ""],
    x: Float[Array, " E"],
    method: str = "auto",
) -> tuple[Float[Array, "E m"], Float[Array, " E"], Float[Array, " m"]]:
    """``smooth`` with its Gaussian-process reading (module ``_posterior``): the fit at
    ``x``, the posterior variance there per unit of the prior's scale tau^2 (at lam = 0 the
    squared power function of the survivor set), and tau per column estimated by
    restricted maximum likelihood; all in the units of ``t`` and ``y``. The posterior
    variance of f(x) in column c is ``variance * tau[c]^2``; with lam > 0 the noise variance
    of an observation is ``|F| lam tau[c]^2``. Scaled as ``smooth`` is. The covariances come
    from the sequential sweep, or, where ``method`` keeps every part free of loops over the
    knots ("parallel", and "auto" on an accelerator), from cyclic reduction (O(log n)
    depth)."""
    dtype = y.dtype
    ts, xs, s, v, lam = _unit_scale(t, y, alive, lam, x)
    yv = jnp.where(alive[:, None], y, 0.0) * v
    spline = fit(ts, yv, alive, lam, method)
    mean = from_unit(evaluate(spline, xs, search="scan_unrolled" if _loop_free(method)
                               else "scan"), v)
    h = spacings(ts, dtype)
    a = jnp.sum(alive.astype(jnp.int32)).astype(dtype) * lam
    covariances = state_covariances_parallel if _loop_free(method) else state_covariances
    sigma, cross = covariances(h, to_last_tied(ts, alive), a)
    variance = variance_at(ts, sigma, cross, xs)  # in scaled units: t' = s t, y' = v y
    tau2 = _reml_scale(h, yv, spline.g, spline.slope, alive, a, tied=tied(ts))
    # Back to the caller's units: variance ~ t^3 per tau^2, tau ~ y / t^(3/2); tau rather
    # than tau^2, which leaves the dtype's range for columns beyond its square root.
    s3 = s.astype(dtype) ** 3
    return mean, variance / s3, jnp.sqrt(tau2 * s3) / v.astype(dtype)


#: Mean-form lam beyond which (times eps) the fit on unit-scale knots is the straight line:
#: the cap is LAM_MAX_EPS / eps of the dtype.
LAM_MAX_EPS = 1e4


def power_of_two_scale(magnitude, bits: int):
    """2^k with magnitude * 2^k in [1, 2), or 1 when magnitude is within [2^-bits, 2^bits]
    (or 0, or not finite). Multiplying by it is exact: the one scaling rule of every fit
    (``smooth``) and score (``letcc_jax.gcv``) whose data may be far from unit size."""
    dtype = magnitude.dtype
    _, exponent = jnp.frexp(magnitude)
    info = jnp.finfo(dtype)  # a scale that is itself a normal number (no flush to zero)
    power = jnp.clip(1 - exponent, int(info.minexp), int(info.maxexp) - 1)
    scale = jnp.ldexp(jnp.ones((), dtype), power.astype(exponent.dtype))
    usual = (magnitude >= 2.0**-bits) & (magnitude <= 2.0**bits)
    keep = usual | (magnitude == 0) | ~jnp.isfinite(magnitude)
    return jnp.where(keep, jnp.ones((), dtype), scale)


def gcv_score(
    t: Float[Array, " n"],
    y: Float[Array, "n m"],
    alive: Bool[Array, " n"],
    lam: Float[Array, ""],
    method: str = "auto",
) -> Float[Array, ""]:
    """Generalised cross-validation score of the smoothing spline (Craven & Wahba 1979).

    GCV(lam) = (1/|F|) ||y_F - g_F||^2 / (1 - tr(S_lam)/|F|)^2, summed over the m
    columns, where S_lam is the smoother matrix on the survivors. ``method`` is the solver,
    as in ``fit``; the parts of the score are ``gcv_terms``.
    """
    rss, _, dof = gcv_terms(t, y, alive, lam, method)
    nf = jnp.sum(alive).astype(y.dtype)
    return (jnp.sum(rss) / nf) / dof**2


def gcv_terms(
    t: Float[Array, " n"],
    y: Float[Array, "n m"],
    alive: Bool[Array, " n"],
    lam: Float[Array, ""],
    method: str = "auto",
) -> tuple[Float[Array, " m"], Float[Array, " m"], Float[Array, ""]]:
    """The parts of ``gcv_score``: per column the residual sum of squares and its
    sensitivity to the outputs' rounding, and ``1 - tr(S_lam)/|F|``. The trace is computed
    exactly by smoothing the identity, O(n^2): fine for the n of a decoder.

    At small lam the fit nearly interpolates: y - g and 1 - S_jj are small differences of
    numbers of unit size, which lose all but a few digits (relative errors of 1e-2 in
    float32 at lam = 1e-9, n = 10, enough to move GCV's choice when the outputs are merely
    rescaled). There they are read instead from the fit's third derivative, which jumps at
    every survivor by its residual over a = |F| lam (the spline's normal equations); that
    reading errs by about 12 a / h^3 of the other's, so each knot takes the better of the
    two. Where neither is good (crowded knots near the ends, where a smooth curve's
    residuals peak) the residual sum is as uncertain as the outputs' own rounding makes
    it: the sensitivity, ``2 sum_i |((I - S) r)_i| |y_i|``, bounds to first order how much
    a relative change of eps in every output moves it (eps times it; ``letcc_jax.gcv``
    counts scores within that of the least as ties).
    """
    n = t.shape[0]
    dtype = y.dtype
    a = jnp.sum(alive).astype(dtype) * jnp.asarray(lam, dtype)
    h = spacings(t, dtype)

    def residuals(values):
        values = jnp.where(alive[:, None], values, 0.0)
        return jnp.where(alive[:, None], _residuals(fit(t, values, alive, lam, method), values,
                                                    h, a), 0.0)

    r = residuals(y)
    sensitivity = 2.0 * jnp.sum(jnp.abs(residuals(r) * y), axis=0, where=alive[:, None])
    eye = jnp.eye(n, dtype=dtype)  # column j: the response to y_j = 1
    off_diagonal = jnp.diagonal(residuals(eye))
    nf = jnp.sum(alive).astype(dtype)
    return jnp.sum(r**2, axis=0), sensitivity, jnp.sum(off_diagonal) / nf


def _residuals(spline: SplineFit, y, h, a):
    """``y - g`` at every knot, each by the more accurate of two readings (``gcv_terms``):
    the difference itself, or ``a`` times the jump of the fit's third derivative there
    (zero beyond the end knots, where the fit is linear)."""
    g, slope = spline.g, spline.slope
    hc = h[:, None]
    third = 6.0 * (slope[:-1] + slope[1:]) / hc**2 - 12.0 * (g[1:] - g[:-1]) / hc**3
    zero = jnp.zeros_like(g[:1])
    jump = jnp.concatenate([third, zero]) - jnp.concatenate([zero, third])
    inf = jnp.full((1,), jnp.inf, h.dtype)
    near = jnp.minimum(jnp.concatenate([inf, h]), jnp.concatenate([h, inf]))
    # The jump's error is about 12 a / h^3 times eps |y| per knot, the difference's eps |y|.
    return jnp.where((12.0 * a <= near**3)[:, None], a * jump, y - g)
