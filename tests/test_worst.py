"""worst_stragglers: exhaustive search against an independent enumeration, the local search
against the exhaustive one, and the cases whose answer is known in closed form."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import letcc_jax as lc
import reference as ref


def f(x):
    return jnp.stack([jnp.sin(2 * x[0]) + x[1], jnp.cos(x[0] * x[1])])


def _f_np(X):
    return np.stack([np.sin(2 * X[:, 0]) + X[:, 1], np.cos(X[:, 0] * X[:, 1])], 1)


def _inputs(K, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).normal(size=(K, 2)).astype(dtype)


def test_exhaustive_matches_an_independent_enumeration(dtype):
    """LeTCC (lam_enc = 1e-3, lam_dec = 1e-2), N = 9, K = 3, S = 2: every one of the 36
    straggler sets decoded by the SciPy/LAPACK reference; the worst one and its error."""
    K, N, S = 3, 9, 2
    scheme = lc.letcc(K, N, lam_enc=1e-3, lam_dec=1e-2)
    alpha, beta = np.asarray(scheme.alpha), np.asarray(scheme.beta)
    X = _inputs(K)
    coded = ref.natural_smoothing_spline(alpha, X, np.ones(K, bool), 1e-3, beta)
    Y, truth = _f_np(coded), _f_np(X)
    errors = {}
    for dead in itertools.combinations(range(N), S):
        alive = np.ones(N, bool)
        alive[list(dead)] = False
        est = ref.natural_smoothing_spline(beta, Y, alive, 1e-2, alpha)
        errors[dead] = np.mean(np.sum((est - truth) ** 2, axis=1))
    worst = max(errors, key=errors.get)
    cast = jax.tree.map(lambda v: jnp.asarray(v, dtype), scheme)
    got = lc.worst_stragglers(f, cast, X.astype(dtype), S, method="exhaustive")
    assert got.exact and got.evaluated == len(errors) and got.rounds == 0
    np.testing.assert_allclose(got.mse, errors[worst], rtol=1e-9 if dtype == np.float64 else 1e-4)
    assert tuple(got.stragglers) == worst
    assert got.alive.sum() == N - S and not got.alive[list(worst)].any()


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", ["letcc", "bacc", "lcc", "uncoded"])
def test_local_search_finds_the_exhaustive_worst_case(name, seed):
    """K = 4, N = 16 (four replicas per input for replication), S = 4: 1,820 sets. Measured:
    the search finds the exhaustive optimum for all four schemes on seeds 0-4, and at
    (K, N, S) = (5, 20, 3). Replication is the hard case for single swaps: every partial
    set of one input's replicas leaves the error at 0, so the tag-order window start is
    what finds it."""
    K, N, S = 4, 16, 4
    scheme = lc.make_scheme(name, K, N, **({"lam_dec": 1e-4} if name == "letcc" else {}))
    X = _inputs(K, seed=seed)
    exact = lc.worst_stragglers(f, scheme, X, S, method="exhaustive")
    found = lc.worst_stragglers(f, scheme, X, S, method="search")
    assert exact.exact and not found.exact
    assert exact.evaluated == 1820 and found.evaluated < 1820
    np.testing.assert_allclose(found.mse, exact.mse, rtol=1e-10)
    # "auto" enumerates when it is cheap, and searches when it is not.
    assert lc.worst_stragglers(f, scheme, X, S).exact
    assert not lc.worst_stragglers(f, scheme, X, S, exhaustive_max=100).exact


def test_replication_loses_its_largest_input_at_the_replica_count():
    """N = 3K: three replicas per input. Three stragglers on the replicas of one input lose
    it (estimated as 0); the worst choice is the input with the largest ||f(x_k)||^2."""
    K, N = 4, 12
    X = _inputs(K, seed=2)
    worst = lc.worst_stragglers(f, lc.uncoded(K, N), X, 3)
    norms = np.sum(_f_np(X) ** 2, axis=1)
    np.testing.assert_allclose(worst.mse, norms.max() / K, rtol=1e-12)
    assert set(worst.stragglers % K) == {int(np.argmax(norms))}
    # Two stragglers lose nothing: every input keeps a replica, its estimate exact.
    assert lc.worst_stragglers(f, lc.uncoded(K, N), X, 2).mse == pytest.approx(0, abs=1e-24)


def test_the_worst_case_bounds_every_random_pattern():
    K, N, S = 4, 14, 4
    scheme = lc.letcc(K, N, lam_dec=1e-4)
    X = _inputs(K, seed=3)
    worst = lc.worst_stragglers(f, scheme, X, S)
    assert worst.exact
    trials = lc.monte_carlo(f, scheme, jnp.asarray(X), jax.random.key(0), trials=300,
                            stragglers=lc.ExactStragglers(S))
    assert np.max(np.asarray(trials.mse)) <= worst.mse * (1 + 1e-9)


def test_no_stragglers_is_the_full_decode():
    K, N = 3, 8
    scheme = lc.bacc(K, N)
    X = _inputs(K)
    got = lc.worst_stragglers(f, scheme, X, 0)
    full = lc.run_coded(f, scheme, jnp.asarray(X), jax.random.key(0))
    expected = float(np.mean(np.sum((np.asarray(full.estimate) - _f_np(X)) ** 2, axis=1)))
    assert got.exact and got.stragglers.size == 0 and got.alive.all()
    np.testing.assert_allclose(got.mse, expected, rtol=1e-10)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"S": -1}, ValueError, "S must be in"),
    ({"S": 8}, ValueError, "S must be in"),
    ({"S": 1.5}, TypeError, "S must be an int"),
    ({"S": 2, "method": "greedy"}, ValueError, "method must be one of"),
    ({"S": 2, "batch": 0}, ValueError, "batch"),
])
def test_bad_arguments_are_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        lc.worst_stragglers(f, lc.letcc(3, 8), _inputs(3), **kwargs)
