"""The demo at smoke size: it runs Table 1 and error-vs-N on an untrained LeNet-5 in
subprocesses (its own file, so that the test processes can share the suite's slowest
tests)."""

from __future__ import annotations

import csv
import json
import shutil
import sys

import numpy as np
import pytest

from experiments import demo, table1
from _data import needs_data


@needs_data
def test_demo_smoke(tmp_path, capfd):
    # the demo runs the command lines of Table 1 and error-vs-N on LeNet-5, so this also
    # covers their LeNet-5 paths and Table 1's output files
    demo.main(["--smoke", "--untrained", "--out", str(tmp_path)])
    printed = capfd.readouterr().out  # the experiments run in subprocesses
    assert "| model | N | K | survivors N−S | LeTCC | B-spline | BACC | LCC | uncoded |" in printed
    assert "slope" in printed and "demo:" in printed

    out = tmp_path / "demo" / "table1"
    assert {p.name for p in out.iterdir()} == {"results.json", "results.csv", "table.md",
                                               "table1_worst_case.png"}
    payload = json.loads((out / "results.json").read_text())
    config, table_rows = payload["config"], payload["rows"]
    assert config["name"] == "smoke" and config["untrained"]
    assert "jax" in payload["environment"]
    # the smoke config has the worst-case table: LeTCC tuned, bounded and clipped join
    assert config["worst_case"] == ["lenet5"]
    schemes = [*table1.SCHEMES, "letcc_tuned", "letcc_bounded", "letcc_clipped"]
    assert [r["scheme"] for r in table_rows] == schemes * len(config["settings"])
    by = {r["scheme"]: r for r in table_rows}
    assert by["letcc_bounded"]["lam_dec"] == by["letcc_clipped"]["lam_dec"] == by["letcc"]["lam_dec"]
    assert "LeTCC bounded" in (out / "table.md").read_text()
    with (out / "results.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == len(table_rows)
    assert "RelAcc = acc(argmax" in (out / "table.md").read_text()
    with (out / "results.csv").open() as fh:  # the headline columns come first
        header = next(csv.reader(fh))
    first = header.index("mse_mean")
    assert header[first:first + 3] == ["mse_mean", "mse_std", "root_mean_mse"]
    assert first < header.index("rmse_mean")
    for r in table_rows:
        assert r["model"] == "lenet5"
        assert r["values"] == config["trials"] * config["batches"]
        np.testing.assert_allclose(r["root_mean_mse"], np.sqrt(r["mse_mean"]), rtol=1e-12,
                                   atol=0)
        assert np.isfinite(r["rmse_mean"]) and r["rmse_std"] >= 0
        # replication's loss is exact, the others' over the draws, whose mean RMSE the
        # root of the mean bounds (Jensen)
        assert r.get("exact", False) == (r["scheme"] == "uncoded")
        sampled = "mc_" if r["scheme"] == "uncoded" else ""
        assert np.isfinite(r["mse_mean"]) and r[f"{sampled}mse_std"] >= 0
        assert np.sqrt(r[f"{sampled}mse_mean"]) >= r["rmse_mean"] * (1 - 1e-6)
        # C(12, 3) = 220 sets: enumerated, so the worst case bounds every random draw
        assert r["worst_exact"] and len(r["worst_stragglers"]) == r["S"]
        assert r["worst_rmse"] >= r["random_rmse_max_batch0"] * (1 - 1e-6)
        np.testing.assert_allclose(r["worst_gap"],
                                   r["worst_rmse"] / r["random_root_mean_mse_batch0"],
                                   rtol=1e-12, atol=0)
    letcc = next(r for r in table_rows if r["scheme"] == "letcc")
    assert letcc["lam_dec"] in config["lam_dec_grid"]
    text = (out / "table.md").read_text()
    assert text.index("### Loss E[MSE] (√E[MSE])") < text.index("### RMSE per draw")
    assert "### Worst-case stragglers" in text and "| LeTCC tuned |" in text
    # replication's worst set: the 3 replicas of one input (workers k, k + 4, k + 8), which
    # random draws lose with probability 4 / C(12, 3); the lost input costs its distance to
    # the fallback, f's mean on the calibration images
    uncoded = next(r for r in table_rows if r["scheme"] == "uncoded")
    assert len({n % 4 for n in uncoded["worst_stragglers"]}) == 1
    np.testing.assert_allclose(uncoded["failure_rate"], 4 / 220, rtol=1e-12, atol=0)
    assert uncoded["worst_gap"] > np.sqrt(220 / 4) and uncoded["worst_mse"] > 0
    assert len(payload["models"]["lenet5"]["fallback"]) == 10

    out = tmp_path / "demo" / "error_vs_n"
    assert (out / "error_vs_n_lenet5.png").stat().st_size > 0
    curve_rows = json.loads((out / "results.json").read_text())["rows"]
    assert {r["function"] for r in curve_rows} == {"lenet5"}
    assert all(np.isfinite(r["mse_mean"]) for r in curve_rows)


def test_demo_stops_when_an_experiment_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", shutil.which("false"))  # every command exits 1
    with pytest.raises(SystemExit, match=r"experiments.table1 failed \(exit status 1\)"):
        demo.main(["--smoke", "--untrained", "--out", str(tmp_path)])


def test_demo_synthetic_smoke(tmp_path, capsys):
    demo.main(["--synthetic", "--smoke", "--out", str(tmp_path)])
    assert "| N | K | S | letcc | bspline | bacc | lcc | uncoded |" in capsys.readouterr().out
    out = tmp_path / "demo" / "synthetic"
    assert len(json.loads((out / "results.json").read_text())["rows"]) == len(table1.SCHEMES)
    assert (out / "table.md").read_text().count("\n") == 3


# ----------------------------------------------------------------- hostile command lines
