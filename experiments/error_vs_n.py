"""Expected error against N: log-log mean MSE of LeTCC and BACC as the number of workers grows.

K is fixed; the stragglers are either a fixed fraction of N or a fixed count S. Two f: a
smooth synthetic function of a 1-D input (d = 1, f(x) = (sin 3x, tanh 2x)) and LeNet-5 on
Fashion-MNIST images. Worker outputs are noiseless or carry N(0, sigma^2) noise, sigma
relative to the RMS of f on the evaluation inputs. LeTCC's lam_dec is re-tuned for every
(N, S, sigma) by grid search (lam_enc = 0) on the mean loss over ``batches`` calibration
batches of K inputs; the reported error is on as many disjoint evaluation batches. (One
calibration batch of 8 images was not enough: its own approximation error decided, and it
picked lam_dec = 0 where smoothing helped the evaluation images.) MSE per trial =
(1/K) sum_k ||f_hat(x_k) - f(x_k)||^2; the plot shows its mean over straggler draws and
evaluation batches. Both schemes estimate an input they cannot determine by the same
fallback, f's mean output over the calibration inputs (with at least 4 survivors neither
ever needs it here). Replication is not swept: Table 1 and the probabilistic regime score it
exactly. Slopes: least squares of log MSE on log N over the large-N half, shown in the
legend.

Theory (arXiv 2406.00300 v2): noiseless O(S^3 N^-3), noisy O(S^(8/5) N^(-3/5)). That is a
decay in N for a fixed S only; with S = 0.2N the noiseless bound is O(1) and the noisy one
grows. What decays there is the gap: the error is governed by the longest run of
consecutive stragglers in tag order, whose length L is about log(N)/log(1/q) for S = qN,
so the rates drawn for that regime are L^3 N^-3 and L^(8/5) N^(-3/5) with L the exact
expected longest run (``expected_longest_run``); the fixed-S regime keeps S. The bounds
carry unknown constants (f's smoothness, K, the points), so each line is fitted to LeTCC's
curve at one N, the middle one: only its shape is the theory's.

The N are run in buckets of sizes within ``bucket_ratio`` of each other, padded to the
largest (``letcc_jax.stack_schemes``: the padding never answers, and each N draws the
stragglers it would draw alone). Per (f, bucket) LeTCC is one ``letcc_jax.monte_carlo``
sweep over the bucket's N, both straggler counts (S is a leaf of ``ExactStragglers``),
every lam_dec and every sigma, run on the calibration batches to choose lam_dec and then,
with other keys, on the evaluation batches; BACC is one more call with LeTCC's evaluation
keys. Every lam_dec, sigma and scheme therefore sees the same straggler patterns (nested
between the two counts) and standard-normal noise draws: two compiled programs per bucket,
where each N once compiled its own two (a cold run was 2.4 times a warm one).

    python -m experiments.error_vs_n            # cpu config
    python -m experiments.error_vs_n --smoke    # seconds
"""

from __future__ import annotations

import functools
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
    expected_longest_run,
    fit_slope,
    letcc_over_N,
    positive,
)
from experiments._io import experiment_main, write_results
from experiments.configs import ERROR_VS_N, ErrorVsNConfig

NAMES = {"letcc": "LeTCC", "bspline": "B-spline", "bacc": "BACC"}
#: Marker and line style of each scheme's curves.
STYLES = {"letcc": ("o", "-"), "bspline": ("^", (0, (1, 1))), "bacc": ("s", "--")}

#: LeTCC's bound G^a N^b as (a, b), G the straggler gap: S, or the longest straggler run.
RATES = {"noiseless": (3.0, -3.0), "noisy": (1.6, -0.6)}


def theory_gap(regime: str, S: int, longest_run: float) -> float:
    """The G of LeTCC's rate: S for a fixed S; for S = S_fraction N, where S^3 N^-3 does not
    decay, the expected longest run of consecutive stragglers."""
    return float(S) if regime == "S_fixed" else longest_run


def theory_rate(noise: str, N, G) -> np.ndarray:
    """LeTCC's bound up to its constant, G^a N^b (``RATES[noise]``), at N and G (n,) each."""
    a, b = RATES[noise]
    return np.asarray(G, np.float64) ** a * np.asarray(N, np.float64) ** b


def noise_of(rel_sigma: float) -> str:
    """The key of ``RATES`` for a curve's noise level."""
    return "noisy" if rel_sigma > 0 else "noiseless"


def inputs(name, config: ErrorVsNConfig):
    """(f, X_cal, X_eval): disjoint calibration and evaluation inputs, (batches, K, d) each."""
    return batched_inputs(name, config.K, config.batches, config.seed,
                          untrained=config.untrained, train=config.train)


def run_regimes(f, X_cal, X_eval, Ns, S, sigmas, fallback, config: ErrorVsNConfig, key):
    """The schemes at every N of ``Ns`` (B,) (padded to the largest), every straggler
    count of ``S`` (R, B) and every sigma (n,), each with the (m,) ``fallback`` for lost
    inputs: ``{scheme: (best, mse)}`` with ``best`` (R, n, B) the index of the scheme's
    lam_dec on its grid (None for BACC) and per-trial MSE (R, n, B, batches, trials). N and
    the counts are sweeps: one compiled program per scheme for the whole bucket. LeTCC and
    B-splines choose lam_dec on X_cal (B-splines on the grid's positive values)."""
    k_cal, k_eval = jax.random.split(key)
    S = jnp.asarray(S)
    out = {}
    # the bucket's N share one B-spline basis (a static size): the largest N's default
    wide = functools.partial(lc.bspline, n_basis=lc.bspline(config.K, max(Ns)).n_basis)
    for name, factory, grid in (("letcc", lc.letcc, config.lam_dec_grid),
                                ("bspline", wide, positive(config.lam_dec_grid))):
        swept = letcc_over_N(config.K, Ns, fallback, grid, factory)

        def mse(X, key):  # (R, n, B, G, batches, trials); the same shapes, so one program
            return np.asarray(lc.monte_carlo(
                f, swept, X, key, trials=config.trials,
                stragglers=lc.ExactStragglers(S[:, None, :, None]),
                faults=[lc.GaussianNoise(sigmas[:, None, None])]).mse, np.float64)

        best = np.nanargmin(mse(X_cal, k_cal).mean(axis=(-2, -1)), axis=-1)
        R, n, B = best.shape
        index = np.ix_(np.arange(R), np.arange(n), np.arange(B))
        out[name] = (best, mse(X_eval, k_eval)[index + (best,)])
    # the same evaluation key: every scheme sees the same straggler patterns and noise draws
    bacc = lc.monte_carlo(f, lc.stack_schemes([lc.bacc(config.K, N, fallback=fallback)
                                               for N in Ns]),
                          X_eval, k_eval, trials=config.trials,
                          stragglers=lc.ExactStragglers(S[:, None, :]),
                          faults=[lc.GaussianNoise(sigmas[:, None])])
    out["bacc"] = (None, np.asarray(bacc.mse, np.float64))
    return out


def run(config: ErrorVsNConfig, progress=True):
    rows = []
    key = jax.random.PRNGKey(config.seed)
    jobs = [(fn, Ns) for fn in config.functions for Ns in buckets(config.N, config.bucket_ratio)]
    loaded = {}
    for fn, Ns in tqdm(jobs, desc="N buckets", disable=not progress):
        if fn not in loaded:
            f, X_cal, X_eval = inputs(fn, config)
            truth = jax.jit(jax.vmap(f))(X_eval.reshape(-1, X_eval.shape[-1]))
            loaded[fn] = (f, X_cal, X_eval, float(jnp.sqrt(jnp.mean(truth ** 2))),
                          calibration_mean(f, X_cal))
        f, X_cal, X_eval, rms, fallback = loaded[fn]
        # Each bucket compiles its own programs, and each program keeps memory mappings:
        # one process holding all of them runs out (vm.max_map_count), as in table1.
        jax.clear_caches()
        sigmas = jnp.asarray(config.rel_sigmas, jnp.float32) * rms
        start = time.perf_counter()
        # per N: S = S_fraction N and S_fixed, each leaving at least 4 survivors at tiny N
        regimes = {N: {"S_fraction": min(int(round(config.S_fraction * N)), N - 4),
                       "S_fixed": min(config.S_fixed, N - 4)} for N in Ns}
        S = np.array([[regimes[N][r] for N in Ns] for r in ("S_fraction", "S_fixed")])
        results = run_regimes(f, X_cal, X_eval, Ns, S, sigmas, fallback, config,
                              jax.random.fold_in(key, Ns[0]))
        grids = {"letcc": config.lam_dec_grid, "bspline": positive(config.lam_dec_grid)}
        first = len(rows)
        for b, N in enumerate(Ns):
            for at, (regime, count) in enumerate(regimes[N].items()):
                longest = expected_longest_run(N, count)
                for i, rel in enumerate(config.rel_sigmas):
                    common = {"function": fn, "N": N, "K": config.K, "S": count,
                              "regime": regime, "longest_run": longest,
                              "gap": theory_gap(regime, count, longest), "rel_sigma": rel,
                              "sigma": float(sigmas[i]), "trials": config.trials,
                              "batches": config.batches}
                    for scheme, (best, mse) in results.items():
                        lam = None if best is None else grids[scheme][best[at, i, b]]
                        rows.append({**common, "scheme": scheme, "lam_dec": lam,
                                     "mse_mean": float(mse[at, i, b].mean()),
                                     "mse_std": float(mse[at, i, b].std())})
        seconds = round(time.perf_counter() - start, 2)
        for r in rows[first:]:
            r["bucket"], r["seconds_for_bucket"] = list(Ns), seconds
    return rows


def curves(rows):
    """{(function, regime, scheme, rel_sigma): (N, mse, G)}, arrays (n,) in increasing N;
    G is the gap of the theory's rate (``theory_gap``)."""
    out = {}
    for r in rows:
        key = (r["function"], r["regime"], r["scheme"], r["rel_sigma"])
        out.setdefault(key, []).append((r["N"], r["mse_mean"], r["gap"]))
    return {k: tuple(np.array(v) for v in zip(*sorted(pts))) for k, pts in out.items()}


def slopes(rows) -> list[dict]:
    """Fitted slope per curve over the large-N half, and for LeTCC the slope of its rate
    over the same N, with the curve's noise and gap (None for BACC)."""
    return [{"function": k[0], "regime": k[1], "scheme": k[2], "rel_sigma": k[3],
             "slope": fit_slope(N, mse),
             "theory_slope": (fit_slope(N, theory_rate(noise_of(k[3]), N, G))
                              if k[2] == "letcc" else None)}
            for k, (N, mse, G) in curves(rows).items()]


def curve_label(scheme: str, rel_sigma: float, N, mse) -> str:
    """Legend entry of one curve, with its fitted slope: 'LeTCC σ/rms=0 (slope -3.0)'."""
    name = NAMES[scheme]
    return f"{name} σ/rms={rel_sigma:g} (slope {fit_slope(N, mse):.1f})"


def plot(rows, out) -> list:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = curves(rows)
    paths = []
    for fn in dict.fromkeys(k[0] for k in data):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
        for ax, regime in zip(axes, ("S_fraction", "S_fixed")):
            sigmas = sorted({k[3] for k in data if k[0] == fn and k[1] == regime})
            for (f_, reg, scheme, rel), (N, mse, _) in data.items():
                if (f_, reg) != (fn, regime):
                    continue
                marker, line = STYLES[scheme]
                ax.loglog(N, mse, marker=marker, linestyle=line, ms=3,
                          color=plt.cm.viridis(sigmas.index(rel) / max(len(sigmas), 2)),
                          label=curve_label(scheme, rel, N, mse))
            # Each rate through LeTCC's curve of its noise (the noisy one: the largest sigma)
            # at the middle N: the bounds' constants are unknown, only their shapes are given.
            gap = "S" if regime == "S_fixed" else "L"
            for noise, rel in {noise_of(rel): rel for rel in sigmas}.items():
                N, mse, G = data[(fn, regime, "letcc", rel)]
                rate = theory_rate(noise, N, G)
                mid = len(N) // 2
                a, b = RATES[noise]
                ax.loglog(N, mse[mid] * rate / rate[mid], color="grey", lw=0.8,
                          linestyle=":" if noise == "noiseless" else "-.",
                          label=f"{gap}^{a:g} N^{b:g} ({noise} theory, slope "
                                f"{fit_slope(N, rate):.1f})")
            S_note = ("S = fraction of N; L = expected longest straggler run"
                      if regime == "S_fraction" else "S fixed")
            ax.set(title=f"{fn}: {S_note}", xlabel="N (workers)")
            ax.grid(True, which="both", alpha=0.3)
        axes[0].set_ylabel("mean MSE over straggler draws and batches")
        for ax in axes:  # the slopes differ between the panels
            ax.legend(fontsize=6.5, ncol=2, loc="upper right")
        fig.tight_layout()
        path = out / f"error_vs_n_{fn}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def report(rows, config: ErrorVsNConfig, seconds, out):
    """Prints the fitted slopes; writes results.json, results.csv and the plots to ``out``. Returns
    the rows and the fitted slopes."""
    fitted = slopes(rows)
    print("\nSlopes of log mean-MSE vs log N over the large-N half, and LeTCC's rate's over "
          "the same N (G^3 N^-3 noiseless, G^(8/5) N^(-3/5) noisy; G = S at fixed S, the "
          "expected longest straggler run at S = fraction of N):")
    for s in fitted:
        theory = "" if s["theory_slope"] is None else f" (theory {s['theory_slope']:+.2f})"
        print(f"  {s['function']:>9} {s['regime']:>10} {s['scheme']:>7} "
              f"σ/rms={s['rel_sigma']:<6g} slope {s['slope']:+.2f}{theory}")
    write_results(out, config, rows, seconds=seconds, slopes=fitted)
    paths = plot(rows, out)
    print(f"error_vs_n: {seconds:.0f} s; wrote {out}/results.json, results.csv, "
          + ", ".join(p.name for p in paths))
    return rows, fitted


def main(argv=None):
    """The command line (``--help``); returns the rows and the fitted slopes."""
    return experiment_main(
        argv, __name__, ERROR_VS_N,
        restrict={"--functions": ("functions", ["synthetic", "lenet5"])},
        untrained_help="randomly initialised LeNet-5 (no training, no cache): for tests")


if __name__ == "__main__":
    main()
