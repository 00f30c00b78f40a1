"""LeTCC's posterior standard errors against independent Gaussian-process references.

The reference is the dense posterior of the same prior, f = b0 + b1 t + W2 (integrated
Wiener process, diffuse linear part), in universal-kriging form: in 60-digit arithmetic
(mpmath) where the kernel matrix is too ill-conditioned for float64 (interpolation, small
noise), and in float64 where it is not (noise variance well above the kernel's scale)."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import mpmath as mp
import numpy as np
import pytest
from compiles import compilations

import letcc_jax as lc
from letcc_jax.core import spline

posterior = jax.jit(spline.posterior, static_argnames="method")  # one program per shape


def _kernel(s, u, t0):
    """The integrated Wiener process's covariance from t0 (tau = 1)."""
    m, M = min(s - t0, u - t0), max(s - t0, u - t0)
    return m * m * (3 * M - m) / 6


def dense_reference(t, y, alive, a, x, digits=None):
    """Posterior mean (E, m), variance per unit tau^2 (E,) and the REML tau^2 (m,) of the
    prior observed at the alive t with noise variance a tau^2, in float64 or with
    ``digits`` of mpmath precision."""
    tf, yf = t[alive], y[alive]
    F = len(tf)
    if digits is None:
        num, mat, inv = float, np.array, np.linalg.inv
    else:
        mp.mp.dps = digits
        num, mat, inv = mp.mpf, mp.matrix, lambda A: A ** -1
    t0 = num(float(t.min())) - 1
    K = mat([[_kernel(num(float(p)), num(float(q)), t0) + (num(float(a)) if i == j else 0)
              for j, q in enumerate(tf)] for i, p in enumerate(tf)])
    Ki = inv(K)
    T = mat([[num(1), num(float(p))] for p in tf])
    Y = mat([[num(float(v)) for v in row] for row in yf])
    G = T.T * Ki * T if digits else T.T @ Ki @ T
    Gi = inv(G)
    mul = (lambda A, B: A * B) if digits else (lambda A, B: A @ B)
    beta = mul(Gi, mul(T.T, mul(Ki, Y)))
    r = Y - mul(T, beta)
    tau2 = [float(mul(r[:, c].T, mul(Ki, r[:, c]))[0] if digits else r[:, c] @ Ki @ r[:, c])
            / (F - 2) for c in range(yf.shape[1])]
    means, variances = [], []
    for xv in x:
        xv = num(float(xv))
        k = mat([[_kernel(num(float(p)), xv, t0)] for p in tf])
        h = mat([[num(1)], [xv]]) - mul(T.T, mul(Ki, k))
        kk = _kernel(xv, xv, t0)
        var = kk - mul(k.T, mul(Ki, k))[0] + mul(h.T, mul(Gi, h))[0]
        mean = mul(mat([[num(1), xv]]), beta) + mul(k.T, mul(Ki, r))
        means.append([float(mean[0, c] if digits else mean[0, c]) for c in range(yf.shape[1])])
        variances.append(float(np.ravel(var)[0]) if digits is None else float(var))
    return np.array(means), np.array(variances), np.array(tau2)


def _problem(rng, n, lam):
    t = np.sort(rng.uniform(-1.0, 1.0, n))
    y = np.sin(3.0 * t)[:, None] + 0.1 * rng.standard_normal((n, 2))
    alive = rng.random(n) > 0.3
    alive[[0, n // 2, n - 2]] = True  # at least three survivors
    x = np.concatenate([rng.uniform(-1.3, 1.3, 7), t[[1, n // 2]]])  # outside, at knots
    return t, y, alive, x


@pytest.mark.parametrize("lam", [0.0, 1e-7, 1e-3])
@pytest.mark.parametrize("n, method", [(5, "sris"), (23, "sris"), (23, "parallel")])
def test_posterior_matches_the_dense_gaussian_process_to_round_off(rng, n, lam, method):
    """Mean, variance and REML scale against a 50-digit dense posterior: float64 round-off
    of an O(n) recursion (measured: 4e-16 relative in the variances at n = 34), and of the
    O(log n)-depth cyclic reduction ("parallel"); the float32 variances to theirs."""
    t, y, alive, x = _problem(rng, n, lam)
    a = alive.sum() * lam  # sum form: noise variance / tau^2
    mean, var, tau = posterior(jnp.asarray(t), jnp.asarray(y), jnp.asarray(alive),
                               lam, jnp.asarray(x), method=method)
    ref_mean, ref_var, ref_tau2 = dense_reference(t, y, alive, a, x, digits=50)
    np.testing.assert_allclose(np.asarray(var), ref_var, rtol=1e-10, atol=1e-14 * ref_var.max())
    np.testing.assert_allclose(np.asarray(mean), ref_mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(tau) ** 2, ref_tau2, rtol=1e-9)
    # The variances in float32 throughout (knots too), against the exact posterior of the
    # float32-rounded data: within 2e-6 of the largest over 260 draws of this problem, both
    # methods, every lam (bound 10x). Not the estimates and tau^2: over the same draws a
    # float32 fit at float32 knots is within 3e-6 of the largest estimate in most draws but
    # 3.8e-4 in one, and the REML tau^2 at lam > 0 is off by up to 1.8x in one draw
    # (6.4e-4 in the worst of the first 60), where the residual term's two float32 forms
    # (``_posterior.scale``) both round badly. The schemes take the variances and the scale
    # in their points' precision, float64 by default (test_scheme_posterior_* below).
    f32 = [np.asarray(v, np.float32) for v in (t, y, lam, x)]
    _, ref_var32, _ = dense_reference(*(v.astype(np.float64) for v in f32[:2]), alive,
                                      alive.sum() * float(f32[2]), f32[3].astype(np.float64),
                                      digits=30)
    _, var, _ = posterior(*(jnp.asarray(v) for v in f32[:2]), jnp.asarray(alive),
                          jnp.asarray(f32[2]), jnp.asarray(f32[3]), method=method)
    assert var.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(var, np.float64), ref_var32, rtol=0,
                               atol=2e-5 * ref_var32.max())


def test_posterior_at_n_200_against_float64_kriging(rng, method="sris"):
    """n = 200 with noise well above the kernel's scale, where float64 kriging is accurate
    enough to be a reference (its own error there is ~1e-12). The parallel covariances are
    checked against the sequential ones at N = 100,000 (test_core_parallel)."""
    t, y, alive, x = _problem(rng, 200, 0.0)
    lam = 1e-2
    a = alive.sum() * lam
    mean, var, tau = posterior(jnp.asarray(t), jnp.asarray(y), jnp.asarray(alive),
                               lam, jnp.asarray(x), method=method)
    ref_mean, ref_var, ref_tau2 = dense_reference(t, y, alive, a, x)
    np.testing.assert_allclose(np.asarray(var), ref_var, rtol=1e-8)
    np.testing.assert_allclose(np.asarray(mean), ref_mean, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(np.asarray(tau) ** 2, ref_tau2, rtol=1e-8)


@pytest.mark.parametrize("t_scale, y_scale", [(1e3, 1e-3), (1e-3, 1e5)])
def test_posterior_follows_the_units_of_t_and_y(rng, t_scale, y_scale):
    """Rescaling t and y rescales the variance per unit tau^2 by t^3 and tau by
    y / t^(3/2) (the fits run on power-of-two rescaled data)."""
    t, y, alive, x = _problem(rng, 23, 0.0)
    for lam in (0.0, 1e-3):
        base = posterior(jnp.asarray(t), jnp.asarray(y), jnp.asarray(alive), lam,
                                jnp.asarray(x))
        scaled = posterior(jnp.asarray(t * t_scale), jnp.asarray(y * y_scale),
                                  jnp.asarray(alive), lam * t_scale ** 3,
                                  jnp.asarray(x * t_scale))
        np.testing.assert_allclose(np.asarray(scaled[0]), np.asarray(base[0]) * y_scale,
                                   rtol=1e-9, atol=1e-12 * y_scale)
        np.testing.assert_allclose(np.asarray(scaled[1]), np.asarray(base[1]) * t_scale ** 3,
                                   rtol=1e-9, atol=1e-14 * float(base[1].max()) * t_scale ** 3)
        np.testing.assert_allclose(np.asarray(scaled[2]),
                                   np.asarray(base[2]) * y_scale / t_scale ** 1.5, rtol=1e-9)


@pytest.mark.parametrize("lam", [0.0, 1e-4])
def test_scheme_posterior_is_the_decode_with_standard_errors(rng, dtype, lam):
    K, N = 8, 30
    fallback = np.zeros(3)
    scheme = lc.letcc(K, N, lam_dec=lam, fallback=jnp.asarray(fallback, dtype))
    Y = jnp.asarray(np.sin(2.0 * np.asarray(scheme.beta))[:, None] * [1.0, 2.0, -0.5], dtype)
    alive = rng.random(N) > 0.25
    post = scheme.posterior(Y, alive)
    assert post.estimate.dtype == post.std.dtype == post.scale.dtype == dtype
    assert post.std.shape == (K, 3) and post.scale.shape == (3,) and post.power.shape == (K,)
    np.testing.assert_array_equal(np.asarray(post.estimate), np.asarray(scheme.decode(Y, alive)))
    np.testing.assert_allclose(np.asarray(post.std),
                               np.asarray(post.power)[:, None] * np.asarray(post.scale),
                               rtol=1e-6)
    # columns 2x and 0.5x the first: the scale follows, the power does not
    np.testing.assert_allclose(np.asarray(post.scale[1:] / post.scale[0]), [2.0, 0.5], rtol=1e-4)
    given = scheme.posterior(Y, alive, scale=jnp.asarray([1.0, 1.0, 1.0], dtype))
    np.testing.assert_allclose(np.asarray(given.std), np.repeat(np.asarray(post.power)[:, None],
                                                                3, axis=1), rtol=1e-6)
    # too few survivors: the fallback, with an infinite standard error
    few = np.zeros(N, bool)
    few[3] = True
    lost = scheme.posterior(Y, few)
    assert np.all(np.isinf(np.asarray(lost.std)))
    np.testing.assert_array_equal(np.asarray(lost.estimate), 0.0)


def test_posterior_ignores_stragglers_at_an_answers_tag(rng):
    """Stragglers sharing a survivor's tag (twins, or workers padded at the last tag) change
    neither the estimate nor its standard error, at lam = 0 and lam > 0."""
    base = lc.letcc(6, 16)
    beta = np.asarray(base.beta)
    tags = np.sort(np.concatenate([beta, beta[[4, 15, 15]]]))
    keep = np.concatenate([[True], np.diff(tags) > 0])  # the first worker at each tag
    alive = rng.random(16) > 0.2
    alive[[0, 4, 15]] = True
    Y = np.sin(2.0 * tags)[:, None] * [1.0, -3.0]
    for lam in (0.0, 1e-4):
        plain = base.replace(lam_dec=lam).posterior(jnp.asarray(Y[keep]), alive)
        twins = base.replace(beta=jnp.asarray(tags), lam_dec=lam)
        full = np.zeros(tags.size, bool)
        full[keep] = alive
        post = twins.posterior(jnp.asarray(Y), full)
        for name in ("estimate", "std", "scale"):
            np.testing.assert_allclose(np.asarray(getattr(post, name)),
                                       np.asarray(getattr(plain, name)), rtol=1e-9,
                                       atol=1e-12, err_msg=f"{name}, lam {lam}")


@pytest.mark.parametrize("N, lam", [(100, 0.0), (100, 1e-6), (1000, 1e-6), (1000, 1e-3)])
def test_posterior_of_float32_outputs_follows_float64(rng, N, lam):
    """float32 outputs at the scheme's float64 points: power and scale within 1e-5 of the
    float64 outputs' (measured: at most 8e-8 over four masks each, both computed at the
    points' precision; at lam = 0 from N ~ 1,000 the outputs' own rounding is roughness to
    an interpolating model, 2.4e-3 at N = 1,000, so lam = 0 is checked at N = 100)."""
    scheme = lc.letcc(20, N, lam_dec=lam)
    Y = np.sin(3.0 * np.asarray(scheme.beta))[:, None]
    for _ in range(2):
        alive = rng.random(N) > 0.2
        p64 = scheme.posterior(jnp.asarray(Y), alive)
        p32 = scheme.posterior(jnp.asarray(Y, jnp.float32), alive)
        assert p32.std.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(p32.power), np.asarray(p64.power), rtol=1e-5)
        np.testing.assert_allclose(np.asarray(p32.scale), np.asarray(p64.scale), rtol=1e-5)
        np.testing.assert_allclose(np.asarray(p32.estimate), np.asarray(p64.estimate),
                                   rtol=0, atol=1e-5)


def test_posterior_compiles_once_and_works_under_jit_vmap_and_grad(rng):
    K, N = 6, 24
    scheme = lc.letcc(K, N, lam_dec=1e-5)
    Y = jnp.asarray(rng.standard_normal((N, 2)))
    masks = rng.random((5, N)) > 0.3
    scheme.posterior(Y, masks[0])
    with compilations() as count:
        for mask in masks[1:]:
            scheme.posterior(Y, mask)
    assert count() == 0
    batched = jax.jit(jax.vmap(lambda m: scheme.posterior_report(Y, m)[0].std))(masks)
    for i, mask in enumerate(masks):
        np.testing.assert_allclose(np.asarray(batched[i]),
                                   np.asarray(scheme.posterior(Y, mask).std), rtol=1e-12)

    @jax.jit
    def total_std(lam):
        return jnp.sum(scheme.replace(lam_dec=lam).posterior_report(Y, masks[0])[0].std)

    grad = jax.grad(total_std)(1e-5)
    step = 1e-9
    numeric = (total_std(1e-5 + step) - total_std(1e-5 - step)) / (2 * step)
    np.testing.assert_allclose(float(grad), float(numeric), rtol=1e-4)


@pytest.mark.parametrize("bad", [0.0, -1.0, np.inf, np.ones(5)])
def test_posterior_rejects_a_bad_scale(bad):
    scheme = lc.letcc(4, 12)
    with pytest.raises(ValueError, match="posterior scale"):
        scheme.posterior(jnp.ones((12, 2)), scale=bad)
