"""Tuned and learned LeTCC against grid-searched LeTCC and BACC, on held-out data.

For every function f, (N, K, S) setting and noise level, each of ``repeats`` independent
trials draws fresh calibration inputs (``batches`` batches of K) and disjoint evaluation
inputs (as many batches of K), then fits on the calibration inputs only:

- LeTCC (grid): lam_enc = 0, lam_dec by Monte Carlo grid search (``letcc_jax.select_lambda``
  on the mean loss over the calibration batches); Chebyshev nodes.
- LeTCC (GCV): lam_dec by generalised cross-validation on one noisy round of calibration
  outputs (noisy settings only; GCV needs noise).
- LeTCC (tuned): alpha, beta, lam_enc, lam_dec by ``letcc_jax.tune`` (Adam on the
  Monte Carlo loss, fresh straggler patterns each step), started from the grid's choice.
- LeTCC + residual: the same, plus a learned (N, K) residual of the encoder matrix.
- BACC: Berrut both ways, nothing to fit.

Every scheme is then scored on the evaluation inputs under the same held-out straggler
patterns and noise draws (a key never used in fitting): MSE = mean over evaluation batches
and patterns of (1/K) sum_k ||f_hat(x_k) - f(x_k)||^2. Tables show mean ± std of that MSE
over the repeats; "tuned/grid" is the per-repeat ratio, mean ± std. Exactly S of N workers
straggle, uniformly at random; noise is N(0, sigma^2) on every worker output with sigma
relative to the RMS of f's outputs.

    python -m experiments.tuning              # cpu config, minutes on two cores
    python -m experiments.tuning --smoke      # seconds
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

import letcc_jax as lc
from experiments._common import load_data, model_function, random_tanh_network, synthetic
from experiments._io import experiment_main, markdown_table, write_results
from experiments.configs import TUNING, TuningConfig

SCHEMES = ["bacc", "grid", "gcv", "tuned", "residual"]
LABELS = {"bacc": "BACC", "grid": "LeTCC (grid)", "gcv": "LeTCC (GCV)",
          "tuned": "LeTCC (tuned)", "residual": "LeTCC + residual"}
LEARN = ("alpha", "beta", "lam_enc", "lam_dec")

METRIC_NOTE = (
    "Held-out MSE = mean over evaluation batches and held-out straggler patterns of "
    "(1/K) Σ_k ||f̂(x_k) − f(x_k)||²; mean ± std over independent repeats (fresh "
    "calibration and evaluation inputs, fresh patterns). Exactly S of N workers straggle; "
    "σ is relative to the RMS of f's outputs. tuned/grid: per-repeat ratio of held-out "
    "MSE, mean ± std. ✓: tuned beats grid by more than the larger of the two stds."
)


class Function:
    """A test function f with a way to draw its inputs.

    ``draw(repeat, K, n_cal, n_eval)`` returns disjoint (n_cal, K, d) and (n_eval, K, d)
    batches for one repeat; ``rms`` is the RMS of f's outputs on fixed reference inputs.
    """

    REFERENCE = 10**6  # the repeat index of the reference inputs, never a real repeat

    def __init__(self, name, f, draw):
        self.name, self.f, self.draw = name, f, draw
        reference, _ = draw(self.REFERENCE, 64, 4, 1)
        outputs = jax.vmap(f)(reference.reshape(-1, reference.shape[-1]))
        self.rms = float(jnp.sqrt(jnp.mean(outputs**2)))


def make_function(name: str, seed: int, untrained: bool = False) -> Function:
    key = jax.random.fold_in(jax.random.PRNGKey(seed), sum(map(ord, name)))

    def draw_random(sample, d):
        def draw(repeat, K, n_cal, n_eval):
            X = sample(jax.random.fold_in(key, repeat), ((n_cal + n_eval) * K, d))
            X = X.reshape(n_cal + n_eval, K, d)
            return X[:n_cal], X[n_cal:]
        return draw

    if name == "sincos":  # (sin 3x, tanh 2x) of a 1-D input, x uniform in [-1, 1]
        uniform = functools.partial(jax.random.uniform, minval=-1.0, maxval=1.0)
        return Function(name, synthetic, draw_random(uniform, 1))
    if name == "tanh_net":  # a random two-layer tanh network R^8 -> R^4, Gaussian inputs
        return Function(name, random_tanh_network(key), draw_random(jax.random.normal, 8))
    if name == "lenet5":  # LeNet-5 on Fashion-MNIST test images
        from letcc_jax.zoo.data import calibration_split

        ds = load_data("fashion_mnist")
        f, _ = model_function(name, ds, untrained)

        def draw(repeat, K, n_cal, n_eval):
            split = calibration_split(ds, n_cal * K, n_eval * K, seed=seed + 1000 + repeat)
            return (jnp.asarray(split.x_cal.reshape(n_cal, K, -1)),
                    jnp.asarray(split.x_eval.reshape(n_eval, K, -1)))

        return Function(name, f, draw)
    raise ValueError(f"unknown function {name!r}; choose sincos, tanh_net or lenet5.")


@functools.cache
def stacked(f, batches: int):
    """f on ``batches`` inputs concatenated, (C d,) -> their outputs concatenated (C m,).

    Coding is linear in every input column, so one round of ``stacked(f, C)`` on the
    (K, C d) side-by-side batches is C rounds at once under one straggler pattern. Cached,
    so that every round reuses one f (compilations are cached per f).
    """

    def f_stacked(x):
        return jax.vmap(f)(x.reshape(batches, -1)).reshape(-1)

    return f_stacked


def gcv_lambda(f, scheme, X_cal, key, stragglers, faults, grid) -> float:
    """lam_dec by GCV on one noisy round of every calibration batch (C, K, d), the batches'
    output columns side by side."""
    C, K, _ = X_cal.shape
    side_by_side = jnp.moveaxis(X_cal, 0, 1).reshape(K, -1)
    round_ = lc.run_coded(stacked(f, C), scheme, side_by_side, key, stragglers=stragglers,
                          faults=faults)
    lam, _ = lc.gcv(scheme, round_.outputs, round_.alive, grid)
    return lam


def run_repeat(fn: Function, N, K, S, rel, repeat, config: TuningConfig, key):
    """Every scheme at one (f, N, K, S, sigma) for one repeat: a list of rows."""
    stragglers = lc.ExactStragglers(S)
    # Noise of sigma 0 is no noise: the same compiled programs serve every noise level.
    faults = (lc.GaussianNoise(rel * fn.rms),)
    batches = config.batches[fn.name]
    X_cal, X_eval = fn.draw(repeat, K, batches, batches)
    k_grid, k_gcv, k_tune, k_eval = jax.random.split(key, 4)
    common = dict(stragglers=stragglers, faults=faults)
    seconds, schemes = {}, {"bacc": lc.bacc(K, N)}

    start = time.perf_counter()
    search = lc.select_lambda(fn.f, lc.letcc(K, N), X_cal, k_grid, trials=config.cal_trials,
                              lam_dec_grid=config.lam_dec_grid, **common)
    schemes["grid"] = search.scheme
    seconds["grid"] = time.perf_counter() - start
    if rel > 0:  # GCV needs noise
        start = time.perf_counter()
        lam = gcv_lambda(fn.f, search.scheme, X_cal, k_gcv, stragglers, faults,
                         [v for v in config.lam_dec_grid if v > 0])
        schemes["gcv"] = search.scheme.replace(lam_dec=jnp.asarray(lam, X_cal.dtype))
        seconds["gcv"] = time.perf_counter() - start
    for name, learn in (("tuned", LEARN), ("residual", LEARN + ("residual",))):
        start = time.perf_counter()
        result = lc.tune(fn.f, search.scheme, X_cal, k_tune, learn=learn,
                         steps=config.steps, trials=config.cal_trials,
                         validation_trials=config.eval_trials, progress=False, **common)
        schemes[name] = result.scheme
        seconds[name] = time.perf_counter() - start

    rows = []
    for name, scheme in schemes.items():
        # one key for every scheme: the same held-out patterns and noise draws
        mse = float(lc.expected_loss(fn.f, scheme, X_eval, k_eval,
                                     trials=config.eval_trials, **common))
        row = {"function": fn.name, "N": N, "K": K, "S": S, "rel_sigma": rel,
               "sigma": rel * fn.rms, "repeat": repeat, "scheme": name, "mse": mse,
               "fit_seconds": round(seconds.get(name, 0.0), 2)}
        if isinstance(scheme, lc.LeTCC):
            row["lam_enc"] = float(scheme.lam_enc)
            row["lam_dec"] = float(scheme.lam_dec)
        rows.append(row)
    return rows


def run(config: TuningConfig, progress=True):
    key = jax.random.PRNGKey(config.seed)
    functions = {}
    jobs = [(name, setting, rel, repeat)
            for name in config.functions for setting in config.settings[name]
            for rel in config.rel_sigmas for repeat in range(config.repeats)]
    rows = []
    bar = tqdm(jobs, desc="tuning experiment", disable=not progress)
    for name, (N, K, S), rel, repeat in bar:
        bar.set_postfix_str(f"{name} N={N} K={K} S={S} σ={rel:g} repeat {repeat}")
        if name not in functions:
            functions[name] = make_function(name, config.seed, config.untrained)
        job_key = jax.random.fold_in(jax.random.fold_in(key, N * 1000 + K), repeat)
        rows += run_repeat(functions[name], N, K, S, rel, repeat, config, job_key)
    return rows


def summarise(rows) -> list[dict]:
    """Mean and std over repeats per (function, N, K, S, sigma, scheme), and the paired
    tuned/grid ratio."""
    groups = {}
    for r in rows:
        groups.setdefault((r["function"], r["N"], r["K"], r["S"], r["rel_sigma"]), {}).setdefault(
            r["scheme"], []).append(r)
    out = []
    for (fn, N, K, S, rel), by_scheme in groups.items():
        entry = {"function": fn, "N": N, "K": K, "S": S, "rel_sigma": rel}
        for name, group in by_scheme.items():
            values = np.array([r["mse"] for r in sorted(group, key=lambda r: r["repeat"])])
            entry[f"{name}_mean"], entry[f"{name}_std"] = float(values.mean()), float(values.std())
            entry[f"{name}_values"] = values.tolist()
        ratio = np.array(entry["tuned_values"]) / np.array(entry["grid_values"])
        entry["tuned_over_grid_mean"], entry["tuned_over_grid_std"] = (float(ratio.mean()),
                                                                       float(ratio.std()))
        entry["tuned_beats_grid"] = bool(entry["grid_mean"] - entry["tuned_mean"]
                                         > max(entry["grid_std"], entry["tuned_std"]))
        out.append(entry)
    return out


def table(summary) -> str:
    header = ["f", "N", "K", "S", "σ/rms"] + [LABELS[s] for s in SCHEMES] + ["tuned/grid"]
    body = []
    for e in summary:
        cells = [f"{e[f'{s}_mean']:.3g} ± {e[f'{s}_std']:.2g}" if f"{s}_mean" in e else "—"
                 for s in SCHEMES]
        mark = " ✓" if e["tuned_beats_grid"] else ""
        ratio = f"{e['tuned_over_grid_mean']:.2f} ± {e['tuned_over_grid_std']:.2f}{mark}"
        body.append([e["function"], e["N"], e["K"], e["S"], f"{e['rel_sigma']:g}"] + cells
                    + [ratio])
    return markdown_table(header, body)


def plot(summary, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(summary) + 2), 4.0))
    width = 0.8 / len(SCHEMES)
    for i, name in enumerate(SCHEMES):
        x = np.arange(len(summary)) + (i - (len(SCHEMES) - 1) / 2) * width
        mean = np.array([e.get(f"{name}_mean", np.nan) for e in summary])
        std = np.array([e.get(f"{name}_std", np.nan) for e in summary])
        ax.bar(x, mean, width, yerr=std, label=LABELS[name], capsize=2)
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(summary)))
    ax.set_xticklabels([f"{e['function']}\nN={e['N']} S={e['S']}\nσ={e['rel_sigma']:g}"
                        for e in summary], fontsize=7)
    ax.set_ylabel("held-out MSE (mean ± std over repeats)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "tuning.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def report(rows, config: TuningConfig, seconds, out):
    """Prints the Markdown table; writes results.json, results.csv, table.md and the figure
    to ``out``. Returns the rows and their summary."""
    summary = summarise(rows)
    text = (f"## Tuned and learned LeTCC ({config.name} config)\n\n{METRIC_NOTE}\n\n"
            f"{table(summary)}\n\nTotal time {seconds:.0f} s.\n")
    print("\n" + text)
    write_results(out, config, rows, seconds=seconds, summary=summary)
    (out / "table.md").write_text(text)
    path = plot(summary, out)
    print(f"wrote {out}/results.json, results.csv, table.md, {path.name}")
    return rows, summary


def main(argv=None):
    """The command line (``--help``); returns the rows and their summary."""
    return experiment_main(
        argv, __name__, TUNING,
        restrict={"--functions": ("functions", ["sincos", "tanh_net", "lenet5"])},
        untrained_help="randomly initialised LeNet-5 (no training, no cache): for tests")


if __name__ == "__main__":
    main()
