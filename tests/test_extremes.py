"""Numbers at the extremes of the dtype: output columns of very different sizes, values at the
largest finite number, fault sizes beyond the dtype, GCV at any scale of the outputs, and
nodes closer than float32 resolves (property-based, with ``hypothesis``).

Each column of a linear code decodes as it would alone: the schemes and the smoother scale
every column by a power of two of its own (exact), so the column-alone decode is the
reference, to a few units of round-off of the column's own size.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import letcc_jax as lc
import reference as ref

K, N = 4, 9
#: Decimal exponents of column sizes spanning each dtype's normal range (with room for
#: the decoders' weights: Lagrange's reach a few units).
EXPONENTS = {np.float32: 30, np.float64: 200}
#: A column decoded with others against the same column alone: the same arithmetic on the
#: same power-of-two-scaled values, up to reassociation of a sum (a few eps of the column).
ALONE_EPS = 16
SCHEMES = ("letcc", "letcc_smooth", "bacc", "lcc", "uncoded")


def make(name: str, dtype) -> lc.Scheme:
    scheme = (lc.letcc(K, N, lam_enc=1e-4, lam_dec=1e-3) if name == "letcc_smooth"
              else lc.make_scheme(name, K, N))
    return jax.tree.map(lambda leaf: jnp.asarray(leaf, dtype), scheme)


def _as_alone(together, columns, dtype):
    """Every column of ``together`` equals ``columns[c]`` (the column decoded alone) to
    ALONE_EPS eps of that column's size."""
    eps = float(np.finfo(dtype).eps)
    together = np.asarray(together, np.float64)
    for c, alone in enumerate(columns):
        alone = np.asarray(alone, np.float64)[:, 0]
        size = float(np.max(np.abs(alone)))
        assert size > 0, f"column {c} decoded alone is zero"
        np.testing.assert_allclose(together[:, c], alone, rtol=0, atol=ALONE_EPS * eps * size,
                                   err_msg=f"column {c}")


def _columns(rng, dtype, exponents, rows):
    sizes = 10.0 ** np.asarray(exponents, np.float64)
    return (rng.normal(size=(rows, len(exponents))) * sizes).astype(dtype)


@pytest.mark.parametrize("name", SCHEMES)
def test_columns_of_any_size_decode_and_encode_as_alone(name, dtype):
    """Columns of 1e+-30 (float32) or 1e+-200 (float64) together: the small one used to
    decode as zeros (one power-of-two scale for all columns flushed it)."""
    e = EXPONENTS[dtype]
    scheme = make(name, dtype)
    rng = np.random.default_rng(0)
    Y = _columns(rng, dtype, (e, -e, 0), N)
    alive = np.ones(N, bool)
    alive[[2, 7]] = False
    _as_alone(scheme.decode(Y, alive), [scheme.decode(Y[:, [c]], alive) for c in range(3)],
              dtype)
    X = _columns(rng, dtype, (-e, e), K)
    _as_alone(scheme.encode(X), [scheme.encode(X[:, [c]]) for c in range(2)], dtype)


def test_smoothing_spline_columns_of_any_size_as_alone(dtype):
    e = EXPONENTS[dtype]
    rng = np.random.default_rng(1)
    t = np.linspace(-1, 1, N).astype(dtype)
    y = _columns(rng, dtype, (e, -e), N)
    for lam in (0.0, 1e-3):
        _as_alone(lc.smoothing_spline(t, y, lam=lam),
                  [lc.smoothing_spline(t, y[:, [c]], lam=lam) for c in range(2)], dtype)


def test_decode_of_columns_of_any_size_is_the_decoder_matrix(dtype):
    """The linear structure survives the per-column scaling: decode = D(alive) @ Y column by
    column, against D @ Y in float64 (D's own rounding: 64 eps of the column, lam > 0)."""
    e = EXPONENTS[dtype]
    scheme = make("letcc_smooth", dtype)
    Y = _columns(np.random.default_rng(2), dtype, (e, -e), N)
    alive = np.ones(N, bool)
    alive[3] = False
    D = np.asarray(scheme.decoder_matrix(alive), np.float64)
    expected = D @ Y.astype(np.float64)
    out = np.asarray(scheme.decode(Y, alive), np.float64)
    eps = float(np.finfo(dtype).eps)
    for c in range(2):
        size = float(np.max(np.abs(expected[:, c])))
        np.testing.assert_allclose(out[:, c], expected[:, c], rtol=0, atol=64 * eps * size)


@pytest.mark.parametrize("name", SCHEMES)
def test_a_constant_at_the_largest_value_of_the_dtype(name, dtype):
    """A constant output equal to the dtype's largest finite value decodes (and encodes) to
    it, never to inf: the fit is a few eps off the constant (round-off, 16 eps at most
    measured) and values above the largest by that much are it."""
    largest = float(np.finfo(dtype).max)
    eps = float(np.finfo(dtype).eps)
    scheme = make(name, dtype)
    alive = np.ones(N, bool)
    alive[3] = False
    Y = np.full((N, 2), largest, dtype)
    Y[:, 1] *= -1
    for out in (scheme.decode(Y, alive), scheme.encode(Y[:K])):
        out = np.asarray(out, np.float64) / largest
        assert np.all(np.isfinite(out)), out
        # Lagrange's weights sum to 1 with larger terms than the others': 20x the round-off.
        scale = 20 if name == "lcc" else 1
        np.testing.assert_allclose(np.abs(out), 1.0, rtol=0, atol=128 * scale * eps)


def test_smoothing_spline_of_a_constant_at_the_largest_value(dtype):
    largest = float(np.finfo(dtype).max)
    t = np.linspace(-1, 1, N).astype(dtype)
    for lam in (0.0, 1e-3, 1.0):
        for method in ("sris", "reinsch"):
            out = np.asarray(lc.smoothing_spline(t, np.full(N, largest, dtype), lam=lam,
                                                 method=method), np.float64)
            assert np.all(np.isfinite(out)), (lam, method, out)


def test_posterior_of_columns_of_any_size(dtype):
    """The posterior's scale tau per column follows the column's size, 1e+-30 in float32
    (tau^2 of a 1e30 column does not fit float32: the scale is carried as tau)."""
    e = EXPONENTS[dtype]
    scheme = make("letcc_smooth", dtype)
    curve = np.sin(2.0 * np.asarray(scheme.beta, np.float64))
    sizes = np.array([10.0**e, 10.0**-e, 1.0])
    Y = (curve[:, None] * sizes).astype(dtype)
    post = scheme.posterior(Y)
    scale, std = np.asarray(post.scale, np.float64), np.asarray(post.std, np.float64)
    assert np.all(np.isfinite(scale)) and np.all(scale > 0)
    rtol = 64 * float(np.finfo(dtype).eps)
    np.testing.assert_allclose(scale / sizes, scale[2], rtol=rtol)
    np.testing.assert_allclose(std / sizes, np.repeat(std[:, 2:], 3, axis=1), rtol=rtol)


# ------------------------------------------------------------------ faults beyond the dtype


def _tanh(x):
    return jnp.tanh(x)


def test_fault_sizes_beyond_the_dtype_are_rejected():
    """A size that float32 outputs cannot hold would become inf, an erasure to the decoder:
    the strongest attack would score as nearly harmless. It is rejected, naming the limit."""
    X = np.array([[0.1], [0.2], [0.3], [0.9]], np.float32)
    scheme = lc.letcc(K, N, lam_dec=1e-4)
    key = jax.random.key(0)
    for fault in (lc.Adversaries(2, magnitude=1e39), lc.Adversaries(2, 1e39, mode="flip"),
                  lc.GaussianNoise(1e38)):
        with pytest.raises(ValueError, match=r"float32.*3\.403e\+38"):
            lc.monte_carlo(_tanh, scheme, X, key, trials=2, faults=[fault])
        with pytest.raises(ValueError, match="float32"):
            fault.apply(key, jnp.ones((N, 1), jnp.float32))
    with pytest.raises(ValueError, match=r"magnitude.*float32.*3\.403e\+38"):
        lc.worst_adversaries(_tanh, scheme, X, 2, 1e39)
    # float64 outputs hold them; the largest float32 value itself is accepted.
    lc.GaussianNoise(1e38).apply(key, jnp.ones((N, 1), jnp.float64))
    out = lc.Adversaries(2, magnitude=3.4e38).apply(key, jnp.ones((N, 1), jnp.float32))
    assert np.all(np.isfinite(np.asarray(out)))


def test_flip_adversaries_saturate_at_the_largest_value():
    Y = jnp.full((N, 1), 1e30, jnp.float32)
    out = np.asarray(lc.Adversaries(3, magnitude=1e20, mode="flip").apply(jax.random.key(1), Y))
    assert np.all(np.isfinite(out))
    assert np.sum(out == -np.finfo(np.float32).max) == 3


# ------------------------------------------------------------------------ GCV at any scale


@pytest.mark.parametrize("seed", [2, 3])
def test_gcv_chooses_the_same_lambda_at_any_scale_in_float32(seed):
    """float32 outputs of a cubic plus small noise at N = 10 (float32 points): near
    interpolation the scores used to carry errors of 1e-3 (residuals as cancelling
    differences) and Y, 3 Y, 0.7 Y and 1e30 Y chose different lambdas. The choice is now the
    same, and one that the float64 scores of the same data rank within sqrt(eps) of the best."""
    n = 10
    scheme = jax.tree.map(lambda leaf: jnp.asarray(leaf, jnp.float32), lc.letcc(K, n))
    beta = np.asarray(scheme.beta, np.float64)
    rng = np.random.default_rng(seed)
    alive = rng.random(n) < 0.8
    Y = (beta**3 - beta)[:, None] + 1e-4 * rng.standard_normal((n, 1))
    grid = np.asarray(lc.DEFAULT_LAMBDA_GRID[1:])
    chosen = {c: lc.gcv(scheme, jnp.asarray(Y * c, jnp.float32), jnp.asarray(alive))[0]
              for c in (1.0, 3.0, 0.7, 1e30)}
    assert len(set(chosen.values())) == 1, chosen
    data = Y.astype(np.float32).astype(np.float64)
    expected = np.array([ref.gcv_score(beta[alive], data[alive], lam) for lam in grid])
    score = expected[list(grid).index(chosen[1.0])]
    assert score <= expected.min() * (1 + 2 * np.sqrt(np.finfo(np.float32).eps))


def test_gcv_scores_near_interpolation_match_float64():
    """The scores at the smallest lambdas, where the fit nearly interpolates, against the
    float64 scores of the same float32 outputs at N = 10: within 1e-3 relative (measured
    1.4e-4 at most; 8.8e-2 when the residuals were cancelling differences)."""
    n = 10
    scheme = jax.tree.map(lambda leaf: jnp.asarray(leaf, jnp.float32), lc.letcc(K, n))
    beta = np.asarray(scheme.beta, np.float64)
    Y = np.stack([np.sin(3 * beta), np.cos(2 * beta)], 1).astype(np.float32)
    grid = np.asarray(lc.DEFAULT_LAMBDA_GRID[1:6])
    _, scores = lc.gcv(scheme, jnp.asarray(Y), lam_grid=grid)
    expected = np.array([ref.gcv_score(beta, Y.astype(np.float64), lam) for lam in grid])
    np.testing.assert_allclose(scores, expected, rtol=1e-3, atol=0)


# ------------------------------------------------------------------ property-based cases


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_property_every_column_decodes_as_alone(data):
    """Column sizes drawn over the dtype's whole normal range (decimal exponents +-30 in
    float32, +-200 in float64), any scheme, any survivor set that recovers."""
    dtype = data.draw(st.sampled_from((np.float32, np.float64)))
    name = data.draw(st.sampled_from(SCHEMES))
    e = EXPONENTS[dtype]
    exponents = data.draw(st.lists(st.integers(-e, e), min_size=3, max_size=3))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    scheme = make(name, dtype)
    alive = rng.random(N) < 0.8
    alive[[0, N - 1]] = True
    Y = _columns(rng, dtype, exponents, N)
    if not np.asarray(scheme.recovered(jnp.asarray(alive), jnp.asarray(Y))).all():
        alive[:] = True  # every input recovered: the eager decode raises otherwise
    # ``decode`` compiles once per scheme, shape and dtype: the cases share the programs of
    # the parametrized test above.
    _as_alone(scheme.decode(Y, alive), [scheme.decode(Y[:, [c]], alive) for c in range(3)],
              dtype)


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_property_nodes_closer_than_float32_resolves(data):
    """float64 worker tags with two neighbours 2^-25 ... 2^-40 apart near an end (closer than
    float32 resolves there) and float32 outputs of a smooth function, smoothed: the decode
    matches the float64 reference on the same tags and outputs, to float32 accuracy (the
    spacings keep their float64 digits)."""
    gap = 2.0 ** -data.draw(st.integers(25, 40))
    # lam > 0: interpolating (lam = 0) two rounded values 2^-25 apart makes the slope
    # between them the outputs' rounding over the gap, the fit's condition ~ 1e7 in float32.
    lam = data.draw(st.sampled_from((1e-4, 1e-2)))
    side = data.draw(st.sampled_from((-1, 1)))
    beta = np.asarray(lc.chebyshev_second(N), np.float64)
    # A worker right next to an end worker (inside the interval).
    beta[-2 if side == 1 else 1] = side * (1.0 - gap)
    alpha = np.asarray(lc.chebyshev_first(K), np.float64)
    scheme = lc.letcc(K, N, lam_dec=lam, points=(jnp.asarray(alpha), jnp.asarray(beta)))
    alive = np.ones(N, bool)
    alive[data.draw(st.integers(2, N - 3))] = False
    Y = np.sin(2.0 * beta)[:, None].astype(np.float32)
    out = np.asarray(scheme.decode(Y, alive), np.float64)
    keep = alive & np.concatenate([[True], np.diff(beta) > 0])
    expected = ref.natural_smoothing_spline(beta[keep], Y[keep].astype(np.float64),
                                            np.ones(int(keep.sum()), bool), lam, alpha)
    np.testing.assert_allclose(out, expected, rtol=0, atol=2e-4)
