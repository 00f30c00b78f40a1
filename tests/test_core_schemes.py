"""Scheme-specific semantics against float64 references: BACC (Berrut, survivor-rank signs,
coincident nodes), LCC (exact on polynomials from the recovery threshold) and uncoded
replication (replicas averaged, lost inputs named)."""

import jax.numpy as jnp
import numpy as np
import pytest

import letcc_jax as lc

import reference as ref
from test_core_conformance import decoder_matrix, encoder_matrix  # jitted: cheap to compile

# Berrut/Lagrange matrices on <= 20 Chebyshev-like nodes: normwise, relative to max|ref|.
TOL = {np.float32: 1e-5, np.float64: 1e-12}


def assert_close(actual, expected, tol):
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=tol,
                               atol=tol * np.max(np.abs(expected)))


# ------------------------------------------------------------------------------- BACC


@pytest.mark.parametrize("K, N", [(6, 20), (5, 9)])  # (5, 9): alpha and beta share 0
def test_bacc_encoder_matches_berrut(K, N, dtype, jit_encode):
    rng = np.random.default_rng(K * N)
    scheme = lc.bacc(K, N)
    X = rng.standard_normal((K, 3)).astype(dtype)
    out = jit_encode(scheme, jnp.asarray(X))
    assert out.dtype == dtype and out.shape == (N, 3)
    assert_close(out, ref.berrut(np.asarray(scheme.alpha), X, np.asarray(scheme.beta)),
                 TOL[dtype])


def bacc_patterns(N, rng):
    idx = np.arange(N)
    return {
        "all": np.ones(N, bool),
        "worker_1_dead": idx != 1,  # rank and index parity differ for every later worker
        "ends_dead": (idx > 1) & (idx < N - 3),
        "random": rng.permutation(N) >= N // 3,
        "two": np.isin(idx, [4, N - 2]),
    }


@pytest.mark.parametrize("pattern", ["all", "worker_1_dead", "ends_dead", "random", "two"])
def test_bacc_decoder_matches_berrut_over_survivors(pattern, dtype, jit_decode):
    K, N = 6, 20
    rng = np.random.default_rng(7)
    scheme = lc.bacc(K, N)
    alive = bacc_patterns(N, np.random.default_rng(8))[pattern]
    Y = rng.standard_normal((N, 3)).astype(dtype)
    beta, alpha = np.asarray(scheme.beta), np.asarray(scheme.alpha)
    out = jit_decode(scheme, jnp.asarray(Y), jnp.asarray(alive))
    assert out.dtype == dtype and out.shape == (K, 3)
    # reference.berrut takes (-1)^i over the nodes it is given: the survivors, by rank.
    assert_close(out, ref.berrut(beta[alive], Y[alive], alpha), TOL[dtype])


def test_bacc_decoder_signs_follow_survivor_rank_not_worker_index(jit_decode):
    K, N = 6, 20
    scheme = lc.bacc(K, N)
    alive = np.arange(N) != 1
    Y = np.random.default_rng(9).standard_normal((N, 2))
    beta, alpha = np.asarray(scheme.beta), np.asarray(scheme.alpha)
    by_rank = ref.berrut(beta[alive], Y[alive], alpha)
    by_index = ref.berrut_with_weights(beta[alive], Y[alive], alpha,
                                       (-1.0) ** np.arange(N)[alive])
    assert np.max(np.abs(by_rank - by_index)) > 0.1  # the two conventions really differ
    out = np.asarray(jit_decode(scheme, jnp.asarray(Y), jnp.asarray(alive)))
    np.testing.assert_allclose(out, by_rank, rtol=1e-12, atol=1e-12)


def test_bacc_coincident_nodes_give_unit_rows(dtype):
    alpha = np.array([-0.5, 0.1, 0.5])
    beta = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    scheme = lc.bacc(3, 5, points=(alpha, beta))
    E = np.asarray(encoder_matrix(scheme, dtype))
    assert E.dtype == dtype and np.all(np.isfinite(E))
    np.testing.assert_array_equal(E[1], [1.0, 0.0, 0.0])  # beta_1 = alpha_0
    np.testing.assert_array_equal(E[3], [0.0, 0.0, 1.0])  # beta_3 = alpha_2
    alive = np.array([True, True, True, False, True])
    D = np.asarray(decoder_matrix(scheme, jnp.asarray(alive), dtype))
    assert D.dtype == dtype and np.all(np.isfinite(D))
    np.testing.assert_array_equal(D[0], [0.0, 1.0, 0.0, 0.0, 0.0])  # alive coincident worker
    # alpha_2 = beta_3, but worker 3 is dead: an ordinary Berrut row over the survivors.
    expected = ref.berrut(beta[alive], np.eye(4), alpha[2:])[0]
    np.testing.assert_allclose(D[2, alive], expected, rtol=TOL[dtype], atol=TOL[dtype])
    assert D[2, 3] == 0.0
    # The rows of every Berrut matrix sum to one (it reproduces constants).
    np.testing.assert_allclose(E.sum(1), 1.0, rtol=TOL[dtype], atol=TOL[dtype])
    np.testing.assert_allclose(D.sum(1), 1.0, rtol=TOL[dtype], atol=TOL[dtype])


def test_lcc_coincident_nodes_give_unit_rows():
    alpha = np.array([-0.5, 0.1, 0.5])
    beta = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    scheme = lc.lcc(3, 5, points=(alpha, beta))
    E = np.asarray(encoder_matrix(scheme, np.float64))
    np.testing.assert_array_equal(E[[1, 3]], [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    D = np.asarray(decoder_matrix(scheme, jnp.asarray([True, True, True, False, True]), np.float64))
    np.testing.assert_array_equal(D[0], [0.0, 1.0, 0.0, 0.0, 0.0])
    expected = ref.lagrange(beta[[0, 1, 2, 4]], np.eye(4), alpha)
    np.testing.assert_allclose(D[:, [0, 1, 2, 4]], expected, rtol=1e-12, atol=1e-12)


def test_bacc_default_points_coincide_at_zero(jit_decode):
    scheme = lc.bacc(5, 9)  # odd K and N: alpha_2 = beta_4 = 0 exactly
    assert float(scheme.alpha[2]) == 0.0 and float(scheme.beta[4]) == 0.0
    D = np.asarray(decoder_matrix(scheme, jnp.ones(9, bool), np.float64))
    np.testing.assert_array_equal(D[2], np.eye(9)[4])


# -------------------------------------------------------------------------------- LCC

POLYNOMIALS = {
    1: lambda x: jnp.stack([2.0 * x[0] - x[1] + 0.5, x[1]]),
    2: lambda x: jnp.stack([x[0] * x[1] - 0.5, x[0] ** 2 + x[1]]),
    3: lambda x: jnp.stack([x[0] ** 2 * x[1] + x[0], x[1] ** 3 - 2.0 * x[0] * x[1]]),
}
# Exactness is limited by conditioning: Lagrange interpolation on (K-1)*degree+1 of N
# Chebyshev nodes. float32 cases use well-spread survivors.
TOL_LCC = {np.float32: 1e-5, np.float64: 1e-12}  # measured: 4e-7 and 9e-16 at worst


@pytest.mark.parametrize("degree", [1, 2, 3])
@pytest.mark.parametrize("survivors", ["threshold", "more", "all"])
def test_lcc_is_exact_on_polynomials(degree, survivors, dtype, jit_encode, jit_decode):
    import jax

    K = 4
    threshold = (K - 1) * degree + 1
    N = threshold + 4
    rng = np.random.default_rng(10 * degree)
    scheme = lc.lcc(K, N, degree=degree)
    assert scheme.min_survivors == threshold
    X = rng.uniform(-1, 1, (K, 2)).astype(dtype)
    f = POLYNOMIALS[degree]
    Y = jax.vmap(f)(jit_encode(scheme, jnp.asarray(X)))
    count = {"threshold": threshold, "more": threshold + 2, "all": N}[survivors]
    # Spread survivors evenly, with the end workers dead whenever enough workers are spare.
    first = 1 if N - count >= 2 else 0
    last = N - 2 if N - count >= 3 else N - 1
    alive = np.zeros(N, bool)
    alive[np.round(np.linspace(first, last, count)).astype(int)] = True
    assert alive.sum() == count
    out = jit_decode(scheme, Y, jnp.asarray(alive))
    assert out.dtype == dtype
    truth = np.asarray(jax.vmap(f)(jnp.asarray(X, jnp.float64)))
    tol = TOL_LCC[dtype]
    assert_close(out, truth, tol)
    beta, alpha = np.asarray(scheme.beta), np.asarray(scheme.alpha)
    Y64 = np.asarray(Y, np.float64)
    assert_close(out, ref.lagrange(beta[alive], Y64[alive], alpha), tol)


def test_lcc_encoder_matches_lagrange(dtype, jit_encode):
    K, N = 7, 15
    scheme = lc.lcc(K, N)
    X = np.random.default_rng(11).standard_normal((K, 3)).astype(dtype)
    out = jit_encode(scheme, jnp.asarray(X))
    assert out.dtype == dtype
    assert_close(out, ref.lagrange(np.asarray(scheme.alpha), X, np.asarray(scheme.beta)),
                 TOL[dtype] * 10)


def test_lcc_below_threshold_raises_with_the_threshold():
    scheme = lc.lcc(4, 12, degree=2)
    alive = jnp.arange(12) < 6
    with pytest.raises(ValueError, match="at least 7 valid worker results.*only 6"):
        scheme.decode(jnp.ones((12, 1)), alive)


# ---------------------------------------------------------------------------- uncoded


def test_uncoded_replicates_inputs(dtype, jit_encode):
    K, N = 3, 8
    scheme = lc.uncoded(K, N)
    X = np.random.default_rng(12).standard_normal((K, 2)).astype(dtype)
    out = np.asarray(jit_encode(scheme, jnp.asarray(X)))
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, X[np.arange(N) % K])


def test_uncoded_averages_answering_replicas(dtype, jit_decode):
    K, N = 3, 8  # input 0 on workers 0, 3, 6; input 1 on 1, 4, 7; input 2 on 2, 5
    scheme = lc.uncoded(K, N)
    Y = np.random.default_rng(13).standard_normal((N, 2)).astype(dtype)
    alive = np.array([True, False, True, True, True, False, False, True])
    out = np.asarray(jit_decode(scheme, jnp.asarray(Y), jnp.asarray(alive)))
    assert out.dtype == dtype
    expected = np.stack([(Y[0] + Y[3]) / 2, (Y[4] + Y[7]) / 2, Y[2]]).astype(np.float64)
    np.testing.assert_allclose(out, expected, rtol=TOL[dtype], atol=TOL[dtype])


def test_uncoded_lost_inputs_raise_naming_them():
    scheme = lc.uncoded(3, 7)  # input 1 lives on workers 1 and 4 only
    alive = jnp.asarray([True, False, True, True, False, True, True])
    with pytest.raises(ValueError, match=r"input\(s\) \[1\]"):
        scheme.decode(jnp.ones((7, 2)), alive)
    both = jnp.asarray([False, False, True, False, False, True, False])
    with pytest.raises(ValueError, match=r"input\(s\) \[0, 1\]"):
        scheme.decode(jnp.ones((7, 2)), both)
    np.testing.assert_array_equal(np.asarray(scheme.recovered(both)), [False, False, True])
