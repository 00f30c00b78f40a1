"""Table 1: LeTCC against BACC, LCC and uncoded replication on trained image classifiers.

For every model and every (N, K, S) setting, K test images (flattened to (K, d), d = H*W*C)
are coded for N workers, exactly S of which straggle (uniformly random; |F| = N - S answer).
LeTCC's lam_dec is chosen by ``select_lambda`` on a calibration batch drawn disjoint from
the evaluation images (``data.calibration_split``); lam_enc = 0. Every scheme estimates an
input it cannot recover by the same fallback, f's mean output over the calibration images
(not 0: a lost input then costs its spread around the mean, not its norm). Every scheme
then runs ``trials`` straggler draws on each of ``batches`` evaluation batches, and the
per-trial values are pooled over all batches before taking mean and std.

Replication is scored exactly where a closed form exists (``lc.replication_loss``): its
E[MSE], the probability that a draw loses an input, and its expected RelAcc and agreement,
which are linear in the probability p_k that input k loses every replica (a lost input's
argmax is the fallback's). A hundred draws rarely see a loss of small probability, and such
losses dominate replication's loss. Its RMSE per draw (mean ± std), which needs the whole
distribution of the lost set, stays Monte Carlo, over the same draws as the other schemes.

Metrics (per trial, DESIGN.md section 4):
  MSE    = (1/K) sum_k ||f_hat(x_k) - f(x_k)||^2 on the logits, and RMSE = sqrt(MSE);
  RelAcc = acc(argmax f_hat vs labels) / acc(argmax f vs labels);
  Agree  = fraction of k with argmax f_hat(x_k) == argmax f(x_k).
The headline is the paper's loss E[MSE], the mean of the per-trial MSE, and its root
sqrt(E[MSE]) in the logits' units. The mean of the per-trial RMSE (kept beside it) ranks
schemes differently: it weighs a rare large error, such as a lost input, less than the
loss does.

    python -m experiments.table1                  # cpu config (Fashion-MNIST), minutes
    python -m experiments.table1 --config paper   # MNIST / CIFAR-10 / CIFAR-100 files needed
    python -m experiments.table1 --smoke          # seconds
    python -m experiments.table1 --worst-case lenet5 repvgg vit   # every model's worst case
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

import letcc_jax as lc
from experiments._common import (
    SCHEMES,
    calibration_mean,
    ends_group,
    load_data,
    model_function,
    padded_sizes,
    padder,
    pool,
    positive,
    replication_loss_probability,
)
from experiments._io import (
    experiment_main,
    lost_note,
    markdown_table,
    write_results,
)
from experiments.configs import TABLE1, Table1Config
from letcc_jax.zoo.data import calibration_split

NAMES = {"letcc": "LeTCC", "letcc_tuned": "LeTCC tuned", "letcc_bounded": "LeTCC bounded",
         "letcc_clipped": "LeTCC clipped", "bspline": "B-spline", "bacc": "BACC", "lcc": "LCC",
         "uncoded": "uncoded"}
#: Columns of the worst-case table, in order.
WORST_SCHEMES = ("letcc", "letcc_tuned", "letcc_bounded", "letcc_clipped", "bspline", "bacc",
                 "lcc", "uncoded")
#: The schemes whose lam_dec is chosen by ``lc.select_lambda`` on the calibration batch (the
#: B-spline's on the grid's positive values: its penalty must be > 0).
SEARCHED = ("letcc", "bspline")

WORST_NOTE = (
    "Worst case: the S stragglers that maximise the decoding error of each scheme on the "
    "first evaluation batch (letcc_jax.worst_stragglers: exact by enumeration where "
    "C(N, S) <= 20,000, else the best swap local search from the greedy set and the worst "
    "tag-order window, a lower bound marked ≥). Cell: worst-case RMSE (√E[MSE] over the "
    "random straggler draws on the same batch, exact for replication; the ratio of the two). "
    "A lost input is estimated by the fallback (f's mean output on the calibration images). "
    "LeTCC tuned: lam_enc, lam_dec, alpha and beta by letcc_jax.tune from the selected "
    "lam_dec, on the calibration batch. LeTCC bounded: the selected LeTCC's estimates shrunk "
    "toward the fallback by their posterior standard error against the spread of f's "
    "calibration outputs (letcc_jax.BoundedLeTCC); LeTCC clipped: clipped to their range. "
    "The worst stragglers are searched against each decoder."
)

METRIC_NOTE = (
    "Over straggler draws pooled across evaluation batches (trials × batches values per "
    "cell); exactly S of N workers straggle, uniformly at random.\n"
    "MSE = (1/K) Σ_k ||f̂(x_k) − f(x_k)||² on the logits, per draw; the headline is the "
    "paper's loss E[MSE], the mean over draws, with √E[MSE] in the logits' units. "
    "RMSE = √MSE per draw, shown as mean ± std. "
    "RelAcc = acc(argmax f̂ vs labels) / acc(argmax f vs labels); "
    "Agree = share of inputs with argmax f̂ = argmax f. "
    "Every scheme estimates an input it cannot recover by the same fallback, f's mean output "
    "over the calibration images. Uncoded replication is exact, not sampled: E[MSE] by "
    "letcc_jax.replication_loss, 'lost' = the probability that a draw loses at least one "
    "input (all its replicas straggle), and RelAcc and Agree their expectations (no std); "
    "only its RMSE per draw is over the Monte Carlo draws. LeTCC: lam_enc = 0, lam_dec by "
    "select_lambda on a disjoint calibration batch."
)


#: The pooled metrics that replication has in closed form (:func:`exact_replication`).
EXACT = ("mse_mean", "mse_std", "root_mean_mse", "relacc_mean", "relacc_std",
         "agreement_mean", "agreement_std", "failure_rate")


def exact_replication(f, scheme, X, labels, stragglers, sampled: dict):
    """Replication's pooled metrics, in closed form where one exists, on the C evaluation
    batches X (C, K, d) with labels (C, K): ``(metrics, mse)`` with ``mse`` (C,) the exact
    E[MSE] per batch, and ``metrics`` the Monte Carlo pool ``sampled`` (:func:`pool`) with
    its ``EXACT`` entries replaced: E[MSE] and its root, ``failure_rate`` = P(a draw loses
    an input), and the expected RelAcc and agreement (the stds are left out, the sampled
    values kept as ``mc_*``); its RMSE per draw stays sampled.

    Input k is lost with probability p_k (all its replicas straggle) and then estimated by
    the fallback; otherwise exactly. So per batch E[accuracy of argmax f_hat] =
    (1/K) sum_k [(1 - p_k) hit(f(x_k)) + p_k hit(fallback)], and RelAcc divides it by f's
    own accuracy on the batch, a constant (batches where f gets none right are dropped, as
    in :func:`pool`); agreement likewise, with hit = argmax equal to f's.
    """
    loss = lc.replication_loss(f, scheme, X, stragglers=stragglers)
    lost = np.asarray(loss.p_lost, np.float64)  # (K,)
    C, K, d = X.shape
    truth = np.asarray(jax.jit(jax.vmap(f))(X.reshape(C * K, d))).reshape(C, K, -1)
    labels, predicted = np.asarray(labels), truth.argmax(-1)  # (C, K) each
    guess = int(np.argmax(np.asarray(scheme.fallback)))

    def expected(hit, hit_lost):  # (C,) expected share of hits
        return np.mean((1 - lost) * hit + lost * hit_lost, axis=-1)

    accuracy = np.mean(predicted == labels, axis=-1)
    defined = accuracy > 0
    relacc = expected(predicted == labels, guess == labels)[defined] / accuracy[defined]
    mse = np.asarray(loss.mse, np.float64)
    exact = {"mse_mean": float(np.mean(mse)), "root_mean_mse": float(np.sqrt(np.mean(mse))),
             "relacc_mean": float(np.mean(relacc)) if relacc.size else float("nan"),
             "agreement_mean": float(np.mean(expected(1.0, guess == predicted))),
             "failure_rate": float(replication_loss_probability(scheme, stragglers))}
    kept = {k: v for k, v in sampled.items() if k not in EXACT}
    return {**kept, **exact, "exact": True, **{f"mc_{k}": sampled[k] for k in EXACT}}, mse


def flat(images) -> jnp.ndarray:
    return jnp.asarray(images.reshape(images.shape[0], -1))


def run_setting(f, split, N, K, S, config: Table1Config, key, fallback,
                worst_case: bool = False, padded_to: int | None = None,
                tune_padded_to: int | None = None):
    """All schemes at one (N, K, S), each with the (m,) ``fallback`` for lost inputs: rows
    with pooled metrics (replication's exact, :func:`exact_replication`) and LeTCC's chosen
    lam_dec. With ``worst_case``, LeTCC tuned by ``letcc_jax.tune`` joins them, and every
    row gains the worst-case columns of :func:`worst_columns`.

    With ``padded_to``, the simulated schemes are padded to that many workers
    (``Scheme.pad_workers``): settings padded to one N share their compiled programs, and
    every number is the unpadded scheme's (its straggler draws included). Tuning pads to
    ``tune_padded_to`` (the same), and replication's exact loss takes the unpadded scheme."""
    stragglers = lc.ExactStragglers(S)
    k_cal, k_eval = jax.random.split(key)
    X_cal = flat(split.x_cal[:K])
    pad = padder(padded_to)
    letcc = lc.letcc(K, N, fallback=fallback)
    search = lc.select_lambda(
        f, pad(letcc), X_cal, k_cal, lam_dec_grid=config.lam_dec_grid,
        trials=config.cal_trials, stragglers=stragglers,
    )
    letcc = letcc.replace(lam_dec=jnp.asarray(search.scheme.lam_dec))
    bspline = lc.select_lambda(
        # one basis size per padded N (a static field), so that its settings share programs
        f, pad(lc.bspline(K, N, n_basis=lc.bspline(K, padded_to or N).n_basis,
                          fallback=fallback)), X_cal, k_cal,
        lam_dec_grid=positive(config.lam_dec_grid), trials=config.cal_trials,
        stragglers=stragglers,
    ).scheme
    uncoded = lc.make_scheme("uncoded", K, N, fallback=fallback)
    schemes = {"letcc": search.scheme, "bspline": bspline,
               **{n: pad(lc.make_scheme(n, K, N, fallback=fallback)) for n in SCHEMES
                  if n not in SEARCHED}}
    schemes = {n: schemes[n] for n in SCHEMES}  # the columns' order
    if worst_case:
        tuned = lc.tune(f, padder(tune_padded_to)(letcc), X_cal, jax.random.fold_in(k_cal, 1),
                        stragglers=stragglers, steps=config.tune_steps,
                        trials=config.cal_trials, progress=False)
        schemes["letcc_tuned"] = pad(tuned.scheme)
        # Bounded decoders: the calibration images' outputs give the prior around the
        # fallback (their spread) and the clipping range; every scheme keeps one fallback.
        # (prior_std = inf would let the two share one program, but the clipping decoder's
        # own program leaves out the posterior variances it does not need: 3x faster.)
        outputs = jax.vmap(f)(flat(split.x_cal))
        for name, options in (("letcc_bounded", {}), ("letcc_clipped", {"shrink": False,
                                                                          "clip": True})):
            bounded = lc.BoundedLeTCC.from_outputs(search.scheme, outputs, **options)
            schemes[name] = bounded.replace(fallback=fallback)
    X = jnp.stack([flat(split.x_eval[b * K:(b + 1) * K]) for b in range(config.batches)])
    labels = jnp.asarray(split.y_eval[:config.batches * K].reshape(config.batches, K))
    rows = []
    for name, scheme in schemes.items():
        # same key per batch for every scheme: common straggler patterns across schemes
        results = [lc.monte_carlo(f, scheme, X[b], jax.random.fold_in(k_eval, b),
                                  trials=config.trials, stragglers=stragglers,
                                  labels=labels[b])
                   for b in range(config.batches)]
        metrics = pool(results)
        loss = np.mean(np.asarray(results[0].mse, np.float64))  # the worst case's reference
        if name == "uncoded":
            metrics, exact = exact_replication(f, uncoded, X, labels, stragglers, metrics)
            loss = exact[0]
        row = {"N": N, "K": K, "S": S, "F": N - S, "scheme": name, **metrics}
        if name.startswith("letcc") or name in SEARCHED:
            row["lam_dec"] = float(scheme.lam_dec)
        if worst_case:
            row.update(worst_columns(f, scheme, X[0], S, float(np.sqrt(loss)), results[0],
                                     config))
        rows.append(row)
    return rows


def worst_columns(f, scheme, X, S, random_root, random, config: Table1Config) -> dict:
    """The worst S stragglers for ``scheme`` on the inputs X (the first evaluation batch),
    beside the random stragglers' sqrt(E[MSE]) on the same batch (``random_root``) and the
    largest RMSE of their draws (``random``, the batch's MonteCarloResult).
    ``worst_gap`` = worst RMSE / ``random_root``."""
    start = time.perf_counter()
    worst = lc.worst_stragglers(f, scheme, X, S, restarts=config.worst_restarts,
                                max_rounds=config.worst_max_rounds, seed=config.seed)
    rmse = float(np.sqrt(worst.mse))
    return {"worst_rmse": rmse, "worst_mse": float(worst.mse), "worst_exact": worst.exact,
            "worst_stragglers": worst.stragglers.tolist(), "worst_evaluated": worst.evaluated,
            "random_root_mean_mse_batch0": random_root,
            "random_rmse_max_batch0": float(np.max(np.asarray(random.rmse, np.float64))),
            "worst_gap": rmse / random_root if random_root > 0 else float("inf"),
            "worst_seconds": round(time.perf_counter() - start, 2)}


def padding(settings, ratio: float) -> dict:
    """(N, K, S) -> the N its schemes are padded to: per K, the N in runs within ``ratio``
    of their smallest (``buckets``) share the largest, and one compiled program per scheme;
    None for a setting alone in its run."""
    sizes = {K: padded_sizes([N for N, k, _ in settings if k == K], ratio)
             for _, K, _ in settings}
    return {(N, K, S): sizes[K][N] for N, K, S in settings}


def run(config: Table1Config, progress=True):
    rows, models = [], {}
    key = jax.random.PRNGKey(config.seed)
    K_max = max(K for _, K, _ in config.settings)
    # every dataset first: a missing file fails before any model is trained
    datasets = {name: load_data(name) for name in dict.fromkeys(config.models.values())}
    padded = padding(config.settings, config.bucket_ratio)
    tune_padded = padding(config.settings, config.tune_bucket_ratio)
    # the settings of one padded N run one after the other (their programs shared); the
    # rows come back in the config's order
    order = sorted(config.settings, key=lambda s: (s[1], padded[s] or s[0], s[0]))
    jobs = [(m, s) for m in config.models for s in order]
    shared = [(m, s[1], padded[s]) for m, s in jobs]
    bar = tqdm(jobs, desc="settings", disable=not progress)
    for i, (model, (N, K, S)) in enumerate(bar):
        bar.set_postfix_str(f"{model} N={N} K={K} S={S}")
        if model not in models:
            ds_name = config.models[model]
            ds = datasets[ds_name]
            split = calibration_split(ds, K_max, config.batches * K_max, seed=config.seed)
            f, acc = model_function(model, ds, config.untrained, train=config.train)
            fallback = calibration_mean(f, flat(split.x_cal))
            models[model] = {"dataset": ds_name, "test_accuracy": acc,
                             "fallback": np.asarray(fallback).tolist()}
        start = time.perf_counter()
        setting = run_setting(f, split, N, K, S, config, jax.random.fold_in(key, N * 1000 + K),
                              fallback, worst_case=model in config.worst_case,
                              padded_to=padded[N, K, S], tune_padded_to=tune_padded[N, K, S])
        if ends_group(shared, i):
            jax.clear_caches()
        seconds = round(time.perf_counter() - start, 2)
        rows += [{"model": model, "dataset": ds_name, **row, "padded_to": padded[N, K, S],
                  "setting_seconds": seconds} for row in setting]
    rank = {(m, s): i for i, (m, s) in enumerate((m, s) for m in config.models
                                                  for s in config.settings)}
    rows.sort(key=lambda r: rank[r["model"], (r["N"], r["K"], r["S"])])  # stable
    return rows, models


def tables(rows) -> tuple[str, str, str]:
    """Markdown, one row per setting and a column per scheme: the loss E[MSE] (its root),
    RMSE mean ± std, and RelAcc (Agree); an exact RelAcc (replication's) has no std."""
    header = ["model", "N", "K", "survivors N−S"]
    loss_rows, rmse_rows, acc_rows = [], [], []
    for model, N, K, S in dict.fromkeys((r["model"], r["N"], r["K"], r["S"]) for r in rows):
        cells_l, cells_r, cells_a = [], [], []
        for name in SCHEMES:
            r = next(r for r in rows if (r["model"], r["N"], r["K"], r["S"], r["scheme"])
                     == (model, N, K, S, name))
            lam = f" [λ={r['lam_dec']:.0e}]" if name in SEARCHED else ""
            cells_l.append(f"{r['mse_mean']:.3g} ({r['root_mean_mse']:.3g})"
                           f"{lost_note(r['failure_rate'])}{lam}")
            cells_r.append(f"{r['rmse_mean']:.3g} ± {r['rmse_std']:.2g}")
            spread = ", exact" if r.get("exact") else f" ± {r['relacc_std']:.2f}"
            cells_a.append(f"{r['relacc_mean']:.3f}{spread} ({r['agreement_mean']:.3f})")
        base = [model, N, K, N - S]
        loss_rows.append(base + cells_l)
        rmse_rows.append(base + cells_r)
        acc_rows.append(base + cells_a)
    header += [NAMES[s] for s in SCHEMES]
    return tuple(markdown_table(header, body) for body in (loss_rows, rmse_rows, acc_rows))


def worst_table(rows) -> str:
    """Markdown: per setting of the worst-case models and per scheme, the worst-case RMSE,
    sqrt(E[MSE]) of the random stragglers on the same batch, and their ratio; '' without
    any."""
    worst = [r for r in rows if "worst_rmse" in r]
    if not worst:
        return ""
    names = [s for s in WORST_SCHEMES if any(r["scheme"] == s for r in worst)]
    body = []
    for model, N, K, S in dict.fromkeys((r["model"], r["N"], r["K"], r["S"]) for r in worst):
        cells = []
        for name in names:
            r = next(r for r in worst
                     if (r["model"], r["N"], r["K"], r["S"], r["scheme"]) == (model, N, K, S, name))
            exact = "" if r["worst_exact"] else "≥"
            random = r["random_root_mean_mse_batch0"]
            cells.append(f"{exact}{r['worst_rmse']:.3g} ({random:.3g}; ×{r['worst_gap']:.3g})")
        body.append([model, N, K, N - S] + cells)
    return markdown_table(["model", "N", "K", "survivors N−S"] + [NAMES[n] for n in names],
                          body)


def plot_worst(rows, out):
    """The worst-case table as a figure (``table1_worst_case.png`` in ``out``): per setting
    and scheme, a segment from the random stragglers' sqrt(E[MSE]) (hollow) up to the
    worst case's RMSE (filled), log scale. LCC, whose errors run to 1e10, is left out. None without
    worst-case rows."""
    worst = [r for r in rows if "worst_rmse" in r and r["scheme"] != "lcc"]
    if not worst:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = list(dict.fromkeys((r["model"], r["N"], r["K"], r["S"]) for r in worst))
    names = [s for s in WORST_SCHEMES if s != "lcc" and any(r["scheme"] == s for r in worst)]
    models = list(dict.fromkeys(m for m, *_ in settings))  # one row of panels per model
    most = max(sum(m == model for m, *_ in settings) for model in models)
    fig, axes = plt.subplots(len(models), 1, figsize=(1.6 * most + 2, 3.4 * len(models) + 0.8),
                             sharey=True, squeeze=False)
    width = 0.8 / len(names)
    for ax, model in zip(axes[:, 0], models):
        own = [s for s in settings if s[0] == model]
        for j, name in enumerate(names):
            color = f"C{j}"
            for i, setting in enumerate(own):
                r = next(r for r in worst if (r["model"], r["N"], r["K"], r["S"]) == setting
                         and r["scheme"] == name)
                x = i - 0.4 + (j + 0.5) * width
                random = r["random_root_mean_mse_batch0"]
                ax.plot([x, x], [random, r["worst_rmse"]], color=color, lw=1.2)
                ax.plot(x, random, "o", mfc="white", color=color, ms=5)
                ax.plot(x, r["worst_rmse"], "o" if r["worst_exact"] else "^", color=color,
                        ms=5, label=NAMES[name] if i == 0 else None)
        ax.set_yscale("log")
        ax.set_xticks(range(len(own)))
        ax.set_xticklabels([f"N={N} K={K} S={S}" for _, N, K, S in own], fontsize=8)
        ax.set_xlim(-0.5, most - 0.5)
        ax.set_ylabel(f"{model}: root of the MSE", fontsize=9)
        ax.grid(True, axis="y", which="both", alpha=0.3)
    axes[0, 0].set_title("Random stragglers (hollow: √E[MSE] over the draws) against the worst "
                         "S (filled; ▲: search, a lower bound)", fontsize=9)
    axes[0, 0].legend(fontsize=8, ncol=len(names), loc="lower left")
    fig.tight_layout()
    path = out / "table1_worst_case.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def report(rows, models, config: Table1Config, seconds, out):
    """Prints the Markdown tables; writes results.json, results.csv and table.md to ``out``.
    Returns the rows."""
    loss_md, rmse_md, acc_md = tables(rows)
    worst_md = worst_table(rows)
    worst_md = (f"### Worst-case stragglers, RMSE (logits)\n\n{WORST_NOTE}\n\n{worst_md}\n\n"
                if worst_md else "")
    # the fallbacks (m values each) are in results.json
    accuracy = ", ".join(f"{m} {v['test_accuracy']} on {v['dataset']}" for m, v in models.items())
    text = (f"## Table 1 ({config.name} config)\n\n{METRIC_NOTE}\n\n### Loss E[MSE] "
            f"(√E[MSE]) on the logits [LeTCC's lam_dec]\n\n{loss_md}\n\n### RMSE per draw "
            f"(logits), mean ± std\n\n{rmse_md}\n\n### RelAcc mean ± std (argmax "
            f"agreement)\n\n{acc_md}\n\n{worst_md}Test accuracy of the models: {accuracy}. "
            f"Time {seconds:.0f} s.\n")
    print("\n" + text)
    write_results(out, config, rows, models=models, seconds=seconds)
    (out / "table.md").write_text(text)
    figure = plot_worst(rows, out)
    print(f"table1: wrote {out}/results.json, results.csv, table.md"
          + (f", {figure.name}" if figure else ""))
    return rows


def main(argv=None):
    """The command line (``--help``); returns the rows."""
    return experiment_main(
        argv, __name__, TABLE1,
        restrict={"--worst-case": ("worst_case", ["lenet5", "repvgg", "vit"])},
        untrained_help="randomly initialised models (no training, no cache): for tests")


if __name__ == "__main__":
    main()
