"""Independent float64 NumPy/SciPy references for the coding schemes.

Nothing here imports letcc_jax: each routine is written from the textbook formula and
solved with LAPACK through SciPy, so agreement with the JAX code is a real check.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg, sparse
from scipy.interpolate import make_interp_spline, make_smoothing_spline


def _linear_extrapolate(spl, lo, hi, x, out):
    d = spl.derivative()
    out = np.where((x < lo)[:, None], spl(lo) + d(lo) * (x - lo)[:, None], out)
    return np.where((x > hi)[:, None], spl(hi) + d(hi) * (x - hi)[:, None], out)


def reinsch_values(t, y, lam):
    """Knot values of the mean-form smoothing spline by Reinsch's algorithm, with the
    pentadiagonal system assembled by scipy.sparse and solved by LAPACK banded Cholesky."""
    n = len(t)
    if n <= 2 or lam == 0:
        return y.copy()
    h = np.diff(t)
    Q = sparse.lil_matrix((n, n - 2))
    R = sparse.lil_matrix((n - 2, n - 2))
    for j in range(1, n - 1):
        Q[j - 1, j - 1] = 1.0 / h[j - 1]
        Q[j, j - 1] = -1.0 / h[j - 1] - 1.0 / h[j]
        Q[j + 1, j - 1] = 1.0 / h[j]
        R[j - 1, j - 1] = (h[j - 1] + h[j]) / 3.0
        if j < n - 2:
            R[j - 1, j] = R[j, j - 1] = h[j] / 6.0
    Q, R = Q.tocsr(), R.tocsr()
    a = n * lam
    A = (R + a * (Q.T @ Q)).toarray()
    ab = np.zeros((3, n - 2))  # upper banded storage for solveh_banded
    for k in range(3):
        ab[2 - k, k:] = np.diagonal(A, k)
    gamma = linalg.solveh_banded(ab, Q.T @ y)
    return y - a * (Q @ gamma)


def berrut(nodes, values, x):
    """Berrut's rational interpolant with weights (-1)^i through (nodes, values), at x."""
    return berrut_with_weights(nodes, values, x, (-1.0) ** np.arange(len(nodes)))


def lagrange(nodes, values, x):
    """Polynomial interpolant through (nodes, values) at x, by solving the Vandermonde
    system in the Chebyshev basis (well conditioned on Chebyshev-like nodes)."""
    nodes, x = np.asarray(nodes, np.float64), np.asarray(x, np.float64)
    values = np.asarray(values, np.float64).reshape(len(nodes), -1)
    V = np.polynomial.chebyshev.chebvander(nodes, len(nodes) - 1)
    coef = np.linalg.solve(V, values)
    return np.polynomial.chebyshev.chebvander(x, len(nodes) - 1) @ coef


# ---------------------------------------------------------------------------------------
# Additions for the core test suite (tests/test_core_*.py).


def natural_smoothing_spline(t, y, alive, lam, x, use_scipy_fit=False):
    """Mean-form natural cubic smoothing spline through the alive rows, evaluated at x,
    linear outside the survivors' range. ``use_scipy_fit`` fits with scipy's
    make_smoothing_spline (sum form, lam * |F|) instead of the Reinsch reference; scipy's
    make_interp_spline(k=3, bc_type="natural") handles 2 and 3 points correctly."""
    t, y, x = (np.asarray(v, np.float64) for v in (t, y, x))
    alive = np.asarray(alive, bool)
    y = y.reshape(len(t), -1)
    tF, yF = t[alive], y[alive]
    n = len(tF)
    if n == 1:
        return np.repeat(yF, len(x), axis=0)
    if use_scipy_fit and lam > 0 and n > 4:
        spl = make_smoothing_spline(tF, yF, lam=n * lam)
    else:
        spl = make_interp_spline(tF, reinsch_values(tF, yF, lam), k=3, bc_type="natural")
    return _linear_extrapolate(spl, tF[0], tF[-1], x, spl(x))


def berrut_with_weights(nodes, values, x, weights):
    """The barycentric rational interpolant sum w_i v_i/(x - z_i) / sum w_i/(x - z_i) for
    given weights (Berrut's are (-1)^i); rows at a node are that node's value."""
    nodes, x = np.asarray(nodes, np.float64), np.asarray(x, np.float64)
    values = np.asarray(values, np.float64).reshape(len(nodes), -1)
    w = np.asarray(weights, np.float64)
    out = np.empty((len(x), values.shape[1]))
    for e, xe in enumerate(x):
        hit = np.nonzero(xe == nodes)[0]
        if hit.size:
            out[e] = values[hit[0]]
            continue
        c = w / (xe - nodes)
        out[e] = c @ values / c.sum()
    return out


def reinsch_mp(t, y, lam, dps=40):
    """``(g, gamma)``: knot values and second derivatives of the mean-form natural
    smoothing spline, with the Reinsch system assembled and solved in ``dps``-digit
    arithmetic (mpmath) from the float64 data, so the result is exact to float64 rounding.
    The ground truth for measuring how much accuracy a float64 solver loses."""
    import mpmath

    t = np.asarray(t, np.float64)
    y = np.asarray(y, np.float64).reshape(len(t), -1)
    n, m = y.shape
    p = n - 2
    if p <= 0:
        return y.copy(), np.zeros((n, m))
    with mpmath.workdps(dps):
        T = [mpmath.mpf(float(v)) for v in t]
        h = [T[i + 1] - T[i] for i in range(n - 1)]
        a = n * mpmath.mpf(float(lam))
        # Column j of Q (interior knot j+1) has its entries at rows j, j+1, j+2.
        q = [(1 / h[j], -1 / h[j] - 1 / h[j + 1], 1 / h[j + 1]) for j in range(p)]
        band = {}
        for j in range(p):
            band[j, j] = (h[j] + h[j + 1]) / 3 + a * sum(v * v for v in q[j])
            if j + 1 < p:
                band[j, j + 1] = band[j + 1, j] = h[j + 1] / 6 + a * (
                    q[j][1] * q[j + 1][0] + q[j][2] * q[j + 1][1]
                )
            if j + 2 < p:
                band[j, j + 2] = band[j + 2, j] = a * q[j][2] * q[j + 2][0]
        # Banded Gaussian elimination without pivoting (SPD): no fill-in outside the band.
        for k in range(p):
            for i in (k + 1, k + 2):
                if i < p:
                    f = band[i, k] / band[k, k]
                    band[i, k] = f
                    for j in (k + 1, k + 2):
                        if j < p:
                            band[i, j] = band.get((i, j), 0) - f * band[k, j]
        g_out, gamma_out = np.zeros((n, m)), np.zeros((n, m))
        for c in range(m):
            Y = [mpmath.mpf(float(v)) for v in y[:, c]]
            b = [q[j][0] * Y[j] + q[j][1] * Y[j + 1] + q[j][2] * Y[j + 2] for j in range(p)]
            for k in range(p):
                for i in (k + 1, k + 2):
                    if i < p:
                        b[i] -= band[i, k] * b[k]
            gamma = [mpmath.mpf(0)] * p
            for k in range(p - 1, -1, -1):
                s = b[k] - sum(band[k, j] * gamma[j] for j in (k + 1, k + 2) if j < p)
                gamma[k] = s / band[k, k]
            q_gamma = [mpmath.mpf(0)] * n
            for j in range(p):
                for r in range(3):
                    q_gamma[j + r] += q[j][r] * gamma[j]
            g_out[:, c] = [float(Y[k] - a * q_gamma[k]) for k in range(n)]
            gamma_out[1:-1, c] = [float(v) for v in gamma]
    return g_out, gamma_out


def spline_objective(t, y, g, upp, lam):
    """Mean-form objective (1/n) sum_i (y_i - g_i)^2 + lam * integral u''^2 over [t_1, t_n],
    per column, for a cubic spline with knot values g and second derivatives upp at the
    knots t (u'' is linear between knots, so the integral is exact)."""
    t = np.asarray(t, np.float64)
    y, g, upp = (np.asarray(v, np.float64).reshape(len(t), -1) for v in (y, g, upp))
    h = np.diff(t)[:, None]
    a, b = upp[:-1], upp[1:]
    roughness = np.sum(h * (a * a + a * b + b * b) / 3.0, axis=0)
    return np.mean((y - g) ** 2, axis=0) + lam * roughness


def natural_second_derivatives(t, g):
    """Second derivatives at the knots of the natural cubic spline interpolating (t, g)."""
    spl = make_interp_spline(np.asarray(t, np.float64), np.asarray(g, np.float64), k=3,
                             bc_type="natural")
    return spl.derivative(2)(t)


def gcv_score(t, y, lam):
    """Generalised cross-validation score, summed over columns:
    (1/n) ||y - S y||^2 / (1 - tr(S)/n)^2 with S the mean-form smoother matrix (built
    column by column with the Reinsch reference)."""
    t = np.asarray(t, np.float64)
    y = np.asarray(y, np.float64).reshape(len(t), -1)
    n = len(t)
    S = reinsch_values(t, np.eye(n), lam)
    rss = np.sum((y - S @ y) ** 2)
    return (rss / n) / (1.0 - np.trace(S) / n) ** 2


def pentadiagonal(diag0, diag1, diag2):
    """The dense symmetric matrix with the given main, first and second super-diagonals."""
    A = np.diag(np.asarray(diag0, np.float64))
    for k, d in ((1, diag1), (2, diag2)):
        if len(d):
            A += np.diag(np.asarray(d, np.float64), k) + np.diag(np.asarray(d, np.float64), -k)
    return A
