"""One conformance table: every scheme through the same checks (shapes, dtype, linearity,
erasure semantics, too few survivors). Transformations (jit, vmap, grad, no recompilation)
over the same table live in test_core_transformations.py."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import letcc_jax as lc

K, N, D, M = 4, 12, 2, 3

RESIDUAL = 0.1 * np.random.default_rng(9).standard_normal((N, K))

# Every registered scheme with its defaults, plus variants with non-default leaves.
SCHEMES = {name: functools.partial(lc.make_scheme, name, K, N) for name in lc.SCHEMES} | {
    "letcc_smoothing": lambda: lc.letcc(K, N, lam_enc=1e-3, lam_dec=1e-2),
    "letcc+residual_random": lambda: lc.residual_letcc(K, N, residual=RESIDUAL, lam_enc=1e-3,
                                                      lam_dec=1e-3),
}

# Masks every scheme can decode: at least K survivors and, for replication (worker n holds
# input n mod K), one replica of every input. Most kill end workers.
DEAD = {"all": [], "ends": [0, 5, 11], "middle": [1, 2, 7, 10], "pairs": [3, 4, 8, 9],
        "left_block": [0, 1, 2, 3]}
MASKS = {name: np.isin(np.arange(N), dead, invert=True) for name, dead in DEAD.items()}

TOL = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


@pytest.fixture(params=list(SCHEMES))
def scheme(request):
    return SCHEMES[request.param]()


@functools.partial(jax.jit, static_argnums=1)
def encoder_matrix(scheme, dtype):
    return scheme.encoder_matrix(dtype)


@functools.partial(jax.jit, static_argnums=2)
def decoder_matrix(scheme, alive, dtype):
    return scheme.decoder_matrix(alive, dtype)


def data(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((K, D)).astype(dtype), rng.standard_normal((N, M)).astype(dtype))


def test_table_covers_every_registered_scheme():
    assert set(lc.SCHEMES) <= set(SCHEMES)
    for name in lc.SCHEMES:
        made = lc.make_scheme(name, K, N)
        assert isinstance(made, lc.Scheme) and made.name == name
        assert type(made) is type(SCHEMES[name]())


def test_shapes_and_dtype_follow_input(scheme, dtype, jit_encode, jit_decode):
    X, Y = data(dtype)
    coded = jit_encode(scheme, jnp.asarray(X))
    assert coded.shape == (N, D) and coded.dtype == dtype
    for name, alive in MASKS.items():
        out = jit_decode(scheme, jnp.asarray(Y), jnp.asarray(alive))
        assert out.shape == (K, M) and out.dtype == dtype, name
        assert np.all(np.isfinite(np.asarray(out))), name
    everyone = jit_decode(scheme, jnp.asarray(Y), None)  # the default mask
    np.testing.assert_array_equal(np.asarray(everyone),
                                  np.asarray(jit_decode(scheme, jnp.asarray(Y), MASKS["all"])))
    assert scheme.K == K and scheme.N == N


def test_integer_inputs_promote_to_the_default_float(scheme, jit_encode):
    coded = jit_encode(scheme, jnp.arange(K * D).reshape(K, D))
    assert coded.dtype == jnp.float64  # x64 is on in the test session


def test_encode_is_linear_and_equals_encoder_matrix(scheme, dtype, jit_encode):
    X, _ = data(dtype)
    X2 = np.random.default_rng(1).standard_normal((K, D)).astype(dtype)
    E = encoder_matrix(scheme, dtype)
    assert E.shape == (N, K) and E.dtype == dtype
    coded = np.asarray(jit_encode(scheme, jnp.asarray(X)), np.float64)
    np.testing.assert_allclose(coded, np.asarray(E, np.float64) @ X, **TOL[dtype])
    combo = np.asarray(jit_encode(scheme, jnp.asarray((2.0 * X - 3.0 * X2).astype(dtype))))
    coded2 = np.asarray(jit_encode(scheme, jnp.asarray(X2)), np.float64)
    np.testing.assert_allclose(combo, 2.0 * coded - 3.0 * coded2, rtol=TOL[dtype]["rtol"],
                               atol=10 * TOL[dtype]["atol"])


@pytest.mark.parametrize("mask", list(MASKS))
def test_decode_equals_decoder_matrix(scheme, mask, dtype, jit_decode):
    _, Y = data(dtype)
    alive = jnp.asarray(MASKS[mask])
    Dm = np.asarray(decoder_matrix(scheme, alive, dtype))
    assert Dm.shape == (K, N) and Dm.dtype == dtype
    np.testing.assert_array_equal(Dm[:, ~MASKS[mask]], 0.0)  # stragglers never contribute
    out = np.asarray(jit_decode(scheme, jnp.asarray(Y), alive), np.float64)
    np.testing.assert_allclose(out, Dm.astype(np.float64) @ Y, **TOL[dtype])
    # Straggler rows may hold anything finite: they are ignored.
    junk = np.where(MASKS[mask][:, None], Y, 1e6).astype(dtype)
    np.testing.assert_allclose(np.asarray(jit_decode(scheme, jnp.asarray(junk), alive)), out,
                               **TOL[dtype])


def test_decoding_reproduces_constants(scheme):
    """Every scheme's decoder reproduces a constant output (rows of D_F sum to one)."""
    for name, alive in MASKS.items():
        Dm = np.asarray(decoder_matrix(scheme, jnp.asarray(alive), np.float64))
        np.testing.assert_allclose(Dm.sum(1), 1.0, rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_rows_are_erasures(scheme, bad, dtype, jit_decode):
    _, Y = data(dtype)
    alive = MASKS["middle"]
    corrupt = Y.copy()
    corrupt[[0, 5]] = bad  # two answering workers (end worker 0 among them)
    corrupt[4, 1] = bad  # a single bad entry poisons the whole row
    corrupt[7] = bad  # a straggler's row: ignored anyway
    erased = alive.copy()
    erased[[0, 4, 5]] = False
    out = np.asarray(jit_decode(scheme, jnp.asarray(corrupt), jnp.asarray(alive)))
    assert np.all(np.isfinite(out))
    expected = np.asarray(jit_decode(scheme, jnp.asarray(Y), jnp.asarray(erased)))
    np.testing.assert_allclose(out, expected, **TOL[dtype])
    effective = scheme.effective_mask(jnp.asarray(corrupt), jnp.asarray(alive))
    np.testing.assert_array_equal(np.asarray(effective), erased)


def test_too_few_survivors_raise_saying_how_many(scheme):
    Y = jnp.ones((N, M))
    need = {"letcc": 2, "letcc+residual": 2, "bspline": 2, "bacc": 2, "lcc": K,
            "uncoded": K}[scheme.name]
    assert scheme.min_survivors == need
    alive = np.zeros(N, bool)
    if scheme.name == "uncoded":
        alive[[0, 1, 2]] = True  # three of the four inputs have an answering replica
        match = r"no replica of input\(s\) \[3\]"
    else:
        alive[: need - 1] = True
        match = f"needs at least {need} valid worker results.*only {need - 1} arrived"
    with pytest.raises(ValueError, match=match):
        scheme.decode(Y, jnp.asarray(alive))
    # NaN outputs count as missing: enough answers, too few finite ones.
    alive[:] = True
    Y_nan = np.full((N, M), np.nan)
    Y_nan[: need - 1] = 1.0
    if scheme.name == "uncoded":
        Y_nan[:3] = 1.0
    with pytest.raises(ValueError, match=match):
        scheme.decode(jnp.asarray(Y_nan), jnp.asarray(alive))
    # Under jit there is no error: unrecovered inputs decode to finite values and are
    # reported by recovered().
    few = jnp.asarray(np.arange(N) < need - 1)
    out = jax.jit(lambda s, y, a: s.decode(y, a))(scheme, Y, few)
    assert np.all(np.isfinite(np.asarray(out)))
    expected = np.arange(K) < need - 1 if scheme.name == "uncoded" else np.zeros(K, bool)
    np.testing.assert_array_equal(np.asarray(scheme.recovered(few)), expected)
    assert np.all(np.asarray(scheme.recovered(jnp.ones(N, bool))))


def test_schemes_are_immutable_pytrees(scheme):
    leaves, treedef = jax.tree_util.tree_flatten(scheme)
    assert all(isinstance(leaf, jax.Array) for leaf in leaves)
    rebuilt = jax.tree_util.tree_unflatten(treedef, leaves)
    assert type(rebuilt) is type(scheme) and rebuilt.K == K and rebuilt.N == N
    with pytest.raises(Exception):
        scheme.alpha = jnp.zeros(K)
    moved = scheme.replace(beta=scheme.beta * 0.5)
    np.testing.assert_array_equal(np.asarray(scheme.beta) * 0.5, np.asarray(moved.beta))
    if isinstance(scheme, lc.LeTCC):
        names = {f.name for f in dataclasses.fields(scheme)}
        assert {"lam_enc", "lam_dec"} <= names
        assert len(leaves) == 4 + isinstance(scheme, lc.ResidualLeTCC)


# Workers whose float64 points round to the same float32 value (Chebyshev points near
# +-1 for N in the tens of thousands) must not poison the decode with NaN (h = 0 in the
# spline, a zero difference in the barycentric weights). The barycentric decoders keep the
# first result at a coinciding point, so in float32 the decode equals the float64 decode
# without the second worker. LeTCC keeps its float64 points next to float32 data and takes
# their spacings in float64: both workers stay, and the float32 decode equals the float64
# decode of the same data with every worker (measured 1.3e-7 at lam_dec = 1e-6). Only
# interpolation through them (lam_dec = 0) is then off: a mesh ratio of 5e8 is beyond
# float32 arithmetic (0.4 from the float64 decode; finite).
@pytest.mark.parametrize("name", ["letcc", "bacc", "lcc"])
def test_workers_that_coincide_in_float32_do_not_give_nan(name, jit_decode):
    alpha = np.array([-0.5, 0.0, 0.5])
    beta = np.array([-1.0, -0.2, 0.3, 0.3 + 1e-9, 0.7, 1.0])  # 0.3 and 0.3 + 1e-9 collide
    assert np.unique(beta.astype(np.float32)).size == 5
    scheme = lc.make_scheme(name, 3, 6, points=(alpha, beta))
    Y = np.stack([np.sin(beta), np.cos(beta)], 1)
    alive = jnp.ones(6, bool)
    out32 = np.asarray(jit_decode(scheme, jnp.asarray(Y, np.float32), alive), np.float64)
    assert np.all(np.isfinite(out32)), out32
    if name == "letcc":
        scheme = scheme.replace(lam_dec=jnp.asarray(1e-6))
        out32 = np.asarray(jit_decode(scheme, jnp.asarray(Y, np.float32), alive), np.float64)
        Y, used = Y.astype(np.float32).astype(np.float64), alive
    else:
        used = jnp.asarray(np.arange(6) != 3)
    out64 = np.asarray(jit_decode(scheme, jnp.asarray(Y), used))
    np.testing.assert_allclose(out32, out64, rtol=1e-5 if name == "letcc" else 1e-4,
                               atol=1e-5 if name == "letcc" else 1e-4)
