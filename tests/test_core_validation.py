"""Every validation error at the API boundary: the exception type and a message that says
what was wrong. (Bad points are covered in test_core_points.py.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import letcc_jax as lc

K, N = 4, 10
FACTORIES = [lc.letcc, lc.bacc, lc.lcc, lc.uncoded]


def f(x):
    return jnp.sin(x)


# ------------------------------------------------------------------------ factories


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("K_, N_, match", [(1, 10, "K must be at least 2"),
                                           (0, 10, "K must be at least 2"),
                                           (4, 1, "N must be at least 2")])
def test_too_small_sizes(factory, K_, N_, match):
    with pytest.raises(ValueError, match=match):
        factory(K_, N_)


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("K_, N_", [(4.0, 10), (4, np.float64(10)), (True, 10), ("4", 10)])
def test_non_integer_sizes(factory, K_, N_):
    with pytest.raises(TypeError, match="must be an int"):
        factory(K_, N_)


@pytest.mark.parametrize("field", ["lam_enc", "lam_dec"])
@pytest.mark.parametrize("value, match", [(-1e-3, "finite and >= 0"),
                                          (np.nan, "finite and >= 0"),
                                          (np.inf, "finite and >= 0"),
                                          (np.array([0.1, 0.2]), "a scalar")])
def test_bad_lambda(field, value, match):
    with pytest.raises(ValueError, match=f"{field} must be {match}"):
        lc.letcc(K, N, **{field: value})


def test_lcc_degree_and_threshold():
    for degree in (0, -1, 1.5, "2"):
        with pytest.raises(ValueError, match="degree must be a positive int"):
            lc.lcc(K, N, degree=degree)
    threshold = r"recovery threshold \(K-1\)\*degree\+1 = 10; use N >= 10"
    with pytest.raises(ValueError, match=threshold):
        lc.lcc(4, 9, degree=3)
    assert lc.lcc(4, 10, degree=3).min_survivors == 10


def test_uncoded_needs_a_worker_per_input():
    with pytest.raises(ValueError, match="N=3 workers cannot hold K=4 inputs"):
        lc.uncoded(4, 3)


def test_make_scheme_unknown_name_and_options():
    with pytest.raises(ValueError, match="unknown scheme 'berrut'"):
        lc.make_scheme("berrut", K, N)
    assert lc.make_scheme("lcc", K, N, degree=2).degree == 2
    with pytest.raises(TypeError):
        lc.make_scheme("bacc", K, N, lam_dec=0.1)  # an option the scheme does not have


# --------------------------------------------------------------------- encode/decode


@pytest.fixture(params=["letcc", "bacc", "lcc", "uncoded"])
def scheme(request):
    return lc.make_scheme(request.param, K, N)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_encode_non_finite_inputs(scheme, bad):
    X = np.ones((K, 3))
    X[2, 1] = bad
    where = r"X contains non-finite values \(first at indices \[\[2, 1\]\]\)"
    with pytest.raises(ValueError, match=where):
        scheme.encode(X)


@pytest.mark.parametrize("shape", [(K + 1, 3), (K - 1, 3), (K,), (K, 2, 2), ()])
def test_encode_shape_mismatch(scheme, shape):
    with pytest.raises(ValueError, match=r"X must have shape \(K, features\) = \(4, \.\.\.\)"):
        scheme.encode(np.ones(shape))


def test_encode_complex_input(scheme):
    with pytest.raises(TypeError, match="X must be real"):
        scheme.encode(np.ones((K, 2), complex))


@pytest.mark.parametrize("shape", [(N + 1, 2), (N - 1, 2), (N,), (N, 1, 1)])
def test_decode_shape_mismatch(scheme, shape):
    with pytest.raises(ValueError, match=r"Y must have shape \(N, features\) = \(10, \.\.\.\)"):
        scheme.decode(np.ones(shape))


@pytest.mark.parametrize("mask", [np.ones(N, int), np.ones(N, np.float32), np.ones(N, np.uint8)])
def test_decode_non_boolean_mask(scheme, mask):
    with pytest.raises(TypeError, match="alive must be boolean"):
        scheme.decode(np.ones((N, 2)), mask)
    with pytest.raises(TypeError, match="alive must be boolean"):
        scheme.decoder_matrix(mask)


@pytest.mark.parametrize("shape", [(N - 1,), (N + 1,), (1, N), ()])
def test_decode_mask_shape(scheme, shape):
    with pytest.raises(ValueError, match=r"alive must be a boolean mask of shape \(N,\) = \(10,\)"):
        scheme.decode(np.ones((N, 2)), np.ones(shape, bool))


def test_mask_as_a_list_of_bools_is_accepted():
    scheme = lc.uncoded(K, N)
    alive = [True] * (N - 2) + [False, False]
    out = scheme.decode(jnp.ones((N, 2)), alive)
    np.testing.assert_allclose(np.asarray(out), 1.0, rtol=1e-13, atol=1e-13)


def test_validation_under_jit_checks_shapes_not_values(scheme):
    encode = jax.jit(lambda s, X: s.encode(X))
    with pytest.raises(ValueError, match="X must have shape"):
        encode(scheme, jnp.ones((K + 1, 2)))
    decode = jax.jit(lambda s, Y, a: s.decode(Y, a))
    with pytest.raises(TypeError, match="alive must be boolean"):
        decode(scheme, jnp.ones((N, 2)), jnp.ones(N, jnp.int32))


# ----------------------------------------------------------- straggler / fault models


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: lc.ExactStragglers(-1), "S must be an int >= 0"),
        (lambda: lc.ExactStragglers(1.5), "S must be an int >= 0"),
        (lambda: lc.BernoulliStragglers(1.0), r"p must be in \[0, 1\)"),
        (lambda: lc.BernoulliStragglers(-0.1), r"p must be in \[0, 1\)"),
        (lambda: lc.BernoulliStragglers(np.nan), r"p must be in \[0, 1\)"),
        (lambda: lc.LatencyStragglers(0), "wait_for must be an int >= 1"),
        (lambda: lc.LatencyStragglers(2.0), "wait_for must be an int >= 1"),
        (lambda: lc.LatencyStragglers(3, shift=-1.0), "shift must be >= 0"),
        (lambda: lc.LatencyStragglers(3, rate=0.0), "rate must be > 0"),
        (lambda: lc.LatencyStragglers(3, slowdown=0.0), "slowdown must be > 0"),
        (lambda: lc.LatencyStragglers(3, slow=-1), "slow must be an int >= 0"),
        (lambda: lc.GaussianNoise(-0.1), "sigma must be >= 0"),
        (lambda: lc.GaussianNoise(np.nan), "sigma must be >= 0"),
        (lambda: lc.Adversaries(-1), "count must be an int >= 0"),
        (lambda: lc.Adversaries(1, mode="random"), "mode must be 'uniform' or 'flip'"),
        (lambda: lc.FailedWorkers(-2), "count must be an int >= 0"),
        (lambda: lc.FailedWorkers(0.5), "count must be an int >= 0"),
    ],
)
def test_bad_model_parameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_straggler_models_check_the_worker_count():
    with pytest.raises(ValueError, match="S=10 stragglers leave no worker of N=10"):
        lc.ExactStragglers(10).sample(jax.random.key(0), 10)
    with pytest.raises(ValueError, match="S=10 stragglers leave no worker of N=10"):
        lc.ExactStragglers(10).min_alive(10)
    with pytest.raises(ValueError, match="wait_for=11 exceeds the N=10 workers"):
        lc.LatencyStragglers(11).sample(jax.random.key(0), 10)


STRAGGLERS = [lc.NoStragglers(), lc.ExactStragglers(2), lc.BernoulliStragglers(0.3),
              lc.LatencyStragglers(6, slow=2)]
FAULTS = [lc.GaussianNoise(0.1), lc.Adversaries(2), lc.FailedWorkers(2)]


@pytest.mark.parametrize("model", STRAGGLERS, ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("N_, match", [(0, "must be an int >= 1"), ("a", "must be an int >= 1"),
                                       (2.0, "must be an int >= 1")])
def test_every_straggler_model_checks_N_in_min_alive_and_sample(model, N_, match):
    with pytest.raises(ValueError, match=match):
        model.min_alive(N_)
    with pytest.raises(ValueError, match=match):
        model.sample(jax.random.key(0), N_)


def test_latency_finish_times_check_their_arguments():
    model = lc.LatencyStragglers(3, slow=4)
    with pytest.raises(ValueError, match="slow=4 exceeds the N=3 workers"):
        model.finish_times(jax.random.key(0), 3)
    with pytest.raises(TypeError, match="one JAX PRNG key"):
        model.finish_times(0, 10)
    assert model.finish_times(jax.random.key(0), 10).shape == (10,)


@pytest.mark.parametrize("model", [lc.BernoulliStragglers(jnp.array([0.1, 0.2])),
                                   lc.LatencyStragglers(3, shift=jnp.array([1.0, 2.0]))],
                         ids=lambda m: type(m).__name__)
def test_a_swept_straggler_model_samples_through_the_evaluators_only(model):
    with pytest.raises(ValueError, match=r"sample takes one model.*sweep axes"):
        model.sample(jax.random.key(0), 10)


@pytest.mark.parametrize("model", FAULTS, ids=lambda m: type(m).__name__)
def test_fault_models_check_what_apply_gets(model):
    key, Y = jax.random.key(0), jnp.ones((N, 3))
    assert model.apply(key, Y).shape == (N, 3)
    with pytest.raises(ValueError, match=r"Y must be \(N, m\)"):
        model.apply(key, jnp.ones(N))  # one output per worker: once returned (N, N)
    with pytest.raises(TypeError, match="real floating-point"):
        model.apply(key, jnp.ones((N, 3), jnp.int32))
    with pytest.raises(TypeError, match="one JAX PRNG key"):
        model.apply(0, Y)
    assert jax.jit(model.apply)(key, Y).shape == (N, 3)  # the checks are of shapes only
    if isinstance(model, (lc.Adversaries, lc.FailedWorkers)):
        with pytest.raises(ValueError, match="exceeds the N=1 workers"):
            model.apply(key, jnp.ones((1, 3)))


@pytest.mark.parametrize("model", [lc.GaussianNoise(jnp.array([0.1, 0.2])),
                                   lc.Adversaries(2, magnitude=jnp.array([1.0, 2.0]))],
                         ids=lambda m: type(m).__name__)
def test_a_swept_fault_model_applies_through_the_evaluators_only(model):
    # (N, 2) outputs once read a sweep of two sigmas as one sigma per column
    with pytest.raises(ValueError, match=r"apply takes one model.*sweep axes"):
        model.apply(jax.random.key(0), jnp.ones((N, 2)))


def test_matrices_in_half_precision_are_computed_in_float32():
    scheme = lc.letcc(K, N)
    for dtype in (jnp.float16, jnp.bfloat16):
        E = scheme.encoder_matrix(dtype)
        D = scheme.decoder_matrix(jnp.ones(N, bool), dtype)
        assert E.dtype == D.dtype == jnp.float32
        np.testing.assert_allclose(E, scheme.encoder_matrix(jnp.float32), rtol=0, atol=0)
        np.testing.assert_allclose(D, scheme.decoder_matrix(jnp.ones(N, bool), jnp.float32),
                                   rtol=0, atol=0)


def test_gcv_scores_one_decoder_and_sharded_backend_needs_a_mesh():
    from letcc_jax import workers

    Y = jnp.sin(jnp.linspace(-1, 1, N))[:, None]
    with pytest.raises(ValueError, match="gcv scores one decoder"):
        lc.gcv(lc.letcc(K, N).replace(beta=jnp.stack([lc.letcc(K, N).beta] * 2)), Y)
    with pytest.raises(TypeError, match="mesh must be a jax.sharding.Mesh"):
        workers.ShardedBackend("not a mesh")
    with pytest.raises(ValueError, match="WorkerFaults.check: N must be an int"):
        workers.WorkerFaults(delay={1: 0.5}).check("a")


# --------------------------------------------------------------- run_coded / monte_carlo

ENTRY_POINTS = {
    "run_coded": lambda *a, **kw: lc.run_coded(*a, **kw),
    "monte_carlo": lambda *a, **kw: lc.monte_carlo(*a, trials=2, **kw),
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_entry_points_validate_their_arguments(entry):
    run = ENTRY_POINTS[entry]
    key, X = jax.random.key(0), jnp.ones((K, 2))
    scheme = lc.letcc(K, N)
    with pytest.raises(TypeError, match="f must be callable"):
        run("sin", scheme, X, key)
    with pytest.raises(TypeError, match="scheme must be a letcc_jax scheme"):
        run(f, "letcc", X, key)
    with pytest.raises(ValueError, match="X must have shape"):
        run(f, scheme, jnp.ones((K + 1, 2)), key)
    with pytest.raises(ValueError, match="X contains non-finite values"):
        run(f, scheme, X.at[0, 0].set(jnp.nan), key)


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize(
    "scheme, stragglers, match",
    [
        (lc.letcc(K, N), lc.ExactStragglers(N - 1), "letcc needs at least 2 survivors but"),
        (lc.bacc(K, N), lc.LatencyStragglers(1), "bacc needs at least 2 survivors but"),
        (lc.lcc(K, N), lc.ExactStragglers(N - K + 1), "lcc needs at least 4 survivors but"),
        (lc.uncoded(K, N), lc.LatencyStragglers(K - 1), "uncoded needs at least 4 survivors"),
    ],
    ids=["letcc", "bacc", "lcc", "uncoded"],
)
def test_straggler_model_leaving_too_few_survivors(entry, scheme, stragglers, match):
    with pytest.raises(ValueError, match=match + ".*reduce the stragglers or add workers"):
        ENTRY_POINTS[entry](f, scheme, jnp.ones((K, 2)), jax.random.key(0), stragglers=stragglers)


def test_exact_stragglers_beyond_N_raise_in_monte_carlo():
    with pytest.raises(ValueError, match="leave no worker"):
        lc.monte_carlo(f, lc.letcc(K, N), jnp.ones((K, 2)), jax.random.key(0), trials=2,
                       stragglers=lc.ExactStragglers(N))


@pytest.mark.parametrize("trials", [0, -3, 2.0, None])
def test_monte_carlo_trials(trials):
    with pytest.raises(ValueError, match="trials must be a positive int"):
        lc.monte_carlo(f, lc.letcc(K, N), jnp.ones((K, 2)), jax.random.key(0), trials=trials)


@pytest.mark.parametrize("labels", [jnp.zeros(K + 1, jnp.int32), jnp.zeros(K),
                                    jnp.zeros((K, 1), int)])
def test_monte_carlo_labels(labels):
    with pytest.raises(ValueError, match=r"labels must be integers of shape \(K,\) = \(4,\)"):
        lc.monte_carlo(f, lc.letcc(K, N), jnp.ones((K, 2)), jax.random.key(0), trials=2,
                       labels=labels)


# ---------------------------------------------------------------------- lambda tuning


def test_select_lambda_validation():
    X, key = jnp.ones((K, 2)), jax.random.key(0)
    with pytest.raises(TypeError, match="select_lambda searches the scalar leaves lam_enc and "
                                        "lam_dec, which BACC"):
        lc.select_lambda(f, lc.bacc(K, N), X, key)
    for grid in ([], [0.1, -1.0], [np.nan], [np.inf]):
        with pytest.raises(ValueError, match="lam_dec_grid must be a non-empty sequence"):
            lc.select_lambda(f, lc.letcc(K, N), X, key, lam_dec_grid=grid)
        with pytest.raises(ValueError, match="lam_enc_grid must be a non-empty sequence"):
            lc.select_lambda(f, lc.letcc(K, N), X, key, lam_enc_grid=grid)
    with pytest.raises(ValueError, match="letcc needs at least 2 survivors"):
        lc.select_lambda(f, lc.letcc(K, N), X, key, stragglers=lc.ExactStragglers(N - 1))


def test_gcv_validation():
    scheme = lc.letcc(K, N)
    Y = jnp.ones((N, 2))
    with pytest.raises(TypeError, match="gcv tunes a LeTCC decoder, got LCC"):
        lc.gcv(lc.lcc(K, N), Y)
    with pytest.raises(ValueError, match="Y must have shape"):
        lc.gcv(scheme, jnp.ones((N + 1, 2)))
    with pytest.raises(TypeError, match="alive must be boolean"):
        lc.gcv(scheme, Y, jnp.ones(N, int))
    with pytest.raises(ValueError, match="gcv needs at least 4 valid worker results"):
        lc.gcv(scheme, Y, jnp.arange(N) < 3)
    with pytest.raises(ValueError, match="gcv needs at least 4 valid worker results"):
        lc.gcv(scheme, Y.at[3:].set(jnp.nan))  # non-finite rows are erasures
    with pytest.raises(ValueError, match="lambda = 0 interpolates, where GCV is undefined"):
        lc.gcv(scheme, Y, lam_grid=[0.0, 1e-3])
    with pytest.raises(ValueError, match="lam_grid must be a non-empty sequence"):
        lc.gcv(scheme, Y, lam_grid=[-1e-3])
