"""Ordering the inputs along a short path (``order_inputs``) and measuring it (``path_length``).

References written here, independently of the library: a naive O(K^2) greedy chain on
float64 distances of differences (the blockwise chain must equal it exactly), the optimal
open path by enumeration for K <= 7, and the length of a path as a plain loop. Shuffled
points along a smooth curve must come back in curve order (up to reversal).
"""

import itertools
import sys
from unittest import mock

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import letcc_jax as lc
from letcc_jax.sim import _order as order_module

METHODS = ("nearest_neighbour", "spectral", "pca", "identity")
ORDERS = [(method, refine) for method in METHODS for refine in (None, "2opt")]


def naive_length(X, perm):
    X = np.asarray(X, np.float64)
    return sum(float(np.sqrt(np.sum((X[a] - X[b]) ** 2))) for a, b in zip(perm, perm[1:]))


def naive_chain(X, start):
    """The greedy chain from ``start``: always the nearest input not yet taken (lowest index
    among equals), on float64 distances of differences."""
    X = np.asarray(X, np.float64)
    path, left = [start], np.delete(np.arange(len(X)), start)
    while left.size:
        nearest = int(np.argmin(np.sum((X[left] - X[path[-1]]) ** 2, axis=1)))
        path.append(int(left[nearest]))
        left = np.delete(left, nearest)
    return np.array(path)


def optimal_length(X):
    """The shortest open path through the rows of X, by enumeration."""
    X = np.asarray(X, np.float64)
    D = np.sqrt(np.sum((X[:, None] - X[None]) ** 2, axis=-1))
    perms = np.array(list(itertools.permutations(range(len(X)))))
    return float(D[perms[:, :-1], perms[:, 1:]].sum(axis=1).min())


def curve(K, d, rng, uniform=False):
    """K points in order along a smooth curve in R^d (a helix in the first three axes, slow
    waves in the others) that never comes back near itself; uneven spacing unless
    ``uniform``."""
    t = np.linspace(0.0, 1.0, K) if uniform else np.sort(rng.uniform(0.0, 1.0, K))
    t = 4.0 * np.pi * t
    columns = [np.cos(t), np.sin(t), 0.5 * t][:d]
    columns += [0.3 * np.sin(t / (j + 2) + j) for j in range(d - len(columns))]
    return np.stack(columns, axis=1)


def is_curve_order(perm):
    along = np.arange(len(perm))
    return np.array_equal(perm, along) or np.array_equal(perm, along[::-1])


def clusters(K, d, rng, count=8):
    centres = rng.normal(scale=10.0, size=(count, d))
    return centres[rng.integers(0, count, K)] + rng.normal(size=(K, d))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_every_order_is_a_permutation(data):
    K = data.draw(st.integers(2, 40), label="K")
    d = data.draw(st.integers(1, 5), label="d")
    dtype = data.draw(st.sampled_from([np.float32, np.float64, np.int64]), label="dtype")
    distinct = data.draw(st.integers(1, 6), label="distinct values")  # 1: all inputs equal
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    method, refine = data.draw(st.sampled_from(ORDERS), label="order")
    neighbours = data.draw(st.integers(1, 12), label="neighbours")
    rng = np.random.default_rng(seed)
    X = rng.integers(0, distinct, size=(K, d)).astype(dtype)  # many duplicates
    perm = lc.order_inputs(X, method, refine=refine, neighbours=neighbours)
    assert isinstance(perm, np.ndarray) and np.issubdtype(perm.dtype, np.integer)
    np.testing.assert_array_equal(np.sort(perm), np.arange(K))
    np.testing.assert_array_equal(perm, lc.order_inputs(X, method, refine=refine,
                                                        neighbours=neighbours))  # deterministic


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 150), st.integers(1, 6), st.integers(0, 8), st.data())
def test_the_chain_is_the_naive_greedy_chain(K, d, chain_neighbours, data):
    # Short neighbour lists force many exact scans over the inputs left (and compactions
    # of them): the chain must still be the greedy one.
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    start = data.draw(st.integers(0, K - 1), label="start")
    X = np.random.default_rng(seed).normal(size=(K, d))
    with mock.patch.object(order_module, "_CHAIN_NEIGHBOURS", chain_neighbours):
        perm = lc.order_inputs(X, neighbours=1, start=start)
        np.testing.assert_array_equal(perm, naive_chain(X, start))
        # Without a start, the chain starts at the input farthest from the mean (two
        # inputs are equally far).
        if K > 2:
            farthest = int(np.argmax(np.sum((X - X.mean(axis=0)) ** 2, axis=1)))
            np.testing.assert_array_equal(lc.order_inputs(X), naive_chain(X, farthest))


def test_a_large_chain_is_the_naive_greedy_chain(rng):
    X = clusters(3000, 20, rng)
    np.testing.assert_array_equal(lc.order_inputs(X, start=5), naive_chain(X, 5))


def test_the_float32_chain_is_the_float64_chain_on_separated_inputs():
    X = curve(300, 10, np.random.default_rng(0), uniform=True)
    np.testing.assert_array_equal(lc.order_inputs(X.astype(np.float32)), lc.order_inputs(X))


@pytest.mark.parametrize("method, refine", [("nearest_neighbour", None),
                                            ("nearest_neighbour", "2opt"),
                                            ("spectral", None), ("spectral", "2opt")])
@pytest.mark.parametrize("K, d", [(60, 3), (400, 10), (1200, 3)])
def test_a_shuffled_curve_comes_back_in_curve_order(method, refine, K, d, rng):
    # K = 1200 takes the spectral method's sparse eigensolvers (components above 500).
    X = curve(K, d, rng, uniform=True)
    shuffle = rng.permutation(K)
    perm = lc.order_inputs(X[shuffle], method, refine=refine)
    assert is_curve_order(shuffle[perm]), shuffle[perm]


@pytest.mark.parametrize("method", ["nearest_neighbour", "spectral"])
def test_an_unevenly_sampled_curve_comes_back_nearly_in_order(method, rng):
    # Uneven gaps make the chain skip a point now and then and break the neighbour graph
    # into pieces; 2-opt mends the first, chaining the components the second.
    X = curve(800, 5, rng)
    shuffle = rng.permutation(len(X))
    for refine in (None, "2opt"):
        perm = lc.order_inputs(X[shuffle], method, refine=refine)
        excess = lc.path_length(X[shuffle], perm) / lc.path_length(X)
        assert excess <= (1.02 if refine else 1.5), (refine, excess)


def test_a_one_dimensional_order_is_sorted(rng):
    x = rng.normal(size=(200, 1))
    # Not 2-opt alone: from a random order, with 10 neighbours, it stops short of sorted.
    for method, refine in ORDERS:
        if method != "identity":
            steps = np.diff(x[lc.order_inputs(x, method, refine=refine), 0])
            assert np.all(steps > 0) or np.all(steps < 0), (method, refine)


@pytest.mark.parametrize("K", [3, 4, 5, 6, 7])
def test_two_opt_is_close_to_the_optimal_path(K, rng):
    ratios = []
    for _ in range(40):
        X = rng.normal(size=(K, int(rng.integers(1, 4))))
        best = optimal_length(X)
        for method in ("nearest_neighbour", "identity"):
            perm = lc.order_inputs(X, method, refine="2opt", neighbours=K - 1)
            ratios.append(lc.path_length(X, perm) / best)
    ratios = np.array(ratios)
    # Measured over 16,000 such paths: worst 1.20, mean 1.003, 86-100% optimal per K.
    assert ratios.min() >= 1 - 1e-12 and ratios.max() <= 1.3, ratios
    assert ratios.mean() <= 1.03 and np.mean(ratios < 1 + 1e-9) >= 0.7, ratios


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 80), st.integers(1, 6), st.integers(1, 10), st.integers(0, 2**32 - 1),
       st.sampled_from(METHODS))
def test_two_opt_never_lengthens_the_path(K, d, neighbours, seed, method):
    X = np.random.default_rng(seed).normal(size=(K, d))
    before = lc.order_inputs(X, method, neighbours=neighbours)
    after = lc.order_inputs(X, method, refine="2opt", neighbours=neighbours)
    assert lc.path_length(X, after) <= lc.path_length(X, before) * (1 + 1e-12)


def test_two_opt_shortens_a_random_order_a_lot(rng):
    X = rng.uniform(size=(1000, 2))
    random = lc.path_length(X)  # rows in random order
    refined = lc.path_length(X, lc.order_inputs(X, "identity", refine="2opt"))
    # A random order is ~0.52 K long in the unit square, a good path ~0.75 sqrt(K).
    assert refined < 0.08 * random, (refined, random)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_orders_are_much_shorter_than_random_on_clusters(dtype, rng):
    X = clusters(1000, 30, rng).astype(dtype)
    random = lc.path_length(X)
    lengths = {(m, r): lc.path_length(X, lc.order_inputs(X, m, refine=r)) / random
               for m, r in ORDERS if m != "identity" or r}
    # The chain and 2-opt follow the clusters; pca and spectral sort each cluster along
    # one direction only.
    assert lengths["nearest_neighbour", None] < 0.2, lengths
    assert lengths["nearest_neighbour", "2opt"] <= lengths["nearest_neighbour", None]
    assert all(v < 0.6 for v in lengths.values()), lengths


def test_spectral_chains_far_apart_components(rng):
    # Two segments far apart (disconnected neighbour graphs): each comes out whole and in
    # order, the second entered from its end nearer to where the first ended.
    a = curve(300, 3, rng, uniform=True)
    b = a[::-1] + np.array([40.0, 0.0, 0.0])
    X = np.concatenate([a, b])
    shuffle = rng.permutation(len(X))
    perm = shuffle[lc.order_inputs(X[shuffle], "spectral")]
    halves = sorted([perm[:300], perm[300:]], key=lambda half: half.min())
    assert is_curve_order(halves[0]) and is_curve_order(halves[1] - 300)
    assert lc.path_length(X, perm) < 1.01 * (2 * lc.path_length(a) + 40.0)


def test_orders_ignore_rotation_translation_and_scale(rng):
    X = clusters(500, 6, rng)
    Q = np.linalg.qr(rng.normal(size=(6, 6)))[0]
    Y = 3.0 * X @ Q + 7.0
    for method, refine in ORDERS:
        np.testing.assert_array_equal(lc.order_inputs(Y, method, refine=refine),
                                      lc.order_inputs(X, method, refine=refine))


def test_an_embedding_orders_the_inputs_it_stands_for(rng):
    # Order by features (here a random projection of wide inputs), apply to the inputs.
    t = np.sort(rng.uniform(size=100))
    X = np.sin(np.outer(t, rng.uniform(1.0, 3.0, 2000)))  # (K, d) along one curve
    shuffle = rng.permutation(100)
    R = rng.normal(size=(2000, 16)) / np.sqrt(16)
    perm = lc.order_inputs(X[shuffle] @ R, refine="2opt")
    assert lc.path_length(X[shuffle], perm) <= 1.01 * lc.path_length(X)


def test_start_is_the_first_input(rng):
    X = rng.normal(size=(50, 4))
    for start in (0, 17, np.int32(49)):
        assert lc.order_inputs(X, start=start)[0] == start


def test_two_inputs_and_equal_inputs():
    np.testing.assert_array_equal(lc.order_inputs([[0.0], [1.0]]), [0, 1])
    np.testing.assert_array_equal(lc.order_inputs([[0.0], [1.0]], start=1), [1, 0])
    same = np.ones((5, 3))
    for method, refine in ORDERS:
        np.testing.assert_array_equal(np.sort(lc.order_inputs(same, method, refine=refine)),
                                      np.arange(5))
        assert lc.path_length(same, lc.order_inputs(same, method, refine=refine)) == 0.0


def test_integer_and_jax_inputs():
    pixels = np.array([[0, 0], [200, 0], [100, 0], [255, 0]], np.uint8)
    # The mean is 138.75: the chain starts at 0, the input farthest from it.
    np.testing.assert_array_equal(lc.order_inputs(pixels), [0, 2, 1, 3])
    np.testing.assert_array_equal(lc.order_inputs(jax.numpy.asarray(pixels, jax.numpy.float32)),
                                  [0, 2, 1, 3])


@pytest.mark.parametrize("K, d", [(2, 1), (7, 3), (50, 20)])
def test_path_length_is_the_sum_of_steps(K, d, rng):
    X = rng.normal(size=(K, d)).astype(np.float32)
    perm = rng.permutation(K)
    np.testing.assert_allclose(lc.path_length(X, perm), naive_length(X, perm), rtol=1e-12, atol=0)
    np.testing.assert_allclose(lc.path_length(X), naive_length(X, range(K)), rtol=1e-12, atol=0)


BAD = [  # the first ten are about X
    (np.array([[0.0, 1.0], [np.nan, 0.0]]), {}, ValueError, "non-finite"),
    (np.array([[0.0, np.inf], [1.0, 0.0]]), {}, ValueError, "non-finite"),
    (np.arange(5.0), {}, ValueError, r"shape \(K, d\).*got \(5,\).*reshape"),
    (np.zeros((2, 3, 4)), {}, ValueError, r"shape \(K, d\)"),
    (np.zeros((1, 3)), {}, ValueError, "K >= 2"),
    (np.zeros((0, 3)), {}, ValueError, "K >= 2"),
    (np.zeros((4, 0)), {}, ValueError, "d >= 1"),
    (np.zeros((4, 2), complex), {}, TypeError, "real"),
    ("abc", {}, TypeError, "real numbers"),
    (None, {}, TypeError, "real numbers"),
    (np.zeros((4, 2)), {"method": "tsp"}, ValueError, "method must be one of.*spectral"),
    (np.zeros((4, 2)), {"refine": "3opt"}, ValueError, "refine must be one of.*2opt"),
    (np.zeros((4, 2)), {"neighbours": 0}, ValueError, "neighbours must be a positive int"),
    (np.zeros((4, 2)), {"neighbours": 2.5}, ValueError, "neighbours must be a positive int"),
    (np.zeros((4, 2)), {"neighbours": True}, ValueError, "neighbours must be a positive int"),
    (np.zeros((4, 2)), {"start": 4}, ValueError, r"start must be an int in \[0, K\)"),
    (np.zeros((4, 2)), {"start": -1}, ValueError, r"start must be an int in \[0, K\)"),
    (np.zeros((4, 2)), {"start": 1.0}, ValueError, r"start must be an int in \[0, K\)"),
    (np.zeros((4, 2)), {"method": "pca", "start": 0}, ValueError, "start applies to"),
]


@pytest.mark.parametrize("X, kwargs, error, match", BAD)
def test_bad_inputs_are_rejected(X, kwargs, error, match):
    with pytest.raises(error, match=match):
        lc.order_inputs(X, **kwargs)


@pytest.mark.parametrize("perm", [[0, 1], [0, 1, 1], [0, 1, 3], [0.0, 1.0, 2.0], [[0, 1, 2]]])
def test_path_length_rejects_what_is_not_a_permutation(perm):
    with pytest.raises(ValueError, match=r"perm must be a permutation of range\(K\)"):
        lc.path_length(np.zeros((3, 2)), perm)


def test_path_length_checks_its_inputs_as_order_inputs_does():
    for X, kwargs, error, match in BAD[:10]:
        with pytest.raises(error, match=match):
            lc.path_length(X)


def test_tracers_are_refused_with_a_way_out():
    with pytest.raises(TypeError, match="outside jit"):
        jax.jit(lc.order_inputs)(np.zeros((4, 2)))


def test_spectral_without_scipy_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy", None)
    with pytest.raises(ImportError, match="pip install scipy"):
        lc.order_inputs(np.random.default_rng(0).normal(size=(10, 2)), "spectral")
    assert len(lc.order_inputs(np.random.default_rng(0).normal(size=(10, 2)))) == 10
