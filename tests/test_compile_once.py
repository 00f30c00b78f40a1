"""Every public entry point is compiled once: after a warm-up call, new data of the same
shapes and dtypes (straggler masks, lambdas, noise levels, keys, inputs) triggers no XLA
compilation, and a whole parameter grid is one compilation. Counted with JAX's compile
events (``jax.monitoring``), not with timings."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from compiles import compilations

import letcc_jax as lc
from letcc_jax import workers

K, N, M, S = 8, 160, 6, 40
W = np.random.default_rng(0).standard_normal((3, M))


def net(W, x):
    return jnp.tanh(x @ W)


F = functools.partial(net, jnp.asarray(W))  # one object: compilations are cached per f


def resident_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_counting_sees_a_compilation():
    x = jnp.ones(17)
    with compilations() as count:
        jax.jit(lambda x: x * 3.0 + 1.0)(x)
    assert count() == 1


def test_a_thousand_eager_decodes_compile_nothing_and_do_not_grow():
    scheme = lc.letcc(K, N, lam_dec=1e-6)
    rng = np.random.default_rng(1)
    Y = rng.standard_normal((N, M))
    masks = np.argsort(rng.random((1000, N)), axis=1) >= S
    outs = [np.asarray(scheme.decode(Y, masks[i])) for i in range(20)]  # warm-up
    before = resident_mb()
    with compilations() as count:
        for alive in masks:
            out = np.asarray(scheme.decode(Y, alive))
    assert count() == 0
    grown = resident_mb() - before
    assert grown < 25.0, f"resident memory grew by {grown:.1f} MB over 1000 decodes"
    assert not np.array_equal(outs[0], out)  # the masks mattered


def _key(i):
    return jax.random.key(i)


def _data(i):
    rng = np.random.default_rng(100 + i)
    alive = np.ones(N, bool)
    alive[rng.choice(N, S, replace=False)] = False
    return dict(X=jnp.asarray(rng.standard_normal((K, 3))),
                Y=jnp.asarray(rng.standard_normal((N, M))),
                alive=jnp.asarray(alive), lam=jnp.asarray(10.0 ** -(3 + i)),
                sigma=jnp.asarray(0.01 * (i + 1)), key=_key(i),
                replicas=jnp.arange(N) % K != i)  # input i of uncoded has no replica left


BASE = lc.letcc(K, N, lam_dec=1e-6)

# Each entry point called with the i-th set of new data; the scheme's structure, the
# shapes and the dtypes stay the same.
CALLS = {
    "encode": lambda d: BASE.replace(lam_enc=d["lam"]).encode(d["X"]),
    "decode": lambda d: BASE.replace(lam_dec=d["lam"]).decode(d["Y"], d["alive"]),
    "decode_bacc": lambda d: lc.bacc(K, N).decode(d["Y"], d["alive"]),
    "decode_uncoded": lambda d: lc.uncoded(K, N).decode(d["Y"], d["alive"] | (jnp.arange(N) < K)),
    "recovered": lambda d: lc.uncoded(K, N).recovered(d["alive"] & d["replicas"]),
    "encoder_matrix": lambda d: BASE.replace(lam_enc=d["lam"]).encoder_matrix(),
    "decoder_matrix": lambda d: BASE.replace(lam_dec=d["lam"]).decoder_matrix(d["alive"]),
    "smoothing_spline": lambda d: lc.smoothing_spline(BASE.beta, d["Y"], d["alive"], d["lam"],
                                                      BASE.alpha),
    "gcv": lambda d: lc.gcv(BASE, d["Y"], d["alive"],
                            lam_grid=np.logspace(-8, -1, 8) * (1 + d["lam"])),
    "run_coded": lambda d: lc.run_coded(F, BASE.replace(lam_dec=d["lam"]), d["X"], d["key"],
                                        stragglers=lc.ExactStragglers(S),
                                        faults=[lc.GaussianNoise(d["sigma"])]).estimate,
    "monte_carlo": lambda d: lc.monte_carlo(F, BASE.replace(lam_dec=d["lam"]), d["X"], d["key"],
                                            trials=16,
                                            stragglers=lc.BernoulliStragglers(d["sigma"]),
                                            faults=[lc.GaussianNoise(d["sigma"])]).mse,
    "expected_loss": lambda d: lc.expected_loss(F, BASE.replace(lam_dec=d["lam"]), d["X"][None],
                                                d["key"], trials=8,
                                                stragglers=lc.ExactStragglers(S),
                                                faults=[lc.GaussianNoise(d["sigma"])]),
    "select_lambda": lambda d: lc.select_lambda(F, BASE, d["X"], d["key"], trials=8,
                                                lam_dec_grid=np.array([0, 1e-6, 1e-3]) * (1 + d["lam"]),
                                                stragglers=lc.ExactStragglers(S),
                                                faults=[lc.GaussianNoise(d["sigma"])]).mse,
    "workers.run": lambda d: workers.run(F, BASE.replace(lam_dec=d["lam"]), d["X"],
                                         alive=d["alive"]).estimate,
}


@pytest.mark.parametrize("name", list(CALLS))
def test_entry_point_compiles_once(name):
    call = CALLS[name]
    data = [_data(i) for i in range(3)]
    first = np.asarray(jax.tree.leaves(call(data[0]))[0])  # warm-up: compiles
    with compilations() as count:
        later = [np.asarray(jax.tree.leaves(call(d))[0]) for d in data[1:]]
    assert count() == 0, f"{name} compiled {count()} time(s) for new data"
    assert not np.array_equal(first, later[0])  # the new data mattered


def test_a_10_by_26_sweep_is_one_compilation():
    """Ten noise levels times 26 decoder lambdas at one (N, K, S): one compiled call, and
    every grid point is the plain call at that point (common random numbers)."""
    sigmas = jnp.asarray(np.logspace(-3, -1, 10)[:, None])
    lams = jnp.asarray(np.concatenate([[0.0], np.logspace(-9, 0, 25)]))
    X, key = _data(0)["X"], _key(5)
    swept = BASE.replace(lam_dec=lams)
    stragglers = lc.ExactStragglers(S)
    with compilations() as count:
        result = lc.monte_carlo(F, swept, X, key, trials=12, stragglers=stragglers,
                                faults=[lc.GaussianNoise(sigmas)])
        jax.block_until_ready(result)
    assert count() == 1
    assert result.mse.shape == (10, 26, 12)
    for i, j in [(0, 0), (3, 7), (9, 25)]:
        point = lc.monte_carlo(F, BASE.replace(lam_dec=lams[j]), X, key, trials=12,
                               stragglers=stragglers, faults=[lc.GaussianNoise(sigmas[i, 0])])
        np.testing.assert_allclose(np.asarray(result.mse[i, j]), np.asarray(point.mse),
                                   rtol=1e-12, atol=1e-15)
    summary = result.summary()
    assert summary["mse_mean"].shape == (10, 26)
    # More noise, more error; smoothing helps the noisiest setting.
    mean = np.asarray(summary["mse_mean"])
    assert mean[-1, 0] > mean[0, 0] and mean[-1].min() < mean[-1, 0]
