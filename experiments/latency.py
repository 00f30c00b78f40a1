"""Latency against accuracy on real Dask workers: decoded error against p50 and p99 latency.

Every round is a real round on a local Dask cluster (``letcc_jax.workers.DaskBackend``,
worker processes): each of the N workers starts late by an injected service time drawn from
a heavy-tailed law of the straggler literature (``WorkerFaults.shifted_exponential``: shift
plus an exponential tail; ``WorkerFaults.pareto``), then computes f. In a round LeTCC, BACC
and replication (worker n computes f(x_{n mod K})) each run once, in a rotating order, on
the same inputs and the same delay draws (common random numbers), and each waits for every
worker. ``workers.decode_at_deadlines`` then replays the recorded arrivals under each
deadline:

  - LeTCC and BACC: decode from the results that arrived by the deadline; the round ends
    at min(deadline, last arrival).
  - replication: keep the first replica of each input; the round ends once every input has
    one, or at the deadline, and an input without one is lost (estimated as 0).
  - wait-for-all: replication that waits for all N workers (exact; one point).
  - LeTCC stopping at a tolerance (``workers.decode_at_tolerances``, lam_dec = 0): the
    master stops at the first arrival after which every estimate's 95% interval
    half-width, calibrated on the calibration rounds (split conformal over their deadline
    replays, ``letcc_jax.Calibration.from_rounds``), is within the tolerance. The tolerances
    are the calibration rounds' median widest half-width at each deadline, so each sits
    near a deadline's accuracy; reported with the share of rounds that met the tolerance
    and the promise-kept rate, the share of estimates within it.

Deadlines are quantiles of the arrival times pooled over calibration rounds (LeTCC rounds
with their own inputs and delay draws), so they sit between the fast and the slow workers
of this machine, Dask's own dispatch overhead included. LeTCC's lam_dec is chosen per
deadline from a small grid on the same calibration rounds (lam_enc = 0); evaluation
rounds are disjoint from them. Latency = seconds from dispatching the tasks until the
master stops waiting (decoding excluded). Per (f, law, scheme, deadline): mean ± std over
rounds of MSE = (1/K) sum_k ||f_hat(x_k) - f(x_k)||^2 (lost inputs count as 0), p50 and p99
of the latency over rounds (linear interpolation between order statistics: with tens of
rounds, p99 is close to the slowest round), and the share of rounds that lost an input.
Also reported: the dispatch overhead, each worker's arrival minus its injected delay
(scheduling, transfer, f itself, and whatever else the machine runs meanwhile).

    python -m experiments.latency                           # cpu: K=8, N=40, minutes
    python -m experiments.latency --config low_redundancy   # K=8, N=16
    python -m experiments.latency --smoke                   # seconds

Results go to results/latency/ (cpu) or results/latency/<config>/ (the others).
"""

from __future__ import annotations

import dataclasses
import logging
import math

import jax
import numpy as np
from tqdm.auto import tqdm

import letcc_jax as lc
from experiments._common import load_data, model_function, synthetic
from experiments._io import (
    environment,
    experiment_main,
    markdown_table,
    write_csv,
    write_json,
)
from experiments.configs import LATENCY, LatencyConfig
from letcc_jax import workers

#: The schemes of the figure, in legend order; wait-for-all is replication's round read
#: without a deadline or early stop.
SCHEMES = ("letcc", "letcc_tolerance", "bacc", "replication", "wait_for_all")
NAMES = {"letcc": "LeTCC", "letcc_tolerance": "LeTCC, stop at tolerance", "bacc": "BACC",
         "replication": "replication (first replica)", "wait_for_all": "wait-for-all"}
#: The coverage of the stopping rule's intervals.
LEVEL = 0.95
FUNCTIONS = ("synthetic", "lenet5")


def law_label(law: str, a: float, b: float) -> str:
    if law == "shifted_exponential":
        return f"shifted exp. (shift {a * 1e3:g} ms, mean tail {1e3 / b:g} ms)"
    return f"Pareto (scale {a * 1e3:g} ms, shape {b:g})"


def draw_delays(law: str, a: float, b: float, N: int, seed) -> workers.WorkerFaults:
    """One round's per-worker service times."""
    rng = np.random.default_rng(seed)
    if law == "shifted_exponential":
        return workers.WorkerFaults.shifted_exponential(N, a, b, seed=rng)
    return workers.WorkerFaults.pareto(N, a, b, seed=rng)


def inputs(name: str, config: LatencyConfig):
    """(f, X_cal, X_eval): disjoint inputs, (cal_rounds, K, d) and (rounds, K, d) float32."""
    K, C, R = config.K, config.cal_rounds, config.rounds
    if name == "synthetic":
        rng = np.random.default_rng([config.seed, 0])
        X = rng.uniform(-1.0, 1.0, (C + R, K, 1)).astype(np.float32)
        return synthetic, X[:C], X[C:]
    from letcc_jax.zoo.data import calibration_split

    ds = load_data("fashion_mnist")
    split = calibration_split(ds, C * K, R * K, seed=config.seed)
    f, _ = model_function(name, ds, config.untrained)
    return f, *(np.asarray(a, np.float32).reshape(n, K, -1)
                for a, n in ((split.x_cal, C), (split.x_eval, R)))


def mse(estimate, truth) -> np.ndarray:
    """(..., K, m) estimates against (K, m) truth: (...,) MSE in float64."""
    err = np.asarray(estimate, np.float64) - np.asarray(truth, np.float64)
    return np.mean(np.sum(err ** 2, axis=-1), axis=-1)


def calibrate(dask, f, X_cal, truth_cal, law, config: LatencyConfig, seed):
    """(deadlines (D+1,) s, lam_dec index (D+1,) into the grid, calibration MSE (G, D+1),
    the stopping rule's ``lc.Calibration`` at ``LEVEL`` and its tolerances (T,))."""
    schemes = [lc.letcc(config.K, config.N, lam_dec=lam) for lam in config.lam_dec_grid]
    results = [dask.run(f, schemes[0], X, faults=draw_delays(*law, config.N, [*seed, c]))
               for c, X in enumerate(X_cal)]
    arrivals = np.concatenate([r.timings.arrival_s for r in results])
    deadlines = np.append(np.quantile(arrivals[np.isfinite(arrivals)], config.deadline_quantiles),
                          math.inf)
    cal = np.array([[mse(workers.decode_at_deadlines(s, r, deadlines).estimate, t)
                     for r, t in zip(results, truth_cal)] for s in schemes]).mean(axis=1)
    calibration, tolerances = stopping_rule(schemes[0], results, truth_cal, deadlines)
    return deadlines, np.argmin(cal, axis=0), cal, calibration, tolerances


def stopping_rule(scheme, results, truth_cal, deadlines):
    """The stopping rule's calibration and tolerances from the calibration rounds: the
    posterior of every round at every deadline (what the master held then) against the
    truth gives the split-conformal quantile at ``LEVEL``; the tolerances are the median
    over rounds of the widest calibrated half-width at each deadline (finite ones,
    distinct, descending)."""
    # a fallback: a deadline that holds too few results gives an infinite std, not an error
    scheme = scheme.replace(fallback=np.zeros(np.shape(truth_cal)[-1], np.float32))
    posterior = jax.jit(jax.vmap(scheme.posterior, in_axes=(None, 0)))  # every deadline at once
    posts = [posterior(r.outputs, r.used & (np.nan_to_num(r.timings.arrival_s, nan=np.inf)
                                            <= np.asarray(deadlines)[:, None]))
             for r in results]
    estimate = np.stack([np.asarray(p.estimate) for p in posts])  # (rounds, D+1, K, m)
    std = np.stack([np.asarray(p.std) for p in posts])
    calibration = lc.Calibration.from_rounds(estimate, std, np.asarray(truth_cal)[:, None],
                                             (LEVEL,))
    widest = np.max(float(calibration.quantile(LEVEL)) * std, axis=(-2, -1))  # (rounds, D+1)
    medians = np.median(np.where(np.isfinite(widest), widest, np.nan), axis=0)
    tolerances = np.unique(medians[np.isfinite(medians) & (medians > 0)])[::-1]
    return calibration, tolerances


def evaluate(dask, f, X_eval, truth_eval, law, deadlines, lam_index, stopping,
             config: LatencyConfig, seed) -> tuple[dict, np.ndarray]:
    """(per scheme, per-round arrays (rounds, D+1), or (rounds, T) for the tolerances:
    latency_s, mse, lost, survivors, and for the stopping rule met and kept; and every
    worker's arrival minus its injected delay, the dispatch overhead). ``stopping``: the
    stopping rule's (calibration, tolerances)."""
    K, N = config.K, config.N
    letcc = {i: lc.letcc(K, N, lam_dec=config.lam_dec_grid[i]) for i in set(lam_index.tolist())}
    ran = {"letcc": letcc[lam_index[0]], "bacc": lc.bacc(K, N), "uncoded": lc.uncoded(K, N)}
    order = list(ran)
    out = {s: {k: [] for k in ("latency_s", "mse", "lost", "survivors")} for s in SCHEMES}
    out["letcc_tolerance"].update(met=[], kept=[])
    calibration, tolerances = stopping
    plain = lc.letcc(K, N)  # the stopping rule's decoder: lam_dec = 0
    overhead = []
    D = deadlines.size
    for r, (X, truth) in enumerate(zip(X_eval, truth_eval)):
        faults = draw_delays(*law, N, [*seed, r])
        shift = r % len(order)  # rotate who runs first in a round
        results = {s: dask.run(f, ran[s], X, faults=faults) for s in order[shift:] + order[:shift]}
        injected = np.array([faults.delay[n] for n in range(N)])
        overhead += [res.timings.arrival_s - injected for res in results.values()]
        replays = {
            "letcc": {i: workers.decode_at_deadlines(s, results["letcc"], deadlines)
                      for i, s in letcc.items()},
            "bacc": workers.decode_at_deadlines(ran["bacc"], results["bacc"], deadlines),
            "replication": workers.decode_at_deadlines(ran["uncoded"], results["uncoded"],
                                                       deadlines, policy="first_replica"),
            "wait_for_all": workers.decode_at_deadlines(ran["uncoded"], results["uncoded"],
                                                        [math.inf]),
        }
        # LeTCC: at each deadline, the decoder with the lam_dec calibration chose for it
        replays["letcc"] = workers.DeadlineDecode(*(
            np.stack([getattr(replays["letcc"][lam_index[d]], field)[d] for d in range(D)])
            for field in workers.DeadlineDecode._fields))
        stop = workers.decode_at_tolerances(plain, results["letcc"], tolerances, level=LEVEL,
                                            calibration=calibration)
        replays["letcc_tolerance"] = stop
        out["letcc_tolerance"]["met"].append(stop.met)
        out["letcc_tolerance"]["kept"].append(stop.promise_kept(truth))
        for s, rep in replays.items():
            out[s]["latency_s"].append(rep.latency_s)
            out[s]["mse"].append(mse(rep.estimate, truth))
            out[s]["lost"].append(~rep.recovered.all(axis=-1))
            out[s]["survivors"].append(rep.used.sum(axis=-1))
    per_round = {s: {k: np.asarray(v) for k, v in d.items()} for s, d in out.items()}
    return per_round, np.concatenate(overhead)


def summarize(per_round: dict, deadlines, quantiles, lam_index, tolerances, common: dict,
              config: LatencyConfig) -> list[dict]:
    rows = []
    for scheme in SCHEMES:
        data = per_round[scheme]
        for d in range(data["mse"].shape[1]):
            is_all = scheme == "wait_for_all"
            lat, err = data["latency_s"][:, d], data["mse"][:, d]
            extra = {}
            if scheme == "letcc_tolerance":  # no deadline: a tolerance per point
                extra = {"tolerance": float(tolerances[d]),
                         "met_share": float(data["met"][:, d].mean()),
                         "promise_kept": float(data["kept"][:, d].mean())}
            rows.append({
                **common, "scheme": scheme,
                "deadline_quantile": (None if is_all or scheme == "letcc_tolerance"
                                      or d == len(quantiles) else quantiles[d]),
                "deadline_s": (math.inf if is_all or scheme == "letcc_tolerance"
                               else float(deadlines[d])),
                "lam_dec": (config.lam_dec_grid[lam_index[d]] if scheme == "letcc"
                            else 0.0 if scheme == "letcc_tolerance" else None),
                **extra,
                "mse_mean": float(err.mean()), "mse_std": float(err.std()),
                "latency_p50_s": float(np.percentile(lat, 50)),
                "latency_p99_s": float(np.percentile(lat, 99)),
                "latency_mean_s": float(lat.mean()),
                "lost_share": float(data["lost"][:, d].mean()),
                "survivors_mean": float(data["survivors"][:, d].mean()),
                "rounds": int(err.size),
            })
    return rows


def run(config: LatencyConfig, progress: bool = True):
    """(rows, per_round, calibration): the summary rows, the per-round arrays and, per
    (f, law), the deadlines, lam_dec choices and calibration losses."""
    rows, per_round, calibration = [], {}, {}
    jobs = [(fi, di) for fi in range(len(config.functions))
            for di in range(len(config.distributions))]
    with workers.DaskBackend(n_workers=config.n_workers, threads_per_worker=1,
                             seed=config.seed, silence_logs=logging.CRITICAL) as dask:
        loaded = {}
        for fi, di in tqdm(jobs, desc="(f, law)", disable=not progress):
            fn, law = config.functions[fi], config.distributions[di]
            if fn not in loaded:
                f, X_cal, X_eval = inputs(fn, config)
                exact = jax.jit(jax.vmap(jax.vmap(f)))  # f on every input of every round
                loaded[fn] = f, X_cal, X_eval, np.asarray(exact(X_cal)), np.asarray(exact(X_eval))
                for scheme in (lc.letcc, lc.bacc, lc.uncoded):  # workers compile f
                    dask.run(f, scheme(config.K, config.N), X_cal[0])
            f, X_cal, X_eval, truth_cal, truth_eval = loaded[fn]
            deadlines, lam_index, cal, calibration_q, tolerances = calibrate(
                dask, f, X_cal, truth_cal, law, config, [config.seed, fi, di, 0])
            data, overhead = evaluate(dask, f, X_eval, truth_eval, law, deadlines, lam_index,
                                      (calibration_q, tolerances), config,
                                      [config.seed, fi, di, 1])
            common = {"function": fn, "law": law[0], "law_a": law[1], "law_b": law[2],
                      "K": config.K, "N": config.N}
            rows += summarize(data, deadlines, config.deadline_quantiles, lam_index,
                              tolerances, common, config)
            key = f"{fn}/{law[0]}"
            per_round[key] = {s: {k: v.tolist() for k, v in d.items()} for s, d in data.items()}
            calibration[key] = {"deadlines_s": deadlines.tolist(),
                                "lam_dec": [config.lam_dec_grid[i] for i in lam_index],
                                "cal_mse": cal.tolist(),
                                "tolerances": tolerances.tolist(),
                                "conformal_quantile": float(np.asarray(
                                    calibration_q.quantiles)[0]),
                                "gaussian_coverage": float(np.asarray(
                                    calibration_q.uncalibrated_coverage)[0]),
                                # arrival minus injected delay, every worker of every round
                                "overhead_s": dict(zip(
                                    ("p10", "p50", "p90", "p99"),
                                    np.nanpercentile(overhead, [10, 50, 90, 99]).tolist()))}
    return rows, per_round, calibration


def curves(rows) -> dict:
    """{(function, law, scheme): rows in increasing deadline}."""
    out = {}
    for r in rows:
        out.setdefault((r["function"], r["law"], r["scheme"]), []).append(r)
    return {k: sorted(v, key=lambda r: (r["deadline_s"], -r.get("tolerance", 0.0)))
            for k, v in out.items()}


STYLE = {"letcc": ("C0", "o", "-"), "letcc_tolerance": ("C4", "D", ":"),
         "bacc": ("C1", "s", "--"),
         "replication": ("C2", "^", "-."), "wait_for_all": ("k", "*", "")}


def plot(rows, config: LatencyConfig, path):
    """Per f (rows of panels) and law: mean MSE against p50 and against p99 latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = curves(rows)
    laws = config.distributions
    fig, axes = plt.subplots(len(config.functions), 2 * len(laws), squeeze=False,
                             figsize=(4.2 * 2 * len(laws), 3.6 * len(config.functions)))
    for i, fn in enumerate(config.functions):
        # Exact schemes differ from f only by rounding (replicas averaged): draw everything
        # far below the coded schemes' errors at one floor, so the axis shows those errors.
        coded = [r["mse_mean"] for r in rows if r["function"] == fn and r["mse_mean"] > 0
                 and r["scheme"] in ("letcc", "bacc")]
        floor = min(coded) / 30 if coded else 1e-12
        for j, law in enumerate(laws):
            for k, q in enumerate(("p50", "p99")):
                ax = axes[i, 2 * j + k]
                for scheme in SCHEMES:
                    pts = data.get((fn, law[0], scheme), [])
                    x = np.array([r[f"latency_{q}_s"] for r in pts]) * 1e3
                    y = np.array([r["mse_mean"] for r in pts])
                    color, marker, line = STYLE[scheme]
                    exact = y < floor
                    ax.plot(x, np.where(exact, floor, y), color=color, marker=marker,
                            linestyle=line or "none", ms=8 if scheme == "wait_for_all" else 4,
                            label=NAMES[scheme])
                    ax.plot(x[exact], np.full(exact.sum(), floor), "v", color=color, ms=7,
                            mfc="none")
                ax.set_yscale("log")
                ax.set_ylim(bottom=floor / 2)
                ax.set(title=f"{fn}: {law_label(*law)}", xlabel=f"{q} latency over rounds (ms)")
                ax.title.set_fontsize(8)
                ax.grid(True, which="both", alpha=0.3)
            axes[i, 2 * j].set_ylabel("mean MSE over rounds")
    axes[0, 0].legend(fontsize=7, loc="best")
    fig.suptitle(f"Error against latency on {config.n_workers} Dask worker processes "
                 f"(K={config.K}, N={config.N}); one point per deadline; hollow ▽ at the bottom edge: "
                 "exact up to rounding (MSE below 1/30 of the smallest coded MSE)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def table(rows) -> str:
    """Per (f, law): one line per scheme and deadline, markdown."""
    body = []
    for r in rows:
        q = r["deadline_quantile"]
        if r["scheme"] == "letcc_tolerance":
            deadline = (f"tolerance {r['tolerance']:.2g} (met {100 * r['met_share']:.0f}%, "
                        f"kept {100 * r['promise_kept']:.0f}%)")
        elif math.isinf(r["deadline_s"]):
            deadline = "none"
        else:
            deadline = f"{r['deadline_s'] * 1e3:.0f} ms (q{q:g})"
        body.append([r["function"], r["law"], NAMES[r["scheme"]], deadline,
                     f"{r['mse_mean']:.2e} ± {r['mse_std']:.1e}",
                     f"{r['latency_p50_s'] * 1e3:.0f}", f"{r['latency_p99_s'] * 1e3:.0f}",
                     f"{100 * r['lost_share']:.0f}%",
                     "" if r["lam_dec"] is None else f"{r['lam_dec']:g}"])
    return markdown_table(["f", "law", "scheme", "deadline", "MSE mean ± std", "p50 ms",
                           "p99 ms", "lost", "lam_dec"], body)


#: Deadlines of the printed table (table.md has all of them); None: no deadline.
PRINTED = (0.3, 0.5, 0.8, 0.95, None)


def report(rows, per_round, calibration, config: LatencyConfig, seconds, out):
    """Prints the table and the Dask overheads; writes results.json, results.csv, table.md
    and the frontier plot to ``out``. Returns the rows."""
    md = table(rows)
    print("\n" + table([r for r in rows if r["deadline_quantile"] in PRINTED
                        and r["scheme"] != "letcc_tolerance"]))
    print("\nLeTCC stopping at a tolerance (calibrated 95% half-widths; met: share of rounds "
          "in which some arrival met it, the others ran to their last arrival; kept: share "
          "of estimates within it):\n")
    print(table([r for r in rows if r["scheme"] == "letcc_tolerance"]))
    print("\nMSE mean ± std over rounds; p50/p99 of the round latency over rounds; lost = share "
          "of rounds where an input got no estimate (estimated as 0). All deadlines: table.md.")
    for key, cal in calibration.items():
        o = cal["overhead_s"]
        print(f"{key}: Dask overhead (arrival − injected delay) p50 {o['p50'] * 1e3:.0f} ms, "
              f"p90 {o['p90'] * 1e3:.0f} ms, p99 {o['p99'] * 1e3:.0f} ms")
    write_json(out / "results.json", {
        "config": dataclasses.asdict(config), "environment": environment(), "seconds": seconds,
        "seeds": "inputs: default_rng([seed, 0]); delays: default_rng([seed, f index, law "
                 "index, 0 (calibration) or 1 (evaluation), round]); dispatch order: "
                 "DaskBackend(seed=seed)",
        "calibration": calibration, "rows": rows, "per_round": per_round})
    write_csv(out / "results.csv", rows)
    (out / "table.md").write_text(md + "\n")
    path = plot(rows, config, out / "latency_frontier.png")
    print(f"latency: {seconds:.0f} s; wrote {out}/results.json, results.csv, table.md, {path.name}")
    return rows


def main(argv=None):
    """The command line (``--help``); returns the rows."""
    return experiment_main(
        argv, __name__, LATENCY,
        restrict={"--functions": ("functions", list(FUNCTIONS))}, per_config=True,
        untrained_help="randomly initialised LeNet-5 (no training, no cache): for tests")


if __name__ == "__main__":
    main()
