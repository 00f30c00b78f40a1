"""The experiment CLIs and the demo at smoke size (untrained models: no training, no
checkpoint cache), and their helpers on hand-computed cases."""

from __future__ import annotations

import ast
import csv
import dataclasses
import fnmatch
import importlib
import itertools
import json
import logging
import os
import re
from pathlib import Path

import jax
import numpy as np
import pytest

import letcc_jax as lc
from experiments import configs, demo, error_vs_n, probabilistic, table1
from experiments._common import (
    batched_inputs,
    calibration_mean,
    ends_group,
    expected_longest_run,
    padded_sizes,
    random_tanh_network,
    replication_loss_probability,
)
from letcc_jax.zoo.data import CalibrationSplit


# ----------------------------------------------------------------- slope fitting
def test_fit_slope_recovers_exact_power_law():
    N = np.logspace(1, 3, 9)
    np.testing.assert_allclose(error_vs_n.fit_slope(N, 3.0 * N ** -3.0), -3.0, rtol=1e-12, atol=0)
    np.testing.assert_allclose(error_vs_n.fit_slope(N, 0.2 * N ** -0.6), -0.6, rtol=1e-12, atol=0)


def test_fit_slope_uses_only_the_large_N_half():
    N = np.array([10, 20, 40, 80, 160, 320, 640.0])
    mse = np.where(N < 80, 1.0, 5.0 * N ** -3.0)  # flat pre-asymptotic part is ignored
    np.testing.assert_allclose(error_vs_n.fit_slope(N, mse), -3.0, rtol=1e-12, atol=0)


def test_fit_slope_ignores_non_positive_values():
    N = np.array([10, 100, 1000, 10000.0])
    np.testing.assert_allclose(error_vs_n.fit_slope(N, [1.0, 1.0, 1e-2, 0.0]), float("nan"))
    np.testing.assert_allclose(error_vs_n.fit_slope(N, [1.0, 1.0, 1e-2, 1e-4]), -2.0,
                               rtol=1e-12, atol=0)


def test_curve_label_shows_the_fitted_slope():
    N = np.logspace(1, 3, 7)
    assert error_vs_n.curve_label("letcc", 0.0, N, 2.0 * N ** -3.0) == "LeTCC σ/rms=0 (slope -3.0)"
    assert (error_vs_n.curve_label("bacc", 1e-2, N, N ** -0.6)
            == "BACC σ/rms=0.01 (slope -0.6)")


# ----------------------------------------------------------------- theory lines
def _longest_run(mask) -> int:
    runs = "".join("1" if v else "0" for v in mask).split("0")
    return max(map(len, runs))


@pytest.mark.parametrize("N, S", [(10, 4), (12, 3), (9, 0), (8, 8), (11, 5), (13, 1)])
def test_expected_longest_run_matches_enumeration(N, S):
    runs = [_longest_run(np.isin(np.arange(N), chosen))
            for chosen in itertools.combinations(range(N), S)]
    np.testing.assert_allclose(expected_longest_run(N, S), np.mean(runs), rtol=1e-12, atol=0)


def test_expected_longest_run_is_the_straggler_models():
    # the same straggler model as the experiments: lc.ExactStragglers' uniform random sets
    N, S, draws = 60, 12, 4000
    keys = jax.random.split(jax.random.key(0), draws)
    masks = np.asarray(jax.vmap(lambda k: ~lc.ExactStragglers(S).sample(k, N))(keys))
    runs = np.array([_longest_run(m) for m in masks], float)
    assert masks.sum(axis=1).tolist() == [S] * draws
    np.testing.assert_allclose(runs.mean(), expected_longest_run(N, S),
                               rtol=0, atol=4 * runs.std() / np.sqrt(draws))


def test_error_vs_n_rates_use_the_longest_run_when_S_grows_with_N():
    N = np.array(configs.ERROR_VS_N["cpu"].N)
    S = np.round(0.2 * N).astype(int)
    L = np.array([expected_longest_run(n, s) for n, s in zip(N, S)])
    # about log_{1/q}(N), the longest head run, for S = qN
    large = N >= 100
    np.testing.assert_allclose(L[large], np.log(N[large]) / np.log(5), rtol=0, atol=0.5)
    # with S in place of the gap the bounds do not decay: S^3 N^-3 is flat, the noisy grows
    np.testing.assert_allclose(error_vs_n.fit_slope(N, error_vs_n.theory_rate("noiseless", N, S)),
                               0.0, rtol=0, atol=1e-3)
    assert error_vs_n.fit_slope(N, error_vs_n.theory_rate("noisy", N, S)) > 0.9
    # with the longest run they do, a little slower than N^-3 and N^-3/5
    assert -3.0 < error_vs_n.fit_slope(N, error_vs_n.theory_rate("noiseless", N, L)) < -2.2
    assert -0.6 < error_vs_n.fit_slope(N, error_vs_n.theory_rate("noisy", N, L)) < -0.2
    assert [error_vs_n.theory_gap(regime, 200, 4.0) for regime in ("S_fixed", "S_fraction")] \
        == [200.0, 4.0]


# ----------------------------------------------------------------- replication, exactly
def _lost_sets(owner, K, stragglers):
    """Whether each straggler set (a tuple of workers) leaves some input without a replica."""
    return [any(set(np.flatnonzero(owner == k)) <= set(chosen) for k in range(K))
            for chosen in stragglers]


@pytest.mark.parametrize("K, N, S", [(3, 7, 3), (4, 12, 5), (3, 8, 4), (2, 5, 0), (3, 7, 5)])
def test_replication_loss_probability_counts_every_straggler_set(K, N, S):
    scheme = lc.uncoded(K, N)
    owner = np.asarray(scheme.owners())
    lost = _lost_sets(owner, K, itertools.combinations(range(N), S))
    np.testing.assert_allclose(replication_loss_probability(scheme, lc.ExactStragglers(S)),
                               np.mean(lost), rtol=1e-12, atol=0)


def test_replication_loss_probability_under_independent_stragglers():
    # K = 4, N = 10: inputs 0 and 1 have 3 replicas, 2 and 3 have 2; p swept
    p = np.array([0.0, 0.1, 0.5])
    expected = 1 - (1 - p ** 3) ** 2 * (1 - p ** 2) ** 2
    got = replication_loss_probability(lc.uncoded(4, 10), lc.BernoulliStragglers(p))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    # far below float64's epsilon next to 1: no cancellation in 1 - prod
    np.testing.assert_allclose(replication_loss_probability(lc.uncoded(4, 40),
                                                            lc.BernoulliStragglers(0.01)),
                               4e-20, rtol=1e-9, atol=0)
    with pytest.raises(TypeError, match="BernoulliStragglers or ExactStragglers"):
        replication_loss_probability(lc.uncoded(4, 10), lc.NoStragglers())


def test_calibration_mean_is_the_mean_output():
    X = np.arange(12.0).reshape(2, 3, 2)  # two batches of K = 3 inputs, d = 2
    np.testing.assert_allclose(calibration_mean(lambda x: x[::-1] ** 2, X),
                               np.mean(X.reshape(6, 2)[:, ::-1] ** 2, axis=0), rtol=1e-12, atol=0)


def test_exact_replication_is_the_average_over_every_straggler_set():
    """Table 1's closed-form E[MSE], RelAcc and agreement of replication with a fallback,
    against the library's decode on all C(6, 3) = 20 straggler sets, on two batches; the
    fallback's argmax (class 1) is right for some inputs and wrong for others."""
    K, N, S, m = 3, 6, 3, 3
    W = np.array([[1.0, -2.0, 0.5], [0.3, 1.0, -1.0]])

    def f(x):
        return x @ W

    rng = np.random.default_rng(0)
    X = rng.normal(size=(2, K, 2))
    truth = X @ W
    labels = np.array([[0, 1, 2], [1, 1, 0]])
    fallback = np.array([0.0, 1.0, 0.5])
    scheme = lc.uncoded(K, N, fallback=fallback)
    sampled = table1.pool([_result([1.0], [1.0], [1.0], [1.0])])
    metrics, per_batch = table1.exact_replication(f, scheme, X, labels,
                                                  lc.ExactStragglers(S), sampled)
    mse, relacc, agreement, lost = [], [], [], []
    for chosen in itertools.combinations(range(N), S):
        alive = ~np.isin(np.arange(N), chosen)
        estimate = np.stack([np.asarray(scheme.decode(truth[c][np.arange(N) % K], alive))
                             for c in range(2)])
        mse.append(np.mean(np.sum((estimate - truth) ** 2, axis=-1), axis=-1))  # (2,)
        pairs = [lc.relacc(estimate[c], truth[c], labels[c]) for c in range(2)]
        relacc.append([float(r) for r, _ in pairs])
        agreement.append([float(a) for _, a in pairs])
    lost = _lost_sets(np.arange(N) % K, K, itertools.combinations(range(N), S))
    assert 0 < np.mean(lost) < 1
    np.testing.assert_allclose(per_batch, np.mean(mse, axis=0), rtol=1e-10, atol=0)
    np.testing.assert_allclose(metrics["mse_mean"], np.mean(mse), rtol=1e-10, atol=0)
    np.testing.assert_allclose(metrics["root_mean_mse"], np.sqrt(np.mean(mse)), rtol=1e-10,
                               atol=0)
    np.testing.assert_allclose(metrics["relacc_mean"], np.mean(relacc), rtol=1e-10, atol=0)
    np.testing.assert_allclose(metrics["agreement_mean"], np.mean(agreement), rtol=1e-10,
                               atol=0)
    np.testing.assert_allclose(metrics["failure_rate"], np.mean(lost), rtol=1e-12, atol=0)
    # no std of an exact value; the sampled values it replaces are kept beside it
    assert metrics["exact"] and "mse_std" not in metrics and "relacc_std" not in metrics
    assert metrics["mc_mse_mean"] == sampled["mse_mean"]
    assert metrics["rmse_mean"] == sampled["rmse_mean"]


# ----------------------------------------------------------------- metric pooling
def _result(rmse, relacc, agreement, recovered):
    rmse = np.asarray(rmse, float)
    return lc.MonteCarloResult(rmse ** 2, rmse, np.asarray(recovered, float),
                               np.zeros(rmse.shape, int), np.asarray(relacc, float),
                               np.asarray(agreement, float))


def test_pool_concatenates_trials_across_batches():
    pooled = table1.pool([_result([1.0, 3.0], [1.0, 0.5], [1.0, 0.0], [1, 1]),
                          _result([5.0], [np.nan], [0.5], [0.5])])
    assert pooled["values"] == 3
    np.testing.assert_allclose(pooled["rmse_mean"], 3.0, rtol=1e-12, atol=0)
    np.testing.assert_allclose(pooled["rmse_std"], np.sqrt(8 / 3), rtol=1e-12, atol=0)
    # the headline is the loss E[MSE] and its root, not the mean RMSE: sqrt(35/3) > 3
    np.testing.assert_allclose(pooled["mse_mean"], 35 / 3, rtol=1e-12, atol=0)
    np.testing.assert_allclose(pooled["root_mean_mse"], np.sqrt(35 / 3), rtol=1e-12, atol=0)
    # RelAcc is undefined on a batch where f itself is never right: dropped and counted
    np.testing.assert_allclose(pooled["relacc_mean"], 0.75, rtol=1e-12, atol=0)
    np.testing.assert_allclose(pooled["relacc_std"], 0.25, rtol=1e-12, atol=0)
    assert pooled["relacc_undefined"] == 1
    np.testing.assert_allclose(pooled["agreement_mean"], 0.5, rtol=1e-12, atol=0)
    np.testing.assert_allclose(pooled["failure_rate"], 1 / 3, rtol=1e-12, atol=0)


# ----------------------------------------------------------------- smoke runs
def test_configs_keep_the_demo_comparable():
    # the demo's rows use the cpu config's trials and batches; its two experiments share
    # one trained model
    demo, cpu = configs.TABLE1["demo"], configs.TABLE1["cpu"]
    assert all(getattr(demo, k) == getattr(cpu, k)
               for k in ("trials", "batches", "cal_trials", "seed"))
    assert configs.ERROR_VS_N["demo"].train == demo.train


@pytest.mark.parametrize("registry", ["TABLE1", "ERROR_VS_N", "PROBABILISTIC", "ADVERSARIAL",
                                      "LATENCY", "TUNING"])
def test_configs_are_hashable_and_their_mappings_immutable(registry):
    for config in getattr(configs, registry).values():
        assert hash(config) == hash(dataclasses.replace(config))
        for field in dataclasses.fields(config):
            value = getattr(config, field.name)
            if isinstance(value, dict):
                with pytest.raises(TypeError, match="immutable"):
                    value["extra"] = 1


def test_configs_are_written_as_lists_and_objects():
    written = json.loads(json.dumps(dataclasses.asdict(configs.TUNING["smoke"])))
    assert written["settings"] == {"sincos": [[10, 4, 3]], "lenet5": [[10, 4, 3]]}
    assert written["functions"] == ["sincos", "lenet5"]


def test_experiments_do_not_import_each_other():
    # each experiment is its own command line; what they share lives in experiments._common
    folder = Path(error_vs_n.__file__).parent
    experiments = {p.stem for p in folder.glob("*.py")
                   if not p.stem.startswith("_") and p.stem != "configs"}
    assert {"table1", "error_vs_n", "probabilistic", "tuning", "demo"} <= experiments
    for name in experiments:
        imported = set()
        for node in ast.walk(ast.parse((folder / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "experiments":
                imported |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.removeprefix("experiments."))
            elif isinstance(node, ast.Import):
                imported |= {a.name.removeprefix("experiments.") for a in node.names}
        assert not imported & experiments, f"experiments.{name} imports {imported & experiments}"


def test_error_vs_n_smoke(tmp_path, caplog):
    # the synthetic f only: LeNet-5's path is the one table1's smoke test already runs
    with jax.log_compiles(), caplog.at_level(logging.WARNING):
        rows, fitted = error_vs_n.main(["--smoke", "--functions", "synthetic",
                                        "--out", str(tmp_path)])
    # one bucket of N (10 and 20, padded to 20): LeTCC's calibration and evaluation share one
    # program, the B-spline's another, BACC has a third
    compiled = sum("compilation of jit(monte_carlo_compiled)" in r.getMessage()
                   for r in caplog.records)
    assert compiled == 3 and {r["N"] for r in rows} == {10, 20}
    out = tmp_path / "error_vs_n"
    config = json.loads((out / "results.json").read_text())["config"]
    assert config["functions"] == ["synthetic"]
    assert (out / "error_vs_n_synthetic.png").stat().st_size > 0
    expected = len(config["N"]) * 2 * len(config["rel_sigmas"]) * 3
    assert len(rows) == expected
    assert all(r["batches"] == config["batches"] for r in rows)
    with (out / "results.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == expected
    assert len(fitted) == expected // len(config["N"])
    for r in rows:
        assert np.isfinite(r["mse_mean"]) and r["mse_mean"] >= 0
        assert (r["sigma"] > 0) == (r["rel_sigma"] > 0)
        assert 0 < r["S"] < r["N"]
        if r["scheme"] in ("letcc", "bspline"):
            assert r["lam_dec"] in config["lam_dec_grid"]
        if r["scheme"] == "bspline":
            assert r["lam_dec"] > 0


def test_theory_rates_follow_the_papers_derivation():
    # log_{1/p}(N)^3 N^-3 for LeTCC (S^3 N^-3 with the longest run for S), log_{1/p}(N)^4
    # N^-2 for BACC: the abstract of arXiv 2502.00645 swaps them; log_10(100) = 2
    np.testing.assert_allclose(probabilistic.theory_rate("letcc", 0.1, 100), 8 * 100.0 ** -3,
                               rtol=1e-12, atol=0)
    np.testing.assert_allclose(probabilistic.theory_rate("bacc", 0.1, [100, 1000]),
                               [16 * 100.0 ** -2, 81 * 1000.0 ** -2], rtol=1e-12, atol=0)


def test_rare_loss_from_needs_every_larger_N_below_the_level():
    rows = [{"function": "f", "p": 0.1, "scheme": "uncoded", "N": N, "mse_mean": 1.0,
             "failure_rate": rate} for N, rate in ((10, 0.5), (20, 1e-4), (40, 0.1), (80, 1e-3),
                                                   (160, 1e-9))]
    rows += [{**r, "p": 0.3, "failure_rate": 0.2 if r["N"] == 160 else 0.0} for r in rows]
    assert probabilistic.rare_loss_from(rows) == {("f", 0.1): 160}
    assert probabilistic.rare_loss_from(rows, level=0.01) == {("f", 0.1): 80}


def test_probabilistic_smoke(tmp_path):
    rows, fitted = probabilistic.main(["--smoke", "--out", str(tmp_path)])
    out = tmp_path / "probabilistic"
    config = json.loads((out / "results.json").read_text())["config"]
    expected = len(config["functions"]) * len(config["N"]) * len(config["p"]) * 3
    assert len(rows) == expected
    with (out / "results.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == expected
    assert (out / "probabilistic_synthetic.png").stat().st_size > 0
    assert "| synthetic | 0.3 |" in (out / "table.md").read_text()
    assert len(fitted) == expected // len(config["N"])
    by = {(r["N"], r["p"], r["scheme"]): r for r in rows}
    for r in rows:
        assert np.isfinite(r["mse_mean"]) and r["mse_mean"] >= 0
        assert 0 <= r["failure_rate"] <= 1
        assert (r["lam_dec"] in config["lam_dec_grid"]) == (r["scheme"] == "letcc")
        assert r["exact"] == (r["scheme"] == "uncoded")
    # Replication is exact: (1/K) sum_k p^r_k ||f(x_k) - fallback||^2 over the evaluation
    # batches, with the fallback f's mean over the calibration batches.
    f, X_cal, X_eval = batched_inputs("synthetic", config["K"], config["batches"],
                                      config["seed"])
    gap = np.sum((np.asarray(jax.vmap(jax.vmap(f))(X_eval))
                  - np.asarray(calibration_mean(f, X_cal))) ** 2, axis=-1)  # (batches, K)
    for N in config["N"]:
        replicas = np.bincount(np.arange(N) % config["K"], minlength=config["K"])
        for p in config["p"]:
            r = by[(N, p, "uncoded")]
            np.testing.assert_allclose(r["mse_mean"], np.mean(np.float32(p) ** replicas * gap),
                                       rtol=1e-4, atol=0)
            np.testing.assert_allclose(r["failure_rate"],
                                       1 - np.prod(1 - np.float32(p) ** replicas),
                                       rtol=1e-4, atol=0)
            assert r["trials"] is None and r["mse_std"] is None
        # more stragglers cannot help on the same uniform draws
        assert by[(N, 0.3, "bacc")]["mse_mean"] >= by[(N, 0.1, "bacc")]["mse_mean"]


EXPERIMENTS = ["table1", "error_vs_n", "tuning"]


def _never_runs(*args, **kwargs):
    raise AssertionError("the experiment ran before its command line was checked")


def _experiment(name, monkeypatch):
    module = importlib.import_module(f"experiments.{name}")
    monkeypatch.setattr(module, "run", _never_runs)
    return module


def _unwritable_outs(tmp_path):
    """--out values whose results folder cannot be created: a file as --out, and a file
    where the experiment's own folder should go."""
    (tmp_path / "a_file").write_text("")
    (tmp_path / "taken").mkdir()
    for name in EXPERIMENTS + ["demo"]:
        (tmp_path / "taken" / name).write_text("")
    return [tmp_path / "a_file", tmp_path / "taken"]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_unwritable_out_stops_before_the_run(tmp_path, monkeypatch, capsys, name):
    module = _experiment(name, monkeypatch)
    for out in _unwritable_outs(tmp_path):
        with pytest.raises(SystemExit) as info:
            module.main(["--smoke", "--untrained", "--out", str(out)])
        assert info.value.code == 2
        message = capsys.readouterr().err
        assert f"--out {out}: cannot write results to {out / name}" in message


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="needs a user whom file permissions bind (not root)")
def test_read_only_out_stops_before_the_run(tmp_path, monkeypatch, capsys):
    module = _experiment("table1", monkeypatch)
    (tmp_path / "ro").mkdir(mode=0o500)
    with pytest.raises(SystemExit):
        module.main(["--smoke", "--out", str(tmp_path / "ro")])
    assert "Permission denied" in capsys.readouterr().err


@pytest.mark.parametrize("flags", [["--synthetic", "--smoke"], ["--smoke", "--untrained"],
                                   ["--smoke"]])
def test_demo_checks_out_before_training(tmp_path, monkeypatch, capsys, flags):
    for step in ("model_function", "run_experiment", "synthetic_table"):
        monkeypatch.setattr(demo, step, _never_runs)
    for out in _unwritable_outs(tmp_path):
        with pytest.raises(SystemExit) as info:
            demo.main([*flags, "--out", str(out)])
        assert info.value.code == 2
        assert f"--out {out}: cannot write results to {out / 'demo'}" in capsys.readouterr().err


#: Every command line, the folder under --out it writes to at --smoke, and its OUTPUTS entry
#: (the demo's experiments write into <--out>/demo/<experiment>).
CLIS = [(name, name, name) for name in ("adversarial", "error_vs_n", "ordering", "probabilistic",
                                        "regimes", "reliability", "structured", "table1",
                                        "tuning")]
CLIS += [("latency", "latency/smoke", "latency"), ("regime_map", "regime_map", "regime_map"),
         ("demo", "demo/table1", "table1"), ("demo", "demo/error_vs_n", "error_vs_n"),
         ("demo", "demo/synthetic", "synthetic")]


def _written_names(module) -> set[str]:
    """The file names an experiment's source spells out, its f-strings' fields as "*"."""
    names = set()
    for node in ast.walk(ast.parse(Path(module.__file__).read_text())):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "*" for v in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        else:
            continue
        if re.fullmatch(r"[\w*.-]+\.(png|pdf|svg|json|csv|md|npz|npy|txt)", text):
            names.add(text)
    if any(isinstance(n, ast.Name) and n.id == "write_results"
           for n in ast.walk(ast.parse(Path(module.__file__).read_text()))):
        names |= {"results.json", "results.csv"}
    return names


def test_outputs_name_every_file_an_experiment_writes():
    from experiments._io import OUTPUTS

    folder = Path(error_vs_n.__file__).parent
    modules = {p.stem for p in folder.glob("*.py") if not p.stem.startswith("_")} - {"configs"}
    assert modules == {name for name, _, _ in CLIS}
    for name in modules:
        patterns = OUTPUTS["synthetic" if name == "demo" else name]
        named = _written_names(importlib.import_module(f"experiments.{name}"))
        for written in named - {"goog.npz"}:  # structured reads matplotlib's sample data
            assert any(fnmatch.fnmatchcase(written, p) for p in patterns), (name, written)


@pytest.mark.parametrize("name, folder, outputs", CLIS, ids=[c[1] for c in CLIS])
def test_every_output_is_checked_before_the_run(tmp_path, monkeypatch, capsys, name, folder,
                                                outputs):
    from experiments._io import OUTPUTS

    module = _experiment(name, monkeypatch) if name not in ("demo", "regime_map") else (
        importlib.import_module(f"experiments.{name}"))
    for step in ("model_function", "run_experiment", "synthetic_table", "load_rows"):
        if hasattr(module, step):
            monkeypatch.setattr(module, step, _never_runs)
    flags = [] if name == "regime_map" else ["--smoke", "--untrained"]
    flags += ["--synthetic"] if outputs == "synthetic" else []
    for pattern in OUTPUTS[outputs]:
        taken = tmp_path / folder / pattern.replace("*", "lenet5")
        taken.mkdir(parents=True)
        with pytest.raises(SystemExit) as info:
            module.main([*flags, "--out", str(tmp_path)])
        assert info.value.code == 2
        assert f"--out {tmp_path}: cannot write results to {tmp_path / folder}: {taken} is a " \
               "folder, not a file" in capsys.readouterr().err
        taken.rmdir()


def test_output_dir_probe_leaves_no_file(tmp_path):
    from experiments._io import output_dir

    assert output_dir("table1", tmp_path / "new" / "deep") == tmp_path / "new" / "deep" / "table1"
    assert not any((tmp_path / "new" / "deep" / "table1").iterdir())


@pytest.mark.parametrize("name, flags, message", [
    ("table1", ["--config", "nope"], "invalid choice: 'nope'"),
    ("table1", ["--config", "smoke"], "invalid choice: 'smoke'"),  # smoke is --smoke
    ("error_vs_n", ["--functions", "resnet"], "invalid choice: 'resnet'"),
    ("tuning", ["--smoke", "--functions", "tanh_net"],
     "--functions: the smoke config has no settings or batches for tanh_net"),
    ("tuning", ["--out", ""], "--out must name a folder"),
    ("table1", ["--smoke", "--trials", "3"], "unrecognized arguments: --trials 3"),
    ("table1", ["--smoke", "--config", "paper"],
     "argument --config: not allowed with argument --smoke"),
    ("error_vs_n", ["--config", "cpu", "--smoke"],
     "argument --smoke: not allowed with argument --config"),
])
def test_bad_options_are_usage_errors(tmp_path, monkeypatch, capsys, name, flags, message):
    module = _experiment(name, monkeypatch)
    with pytest.raises(SystemExit) as info:
        module.main(["--out", str(tmp_path), *flags])
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing created either


def test_experiments_name_a_damaged_data_file(tmp_path, monkeypatch):
    from experiments._common import load_data

    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (folder / name).write_bytes(b"")
    monkeypatch.setenv("LETCC_DATA", str(tmp_path))
    with pytest.raises(SystemExit, match="cannot be read: .*train-images-idx3-ubyte is empty"):
        load_data("fashion_mnist")


@pytest.mark.parametrize("flags, name", [([], "cpu"), (["--config", "paper"], "paper"),
                                         (["--smoke"], "smoke")])
def test_the_config_is_cpu_unless_chosen(tmp_path, flags, name):
    from experiments._io import parse_experiment_args

    config, _ = parse_experiment_args([*flags, "--out", str(tmp_path)], "table1", "table 1",
                                      configs.TABLE1, untrained_help="no training")
    assert config.name == name


def test_buckets_group_sizes_within_the_ratio():
    from experiments._common import buckets

    N = (10, 16, 25, 40, 63, 100, 160, 250, 400, 630, 1000)
    assert buckets(N, 2.6) == [(10, 16, 25), (40, 63, 100), (160, 250, 400), (630, 1000)]
    assert buckets((20, 10, 40), 1.0) == [(10,), (20,), (40,)]
    assert buckets(N, 1000.0) == [N]


def test_table1_pads_the_settings_of_one_K_within_the_ratio():
    settings = ((30, 20, 6), (40, 20, 10), (20, 5, 6), (100, 20, 30), (500, 20, 100))
    assert table1.padding(settings, 4.0) == {(30, 20, 6): 100, (40, 20, 10): 100,
                                             (100, 20, 30): 100, (20, 5, 6): None,
                                             (500, 20, 100): None}
    assert set(table1.padding(settings, 1.0).values()) == {None}


def test_table1_setting_padded_is_the_setting_alone(monkeypatch):
    """A Table 1 setting simulated padded to a larger N (its programs shared with the other
    settings of its K) gives the unpadded numbers: the same straggler draws, losses and
    chosen lam_dec. (LeTCC and replication, whose paths differ from the other codes': the
    searched lambda, replication's exact loss. worst_stragglers on padded schemes:
    test_stack.)"""
    monkeypatch.setattr(table1, "SCHEMES", ["letcc", "uncoded"])
    rng = np.random.default_rng(0)
    images = rng.random((12, 2, 2, 1))
    split = CalibrationSplit(images[:3], np.zeros(3, np.int32), images[3:9],
                             rng.integers(0, 3, 6).astype(np.int32), np.arange(3),
                             np.arange(3, 9))
    f = random_tanh_network(jax.random.key(1), d=4, m=3)
    config = dataclasses.replace(configs.TABLE1["smoke"], trials=6, batches=2, cal_trials=4)
    fallback = calibration_mean(f, table1.flat(split.x_cal))
    key = jax.random.key(2)
    alone = table1.run_setting(f, split, 7, 3, 2, config, key, fallback)
    padded = table1.run_setting(f, split, 7, 3, 2, config, key, fallback, padded_to=10)
    assert [r["scheme"] for r in padded] == [r["scheme"] for r in alone]
    for a, p in zip(alone, padded):
        assert p.keys() == a.keys()
        for name, value in a.items():
            if isinstance(value, float):
                np.testing.assert_allclose(p[name], value, rtol=1e-9, atol=1e-12,
                                           err_msg=f"{a['scheme']} {name}")
            else:
                assert p[name] == value, (a["scheme"], name)


def test_padded_sizes_and_the_ends_of_groups():
    assert padded_sizes([25, 30, 40, 60, 500], 2.6) == {25: 60, 30: 60, 40: 60, 60: 60,
                                                         500: None}
    groups = [("a", 20, 60), ("a", 20, 60), ("a", 20, None), ("b", 20, 60), None]
    assert [ends_group(groups, i) for i in range(5)] == [False, True, True, True, True]


def test_output_dir_names_a_broken_link_among_the_outputs(tmp_path):
    from experiments._io import output_dir

    (tmp_path / "tuning").mkdir()
    (tmp_path / "tuning" / "tuning.png").symlink_to(tmp_path / "gone" / "tuning.png")
    with pytest.raises(OSError, match="tuning.png is a broken symbolic link"):
        output_dir("tuning", tmp_path)
