"""The probabilistic straggler regime: error against N when every worker straggles on its own.

Each of the N workers straggles independently with probability p (``BernoulliStragglers``),
so the number of stragglers is random (mean pN) and no set of them is chosen. K is fixed
and N grows. Moradi and Maddah-Ali (arXiv 2502.00645) bound the expected error in this
regime through the longest run of consecutive stragglers, about log_{1/p}(N) long: in
LeTCC's S^3 N^-3 it takes the place of S, giving O(log^3_{1/p}(N) N^-3); Berrut's O(h)
error, squared, with the run length entering to the 4th power, gives BACC
O(log^4_{1/p}(N) N^-2). The abstract lists the two rates "for BACC and LeTCC ...
respectively", the reverse of its own derivation; the derivation's assignment is drawn
(and our measured slopes agree with it). Each rate is anchored at the measured curve's
middle N (the bounds' constants are unknown), and its slope over the fitted range is
reported next to the measured one (the log factors make an N^-3 look like about N^-2.5
at these N). Replication is scored too, exactly: with K fixed an input is lost only if all
of its r_k (about N/K) replicas straggle, with probability p^r_k, so its loss
E[MSE] = (1/K) sum_k p^r_k ||f(x_k) - fallback||^2 (``letcc_jax.replication_loss``, a
closed form) falls exponentially in N. Monte Carlo would miss it: with 200 draws a loss of
probability 1e-5 is almost never seen, and the mean error came out as float32 round-off
where the exact loss is 1e-3 or more.

The N are run in buckets of sizes within ``bucket_ratio`` of each other, padded to the
largest (``letcc_jax.stack_schemes``: the padding never answers, and each N draws the
stragglers it would draw alone). Per (f, bucket) LeTCC is one ``letcc_jax.monte_carlo``
sweep over the bucket's N, every p and every lam_dec of the grid, on ``batches``
calibration batches of K inputs to choose lam_dec per p and then, with other keys, on as
many disjoint evaluation batches; BACC is one call with LeTCC's
evaluation key, so every lam_dec and both codes see the same straggler draws (one uniform
number per worker, compared with each p). MSE per trial = (1/K) sum_k
||f_hat(x_k) - f(x_k)||^2; every scheme estimates an input it cannot determine by the same
fallback, f's mean output over the calibration inputs. The plot shows the mean over draws
and batches (the exact expectation for replication).

    python -m experiments.probabilistic            # cpu config
    python -m experiments.probabilistic --smoke    # seconds
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

import letcc_jax as lc
from experiments._common import (
    batched_inputs,
    buckets,
    calibration_mean,
    fit_slope,
    letcc_over_N,
    replication_loss_probability,
)
from experiments._io import experiment_main, markdown_table, write_results
from experiments.configs import PROBABILISTIC, ProbabilisticConfig

SCHEMES = ("letcc", "bacc", "uncoded")
NAMES = {"letcc": "LeTCC", "bacc": "BACC", "uncoded": "replication"}
#: The bounds log_{1/p}(N)^a * N^b as (a, b), assigned as arXiv 2502.00645 derives them
#: (its abstract swaps the two).
RATES = {"letcc": (3, -3.0), "bacc": (4, -2.0)}
#: Replication counts as safe from the N where P(a draw loses an input) stays below this.
RARE_LOSS = 1e-3


def theory_rate(scheme: str, p: float, N) -> np.ndarray:
    """The scheme's bound up to its constant: log_{1/p}(N)^a N^b."""
    a, b = RATES[scheme]
    N = np.asarray(N, np.float64)
    return (np.log(N) / np.log(1.0 / p)) ** a * N ** b


def run_point(f, X_cal, X_eval, Ns, fallback, config: ProbabilisticConfig, key):
    """Every scheme at every N of ``Ns`` (B,) (the codes padded to the largest) and every
    p, each with the (m,) ``fallback`` for lost inputs: ``(best, mse, lost)`` with ``best``
    (P, B) the index of LeTCC's lam_dec per p and N; per scheme ``mse``, per-trial MSE
    (P, B, batches, trials) for the codes and replication's exact E[MSE] per batch
    (P, B, batches); and ``lost``, the share of trials that lost an input (P, B), for
    replication its exact probability."""
    k_cal, k_eval = jax.random.split(key)
    ps = jnp.asarray(config.p, jnp.float32)
    swept = letcc_over_N(config.K, Ns, fallback, config.lam_dec_grid)

    def letcc(X, key):  # (P, B, G, batches, trials); calibration and evaluation share it
        return lc.monte_carlo(f, swept, X, key, trials=config.trials,
                              stragglers=lc.BernoulliStragglers(ps[:, None, None]))

    best = np.nanargmin(np.asarray(letcc(X_cal, k_cal).mse, np.float64).mean(axis=(-2, -1)),
                        axis=-1)
    chosen = letcc(X_eval, k_eval)
    bacc = lc.monte_carlo(f, lc.stack_schemes([lc.bacc(config.K, N, fallback=fallback)
                                               for N in Ns]),
                          X_eval, k_eval, trials=config.trials,
                          stragglers=lc.BernoulliStragglers(ps[:, None]))
    picked = np.ix_(np.arange(best.shape[0]), np.arange(best.shape[1])) + (best,)
    mse = {"letcc": np.asarray(chosen.mse, np.float64)[picked],
           "bacc": np.asarray(bacc.mse, np.float64)}
    lost = {"letcc": np.mean(np.asarray(chosen.recovered)[picked] < 1.0, axis=(-2, -1)),
            "bacc": np.mean(np.asarray(bacc.recovered) < 1.0, axis=(-2, -1))}
    stragglers = lc.BernoulliStragglers(ps)
    replications = [lc.uncoded(config.K, N, fallback=fallback) for N in Ns]
    mse["uncoded"] = np.stack([np.asarray(lc.replication_loss(
        f, replication, X_eval, stragglers=stragglers).mse, np.float64)
        for replication in replications], axis=1)
    lost["uncoded"] = np.stack([replication_loss_probability(replication, stragglers)
                                for replication in replications], axis=1)
    return best, mse, lost


def run(config: ProbabilisticConfig, progress=True) -> list[dict]:
    rows = []
    key = jax.random.PRNGKey(config.seed)
    jobs = [(fn, Ns) for fn in config.functions for Ns in buckets(config.N, config.bucket_ratio)]
    loaded = {}
    for fn, Ns in tqdm(jobs, desc="N buckets", disable=not progress):
        if fn not in loaded:
            f, X_cal, X_eval = batched_inputs(fn, config.K, config.batches, config.seed,
                                              untrained=config.untrained, train=config.train)
            loaded[fn] = f, X_cal, X_eval, calibration_mean(f, X_cal)
        f, X_cal, X_eval, fallback = loaded[fn]
        # Each bucket compiles its own programs, and each program keeps memory mappings:
        # one process holding all of them runs out (vm.max_map_count), as in table1.
        jax.clear_caches()
        start = time.perf_counter()
        best, mse, lost = run_point(f, X_cal, X_eval, Ns, fallback, config,
                                    jax.random.fold_in(key, Ns[0]))
        seconds = round(time.perf_counter() - start, 2)
        for b, N in enumerate(Ns):
            for i, p in enumerate(config.p):
                for name in SCHEMES:
                    values = mse[name][i, b]
                    exact = name == "uncoded"
                    rows.append({
                        "function": fn, "N": N, "K": config.K, "p": p, "scheme": name,
                        "lam_dec": config.lam_dec_grid[best[i, b]] if name == "letcc" else None,
                        "exact": exact, "mse_mean": float(values.mean()),
                        "mse_std": None if exact else float(values.std()),  # exact: no draws
                        "failure_rate": float(lost[name][i, b]),
                        "trials": None if exact else config.trials, "batches": config.batches,
                        "bucket": list(Ns), "seconds_for_bucket": seconds,
                    })
    return rows


def curves(rows) -> dict:
    """{(function, p, scheme): (N array, mse array)} in increasing N."""
    out = {}
    for r in rows:
        out.setdefault((r["function"], r["p"], r["scheme"]), []).append((r["N"], r["mse_mean"]))
    return {k: tuple(np.array(v) for v in zip(*sorted(pts))) for k, pts in out.items()}


def rare_loss_from(rows, level: float = RARE_LOSS) -> dict:
    """{(function, p): the smallest N from which replication's probability of losing an
    input is below ``level`` at that N and every larger N} (absent when it is not at the
    largest N)."""
    out = {}
    for fn, p, scheme in curves(rows):
        if scheme != "uncoded":
            continue
        lost = sorted((r["N"], r["failure_rate"] >= level) for r in rows
                      if (r["function"], r["p"], r["scheme"]) == (fn, p, scheme))
        first = None
        for N, failed in lost:
            first = None if failed else (first or N)
        if first is not None:
            out[(fn, p)] = first
    return out


def slopes(rows) -> list[dict]:
    """Fitted slope per curve over the large-N half, and the theory rate's slope over the
    same N (None for replication, whose exact loss falls exponentially, as p^(N/K))."""
    out = []
    for (fn, p, scheme), (N, mse) in curves(rows).items():
        theory = fit_slope(N, theory_rate(scheme, p, N)) if scheme in RATES else None
        out.append({"function": fn, "p": p, "scheme": scheme, "slope": fit_slope(N, mse),
                    "theory_slope": theory, "mse_at_max_N": float(mse[-1]),
                    "max_N": int(N[-1])})
    return out


def plot(rows, out) -> list:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = curves(rows)
    safe = rare_loss_from(rows)
    colors = {"letcc": "tab:blue", "bacc": "tab:orange", "uncoded": "tab:green"}
    markers = {"letcc": "o", "bacc": "s", "uncoded": "^"}
    paths = []
    for fn in dict.fromkeys(k[0] for k in data):
        ps = sorted({k[1] for k in data if k[0] == fn})
        fig, axes = plt.subplots(1, len(ps), figsize=(5.5 * len(ps), 4.2), squeeze=False)
        for ax, p in zip(axes[0], ps):
            for scheme in SCHEMES:
                N, mse = data[(fn, p, scheme)]
                shown = mse > 0
                if scheme == "uncoded":  # exponential in N: no power-law slope
                    first = safe.get((fn, p))
                    note = "exact" + (f"; P(loss) < {RARE_LOSS:g} from N = {first}" if first
                                      else "")
                else:
                    note = f"slope {fit_slope(N, mse):.1f}"
                ax.loglog(N[shown], mse[shown], marker=markers[scheme], ms=3,
                          color=colors[scheme], label=f"{NAMES[scheme]} ({note})")
                if scheme in RATES:
                    mid = len(N) // 2
                    rate = theory_rate(scheme, p, N)
                    a, b = RATES[scheme]
                    ax.loglog(N, mse[mid] * rate / rate[mid], color=colors[scheme], lw=0.9,
                              linestyle=":", label=f"log$^{a}$N·N$^{{{b:g}}}$ theory "
                              f"(slope {fit_slope(N, rate):.1f})")
            ax.set(title=f"{fn}: each worker straggles w.p. p = {p:g}", xlabel="N (workers)")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7, loc="lower left")
        axes[0][0].set_ylabel("E[MSE] (codes: mean over draws and batches)")
        fig.tight_layout()
        path = out / f"probabilistic_{fn}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def table(fitted) -> str:
    """Markdown: per (f, p), each code's fitted slope (theory) and each scheme's MSE at the
    largest N (replication's exact; 0 where it falls below float32's range, ~1e-38)."""
    body = []
    for fn, p in dict.fromkeys((s["function"], s["p"]) for s in fitted):
        cells = []
        for scheme in SCHEMES:
            s = next(s for s in fitted if (s["function"], s["p"], s["scheme"]) == (fn, p, scheme))
            slope = ("exact" if s["theory_slope"] is None
                     else f"{s['slope']:.2f} (theory {s['theory_slope']:.1f})")
            cells.append(f"{slope}; {s['mse_at_max_N']:.2g}")
        body.append([fn, p] + cells)
    return markdown_table(["f", "p"] + [f"{NAMES[s]}: slope; MSE at max N" for s in SCHEMES],
                          body)


def report(rows, config: ProbabilisticConfig, seconds, out):
    """Prints the slopes; writes results.json, results.csv, table.md and the plots. Returns the
    rows and the fitted slopes."""
    fitted = slopes(rows)
    text = table(fitted)
    print("\nFitted slopes of log mean-MSE vs log N over the large-N half, with the theory "
          "rate's slope over the same N (LeTCC log^3 N N^-3, BACC log^4 N N^-2), and the mean "
          "MSE at the largest N (replication: its exact E[MSE]):\n\n" + text)
    write_results(out, config, rows, seconds=seconds, slopes=fitted)
    (out / "table.md").write_text(text + "\n")
    paths = plot(rows, out)
    print(f"probabilistic: {seconds:.0f} s; wrote {out}/results.json, results.csv, table.md, "
          + ", ".join(p.name for p in paths))
    return rows, fitted


def main(argv=None):
    """The command line (``--help``); returns the rows and the fitted slopes."""
    return experiment_main(
        argv, __name__, PROBABILISTIC,
        restrict={"--functions": ("functions", ["synthetic", "lenet5"])},
        untrained_help="randomly initialised LeNet-5 (no training, no cache): for tests")


if __name__ == "__main__":
    main()
