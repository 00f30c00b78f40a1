"""The regimes experiment (``experiments.regimes``): its four studies at smoke size, and its
helpers on hand-computed cases."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from experiments import configs, regimes
from _data import needs_data

ROOT = Path(__file__).resolve().parents[1]
COMMON = ("experiment", "f", "K", "N", "ratio", "structure", "order_method", "stragglers",
          "S", "p", "scheme", "mse", "root_mse", "relacc")


# ----------------------------------------------------------------- helpers
@pytest.mark.parametrize("K, N", [(4, 5), (4, 6), (8, 12), (8, 14), (40, 70), (5, 11)])
def test_systematic_points_contain_the_data_nodes(K, N):
    alpha, beta = regimes.systematic_points(K, N)
    assert alpha.shape == (K,) and beta.shape == (N,)
    np.testing.assert_allclose(alpha, np.sort(np.cos((2 * np.arange(1, K + 1) - 1) * np.pi
                                                     / (2 * K))), rtol=0, atol=1e-15)
    assert np.all(np.diff(beta) > 0) and beta[0] >= -1 and beta[-1] <= 1
    assert np.isin(alpha, beta).all()          # every data node is a worker's point
    if N - K >= 2:                             # the ends are covered first
        assert beta[0] == -1.0 and beta[-1] == 1.0


@pytest.mark.parametrize("K, N", [(4, 4), (4, 10), (8, 3)])
def test_systematic_points_need_more_workers_than_inputs(K, N):
    with pytest.raises(ValueError, match="K < N <= 2K"):
        regimes.systematic_points(K, N)


def test_round_latencies_without_a_tail_count_tasks():
    # rate -> infinity: every task takes `shift`, so a round lasts shift times its depth
    rng = np.random.default_rng(0)
    coded, repl = regimes.round_latencies(10, 4, 1, 2.0, 1e12, 5, rng)
    np.testing.assert_allclose(coded, 2.0, rtol=1e-9, atol=0)
    # 10 - 3 = 7 missing inputs on 4 workers: two tasks deep
    np.testing.assert_allclose(repl, 2.0 + 2 * 2.0, rtol=1e-9, atol=0)
    coded, repl = regimes.round_latencies(5, 4, 1, 2.0, 1e12, 5, rng)
    np.testing.assert_allclose(repl, 2.0 + 2.0, rtol=1e-9, atol=0)   # 2 missing, 2 replicas each


def test_round_latencies_match_order_statistics():
    # Exp(1) tails, shift 0. Coded: the 3rd of 4 arrivals, E = 1/4 + 1/3 + 1/2. Replication
    # with K = 5, N = 4, S = 1: 2 missing inputs, 2 replicas each (a min of two, Exp(2)),
    # and the round ends at the later: E = (1/2)(1 + 1/2).
    coded, repl = regimes.round_latencies(5, 4, 1, 0.0, 1.0, 200_000,
                                          np.random.default_rng(1))
    np.testing.assert_allclose(coded.mean(), 1 / 4 + 1 / 3 + 1 / 2, rtol=1e-2, atol=0)
    np.testing.assert_allclose((repl - coded).mean(), 0.75, rtol=1e-2, atol=0)


@pytest.mark.parametrize("kind", ["exact", "bernoulli"])
def test_one_round_replication_is_the_expected_loss(kind):
    # Against a simulation: N random inputs get a worker, stragglers drawn as the model says.
    K, N, S, p, draws = 6, 3, 1, 0.3, 40_000
    rng = np.random.default_rng(2)
    X = jnp.asarray(rng.normal(size=(1, K, 2)))
    inputs = regimes.Inputs(jnp.sin, X, X, None, None, None, None, jnp.asarray([0.1, -0.2]),
                            0.0)
    st = (regimes.Stragglers("exact", S, None, None) if kind == "exact"
          else regimes.Stragglers("bernoulli", None, p, None))
    mse, p_lost = regimes.one_round_replication(inputs, K, N, st)
    gap = np.sum((np.sin(np.asarray(X[0])) - np.array([0.1, -0.2])) ** 2, axis=-1)   # (K,)
    lost = np.ones((draws, K), bool)
    for t in range(draws):
        held = rng.permutation(K)[:N]
        answers = (rng.permutation(N) >= S) if kind == "exact" else rng.random(N) >= p
        lost[t, held[answers]] = False
    np.testing.assert_allclose(p_lost[0, 0], lost.mean(0), rtol=0, atol=0.015)
    np.testing.assert_allclose(mse[:, 0], (lost * gap).mean(), rtol=0.02, atol=0)
    assert mse.shape == (2, 1) and mse[0, 0] == mse[1, 0]      # the order does not matter


def test_compare_names_the_winner_and_the_best_codes_factor():
    rows = [{"N": 5, "scheme": "letcc", "mse": 2.0}, {"N": 5, "scheme": "bacc", "mse": 3.0},
            {"N": 5, "scheme": "uncoded", "mse": 4.0},
            {"N": 6, "scheme": "letcc", "mse": 2.0, "points": "systematic"},
            {"N": 6, "scheme": "letcc", "mse": 1.5, "points": "chebyshev"},
            {"N": 6, "scheme": "uncoded", "mse": 1.0, "points": "replicas"}]
    groups = regimes.compare(rows, ("N",))
    assert groups[(5,)]["winner"] == "letcc" and groups[(5,)]["factor"] == 0.5
    assert groups[(6,)]["winner"] == "uncoded" and groups[(6,)]["factor"] == 1.5
    assert set(groups[(6,)]) >= {"letcc_systematic", "letcc_chebyshev", "uncoded"}


def test_config_is_hashable_and_checked():
    for config in configs.REGIMES.values():
        assert hash(config) == hash(dataclasses.replace(config))
    smoke = configs.REGIMES["smoke"]
    for change, match in [({"studies": ("few_workers", "lots")}, "studies"),
                          ({"few_workers_ratios": (1.5,)}, "few_workers_ratios"),
                          ({"systematic_ratios": (1.0,)}, "systematic_ratios"),
                          ({"noise_ratios": (0.5,)}, "noise_ratios"),
                          ({"straggler_kinds": ("worst",)}, "straggler_kinds")]:
        with pytest.raises(ValueError, match=match):
            dataclasses.replace(smoke, **change)


def test_an_unknown_study_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        regimes.main(["--smoke", "--study", "few_workers", "everything", "--out",
                      str(tmp_path)])
    assert exit_info.value.code == 2
    assert "invalid choice: 'everything'" in capsys.readouterr().err
    assert not (tmp_path / "regimes").exists()


# ----------------------------------------------------------------- smoke run
#: The studies split in two command lines that run side by side: each study compiles its
#: own Monte Carlo programs (LeTCC's take most of the time, one core each), so two
#: processes on two cores halve the wall time.
SPLIT = {"a": ("systematic", "near_linear"), "b": ("few_workers", "noise")}


@needs_data
def test_regimes_smoke(tmp_path):
    # float64 and strict dtype promotion in the command lines too, as in this process
    env = {**os.environ, "JAX_ENABLE_X64": "1", "JAX_NUMPY_DTYPE_PROMOTION": "strict"}
    runs = {name: subprocess.Popen(
        [sys.executable, "-m", "experiments.regimes", "--smoke", "--untrained", "--study",
         *studies, "--out", str(tmp_path / name)], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for name, studies in SPLIT.items()}
    for name, run in runs.items():
        printed = run.communicate(timeout=600)[0]
        assert run.returncode == 0, printed
        assert "regimes config:" in printed and "regimes: wrote" in printed

    smoke = configs.REGIMES["smoke"]
    K, q = smoke.K, smoke.straggler_fraction
    rows = []
    for name, studies in SPLIT.items():
        out = tmp_path / name / "regimes"
        payload = json.loads((out / "results.json").read_text())
        assert payload["config"]["studies"] == list(studies)
        assert payload["config"]["untrained"] and payload["config"]["name"] == "smoke"
        with (out / "results.csv").open() as fh:
            assert len(list(csv.DictReader(fh))) == len(payload["rows"])
        table = (out / "table.md").read_text()
        assert "E[MSE]" in table and "RelAcc = acc(argmax" in table
        for study in studies:
            assert (out / f"regimes_{study}.png").stat().st_size > 0
            assert regimes.TABLES[study][0] in table
        rows += payload["rows"]

    for r in rows:
        assert all(k in r for k in COMMON), r
        assert r["experiment"] == "regimes" and r["K"] == K
        assert r["structure"] == regimes.STRUCTURE[r["order_method"]]
        assert r["scheme"] in ("letcc", "bacc", "uncoded")
        assert math.isfinite(r["mse"]) and r["mse"] >= 0
        np.testing.assert_allclose(r["root_mse"], math.sqrt(r["mse"]), rtol=1e-12, atol=0)
        np.testing.assert_allclose(r["ratio"], r["N"] / K, rtol=1e-12, atol=0)
        assert (r["S"] is None) != (r["p"] is None)
        assert (r["f"] == "tanh") == (r["study"] == "near_linear")
        # RelAcc: defined for LeNet-5, but not for replication under noise (no closed form)
        # nor for a worst case (one straggler set, scored by its loss)
        undefined = (r["f"] == "tanh" or r["stragglers"] == "worst"
                     or (r["study"] == "noise" and r["scheme"] == "uncoded"))
        assert math.isnan(r["relacc"]) == undefined, r

    def study(name):
        return [r for r in rows if r["study"] == name]

    # every setting has every scheme in both orders
    few = study("few_workers")
    N = round(smoke.few_workers_ratios[0] * K)
    assert {(r["scheme"], r["order_method"]) for r in few} == {
        (s, o) for s in ("letcc", "bacc", "uncoded") for o in regimes.ORDERS}
    for r in few:
        assert r["N"] == N < K and r["S"] == round(q * N)
        assert r["latency_p50"] <= r["latency_p99"]
        if r["scheme"] == "uncoded":  # N of K inputs held, each lost with its one worker
            np.testing.assert_allclose(r["p_lost"], 1 - (N / K) * (1 - r["S"] / N),
                                       rtol=1e-12, atol=0)
            assert r["two_round_p50"] > r["latency_p50"]
        else:
            assert r["scheme"] == "bacc" or r["lam_dec"] in smoke.lam_dec_grid

    systematic = study("systematic")
    assert {r["stragglers"] for r in systematic} == {"exact", "worst"}
    for kind in ("exact", "worst"):
        for order in regimes.ORDERS:
            sel = [r for r in systematic if r["stragglers"] == kind and r["order_method"] == order]
            assert sorted(regimes.variant(r) for r in sel) == [
                "bacc_chebyshev", "bacc_systematic", "letcc_chebyshev", "letcc_systematic",
                "uncoded"]
    for r in systematic:
        if r["stragglers"] == "worst":  # the worst set costs at least a random one
            assert r["mse"] >= r["random_mse_batch0"] * (1 - 1e-6)

    near = study("near_linear")
    assert sorted({r["c"] for r in near}) == list(smoke.near_linear_c)
    assert len(near) == len(smoke.near_linear_c) * 2 * 3

    noisy = study("noise")
    assert sorted({r["rel_sigma"] for r in noisy}) == list(smoke.rel_sigmas)
    for r in noisy:
        np.testing.assert_allclose(r["sigma"] / r["rel_sigma"], noisy[0]["sigma"]
                                   / noisy[0]["rel_sigma"], rtol=1e-5, atol=0)
