"""The bounded LeTCC decoder against its definition, computed independently in float64:
LeTCC's posterior N(estimate, std^2) combined with the prior N(fallback, prior_std^2) by
precisions, then clipped; its limits, validation, and the searches that run against it."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from compiles import compilations

import letcc_jax as lc

K, N = 8, 24


def f(x):
    return jnp.stack([jnp.sin(4 * x[0]), jnp.cos(3 * x[0]) + 2.0])


def _case(dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = np.sort(rng.uniform(-1, 1, (K, 1)), axis=0)
    plain = lc.letcc(K, N)
    Y = jax.vmap(f)(plain.encode(jnp.asarray(X, dtype)))
    truth = np.asarray(jax.vmap(f)(jnp.asarray(X, np.float64)))
    masks = [np.arange(N) < 18, rng.permutation(N) >= 6, (np.arange(N) < 4) | (np.arange(N) > 13)]
    return plain, X, Y, truth, masks


def _reference(estimate, std, mean, spread):
    """The product of the two Gaussians, written with precisions (float64)."""
    estimate, std = np.asarray(estimate, np.float64), np.asarray(std, np.float64)
    precision = 1.0 / std ** 2 + 1.0 / spread ** 2
    combined = (estimate / std ** 2 + mean / spread ** 2) / precision
    return combined, np.sqrt(1.0 / precision)


TOL = {np.float32: 2e-5, np.float64: 1e-12}


def test_shrinkage_is_the_product_of_the_posterior_and_the_prior(dtype):
    plain, _, Y, truth, masks = _case(dtype)
    mean, spread = truth.mean(0), np.array([0.3, 0.05])
    bounded = lc.BoundedLeTCC.from_letcc(plain, fallback=mean, prior_std=spread)

    @jax.jit
    @functools.partial(jax.vmap, in_axes=(None, 0))
    def both(Y, alive):  # one program for every mask and both decoders
        return plain.posterior_report(Y, alive)[0], bounded.posterior_report(Y, alive)[0]

    posts, gots = both(Y, jnp.asarray(np.stack(masks)))
    for i, alive in enumerate(masks):
        post, got = jax.tree.map(lambda v: v[i], posts), jax.tree.map(lambda v: v[i], gots)
        expected, expected_std = _reference(post.estimate, post.std, mean, spread)
        assert got.estimate.dtype == dtype and got.std.dtype == dtype
        np.testing.assert_allclose(np.asarray(got.estimate), expected, rtol=TOL[dtype],
                                   atol=TOL[dtype] * np.abs(expected).max())
        np.testing.assert_allclose(np.asarray(got.std), expected_std, rtol=TOL[dtype] * 10)
        # never further from the prior mean than LeTCC
        assert np.all(np.abs(expected - mean) <= np.abs(np.asarray(post.estimate) - mean) + 1e-6)
    # the public calls are the same rule
    post = bounded.posterior(Y, masks[0])
    np.testing.assert_array_equal(np.asarray(bounded.decode(Y, masks[0])), np.asarray(post.estimate))
    np.testing.assert_allclose(np.asarray(post.estimate), np.asarray(gots.estimate[0]),
                               rtol=TOL[dtype], atol=TOL[dtype])


def test_limits_of_the_prior_spread(dtype):
    plain, _, Y, truth, masks = _case(dtype, seed=1)
    mean = truth.mean(0)
    wide = lc.BoundedLeTCC.from_letcc(plain, fallback=mean, prior_std=np.full(2, 1e30))
    narrow = lc.BoundedLeTCC.from_letcc(plain, fallback=mean, prior_std=np.full(2, 1e-30))
    for alive in masks:
        np.testing.assert_allclose(np.asarray(wide.decode(Y, alive)),
                                   np.asarray(plain.decode(Y, alive)), rtol=TOL[dtype],
                                   atol=TOL[dtype] * 10)
        got = narrow.posterior(Y, alive)
        np.testing.assert_allclose(np.asarray(got.estimate),
                                   np.broadcast_to(mean, (K, 2)), rtol=TOL[dtype])
        assert np.all(np.isfinite(np.asarray(got.std)))
        assert np.all(np.asarray(got.std) <= 1e-30 * (1 + 1e-5))


def test_an_input_the_survivors_cannot_determine_gets_the_prior():
    plain, _, Y, truth, _ = _case(np.float64)
    mean, spread = truth.mean(0), np.array([0.3, 0.05])
    bounded = lc.BoundedLeTCC.from_letcc(plain, fallback=mean, prior_std=spread)
    one = np.arange(N) == 5
    np.testing.assert_allclose(np.asarray(bounded.decode(Y, one)), np.broadcast_to(mean, (K, 2)))
    post, _, recovered = jax.jit(lambda s, Y, a: s.posterior_report(Y, a))(bounded, Y, one)
    assert not np.any(np.asarray(recovered))
    np.testing.assert_allclose(np.asarray(post.estimate), np.broadcast_to(mean, (K, 2)))
    np.testing.assert_allclose(np.asarray(post.std), np.broadcast_to(spread, (K, 2)))


def test_clipping_is_the_range_alone_or_after_shrinking(dtype):
    plain, _, Y, truth, masks = _case(dtype, seed=2)
    low, high = truth.min(0), truth.max(0)
    clipped = lc.bounded_letcc(K, N, low=low, high=high)
    both = lc.BoundedLeTCC.from_letcc(plain, fallback=truth.mean(0), prior_std=truth.std(0),
                                      low=low, high=high)
    for alive in masks:
        expected = np.clip(np.asarray(plain.decode(Y, alive), np.float64), low, high)
        np.testing.assert_allclose(np.asarray(clipped.decode(Y, alive)), expected,
                                   rtol=TOL[dtype], atol=TOL[dtype])
        shrunk = lc.BoundedLeTCC.from_letcc(plain, fallback=truth.mean(0),
                                            prior_std=truth.std(0)).decode(Y, alive)
        np.testing.assert_allclose(np.asarray(both.decode(Y, alive)),
                                   np.clip(np.asarray(shrunk, np.float64), low, high),
                                   rtol=TOL[dtype], atol=TOL[dtype])


def test_from_outputs_reads_mean_spread_and_range():
    outputs = np.random.default_rng(3).standard_normal((50, 3))
    bounded = lc.BoundedLeTCC.from_outputs(lc.letcc(K, N), outputs, clip=True)
    np.testing.assert_allclose(np.asarray(bounded.fallback), outputs.mean(0), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(bounded.prior_std), outputs.std(0, ddof=1), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(bounded.low), outputs.min(0), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(bounded.high), outputs.max(0), rtol=1e-6)
    assert lc.BoundedLeTCC.from_outputs(lc.letcc(K, N), outputs).low is None


@pytest.mark.parametrize("options, match", [
    ({}, "give prior_std"),
    ({"prior_std": np.ones(2)}, "give fallback"),
    ({"fallback": np.zeros(2), "prior_std": -np.ones(2)}, "positive"),
    ({"fallback": np.zeros(2), "prior_std": np.array([1.0, np.nan])}, "positive"),
    ({"low": np.array([np.inf, 0.0]), "high": np.ones(2) * np.inf}, "finite or -inf"),
    ({"low": np.zeros(2), "high": -np.ones(2) * np.inf}, "finite or inf"),
    ({"low": np.zeros(2)}, "both low and high"),
    ({"low": np.ones(2), "high": np.zeros(2)}, "must not exceed"),
    ({"fallback": np.zeros(2), "prior_std": 1.0}, r"\(m,\) array"),
])
def test_bad_bounds_are_clear_errors(options, match):
    with pytest.raises(ValueError, match=match):
        lc.bounded_letcc(K, N, **options)


def test_wrong_width_and_wrong_scheme_are_clear_errors():
    plain, _, Y, _, masks = _case(np.float64)
    bounded = lc.bounded_letcc(K, N, fallback=np.zeros(2), prior_std=np.ones(3))
    with pytest.raises(ValueError, match="prior_std has shape"):
        bounded.decode(Y, masks[0])
    with pytest.raises(TypeError, match="bounds a LeTCC decoder"):
        lc.BoundedLeTCC.from_letcc(lc.bacc(K, N), low=np.zeros(2), high=np.ones(2))
    with pytest.raises(ValueError, match="not a linear map|weights depend"):
        lc.bounded_letcc(K, N, low=np.zeros(2), high=np.ones(2)).decoder_matrix(masks[0])


def test_compiled_once_for_every_pattern_and_vmapped(dtype):
    plain, _, Y, truth, masks = _case(dtype, seed=4)
    bounded = lc.BoundedLeTCC.from_outputs(plain, truth, clip=True)
    bounded.decode(Y, masks[0])
    with compilations() as count:
        outs = [bounded.decode(Y, alive) for alive in masks[1:]]
    assert count() == 0
    batched = jax.jit(jax.vmap(bounded.decode, in_axes=(None, 0)))(Y, jnp.asarray(np.stack(masks[1:])))
    np.testing.assert_allclose(np.asarray(batched), np.stack([np.asarray(o) for o in outs]),
                               rtol=TOL[dtype], atol=TOL[dtype])


def test_worst_stragglers_search_the_bounded_decoder():
    """The adversary adapts to the decoder: the worst set found against the bounded one is
    scored with it, and no set hurts it more than the plain decoder's worst set does."""
    plain, X, _, truth, _ = _case(np.float64, seed=5)
    bounded = lc.BoundedLeTCC.from_outputs(plain, truth)
    worst_plain = lc.worst_stragglers(f, plain, jnp.asarray(X), 3)
    worst = lc.worst_stragglers(f, bounded, jnp.asarray(X), 3)
    assert worst.exact and worst_plain.exact
    Y = jax.vmap(f)(bounded.encode(jnp.asarray(X)))
    direct = np.mean(np.sum((np.asarray(bounded.decode(Y, worst.alive)) - truth) ** 2, 1))
    np.testing.assert_allclose(worst.mse, direct, rtol=1e-9)
    assert worst.mse < worst_plain.mse
    again = np.mean(np.sum((np.asarray(bounded.decode(Y, worst_plain.alive)) - truth) ** 2, 1))
    assert again <= worst.mse * (1 + 1e-9)  # the plain worst set is one the search scored


def test_rounds_run_the_bounded_decoder():
    """A simulated round decodes with the bounded decoder; Monte Carlo averages such rounds."""
    plain, X, _, truth, _ = _case(np.float64, seed=6)
    bounded = lc.BoundedLeTCC.from_outputs(plain, truth, clip=True)
    key = jax.random.PRNGKey(0)
    one = lc.run_coded(f, bounded, jnp.asarray(X), key, stragglers=lc.ExactStragglers(6))
    np.testing.assert_allclose(np.asarray(one.estimate),
                               np.asarray(bounded.decode(one.outputs, one.alive)), rtol=1e-12)
    assert not np.allclose(np.asarray(one.estimate),
                           np.asarray(plain.decode(one.outputs, one.alive)), rtol=1e-6)
    result = lc.monte_carlo(f, bounded, jnp.asarray(X), key, trials=64,
                            stragglers=lc.ExactStragglers(6))
    assert np.all(np.isfinite(np.asarray(result.mse)))


def test_infinite_bounds_are_none_and_share_one_program(dtype):
    """prior_std = inf and low/high = -+inf give exactly the decode of None there, with every
    leaf present: a shrunk and a clipped scheme built that way compile one program."""
    plain, _, Y, truth, masks = _case(dtype, seed=5)
    mean, spread = truth.mean(0), truth.std(0)
    low, high = truth.min(0), truth.max(0)
    inf = np.full(2, np.inf)
    shrunk = lc.BoundedLeTCC.from_letcc(plain, fallback=mean, prior_std=spread)
    clipped = lc.BoundedLeTCC.from_letcc(plain, fallback=mean, low=low, high=high)
    shrunk_inf = lc.BoundedLeTCC.from_letcc(plain, fallback=mean, prior_std=spread, low=-inf,
                                            high=inf)
    clipped_inf = lc.BoundedLeTCC.from_letcc(plain, fallback=mean, prior_std=inf, low=low,
                                             high=high)
    assert jax.tree.structure(shrunk_inf) == jax.tree.structure(clipped_inf)
    for alive in masks:
        np.testing.assert_array_equal(np.asarray(shrunk_inf.decode(Y, alive)),
                                      np.asarray(shrunk.decode(Y, alive)))
        np.testing.assert_array_equal(np.asarray(clipped_inf.decode(Y, alive)),
                                      np.asarray(clipped.decode(Y, alive)))
    with compilations() as count:
        clipped_inf.decode(Y, masks[0])
    assert count() == 0
