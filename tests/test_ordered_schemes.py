"""Input order, fallback and the median of replicas, on every scheme.

An ordered scheme assigns input ``order[k]`` to the node ``alpha[k]``: it must equal the
unordered scheme run on the permuted inputs, with its estimates put back in the caller's
order, on every path (encode, decode, the matrices, recovery, Monte Carlo, worst cases,
tuning, real workers), and a new order is new data, not a new compilation. A fallback is
the estimate of an input the decoder cannot recover; replication's median of replicas is
checked against NumPy.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from compiles import compilations
from hypothesis import given, settings
from hypothesis import strategies as st

import letcc_jax as lc
from letcc_jax import workers

K, N, D, M = 6, 16, 3, 2
FACTORIES = {
    "letcc": functools.partial(lc.letcc, lam_dec=1e-5),
    "letcc+residual": lc.residual_letcc,
    "bacc": lc.bacc,
    "lcc": functools.partial(lc.lcc, degree=1),
    "uncoded": lc.uncoded,
    "uncoded-median": functools.partial(lc.uncoded, combine="median"),
}
TOL = {np.float32: 2e-5, np.float64: 1e-12}
PERM = np.array([3, 0, 5, 1, 4, 2])


def net(x):
    return jnp.stack([jnp.sin(x).sum(), jnp.tanh(x[0] - x[-1])])


def _data(dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((K, D)).astype(dtype)
    Y = rng.standard_normal((N, M)).astype(dtype)
    alive = rng.permutation(N) >= 4
    return X, Y, alive


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_an_ordered_scheme_is_the_scheme_on_permuted_inputs(name, dtype):
    X, Y, alive = _data(dtype)
    plain, ordered = FACTORIES[name](K, N), FACTORIES[name](K, N, order=PERM)
    tol = TOL[dtype]
    np.testing.assert_allclose(ordered.encode(X), plain.encode(X[PERM]), rtol=tol, atol=tol)
    estimate = np.asarray(ordered.decode(Y, alive))
    assert estimate.dtype == dtype
    expected = np.empty_like(estimate)
    expected[PERM] = plain.decode(Y, alive)  # node k's estimate belongs to input PERM[k]
    np.testing.assert_allclose(estimate, expected, rtol=tol, atol=tol)
    few = np.arange(N) < K  # replication then loses inputs: recovery is permuted too
    np.testing.assert_array_equal(np.asarray(ordered.recovered(few))[PERM],
                                  np.asarray(plain.recovered(few)))
    E = np.asarray(ordered.encoder_matrix())
    np.testing.assert_allclose(E[:, PERM], plain.encoder_matrix(), rtol=1e-12, atol=1e-12)
    if ordered.linear:
        Dm = np.asarray(ordered.decoder_matrix(alive))
        np.testing.assert_allclose(Dm[PERM], plain.decoder_matrix(alive), rtol=1e-12,
                                   atol=1e-12)


@pytest.mark.parametrize("name", ["letcc", "bacc"])
def test_estimates_come_back_in_the_callers_order(name):
    """Inputs along a smooth path, given shuffled: the ordered scheme estimates f(x_k) for
    each k in the caller's order, and better than the same scheme in shuffled order
    (measured 250x for LeTCC, 7x for BACC)."""
    t = np.linspace(-1, 1, 12)
    path = np.stack([t, t**2, np.sin(2 * t)], 1)
    shuffle = np.random.default_rng(3).permutation(12)
    X = path[shuffle]
    order = np.argsort(shuffle)  # X[order] runs along the path
    truth = np.asarray(jax.vmap(net)(jnp.asarray(X)))
    errors = []
    for scheme in (FACTORIES[name](12, 40, order=order), FACTORIES[name](12, 40)):
        estimate = np.asarray(scheme.decode(jax.vmap(net)(scheme.encode(X))))
        errors.append(np.mean((estimate - truth) ** 2))
    assert errors[0] < 1e-3 and errors[0] < errors[1] / 5, errors


def test_a_new_order_compiles_nothing():
    X, Y, alive = _data(np.float64)
    rng = np.random.default_rng(1)
    orders = [rng.permutation(K) for _ in range(4)]
    for name in ("letcc", "uncoded"):
        FACTORIES[name](K, N, order=orders[0]).decode(Y, alive)  # warm-up
        FACTORIES[name](K, N, order=orders[0]).encode(X)
        with compilations() as count:
            for order in orders[1:]:
                scheme = FACTORIES[name](K, N, order=order)
                scheme.decode(Y, alive), scheme.encode(X)
        assert count() == 0, name
    key = jax.random.key(0)
    run = functools.partial(lc.monte_carlo, net, X=X, key=key, trials=8,
                            stragglers=lc.ExactStragglers(4))
    run(scheme=lc.letcc(K, N, order=orders[0]))
    with compilations() as count:
        run(scheme=lc.letcc(K, N, order=orders[1]))
    assert count() == 0


def test_monte_carlo_over_orders_equals_each_order_alone():
    """Orders as a sweep: (2, K) orders are two grid points, each the plain call with that
    order (common random numbers)."""
    X, _, _ = _data(np.float64)
    orders = np.stack([np.arange(K), PERM])
    kw = dict(trials=16, stragglers=lc.ExactStragglers(5))
    swept = lc.monte_carlo(net, lc.letcc(K, N, order=orders), X, jax.random.key(2), **kw)
    assert swept.mse.shape == (2, 16)
    for i, order in enumerate(orders):
        alone = lc.monte_carlo(net, lc.letcc(K, N, order=order), X, jax.random.key(2), **kw)
        np.testing.assert_allclose(swept.mse[i], alone.mse, rtol=1e-12)
    assert not np.allclose(swept.mse[0], swept.mse[1])


def test_ordered_schemes_run_through_the_rest_of_the_library():
    X, _, _ = _data(np.float64)
    scheme = lc.letcc(K, N, lam_dec=1e-6, order=PERM)
    plain = lc.letcc(K, N, lam_dec=1e-6)
    truth = np.asarray(jax.vmap(net)(jnp.asarray(X)))
    # worst_stragglers: the same worst set as the plain scheme on the permuted inputs.
    worst = lc.worst_stragglers(net, scheme, X, 3, method="exhaustive")
    again = lc.worst_stragglers(net, plain, X[PERM], 3, method="exhaustive")
    np.testing.assert_array_equal(worst.alive, again.alive)
    np.testing.assert_allclose(worst.mse, again.mse, rtol=1e-10)
    # tune keeps the order.
    result = lc.tune(net, scheme, X[None], jax.random.key(1), learn=("lam_dec",), steps=2,
                     trials=2, validation_trials=2, validate_every=1, progress=False,
                     stragglers=lc.ExactStragglers(4))
    np.testing.assert_array_equal(result.scheme.order, PERM)
    # Real workers: estimates in the caller's order.
    out = workers.run(net, scheme, X)
    expected = scheme.decode(jax.vmap(net)(scheme.encode(X)))
    np.testing.assert_allclose(out.estimate, expected, rtol=1e-10, atol=1e-12)
    # run_coded and its recovered flags.
    coded = lc.run_coded(net, lc.uncoded(K, N, order=PERM), X, jax.random.key(0))
    np.testing.assert_allclose(coded.estimate, truth, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("order, error, match", [
    ([0, 1, 2, 3, 4, 4], ValueError, "permutation"),
    ([0, 1, 2, 3, 4, 9], ValueError, "permutation"),
    ([-1, 0, 1, 2, 3, 4], ValueError, "permutation"),
    ([0, 1, 2, 3, 4], ValueError, "shape"),
    (np.arange(6.0), TypeError, "integer"),
    (np.ones(6, bool), TypeError, "integer"),
    ("abcdef", TypeError, "integer"),
])
def test_bad_orders_are_rejected(order, error, match):
    for factory in (lc.letcc, lc.bacc, lc.uncoded):
        with pytest.raises(error, match=match):
            factory(K, N, order=order)
    with pytest.raises(error, match=match):
        lc.letcc(K, N).replace(order=np.asarray(order) if not isinstance(order, str) else order)


# ----------------------------------------------------------------------- fallback


def test_fallback_estimates_the_inputs_that_are_lost(dtype):
    X, Y, _ = _data(dtype)
    mean = np.array([0.5, -2.0], dtype)
    alive = np.ones(N, bool)
    alive[[1, 1 + K, 1 + 2 * K]] = False  # every replica of node 1
    scheme = lc.uncoded(K, N, fallback=mean, order=PERM)
    estimate = np.asarray(scheme.decode(Y, alive))  # no error: the fallback estimates it
    lost = PERM[1]
    np.testing.assert_array_equal(estimate[lost], mean)
    plain = np.asarray(lc.uncoded(K, N, order=PERM).replace(fallback=None).decoder_matrix(alive))
    keep = np.arange(K) != lost
    np.testing.assert_allclose(estimate[keep], (plain @ Y)[keep], rtol=TOL[dtype])
    # The decoder matrix stays linear (no fallback in it).
    np.testing.assert_array_equal(np.asarray(scheme.decoder_matrix(alive)), plain)
    # Coded schemes below their threshold, and Monte Carlo.
    one = np.arange(N) == 3
    np.testing.assert_allclose(lc.letcc(K, N, fallback=mean).decode(Y, one),
                               np.tile(mean, (K, 1)), rtol=0, atol=0)
    with pytest.raises(ValueError, match="needs at least 2"):
        lc.letcc(K, N).decode(Y, one)


def test_fallback_in_monte_carlo_matches_its_definition():
    """With S = N - 1 stragglers replication loses every input but one replica's; the loss
    of the lost ones is ||f(x_k) - fallback||^2 (a zero fallback is the default estimate;
    without a fallback, so many stragglers are an error)."""
    X, _, _ = _data(np.float64)
    truth = np.asarray(jax.vmap(net)(jnp.asarray(X)))
    mean = truth.mean(0)
    key = jax.random.key(4)
    kw = dict(trials=32, stragglers=lc.ExactStragglers(N - 1))
    with_fb = lc.monte_carlo(net, lc.uncoded(K, N, fallback=mean), X, key, **kw)
    without = lc.monte_carlo(net, lc.uncoded(K, N, fallback=np.zeros(M)), X, key, **kw)
    lost_zero = np.sum(truth**2, 1)
    lost_mean = np.sum((truth - mean) ** 2, 1)
    # One input survives per trial: mse = (sum over the lost ones) / K; the difference of
    # the two runs is exactly the difference of the fallbacks' costs on the lost inputs.
    diff = np.asarray(without.mse - with_fb.mse)
    assert np.all(diff > 0)
    total = (lost_zero - lost_mean).sum()
    kept = total - diff * K  # the survivor's own term, one of the inputs'
    assert np.all(np.min(np.abs(kept[:, None] - (lost_zero - lost_mean)[None]), 1) < 1e-10)
    with pytest.raises(ValueError, match="survivors"):
        lc.monte_carlo(net, lc.uncoded(K, N), X, key, **kw)


def test_a_fallback_of_the_wrong_size_is_rejected():
    X, Y, alive = _data(np.float64)
    scheme = lc.letcc(K, N, fallback=np.zeros(3))
    with pytest.raises(ValueError, match="m=2"):
        scheme.decode(Y, alive)
    with pytest.raises(ValueError, match="m=2"):
        lc.monte_carlo(net, scheme, X, jax.random.key(0), trials=2)
    with pytest.raises(ValueError, match="non-finite"):
        lc.letcc(K, N, fallback=np.array([np.nan, 0.0]))
    with pytest.raises(ValueError, match=r"\(m,\)"):
        lc.letcc(K, N).replace(fallback=np.float64(1.0))


# ------------------------------------------------------------------ median of replicas


def _median_reference(Y, alive, K):
    N = len(Y)
    out = np.zeros((K, Y.shape[1]))
    for k in range(K):
        rows = [n for n in range(k, N, K) if alive[n]]
        if rows:
            out[k] = np.median(Y[rows], axis=0)
    return out


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 5), st.integers(0, 9), st.integers(0, 2**31 - 1),
       st.sampled_from([np.float32, np.float64]))
def test_median_of_replicas_matches_numpy(K, extra, seed, dtype):
    N = K + extra
    rng = np.random.default_rng(seed)
    Y = rng.standard_normal((N, 3)).astype(dtype)
    alive = rng.random(N) < 0.7
    alive[:K] = True  # every input keeps a replica
    estimate = np.asarray(lc.uncoded(K, N, combine="median").decode(Y, alive))
    assert estimate.dtype == dtype
    np.testing.assert_allclose(estimate, _median_reference(Y.astype(np.float64), alive, K),
                               rtol=TOL[dtype], atol=TOL[dtype])


def test_median_is_exact_while_liars_hold_fewer_than_half_of_the_replicas():
    X, _, _ = _data(np.float64)
    scheme = lc.uncoded(K, 5 * K, combine="median")
    Y = np.array(jax.vmap(net)(scheme.encode(X)))
    liars = np.zeros(5 * K, bool)
    liars[[0, K, 3, 4 + K]] = True  # two of node 0's five replicas, one or two of others'
    Y[liars] = 1e6
    truth = np.asarray(jax.vmap(net)(jnp.asarray(X)))
    np.testing.assert_array_equal(np.asarray(scheme.decode(Y)), truth)
    assert np.max(np.abs(lc.uncoded(K, 5 * K).decode(Y) - truth)) > 1e5  # the mean is not


def test_the_median_has_no_decoder_matrix_and_no_linear_attack():
    X, _, alive = _data(np.float64)
    scheme = lc.uncoded(K, N, combine="median")
    assert not scheme.linear and lc.uncoded(K, N).linear
    with pytest.raises(ValueError, match="not linear"):
        scheme.decoder_matrix(alive)
    with pytest.raises(ValueError, match="median"):
        lc.worst_adversaries(net, scheme, X, 1, 1.0)
    with pytest.raises(ValueError, match="combine"):
        lc.uncoded(K, N, combine="vote")
