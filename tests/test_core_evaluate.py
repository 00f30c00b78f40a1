"""run_coded, monte_carlo and the metrics: definitions on hand-computed cases, and Monte
Carlo trials equal to a Python loop over run_coded with the same keys."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import letcc_jax as lc

K, N, S = 8, 24, 5


def f(x):
    """A smooth nonlinear 'model': R^2 -> R^3 (module level, so hashable and static)."""
    return jnp.stack([jnp.sin(2 * x[0]) + x[1] ** 2, jnp.cos(3 * x[1]), x[0] * x[1]])


def f_scalar(x):
    return jnp.sum(x**2)


def inputs(seed=0):
    return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, (K, 2)))


def truth(X):
    return np.asarray(jax.vmap(f)(X))


# ---------------------------------------------------------------------------- metrics


def test_mse_definition():
    estimate = jnp.asarray([[1.0, 2.0], [3.0, 4.0], [0.0, 0.0]])
    target = jnp.asarray([[1.0, 0.0], [0.0, 4.0], [1.0, 1.0]])
    # per-input squared norms 4, 9, 2; mean over the K = 3 inputs
    np.testing.assert_allclose(float(lc.mse(estimate, target)), 5.0, rtol=1e-15, atol=0)


def test_relacc_definition():
    estimate = jnp.asarray([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # argmax 1 0 1 1
    target = jnp.asarray([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])  # argmax 1 1 1 0
    labels = jnp.asarray([1, 1, 0, 0])
    rel, agreement = lc.relacc(estimate, target, labels)
    # accuracy of estimate 1/4, of target 3/4 -> RelAcc 1/3; argmaxes agree on 2 of 4.
    np.testing.assert_allclose(float(rel), 1.0 / 3.0, rtol=1e-15, atol=0)
    np.testing.assert_allclose(float(agreement), 0.5, rtol=1e-15, atol=0)
    rel0, _ = lc.relacc(estimate, target, jnp.asarray([0, 0, 0, 1]))  # target accuracy 0
    assert np.isnan(float(rel0))


def test_relacc_follows_the_estimate_dtype(dtype):
    # jnp.mean of a boolean array is float32 even with x64: the rates must be cast.
    estimate = jnp.asarray([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]], dtype)
    labels = jnp.asarray([1, 1, 0])
    rel, agreement = lc.relacc(estimate, estimate[::-1], labels)
    assert rel.dtype == dtype and agreement.dtype == dtype
    assert lc.mse(estimate, estimate[::-1]).dtype == dtype


# ------------------------------------------------------------------------- run_coded


def test_run_coded_decodes_the_pattern_it_reports(jit_encode, jit_decode):
    scheme = lc.letcc(K, N)
    X = inputs()
    result = lc.run_coded(f, scheme, X, jax.random.key(1), stragglers=lc.ExactStragglers(S))
    assert isinstance(result, lc.CodedResult)
    assert result.estimate.shape == (K, 3) and result.alive.shape == (N,)
    assert int(result.alive.sum()) == N - S
    honest = jax.vmap(f)(jit_encode(scheme, X))
    np.testing.assert_allclose(np.asarray(result.outputs), np.asarray(honest), rtol=1e-14,
                               atol=1e-14)
    np.testing.assert_allclose(np.asarray(result.estimate),
                               np.asarray(jit_decode(scheme, result.outputs, result.alive)),
                               rtol=1e-14, atol=1e-14)
    assert np.all(np.asarray(result.recovered))


def test_run_coded_failed_workers_become_erasures(jit_decode):
    scheme = lc.bacc(K, N)
    result = lc.run_coded(f, scheme, inputs(), jax.random.key(2),
                          stragglers=lc.ExactStragglers(3), faults=(lc.FailedWorkers(4),))
    nan_rows = np.all(np.isnan(np.asarray(result.outputs)), axis=1)
    assert nan_rows.sum() == 4
    assert not np.any(np.asarray(result.alive)[nan_rows])
    assert N - 7 <= int(result.alive.sum()) <= N - 4
    assert np.all(np.isfinite(np.asarray(result.estimate)))
    np.testing.assert_allclose(np.asarray(result.estimate),
                               np.asarray(jit_decode(scheme, result.outputs, result.alive)),
                               rtol=1e-14, atol=1e-14)


def test_run_coded_scalar_outputs():
    result = lc.run_coded(f_scalar, lc.uncoded(K, N), inputs(), jax.random.key(3))
    expected = np.sum(np.asarray(inputs()) ** 2, axis=1, keepdims=True)
    np.testing.assert_allclose(np.asarray(result.estimate), expected, rtol=1e-14, atol=1e-14)


def test_run_coded_raises_when_inputs_are_lost():
    scheme = lc.uncoded(K, K + 4)  # inputs 4..7 have a single replica
    with pytest.raises(ValueError, match="no replica of input"):
        for seed in range(20):  # 2 of 12 stragglers miss all of workers 4..7 w.p. 28/66
            lc.run_coded(f, scheme, inputs(), jax.random.key(seed),
                         stragglers=lc.ExactStragglers(2))


# ----------------------------------------------------------------------- monte_carlo

# Each (trials, stragglers, faults, labels?, batch) is a new compilation of monte_carlo:
# the tests share a few configurations.
SIGMA, TRIALS = 0.3, 6
LABELS = jnp.asarray([0, 1, 2, 0, 1, 2, 0, 1])  # f's argmax is right on 3 of the 8 inputs


def test_monte_carlo_trials_equal_a_loop_over_run_coded():
    scheme = lc.letcc(K, N, lam_dec=1e-4)
    X = inputs()
    labels = LABELS
    key, trials = jax.random.key(4), TRIALS
    stragglers, faults = lc.ExactStragglers(S), (lc.GaussianNoise(SIGMA),)
    mc = lc.monte_carlo(f, scheme, X, key, trials=trials, stragglers=stragglers, faults=faults,
                        labels=labels)
    assert isinstance(mc, lc.MonteCarloResult)
    assert all(np.shape(v) == (trials,) for v in mc)
    target = truth(X)
    for i, k in enumerate(jax.random.split(key, trials)):
        one = lc.run_coded(f, scheme, X, k, stragglers=stragglers, faults=faults)
        est = np.asarray(one.estimate)
        err = np.mean(np.sum((est - target) ** 2, 1))
        np.testing.assert_allclose(float(mc.mse[i]), err, rtol=1e-12, atol=0)
        np.testing.assert_allclose(float(mc.rmse[i]), np.sqrt(err), rtol=1e-12, atol=0)
        assert int(mc.survivors[i]) == int(one.alive.sum()) == N - S
        acc = np.mean(np.argmax(est, 1) == np.asarray(labels))
        acc_ref = np.mean(np.argmax(target, 1) == np.asarray(labels))
        np.testing.assert_allclose(float(mc.relacc[i]), acc / acc_ref, rtol=1e-12, atol=0)
        np.testing.assert_allclose(float(mc.agreement[i]),
                                   np.mean(np.argmax(est, 1) == np.argmax(target, 1)),
                                   rtol=1e-12, atol=0)
        assert float(mc.recovered[i]) == 1.0
    assert len(set(np.asarray(mc.mse).tolist())) == trials  # the trials really differ
    assert len(set(np.asarray(mc.relacc).tolist())) > 1  # and so does RelAcc


def test_summary_is_mean_and_std_over_trials():
    mc = lc.monte_carlo(f, lc.letcc(K, N, lam_dec=1e-4), inputs(), jax.random.key(5),
                        trials=TRIALS, stragglers=lc.ExactStragglers(S),
                        faults=(lc.GaussianNoise(SIGMA),))
    summary = mc.summary()
    assert summary["trials"] == TRIALS
    for name in mc._fields:
        values = np.asarray(getattr(mc, name), np.float64)
        if name in ("relacc", "agreement"):  # no labels given
            assert np.all(np.isnan(values)) and np.isnan(summary[f"{name}_mean"])
            continue
        np.testing.assert_allclose(summary[f"{name}_mean"], values.mean(), rtol=1e-15, atol=0)
        np.testing.assert_allclose(summary[f"{name}_std"], values.std(), rtol=1e-15, atol=0)
    assert summary["failure_rate"] == 0.0
    assert summary["mse_std"] > 0.0


def test_summary_hand_computed():
    result = lc.MonteCarloResult(
        mse=jnp.asarray([1.0, 3.0]), rmse=jnp.asarray([1.0, np.sqrt(3.0)]),
        recovered=jnp.asarray([1.0, 0.5]), survivors=jnp.asarray([4, 2]),
        relacc=jnp.asarray([1.0, 0.5]), agreement=jnp.asarray([1.0, 0.0]))
    s = result.summary()
    assert s["trials"] == 2
    np.testing.assert_allclose([s["mse_mean"], s["mse_std"]], [2.0, 1.0], rtol=1e-15, atol=0)
    np.testing.assert_allclose([s["survivors_mean"], s["survivors_std"]], [3.0, 1.0],
                               rtol=1e-15, atol=0)
    np.testing.assert_allclose(s["failure_rate"], 0.5, rtol=0, atol=0)


def test_unrecovered_inputs_count_as_failures():
    scheme = lc.uncoded(4, 6)  # inputs 0 and 1 have two replicas, inputs 2 and 3 one
    X = jnp.asarray(np.random.default_rng(6).uniform(-1, 1, (4, 2)))
    mc = lc.monte_carlo(f, scheme, X, jax.random.key(6), trials=40,
                        stragglers=lc.ExactStragglers(1))
    recovered = np.asarray(mc.recovered)
    # One straggler among six: it holds the only replica of input 2 or 3 with prob. 2/6.
    assert 0 < np.mean(recovered < 1) < 1
    np.testing.assert_array_equal(np.unique(recovered), [0.75, 1.0])
    assert mc.summary()["failure_rate"] == np.mean(recovered < 1)
    # Batching the trials (7 does not divide 40) changes nothing.
    for batch_size in (7,):
        again = lc.monte_carlo(f, scheme, X, jax.random.key(6), trials=40,
                               stragglers=lc.ExactStragglers(1), batch_size=batch_size)
        for name in mc._fields:  # vectorised code may round differently
            np.testing.assert_allclose(np.asarray(getattr(again, name)),
                                       np.asarray(getattr(mc, name)), rtol=1e-13, atol=1e-15)
    # An unrecovered input is estimated as 0 and counts in the loss.
    target = np.asarray(jax.vmap(f)(X))
    lost_losses = np.asarray(mc.mse)[recovered < 1]
    possible = {np.sum(target[k] ** 2) / 4 for k in (2, 3)}
    for value in lost_losses:
        assert min(abs(value - p) for p in possible) < 1e-12
    np.testing.assert_allclose(np.asarray(mc.mse)[recovered == 1], 0.0, rtol=0, atol=1e-28)


def test_noise_increases_error():
    scheme = lc.letcc(K, N)
    X = inputs()
    key = jax.random.key(7)
    faults = [(), (lc.GaussianNoise(SIGMA),)]
    means = [float(np.mean(lc.monte_carlo(f, scheme, X, key, trials=TRIALS,
                                          stragglers=lc.ExactStragglers(S), faults=fault,
                                          labels=LABELS).mse))
             for fault in faults]
    assert means[1] > 2 * means[0], means  # the noise variance 0.09 dominates the error


def test_monte_carlo_over_two_devices_equals_one_device():
    """Trials shared between two CPU devices (a fresh interpreter with jax_num_cpu_devices
    = 2) give the same per-trial results as one device, also when the trial count does not
    divide evenly; noise faults and RelAcc included."""
    import os
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import jax
        jax.config.update("jax_num_cpu_devices", 2)
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp, numpy as np
        import letcc_jax as lc
        assert len(jax.devices()) == 2
        W = jax.random.normal(jax.random.PRNGKey(0), (3, 4))
        def f(x):
            return jnp.tanh(x @ W)
        X = jax.random.normal(jax.random.PRNGKey(1), (6, 3))
        labels = jnp.arange(6) % 4
        for trials in (7, 64):
            kw = dict(trials=trials, stragglers=lc.ExactStragglers(5), labels=labels,
                      faults=(lc.GaussianNoise(0.01),), batch_size=4)
            scheme = lc.letcc(6, 20, lam_dec=1e-4)
            both = lc.monte_carlo(f, scheme, X, jax.random.PRNGKey(2), **kw)
            one = lc.monte_carlo(f, scheme, X, jax.random.PRNGKey(2), devices=jax.devices()[:1], **kw)
            assert both.mse.shape == (trials,)
            for a, b in zip(both, one):
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-13, atol=0)
        print("ok")
    """)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")


def test_monte_carlo_rejects_bad_batch_size_and_empty_devices():
    f = lambda x: x  # noqa: E731
    X = jnp.ones((4, 2))
    scheme = lc.letcc(4, 8)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        lc.monte_carlo(f, scheme, X, jax.random.PRNGKey(0), batch_size=0)
    with pytest.raises(ValueError, match="at least one device"):
        lc.monte_carlo(f, scheme, X, jax.random.PRNGKey(0), devices=[])
