"""letcc_jax.tuning: the node parametrisation, the learned residual encoder, the tuning loss
and its gradient, tuning itself, errors at the boundary, and the experiment's helpers."""

from __future__ import annotations

import csv
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import letcc_jax as lc
from letcc_jax.sim import _tuning as tuning

import reference as ref

pytest.importorskip("optax")  # the optimiser of tune (an optional dependency)

TOL = {np.float32: dict(rtol=2e-6, atol=2e-6), np.float64: dict(rtol=1e-13, atol=1e-14)}

# One small problem shared by the tuning tests, so that each jitted function compiles once.
K, N, S, D = 4, 12, 3, 2
C, TRIALS = 3, 8
SIGMA = 0.02
STRAGGLERS = lc.ExactStragglers(S)
FAULTS = (lc.GaussianNoise(SIGMA),)


def f(x):
    """A smooth nonlinear f: (D,) -> (2,)."""
    return jnp.stack([jnp.sin(2.0 * x[0] + x[1]), jnp.tanh(1.5 * x[1] - x[0])])


def f_numpy(x):
    return np.stack([np.sin(2.0 * x[:, 0] + x[:, 1]), np.tanh(1.5 * x[:, 1] - x[:, 0])], axis=1)


def calibration(seed=0, batches=C):
    return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, (batches, K, D)))


def numpy_nodes(logits, pin_ends):
    """Reference: nodes as -1 + 2 * cumulative normalised exp(logits), in float64."""
    w = np.exp(np.asarray(logits, np.float64) - np.max(logits))
    inner = -1.0 + 2.0 * np.cumsum(w / w.sum())[:-1]
    return np.concatenate([[-1.0], inner, [1.0]]) if pin_ends else inner


# ------------------------------------------------------------------ parametrisation


@pytest.mark.parametrize("pin_ends", [False, True])
def test_ordered_nodes_matches_numpy_and_is_strictly_increasing(dtype, pin_ends, rng):
    n = 9
    for scale in (0.1, 1.0, 3.0):
        logits = (scale * rng.standard_normal(n - 1 if pin_ends else n + 1)).astype(dtype)
        nodes = np.asarray(lc.ordered_nodes(jnp.asarray(logits), pin_ends))
        assert nodes.dtype == dtype and nodes.shape == (n,)
        np.testing.assert_allclose(nodes, numpy_nodes(logits, pin_ends), **TOL[dtype])
        assert np.all(np.diff(nodes) > 0) and nodes[0] >= -1 and nodes[-1] <= 1
        if pin_ends:
            assert nodes[0] == -1 and nodes[-1] == 1
        else:
            assert nodes[0] > -1 and nodes[-1] < 1
        shifted = lc.ordered_nodes(jnp.asarray(logits + dtype(2.5)), pin_ends)
        np.testing.assert_allclose(np.asarray(shifted), nodes, **TOL[dtype])


@pytest.mark.parametrize("pin_ends, nodes", [
    (False, lc.chebyshev_first(7)),
    (False, np.sort(np.random.default_rng(3).uniform(-0.99, 0.99, 11))),
    (True, lc.chebyshev_second(13)),
    (True, lc.equispaced(6)),
], ids=["chebyshev1-free", "random-free", "chebyshev2-pinned", "equispaced-pinned"])
def test_node_logits_round_trip(dtype, pin_ends, nodes):
    nodes = jnp.asarray(nodes.astype(dtype))
    logits = lc.node_logits(nodes, pin_ends)
    assert logits.shape == (len(nodes) + (-1 if pin_ends else 1),) and logits.dtype == dtype
    np.testing.assert_allclose(float(jnp.mean(logits)), 0.0, atol=10 * np.finfo(dtype).eps)
    back = np.asarray(lc.ordered_nodes(logits, pin_ends))
    tol = dict(rtol=0, atol=4e-7) if dtype == np.float32 else dict(rtol=0, atol=1e-15)
    np.testing.assert_allclose(back, np.asarray(nodes), **tol)


@pytest.mark.parametrize("nodes, pin_ends, message", [
    ([0.1, -0.2, 0.5], False, "strictly increasing"),
    ([-0.5, 0.0, 0.0, 0.5], False, "strictly increasing"),
    ([-1.0, 0.0, 0.5], False, "strictly inside"),
    ([-0.5, 0.0, 0.5], True, "pinned ends"),
    ([[-0.5, 0.5]], False, "1-D"),
    ([0.0], False, "at least 2"),
])
def test_node_logits_rejects_invalid_nodes(nodes, pin_ends, message):
    with pytest.raises(ValueError, match=message):
        lc.node_logits(jnp.asarray(nodes), pin_ends)


# ------------------------------------------------------------------ residual encoder


def reference_encoder(alpha, beta, lam):
    """(N, K) encoder matrix of the smoothing-spline encoder, column by column."""
    return ref.natural_smoothing_spline(alpha, np.eye(len(alpha)), np.ones(len(alpha), bool),
                                        lam, beta)


def test_residual_letcc_matches_numpy_reference(dtype, rng, jit_encode, jit_decode):
    base = lc.letcc(K, N, lam_enc=1e-3, lam_dec=1e-2)
    base = base.replace(**{name: getattr(base, name).astype(dtype)
                           for name in ("alpha", "beta", "lam_enc", "lam_dec")})
    R = (0.1 * rng.standard_normal((N, K))).astype(dtype)
    scheme = lc.ResidualLeTCC.from_letcc(base, jnp.asarray(R))
    assert isinstance(scheme, lc.LeTCC) and scheme.name == "letcc+residual"
    alpha, beta = np.asarray(base.alpha, np.float64), np.asarray(base.beta, np.float64)
    E = reference_encoder(alpha, beta, 1e-3) + R.astype(np.float64)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(jit_encode(scheme, jnp.eye(K, dtype=dtype))), E, **tol)
    X = rng.standard_normal((K, D)).astype(dtype)
    coded = jit_encode(scheme, jnp.asarray(X))
    assert coded.dtype == dtype
    np.testing.assert_allclose(np.asarray(coded), E @ X, **tol)
    # The decoder is LeTCC's smoothing-spline decoder.
    Y = rng.standard_normal((N, 2)).astype(dtype)
    alive = np.ones(N, bool)
    alive[[0, 5, 6]] = False
    expected = ref.natural_smoothing_spline(beta, Y, alive, 1e-2, alpha)
    np.testing.assert_allclose(np.asarray(jit_decode(scheme, jnp.asarray(Y), jnp.asarray(alive))),
                               expected, **tol)
    # A zero residual is LeTCC itself.
    zero = lc.ResidualLeTCC.from_letcc(base)
    np.testing.assert_allclose(np.asarray(jit_encode(zero, jnp.asarray(X))),
                               np.asarray(jit_encode(base, jnp.asarray(X))), **TOL[dtype])


def test_residual_letcc_rejects_bad_arguments():
    with pytest.raises(TypeError, match="LeTCC"):
        lc.ResidualLeTCC.from_letcc(lc.bacc(K, N))
    with pytest.raises(ValueError, match=r"\(N, K\) = \(12, 4\)"):
        lc.ResidualLeTCC.from_letcc(lc.letcc(K, N), jnp.zeros((K, N)))


# ------------------------------------------------------------------ the loss


def test_expected_loss_without_stragglers_matches_numpy_reference():
    """No stragglers, no noise: the loss is deterministic and the float64 reference
    (reference encoder and decoder, f in NumPy) gives it exactly."""
    scheme = lc.letcc(K, N, lam_enc=1e-3, lam_dec=1e-4)
    X = calibration(seed=1)
    alpha, beta = np.asarray(scheme.alpha), np.asarray(scheme.beta)
    E = reference_encoder(alpha, beta, 1e-3)
    losses = []
    for x in np.asarray(X):
        Y = f_numpy(E @ x)
        est = ref.natural_smoothing_spline(beta, Y, np.ones(N, bool), 1e-4, alpha)
        losses.append(np.mean(np.sum((est - f_numpy(x)) ** 2, axis=1)))
    value = lc.expected_loss(f, scheme, X, jax.random.key(0), trials=TRIALS)
    np.testing.assert_allclose(float(value), np.mean(losses), rtol=1e-10, atol=0)


def test_expected_loss_is_the_monte_carlo_mean_over_batches():
    scheme = lc.letcc(K, N, lam_dec=1e-3)
    X, key = calibration(seed=2), jax.random.key(5)
    value = lc.expected_loss(f, scheme, X, key, trials=TRIALS, stragglers=STRAGGLERS,
                                 faults=FAULTS)
    per_batch = [np.mean(lc.monte_carlo(f, scheme, x, k, trials=TRIALS, stragglers=STRAGGLERS,
                                        faults=FAULTS).mse)
                 for x, k in zip(X, jax.random.split(key, C))]
    np.testing.assert_allclose(float(value), np.mean(per_batch), rtol=1e-12, atol=0)
    # A single (K, d) batch is C = 1.
    single = lc.expected_loss(f, scheme, X[0], key, trials=TRIALS, stragglers=STRAGGLERS,
                                  faults=FAULTS)
    expected = np.mean(lc.monte_carlo(f, scheme, X[0], jax.random.split(key, 1)[0],
                                      trials=TRIALS, stragglers=STRAGGLERS, faults=FAULTS).mse)
    np.testing.assert_allclose(float(single), expected, rtol=1e-12, atol=0)


SPEC = tuning._Spec(
    kinds=(("alpha", "nodes"), ("beta", "nodes"), ("lam_enc", "log"), ("lam_dec", "log"),
           ("residual", "real")),
    rates=(("alpha", 0.02), ("beta", 0.02), ("lam_enc", 0.1), ("lam_dec", 0.1),
           ("residual", 3e-3)),
    pin_alpha_ends=False, pin_beta_ends=True, residual_l2=1e-3)


def objective_and_grad():
    return jax.jit(jax.value_and_grad(tuning._objective), static_argnums=(6, 7, 10))


def central_difference(fn, params, h):
    """d fn / d leaf for every entry of every leaf of the float64 params dict."""
    out = {}
    for name, leaf in params.items():
        leaf = np.asarray(leaf, np.float64)
        grad = np.empty_like(leaf)
        for i in np.ndindex(leaf.shape):
            step = np.zeros_like(leaf)
            step[i] = h
            hi = fn({**params, name: jnp.asarray(leaf + step)})
            lo = fn({**params, name: jnp.asarray(leaf - step)})
            grad[i] = (hi - lo) / (2 * h)
        out[name] = grad
    return out


def test_tuning_loss_gradient_matches_finite_differences(rng):
    """The gradient ``tune`` follows (nodes through the softmax-gap parametrisation, log
    lambdas, residual; stragglers and noise drawn from a fixed key) against central
    differences in float64."""
    template = lc.ResidualLeTCC.from_letcc(lc.letcc(K, N, lam_enc=1e-3, lam_dec=1e-3),
                                     jnp.asarray(0.05 * rng.standard_normal((N, K))))
    params = tuning._init_params(template, lc.LEARNABLE, SPEC)
    params["alpha"] = params["alpha"] + jnp.asarray(0.1 * rng.standard_normal(K + 1))
    train = {name: jnp.asarray(True) for name in lc.LEARNABLE}
    X, key, scale = calibration(seed=3), jax.random.key(7), jnp.asarray(0.5)
    vg = objective_and_grad()
    args = (train, template, X, key, scale, f, TRIALS, STRAGGLERS, FAULTS, SPEC)
    value, grads = vg(params, *args)
    assert np.isfinite(float(value))
    fd = central_difference(lambda p: float(vg(p, *args)[0]), params, 1e-6)
    for name in lc.LEARNABLE:
        np.testing.assert_allclose(np.asarray(grads[name]), fd[name], rtol=1e-5, atol=1e-8,
                                   err_msg=name)
        assert np.max(np.abs(fd[name])) > 1e-4, name  # every parameter matters
    # Frozen fields get exactly zero gradient and keep the template's values.
    frozen = {name: jnp.asarray(name == "lam_dec") for name in lc.LEARNABLE}
    _, grads = vg(params, frozen, *args[1:])
    for name in lc.LEARNABLE:
        if name != "lam_dec":
            np.testing.assert_array_equal(np.asarray(grads[name]), 0.0)
    scheme = tuning._scheme(template, params, frozen, SPEC)
    np.testing.assert_array_equal(np.asarray(scheme.alpha), np.asarray(template.alpha))
    np.testing.assert_array_equal(np.asarray(scheme.residual), np.asarray(template.residual))


# ------------------------------------------------------------------ tuning


def tune(scheme, **options):
    options = dict(stragglers=STRAGGLERS, faults=FAULTS, steps=40, trials=TRIALS,
                   validation_trials=TRIALS, validate_every=5, progress=False) | options
    return lc.tune(f, scheme, calibration(), jax.random.key(11), **options)


@pytest.fixture(scope="module")
def tuned():
    return tune(lc.letcc(K, N)), tune(lc.letcc(K, N), learn=lc.LEARNABLE)


def test_tuning_lowers_the_calibration_loss(tuned):
    start = lc.letcc(K, N)
    for result in tuned:
        assert result.best_step > 0
        np.testing.assert_array_equal(result.validation_steps, np.arange(0, 41, 5))
        assert result.loss.shape == (40,) and np.all(np.isfinite(result.loss))
        assert np.min(result.validation) == result.validation[result.best_step // 5]
        assert np.min(result.validation) < 0.7 * result.validation[0]
        # On fresh patterns (keys tuning never saw), still on the calibration inputs.
        before, after = (np.mean([float(lc.expected_loss(
            f, s, calibration(), jax.random.key(99 + i), trials=TRIALS, stragglers=STRAGGLERS,
            faults=FAULTS)) for i in range(8)]) for s in (start, result.scheme))
        assert after < 0.8 * before
        alpha, beta = np.asarray(result.scheme.alpha), np.asarray(result.scheme.beta)
        assert np.all(np.diff(alpha) > 0) and alpha[0] > -1 and alpha[-1] < 1
        assert np.all(np.diff(beta) > 0) and beta[0] == -1 and beta[-1] == 1
        assert float(result.scheme.lam_enc) > 0 and float(result.scheme.lam_dec) > 0
    plain, residual = tuned
    assert type(plain.scheme) is lc.LeTCC and type(plain.initial) is lc.LeTCC
    assert isinstance(residual.scheme, lc.ResidualLeTCC)
    assert np.max(np.abs(np.asarray(residual.scheme.residual))) > 1e-3


def test_tuning_only_the_decoder_lambda_keeps_everything_else():
    start = lc.letcc(K, N, lam_enc=1e-3)
    result = tune(start, learn=("lam_dec",), steps=10)
    for name in ("alpha", "beta", "lam_enc"):
        np.testing.assert_array_equal(np.asarray(getattr(result.scheme, name)),
                                      np.asarray(getattr(start, name)))
    # lam_dec = 0 starts just above zero, where it does not change the decoder yet.
    np.testing.assert_allclose(result.validation[0], float(lc.expected_loss(
        f, start, calibration(), jax.random.split(jax.random.key(11))[1], trials=TRIALS,
        stragglers=STRAGGLERS, faults=FAULTS)), rtol=1e-3, atol=0)
    assert 0 < float(result.initial.lam_dec) < 1e-6


def test_a_padded_scheme_tunes_as_its_unpadded_self():
    """Padding (Scheme.pad_workers) changes no draw, gradient or Adam step: the padded run
    follows the unpadded one to round-off (a few steps: Adam divides by the gradients' size,
    so round-off in near-zero gradients grows along a long run), and its padding still
    repeats the last worker (nodes and residual rows)."""
    options = dict(learn=lc.LEARNABLE, steps=4, validate_every=1)
    plain = tune(lc.letcc(K, N), **options)
    padded = tune(lc.letcc(K, N).pad_workers(N + 5), **options)
    got, want = padded.scheme, plain.scheme
    assert got.N == N + 5 and int(got.workers) == N and padded.best_step == plain.best_step
    np.testing.assert_allclose(padded.validation, plain.validation, rtol=1e-10, atol=0)
    np.testing.assert_allclose(padded.loss, plain.loss, rtol=1e-10, atol=0)
    for name in ("alpha", "lam_enc", "lam_dec"):
        np.testing.assert_allclose(np.asarray(getattr(got, name)),
                                   np.asarray(getattr(want, name)), rtol=1e-10, atol=0)
    beta, R = np.asarray(got.beta), np.asarray(got.residual)
    np.testing.assert_allclose(beta[:N], np.asarray(want.beta), rtol=0, atol=1e-12)
    np.testing.assert_allclose(R[:N], np.asarray(want.residual), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(beta[N:], np.full(5, beta[N - 1]))
    np.testing.assert_array_equal(R[N:], np.tile(R[N - 1], (5, 1)))
    assert beta[N - 1] == 1.0 and np.all(np.diff(beta[:N]) > 0)


def test_select_lambda_on_batches_minimises_the_expected_loss():
    X, key = calibration(seed=4, batches=2), jax.random.key(3)
    grid = (0.0, 1e-4, 1e-2)
    options = dict(trials=TRIALS, stragglers=STRAGGLERS, faults=FAULTS)
    search = lc.select_lambda(f, lc.letcc(K, N), X, key, lam_dec_grid=grid, **options)
    expected = [float(lc.expected_loss(
        f, lc.letcc(K, N, lam_dec=lam), X, key, **options)) for lam in grid]
    np.testing.assert_allclose(search.mse[0], expected, rtol=1e-12, atol=0)
    assert float(search.scheme.lam_dec) == grid[int(np.argmin(expected))]
    assert search.scheme.lam_dec.dtype == search.scheme.alpha.dtype


def test_errors_at_the_boundary():
    scheme = lc.letcc(K, N)
    with pytest.raises(TypeError, match="tune tunes a scheme"):
        lc.tune(f, "letcc", calibration(), jax.random.key(0))
    with pytest.raises(ValueError, match=r"tunable leaves \('alpha', 'beta'\), got \('lam_dec',\)"):
        tune(lc.bacc(K, N), learn=("lam_dec",))
    with pytest.raises(ValueError, match="learning_rates names \\['nope'\\]"):
        tune(scheme, learning_rates={"nope": 0.1})
    with pytest.raises(ValueError, match="learn must name"):
        tune(scheme, learn=("nodes",))
    with pytest.raises(ValueError, match="learn must name"):
        tune(scheme, learn=())
    with pytest.raises(ValueError, match="steps must be a positive int"):
        tune(scheme, steps=0)
    with pytest.raises(ValueError, match="learning_rate must be finite and > 0"):
        tune(scheme, learning_rate=-1.0)
    with pytest.raises(TypeError, match="lambda_learning_rate must be a real number"):
        tune(scheme, lambda_learning_rate="fast")
    with pytest.raises(ValueError, match="residual_l2"):
        tune(scheme, residual_l2=float("nan"))
    with pytest.raises(ValueError, match=r"X_cal must have shape \(K, d\) or \(C, K, d\)"):
        lc.tune(f, scheme, jnp.zeros((2, K + 1, D)), jax.random.key(0))
    bad = np.array(calibration())
    bad[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match="X_cal contains non-finite"):
        lc.tune(f, scheme, jnp.asarray(bad), jax.random.key(0))
    with pytest.raises(ValueError, match="needs at least 2 survivors"):
        tune(scheme, stragglers=lc.ExactStragglers(N - 1))
    # Learned worker nodes must start with their ends at -1 and 1 when the ends are pinned.
    inside = lc.letcc(K, N, points=(lc.chebyshev_first(K), lc.chebyshev_first(N)))
    with pytest.raises(ValueError, match="pinned ends"):
        tune(inside, learn=("beta",))
    with pytest.raises(ValueError, match="trials must be a positive int"):
        lc.expected_loss(f, scheme, calibration(), jax.random.key(0), trials=0)


def test_tune_tunes_any_scheme_through_its_declared_leaves():
    """A B-spline scheme (written on the public API): its nodes and both penalties (positive
    leaves, optimised as logs) are learned, and the calibration loss falls."""
    start = lc.bspline(K, N, n_basis=6, lam_enc=1e-4, lam_dec=1e-4)
    assert lc.tunable(start) == ("alpha", "beta", "lam_enc", "lam_dec")
    result = tune(start, steps=30)
    assert type(result.scheme) is lc.BSpline and result.best_step > 0
    assert np.min(result.validation) < 0.8 * result.validation[0]
    for name in ("alpha", "beta", "lam_enc", "lam_dec"):
        assert not np.array_equal(np.asarray(getattr(result.scheme, name)),
                                  np.asarray(getattr(start, name))), name
    assert float(result.scheme.lam_dec) > 0 and np.all(np.diff(result.scheme.beta) > 0)
    # one leaf only, at its own rate
    only = tune(start, learn=("lam_dec",), steps=5, learning_rates={"lam_dec": 0.5})
    np.testing.assert_array_equal(np.asarray(only.scheme.beta), np.asarray(start.beta))


def test_a_small_positive_leaf_starts_where_it_is(dtype):
    """Only a zero needs a starting value for its log: a float32 B-spline penalty of 1e-8
    starts at 1e-8, not at a floor above it."""
    scheme = lc.bspline(K, N, lam_enc=1e-8, lam_dec=1e-9)
    scheme = scheme.replace(alpha=scheme.alpha.astype(dtype), beta=scheme.beta.astype(dtype),
                            lam_enc=jnp.asarray(1e-8, dtype), lam_dec=jnp.asarray(1e-9, dtype))
    t = lc.tuner(f, scheme)
    np.testing.assert_allclose(np.asarray(t.scheme(t.init()).lam_enc), 1e-8, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(t.scheme(t.init()).lam_dec), 1e-9, rtol=1e-5)


def test_tuner_is_tunes_step_as_a_pure_function():
    """tuner's init/step, jitted and scanned, take tune's steps: the same training losses
    for the same keys (tune divides by its starting loss, the tuner by ``scale``)."""
    scheme, key, steps = lc.letcc(K, N), jax.random.key(11), 4
    result = tune(scheme, steps=steps, validate_every=steps)
    t = lc.tuner(f, scheme, stragglers=STRAGGLERS, faults=FAULTS, trials=TRIALS,
                 scale=float(result.validation[0]))
    k_train = jax.random.split(key)[0]
    keys = jnp.stack([jax.random.fold_in(k_train, i) for i in range(1, steps + 1)])
    step = jax.jit(t.step)
    state, losses = jax.lax.scan(lambda s, k: step(s, calibration(), k), t.init(), keys)
    np.testing.assert_allclose(np.asarray(losses), result.loss, rtol=1e-9)
    tuned = t.scheme(state)
    assert type(tuned) is lc.LeTCC
    with pytest.raises(ValueError, match="scale must be finite and > 0"):
        lc.tuner(f, scheme, scale=0.0)


def test_select_lambda_searches_any_scheme_with_lambdas():
    X, key = calibration(seed=5, batches=2), jax.random.key(4)
    options = dict(trials=TRIALS, stragglers=STRAGGLERS, faults=FAULTS)
    start = lc.bspline(K, N, n_basis=6)
    search = lc.select_lambda(f, start, X, key, lam_dec_grid=(1e-8, 1e-4, 1e-1), **options)
    expected = [float(lc.expected_loss(f, start.replace(lam_dec=lam), X, key, **options))
                for lam in (1e-8, 1e-4, 1e-1)]
    np.testing.assert_allclose(search.mse[0], expected, rtol=1e-12, atol=0)
    assert float(search.scheme.lam_enc) == float(start.lam_enc)  # kept by default
    with pytest.raises(ValueError, match="lam_dec must be finite and > 0"):
        lc.select_lambda(f, start, X, key, lam_dec_grid=(0.0, 1e-4), **options)
    with pytest.raises(TypeError, match="lam_enc and lam_dec, which BACC does not have"):
        lc.select_lambda(f, lc.bacc(K, N), X, key, **options)


# ------------------------------------------------------------------ the experiment


def test_experiment_summary_by_hand():
    from experiments import tuning as experiment

    rows = [{"function": "g", "N": 10, "K": 4, "S": 2, "rel_sigma": 0.0, "repeat": r,
             "scheme": name, "mse": value}
            for name, values in (("grid", [4.0, 2.0]), ("tuned", [1.0, 1.0]),
                                 ("bacc", [8.0, 8.0]))
            for r, value in enumerate(values)]
    (entry,) = experiment.summarise(rows)
    np.testing.assert_allclose([entry["grid_mean"], entry["grid_std"]], [3.0, 1.0], rtol=1e-15)
    np.testing.assert_allclose([entry["tuned_over_grid_mean"], entry["tuned_over_grid_std"]],
                               [0.375, 0.125], rtol=1e-15)
    assert entry["tuned_beats_grid"]  # 3 - 1 = 2 > max(1, 0)
    assert "—" in experiment.table([entry])  # schemes that did not run (GCV, residual)


@pytest.mark.slow
def test_experiment_smoke(tmp_path):
    from experiments import tuning as experiment

    rows, summary = experiment.main(["--smoke", "--functions", "sincos", "--out",
                                     str(tmp_path)])
    out = tmp_path / "tuning"
    assert {p.name for p in out.iterdir()} == {"results.json", "results.csv", "table.md",
                                                "tuning.png"}
    payload = json.loads((out / "results.json").read_text())
    config = payload["config"]
    assert "jax" in payload["environment"] and payload["seconds"] > 0
    expected = (len(config["settings"]["sincos"]) * len(config["rel_sigmas"])
                * config["repeats"] * len(experiment.SCHEMES))
    assert len(rows) == expected
    with (out / "results.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == expected
    for r in rows:
        assert np.isfinite(r["mse"]) and r["mse"] > 0
    assert len(summary) == len(config["settings"]["sincos"]) * len(config["rel_sigmas"])
    assert "| LeTCC (tuned) |" in (out / "table.md").read_text()
