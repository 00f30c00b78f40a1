"""Straggler models (which workers answer) and fault models (what answering workers send).

Statistical checks use many vmapped draws and loose bounds (about 5 standard deviations,
or a chi-square statistic far in the tail), so they fail on a real bias, not by chance.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import letcc_jax as lc

N, TRIALS = 10, 4000


def draws(model, N=N, trials=TRIALS, seed=0):
    keys = jax.random.split(jax.random.key(seed), trials)
    return np.asarray(jax.jit(jax.vmap(lambda k: model.sample(k, N)))(keys))


def test_no_stragglers():
    model = lc.NoStragglers()
    assert np.all(np.asarray(model.sample(jax.random.key(0), 7)))
    assert model.min_alive(7) == 7


@pytest.mark.parametrize("S", [0, 1, 3, 9])
def test_exact_stragglers_kill_exactly_S_uniformly(S):
    model = lc.ExactStragglers(S)
    masks = draws(model)
    assert masks.dtype == bool and masks.shape == (TRIALS, N)
    np.testing.assert_array_equal((~masks).sum(1), S)
    assert model.min_alive(N) == N - S
    if 0 < S:
        dead = (~masks).sum(0)  # how often each worker straggled
        expected = TRIALS * S / N
        chi2 = np.sum((dead - expected) ** 2 / expected)
        assert chi2 < 40.0, (chi2, dead)  # chi-square, 9 dof: P(> 40) ~ 1e-5
    # Different keys give different patterns; the same key the same pattern.
    if 0 < S < N:
        assert len({m.tobytes() for m in masks[:50]}) >= min(math.comb(N, S), 10)
        np.testing.assert_array_equal(np.asarray(model.sample(jax.random.key(3), N)),
                                      np.asarray(model.sample(jax.random.key(3), N)))


@pytest.mark.parametrize("S", [2, 3])
def test_exact_stragglers_pairs_are_uniform(S):
    """Every pair of workers straggles (S=2) or survives (S=3) together equally often."""
    masks = draws(lc.ExactStragglers(S), N=5, trials=TRIALS, seed=1)
    masks = ~masks if S == 2 else masks
    pairs = [tuple(np.nonzero(m)[0]) for m in masks]
    counts = np.array([pairs.count(p) for p in sorted(set(pairs))])
    assert len(counts) == 10  # all C(5, 2) pairs occur
    expected = TRIALS / 10
    assert np.sum((counts - expected) ** 2 / expected) < 40.0


def test_exact_stragglers_S_is_data_and_sweeps_in_one_call():
    """S is a leaf: new counts reuse one trace, and a swept S is every count at once, on the
    same draws (common random numbers: the stragglers of a smaller S are among those of a
    larger one), each point equal to its own call."""
    traces = []

    @jax.jit
    def draw(model, key):
        traces.append(1)
        return model.draw_mask(key, N)

    keys = jax.random.split(jax.random.key(5), 200)
    masks = {S: np.stack([np.asarray(draw(lc.ExactStragglers(S), k)) for k in keys])
             for S in (0, 1, 4, 9)}
    assert len(traces) == 1
    for S, m in masks.items():
        np.testing.assert_array_equal((~m).sum(1), S)
    assert np.all(masks[1] | ~masks[4]) and np.all(masks[4] | ~masks[9])  # nested

    f = lambda x: jnp.tanh(x[:2])  # noqa: E731
    X = jax.random.normal(jax.random.key(0), (4, 3))
    scheme, key = lc.letcc(4, N, lam_dec=1e-4), jax.random.key(1)
    swept = lc.monte_carlo(f, scheme, X, key, trials=20,
                           stragglers=lc.ExactStragglers(jnp.array([1, 4, 7]))).mse
    assert swept.shape == (3, 20)
    for i, S in enumerate((1, 4, 7)):
        one = lc.monte_carlo(f, scheme, X, key, trials=20, stragglers=lc.ExactStragglers(S))
        np.testing.assert_allclose(swept[i], one.mse, rtol=1e-6, atol=0)


@pytest.mark.parametrize("bad", [2.5, -1, True, np.array([1.0, 2.0]), np.array([1, -2]), "3"])
def test_exact_stragglers_reject_counts_that_are_not_ints(bad):
    with pytest.raises(ValueError, match="S must be an int >= 0"):
        lc.ExactStragglers(bad)


def test_exact_stragglers_swept_S_is_checked_against_N():
    model = lc.ExactStragglers(np.array([2, N]))
    assert model.min_alive(N + 1) == 1
    with pytest.raises(ValueError, match=f"use S < {N}"):
        model.check_workers(N)


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5])
def test_bernoulli_stragglers_rate(p):
    model = lc.BernoulliStragglers(p)
    masks = draws(model, N=50, trials=2000)
    rate = 1.0 - masks.mean()
    std = np.sqrt(p * (1 - p) / masks.size)
    np.testing.assert_allclose(rate, p, rtol=0, atol=5 * std + 1e-12)
    assert model.min_alive(50) == 0
    if p > 0:  # independence: the straggler count varies like a binomial
        counts = (~masks).sum(1)
        np.testing.assert_allclose(counts.var(), 50 * p * (1 - p), rtol=0.15, atol=0)


def test_latency_stragglers_keep_the_fastest():
    model = lc.LatencyStragglers(wait_for=6, shift=0.5, rate=2.0)
    for seed in range(20):
        key = jax.random.key(seed)
        alive = np.asarray(model.sample(key, N))
        times = np.asarray(model.finish_times(key, N))
        assert alive.sum() == 6
        assert times[alive].max() < times[~alive].min()
        assert np.all(times >= 0.5)
    assert model.min_alive(N) == 6


def test_latency_stragglers_slow_workers_are_the_stragglers():
    model = lc.LatencyStragglers(wait_for=N - 3, slow=3, slowdown=1e3)
    masks = draws(model, trials=200)
    np.testing.assert_array_equal(masks.sum(1), N - 3)
    for seed in range(5):
        key = jax.random.key(seed)
        times = np.asarray(model.finish_times(key, N))
        slow = times > 100.0  # shift 1 + Exp(1) never reaches 100 in practice; 1e3 x does
        assert slow.sum() == 3
        np.testing.assert_array_equal(np.asarray(model.sample(key, N)), ~slow)
    # Which workers are slow is itself random and uniform.
    dead = (~masks).sum(0)
    assert np.all(dead > 0.3 * 200 * 3 / N)


@pytest.mark.parametrize("sigma", [0.0, 0.3])
def test_gaussian_noise_std(sigma, dtype):
    Y = np.full((2000, 5), 2.0, dtype)
    noisy = lc.GaussianNoise(sigma).apply(jax.random.key(1), jnp.asarray(Y))
    assert noisy.dtype == dtype and noisy.shape == Y.shape
    noise = np.asarray(noisy, np.float64) - 2.0
    n = noise.size
    np.testing.assert_allclose(noise.mean(), 0.0, rtol=0, atol=5 * sigma / np.sqrt(n) + 1e-6)
    np.testing.assert_allclose(noise.std(), sigma, rtol=5 * np.sqrt(0.5 / n), atol=1e-6)


@pytest.mark.parametrize("count", [0, 3])
def test_adversaries_uniform(count, dtype):
    rng = np.random.default_rng(2)
    Y = rng.standard_normal((N, 4)).astype(dtype) + 10.0  # honest outputs far from fakes
    model = lc.Adversaries(count, magnitude=2.5)
    for seed in range(10):
        out = np.asarray(model.apply(jax.random.key(seed), jnp.asarray(Y)))
        assert out.dtype == dtype
        changed = np.any(out != Y, axis=1)
        assert changed.sum() == count
        np.testing.assert_array_equal(out[~changed], Y[~changed])
        assert np.all(np.abs(out[changed]) <= 2.5)


def test_adversaries_uniform_fill_the_bound():
    Y = jnp.zeros((400, 50))
    out = np.asarray(lc.Adversaries(400, magnitude=3.0).apply(jax.random.key(0), Y))
    assert np.abs(out).max() <= 3.0 and np.abs(out).max() > 2.99
    np.testing.assert_allclose(out.std(), 3.0 / np.sqrt(3.0), rtol=0.02, atol=0)


def test_adversaries_flip():
    Y = np.random.default_rng(3).standard_normal((N, 4)) + 5.0
    out = np.asarray(lc.Adversaries(2, magnitude=3.0, mode="flip").apply(jax.random.key(4),
                                                                         jnp.asarray(Y)))
    changed = np.any(out != Y, axis=1)
    assert changed.sum() == 2
    np.testing.assert_allclose(out[changed], -3.0 * Y[changed], rtol=1e-15, atol=0)


def test_failed_workers_are_erasures(jit_decode):
    scheme = lc.letcc(4, N)
    Y = np.random.default_rng(5).standard_normal((N, 3))
    for seed in range(5):
        out = np.asarray(lc.FailedWorkers(3).apply(jax.random.key(seed), jnp.asarray(Y)))
        failed = np.all(np.isnan(out), axis=1)
        assert failed.sum() == 3
        np.testing.assert_array_equal(out[~failed], Y[~failed])
        decoded = jit_decode(scheme, jnp.asarray(out), jnp.ones(N, bool))
        masked = jit_decode(scheme, jnp.asarray(Y), jnp.asarray(~failed))
        np.testing.assert_allclose(np.asarray(decoded), np.asarray(masked), rtol=1e-13,
                                   atol=1e-13)


MODELS = {
    "none": (lc.NoStragglers(), []),
    "exact": (lc.ExactStragglers(2), [2]),
    "bernoulli": (lc.BernoulliStragglers(0.1), [0.1]),
    "latency": (lc.LatencyStragglers(3, shift=0.5, rate=2.0, slow=1, slowdown=4.0), [0.5, 2.0, 4.0]),
    "noise": (lc.GaussianNoise(0.1), [0.1]),
    "adversaries": (lc.Adversaries(1, magnitude=2.0, mode="flip"), [2.0]),
    "failed": (lc.FailedWorkers(1), []),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_models_are_pytrees_with_numeric_leaves_and_static_sizes(name):
    model, values = MODELS[name]
    leaves, treedef = jax.tree.flatten(model)
    assert leaves == values  # every numeric parameter is a leaf (sweepable, differentiable)
    rebuilt = jax.tree.unflatten(treedef, leaves)
    assert type(rebuilt) is type(model)
    for field in dataclasses.fields(model):
        assert getattr(rebuilt, field.name) == getattr(model, field.name), field.name
    with pytest.raises(Exception):
        model.S = 3  # immutable
    # Sizes are static: they are part of the structure, so a different size is a
    # different structure (a new compilation), a different value is not. S is a count
    # that is a leaf: a new S is new data.
    if name == "latency":
        assert jax.tree.structure(lc.LatencyStragglers(4, shift=0.5, rate=2.0, slow=1,
                                                       slowdown=4.0)) != treedef
    if name == "exact":
        assert jax.tree.structure(lc.ExactStragglers(3)) == treedef
    if values:
        other = jax.tree.unflatten(treedef, [2 * v for v in values])
        assert jax.tree.structure(other) == treedef


def test_new_parameter_values_do_not_recompile():
    traces = []

    @jax.jit
    def draw(model, key):
        traces.append(1)
        return model.apply(key, jnp.ones((N, 2)))

    for sigma in (0.1, 0.2, 0.3):
        draw(lc.GaussianNoise(sigma), jax.random.key(0))
    assert len(traces) == 1


def test_gradients_through_model_parameters():
    """A parameter is a differentiable leaf: d/dsigma of the mean squared noise is 2 sigma
    times the mean squared standard normal draw."""
    key = jax.random.key(3)

    def power(sigma):
        return jnp.mean(lc.GaussianNoise(sigma).apply(key, jnp.zeros((N, 400))) ** 2)

    z2 = float(power(1.0))
    np.testing.assert_allclose(float(jax.grad(power)(0.3)), 2 * 0.3 * z2, rtol=1e-12, atol=0)
