"""The regime map from hand-made experiment rows: the factors, the winners, the table and
the figure."""

import json

import numpy as np
import pytest

from experiments import regime_map


def _row(scheme, mse, structure="random", order="random", stragglers="exact", N=30, K=20,
         f="lenet5", experiment="ordering"):
    return {"experiment": experiment, "f": f, "K": K, "N": N, "ratio": N / K,
            "structure": structure, "order_method": order, "stragglers": stragglers,
            "scheme": scheme, "mse": mse, "root_mse": mse**0.5, "relacc": float("nan")}


def _write(root, name, rows):
    (root / name).mkdir(parents=True)
    (root / name / "results.json").write_text(json.dumps({"rows": rows}))


def test_cells_compare_the_best_coded_scheme_with_replication():
    rows = [_row("uncoded", 40.0), _row("letcc", 80.0), _row("bacc", 60.0),  # replication
            _row("letcc", 5.0, "ordered", "nearest_neighbour"),             # LeTCC, 8x
            _row("letcc", 1.0, "ordered", "spectral"),                       # not the default
            _row("uncoded", 10.0, f="vit"), _row("letcc", 20.0, "ordered", "nearest_neighbour",
                                                f="vit")]                    # replication, 2x
    records = regime_map.compare(rows)
    by = {(r["f"], r["structure"]): r for r in records}
    assert by["lenet5", "random"]["best_coded"] == "bacc"
    assert by["lenet5", "random"]["factor"] == pytest.approx(40 / 60)
    assert by["lenet5", "ordered"]["factor"] == pytest.approx(8.0)
    grid = regime_map.cells(records)
    ordered = grid["ordered", "exact", 1.5]
    assert ordered["count"] == 2 and ordered["wins"] == 1
    assert ordered["factor"] == pytest.approx(np.sqrt(8.0 * 0.5))
    assert regime_map._label(grid["random", "exact", 1.5]) == "replication 1.5x (0/1)"


def test_the_command_line_writes_the_map(tmp_path, capsys):
    results = tmp_path / "in"
    _write(results, "ordering", [_row("uncoded", 40.0, stragglers=s) for s in regime_map.STRAGGLERS]
           + [_row("letcc", 4.0, "ordered", "nearest_neighbour", stragglers=s)
              for s in regime_map.STRAGGLERS])
    _write(results, "structured", [_row("uncoded", 9.0, experiment="structured", f="shift"),
                                   _row("letcc", 3.0, "sequential", "given",
                                        experiment="structured", f="shift")])
    regime_map.main(["--results", str(results), "--out", str(tmp_path / "out")])
    out = tmp_path / "out" / "regime_map"
    text = (out / "table.md").read_text()
    assert "LeTCC 10x (1/1)" in text and "LeTCC 3x (1/1)" in text
    assert (out / "regime_map.png").stat().st_size > 10_000
    saved = json.loads((out / "results.json").read_text())
    assert saved["sources"] == ["ordering", "structured"] and len(saved["cells"]) == 4


def test_missing_experiments_are_named(tmp_path):
    with pytest.raises(SystemExit):
        regime_map.main(["--results", str(tmp_path), "--out", str(tmp_path / "out")])
    rows, notes = regime_map.load_rows(tmp_path)
    assert rows == [] and any("experiments.ordering" in n for n in notes)


def test_regimes_rows_enter_by_study_and_point_set(tmp_path):
    def regime(study, scheme, mse, points=None, N=10, order="random"):
        return dict(_row(scheme, mse, "ordered" if order != "random" else "random", order,
                         N=N, experiment="regimes"), study=study, points=points)

    _write(tmp_path, "regimes", [
        regime("few_workers", "uncoded", 50.0), regime("few_workers", "letcc", 10.0),
        regime("systematic", "uncoded", 6.0, N=30),
        regime("systematic", "letcc", 4.0, "chebyshev", N=30),
        regime("systematic", "letcc", 2.0, "systematic", N=30),  # the better point set
        regime("noise", "uncoded", 1.0, N=40), regime("noise", "letcc", 100.0, N=40)])
    rows, _ = regime_map.load_rows(tmp_path)
    assert {r["study"] for r in rows} == {"few_workers", "systematic"}
    by = {r["study"]: r for r in regime_map.compare(rows)}
    assert by["few_workers"]["ratio"] == pytest.approx(0.5)
    assert by["few_workers"]["factor"] == pytest.approx(5.0)
    assert by["systematic"]["points"] == "systematic"
    assert by["systematic"]["factor"] == pytest.approx(3.0)


def test_a_shuffled_sequence_is_not_a_sequential_cell():
    rows = [_row("uncoded", 9.0, "sequential", "given", experiment="structured"),
            _row("uncoded_interp", 1.0, "sequential", "given", experiment="structured"),
            _row("letcc", 3.0, "sequential", "given", experiment="structured"),
            _row("letcc", 90.0, "sequential", "random", experiment="structured")]
    (record,) = regime_map.compare(rows)
    assert record["structure"] == "sequential"
    assert record["factor"] == pytest.approx(3.0)  # plain replication, the given order
