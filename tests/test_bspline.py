"""B-spline coded computing (``letcc_jax.bspline``) against SciPy's B-spline basis and a
float64 NumPy solution of the same penalised least squares; its gradients against finite
differences; its errors at the boundary."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.interpolate import BSpline as ScipyBSpline

import letcc_jax as lc
from letcc_jax.bspline import _knots, bspline_basis

# basis values lie in [0, 1]: three levels of a convex recursion in float32 round to a few
# ulps (measured 2.4e-7 at J <= 20); the bound keeps a margin of 8x
BASIS_TOL = {np.float32: 2e-6, np.float64: 1e-14}


def reference_fit(nodes, values, weights, lam, J):
    """The minimiser of (1/n) sum_i w_i (y_i - g(t_i))^2 + lam ||D2 c||^2 / h^3, float64."""
    B = ScipyBSpline.design_matrix(np.clip(nodes, -1, 1), _knots(J), 3).toarray()
    D2 = np.diff(np.eye(J), n=2, axis=0)
    h = 2.0 / (J - 3)
    w = weights.astype(np.float64)
    n = max(w.sum(), 1.0)
    G = (B * w[:, None]).T @ B / n + lam * D2.T @ D2 / h**3
    return np.linalg.solve(G, (B * w[:, None]).T @ values / n)


def reference_round(scheme, X, Y, alive):
    alpha, beta = np.asarray(scheme.alpha, np.float64), np.asarray(scheme.beta, np.float64)
    J, J_enc = scheme.n_basis, scheme.encoder_basis
    coded = ScipyBSpline.design_matrix(beta, _knots(J_enc), 3).toarray() @ reference_fit(
        alpha, X, np.ones(len(alpha), bool), float(scheme.lam_enc), J_enc)
    estimate = ScipyBSpline.design_matrix(alpha, _knots(J), 3).toarray() @ reference_fit(
        beta, Y, alive, float(scheme.lam_dec), J)
    return coded, estimate


@pytest.mark.parametrize("J", [4, 5, 9, 24])
def test_basis_matches_scipy(dtype, J, rng):
    x = np.concatenate([rng.uniform(-1, 1, 200), [-1.0, 1.0], _knots(J)])
    got = np.asarray(bspline_basis(jnp.asarray(x, dtype), J))
    want = ScipyBSpline.design_matrix(x.astype(dtype).astype(np.float64), _knots(J), 3).toarray()
    assert got.dtype == dtype and got.shape == (x.size, J)
    np.testing.assert_allclose(got, want, rtol=0, atol=BASIS_TOL[dtype])


@pytest.mark.parametrize("J, J_enc", [(4, None), (7, 9), (12, None)])
def test_a_round_matches_the_float64_least_squares(dtype, J, J_enc, rng):
    K, N, m = 8, 30, 3
    lam_enc, lam_dec = 10 ** rng.uniform(-8, -2, 2)
    scheme = lc.bspline(K, N, n_basis=J, n_basis_enc=J_enc, lam_enc=lam_enc, lam_dec=lam_dec)
    for trial in range(3):
        X = rng.uniform(-1, 1, (K, 2))
        Y = rng.standard_normal((N, m))
        alive = rng.permutation(N) >= 8
        want_coded, want = reference_round(scheme, X, Y, alive)
        coded = np.asarray(scheme.encode(jnp.asarray(X, dtype)))
        got = np.asarray(scheme.decode(jnp.asarray(Y, dtype), alive))
        # float32: the normal equations square the basis' conditioning; over 60 draws of
        # J, lam and the mask the error stayed below 2e-4 of the largest value
        tol = 2e-3 if dtype == np.float32 else 1e-9
        np.testing.assert_allclose(coded, want_coded, rtol=0, atol=tol * np.abs(want_coded).max())
        np.testing.assert_allclose(got, want, rtol=0, atol=tol * np.abs(want).max())


def test_gradients_match_finite_differences():
    scheme = lc.bspline(6, 16, n_basis=7, lam_enc=1e-4, lam_dec=1e-3)
    X = jnp.linspace(-1, 1, 12).reshape(6, 2)
    alive = jnp.arange(16) % 4 != 1

    def loss(lam_dec, beta):
        s = scheme.replace(lam_dec=lam_dec, beta=beta)
        return jnp.sum(jnp.sin(s.decode(jnp.tanh(s.encode(X)), alive)) ** 2)

    lam, beta = jnp.asarray(1e-3), scheme.beta
    g_lam, g_beta = jax.grad(loss, argnums=(0, 1))(lam, beta)
    # central differences in log lam and along a direction of beta: truncation ~ h^2 (1e-8,
    # relative), round-off ~ 1e-16 |loss| / h (1e-11 for a loss below 12): atol 1e-9
    h = 1e-4
    fd_lam = (loss(lam * np.exp(h), beta) - loss(lam * np.exp(-h), beta)) / (2 * h)
    np.testing.assert_allclose(float(g_lam * lam), float(fd_lam), rtol=1e-6, atol=1e-9)
    direction = jnp.asarray(np.random.default_rng(0).standard_normal(16)) * 1e-3
    fd_beta = (loss(lam, beta + h * direction) - loss(lam, beta - h * direction)) / (2 * h)
    np.testing.assert_allclose(float(g_beta @ direction), float(fd_beta), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("options, error, match", [
    ({"n_basis": 3}, ValueError, "n_basis must be an int >= 4"),
    ({"n_basis": 4.5}, ValueError, "n_basis must be an int >= 4"),
    ({"n_basis_enc": 2}, ValueError, "n_basis_enc must be an int >= 4"),
    ({"lam_dec": 0.0}, ValueError, "lam_dec must be finite and > 0"),
    ({"lam_enc": np.inf}, ValueError, "lam_enc must be finite and > 0"),
    ({"lam_enc": "a"}, TypeError, "lam_enc must be a real number or array"),
    ({"points": "equispaced"}, ValueError, "points must be 'chebyshev'"),
])
def test_bad_arguments_are_clear_errors(options, error, match):
    with pytest.raises(error, match=match):
        lc.bspline(4, 10, **options)
    with pytest.raises(ValueError, match="K must be an int >= 2"):
        lc.bspline(1, 10)


def test_the_default_bases_follow_K_and_N():
    # the decoder's basis grows with N (a fixed one stops improving with N); the encoder's
    # stays at K functions, where its system is square and well conditioned
    scheme = lc.bspline(8, 30)
    assert (scheme.n_basis, scheme.encoder_basis) == (30, 8)
    assert lc.bspline(2, 3).encoder_basis == 4 and lc.bspline(2, 3).n_basis == 4
    assert lc.bspline(8, 30, n_basis_enc=11).encoder_basis == 11


def test_the_fits_call_no_lapack_solver():
    # a batched LAPACK solve (jnp.linalg.solve) deadlocked XLA's CPU thread pool inside
    # monte_carlo on a 2-core machine; the banded solve is plain jax.numpy and lax.scan
    scheme = lc.bspline(6, 40)
    Y, alive = jnp.ones((40, 2)), jnp.arange(40) % 3 != 0
    text = str(jax.make_jaxpr(jax.vmap(scheme.decode, in_axes=(0, None)))(Y[None], alive))
    text += str(jax.make_jaxpr(scheme.encode)(jnp.ones((6, 2))))
    solvers = r"= (lu|cholesky|triangular_solve|custom_linear_solve|qr|eigh|svd)\b"
    assert str(jax.make_jaxpr(jnp.linalg.solve)(jnp.eye(3), jnp.ones(3))).count("= lu") == 1
    assert not re.search(solvers, text), re.search(solvers, text)
