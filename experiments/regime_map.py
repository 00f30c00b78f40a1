"""The regime map: which scheme wins, and by how much, by N/K, input structure and straggler
model.

It reads the rows that the experiments ``ordering`` (inputs in random order and ordered by a
chain), ``structured`` (naturally sequential inputs) and ``regimes`` (its ``few_workers``
study, N < K in one round, and its ``systematic`` study, worker points that include the
data nodes) wrote, and compares in every setting (f, input family, K, N, straggler model)
the best coded scheme (LeTCC or BACC, on any of the points a study tried) with replication
(scored exactly; with N < K, in one round), both given the same fallback. A cell of the map pools the
settings of one (input structure, straggler model, N/K):

- factor: the geometric mean over its settings of replication's E[MSE] / the best coded
  E[MSE] (above 1: coding wins, by that factor);
- wins: in how many of its settings the best coded scheme beats replication;
- scheme: the coded scheme that is best most often.

"ordered" uses the nearest-neighbour chain (the default of ``letcc_jax.order_inputs``), so
the map shows what a user gets without choosing among orders; "sequential" uses the data's
own order (a shuffled sequence, ``structured``'s control, is left out). Replication is
plain replication with the fallback; ``structured``'s replication that interpolates a lost
input from its neighbours is a baseline of its own, compared on its page.

    python -m experiments.regime_map                  # reads results/, writes results/regime_map/
    python -m experiments.regime_map --results DIR    # the experiments' outputs under DIR

Run the experiments first (``python -m experiments.ordering``, ``python -m
experiments.structured``, ``python -m experiments.regimes``); a missing one leaves its part
of the map empty, with a note.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from experiments._io import checked_output_dir, markdown_table, write_json

SOURCES = ("ordering", "structured", "regimes")
#: The studies of ``regimes`` that the map reads (the others vary f or add noise).
REGIME_STUDIES = ("few_workers", "systematic")
STRUCTURES = ("random", "ordered", "sequential")
STRAGGLERS = {"exact": "S = 0.2N at random", "worst": "worst S = 0.2N",
              "bernoulli": "independent, p = 0.2"}
CODED = ("letcc", "bacc")
NAMES = {"letcc": "LeTCC", "bacc": "BACC", "uncoded": "replication"}
#: The order a user gets by default, standing for "ordered".
DEFAULT_ORDER = "nearest_neighbour"
#: What identifies one setting besides its structure and scheme.
SETTING = ("experiment", "study", "f", "family", "K", "N", "stragglers")


def load_rows(results: Path) -> tuple[list[dict], list[str]]:
    """The rows of every source experiment found under ``results``, and notes on the ones
    missing."""
    rows, notes = [], []
    for name in SOURCES:
        path = results / name / "results.json"
        if not path.is_file():
            notes.append(f"no {path}: run python -m experiments.{name} first")
            continue
        rows += [dict(row, experiment=row.get("experiment", name))
                 for row in json.loads(path.read_text())["rows"]
                 if name != "regimes" or row.get("study") in REGIME_STUDIES]
    return rows, notes


def _setting(row) -> tuple:
    return tuple(row.get(key) for key in SETTING)


def _structure(row) -> str | None:
    """The map's structure of a coded row, or None for orders the map leaves out."""
    structure = row.get("structure")
    if structure == "ordered" and row.get("order_method") != DEFAULT_ORDER:
        return None
    if structure == "sequential" and row.get("order_method") != "given":
        return None  # a sequence shuffled: a control of its own experiment, not a map row
    return structure if structure in STRUCTURES else None


def compare(rows: list[dict]) -> list[dict]:
    """One record per (setting, structure): the best coded scheme's loss against
    replication's in the same setting."""
    replication = {_setting(r): r["mse"] for r in rows if r.get("scheme") == "uncoded"}
    coded = defaultdict(dict)
    for row in rows:
        structure = _structure(row)
        if row.get("scheme") in CODED and structure is not None and np.isfinite(row["mse"]):
            variant = (row["scheme"], row.get("points"))
            coded[_setting(row), structure][variant] = row["mse"]
    out = []
    for (setting, structure), losses in coded.items():
        if setting not in replication:
            continue
        best = min(losses, key=losses.get)
        fields = dict(zip(SETTING, setting))
        out.append({**fields, "structure": structure,
                    "ratio": fields["N"] / fields["K"], "best_coded": best[0],
                    "points": best[1],
                    "coded_mse": losses[best], "uncoded_mse": replication[setting],
                    "factor": replication[setting] / losses[best]})
    return out


def cells(records: list[dict]) -> dict:
    """(structure, stragglers, ratio) -> the cell's factor, wins, count and usual scheme."""
    groups = defaultdict(list)
    for rec in records:
        groups[rec["structure"], rec["stragglers"], round(rec["ratio"], 2)].append(rec)
    out = {}
    for key, group in groups.items():
        factors = np.array([r["factor"] for r in group])
        schemes = [r["best_coded"] for r in group]
        out[key] = {"factor": float(np.exp(np.mean(np.log(factors)))),
                    "wins": int(np.sum(factors > 1)), "count": len(group),
                    "scheme": max(set(schemes), key=schemes.count)}
    return out


def _label(cell) -> str:
    factor = cell["factor"]
    who = NAMES[cell["scheme"]] if factor > 1 else "replication"
    size = factor if factor > 1 else 1 / factor
    return f"{who} {size:.3g}x ({cell['wins']}/{cell['count']})"


def table(grid: dict) -> str:
    ratios = sorted({r for _, _, r in grid})
    body = []
    for stragglers in STRAGGLERS:
        for structure in STRUCTURES:
            if any((structure, stragglers, r) in grid for r in ratios):
                body.append([STRAGGLERS[stragglers], structure]
                            + [_label(grid[structure, stragglers, r])
                               if (structure, stragglers, r) in grid else "" for r in ratios])
    return markdown_table(["stragglers", "inputs"] + [f"N/K = {r:g}" for r in ratios], body)


def _factor_text(factor: float) -> str:
    """A factor of at least 1 as a short label: 1.6x, 12x, 1900x."""
    return f"{factor:.2g}x" if factor < 100 else f"{factor:.0f}x"


def plot(grid: dict, path: Path) -> None:
    """One heatmap per straggler model, stacked: structures x N/K, coloured by
    log10(replication / best coded) (blue: coding wins), labelled with the winner, the
    factor and the wins per setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ratios = sorted({r for _, _, r in grid})
    panels = [s for s in STRAGGLERS if any(key[1] == s for key in grid)]
    fig, axes = plt.subplots(len(panels), 1, figsize=(1.05 * len(ratios) + 2.4,
                                                      1.95 * len(panels) + 0.8),
                             squeeze=False, sharex=True)
    values = [math.log10(c["factor"]) for c in grid.values()]
    limit = max(1.0, max(abs(v) for v in values))
    short = {"letcc": "LeTCC", "bacc": "BACC"}
    for ax, stragglers in zip(axes[:, 0], panels):
        image = np.full((len(STRUCTURES), len(ratios)), np.nan)
        for i, structure in enumerate(STRUCTURES):
            for j, ratio in enumerate(ratios):
                cell = grid.get((structure, stragglers, ratio))
                if cell is None:
                    continue
                value = math.log10(cell["factor"])
                image[i, j] = value
                who = short[cell["scheme"]] if cell["factor"] > 1 else "repl."
                size = cell["factor"] if cell["factor"] > 1 else 1 / cell["factor"]
                ax.text(j, i, f"{who}\n{_factor_text(size)}\n{cell['wins']}/{cell['count']}",
                        ha="center", va="center", fontsize=7.5,
                        color="white" if abs(value) > 0.55 * limit else "black")
        shown = ax.imshow(image, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
        ax.set_xticks(range(len(ratios)), [f"{r:g}" for r in ratios])
        ax.set_yticks(range(len(STRUCTURES)), STRUCTURES)
        ax.set_title(STRAGGLERS[stragglers], fontsize=10)
    axes[-1, 0].set_xlabel("N/K")
    fig.colorbar(shown, ax=axes[:, 0].tolist(), shrink=0.7,
                 label="log10(replication E[MSE] / best coded E[MSE])")
    fig.suptitle("Which scheme wins: blue = coding, red = replication\n"
                 "(winner, factor, settings it wins / settings)", fontsize=10)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results",
                        help="folder holding the experiments' outputs (default: results)")
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    out = checked_output_dir(parser, "regime_map", args.out)
    rows, notes = load_rows(Path(args.results))
    for note in notes:
        print(note)
    records = compare(rows)
    if not records:
        parser.exit(1, "regime_map: no setting has both a coded scheme and replication; run "
                       "the experiments first.\n")
    grid = cells(records)
    text = table(grid)
    print(text)
    write_json(out / "results.json", {
        "sources": [s for s in SOURCES if (Path(args.results) / s / "results.json").is_file()],
        "notes": notes, "records": records,
        "cells": [{"structure": s, "stragglers": g, "ratio": r, **c}
                  for (s, g, r), c in sorted(grid.items())]})
    (out / "table.md").write_text(text + "\n")
    plot(grid, out / "regime_map.png")
    print(f"wrote {out}/results.json, table.md and regime_map.png")


if __name__ == "__main__":
    main()
