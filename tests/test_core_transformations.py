"""JAX transformations over the conformance table: jit == eager, vmap == a Python loop,
grad == central finite differences (float64), and no recompilation across survivor
masks or smoothing parameters."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import letcc_jax as lc

from test_core_conformance import D, K, M, MASKS, N, SCHEMES, data

TOL64 = dict(rtol=1e-13, atol=1e-13)


@pytest.fixture(params=list(SCHEMES))
def scheme(request):
    return SCHEMES[request.param]()


def random_masks(count, seed, scheme):
    """Distinct random masks, none in MASKS, from which the scheme can decode."""
    rng = np.random.default_rng(seed)
    seen = {m.tobytes() for m in MASKS.values()}
    out = []
    while len(out) < count:
        alive = rng.random(N) < 0.7
        decodable = np.all(np.asarray(scheme.recovered(jnp.asarray(alive))))
        if alive.sum() >= scheme.min_survivors and decodable and alive.tobytes() not in seen:
            seen.add(alive.tobytes())
            out.append(alive)
    return np.stack(out)


def test_jit_equals_eager(scheme, jit_encode, jit_decode):
    X, Y = data(np.float64)
    np.testing.assert_allclose(np.asarray(scheme.encode(jnp.asarray(X))),
                               np.asarray(jit_encode(scheme, jnp.asarray(X))), **TOL64)
    Y_nan = Y.copy()
    Y_nan[2] = np.nan  # eager and jitted paths share the erasure semantics
    for name in ("ends", "left_block"):
        alive = jnp.asarray(MASKS[name])
        for values in (Y, Y_nan):
            eager = scheme.decode(jnp.asarray(values), alive)
            jitted = jit_decode(scheme, jnp.asarray(values), alive)
            np.testing.assert_allclose(np.asarray(eager), np.asarray(jitted), **TOL64)


def test_vmap_over_masks_and_outputs_equals_loop(scheme, jit_decode):
    rng = np.random.default_rng(2)
    masks = np.concatenate([np.stack(list(MASKS.values())), random_masks(6, 1, scheme)])
    Ys = rng.standard_normal((len(masks), N, M))
    Ys[:, 0] = Ys[0, 0]  # ... and one output row shared by every pattern
    batched = jax.jit(jax.vmap(lambda s, y, a: s.decode(y, a), in_axes=(None, 0, 0)))(
        scheme, jnp.asarray(Ys), jnp.asarray(masks))
    assert batched.shape == (len(masks), K, M)
    for i, alive in enumerate(masks):
        np.testing.assert_allclose(
            np.asarray(batched[i]),
            np.asarray(jit_decode(scheme, jnp.asarray(Ys[i]), jnp.asarray(alive))), **TOL64)


def test_vmap_over_smoothing_parameters_equals_loop(jit_decode):
    """The lambdas are pytree leaves: one compiled decoder serves a whole lambda grid."""
    _, Y = data(np.float64)
    base = lc.letcc(K, N)
    grid = jnp.asarray([0.0, 1e-4, 1e-2, 1.0])
    alive = jnp.asarray(MASKS["ends"])
    Y = jnp.asarray(Y)
    batched = jax.jit(jax.vmap(lambda lam: base.replace(lam_dec=lam).decode(Y, alive)))(grid)
    for i, lam in enumerate(grid):
        single = jit_decode(base.replace(lam_dec=lam), Y, alive)
        np.testing.assert_allclose(np.asarray(batched[i]), np.asarray(single), **TOL64)
    assert np.max(np.abs(np.asarray(batched[0] - batched[-1]))) > 1e-3  # lambda matters


# ------------------------------------------------------------------------------- grad

P_MIX = np.random.default_rng(4).standard_normal((D, M))
W_OUT = np.random.default_rng(5).standard_normal((K, M))


def loss(scheme, X, Y, alive):
    """A scalar through encode -> a nonlinear f on every worker -> decode."""
    coded = scheme.encode(X)
    outputs = jnp.sin(coded @ P_MIX) + Y
    return jnp.sum(W_OUT * scheme.decode(outputs, alive))


# One compilation per scheme: the finite differences reuse the value it returns.
value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))


def loss_jit(scheme, X, Y, alive):
    return value_and_grad(scheme, X, Y, alive)[0]


def grad_jit(scheme, X, Y, alive):
    return value_and_grad(scheme, X, Y, alive)[1]


def central_difference(fn, x, h):
    """d fn / d x for every entry of the float64 array x, by central differences."""
    x = np.asarray(x, np.float64)
    out = np.empty_like(x)
    for i in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[i] = h
        out[i] = (float(fn(x + step)) - float(fn(x - step))) / (2 * h)
    return out


FD_TOL = dict(rtol=1e-6, atol=1e-8)  # h = 1e-6: truncation ~1e-12, rounding ~1e-10


def test_grad_matches_finite_differences(scheme):
    X, Y = data(np.float64, seed=6)
    alive = jnp.asarray(MASKS["ends"])
    g_scheme, g_X, g_Y = grad_jit(scheme, jnp.asarray(X), jnp.asarray(Y), alive)
    fd_X = central_difference(
        lambda x: loss_jit(scheme, jnp.asarray(x), jnp.asarray(Y), alive), X, 1e-6)
    fd_Y = central_difference(
        lambda y: loss_jit(scheme, jnp.asarray(X), jnp.asarray(y), alive), Y, 1e-6)
    np.testing.assert_allclose(np.asarray(g_X), fd_X, **FD_TOL)
    np.testing.assert_allclose(np.asarray(g_Y), fd_Y, **FD_TOL)
    assert np.max(np.abs(fd_X)) > 1e-3 and np.max(np.abs(fd_Y)) > 1e-3  # not trivially zero
    # Stragglers' outputs do not influence the estimate.
    np.testing.assert_array_equal(np.asarray(g_Y)[~MASKS["ends"]], 0.0)
    if isinstance(scheme, lc.LeTCC) and float(scheme.lam_dec) > 0:
        for field in ("lam_enc", "lam_dec"):
            lam = float(getattr(scheme, field))
            h = 1e-4 * lam

            def at(value, field=field):
                lam_leaf = jnp.asarray(value, getattr(scheme, field).dtype)  # not weak-typed
                return loss_jit(scheme.replace(**{field: lam_leaf}), jnp.asarray(X),
                                jnp.asarray(Y), alive)

            fd = (float(at(lam + h)) - float(at(lam - h))) / (2 * h)
            assert abs(fd) > 1e-3, field
            np.testing.assert_allclose(float(getattr(g_scheme, field)), fd, rtol=1e-6, atol=1e-8)


def test_grad_through_an_erased_row_is_finite_and_zero():
    scheme = lc.letcc(K, N, lam_dec=1e-3)
    X, Y = data(np.float64, seed=7)
    Y[3] = np.nan
    alive = jnp.ones(N, bool)
    _, g_X, g_Y = grad_jit(scheme, jnp.asarray(X), jnp.asarray(Y), alive)
    assert np.all(np.isfinite(np.asarray(g_X))) and np.all(np.isfinite(np.asarray(g_Y)))
    np.testing.assert_array_equal(np.asarray(g_Y)[3], 0.0)


# --------------------------------------------------------------------- recompilation


FRESH_WIDTHS = itertools.count(50)  # output widths no other test uses


def test_no_recompilation_across_masks(scheme, jit_decode, decode_traces):
    """conftest's jit_decode logs every trace; new masks (and, for LeTCC, new smoothing
    parameters) must reuse the compiled decoder."""
    _, Y = data(np.float64)
    Y = jnp.asarray(Y)
    jit_decode(scheme, Y, jnp.ones(N, bool))
    traces, cached = len(decode_traces), jit_decode._cache_size()
    masks = np.concatenate([np.stack(list(MASKS.values())), random_masks(10, 8, scheme)])
    outs = [jit_decode(scheme, Y, jnp.asarray(alive)) for alive in masks]
    assert len(decode_traces) == traces and jit_decode._cache_size() == cached
    if isinstance(scheme, lc.LeTCC):  # new smoothing parameters are new leaf values only
        outs += [jit_decode(scheme.replace(lam_dec=jnp.asarray(lam, scheme.lam_dec.dtype)), Y,
                            jnp.asarray(masks[1]))
                 for lam in (1e-6, 0.3)]
        assert len(decode_traces) == traces and jit_decode._cache_size() == cached
    assert len({np.asarray(o).tobytes() for o in outs}) == len(outs)  # the masks mattered
    # A new shape is a new compilation, and the log sees it.
    jit_decode(scheme, jnp.ones((N, next(FRESH_WIDTHS))), jnp.ones(N, bool))
    assert len(decode_traces) == traces + 1


# ------------------------------------------- node gradients where data and worker nodes meet

# Chebyshev data points cos((2k-1)pi/(2K)) are worker points cos(n pi/(N-1)) for every k
# where 2K divides N-1 (bacc(4, 17)), and 0 is both where K and N are odd (bacc(3, 9)).
MEETING = [("bacc", 4, 17), ("bacc", 3, 9), ("lcc", 4, 17)]


def node_loss(scheme, alpha, beta, X, alive):
    """The coded inputs and the estimates through f, summed with weights, as a function of
    the scheme's nodes (LCC's estimates hardly depend on them: it is nearly exact here)."""
    scheme = scheme.replace(alpha=alpha, beta=beta)
    coded = scheme.encode(X)
    weights = jnp.cos(jnp.arange(scheme.K, dtype=X.dtype))[:, None]
    return jnp.sum(weights * scheme.decode(jnp.sin(2 * coded), alive)) + jnp.sum(
        jnp.sin(jnp.arange(scheme.N, dtype=X.dtype))[:, None] * coded)


node_value_and_grad = jax.jit(jax.value_and_grad(node_loss, argnums=(1, 2)))


@pytest.mark.parametrize("name,k,n,offset", [case + (0.0,) for case in MEETING]
                         + [("bacc", 4, 17, 1e-12), ("lcc", 4, 17, 1e-12)])
def test_node_grad_where_data_and_worker_nodes_meet(name, k, n, offset):
    """At a coinciding pair the barycentric row is the unit vector, a limit whose derivative
    in the nodes is not zero; 1e-12 beside it the plain formula's derivative loses about
    eps / 1e-12 ~ 1e-4 to cancellation. Both must match central differences."""
    scheme = lc.make_scheme(name, k, n)
    shift = np.where(np.isin(np.asarray(scheme.alpha), np.asarray(scheme.beta)), offset, 0.0)
    alpha, beta = np.asarray(scheme.alpha) + shift, np.asarray(scheme.beta)
    assert np.any(np.isin(alpha - shift, beta))  # the case under test: nodes that meet
    X = jnp.asarray(np.linspace(-1.0, 1.0, 2 * k).reshape(k, 2))
    alive = jnp.asarray(np.arange(n) != 1)  # a straggler too: decoder signs by survivor rank
    _, (g_alpha, g_beta) = node_value_and_grad(scheme, jnp.asarray(alpha), jnp.asarray(beta),
                                               X, alive)

    def at(a, b):
        return node_value_and_grad(scheme, jnp.asarray(a), jnp.asarray(b), X, alive)[0]

    fd_alpha = central_difference(lambda a: at(a, beta), alpha, 1e-6)
    fd_beta = central_difference(lambda b: at(alpha, b), beta, 1e-6)
    assert np.max(np.abs(fd_alpha)) > 0.1  # not trivially zero
    np.testing.assert_allclose(np.asarray(g_alpha), fd_alpha, **FD_TOL)
    np.testing.assert_allclose(np.asarray(g_beta), fd_beta, **FD_TOL)
