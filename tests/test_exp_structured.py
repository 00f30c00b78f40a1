"""The naturally structured inputs experiment (``experiments.structured``): its command line
at smoke size (untrained models), its input families and its scoring on hand-computed
cases."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import letcc_jax as lc
from experiments import configs, structured
from _data import needs_data

COMMON = ("experiment", "f", "K", "N", "ratio", "structure", "order_method", "stragglers",
          "S", "p", "scheme", "mse", "root_mse", "relacc")
SMOKE = configs.STRUCTURED["smoke"]


# ----------------------------------------------------------------- the command line
@needs_data
def test_structured_smoke(tmp_path, caplog):
    with jax.log_compiles(), caplog.at_level(logging.WARNING):
        rows = structured.main(["--smoke", "--untrained", "--out", str(tmp_path)])
    # LeTCC's calibration and evaluation share one program (both orders and every lam_dec
    # in it), BACC has one more, the three image families reuse both, and so does the
    # second N, padded to the largest
    compiled = sum("compilation of jit(monte_carlo_compiled)" in r.getMessage() for r in caplog.records)
    assert compiled == 2
    out = tmp_path / "structured"
    assert {p.name for p in out.iterdir()} == {"results.json", "results.csv", "table.md",
                                               "structured_exact.png", "structured_worst.png"}
    payload = json.loads((out / "results.json").read_text())
    assert payload["config"]["name"] == "smoke" and payload["config"]["untrained"]
    # per family: two codes in two orders and two replications, one of them (interpolating)
    # not under the worst stragglers
    assert len(rows) == len(SMOKE.families) * (6 + 5) * 2 == len(payload["rows"])
    with (out / "results.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == len(rows)
    K = SMOKE.K[0]
    Ns = [round(ratio * K) for ratio in SMOKE.ratios]
    assert [r["N"] for r in rows] == [N for N in Ns for _ in range(len(rows) // 2)]
    for r in rows:
        assert all(field in r for field in COMMON)
        assert (r["experiment"], r["f"], r["structure"]) == ("structured", "lenet5", "sequential")
        N = r["N"]
        assert (r["K"], r["ratio"], r["S"], r["p"]) == (K, N / K, round(0.2 * N), None)
        assert r["padded_to"] == max(Ns)
        assert r["order_method"] in (("given",) if r["scheme"] == "uncoded" else structured.ORDERS)
        assert np.isfinite(r["mse"]) and r["mse"] >= 0
        np.testing.assert_allclose(r["root_mse"], np.sqrt(r["mse"]), rtol=1e-12, atol=0)
        np.testing.assert_allclose(r["nmse"], r["mse"] / r["spread"], rtol=1e-12, atol=0)
        assert (r["lam_dec"] in SMOKE.lam_dec_grid) == (r["scheme"] == "letcc")
        assert 0 < r["path_ratio"] <= 1.5 and r["step_ratio"] > 0
        if r["stragglers"] == "worst":
            assert math.isnan(r["relacc"]) and len(r["worst_stragglers"]) == r["S"]
        else:
            assert 0 <= r["lost_share"] <= r["failure_rate"] <= 1
    table = (out / "table.md").read_text()
    assert "### Who wins" in table and "| translate | lenet5 | 8 | worst |" in table
    assert "RelAcc = acc(argmax" in table


# ----------------------------------------------------------------- the input families
def test_frames_move_and_turn_the_image():
    image = np.zeros((6, 6, 1), np.float32)
    image[1:4, 2, 0] = 1.0  # a vertical bar
    config = dataclasses.replace(SMOKE, shift=1.0, angle=90.0)
    moved = structured.frames("translate", image, 3, config).reshape(3, 6, 6, 1)
    np.testing.assert_allclose(moved[1], image, rtol=0, atol=1e-6)
    np.testing.assert_allclose(moved[2], np.roll(image, 1, axis=1), rtol=0, atol=1e-6)
    np.testing.assert_allclose(moved[0], np.roll(image, -1, axis=1), rtol=0, atol=1e-6)
    turned = structured.frames("rotate", image, 3, config).reshape(3, 6, 6, 1)
    np.testing.assert_allclose(turned[1], image, rtol=0, atol=1e-6)
    # a quarter turn each way: the bar lies horizontally
    for frame in turned[[0, 2]]:
        np.testing.assert_allclose(frame[..., 0].sum(axis=1).max(), 3.0, rtol=0, atol=1e-5)
        np.testing.assert_allclose(frame[..., 0].sum(axis=0).max(), 1.0, rtol=0, atol=1e-5)


def test_image_sequences_use_disjoint_sources_and_label_blends_by_weight():
    B, K = 2, 5
    config = dataclasses.replace(SMOKE, batches=B)
    images = np.arange(4 * B, dtype=np.float32)[:, None, None, None] * np.ones((1, 2, 2, 1))
    labels = np.arange(4 * B)
    X, y = structured.image_sequences("interpolate", images, labels, K, config)
    assert X.shape == (B, K, 4) and X.dtype == np.float32
    np.testing.assert_allclose(X[:, 0, 0], [4, 5], rtol=0, atol=0)  # from image 2B + b
    np.testing.assert_allclose(X[:, -1, 0], [6, 7], rtol=0, atol=0)  # to image 3B + b
    np.testing.assert_allclose(X[0, :, 0], np.linspace(4, 6, K), rtol=1e-6, atol=0)
    assert y.tolist() == [[4, 4, 6, 6, 6], [5, 5, 7, 7, 7]]  # t = 0.5 has b's weight
    X, y = structured.image_sequences("rotate", images, labels, K, config)
    assert X.shape == (B, K, 4) and y.tolist() == [[2] * K, [3] * K]  # images B .. 2B - 1


def test_goog_windows_are_consecutive_and_periods_disjoint():
    log_price = structured.goog_log_prices()
    assert log_price.shape == (1047,) and np.all(np.isfinite(log_price))
    config = dataclasses.replace(SMOKE, window=5, batches=3)
    K, scale = 10, 0.02
    X = structured.period_sequences(log_price, 100, 140, K, scale, config)
    assert X.shape == (3, K, 5) and X.dtype == np.float32
    np.testing.assert_allclose(X[..., -1], 0.0, rtol=0, atol=0)  # relative to the last day
    # the next window is this one moved by a day, less the day's return: a constant gap
    gap = X[:, 1:, :-1] - X[:, :-1, 1:]
    np.testing.assert_allclose(gap, np.broadcast_to(gap[..., :1], gap.shape), rtol=0, atol=2e-5)
    first, last = X[0, 0], X[-1, -1]  # the first and the last window lie in days 100 .. 139
    np.testing.assert_allclose(first, (log_price[100:105] - log_price[104]) / scale,
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(last, (log_price[135:140] - log_price[139]) / scale,
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="fewer than K"):
        structured.period_sequences(log_price, 100, 112, K, scale, config)


def test_goog_forecaster_and_sequences():
    config = dataclasses.replace(SMOKE, families=("goog",), worst_K=())
    f, info = structured.train_forecaster(config, jax.random.PRNGKey(0))
    _, train_end, cal_end, T = info["periods"]
    assert 0 < train_end < cal_end < T == 1047
    assert all(np.isfinite(v) and v > 0 for k, v in info.items() if k.endswith("mse"))
    seq = structured.goog_sequences(12, config, info)
    assert seq.X_cal.shape == seq.X_eval.shape == (config.batches, 12, config.window)
    assert seq.y_cal is None and seq.y_eval is None
    assert f(seq.X_eval[0, 0]).shape == (config.horizon,)


# ----------------------------------------------------------------- scoring
def test_smoothness_on_a_straight_line():
    outputs = np.arange(3.0)[None, :, None]  # f(x_k) = k: steps of 1, pairs 1, 4, 1
    X = jnp.asarray(np.array([[[0.0], [1.0], [2.0]]]))
    got = structured.smoothness(outputs, X, np.array([1, 0, 2]), np.array([1.0]))
    np.testing.assert_allclose(got["step_ratio"], 1 / 2, rtol=1e-12, atol=0)
    np.testing.assert_allclose(got["path_ratio"], 2 / 3, rtol=1e-12, atol=0)  # 2 / (1 + 2)
    np.testing.assert_allclose(got["spread"], 2 / 3, rtol=1e-12, atol=0)


def _identity(x):
    return x


def test_replication_relacc_is_the_expectation():
    # one replica per input, one straggler: each input lost w.p. 1/3, then the fallback
    # (argmax 0) is right only for input 0; f is right on all three
    X = jnp.eye(3, dtype=jnp.float32)[None]
    seq = structured.Sequences(X, X, jnp.array([[0, 1, 2]]), jnp.array([[0, 1, 2]]))
    scheme = lc.uncoded(3, 3, fallback=jnp.array([0.5, 0.2, 0.1], jnp.float32))
    got = structured.replication(_identity, scheme, seq, np.eye(3)[None], lc.ExactStragglers(1))
    np.testing.assert_allclose(got["relacc"], (3 * 2 / 3 + 1 / 3) / 3, rtol=1e-6, atol=0)
    np.testing.assert_allclose(got["lost_share"], 1 / 3, rtol=1e-6, atol=0)
    np.testing.assert_allclose(got["failure_rate"], 1.0, rtol=0, atol=0)
    # a lost input costs ||x_k - fallback||^2 = 0.30, 0.90, 1.10
    np.testing.assert_allclose(got["mse"], (0.30 + 0.90 + 1.10) / 9, rtol=1e-6, atol=0)


def test_interpolated_replication_fills_a_lost_input_from_its_neighbours():
    # f(x_k) = k, one replica each, one straggler: a lost inner input is interpolated
    # exactly, a lost end input takes its neighbour's value (error 1); P(an end) = 1/2
    outputs = np.arange(4.0)[None, :, None]
    seq = structured.Sequences(None, None, None, None)
    scheme = lc.uncoded(4, 4, fallback=jnp.array([9.0], jnp.float32))
    got = structured.interpolated_replication(scheme, seq, outputs, lc.ExactStragglers(1),
                                              2000, jax.random.PRNGKey(0))
    np.testing.assert_allclose(got["mse"], 1 / 8, rtol=0, atol=0.02)
    np.testing.assert_allclose([got["lost_share"], got["failure_rate"]], [1 / 4, 1.0],
                               rtol=0, atol=1e-12)
    assert math.isnan(got["relacc"])


def _row(scheme, order, mse, ratio=1.5, kind="exact"):
    return {"family": "rotate", "f": "lenet5", "K": 8, "ratio": ratio, "stragglers": kind,
            "scheme": scheme, "order_method": order, "mse": mse}


def test_winners_and_order_tables():
    rows = [_row("letcc", "given", 1.0), _row("letcc", "random", 8.0),
            _row("bacc", "given", 2.0), _row("bacc", "random", 3.0),
            _row("uncoded", "given", 4.0)]
    rows += [_row(s, o, 10 * r["mse"], ratio=3.0) for r in rows[:4]
             for s, o in [(r["scheme"], r["order_method"])]]
    rows.append(_row("uncoded", "given", 5.0, ratio=3.0))
    winners = structured.winners_table(rows)
    assert "| rotate | lenet5 | 8 | exact | **LeTCC** ×4 | repl. ×2 |" in winners
    assert "| rotate | lenet5 | 8 | exact | 8 / 1.5 | 8 / 1.5 |" in structured.order_table(rows)


def test_config_rejects_what_it_cannot_run():
    with pytest.raises(ValueError, match="unknown families"):
        dataclasses.replace(SMOKE, families=("video",))
    with pytest.raises(ValueError, match="replication"):
        dataclasses.replace(SMOKE, ratios=(0.5,))
    with pytest.raises(ValueError, match="worst_K"):
        dataclasses.replace(SMOKE, worst_K=(20,))
    with pytest.raises(ValueError, match="exact"):
        dataclasses.replace(SMOKE, stragglers=("bernoulli",))
    for config in configs.STRUCTURED.values():
        assert hash(config) == hash(dataclasses.replace(config))
