"""``stack_schemes``: schemes of different N as one sweep, padded workers that never answer.

A stacked scheme must give, point by point, what each scheme gives alone: the same
estimates for any mask, and in ``monte_carlo`` the same straggler patterns and noise
draws (JAX's partitionable random bits), so the same per-trial errors.
"""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from compiles import compilations

import letcc_jax as lc
from letcc_jax.sim._models import random_subset

K = 6
NS = (8, 21)


def f(x):
    return jnp.stack([jnp.sin(3 * x[0]), jnp.tanh(2 * x[1])])


def _cast(tree, dtype):
    return jax.tree.map(lambda v: jnp.asarray(v, dtype) if jnp.issubdtype(
        jnp.asarray(v).dtype, jnp.floating) else v, tree)


CASES = {
    "letcc, exact S per N": (lambda N: lc.letcc(K, N, fallback=jnp.zeros(2)),
                             lambda Ns: lc.ExactStragglers(jnp.asarray([N // 4 for N in Ns])),
                             lambda N: lc.ExactStragglers(N // 4), []),
    "smoothing letcc, bernoulli, noise": (lambda N: lc.letcc(K, N, lam_dec=1e-3),
                                          lambda Ns: lc.BernoulliStragglers(0.2),
                                          lambda N: lc.BernoulliStragglers(0.2),
                                          [lc.GaussianNoise(0.05)]),
    "bacc, latency, adversaries": (lambda N: lc.bacc(K, N),
                                   lambda Ns: lc.LatencyStragglers(wait_for=6, slow=2),
                                   lambda N: lc.LatencyStragglers(wait_for=6, slow=2),
                                   [lc.Adversaries(1, magnitude=3.0)]),
    "uncoded, failed workers": (lambda N: lc.uncoded(K, N), lambda Ns: lc.ExactStragglers(1),
                                lambda N: lc.ExactStragglers(1), [lc.FailedWorkers(1)]),
}


@pytest.mark.parametrize("case, dtype", [(case, np.float64) for case in sorted(CASES)]
                         + [("letcc, exact S per N", np.float32)])
def test_a_stacked_monte_carlo_is_each_scheme_alone(case, dtype):
    make, stacked_model, model, faults = CASES[case]
    X = jnp.asarray(np.random.default_rng(0).normal(size=(2, K, 2)), dtype)
    key = jax.random.key(5)
    alone = [np.asarray(lc.monte_carlo(f, _cast(make(N), dtype), X, key, trials=16,
                                       stragglers=model(N), faults=faults).mse)
             for N in NS]
    stacked = _cast(lc.stack_schemes([make(N) for N in NS]), dtype)
    with compilations() as count:
        together = np.asarray(lc.monte_carlo(f, stacked, X, key, trials=16,
                                             stragglers=stacked_model(NS), faults=faults).mse)
    assert count() <= 2  # one Monte Carlo program (and at most one small helper)
    assert together.shape == (len(NS), 2, 16)
    # float64: the same draws give the same errors to round-off; float32: the padded fit
    # rounds differently: 4.7e-5 relative measured (one seed), the bound keeps 20x
    tol = 1e-3 if dtype == np.float32 else 1e-9
    for i in range(len(NS)):
        np.testing.assert_allclose(together[i], alone[i], rtol=tol, atol=tol * 1e-3,
                                   err_msg=f"N = {NS[i]}")


@pytest.mark.parametrize("name", ["letcc", "bacc", "lcc", "uncoded"])
def test_padding_never_answers(name, dtype):
    rng = np.random.default_rng(1)
    schemes = [lc.make_scheme(name, 3, N) for N in (7, 12)]
    stacked = lc.stack_schemes(schemes)
    small = _cast(schemes[0], dtype)
    padded = _cast(jax.tree.map(lambda v: v[0], stacked), dtype)  # N = 7 padded to 12
    assert padded.N == 12 and int(padded.workers) == 7
    Y = jnp.asarray(rng.normal(size=(12, 2)), dtype)
    alive = np.ones(12, bool)
    alive[2] = False
    tol = 2e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(padded.decode(Y, alive), small.decode(Y[:7], alive[:7]),
                               rtol=tol, atol=tol)
    np.testing.assert_array_equal(padded.recovered(alive), small.recovered(alive[:7]))
    np.testing.assert_allclose(padded.decoder_matrix(alive)[:, :7],
                               small.decoder_matrix(alive[:7]), rtol=tol, atol=tol)
    assert not np.asarray(padded.decoder_matrix(alive)[:, 7:]).any()
    if name == "letcc":
        post, ref = padded.posterior(Y, alive), small.posterior(Y[:7], alive[:7])
        np.testing.assert_allclose(post.std, ref.std, rtol=10 * tol)


def test_random_subsets_of_the_existing_workers_follow_the_unpadded_draw():
    keys = jax.random.split(jax.random.key(0), 200)
    for n, count in ((5, 2), (9, 0), (9, 9), (12, 4)):
        padded = jax.vmap(lambda k: random_subset(k, 16, count, n))(keys)
        alone = jax.vmap(lambda k: random_subset(k, n, count))(keys)
        np.testing.assert_array_equal(padded[:, :n], alone)
        assert not np.asarray(padded[:, n:]).any()
        assert np.all(np.asarray(padded).sum(axis=1) == count)


def test_stack_schemes_pads_and_records_the_workers():
    stacked = lc.stack_schemes([lc.residual_letcc(4, N) for N in (6, 9)])
    assert stacked.beta.shape == (2, 9) and stacked.residual.shape == (2, 9, 4)
    assert stacked.workers.tolist() == [6, 9]
    np.testing.assert_array_equal(stacked.beta[0, 6:], stacked.beta[0, 5])
    # stacking stacked-and-indexed schemes keeps their own count
    again = lc.stack_schemes([jax.tree.map(lambda v: v[0], stacked), lc.residual_letcc(4, 11)])
    assert again.workers.tolist() == [6, 11]


@pytest.mark.parametrize("schemes, error, match", [
    ([], TypeError, "non-empty list"),
    ([lc.letcc(4, 8), lc.bacc(4, 8)], TypeError, "one type"),
    ([lc.letcc(4, 8), lc.letcc(5, 8)], ValueError, "same K"),
    ([lc.letcc(4, 8), lc.letcc(4, 8, solver="reinsch")], ValueError, "solver differs"),
    ([lc.letcc(4, 8, fallback=jnp.zeros(2)), lc.letcc(4, 8)], ValueError, "fallback is given"),
    ([lc.letcc(4, 8, fallback=jnp.zeros(2)), lc.letcc(4, 8, fallback=jnp.zeros(3))],
     ValueError, "shapes"),
    ([lc.letcc(4, 8).replace(lam_dec=jnp.ones(3))], ValueError, "a sweep already"),
])
def test_stack_schemes_says_what_does_not_stack(schemes, error, match):
    with pytest.raises(error, match=match):
        lc.stack_schemes(schemes)


@pytest.mark.parametrize("workers", [1, 9, 2.5, True, np.array([3, 0])])
def test_workers_must_be_a_count_of_the_tags(workers):
    with pytest.raises(ValueError, match=r"workers must be an int in \[2, N\]"):
        lc.letcc(4, 8).replace(workers=workers)


def test_calls_that_take_no_padding_say_so():
    padded = jax.tree.map(lambda v: v[0], lc.stack_schemes([lc.letcc(4, 8), lc.letcc(4, 10)]))
    X = jnp.ones((4, 2))
    Y = jnp.ones((10, 1))
    calls = {
        "worst_adversaries": lambda: lc.worst_adversaries(f, padded, X, 1, 1.0),
        "gcv": lambda: lc.gcv(padded, Y),
        "posterior_rounds": lambda: lc.posterior_rounds(f, padded, X, jax.random.key(0),
                                                     stragglers=lc.ExactStragglers(1)),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match=f"{name} takes a scheme whose N workers all exist"):
            call()


@pytest.mark.parametrize("name", ["letcc", "uncoded"])
def test_searches_over_a_padded_scheme_are_the_schemes_own(name):
    """select_lambda and worst_stragglers take a scheme padded to a larger N (one program
    for many N): the same losses and the same worst set, among the existing workers."""
    X = jnp.asarray(np.random.default_rng(3).normal(size=(K, 2)))
    scheme = lc.make_scheme(name, K, 11, fallback=jnp.zeros(2))
    padded = scheme.pad_workers(19)
    for method in ("exhaustive", "search"):
        alone = lc.worst_stragglers(f, scheme, X, 3, method=method, restarts=1)
        worst = lc.worst_stragglers(f, padded, X, 3, method=method, restarts=1)
        np.testing.assert_array_equal(worst.stragglers, alone.stragglers)
        np.testing.assert_array_equal(worst.alive, np.concatenate([alone.alive,
                                                                   np.zeros(8, bool)]))
        np.testing.assert_allclose(worst.mse, alone.mse, rtol=1e-12, atol=0)
        assert (worst.exact, worst.evaluated) == (alone.exact, alone.evaluated)
    with pytest.raises(ValueError, match=r"S must be in \[0, N\) = \[0, 11\)"):
        lc.worst_stragglers(f, padded, X, 11)
    with pytest.raises(ValueError, match="leave no worker of N=11"):
        lc.monte_carlo(f, padded, X, jax.random.key(0), stragglers=lc.ExactStragglers(11))
    if name == "letcc":
        grid = [0.0, 1e-5, 1e-2]
        searches = [lc.select_lambda(f, s, X, jax.random.key(4), lam_dec_grid=grid, trials=8,
                                     stragglers=lc.ExactStragglers(3),
                                     faults=[lc.GaussianNoise(0.05)]) for s in (scheme, padded)]
        np.testing.assert_allclose(searches[1].mse, searches[0].mse, rtol=1e-9, atol=0)
        assert int(searches[1].scheme.workers) == 11
        assert float(searches[1].scheme.lam_dec) == float(searches[0].scheme.lam_dec)


def test_schemes_padded_to_one_N_share_one_program_and_their_draws(caplog):
    X = jnp.asarray(np.random.default_rng(2).normal(size=(K, 2)))
    key = jax.random.key(7)
    grid = jnp.asarray([0.0, 1e-4])
    results = {}
    with jax.log_compiles(), caplog.at_level(logging.WARNING):
        for N in (9, 14, 20):
            swept = lc.letcc(K, N, order=jnp.asarray([np.arange(K), np.arange(K)[::-1]])[:, None],
                             fallback=jnp.zeros(2)).replace(lam_dec=grid)
            results[N] = np.asarray(lc.monte_carlo(f, swept.pad_workers(20), X, key, trials=12,
                                                   stragglers=lc.ExactStragglers(N // 3)).mse)
            assert results[N].shape == (2, 2, 12)
            alone = np.asarray(lc.monte_carlo(f, swept, X, key, trials=12,
                                              stragglers=lc.ExactStragglers(N // 3)).mse)
            np.testing.assert_allclose(results[N], alone, rtol=1e-9, atol=1e-15)
    compiled = sum("compilation of jit(monte_carlo_compiled)" in r.getMessage()
                   for r in caplog.records)
    assert compiled == 1 + 3  # the padded program once, and the three unpadded ones


def test_pad_workers_needs_at_least_the_schemes_N():
    with pytest.raises(ValueError, match="pad_workers: N must be an int >= the scheme's N = 8"):
        lc.letcc(4, 8).pad_workers(6)
    padded = lc.letcc(4, 8).pad_workers(10).pad_workers(12)
    assert padded.N == 12 and int(padded.workers) == 8
