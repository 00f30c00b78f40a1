"""Expected error against N: log-log mean MSE of LeTCC and BACC as the number of workers grows.

K is fixed; the stragglers are either a fixed fraction of N or a fixed count S. Two f: a
smooth synthetic function of a 1-D input (d = 1, f(x) = (sin 3x, tanh 2x)) and LeNet-5 on
Fashion-MNIST images. Worker outputs are noiseless or carry N(0, sigma^2) noise, sigma
relative to the RMS of f on the evaluation inputs. LeTCC's lam_dec is re-tuned for every
(N, S, sigma) by grid search (lam_enc = 0) on the mean loss over ``cal_batches`` calibration
batches of K inputs; the reported error is on ``batches`` disjoint evaluation batches. (One
calibration batch of 8 images was not enough: its own approximation error decided, and it
picked lam_dec = 0 where smoothing helped the evaluation images.) MSE per trial =
(1/K) sum_k ||f_hat(x_k) - f(x_k)||^2; the plot shows its mean over straggler draws and
evaluation batches. Slopes: least squares of log MSE on log N over the large-N half, shown in
the legend. Theory (arXiv 2406.00300 v2): noiseless O(S^3 N^-3), noisy O(S^(8/5) N^(-3/5)).

    python -m experiments.error_vs_n            # cpu config
    python -m experiments.error_vs_n --smoke    # seconds

Implementation note: ``letcc_jax.select_lambda`` / ``monte_carlo`` take the straggler model
and the noise as static arguments, which here would mean one compilation per (N, S, sigma)
(about 10 s each on two cores, hundreds of them). Instead f runs once per N on each
calibration and evaluation batch, and a few jitted functions per N evaluate every lam_dec on
the grid, every straggler mask and every noise draw, with masks, noise and sigma as data: the
same loss and the same common-random-numbers grid search, without recompiling.
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

import letcc_jax as lc
from experiments._io import (environment, output_dir, parse_experiment_args, print_config,
                             write_csv, write_json)
from experiments.configs import ERROR_VS_N
from experiments.table1 import load_data, model_function

THEORY = {"noiseless": -3.0, "noisy": -0.6}


def synthetic(x):
    """A smooth function of a 1-D input: (d,) = (1,) -> (2,)."""
    return jnp.stack([jnp.sin(3.0 * x[0]), jnp.tanh(2.0 * x[0])])


def fit_slope(N, mse) -> float:
    """Least-squares slope of log(mse) against log(N) over the large-N half of the points."""
    N, mse = np.asarray(N, np.float64), np.asarray(mse, np.float64)
    keep = (N >= np.median(N)) & np.isfinite(mse) & (mse > 0)
    if keep.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(N[keep]), np.log(mse[keep]), 1)[0])


@functools.partial(jax.jit, static_argnames="f")
def _outputs(f, schemes, X):
    """f on each scheme's coded inputs ((N, m) each) and on the inputs themselves (K, m)."""
    return tuple(jax.vmap(f)(s.encode(X)) for s in schemes), jax.vmap(f)(X)


@jax.jit
def _grid_mse(scheme, Y, truth, masks, noise, sigma, lams):
    """(G, T) per-trial MSE for every lam_dec in ``lams`` (G,), mask (T, N), noise (T, N, m)."""

    def one(lam, alive, z):
        est = scheme.replace(lam_dec=lam).decode(Y + sigma * z, alive)
        return lc.mse(est, truth)

    per_trial = jax.vmap(one, in_axes=(None, 0, 0))
    return jax.vmap(lambda lam: per_trial(lam, masks, noise))(lams)


@jax.jit
def _trial_mse(schemes, Ys, truth, masks, noise, sigma):
    """(T,) per-trial MSE of each scheme as it is (LeTCC at its chosen lam_dec, BACC)."""

    def per_trial(scheme, Y):
        return jax.vmap(lambda alive, z: lc.mse(scheme.decode(Y + sigma * z, alive), truth))(
            masks, noise)

    return tuple(per_trial(s, Y) for s, Y in zip(schemes, Ys))


def straggler_masks(rng, trials: int, N: int, S: int) -> np.ndarray:
    """(trials, N) masks, each with exactly S uniformly random stragglers (False)."""
    ranks = np.argsort(rng.random((trials, N)), axis=1)
    return ranks >= S


def inputs(name, config, untrained):
    """(f, X_cal, X_eval): calibration (cal_batches, K, d) and evaluation (batches, K, d)
    inputs, disjoint."""
    K, n_cal, n_eval = config["K"], config["cal_batches"], config["batches"]
    if name == "synthetic":
        keys = jax.random.split(jax.random.PRNGKey(config["seed"]))
        return (synthetic,
                *(jax.random.uniform(k, (n, K, 1), minval=-1.0, maxval=1.0)
                  for k, n in zip(keys, (n_cal, n_eval))))
    from letcc_jax.zoo.data import calibration_split

    ds = load_data("fashion_mnist")
    split = calibration_split(ds, n_cal * K, n_eval * K, seed=config["seed"])
    f, _ = model_function(name, ds, untrained, train=config.get("train"))
    batched = lambda a, n: jnp.asarray(a.reshape(n, K, -1))  # noqa: E731
    return f, batched(split.x_cal, n_cal), batched(split.x_eval, n_eval)


def run(config, untrained=False, progress=True):
    rows = []
    rng = np.random.default_rng(config["seed"])
    lams = jnp.asarray(config["lam_dec_grid"], jnp.float32)
    T, K = config["trials"], config["K"]
    jobs = [(fn, N) for fn in config["functions"] for N in config["N"]]
    loaded = {}
    for fn, N in tqdm(jobs, desc="N", disable=not progress):
        if fn not in loaded:
            loaded[fn] = inputs(fn, config, untrained)
        f, X_cal, X_eval = loaded[fn]
        start = time.perf_counter()
        letcc, bacc = lc.letcc(K, N), lc.bacc(K, N)
        # [((Y_letcc, Y_bacc), truth)] per batch: (N, m), (N, m), (K, m)
        cal = [_outputs(f, (letcc, bacc), X) for X in X_cal]
        ev = [_outputs(f, (letcc, bacc), X) for X in X_eval]
        rms = float(jnp.sqrt(jnp.mean(jnp.stack([t for _, t in ev]) ** 2)))
        m = ev[0][1].shape[1]
        for regime in ("S_fraction", "S_fixed"):
            S = (int(round(config["S_fraction"] * N)) if regime == "S_fraction"
                 else config["S_fixed"])
            S = min(S, N - 4)  # keep at least 4 survivors at tiny N
            cal_masks = jnp.asarray(straggler_masks(rng, config["cal_trials"], N, S))
            masks = jnp.asarray(straggler_masks(rng, T, N, S))
            cal_noise = jnp.asarray(rng.standard_normal((config["cal_trials"], N, m)),
                                    jnp.float32)
            noise = jnp.asarray(rng.standard_normal((T, N, m)), jnp.float32)
            for rel in config["rel_sigmas"]:
                sigma = jnp.float32(rel * rms)
                loss = np.mean([np.asarray(_grid_mse(letcc, Ys[0], truth, cal_masks, cal_noise,
                                                     sigma, lams)).mean(axis=1)
                                for Ys, truth in cal], axis=0)
                best = int(np.nanargmin(loss))
                tuned = letcc.replace(lam_dec=lams[best])
                # the same masks and noise for every evaluation batch and both schemes
                err, err_b = (np.concatenate(e) for e in zip(*(
                    _trial_mse((tuned, bacc), Ys, truth, masks, noise, sigma)
                    for Ys, truth in ev)))
                common = {"function": fn, "N": N, "K": K, "S": S, "regime": regime,
                          "rel_sigma": rel, "sigma": float(sigma), "trials": T,
                          "batches": len(ev)}
                rows.append({**common, "scheme": "letcc",
                             "lam_dec": config["lam_dec_grid"][best],
                             "mse_mean": float(err.mean()), "mse_std": float(err.std())})
                rows.append({**common, "scheme": "bacc", "lam_dec": None,
                             "mse_mean": float(err_b.mean()), "mse_std": float(err_b.std())})
        for r in rows[-4 * len(config["rel_sigmas"]):]:
            r["seconds_for_N"] = round(time.perf_counter() - start, 2)
    return rows


def curves(rows):
    """{(function, regime, scheme, rel_sigma): (N array, mse array)} in increasing N."""
    out = {}
    for r in rows:
        key = (r["function"], r["regime"], r["scheme"], r["rel_sigma"])
        out.setdefault(key, []).append((r["N"], r["mse_mean"]))
    return {k: tuple(np.array(v) for v in zip(*sorted(pts))) for k, pts in out.items()}


def slopes(rows) -> list[dict]:
    return [{"function": k[0], "regime": k[1], "scheme": k[2], "rel_sigma": k[3],
             "slope": fit_slope(N, mse)} for k, (N, mse) in curves(rows).items()]


def curve_label(scheme: str, rel_sigma: float, N, mse) -> str:
    """Legend entry of one curve, with its fitted slope: 'LeTCC σ/rms=0 (slope -3.0)'."""
    name = {"letcc": "LeTCC", "bacc": "BACC"}[scheme]
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
            for (f_, reg, scheme, rel), (N, mse) in data.items():
                if (f_, reg) != (fn, regime):
                    continue
                ax.loglog(N, mse, marker="o" if scheme == "letcc" else "s",
                          color=plt.cm.viridis(sigmas.index(rel) / max(len(sigmas), 2)),
                          linestyle="-" if scheme == "letcc" else "--", ms=3,
                          label=curve_label(scheme, rel, N, mse))
            N_all, mse_ref = data[(fn, regime, "letcc", sigmas[0])]
            anchor = N_all[len(N_all) // 2]
            y0 = mse_ref[len(N_all) // 2]
            grid = np.array([N_all.min(), N_all.max()], float)
            for power, label in ((-3.0, "N^-3 (theory, noiseless)"),
                                 (-0.6, "N^-3/5 (theory, noisy)")):
                ax.loglog(grid, y0 * (grid / anchor) ** power, color="grey", lw=0.8,
                          linestyle=":" if power == -3 else "-.", label=label)
            S_note = "S = fraction of N" if regime == "S_fraction" else "S fixed"
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


def report(rows, config, seconds, out) -> list[dict]:
    """Prints the fitted slopes; writes results.json, results.csv and the plots to ``out``."""
    fitted = slopes(rows)
    print(f"\nSlopes of log mean-MSE vs log N over the large-N half (theory: noiseless "
          f"{THEORY['noiseless']}, noisy {THEORY['noisy']} at fixed S):")
    for s in fitted:
        print(f"  {s['function']:>9} {s['regime']:>10} {s['scheme']:>5} "
              f"σ/rms={s['rel_sigma']:<6g} slope {s['slope']:+.2f}")
    write_json(out / "results.json", {"config": config, "environment": environment(),
                                      "seconds": seconds, "slopes": fitted, "rows": rows})
    write_csv(out / "results.csv", rows)
    paths = plot(rows, out)
    print(f"error_vs_n: {seconds:.0f} s; wrote {out}/results.json, results.csv, "
          + ", ".join(p.name for p in paths))
    return fitted


def main(argv=None):
    args, name, config = parse_experiment_args(
        argv, __doc__.splitlines()[0], ERROR_VS_N, functions=["synthetic", "lenet5"],
        untrained_help="randomly initialised LeNet-5 (no training, no cache): for tests")
    config |= {"name": name, "untrained": args.untrained}
    print_config("error_vs_n", config)
    start = time.perf_counter()
    rows = run(config, untrained=args.untrained)
    fitted = report(rows, config, time.perf_counter() - start, output_dir("error_vs_n", args.out))
    return rows, fitted


if __name__ == "__main__":
    main()
