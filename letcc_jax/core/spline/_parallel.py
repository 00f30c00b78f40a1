"""The square-root information smoother by orthogonal cyclic reduction: O(log n) depth.

The same least-squares problem over the knot states x_i = (g_i, s_i) as ``_sris``, with the
same kind of Givens rotations, eliminated in odd-even order. Each interval i carries a
factor: the rows of the problem on (x_i, x_{i+1}) (knot i's observation and the interval's
two bending rows), triangularised on those four unknowns. One level eliminates every other
knot at once: the two factors that meet at an odd knot x_o are stacked (eight rows on x_o
and its neighbours), rotated to upper-triangular form with x_o first, and split into the two
rows that give x_o from its neighbours and four rows on the neighbours alone, the factor of
the next level. After ceil(log2(n - 1)) levels one factor on the first and the last knot is
left; solving it and substituting back level by level gives every knot.

Every level is one vectorised step over all the knots it eliminates, with no loop whose
length grows with n (the levels are unrolled at trace time): on an accelerator, where every
step of a sequential sweep costs at least one kernel launch, a fit at n = 10^6 takes ~20
levels each way instead of 10^6 steps. Orthogonal transformations of the rows themselves,
never the normal equations. Eliminating a knot from neighbours far apart costs digits where
knots crowd, and a least-squares solve carries an error proportional to the size of the
least-squares residual, which with noisy data is the size of the data: unrefined, a float32
white-noise decode is 6e-5 from the float64 one at n = 10^4. Re-solving for the residual
b - A x (the refinement of a square system) cannot remove that part. So the solve is
refined on the augmented system [I A; A^T 0] [r; x] = [b; 0] (Bjorck 1967), with the
least-squares residual r carried beside x: each pass solves for both corrections through
the one factorization (R^T h = -A^T r, Q^T (b - r - A x), back substitution, and Q applied
back for r), all in the working precision. Each level keeps its orthogonal transformation
as a small matrix (8 x 8 per eliminated knot, 4 x 4 per interval), so the passes are a few
products per level, not a repeat of the rotations. Two passes after the first solve bring
a float32 decode of white noise from float64 points within 1.9e-7 ... 3.6e-7 of the
float64 decode at n = 10^4 and 6.9e-7 ... 9.3e-7 at n = 10^5 (seeds 0-4; the sequential
smoother: 7.5e-6 ... 1.3e-5 and 9.8e-5 ... 1.2e-4), and float64 within 1e-14 and 3e-14
of the sequential smoother (``tests/test_core_spline.py``, ``tests/test_core_parallel.py``).
The factorization (with the identity rotated along to make Q^T) and the three passes cost
about what two plain solves cost before: on a 2-core CPU one fit is about as fast as
``_sris``, slower than ``_blocked``, and compiles longer, so "auto" uses it on
accelerators only (``benchmarks/RESULTS.md``).

Padding knots up to n = 2^L + 1 are tied to the last knot, as in ``_blocked``.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Bool, Float

from .._vma import varying_like
from ._lsq import interval_rows, qr_stacked, safe_inv

__all__ = ["sris_parallel", "state_covariances_parallel", "levels", "REFINEMENTS"]


#: Passes of iterative refinement after the first solve (one loop of fixed length, compiled
#: once). One pass leaves 3e-6 ... 3e-5 at n = 10^5 in float32 (white noise, seeds 0-4),
#: two reach round-off.
REFINEMENTS = 2


def levels(n: int) -> int:
    """Reduction levels for n knots: 2^levels >= n - 1 intervals."""
    return max(1, (n - 2).bit_length())


def _padded_rows(h, w, a, F):
    """The interval rows (W, c, e) of ``interval_rows`` for F intervals and the observation
    weights ``w`` for F + 1 knots, the knots padded past the real ones. Padding knots are
    tied to the last knot (x_{i+1} - x_i = 0: W = 1, c = 0, e = -1), which adds no
    information on the real knots and keeps every state determined."""
    n = w.shape[0]
    pad = F + 1 - n
    W, c, e = interval_rows(h, a)
    tie = jnp.arange(F) >= n - 1
    W = jnp.where(tie, 1.0, jnp.pad(W[:-1], (0, pad)))
    c = jnp.where(tie, 0.0, jnp.pad(c[:-1], (0, pad)))
    e = jnp.where(tie, -1.0, jnp.pad(e[:-1], (0, pad)))
    return W, c, e, jnp.pad(w, (0, pad))


def _interval_factors(w, W, c, e, w_end, W_right=None, transform: bool = True):
    """Level 0: every interval's rows on (x_i, x_{i+1}) = (g_i, s_i, g_{i+1}, s_{i+1}),
    triangularised: shape (F, 4, 4), and the orthogonal transformation that did it, Q^T
    (F, 4, 4), None unless ``transform``. Knot i's observation and the interval's two
    bending rows; the last interval also holds the last knot's observation (weight
    ``w_end``, zero on the other intervals). ``W_right``: the bending row's coefficient on
    g_{i+1} where it is not -W (a known value's column removed,
    ``state_covariances_parallel``)."""
    z = jnp.zeros_like(w)
    W_right = -W if W_right is None else W_right
    coef = [(w, z, z, z), (W, c, W_right, c), (z, -e, z, e), (z, z, w_end, z)]
    eye = jnp.broadcast_to(jnp.eye(4, dtype=w.dtype), w.shape + (4, 4))
    if not transform:
        eye = eye[..., :0]
    rows = [jnp.concatenate([jnp.stack(k, -1), eye[:, i]], -1) for i, k in enumerate(coef)]
    rows = jnp.stack(qr_stacked(rows, [{0}, {0, 1, 2, 3}, {1, 3}, {2}], 4), -2)
    return rows[..., :4], rows[..., 4:] if transform else None


def _level(factor, transform: bool = True):
    """One level: eliminate the knot shared by each consecutive pair of factors.

    ``factor`` (F, 4, 4): upper-triangular rows on (x_left, x_right). Returns the next
    level's factors (F/2, 4, 4); per eliminated knot x_o, its two substitution rows on
    (x_o, x_left, x_right) (F/2, 2, 6); and the level's orthogonal transformation Q^T
    (F/2, 8, 8) of the pair's eight rows (``_level_rhs``), None unless ``transform``.
    """
    L, R = factor[0::2], factor[1::2]
    zero = jnp.zeros(L.shape[:-1] + (2,), L.dtype)
    eye = jnp.broadcast_to(jnp.eye(8, dtype=L.dtype), L.shape[:1] + (8, 8))
    if not transform:
        eye = eye[..., :0]
    # Columns: x_o (g, s), x_left (g, s), x_right (g, s), then the identity that becomes Q^T.
    # L is upper triangular on (x_left, x_o), R on (x_o, x_right).
    Ls = jnp.concatenate([L[..., 2:4], L[..., 0:2], zero, eye[:, :4]], -1)
    Rs = jnp.concatenate([R[..., 0:2], zero, R[..., 2:4], eye[:, 4:]], -1)
    rows = [Ls[:, k] for k in range(4)] + [Rs[:, k] for k in range(4)]
    support = ([{0, 1, 2, 3}, {0, 1, 3}, {0, 1}, {1}]
               + [{0, 1, 4, 5}, {1, 4, 5}, {4, 5}, {5}])
    rows = jnp.stack(qr_stacked(rows, support, 6), -2)
    return rows[:, 2:6, 2:6], rows[:, 0:2, :6], rows[..., 6:] if transform else None


def _apply(M, v):
    """The batch of small matrices ``M`` (P, i, j) times ``v`` (P, j, m), written out as
    products and sums: a batched matmul of tiny matrices is a slow loop on a CPU."""
    return jnp.sum(M[..., None] * v[:, None], axis=2)


def _level_rhs(Qt, v):
    """A level's transformation on right-hand sides ``v`` (F, 4, m) of the factors' rows:
    those of the substitution rows (F/2, 2, m), of the next factors (F/2, 4, m), and of the
    two residual rows that the level drops (F/2, 2, m)."""
    out = _apply(Qt, jnp.concatenate([v[0::2], v[1::2]], 1))
    return out[:, 0:2], out[:, 2:6], out[:, 6:8]


def _level_rhs_undo(Qt, back, nxt, dropped):
    """The inverse of ``_level_rhs``: the factors' right-hand sides (F, 4, m) from those of
    the substitution, next and dropped rows."""
    out = _apply(jnp.swapaxes(Qt, 1, 2), jnp.concatenate([back, nxt, dropped], 1))
    pair = jnp.stack([out[:, 0:4], out[:, 4:8]], 1)
    return pair.reshape((-1,) + pair.shape[2:])


def _solve_top(T, z):
    """Both knots of the last factor from its upper-triangular rows ``T`` (4, 4) and
    right-hand sides ``z`` (4, m): (2, 2, m) as (knot, value/slope, column)."""
    s1 = safe_inv(T[3, 3]) * z[3]
    g1 = safe_inv(T[2, 2]) * (z[2] - T[2, 3] * s1)
    s0 = safe_inv(T[1, 1]) * (z[1] - T[1, 2] * g1 - T[1, 3] * s1)
    g0 = safe_inv(T[0, 0]) * (z[0] - T[0, 1] * s0 - T[0, 2] * g1 - T[0, 3] * s1)
    return jnp.stack([jnp.stack([g0, s0]), jnp.stack([g1, s1])])


def _substitute(back, z, X):
    """The finer level's knots: the known ones ``X`` (P + 1, 2, m) with the eliminated
    ones between them, x_o from its substitution rows ``back`` (P, 2, 6) and their
    right-hand sides ``z`` (P, 2, m)."""
    known = jnp.concatenate([X[:-1], X[1:]], axis=1)  # (P, 4, m): left (g, s), right (g, s)
    r = z - _apply(back[:, :, 2:6], known)
    s = safe_inv(back[:, 1, 1])[:, None] * r[:, 1]
    g = safe_inv(back[:, 0, 0])[:, None] * (r[:, 0] - back[:, 0, 1][:, None] * s)
    body = jnp.stack([X[:-1], jnp.stack([g, s], 1)], 1).reshape((-1,) + X.shape[1:])
    return jnp.concatenate([body, X[-1:]])


def _solve(T, backs, z_top, zs):
    """R x = z: the last factor's two knots, then every level's eliminated knots."""
    X = _solve_top(T, z_top)
    for back, z in zip(reversed(backs), reversed(zs)):
        X = _substitute(back, z, X)
    return X


def _solve_transposed(T, backs, v):
    """R^T z = v, level by level from the finest, for ``v`` (F + 1, 2, m) per knot: z on
    the last factor's rows (4, m) and per level on the substitution rows (P, 2, m)."""
    zs = []
    for back in backs:
        odd = v[1::2]
        z0 = safe_inv(back[:, 0, 0])[:, None] * odd[:, 0]
        z1 = safe_inv(back[:, 1, 1])[:, None] * (odd[:, 1] - back[:, 0, 1][:, None] * z0)
        z = jnp.stack([z0, z1], 1)
        zs.append(z)
        # The eliminated knot's rows also hold its neighbours: v_nb -= R_{o,nb}^T z_o.
        to_left = _apply(jnp.swapaxes(back[:, :, 2:4], 1, 2), z)
        to_right = _apply(jnp.swapaxes(back[:, :, 4:6], 1, 2), z)
        none = jnp.zeros_like(z[:1])
        v = v[0::2] - jnp.concatenate([to_left, none]) - jnp.concatenate([none, to_right])
    v = v.reshape((4,) + v.shape[2:])
    z0 = safe_inv(T[0, 0]) * v[0]
    z1 = safe_inv(T[1, 1]) * (v[1] - T[0, 1] * z0)
    z2 = safe_inv(T[2, 2]) * (v[2] - T[0, 2] * z0 - T[1, 2] * z1)
    z3 = safe_inv(T[3, 3]) * (v[3] - T[0, 3] * z0 - T[1, 3] * z1 - T[2, 3] * z2)
    return jnp.stack([z0, z1, z2, z3]), zs


def sris_parallel(
    h: Float[Array, " n-1"], yw: Float[Array, "n m"], w: Float[Array, " n"], a: Float[Array, ""]
) -> tuple[Float[Array, "n m"], Float[Array, "n m"]]:
    """Knot values and slopes by orthogonal cyclic reduction (module docstring): O(log n)
    vectorised levels each way. ``h`` are the knot spacings (``_lsq.spacings``), ``w`` the
    observation weights (square roots), ``yw = w y``, ``a > 0``."""
    n, m = yw.shape
    dtype = yw.dtype
    depth = levels(n)
    F = 1 << depth  # intervals after padding
    W, c, e, w = _padded_rows(h, w, a, F)
    yw = jnp.pad(yw, ((0, F + 1 - n), (0, 0)))
    last = jnp.arange(F) == F - 1
    w_end = jnp.where(last, w[F], 0.0)

    factor, Qt0 = _interval_factors(w[:F], W, c, e, w_end)
    backs, Qts = [], []
    for _ in range(depth):
        factor, back, Qt = _level(factor)
        backs.append(back)
        Qts.append(Qt)
    T = factor[0]

    none = jnp.zeros((1, m), dtype)

    def refine(state, _):
        """One step of iterative refinement on the augmented system (Bjorck 1967):
        [I A; A^T 0] [r; x] = [b; 0] with the residual r carried beside x. The residuals
        of both block rows, f = b - r - A x and g = -A^T r, are solved for through the
        factorization: R^T h = g, (d1; d2) = Q^T f, dx = R^{-1} (d1 - h), dr = Q (h; d2).
        From x = r = 0 the first step is the least-squares solution itself."""
        X, r_obs, r_bend, r_slope = state
        g, s = X[:, 0], X[:, 1]
        f_obs = yw - r_obs - w[:, None] * g
        f_bend = -r_bend - (W[:, None] * (g[:-1] - g[1:]) + c[:, None] * (s[:-1] + s[1:]))
        f_slope = -r_slope - e[:, None] * (s[1:] - s[:-1])
        Wr, cr, er = W[:, None] * r_bend, c[:, None] * r_bend, e[:, None] * r_slope
        atr_g = w[:, None] * r_obs + jnp.concatenate([Wr, none]) - jnp.concatenate([none, Wr])
        atr_s = jnp.concatenate([cr - er, none]) + jnp.concatenate([none, cr + er])
        h_top, hs = _solve_transposed(T, backs, -jnp.stack([atr_g, atr_s], 1))
        end = jnp.where(last[:, None], f_obs[F], 0.0)
        d = _apply(Qt0, jnp.stack([f_obs[:F], f_bend, f_slope, end], 1))
        d_backs, dropped = [], []
        for Qt in Qts:
            d_back, d, d_drop = _level_rhs(Qt, d)
            d_backs.append(d_back)
            dropped.append(d_drop)
        dX = _solve(T, backs, d[0] - h_top, [db - hb for db, hb in zip(d_backs, hs)])
        v = h_top[None]
        for Qt, hb, dd in reversed(list(zip(Qts, hs, dropped))):
            v = _level_rhs_undo(Qt, hb, v, dd)
        dr = jnp.unstack(_apply(jnp.swapaxes(Qt0, 1, 2), v), axis=1)
        # The last knot's observation sits on the last interval (its fourth row).
        dr_obs = jnp.concatenate([dr[0], dr[3][-1:]])
        return (X + dX, r_obs + dr_obs, r_bend + dr[1], r_slope + dr[2]), None

    state = (jnp.zeros((F + 1, 2, m), dtype), jnp.zeros((F + 1, m), dtype),
             jnp.zeros((F, m), dtype), jnp.zeros((F, m), dtype))
    state = varying_like(state, h, yw, w, a)
    (X, *_), _ = lax.scan(refine, state, None, length=REFINEMENTS + 1)
    return X[:n, 0], X[:n, 1]


def _t(A):
    return jnp.swapaxes(A, -1, -2)


def _interleave(a, b):
    """[a_0, b_0, a_1, b_1, ...] along the first axis, for a and b of one length."""
    return jnp.stack([a, b], 1).reshape((-1,) + a.shape[1:])


def _covariance_level(back, S, C):
    """One level of the covariance recursion, from the coarser knots to the finer ones.

    ``S`` (P + 1, 2, 2): the posterior covariance of each knot state of the coarser level,
    ``C`` (P, 2, 2): Cov(x_j, x_{j+1}) of its neighbours; ``back`` (P, 2, 6): the
    substitution rows T_o x_o + B_L x_L + B_R x_R = z_o of the knots between them, whose
    noise z_o is independent of (x_L, x_R). With M = T_o^-1 [B_L B_R]:
    Cov(x_o, x_L) = -M [S_L; C^T], Cov(x_o, x_R) = -M [C; S_R] and
    Sigma_o = T_o^-1 T_o^-T + M Cov((x_L, x_R)) M^T. Returns the finer level's (S, C)."""
    t00, t01, t11 = back[:, 0, 0], back[:, 0, 1], back[:, 1, 1]
    i00, i11 = safe_inv(t00), safe_inv(t11)
    zero = jnp.zeros_like(i00)
    Ti = jnp.stack([jnp.stack([i00, -t01 * i00 * i11], -1), jnp.stack([zero, i11], -1)], -2)
    ML, MR = _apply(Ti, back[:, :, 2:4]), _apply(Ti, back[:, :, 4:6])
    SL, SR = S[:-1], S[1:]
    oL = -(_apply(ML, SL) + _apply(MR, _t(C)))
    oR = -(_apply(ML, C) + _apply(MR, SR))
    Soo = _apply(Ti, _t(Ti)) - _apply(oL, _t(ML)) - _apply(oR, _t(MR))
    Soo = 0.5 * (Soo + _t(Soo))
    S = jnp.concatenate([_interleave(SL, Soo), S[-1:]])
    return S, _interleave(_t(oL), oR)


def state_covariances_parallel(
    h: Float[Array, " n-1"], alive: Bool[Array, " n"], a: Float[Array, ""]
) -> tuple[Float[Array, "n 3"], Float[Array, "n 4"]]:
    """``_posterior.state_covariances`` by cyclic reduction: O(log n) vectorised levels.

    The factorization eliminates knots level by level (``_level``); reading its
    substitution rows backwards from the last factor gives every knot's covariance and its
    neighbour's (``_covariance_level``), as the sequential sweep reads its own. At a = 0
    a survivor's value is known: its column leaves the bending rows and a unit row of its
    own keeps the factor regular, and its entries of the covariance are then set to 0 (the
    value is independent of everything else in that problem, its variance 1 a stand-in).
    Same arguments and result as ``_posterior.state_covariances``."""
    n = alive.shape[0]
    dtype = h.dtype
    depth = levels(n)
    F = 1 << depth
    smoothing = a > 0
    unit = jnp.where(smoothing, a, 1.0).astype(dtype)
    pin = alive & ~smoothing
    w = jnp.where(smoothing, alive, pin).astype(dtype)
    W, c, e, w = _padded_rows(h, w, unit, F)
    free = (~jnp.pad(pin, (0, F + 1 - n))).astype(dtype)
    w_end = jnp.where(jnp.arange(F) == F - 1, w[F], 0.0)
    factor, _ = _interval_factors(w[:F], W * free[:F], c, e, w_end, -W * free[1:],
                                  transform=False)
    backs = []
    for _ in range(depth):
        factor, back, _ = _level(factor, transform=False)
        backs.append(back)
    Ti = _solve_top(factor[0], jnp.eye(4, dtype=dtype)).reshape(4, 4)  # T^-1
    top = Ti @ Ti.T  # the first and the last knot
    S = jnp.stack([top[:2, :2], top[2:, 2:]])
    C = top[None, :2, 2:]
    for back in reversed(backs):
        S, C = _covariance_level(back, S, C)
    S, C = S[:n], C[:n - 1]
    known = pin.astype(dtype)
    kl, kr = 1.0 - known[:-1], 1.0 - known[1:]
    sigma = jnp.stack([S[:, 0, 0] * (1.0 - known), S[:, 0, 1] * (1.0 - known), S[:, 1, 1]], -1)
    cross = jnp.stack([C[:, 0, 0] * kl * kr, C[:, 0, 1] * kl, C[:, 1, 0] * kr, C[:, 1, 1]], -1)
    cross = jnp.concatenate([cross, jnp.zeros((1, 4), dtype)])
    return unit * sigma, unit * cross
