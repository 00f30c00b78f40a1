"""Failure semantics, and the hostile inputs that once gave a wrong number or an unclear
error (each test here failed before its fix).

The semantics: an input the valid results cannot determine (``Scheme.recovered``) is
estimated as 0 wherever no error can be raised (``decode`` and ``run_coded`` under jit,
every Monte Carlo trial, ``decoder_matrix``); eager ``decode`` and ``run_coded`` raise; a
row with a NaN or inf is an erasure everywhere, ``recovered`` included.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import letcc_jax as lc
import reference as ref

K, N, D = 4, 10, 2
SCHEMES = {"letcc": lc.letcc(K, N), "letcc_smooth": lc.letcc(K, N, lam_dec=1e-3),
           "bacc": lc.bacc(K, N), "lcc": lc.lcc(K, N), "lcc2": lc.lcc(K, N, degree=2),
           "uncoded": lc.uncoded(K, N)}


def f(x):
    return jnp.sin(x)


def _inputs(dtype=np.float64):
    return jnp.asarray(np.random.default_rng(0).normal(size=(K, D)), dtype)


def _below_threshold(scheme):
    """A mask with one survivor fewer than the scheme needs (for uncoded: input 0 lost)."""
    if scheme.name == "uncoded":
        return jnp.arange(N) % K != 0
    return jnp.arange(N) < scheme.min_survivors - 1


# ------------------------------------------------------------------ failure semantics


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_unrecoverable_inputs_are_estimated_as_zero_under_jit(name, dtype):
    scheme = jax.tree.map(lambda v: jnp.asarray(v, dtype), SCHEMES[name])
    Y = jnp.sin(scheme.encode(_inputs(dtype))) + 1.0  # far from 0 everywhere
    alive = _below_threshold(scheme)
    lost = ~np.asarray(scheme.recovered(alive))
    assert lost.any()
    out = np.asarray(jax.jit(lambda s, y, a: s.decode(y, a))(scheme, Y, alive))
    assert np.all(out[lost] == 0)
    assert np.all(out[~lost] != 0)  # uncoded: the other inputs keep their estimates
    # The decoder matrix says the same: decode(Y, alive) == D @ Y.
    D_F = np.asarray(scheme.decoder_matrix(alive))
    assert np.all(D_F[lost] == 0)
    np.testing.assert_allclose(out, D_F @ np.where(np.asarray(alive)[:, None], Y, 0),
                               rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
    with pytest.raises(ValueError, match="valid worker results|no replica"):
        scheme.decode(Y, alive)


@pytest.mark.parametrize("name", ["letcc", "bacc", "lcc"])
def test_failed_trials_score_the_zero_estimate(name):
    """A Monte Carlo trial below the threshold counts as a failure, with the loss of the
    zero estimate: no extrapolated polynomial, no survivor copied to every input."""
    scheme, X = SCHEMES[name], _inputs()
    result = lc.monte_carlo(f, scheme, X, jax.random.key(0), trials=200,
                            stragglers=lc.BernoulliStragglers(0.75))
    survivors, rec = np.asarray(result.survivors), np.asarray(result.recovered)
    below = survivors < scheme.min_survivors
    assert below.any() and (~below).any()
    assert np.all(rec[below] == 0) and np.all(rec[~below] == 1)
    zero = float(jnp.mean(jnp.sum(f(X) ** 2, axis=1)))
    np.testing.assert_allclose(np.asarray(result.mse)[below], zero, rtol=1e-12)
    assert result.summary()["failure_rate"] == pytest.approx(below.mean())


def test_run_coded_under_jit_follows_the_same_semantics():
    scheme, X = SCHEMES["bacc"], _inputs()
    run = jax.jit(lambda key: lc.run_coded(f, scheme, X, key,
                                           stragglers=lc.ExactStragglers(N - 1)))
    with pytest.raises(ValueError, match="needs at least 2"):
        run(jax.random.key(0))  # the model guarantees too few survivors: caught up front
    run = jax.jit(lambda key: lc.run_coded(f, scheme, X, key,
                                           faults=[lc.FailedWorkers(N - 1)]))
    result = run(jax.random.key(0))
    assert not np.asarray(result.recovered).any()
    assert np.all(np.asarray(result.estimate) == 0)
    with pytest.raises(ValueError, match="valid worker results"):
        lc.run_coded(f, scheme, X, jax.random.key(0), faults=[lc.FailedWorkers(N - 1)])


def test_recovered_counts_nan_rows_as_erasures():
    scheme = SCHEMES["uncoded"]
    Y = np.array(scheme.encode(_inputs()))
    Y[np.arange(N) % K == 1] = np.nan  # every replica of input 1
    alive = jnp.ones(N, bool)
    assert np.asarray(scheme.recovered(alive)).all()  # the mask alone cannot know
    np.testing.assert_array_equal(scheme.recovered(alive, Y), np.arange(K) != 1)
    with pytest.raises(ValueError, match=r"input\(s\) \[1\]"):
        scheme.decode(Y, alive)
    bacc = SCHEMES["bacc"]
    Y = np.full((N, D), np.nan)
    Y[3] = 1.0
    assert not np.asarray(bacc.recovered(alive, Y)).any()
    assert np.asarray(jax.jit(bacc.recovered)(alive, jnp.asarray(Y))).sum() == 0


# -------------------------------------------------------- validation not bypassed


def test_nodes_are_checked_in_replace_and_in_the_constructors():
    scheme = lc.letcc(K, N)
    with pytest.raises(ValueError, match="alpha must be strictly ascending"):
        scheme.replace(alpha=scheme.alpha.at[1].set(scheme.alpha[0]))
    with pytest.raises(ValueError, match="beta must be ascending"):
        scheme.replace(beta=scheme.beta[::-1])
    with pytest.raises(ValueError, match="beta must hold at least 2 nodes"):
        scheme.replace(beta=scheme.beta[:1])
    with pytest.raises(ValueError, match="alpha must be strictly ascending"):
        lc.BACC(np.array([0.0, 0.0, 0.5]), np.linspace(-1, 1, 6))
    with pytest.raises(ValueError, match="degree must be a positive int"):
        lc.LCC(np.linspace(-1, 1, 3), np.linspace(-1, 1, 6), degree=0)


def test_repeated_worker_tags_are_replicas():
    """Workers at one tag compute the same coded input; the first that answered counts."""
    scheme = lc.letcc(K, N)
    beta = np.asarray(scheme.beta).copy()
    beta[1] = beta[0]
    twin = lc.letcc(K, N, points=(np.asarray(scheme.alpha), beta))
    X = _inputs()
    coded = np.asarray(twin.encode(X))
    np.testing.assert_array_equal(coded[0], coded[1])
    Y = np.sin(coded)
    without = jnp.arange(N) != 1
    np.testing.assert_allclose(twin.decode(Y), twin.decode(Y, without), rtol=1e-12)
    # Two answers at one tag are one point of the curve: not enough to decode.
    pair = jnp.arange(N) < 2
    assert not np.asarray(twin.recovered(pair)).any()
    with pytest.raises(ValueError, match="valid worker results"):
        twin.decode(Y, pair)


@pytest.mark.parametrize("method", ["sris", "reinsch", "parallel"])
def test_a_straggler_at_a_tag_an_answer_shares_is_ignored(method, dtype):
    """An answer followed by a straggler at its own tag (twins, or workers padded at the
    last tag) decodes as if that straggler did not exist, against the float64 reference
    through the distinct survivors. The interpolating sweep once lost the survivor's
    slope to the stiff tie behind it (3e-2 off in float64)."""
    base = lc.letcc(K, 12, solver=method)  # "auto" is "sris" on a CPU at this size
    beta = np.asarray(base.beta, np.float64)
    rng = np.random.default_rng(1)
    for twins, lam in itertools.product(([0, 5, 11], [11, 11, 11], [3, 3, 8]), (0.0, 1e-3)):
        tags = np.sort(np.concatenate([beta, beta[twins]]))
        scheme = jax.tree.map(lambda v: jnp.asarray(v, dtype),
                              base.replace(beta=jnp.asarray(tags), lam_dec=lam))
        first = np.concatenate([[True], np.diff(tags) > 0])  # the first worker at each tag
        alive = first & (rng.random(tags.size) > 0.2)
        alive[[0, -1]] = first[[0, -1]]
        Y = np.stack([np.sin(3 * tags), np.cos(2 * tags)], axis=1)
        out = np.asarray(scheme.decode(jnp.asarray(Y, dtype), alive), np.float64)
        expected = ref.natural_smoothing_spline(tags[alive], Y[alive], np.ones(alive.sum(), bool),
                                                lam, np.asarray(base.alpha, np.float64))
        tol = 2e-5 if dtype == np.float32 else 1e-9
        np.testing.assert_allclose(out, expected, rtol=tol, atol=tol,
                                   err_msg=f"twins {twins}, lam {lam}")


@pytest.mark.parametrize("value, error, match", [
    (-1, ValueError, "lam_dec must be finite and >= 0"),  # an int once skipped the check
    (None, TypeError, "lam_dec must be a real number"),
    ("0.1", TypeError, "lam_dec must be a real number"),
    (True, TypeError, "lam_dec must be a real number"),
    (1j, TypeError, "lam_dec must be a real number"),
])
def test_lambdas_of_every_type_are_checked(value, error, match):
    with pytest.raises(error, match=match):
        lc.letcc(K, N).replace(lam_dec=value)
    with pytest.raises(error, match=match):
        lc.letcc(K, N, lam_dec=value)


@pytest.mark.parametrize("model, match", [
    (lambda: lc.BernoulliStragglers(2), "p must be in"),
    (lambda: lc.GaussianNoise(-1), "sigma must be >= 0"),
    (lambda: lc.GaussianNoise("loud"), "sigma must be a real number"),
    (lambda: lc.LatencyStragglers(3, rate=float("nan")), "rate must be > 0"),
])
def test_model_parameters_of_every_type_are_checked(model, match):
    """Integer and string parameters reach the same checks as floats, at the latest when
    a call validates the model."""
    with pytest.raises((ValueError, TypeError), match=match):
        lc.monte_carlo(f, lc.letcc(K, N), _inputs(), jax.random.key(0), trials=2,
                       **({"faults": [m]} if isinstance(m := model(), lc.FaultModel)
                          else {"stragglers": m}))


def test_smoothing_spline_rejects_repeated_knots_and_empty_masks():
    t = jnp.linspace(-1, 1, 6)
    y = jnp.sin(3 * t)
    with pytest.raises(ValueError, match="t must be finite and strictly ascending"):
        lc.smoothing_spline(t.at[2].set(t[1]), y)  # gave NaN
    with pytest.raises(ValueError, match="alive selects no rows"):
        lc.smoothing_spline(t, y, jnp.zeros(6, bool))
    with pytest.raises(ValueError, match="lam must be finite and >= 0"):
        lc.smoothing_spline(t, y, lam=-1.0)


# ------------------------------------------------------------ JAX transformations


def test_checks_skip_traced_values_of_closed_over_arrays():
    scheme, X = lc.letcc(K, N), _inputs()
    coded = jax.jit(lambda: scheme.encode(X))()
    np.testing.assert_allclose(coded, scheme.encode(X), rtol=1e-12)
    grad = jax.jit(jax.grad(lambda x: jnp.sum(scheme.encode(x) ** 2)))(X)
    assert grad.shape == (K, D) and np.all(np.isfinite(grad))
    swept = jax.jit(lambda lam: scheme.replace(lam_dec=lam).decode(jnp.sin(coded)))(0.1)
    assert swept.shape == (K, D)


# ------------------------------------------------------------------ types users pass


def test_numpy_integer_sizes_are_accepted():
    for factory in (lc.letcc, lc.bacc, lc.lcc, lc.uncoded):
        assert factory(np.int64(K), np.int32(N)).N == N
    assert lc.lcc(K, N, degree=np.int64(2)).min_survivors == 2 * (K - 1) + 1
    assert lc.ExactStragglers(np.int64(2)).S == 2
    result = lc.monte_carlo(f, lc.letcc(K, N), _inputs(), jax.random.key(0),
                            trials=np.int64(3), batch_size=np.int32(2))
    assert result.mse.shape == (3,)


@pytest.mark.parametrize("g", [lambda x: jax.lax.complex(x, x), lambda x: jnp.round(x).astype(int),
                               lambda x: (x, x)])
def test_outputs_that_are_not_real_arrays_are_rejected(g):
    with pytest.raises(TypeError, match="f must return one array of real floating-point"):
        lc.monte_carlo(g, lc.letcc(K, N), _inputs(), jax.random.key(0), trials=2)
    with pytest.raises(TypeError, match="f must return one array of real floating-point"):
        lc.run_coded(g, lc.letcc(K, N), _inputs(), jax.random.key(0))


@pytest.mark.parametrize("kwargs, match", [
    ({"faults": [lc.Adversaries(N + 3)]}, "count=13 exceeds the N=10 workers"),
    ({"faults": [lc.FailedWorkers(N + 1)]}, "count=11 exceeds the N=10 workers"),
    ({"stragglers": lc.LatencyStragglers(5, slow=N + 1)}, "slow=11 exceeds the N=10"),
    ({"stragglers": lc.ExactStragglers(N)}, "S=10 stragglers leave no worker"),
    ({"faults": [None]}, "faults must be fault models"),
    ({"faults": 3}, "faults must be a list of fault models"),
    ({"stragglers": None}, "stragglers must be a straggler model"),
    ({"trials": 0}, "trials must be a positive int"),
    ({"batch_size": 0}, "batch_size must be a positive int"),
])
def test_model_sizes_and_entries_are_checked_against_the_call(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        lc.monte_carlo(f, lc.letcc(K, N), _inputs(), jax.random.key(0), **kwargs)


def test_a_single_fault_model_or_none_is_accepted():
    scheme, X, key = lc.letcc(K, N), _inputs(), jax.random.key(0)
    one = lc.monte_carlo(f, scheme, X, key, trials=3, faults=lc.GaussianNoise(0.1))
    listed = lc.monte_carlo(f, scheme, X, key, trials=3, faults=[lc.GaussianNoise(0.1)])
    np.testing.assert_array_equal(one.mse, listed.mse)
    none = lc.monte_carlo(f, scheme, X, key, trials=3, faults=None)
    np.testing.assert_array_equal(none.mse, lc.monte_carlo(f, scheme, X, key, trials=3).mse)


@pytest.mark.parametrize("key", [0, np.uint32(3), "seed",
                                 jax.random.split(jax.random.key(0), 2)])
def test_keys_must_be_one_prng_key(key):
    call = functools.partial(lc.monte_carlo, f, lc.letcc(K, N), _inputs(), key, trials=2)
    with pytest.raises(TypeError, match="key must be one JAX PRNG key"):
        call()
    with pytest.raises(TypeError, match="key must be one JAX PRNG key"):
        lc.select_lambda(f, lc.letcc(K, N), _inputs(), key, trials=2)


def test_legacy_raw_keys_are_accepted():
    raw = lc.monte_carlo(f, lc.letcc(K, N), _inputs(), jax.random.PRNGKey(0), trials=3,
                         stragglers=lc.ExactStragglers(2))
    typed = lc.monte_carlo(f, lc.letcc(K, N), _inputs(), jax.random.wrap_key_data(
        jax.random.PRNGKey(0)), trials=3, stragglers=lc.ExactStragglers(2))
    np.testing.assert_array_equal(raw.mse, typed.mse)


def test_empty_calibration_sets_and_features_are_rejected():
    with pytest.raises(ValueError, match=r"X_cal has shape \(0, 4, 2\)"):
        lc.select_lambda(f, lc.letcc(K, N), jnp.zeros((0, K, D)), jax.random.key(0))
    with pytest.raises(ValueError, match="no features"):
        lc.letcc(K, N).encode(jnp.zeros((K, 0)))
    with pytest.raises(TypeError, match="X must be an array of real numbers"):
        lc.letcc(K, N).encode(None)


def test_make_scheme_names_options_a_scheme_does_not_take():
    with pytest.raises(TypeError, match="bacc takes no option lam_dec; its options are points"):
        lc.make_scheme("bacc", K, N, lam_dec=0.1)
    assert lc.make_scheme("letcc+residual", K, N, lam_dec=0.1).lam_dec == 0.1


def test_matrix_dtypes_must_be_real_floating():
    scheme = lc.letcc(K, N)
    for dtype, match in (("foo", "floating-point dtype"), (int, "real floating-point"),
                         (complex, "real floating-point")):
        with pytest.raises(TypeError, match=match):
            scheme.encoder_matrix(dtype=dtype)
        with pytest.raises(TypeError, match=match):
            scheme.decoder_matrix(jnp.ones(N, bool), dtype=dtype)
    assert scheme.encoder_matrix(dtype=jnp.float32).dtype == jnp.float32


def test_a_non_finite_residual_is_rejected():
    with pytest.raises(ValueError, match="residual contains non-finite values"):
        lc.residual_letcc(K, N, residual=jnp.full((N, K), jnp.nan))


class _Unhashable:
    __hash__ = None

    def __call__(self, x):
        return jnp.sin(x)


@pytest.mark.parametrize("g, error, match", [
    (_Unhashable(), TypeError, "f must be hashable"),
    (np.sin, TypeError, "f failed on inputs of shape"),  # NumPy on a tracer
    (lambda x: x * jnp.nan, ValueError, "f returned NaN or inf on the inputs X"),
])
def test_f_problems_are_named(g, error, match):
    with pytest.raises(error, match=match):
        lc.monte_carlo(g, lc.letcc(K, N), _inputs(), jax.random.key(0), trials=2)


@pytest.mark.parametrize("labels", [np.full(K, D), np.full(K, -1)])
def test_labels_must_index_the_outputs(labels):
    with pytest.raises(ValueError, match=r"labels must be class indices in \[0, m\) = \[0, 2\)"):
        lc.monte_carlo(f, lc.letcc(K, N), _inputs(), jax.random.key(0), trials=2, labels=labels)


def test_devices_must_be_jax_devices():
    with pytest.raises(TypeError, match="devices must be JAX devices"):
        lc.monte_carlo(f, lc.letcc(K, N), _inputs(), jax.random.key(0), trials=2,
                       devices=["cpu"])


# ------------------------------------------------------- numbers at the extremes


@pytest.mark.parametrize("half", [jnp.float16, jnp.bfloat16])
def test_half_precision_data_are_decoded_in_float32(half):
    """float16 once gave NaN from LeTCC; bfloat16 rounded the nodes (errors of 1.9)."""
    scheme = lc.letcc(6, 30)
    Y = jnp.asarray(np.sin(3 * np.asarray(lc.chebyshev_second(30)))[:, None])
    out = scheme.decode(Y.astype(half))
    assert out.dtype == jnp.float32
    exact = scheme.decode(Y.astype(half).astype(jnp.float64))
    np.testing.assert_allclose(out, exact, atol=1e-5)
    coded = scheme.encode(jnp.ones((6, 2), half))
    assert coded.dtype == jnp.float32 and np.all(np.isfinite(coded))


def test_smoothing_spline_treats_non_finite_rows_as_erasures():
    t = jnp.linspace(-1, 1, 10)
    y = jnp.sin(3 * t)
    out = lc.smoothing_spline(t, y.at[3].set(jnp.nan), lam=1e-3)
    np.testing.assert_allclose(out, lc.smoothing_spline(t, y, jnp.arange(10) != 3, lam=1e-3),
                               rtol=1e-12)
    with pytest.raises(ValueError, match="no rows of y with finite values"):
        lc.smoothing_spline(t, jnp.full(10, jnp.inf))
    with pytest.raises(ValueError, match=r"y has shape \(0,\)"):
        lc.smoothing_spline(t[:0], jnp.zeros((0,)))


@pytest.mark.parametrize("method", ["sris", "blocked", "reinsch"])
@pytest.mark.parametrize("lam", [1e20, 1e250, 1e300])
def test_huge_lambdas_give_the_straight_line(method, lam):
    t = np.sort(np.random.default_rng(1).uniform(-1, 1, 25))
    y = np.sin(3 * t)
    out = np.asarray(lc.smoothing_spline(t, y, lam=lam, method=method))
    line = np.polyval(np.polyfit(t, y, 1), t)
    np.testing.assert_allclose(out, line, atol=1e-9 if method == "reinsch" else 1e-13)
    out32 = lc.smoothing_spline(t.astype(np.float32), y.astype(np.float32), lam=np.float32(1e38))
    np.testing.assert_allclose(out32, line, atol=1e-5)


@pytest.mark.parametrize("scale", [1e-200, 1e-150, 1e120, 1e200])
def test_nodes_at_any_scale(scale):
    """Knots scaled by 1e-150 once gave NaN, by 1e200 errors of 0.6."""
    alpha, beta = lc.chebyshev_first(K) * scale, lc.chebyshev_second(N) * scale
    scheme = lc.letcc(K, N, points=(alpha, beta))
    unit = lc.letcc(K, N)
    X = _inputs()
    np.testing.assert_allclose(scheme.encode(X), unit.encode(X), atol=1e-13)
    Y = jnp.sin(unit.encode(X))
    np.testing.assert_allclose(scheme.decode(Y), unit.decode(Y), atol=1e-13)


@pytest.mark.parametrize("lam", [0.0, 1e-3])
@pytest.mark.parametrize("scale", [1e38, 1e30, 1e-30])
def test_float32_values_at_the_ends_of_the_range(scale, lam):
    """Outputs of 2e38 (near float32's largest) once gave NaN."""
    scheme = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), lc.letcc(K, N, lam_dec=lam))
    Y = np.sin(np.asarray(lc.letcc(K, N).encode(_inputs())))
    Y = Y / np.abs(Y).max() * 2.3  # the largest entry becomes 2.3 * scale
    out = np.asarray(scheme.decode((Y * scale).astype(np.float32)), np.float64) / scale
    np.testing.assert_allclose(out, lc.letcc(K, N, lam_dec=lam).decode(Y), atol=1e-5)
    X = np.asarray(_inputs()) / np.abs(_inputs()).max() * 2.3
    coded = np.asarray(scheme.encode((X * scale).astype(np.float32)), np.float64) / scale
    np.testing.assert_allclose(coded, lc.letcc(K, N).encode(X), atol=1e-5)


def test_complex_and_string_points_are_rejected():
    alpha, beta = lc.chebyshev_first(K), lc.chebyshev_second(N)
    with pytest.raises(TypeError, match="alpha must be an array of 4 real numbers"):
        lc.letcc(K, N, points=(alpha + 0.5j, beta))
    with pytest.raises(TypeError, match="beta must be an array of 10 real numbers"):
        lc.letcc(K, N, points=(alpha, [str(b) for b in beta]))


def test_outputs_of_size_zero_and_sweeps_of_size_zero_are_rejected():
    with pytest.raises(TypeError, match="f returned an empty output"):
        lc.run_coded(lambda x: jnp.zeros((0,)), lc.letcc(K, N), _inputs(), jax.random.key(0))
    with pytest.raises(ValueError, match="empty sweep axis"):
        lc.monte_carlo(f, lc.letcc(K, N), _inputs(), jax.random.key(0), trials=2,
                       faults=[lc.GaussianNoise(jnp.zeros((0,)))])


def test_run_coded_takes_one_batch_and_raw_keys_of_the_right_shape():
    with pytest.raises(ValueError, match=r"X must have shape \(K, features\)"):
        lc.run_coded(f, lc.letcc(K, N), _inputs()[None].repeat(2, 0), jax.random.key(0))
    with pytest.raises(TypeError, match="key must be one JAX PRNG key"):
        lc.run_coded(f, lc.letcc(K, N), _inputs(), jnp.zeros(4, jnp.uint32))


def test_choosing_functions_say_they_run_eagerly():
    scheme, X = lc.letcc(K, N), _inputs()
    Y = jnp.sin(scheme.encode(X))
    with pytest.raises(TypeError, match="gcv runs eagerly"):
        jax.jit(lambda y: lc.gcv(scheme, y)[1])(Y)
    with pytest.raises(TypeError, match="select_lambda runs eagerly"):
        jax.jit(lambda x: lc.select_lambda(f, scheme, x, jax.random.key(0)).mse)(X)



@pytest.mark.parametrize("scale", [2.0**-600, 1e-200, 1e-30, 1e30, 1e200, 2.0**600])
def test_gcv_chooses_the_same_lambda_at_any_scale_of_the_outputs(scale):
    """A GCV score scales with the square of Y and its minimiser does not: outputs of any
    size choose as unit-size ones do (their scores once underflowed to 0, and the first
    lambda came back, or overflowed)."""
    scheme = lc.letcc(K, 40)
    beta = np.asarray(scheme.beta, np.float64)
    noise = np.random.default_rng(0).normal(size=(40, 2))
    Y = np.stack([np.sin(3 * beta), np.cos(2 * beta)], 1) + 0.05 * noise
    best, scores = lc.gcv(scheme, jnp.asarray(Y))
    scaled_best, scaled_scores = lc.gcv(scheme, jnp.asarray(Y * scale))  # float64 here
    assert 0 < best < 1 and scaled_best == best
    with np.errstate(over="ignore", under="ignore"):
        np.testing.assert_allclose(scaled_scores, scores * np.float64(scale) ** 2, rtol=1e-5)


def test_monte_carlo_under_vmap_over_what_f_closes_over():
    ws = jnp.linspace(0.5, 1.5, 3)
    X = _inputs()
    losses = jax.vmap(lambda w: lc.expected_loss(lambda x: jnp.tanh(w * x), lc.letcc(K, N), X,
                                                 jax.random.key(0), trials=4,
                                                 stragglers=lc.ExactStragglers(2)))(ws)
    one = lc.expected_loss(functools.partial(lambda w, x: jnp.tanh(w * x), 1.5), lc.letcc(K, N),
                           X, jax.random.key(0), trials=4, stragglers=lc.ExactStragglers(2))
    np.testing.assert_allclose(losses[-1], one, rtol=1e-10)


def test_single_device_and_scheme_name_types():
    result = lc.monte_carlo(f, lc.letcc(K, N), _inputs(), jax.random.key(0), trials=2,
                            devices=jax.devices()[0])
    assert result.mse.shape == (2,)
    with pytest.raises(ValueError, match="unknown scheme"):
        lc.make_scheme(["letcc"], K, N)
    with pytest.raises(TypeError, match="labels must be an integer array"):
        lc.monte_carlo(f, lc.letcc(K, N), _inputs(), jax.random.key(0), trials=2, labels="abc")
    with pytest.raises(ValueError, match="lam_dec_grid"):
        lc.select_lambda(f, lc.letcc(K, N), _inputs(), jax.random.key(0),
                         lam_dec_grid=[True, False])


@pytest.mark.parametrize("model", [lc.NoStragglers(), lc.ExactStragglers(2),
                                   lc.BernoulliStragglers(0.2), lc.LatencyStragglers(3)])
def test_straggler_models_check_what_sample_is_given(model):
    assert model.sample(jax.random.key(0), N).shape == (N,)
    with pytest.raises(TypeError, match="key must be one JAX PRNG key"):
        model.sample(0, N)
    with pytest.raises(ValueError, match=r"N \(the number of workers\) must be an int >= 1"):
        model.sample(jax.random.key(0), "10")
    with pytest.raises(ValueError, match=r"N \(the number of workers\) must be an int >= 1"):
        model.sample(jax.random.key(0), -1)
