"""Sweeps and batches: parameters with leading axes broadcast into a grid evaluated in one
call, calibration batches in one call, each equal to the plain calls it replaces."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import letcc_jax as lc
from letcc_jax.core import _schemes as core_schemes
from letcc_jax.sim import _rounds as _round

from test_core_evaluate import K, N, S, f

TRIALS = 6
TOL = dict(rtol=1e-12, atol=1e-15)
STRAGGLERS = lc.ExactStragglers(S)


def inputs(seed, batches=None):
    shape = (K, 2) if batches is None else (batches, K, 2)
    return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, shape))


def test_batch_shape_broadcasts_leading_axes():
    scheme = lc.letcc(K, N)
    assert _round.batch_shape((scheme, STRAGGLERS, ())) == ()
    swept = scheme.replace(lam_dec=jnp.zeros(5))
    assert _round.batch_shape(swept) == (5,)
    noise = lc.GaussianNoise(jnp.ones((3, 1)))
    assert _round.batch_shape((swept, STRAGGLERS, (noise,))) == (3, 5)
    nodes = scheme.replace(beta=jnp.broadcast_to(scheme.beta, (2, 1, 1, N)))
    assert _round.batch_shape((nodes, (noise,))) == (2, 3, 1)
    with pytest.raises(ValueError, match="do not broadcast together"):
        _round.batch_shape((swept, (lc.GaussianNoise(jnp.ones(4)),)))


def test_sweep_points_equal_plain_calls_with_common_random_numbers():
    X, key = inputs(0), jax.random.key(1)
    lams = jnp.asarray([0.0, 1e-4, 1e-2])
    sigmas = jnp.asarray([0.0, 0.1])
    labels = jnp.arange(K) % 3
    swept = lc.monte_carlo(f, lc.letcc(K, N, lam_enc=1e-3).replace(lam_dec=lams), X, key,
                           trials=TRIALS, stragglers=STRAGGLERS, labels=labels,
                           faults=[lc.GaussianNoise(sigmas[:, None])])
    assert all(np.shape(v) == (2, 3, TRIALS) for v in swept)
    for i, sigma in enumerate(sigmas):
        for j, lam in enumerate(lams):
            plain = lc.monte_carlo(f, lc.letcc(K, N, lam_enc=1e-3, lam_dec=float(lam)), X, key,
                                   trials=TRIALS, stragglers=STRAGGLERS, labels=labels,
                                   faults=[lc.GaussianNoise(float(sigma))])
            for name in plain._fields:
                np.testing.assert_allclose(np.asarray(getattr(swept, name)[i, j]),
                                           np.asarray(getattr(plain, name)), **TOL, err_msg=name)
    # The same patterns everywhere: survivors agree across the grid, trial by trial.
    np.testing.assert_array_equal(np.asarray(swept.survivors[0, 0]),
                                  np.asarray(swept.survivors[1, 2]))


def test_sweeping_straggler_parameters_and_encoder_leaves():
    X, key = inputs(1), jax.random.key(2)
    ps = jnp.asarray([0.05, 0.3])
    enc = jnp.asarray([0.0, 1e-2])  # an encoder leaf: the coded inputs differ per point
    scheme = lc.letcc(K, N).replace(lam_enc=enc[:, None])
    swept = lc.monte_carlo(f, scheme, X, key, trials=TRIALS,
                           stragglers=lc.BernoulliStragglers(ps))
    assert swept.mse.shape == (2, 2, TRIALS)
    for i in range(2):
        for j in range(2):
            plain = lc.monte_carlo(f, lc.letcc(K, N, lam_enc=float(enc[i])), X, key,
                                   trials=TRIALS, stragglers=lc.BernoulliStragglers(float(ps[j])))
            np.testing.assert_allclose(np.asarray(swept.mse[i, j]), np.asarray(plain.mse), **TOL)
    assert float(swept.survivors[:, 1].mean()) < float(swept.survivors[:, 0].mean())


def test_batches_equal_one_call_per_batch_with_split_keys():
    X, key, C = inputs(2, batches=3), jax.random.key(3), 3
    labels = jnp.asarray(np.random.default_rng(4).integers(0, 3, (C, K)))
    scheme = lc.letcc(K, N, lam_dec=1e-3)
    faults = [lc.GaussianNoise(jnp.asarray([0.0, 0.05]))]
    batched = lc.monte_carlo(f, scheme, X, key, trials=TRIALS, stragglers=STRAGGLERS,
                             faults=faults, labels=labels)
    assert batched.mse.shape == (2, C, TRIALS)
    for c, k in enumerate(jax.random.split(key, C)):
        one = lc.monte_carlo(f, scheme, X[c], k, trials=TRIALS, stragglers=STRAGGLERS,
                             faults=faults, labels=labels[c])
        for name in one._fields:
            np.testing.assert_allclose(np.asarray(getattr(batched, name)[:, c]),
                                       np.asarray(getattr(one, name)), **TOL, err_msg=name)
    # expected_loss is the mean over batches and trials of the same per-trial values.
    loss = lc.expected_loss(f, scheme, X, key, trials=TRIALS, stragglers=STRAGGLERS,
                            faults=faults)
    np.testing.assert_allclose(np.asarray(loss), np.asarray(batched.mse).mean(axis=(1, 2)),
                               rtol=1e-12, atol=0)


def test_select_lambda_per_swept_setting():
    """With swept noise, the best lam_dec is chosen per noise level, as separate searches
    would choose it, and the resulting scheme pairs up with the same models."""
    X, key = inputs(5, batches=2), jax.random.key(6)
    sigmas = jnp.asarray([0.0, 0.3])
    grid = (0.0, 1e-6, 1e-3, 1e-1)
    search = lc.select_lambda(f, lc.letcc(K, N), X, key, lam_dec_grid=grid, trials=TRIALS,
                              stragglers=STRAGGLERS, faults=[lc.GaussianNoise(sigmas)])
    assert search.mse.shape == (1, 4, 2) and search.scheme.lam_dec.shape == (2,)
    for i, sigma in enumerate(sigmas):
        alone = lc.select_lambda(f, lc.letcc(K, N), X, key, lam_dec_grid=grid, trials=TRIALS,
                                 stragglers=STRAGGLERS, faults=[lc.GaussianNoise(float(sigma))])
        np.testing.assert_allclose(search.mse[..., i], alone.mse, rtol=1e-12, atol=0)
        assert float(search.scheme.lam_dec[i]) == float(alone.scheme.lam_dec)
    assert float(search.scheme.lam_dec[1]) > float(search.scheme.lam_dec[0])  # noise: smooth
    paired = lc.monte_carlo(f, search.scheme, X[0], key, trials=TRIALS, stragglers=STRAGGLERS,
                            faults=[lc.GaussianNoise(sigmas)])
    assert paired.mse.shape == (2, TRIALS)


def test_single_round_entry_points_refuse_sweeps():
    swept = lc.letcc(K, N).replace(lam_dec=jnp.asarray([0.0, 1e-3]))
    with pytest.raises(ValueError, match=r"decode: this letcc scheme is a sweep .*\(2,\)"):
        swept.decode(jnp.ones((N, 2)))
    with pytest.raises(ValueError, match="run_coded runs one round"):
        lc.run_coded(f, swept, inputs(0), jax.random.key(0))
    with pytest.raises(ValueError, match="select_lambda searches the lambdas of one scheme"):
        lc.select_lambda(f, swept, inputs(0), jax.random.key(0))


def test_vmapped_decode_in_cache_blocks_equals_a_loop(monkeypatch):
    """Under vmap on a CPU, decode runs its batch in cache-sized blocks; forcing blocks of 7
    patterns (with a remainder) changes no value and keeps gradients."""
    scheme = lc.letcc(K, N, lam_dec=1e-3)
    monkeypatch.setattr(core_schemes, "BLOCK_ELEMENTS", 7 * N * 3)
    rng = np.random.default_rng(7)
    Y = jnp.asarray(rng.standard_normal((N, 3)))
    masks = jnp.asarray(rng.random((30, N)) < 0.8).at[:, :2].set(True)
    batched = jax.jit(jax.vmap(scheme.decode, in_axes=(None, 0)))(Y, masks)
    for i in range(30):
        np.testing.assert_allclose(np.asarray(batched[i]), np.asarray(scheme.decode(Y, masks[i])),
                                   rtol=1e-13, atol=1e-13)
    grad = jax.grad(lambda Y: jnp.sum(jax.vmap(scheme.decode, in_axes=(None, 0))(Y, masks) ** 2))(Y)
    loop = sum(jax.grad(lambda Y, a=a: jnp.sum(scheme.decode(Y, a) ** 2))(Y) for a in masks)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(loop), rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("name", ["letcc", "bacc", "uncoded"])
def test_decode_masks_equals_a_loop_of_decodes(name, monkeypatch):
    """The one many-masks program: shared or per-mask outputs, erasures, the fallback, and
    (``linear``) the decoder matrices, against one eager call per mask, in blocks of 7."""
    monkeypatch.setattr(core_schemes, "BLOCK_ELEMENTS", 7 * N * 3)
    rng = np.random.default_rng(11)
    scheme = lc.make_scheme(name, K, N, fallback=jnp.asarray([0.5, -1.0, 2.0]))
    Y = rng.standard_normal((30, N, 3))
    Y[3, 5] = np.nan  # an erasure
    masks = rng.random((30, N)) < 0.7
    masks[4] = False  # nothing arrived: the fallback everywhere
    shared, used, recovered = core_schemes.decode_masks(scheme, jnp.asarray(Y[0]), masks)
    per, _, _ = core_schemes.decode_masks(scheme, jnp.asarray(Y), masks)
    linear, lin_recovered = core_schemes.decode_masks(
        scheme, jnp.eye(N), masks, linear=True)
    for i in range(30):
        np.testing.assert_allclose(np.asarray(shared[i]),
                                   np.asarray(scheme.decode(Y[0], masks[i])),
                                   rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(np.asarray(per[i]), np.asarray(scheme.decode(Y[i], masks[i])),
                                   rtol=1e-13, atol=1e-13)
        np.testing.assert_array_equal(np.asarray(used[i]), masks[i])
        np.testing.assert_array_equal(np.asarray(recovered[i]),
                                      np.asarray(scheme.recovered(masks[i])))
        np.testing.assert_array_equal(np.asarray(lin_recovered[i]), np.asarray(recovered[i]))
        np.testing.assert_allclose(np.asarray(linear[i]),
                                   np.asarray(scheme.decoder_matrix(masks[i])),
                                   rtol=1e-13, atol=1e-13)
    assert not np.asarray(recovered[4]).any()
    np.testing.assert_allclose(np.asarray(shared[4]), np.tile([0.5, -1.0, 2.0], (K, 1)),
                               rtol=0, atol=0)
