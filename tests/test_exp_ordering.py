"""Arc-length encoder nodes (``letcc_jax.path_nodes``) against formulas written here, and the
input-order experiment (``experiments.ordering``) at smoke size with an untrained model."""

from __future__ import annotations

import dataclasses
import itertools
import json

import jax.numpy as jnp
import numpy as np
import pytest

import letcc_jax as lc
from experiments import ordering
from experiments.configs import ORDERING, FrozenDict
from _data import needs_data


def default_index_coordinate(alpha, K, points):
    """The fractional index i of each node among the default nodes of ``points``: the
    inverse of alpha = -cos(pi (2i + 1) / (2K)) (Chebyshev) or -1 + (2i + 1) / K."""
    alpha = np.asarray(alpha, np.float64)
    if points == "chebyshev":
        return (2 * K * np.arccos(-alpha) / np.pi - 1) / 2
    return (K * (alpha + 1) - 1) / 2


# ----------------------------------------------------------------- path_nodes
@pytest.mark.parametrize("points", ["chebyshev", "equispaced"])
@pytest.mark.parametrize("K", [2, 3, 17, 200])
def test_path_nodes_are_strictly_increasing_between_the_default_ends(rng, points, K):
    X = rng.normal(size=(K, 5)) * rng.uniform(0.01, 10.0, size=(K, 1))  # uneven steps
    perm = rng.permutation(K)
    defaults = (lc.chebyshev_first(K) if points == "chebyshev"
                else -1.0 + (2.0 * np.arange(K) + 1.0) / K)
    for min_gap in (1e-6, 0.25, 1.0):
        alpha = lc.path_nodes(X, perm, points=points, min_gap=min_gap)
        assert alpha.shape == (K,) and alpha.dtype == np.float64
        assert np.all(np.diff(alpha) > 0)
        np.testing.assert_allclose(alpha[[0, -1]], defaults[[0, -1]], rtol=0, atol=1e-14)
        assert -1 < alpha[0] and alpha[-1] < 1  # inside the workers' range: tune starts here
        lc.node_logits(jnp.asarray(alpha))  # free-end nodes, as tune parametrises them


@pytest.mark.parametrize("points", ["chebyshev", "equispaced"])
def test_path_nodes_follow_arc_length_along_a_line(rng, points):
    # Inputs along a line at positions s, given shuffled: in the sorted order, step j of the
    # default index coordinate is (K - 1) (min_gap / (K - 1) + (1 - min_gap) ds_j / sum ds).
    K, min_gap = 9, 0.2
    s = np.sort(rng.uniform(0, 10, K))
    direction = rng.normal(size=3)
    shuffle = rng.permutation(K)
    X = (s[:, None] * direction)[shuffle]
    perm = np.argsort(shuffle)  # X[perm] runs along the line from s[0] to s[-1]
    np.testing.assert_array_equal(X[perm], s[:, None] * direction)
    index = default_index_coordinate(lc.path_nodes(X, perm, points=points, min_gap=min_gap),
                                     K, points)
    ds = np.diff(s)
    expected = (K - 1) * (min_gap / (K - 1) + (1 - min_gap) * ds / ds.sum())
    np.testing.assert_allclose(np.diff(index), expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(index[0], 0.0, rtol=0, atol=1e-12)
    # the chain finds the same path (or its reverse, whose nodes mirror these)
    chain = lc.order_inputs(X)
    assert np.array_equal(chain, perm) or np.array_equal(chain, perm[::-1])


def test_path_nodes_far_apart_inputs_get_far_apart_nodes():
    # three close inputs, then a jump: the jump gets the widest gap in the index coordinate
    X = np.array([[0.0], [0.1], [0.2], [5.0]])
    index = default_index_coordinate(lc.path_nodes(X), 4, "chebyshev")
    gaps = np.diff(index)
    assert gaps[2] > 3 * gaps[0] and np.isclose(gaps[0], gaps[1], rtol=1e-9)


@pytest.mark.parametrize("points", ["chebyshev", "equispaced"])
def test_path_nodes_keep_every_gap_at_least_min_gap_of_the_default(rng, points):
    K, min_gap = 30, 0.3
    X = np.concatenate([np.zeros((10, 2)), rng.normal(size=(20, 2)) * 100])  # duplicates
    index = default_index_coordinate(lc.path_nodes(X, points=points, min_gap=min_gap), K,
                                     points)
    assert np.all(np.diff(index) >= min_gap - 1e-9)
    np.testing.assert_allclose(np.diff(index)[:9], min_gap, rtol=1e-9)  # the duplicates


def test_path_nodes_give_the_default_nodes_with_min_gap_one_or_equal_inputs(rng):
    X = rng.normal(size=(7, 3))
    np.testing.assert_allclose(lc.path_nodes(X, min_gap=1.0), lc.chebyshev_first(7),
                               rtol=0, atol=1e-14)
    np.testing.assert_allclose(lc.path_nodes(np.ones((7, 3))), lc.chebyshev_first(7),
                               rtol=0, atol=1e-14)
    np.testing.assert_allclose(lc.path_nodes(X, points="equispaced", min_gap=1.0),
                               -1.0 + (2.0 * np.arange(7) + 1.0) / 7, rtol=0, atol=1e-14)


def test_path_nodes_make_a_scheme_with_the_same_order(rng):
    K, N = 6, 14
    X = rng.normal(size=(K, 4))
    perm = lc.order_inputs(X)
    alpha = lc.path_nodes(X, perm)
    scheme = lc.letcc(K, N, points=(alpha, lc.chebyshev_second(N)), order=perm)
    np.testing.assert_allclose(scheme.alpha, alpha, rtol=0, atol=0)
    # input perm[j] sits at alpha[j]: the same curve as the inputs in node order
    unordered = lc.letcc(K, N, points=(alpha, lc.chebyshev_second(N)))
    np.testing.assert_allclose(scheme.encode(jnp.asarray(X)), unordered.encode(X[perm]),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"perm": [0, 1, 1]}, ValueError, "perm must be a permutation"),
    ({"perm": [0.0, 1.0, 2.0]}, ValueError, "perm must be a permutation"),
    ({"points": "gauss"}, ValueError, "points must be one of"),
    ({"min_gap": 0.0}, ValueError, r"min_gap must be in \(0, 1\]"),
    ({"min_gap": 1.5}, ValueError, r"min_gap must be in \(0, 1\]"),
    ({"min_gap": float("nan")}, ValueError, "min_gap must be"),
    ({"min_gap": "0.5"}, TypeError, "min_gap must be a real number"),
])
def test_path_nodes_errors_name_the_argument(kwargs, error, message):
    with pytest.raises(error, match=message):
        lc.path_nodes(np.eye(3), **kwargs)


@pytest.mark.parametrize("X, error, message", [
    (np.zeros(4), ValueError, r"shape \(K, d\)"),
    (np.zeros((1, 3)), ValueError, "K >= 2"),
    (np.array([[0.0, np.nan], [1.0, 2.0]]), ValueError, "non-finite"),
    ("abc", TypeError, "real numbers"),
])
def test_path_nodes_reject_bad_inputs(X, error, message):
    with pytest.raises(error, match=message):
        lc.path_nodes(X)


# ----------------------------------------------------------------- experiment helpers
def test_input_orders_are_permutations_and_the_random_one_is_seeded(rng):
    X = rng.normal(size=(12, 5))
    orders = ordering.input_orders(X, ORDERING["cpu"].orders, seed=3)
    assert orders.shape == (5, 12)
    assert all(np.array_equal(np.sort(o), np.arange(12)) for o in orders)
    np.testing.assert_array_equal(orders[0], np.random.default_rng(3).permutation(12))
    np.testing.assert_array_equal(orders[3], lc.order_inputs(X, refine="2opt"))


def test_replication_row_is_the_enumerated_expectation(rng):
    # replication's E[MSE] and expected RelAcc against every straggler set, decoded
    K, N, S, m = 3, 5, 2, 4
    W = rng.normal(size=(2, m))

    def f(x):
        return x @ jnp.asarray(W)

    X = rng.normal(size=(2, K, 2))
    truth = X @ W
    labels = np.stack([truth[0].argmax(-1), (truth[1].argmax(-1) + 1) % m])  # f: 3/3, 0/3
    labels[1, 0] = truth[1, 0].argmax()  # f right once on batch 1
    fallback = truth.reshape(-1, m).mean(0)
    data = ordering.Batches(None, None, None, jnp.asarray(X), jnp.asarray(labels), None,
                            truth, None)
    row = ordering.replication_row(f, data, K, N, lc.ExactStragglers(S), jnp.asarray(fallback))
    scheme = lc.uncoded(K, N, fallback=fallback)
    mse, relacc = [], []
    for chosen in itertools.combinations(range(N), S):
        alive = ~np.isin(np.arange(N), chosen)
        estimate = [np.asarray(scheme.decode(truth[c][np.arange(N) % K], alive)) for c in (0, 1)]
        mse.append(np.mean([np.mean(np.sum((e - t) ** 2, -1)) for e, t in zip(estimate, truth)]))
        relacc.append([float(lc.relacc(e, t, y)[0]) for e, t, y in zip(estimate, truth, labels)])
    np.testing.assert_allclose(row["mse"], np.mean(mse), rtol=1e-10, atol=0)
    np.testing.assert_allclose(row["relacc"], np.mean(relacc), rtol=1e-10, atol=0)
    assert 0 < row["p_lose_any"] < 1 and row["order_method"] == "given"


def test_config_rejects_what_it_cannot_run():
    cpu = ORDERING["cpu"]
    with pytest.raises(ValueError, match="orders must name"):
        dataclasses.replace(cpu, orders=("random", "zigzag"))
    with pytest.raises(ValueError, match="ratios N/K must be >= 1"):
        dataclasses.replace(cpu, settings=FrozenDict(lenet5=((20, (0.5, 2.0)),)))
    with pytest.raises(ValueError, match="worst names models"):
        dataclasses.replace(cpu, worst=FrozenDict(resnet=20))
    with pytest.raises(ValueError, match="need 'exact' stragglers"):
        dataclasses.replace(cpu, stragglers=("bernoulli",))


# ----------------------------------------------------------------- smoke run
COMMON = ("experiment", "f", "K", "N", "ratio", "structure", "order_method", "stragglers",
          "S", "p", "scheme", "mse", "root_mse", "relacc")


@needs_data
def test_ordering_smoke(tmp_path):
    rows = ordering.main(["--smoke", "--untrained", "--out", str(tmp_path)])
    out = tmp_path / "ordering"
    assert {p.name for p in out.iterdir()} == {"results.json", "results.csv", "table.md",
                                               "ordering_lenet5.png"}
    written = json.loads((out / "results.json").read_text())
    assert written["config"]["name"] == "smoke" and len(written["rows"]) == len(rows)
    assert all(k in r for r in rows for k in COMMON)
    config = ORDERING["smoke"]
    main = [r for r in rows if not r.get("node_comparison")]
    # the two N of K = 8 run padded to the larger (one set of compiled programs)
    assert {(r["N"], r["padded_to"]) for r in main} == {(12, 16), (16, 16)}
    for kind, N in itertools.product(("exact", "worst"), (12, 16)):
        here = [r for r in main if r["stragglers"] == kind and r["N"] == N]
        assert sorted((r["scheme"], r["order_method"]) for r in here) == sorted(
            [("uncoded", "given")] + [(s, o) for s in ("letcc", "bacc") for o in config.orders])
        assert all(np.isfinite(r["mse"]) and r["mse"] >= 0 for r in here)
    exact = [r for r in main if r["stragglers"] == "exact"]
    assert all(np.isfinite(r["relacc"]) for r in exact)
    assert {r["structure"] for r in exact if r["order_method"] == "random"} == {"random"}
    assert all(r["lam_dec"] in config.lam_dec_grid for r in exact if r["scheme"] == "letcc")
    # The node comparison (unpadded, N = 12) draws the main rows' straggler patterns: on
    # Chebyshev nodes at lam_dec = 0 it repeats the nearest-neighbour row, simulated padded.
    nodes = [r for r in rows if r.get("node_comparison")]
    assert {(r["scheme"], r["nodes"]) for r in nodes} == {
        ("letcc", "chebyshev"), ("letcc", "arc_length"), ("bacc", "chebyshev"),
        ("bacc", "arc_length")}
    for r in nodes:
        same = next(m for m in exact if (m["scheme"], m["order_method"], m["N"])
                    == (r["scheme"], "nearest_neighbour", r["N"]))
        if r["nodes"] == "chebyshev" and same["lam_dec"] in (None, 0.0):
            np.testing.assert_allclose(r["mse"], same["mse"], rtol=1e-6, atol=0)
    assert "Gain of ordering and winner" in (out / "table.md").read_text()
