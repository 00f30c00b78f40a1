"""The reliability study of LeTCC's standard errors (``experiments.reliability``): its rank
statistics against scipy, and the smoke config run in-process (untrained LeNet-5)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from compiles import compilations
from experiments import reliability
from experiments.configs import RELIABILITY
from _data import needs_data


# ----------------------------------------------------------------- rank statistics
def test_rank_statistics_match_scipy(rng):
    stats = pytest.importorskip("scipy.stats")
    a = rng.integers(0, 6, size=200).astype(float)  # many ties
    b = a + rng.normal(size=200)
    np.testing.assert_allclose(reliability.average_ranks(a), stats.rankdata(a), rtol=0, atol=0)
    np.testing.assert_allclose(reliability.spearman(a, b), stats.spearmanr(a, b).statistic,
                               rtol=1e-12, atol=1e-12)
    positive = b > np.quantile(b, 0.9)
    u = stats.mannwhitneyu(a[positive], a[~positive]).statistic
    np.testing.assert_allclose(reliability.auroc(a, positive),
                               u / (positive.sum() * (~positive).sum()), rtol=1e-12, atol=0)


def test_rank_statistics_on_hand_cases():
    assert reliability.auroc([1.0, 2.0, 3.0, 4.0], [False, False, True, True]) == 1.0
    assert reliability.auroc([1.0, 1.0, 1.0], [True, False, False]) == 0.5  # ties: one half
    assert np.isnan(reliability.auroc([1.0, 2.0], [True, True]))
    assert reliability.spearman([1.0, 2.0, 3.0], [10.0, 20.0, 300.0]) == 1.0
    assert np.isnan(reliability.spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))


def test_reliability_bins_are_equal_count_groups_by_std():
    std = np.array([4.0, 1.0, 3.0, 2.0])
    error = np.array([8.0, 1.0, 6.0, 3.0])
    rms_std, rms_error, covered = reliability.reliability_bins(std, error, bins=2,
                                                               multiplier=1.4)
    np.testing.assert_allclose(rms_std, [np.sqrt(2.5), np.sqrt(12.5)], rtol=1e-15, atol=0)
    np.testing.assert_allclose(rms_error, [np.sqrt(5.0), np.sqrt(50.0)], rtol=1e-15, atol=0)
    assert covered == [0.5, 0.0]  # 1 <= 1.4 but 3 > 2.8; 6 > 4.2 and 8 > 5.6


def test_config_rejects_what_it_cannot_run():
    cpu = RELIABILITY["cpu"]
    with pytest.raises(ValueError, match="models must name"):
        dataclasses.replace(cpu, models=("resnet",))
    with pytest.raises(ValueError, match="stragglers must name"):
        dataclasses.replace(cpu, stragglers=("worst",))
    with pytest.raises(ValueError, match="keep 'exact'"):
        dataclasses.replace(cpu, stragglers=("bernoulli",))


# ----------------------------------------------------------------- smoke run
@needs_data
def test_reliability_smoke(tmp_path, monkeypatch):
    # Every round of a model runs one compiled program: count what each call compiles.
    calls = []
    posterior_at = reliability.posterior_at

    def counted(f, scheme, X, alive):
        with compilations() as count:
            out = posterior_at(f, scheme, X, alive)
        calls.append((f, count()))
        return out

    monkeypatch.setattr(reliability, "posterior_at", counted)
    config = RELIABILITY["smoke"]
    rows = reliability.main(["--smoke", "--untrained", "--out", str(tmp_path)])
    out = tmp_path / "reliability"
    assert {p.name for p in out.iterdir()} == {"results.json", "results.csv", "table.md",
                                               "reliability.png"}
    written = json.loads((out / "results.json").read_text())
    assert written["config"]["name"] == "smoke" and written["rows"] == rows
    expected = {(m, kind, order) for m in config.models for order in reliability.ORDERS
                for kind in config.stragglers + (("worst",) if m in config.worst else ())}
    assert sorted((r["f"], r["stragglers"], r["order"]) for r in rows) == sorted(expected)
    # one program per model: its first call compiles, no other call (order, straggler
    # model, calibration or evaluation batches) does
    per_model = {}
    for f, compiled in calls:
        per_model.setdefault(f, []).append(compiled)
    assert len(per_model) == len(config.models)
    assert all(counts[0] >= 1 and not any(counts[1:]) for counts in per_model.values())
    for r in rows:
        K, N = config.settings[r["f"]]
        assert (r["K"], r["N"], r["batches"]) == (K, N, config.batches)
        m = 10 if r["f"] == "lenet5" else 2
        assert 0 < r["entries"] <= config.batches * r["rounds_per_batch"] * K * m
        assert 0 <= r["lost_share"] < 1
        for q in config.levels:
            for name in ("gaussian", "conformal"):
                assert 0 <= r[f"coverage_{name}_{100 * q:g}"] <= 1
        assert r["quantile_95"] > r["quantile_80"] > 0
        assert -1 <= r["spearman"] <= 1 and 0 <= r["auroc"] <= 1
        assert r["flagged_inputs"] >= 1
        assert len(r["bins_std"]) == len(r["bins_error"]) == len(r["bins_coverage"])
        assert len(r["bins_std"]) == config.bins
        assert all(0 <= c <= 1 for c in r["bins_coverage"])
        assert np.all(np.diff(r["bins_std"]) >= 0)  # bins sorted by predicted std
        assert r["calibrated_on"] == ("exact" if r["stragglers"] == "worst" else r["stragglers"])
    # The conformal guarantee holds per exchangeable unit; entries of one batch share its
    # inputs, so the units counted are the C batches. Coverage per batch is a fraction in
    # [0, 1] with mean about q, so its variance is at most q (1 - q), and both the
    # calibration quantile's coverage and the evaluation estimate are means over C batches:
    # their difference has std at most sqrt(2 q (1 - q) / C). Allow three of them.
    for r in (r for r in rows if r["stragglers"] == "exact"):
        for q in config.levels:
            margin = 3 * np.sqrt(2 * q * (1 - q) / config.batches)
            assert abs(r[f"coverage_conformal_{100 * q:g}"] - q) <= margin, (r["f"], q)
    assert "cover 95%: Gaussian → conformal" in (out / "table.md").read_text()

