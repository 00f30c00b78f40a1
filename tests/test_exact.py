"""replication_loss: replication's expected loss in closed form, against exhaustive
enumeration of the straggler sets with an independent NumPy decode, against SciPy's
hypergeometric and binomial laws at large N, and against Monte Carlo; its sweeps, dtypes,
transformations and errors."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from compiles import compilations
from scipy import stats

import letcc_jax as lc

K = 3
SIGMA = 0.3
TOL = {np.float32: dict(rtol=2e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}


def f(x):
    """A smooth nonlinear 'model': R^2 -> R^3 (module level, so hashable and static)."""
    return jnp.stack([jnp.sin(2 * x[0]) + x[1] ** 2, jnp.cos(3 * x[1]), x[0] * x[1]])


def f_nan(x):
    return jnp.log(x)  # NaN on negative inputs


class Unhashable:
    __hash__ = None

    def __call__(self, x):
        return x


def inputs(rng, dtype, shape=(K, 2)):
    return jnp.asarray(rng.uniform(-1, 1, shape), dtype)


# -------------------------------------------------------------- NumPy reference


def exact_patterns(N, S):
    """Every set of S stragglers, each with probability 1 / C(N, S), as (alive, weight)."""
    for late in itertools.combinations(range(N), S):
        alive = np.ones(N, bool)
        alive[list(late)] = False
        yield alive, 1.0 / math.comb(N, S)


def bernoulli_patterns(N, p):
    """All 2^N masks, each with its probability under independent stragglers."""
    for alive in itertools.product([False, True], repeat=N):
        alive = np.array(alive)
        yield alive, p ** np.sum(~alive) * (1 - p) ** np.sum(alive)


def reference(truth, N, patterns, order=None, fallback=None, sigma=0.0):
    """(per_input (K,), p_lost (K,)) by decoding every pattern: an input all of whose
    replicas straggle costs ||f(x_k) - fallback||^2; one with j answering replicas (their
    mean) costs m sigma^2 / j in expectation."""
    truth = np.asarray(truth, np.float64)
    K, m = truth.shape
    node = np.arange(N) % K
    owners = node if order is None else np.asarray(order)[node]
    fallback = np.zeros(m) if fallback is None else np.asarray(fallback, np.float64)
    gap = np.sum((truth - fallback) ** 2, axis=1)
    per_input, p_lost, total = np.zeros(K), np.zeros(K), 0.0
    for alive, weight in patterns:
        total += weight
        for k in range(K):
            j = np.sum(alive[owners == k])
            if j == 0:
                per_input[k] += weight * gap[k]
                p_lost[k] += weight
            else:
                per_input[k] += weight * m * sigma**2 / j
    np.testing.assert_allclose(total, 1.0, rtol=1e-12, atol=0)
    return per_input, p_lost


def check_against(result, expected, dtype):
    per_input, p_lost = expected
    assert result.mse.dtype == dtype and result.per_input.dtype == dtype
    np.testing.assert_allclose(result.p_lost, p_lost, **TOL[dtype])
    np.testing.assert_allclose(result.per_input, per_input, **TOL[dtype])
    np.testing.assert_allclose(result.mse, np.mean(per_input), **TOL[dtype])


SETUPS = [  # (N, order, fallback): N = 7 gives inputs 3, 2 and 2 replicas
    (7, None, None),
    (7, [2, 0, 1], [0.5, -1.0, 2.0]),
    (8, [1, 2, 0], None),
    (8, None, [0.5, -1.0, 2.0]),
]


# --------------------------------------------------------- against enumeration


@pytest.mark.parametrize("N, order, fallback", SETUPS)
def test_exact_stragglers_match_enumeration_for_every_S(dtype, rng, N, order, fallback):
    X = inputs(rng, dtype)
    truth = jax.vmap(f)(X.astype(np.float64))
    scheme = lc.uncoded(K, N, order=order,
                        fallback=None if fallback is None else np.asarray(fallback, dtype))
    for S in range(N - K + 1):  # more stragglers leave fewer than K survivors (an error)
        result = lc.replication_loss(f, scheme, X, stragglers=lc.ExactStragglers(S),
                                     faults=[lc.GaussianNoise(SIGMA)])
        expected = reference(truth, N, exact_patterns(N, S), order, fallback, SIGMA)
        check_against(result, expected, dtype)


@pytest.mark.parametrize("N, order, fallback", SETUPS)
@pytest.mark.parametrize("p", [0.0, 0.25, 0.6])
def test_bernoulli_stragglers_match_enumeration(dtype, rng, N, order, fallback, p):
    X = inputs(rng, dtype)
    truth = jax.vmap(f)(X.astype(np.float64))
    scheme = lc.uncoded(K, N, order=order,
                        fallback=None if fallback is None else np.asarray(fallback, dtype))
    result = lc.replication_loss(f, scheme, X, stragglers=lc.BernoulliStragglers(p),
                                 faults=[lc.GaussianNoise(SIGMA)])
    check_against(result, reference(truth, N, bernoulli_patterns(N, p), order, fallback, SIGMA),
                  dtype)


def test_no_stragglers_leave_only_the_noise_of_the_mean(dtype, rng):
    X = inputs(rng, dtype)
    result = lc.replication_loss(f, lc.uncoded(K, 7), X, faults=[lc.GaussianNoise(SIGMA)])
    m, replicas = 3, np.array([3, 2, 2])
    np.testing.assert_array_equal(np.asarray(result.p_lost), 0.0)
    np.testing.assert_allclose(result.per_input, m * SIGMA**2 / replicas, **TOL[dtype])
    # Exactly S = 0 stragglers and p = 0 are the same model.
    for model in (lc.ExactStragglers(0), lc.BernoulliStragglers(0.0)):
        other = lc.replication_loss(f, lc.uncoded(K, 7), X, stragglers=model,
                                    faults=[lc.GaussianNoise(SIGMA)])
        np.testing.assert_allclose(other.per_input, result.per_input, **TOL[dtype])


def test_noise_models_add_their_variances(rng):
    X = inputs(rng, np.float64)
    model = lc.BernoulliStragglers(0.3)
    two = lc.replication_loss(f, lc.uncoded(K, 7), X, stragglers=model,
                              faults=[lc.GaussianNoise(0.3), lc.GaussianNoise(0.4)])
    one = lc.replication_loss(f, lc.uncoded(K, 7), X, stragglers=model,
                              faults=lc.GaussianNoise(0.5))  # 0.3^2 + 0.4^2 = 0.5^2
    np.testing.assert_allclose(two.per_input, one.per_input, rtol=1e-12, atol=0)


def test_median_of_replicas_is_exact_without_noise_and_refused_with_it(rng):
    X = inputs(rng, np.float64)
    model = lc.ExactStragglers(3)
    mean = lc.replication_loss(f, lc.uncoded(K, 7), X, stragglers=model)
    median = lc.replication_loss(f, lc.uncoded(K, 7, combine="median"), X, stragglers=model)
    np.testing.assert_allclose(median.per_input, mean.per_input, rtol=1e-14, atol=0)
    with pytest.raises(ValueError, match="median.*monte_carlo"):
        lc.replication_loss(f, lc.uncoded(K, 7, combine="median"), X, stragglers=model,
                            faults=[lc.GaussianNoise(0.1)])


# -------------------------------------------------------------------- large N


@pytest.mark.parametrize("S", [0, 1000, 60_000, 98_900])
def test_hypergeometric_at_large_N_matches_scipy(dtype, S):
    N, K_big = 100_000, 1_000  # 100 replicas of every input; C(N, S) overflows any float
    X = jnp.zeros((K_big, 1), dtype)  # sin(0) = 0: the loss is the noise term alone
    result = lc.replication_loss(jnp.sin, lc.uncoded(K_big, N), X,
                                 stragglers=lc.ExactStragglers(S),
                                 faults=[lc.GaussianNoise(1.0)])
    r = 100
    late = stats.hypergeom(N, r, S)  # replicas among the S stragglers
    i = np.arange(r)
    expected_inverse = np.sum(late.pmf(i) / (r - i))
    assert np.all(np.isfinite(result.per_input))
    # Below the dtype's smallest normal number (e.g. 6e-203 at S = 1000) is 0 in float32.
    tol = dict(rtol=1e-5 if dtype == np.float32 else 1e-9, atol=np.finfo(dtype).tiny)
    np.testing.assert_allclose(result.p_lost, late.pmf(r), **tol)
    np.testing.assert_allclose(result.per_input, expected_inverse, **tol)


def test_binomial_with_a_thousand_replicas_matches_scipy(dtype):
    N, p = 2001, 0.3  # input 0 has 1001 replicas, input 1 has 1000
    result = lc.replication_loss(jnp.sin, lc.uncoded(2, N), jnp.zeros((2, 1), dtype),
                                 stragglers=lc.BernoulliStragglers(p),
                                 faults=[lc.GaussianNoise(1.0)])
    expected = []
    for r in (1001, 1000):
        j = np.arange(1, r + 1)
        expected.append(np.sum(stats.binom(r, 1 - p).pmf(j) / j))
    assert np.all(np.isfinite(result.per_input))
    # float32: log C(1000, j) ~ 690 carries an absolute rounding error of ~4e-5.
    np.testing.assert_allclose(result.per_input, expected,
                               rtol=1e-3 if dtype == np.float32 else 1e-10, atol=0)
    np.testing.assert_array_equal(np.asarray(result.p_lost), 0.0)  # 0.3^1000 underflows


# ---------------------------------------------------------------- Monte Carlo


TRIALS = 20_000  # one compilation serves every Monte Carlo check of a straggler model


def monte_carlo_check(X, stragglers, sigma):
    """The closed form lies within 5 standard errors of a Monte Carlo mean (a 6e-7 chance
    of a false alarm); returns it and the per-trial losses."""
    scheme = lc.uncoded(K, 7, order=[1, 2, 0], fallback=jnp.array([0.5, -1.0, 2.0]))
    faults = [lc.GaussianNoise(sigma)]
    exact = lc.replication_loss(f, scheme, X, stragglers=stragglers, faults=faults)
    mse = np.asarray(lc.monte_carlo(f, scheme, X, jax.random.key(0), trials=TRIALS,
                                    stragglers=stragglers, faults=faults).mse, np.float64)
    error = np.std(mse) / np.sqrt(TRIALS)
    assert abs(np.mean(mse) - float(exact.mse)) < 5 * error, (np.mean(mse), float(exact.mse),
                                                              error)
    return exact, mse


@pytest.mark.parametrize("p, sigma", [(0.55, 0.0), (0.3, SIGMA), (0.0, SIGMA)])
def test_monte_carlo_converges_to_the_closed_form(rng, p, sigma):
    exact, mse = monte_carlo_check(inputs(rng, np.float64), lc.BernoulliStragglers(p), sigma)
    if sigma == 0:  # every trial's loss comes from lost inputs: they must be frequent
        assert 0.1 < np.mean(mse > 0) < 0.9
    if p == 0:  # no losses: the noise term alone, where Monte Carlo is sharp
        np.testing.assert_array_equal(np.asarray(exact.p_lost), 0.0)


def test_noise_term_under_exact_stragglers_matches_monte_carlo(rng):
    exact, _ = monte_carlo_check(inputs(rng, np.float64), lc.ExactStragglers(3), SIGMA)
    # P(lost) = C(4, 0) / C(7, 3) = 1/35 with 3 replicas (input order[0] = 1), and
    # C(5, 1) / C(7, 3) = 5/35 with 2.
    np.testing.assert_allclose(exact.p_lost, [5 / 35, 1 / 35, 5 / 35], rtol=1e-12, atol=0)


def test_rare_losses_are_counted_exactly():
    X = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (10, 2)))
    scheme, model = lc.uncoded(10, 40), lc.BernoulliStragglers(0.1)
    exact = lc.replication_loss(f, scheme, X, stragglers=model)
    np.testing.assert_allclose(exact.p_lost, 0.1**4, rtol=1e-12, atol=0)
    # Exactly the share of patterns that lose an input, weighted by what it costs.
    gap = np.sum(np.asarray(jax.vmap(f)(X)) ** 2, axis=1)
    np.testing.assert_allclose(exact.mse, 1e-4 * np.mean(gap), rtol=1e-12, atol=0)


# ------------------------------------------------------------------- sweeps


def test_sweeps_equal_separate_calls(rng):
    X = inputs(rng, np.float64, (2, K, 2))  # C = 2 batches
    ps = np.array([0.1, 0.4, 0.7])[:, None, None]  # (3, 1, 1)
    sigmas = np.array([0.0, 0.2])[:, None]  # (2, 1)
    fallbacks = rng.normal(size=(4, 3))  # (4, m): a sweep of 4 fallbacks
    scheme = lc.uncoded(K, 7)
    swept = lc.replication_loss(f, scheme.replace(fallback=jnp.asarray(fallbacks)), X,
                                stragglers=lc.BernoulliStragglers(jnp.asarray(ps)),
                                faults=[lc.GaussianNoise(jnp.asarray(sigmas))])
    assert swept.mse.shape == (3, 2, 4, 2)
    assert swept.per_input.shape == (3, 2, 4, 2, K)
    assert swept.p_lost.shape == (3, 2, 4, K)
    for a, b, c in itertools.product(range(3), range(2), range(4)):
        one = lc.replication_loss(f, scheme.replace(fallback=jnp.asarray(fallbacks[c])), X,
                                  stragglers=lc.BernoulliStragglers(float(ps[a, 0, 0])),
                                  faults=[lc.GaussianNoise(float(sigmas[b, 0]))])
        np.testing.assert_allclose(swept.per_input[a, b, c], one.per_input, rtol=1e-13, atol=0)
        np.testing.assert_allclose(swept.p_lost[a, b, c], one.p_lost, rtol=1e-13, atol=0)
        for batch in range(2):
            single = lc.replication_loss(
                f, scheme.replace(fallback=jnp.asarray(fallbacks[c])), X[batch],
                stragglers=lc.BernoulliStragglers(float(ps[a, 0, 0])),
                faults=[lc.GaussianNoise(float(sigmas[b, 0]))])
            assert single.mse.shape == () and single.per_input.shape == (K,)
            np.testing.assert_allclose(swept.mse[a, b, c, batch], single.mse, rtol=1e-13,
                                       atol=0)


def test_a_new_value_is_not_a_new_compilation(rng):
    X = inputs(rng, np.float64)
    scheme = lc.uncoded(K, 7)

    def call(p, sigma):
        return lc.replication_loss(f, scheme, X, stragglers=lc.BernoulliStragglers(p),
                                   faults=[lc.GaussianNoise(sigma)]).mse

    call(0.1, 0.1)
    call(jnp.asarray(0.1), jnp.asarray(0.1))  # an array is not a weakly typed Python float
    with compilations() as count:
        call(0.2, 0.3)
        call(jnp.asarray(0.4), jnp.asarray(0.05))
    assert count() == 0


# ---------------------------------------------------------- transformations


def test_jit_and_vmap_equal_eager(rng):
    X = inputs(rng, np.float64)
    scheme = lc.uncoded(K, 7, fallback=jnp.array([0.5, -1.0, 2.0]))

    def loss(p, sigma):
        return lc.replication_loss(f, scheme, X, stragglers=lc.BernoulliStragglers(p),
                                   faults=[lc.GaussianNoise(sigma)]).mse

    np.testing.assert_allclose(jax.jit(loss)(0.3, 0.2), loss(0.3, 0.2), rtol=1e-14, atol=0)
    ps = jnp.array([0.1, 0.3, 0.5])
    np.testing.assert_allclose(jax.vmap(loss, in_axes=(0, None))(ps, 0.2),
                               [loss(float(p), 0.2) for p in ps], rtol=1e-14, atol=0)


@pytest.mark.parametrize("N", [4, 7])  # N = 4: inputs with a single replica (r_k = 1)
def test_grad_matches_finite_differences(rng, N):
    X = inputs(rng, np.float64)
    scheme = lc.uncoded(K, N, fallback=jnp.array([0.5, -1.0, 2.0]))

    def loss(p, sigma):
        return lc.replication_loss(f, scheme, X, stragglers=lc.BernoulliStragglers(p),
                                   faults=[lc.GaussianNoise(sigma)]).mse

    h = 1e-6
    for p, sigma in [(0.2, 0.3), (0.65, 0.1)]:
        dp, dsigma = jax.grad(loss, argnums=(0, 1))(p, sigma)
        np.testing.assert_allclose(dp, (loss(p + h, sigma) - loss(p - h, sigma)) / (2 * h),
                                   rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(dsigma, (loss(p, sigma + h) - loss(p, sigma - h)) / (2 * h),
                                   rtol=1e-7, atol=1e-10)
    # At the boundary p = 0 (log p = -inf) the derivative is finite and exact: against the
    # second-order one-sided difference.
    dp = jax.grad(loss)(0.0, 0.3)
    one_sided = (-3 * loss(0.0, 0.3) + 4 * loss(h, 0.3) - loss(2 * h, 0.3)) / (2 * h)
    assert np.isfinite(dp)
    np.testing.assert_allclose(dp, one_sided, rtol=1e-7, atol=1e-10)


def test_grad_through_exact_stragglers_and_the_fallback(rng):
    X = inputs(rng, np.float64)
    scheme = lc.uncoded(K, 7)
    truth = np.asarray(jax.vmap(f)(X))

    def loss(fallback):
        return lc.replication_loss(f, scheme.replace(fallback=fallback), X,
                                   stragglers=lc.ExactStragglers(4)).mse

    fallback = jnp.array([0.5, -1.0, 2.0])
    p_lost = np.asarray(lc.replication_loss(f, scheme, X,
                                            stragglers=lc.ExactStragglers(4)).p_lost)
    # d/dc (1/K) sum_k P_k ||t_k - c||^2 = -(2/K) sum_k P_k (t_k - c)
    expected = -2 / K * np.sum(p_lost[:, None] * (truth - np.asarray(fallback)), axis=0)
    np.testing.assert_allclose(jax.grad(loss)(fallback), expected, rtol=1e-12, atol=1e-15)


# -------------------------------------------------------------------- errors


@pytest.mark.parametrize("scheme", [lc.letcc(K, 7), lc.bacc(K, 7), lc.lcc(K, 7)])
def test_other_schemes_are_refused(rng, scheme):
    with pytest.raises(TypeError, match="exact only for.*monte_carlo"):
        lc.replication_loss(f, scheme, inputs(rng, np.float64))


@pytest.mark.parametrize("stragglers, faults", [
    (lc.LatencyStragglers(wait_for=6), ()),
    (lc.NoStragglers(), [lc.Adversaries(1)]),
    (lc.NoStragglers(), [lc.GaussianNoise(0.1), lc.FailedWorkers(1)]),
])
def test_models_without_a_closed_form_are_refused(rng, stragglers, faults):
    with pytest.raises(TypeError, match="exact only for.*monte_carlo"):
        lc.replication_loss(f, lc.uncoded(K, 7), inputs(rng, np.float64),
                            stragglers=stragglers, faults=faults)


def test_bad_arguments_give_clear_errors(rng):
    X, scheme = inputs(rng, np.float64), lc.uncoded(K, 7)
    with pytest.raises(ValueError, match=r"shape \(K, d\) or \(C, K, d\)"):
        lc.replication_loss(f, scheme, X[:2])
    with pytest.raises(ValueError, match="non-finite"):
        lc.replication_loss(f, scheme, X.at[0, 0].set(jnp.nan))
    with pytest.raises(ValueError, match="f returned NaN or inf"):
        lc.replication_loss(f_nan, scheme, -jnp.abs(X) - 1)
    with pytest.raises(ValueError, match=r"f returned NaN or inf on the inputs X \(batch \[1\]\)"):
        lc.replication_loss(f_nan, scheme, jnp.stack([jnp.abs(X) + 1, -jnp.abs(X) - 1]))
    with pytest.raises(ValueError, match="fallback"):
        lc.replication_loss(f, scheme.replace(fallback=jnp.zeros(2)), X)
    with pytest.raises(TypeError, match="hashable"):
        lc.replication_loss(Unhashable(), scheme, X)
    with pytest.raises(TypeError, match="straggler model"):
        lc.replication_loss(f, scheme, X, stragglers=0.1)
    with pytest.raises(ValueError, match="survivors"):
        lc.replication_loss(f, scheme, X, stragglers=lc.ExactStragglers(5))
    with pytest.raises(ValueError, match="broadcast"):
        lc.replication_loss(f, scheme, X, stragglers=lc.BernoulliStragglers(jnp.ones(3) / 4),
                            faults=[lc.GaussianNoise(jnp.ones(2))])
