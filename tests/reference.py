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


def smoothing_spline(t, y, alive, lam, x, use_scipy_fit=False):
    """Mean-form natural cubic smoothing spline through the alive rows, evaluated at x,
    linear outside the survivors' range. ``use_scipy_fit`` fits with scipy's
    make_smoothing_spline (sum form, lam * |F|) instead of the Reinsch reference."""
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
        g = reinsch_values(tF, yF, lam)
        spl = make_interp_spline(tF, g, k=min(3, n - 1), bc_type="natural" if n > 3 else None)
    return _linear_extrapolate(spl, tF[0], tF[-1], x, spl(x))


def berrut(nodes, values, x, weights_sign=None):
    """Berrut's rational interpolant with weights (-1)^i through (nodes, values), at x."""
    nodes, x = np.asarray(nodes, np.float64), np.asarray(x, np.float64)
    values = np.asarray(values, np.float64).reshape(len(nodes), -1)
    w = (-1.0) ** np.arange(len(nodes))
    out = np.empty((len(x), values.shape[1]))
    for e, xe in enumerate(x):
        hit = np.nonzero(xe == nodes)[0]
        if hit.size:
            out[e] = values[hit[0]]
            continue
        c = w / (xe - nodes)
        out[e] = c @ values / c.sum()
    return out


def lagrange(nodes, values, x):
    """Polynomial interpolant through (nodes, values) at x, by solving the Vandermonde
    system in the Chebyshev basis (well conditioned on Chebyshev-like nodes)."""
    nodes, x = np.asarray(nodes, np.float64), np.asarray(x, np.float64)
    values = np.asarray(values, np.float64).reshape(len(nodes), -1)
    V = np.polynomial.chebyshev.chebvander(nodes, len(nodes) - 1)
    coef = np.linalg.solve(V, values)
    return np.polynomial.chebyshev.chebvander(x, len(nodes) - 1) @ coef
