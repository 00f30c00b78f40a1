"""Reliability of LeTCC's standard errors: does the predicted error track the real one?

``LeTCC.posterior`` returns, with every estimate, a standard error read from a
Gaussian-process model of f along the encoder's curve (the power function of the survivor
set times a scale estimated from the survivors). This experiment asks whether that number
can be trusted, and what split-conformal calibration (``letcc_jax.calibrate``) repairs.

For each model f (its K inputs per batch coded for N workers, LeTCC at the config's
lam_dec), each input order ("random": the inputs as drawn; "nearest_neighbour": each batch
ordered by ``letcc_jax.order_inputs``) and each straggler model ("exact": S = round(0.2N)
workers at random; "bernoulli": each worker independently with p = 0.2; "worst": on each
evaluation batch the S stragglers that ``letcc_jax.worst_stragglers`` finds worst for
LeTCC, then one posterior at that mask):

1. calibration on ``batches`` calibration batches of K inputs, in the same order and under
   the same straggler model (``trials`` rounds each; ``letcc_jax.Calibration.from_rounds``,
   the rule of ``letcc_jax.calibrate``); the worst case has no rounds of its own to
   calibrate on and takes the "exact" calibration, the one a user would have;
2. evaluation on as many disjoint evaluation batches (the same straggler draws for both
   orders);
3. per condition: the coverage of the nominal intervals ``estimate +- z_q std`` (Gaussian,
   uncalibrated) and of the conformal ones ``estimate +- quantile_q std`` at every level
   q; the Spearman correlation between the predicted std and the realised |error| per
   entry (input and output column of a round); the AUROC of the per-input predicted std
   (root-mean-square over the output columns) for flagging the worst ``flagged`` share of
   inputs by realised per-input RMSE (Mann-Whitney U with average ranks); and the
   reliability diagram: entries in equal-count bins by predicted std, RMS realised error
   against RMS predicted std per bin.

Entries whose std is infinite (an input the survivors cannot determine) are left out of
every measure and counted in ``lost_share``. Every round of a model, whatever its order,
straggler model or batch, runs in one compiled program (``posterior_at``: the rounds of
``letcc_jax.posterior_rounds`` with the survivor masks as data, so that the worst sets
fit in too; the order only permutes the inputs); JAX's caches are cleared between models.

    python -m experiments.reliability            # cpu config
    python -m experiments.reliability --smoke    # seconds
"""

from __future__ import annotations

import functools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

import letcc_jax as lc
from experiments._common import batched_inputs
from experiments._io import experiment_main, markdown_table, write_results
from experiments.configs import RELIABILITY, ReliabilityConfig

#: The input orders compared: as drawn, and each batch along a nearest-neighbour chain.
ORDERS = ("random", "nearest_neighbour")
SHORT = {"random": "random", "nearest_neighbour": "NN"}
#: The straggler models, in the order they run: the worst case is scored with the "exact"
#: calibration, so it comes after it.
KINDS = ("exact", "bernoulli", "worst")


# ------------------------------------------------------------------------ rank statistics


def average_ranks(values) -> np.ndarray:
    """Ranks 1..n of the entries of ``values`` (flattened), ties sharing their mean rank."""
    values = np.asarray(values, np.float64).ravel()
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], values.size]
    run = np.repeat(np.arange(starts.size), ends - starts)
    ranks = np.empty(values.size)
    ranks[order] = ((starts + 1 + ends) / 2)[run]
    return ranks


def spearman(a, b) -> float:
    """Spearman's rank correlation of two equally long samples (Pearson's correlation of
    their average ranks); NaN when either is constant."""
    ra, rb = average_ranks(a), average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = np.sqrt(np.sum(ra * ra) * np.sum(rb * rb))
    return float(np.sum(ra * rb) / denominator) if denominator > 0 else float("nan")


def auroc(score, positive) -> float:
    """The area under the ROC curve of ``score`` for telling the ``positive`` entries from
    the others: the Mann-Whitney U of the positives' scores over the negatives' divided by
    their number of pairs (ties count one half); NaN without positives or negatives."""
    positive = np.asarray(positive, bool).ravel()
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def reliability_bins(std, error, bins: int, multiplier: float):
    """Per bin of the entries sorted by ``std`` and cut into ``bins`` groups of equal count
    (as equal as the count allows): (RMS predicted std, RMS realised error, the share of
    entries with error <= multiplier * std), three lists."""
    std, error = np.ravel(std), np.ravel(error)
    groups = np.array_split(np.argsort(std, kind="stable"), min(bins, std.size))
    return ([float(np.sqrt(np.mean(std[g] ** 2))) for g in groups],
            [float(np.sqrt(np.mean(error[g] ** 2))) for g in groups],
            [float(np.mean(error[g] <= multiplier * std[g])) for g in groups])


# ------------------------------------------------------------------------ scoring


def scores(post: lc.Posterior, truth, calibration: lc.Calibration,
           config: ReliabilityConfig) -> dict:
    """Row fields of one condition from its evaluation rounds (``post`` and ``truth`` with
    leading axes (C, T)) and the calibration it is scored with."""
    estimate, std, target = (np.asarray(a, np.float64) for a in (post.estimate, post.std, truth))
    error = np.abs(estimate - target)
    entries = np.isfinite(std)
    inputs = entries.all(axis=-1)  # an input's std is finite in every column or in none
    out = {"entries": int(entries.sum()), "lost_share": float(1 - inputs.mean()),
           "rmse": float(np.sqrt(np.mean(error[entries] ** 2))),
           "rms_std": float(np.sqrt(np.mean(std[entries] ** 2)))}
    out["error_over_std"] = out["rmse"] / out["rms_std"]
    for q in config.levels:
        tag = f"{100 * q:g}"
        for name, calibrated in (("gaussian", False), ("conformal", True)):
            interval = calibration.interval(post, q, calibrated=calibrated)
            out[f"coverage_{name}_{tag}"] = float(lc.coverage(interval, truth))
        out[f"quantile_{tag}"] = float(calibration.quantile(q))
        out[f"z_{tag}"] = statistics.NormalDist().inv_cdf((1 + q) / 2)
    out["spearman"] = spearman(std[entries], error[entries])
    input_std = np.sqrt(np.mean(std[inputs] ** 2, axis=-1))
    input_rmse = np.sqrt(np.mean(error[inputs] ** 2, axis=-1))
    worst = input_rmse > np.quantile(input_rmse, 1 - config.flagged)
    out["auroc"] = auroc(input_std, worst)
    out["flagged_inputs"] = int(worst.sum())
    # per bin: the conformal interval's coverage at the highest level (conditional on std)
    out["bins_std"], out["bins_error"], out["bins_coverage"] = reliability_bins(
        std[entries], error[entries], config.bins, out[f"quantile_{100 * config.levels[-1]:g}"])
    return out


# ------------------------------------------------------------------------ rounds


def ordered(X, order: str) -> jnp.ndarray:
    """The batches X (C, K, d) in ``order``: as drawn, or each along its own
    nearest-neighbour chain (``letcc_jax.order_inputs``)."""
    if order == "random":
        return X
    host = np.asarray(X)
    return jnp.asarray(np.stack([x[lc.order_inputs(x)] for x in host]))


@functools.partial(jax.jit, static_argnames="f")
def posterior_at(f, scheme, X, alive) -> tuple[lc.Posterior, jnp.ndarray]:
    """(posterior, truth) of the rounds whose survivors are given: X (C, K, d) batches and
    their rounds' survivor masks ``alive`` (C, T, N); every field has leading axes (C, T).
    f runs once per batch on the coded inputs, and each round is the scheme's own
    ``posterior_report``, as in ``letcc_jax.posterior_rounds``. One compiled program per
    f and shape serves every straggler model, order and batch."""
    def batch(x, masks):
        Y = jax.vmap(f)(scheme.encode_report(x)[0])
        post = jax.vmap(lambda survivors: scheme.posterior_report(Y, survivors)[0])(masks)
        return post, jnp.broadcast_to(jax.vmap(f)(x), post.estimate.shape)

    return jax.vmap(batch)(X, alive)


@functools.partial(jax.jit, static_argnames=("N", "batches", "trials"))
def draw_masks(stragglers, key, N: int, batches: int, trials: int) -> jnp.ndarray:
    """(batches, trials, N) survivor masks drawn from the straggler model, one key each."""
    keys = jax.random.split(key, batches * trials)
    masks = jax.vmap(lambda k: stragglers.sample(k, N))(keys)
    return masks.reshape(batches, trials, N)


def worst_masks(f, scheme, X_eval, S: int, config: ReliabilityConfig):
    """(masks, searches): the survivors under the worst S stragglers of each evaluation
    batch (``letcc_jax.worst_stragglers`` against ``scheme``), repeated over ``trials``
    rounds (C, trials, N), so that ``posterior_at`` reuses the random rounds' program
    (keep round 0); ``searches`` the ``WorstCase`` of each batch."""
    searches = [lc.worst_stragglers(f, scheme, x, S, restarts=config.worst_restarts,
                                    max_rounds=config.worst_max_rounds, seed=config.seed)
                for x in X_eval]
    alive = np.stack([w.alive for w in searches])[:, None]
    return jnp.asarray(np.repeat(alive, config.trials, axis=1)), searches


def model_rows(f, model: str, X_cal, X_eval, config: ReliabilityConfig, key,
               bar=None) -> list[dict]:
    """Every condition of one model: (straggler model, order) rows. The random straggler
    models draw the same rounds for both orders; every condition runs ``posterior_at``."""
    K, N = config.settings[model]
    S = round(config.S_fraction * N)
    scheme = lc.letcc(K, N, lam_dec=config.lam_dec)
    data = {order: (ordered(X_cal, order), ordered(X_eval, order)) for order in ORDERS}
    models = {"exact": lc.ExactStragglers(S), "bernoulli": lc.BernoulliStragglers(config.p)}
    kinds = [k for k in KINDS
             if k in config.stragglers or (k == "worst" and model in config.worst)]
    base = {"f": model, "K": K, "N": N, "lam_dec": config.lam_dec,
            "batches": int(X_eval.shape[0])}
    rows, calibrations = [], {}
    for kind in kinds:
        if kind != "worst":
            k_cal, k_eval = jax.random.split(jax.random.fold_in(key, KINDS.index(kind)))
            masks = [draw_masks(models[kind], k, N, int(X.shape[0]), config.trials)
                     for k, X in ((k_cal, X_cal), (k_eval, X_eval))]
        for order in ORDERS:
            if bar is not None:
                bar.set_postfix_str(f"{model} {kind} {order}")
            start = time.perf_counter()
            X_c, X_e = data[order]
            extra = {}
            if kind == "worst":
                calibration = calibrations["exact", order]
                alive, searches = worst_masks(f, scheme, X_e, S, config)
                post, truth = jax.tree.map(lambda v: v[:, :1], posterior_at(f, scheme, X_e,
                                                                            alive))
                mse = [w.mse for w in searches]
                extra = {"worst_exact": all(w.exact for w in searches),
                         "worst_mse_mean": float(np.mean(mse)),
                         "worst_mse_max": float(np.max(mse))}
            else:
                post, truth = posterior_at(f, scheme, X_c, masks[0])
                calibration = lc.Calibration.from_rounds(post.estimate, post.std, truth,
                                                         levels=config.levels)
                calibrations[kind, order] = calibration
                post, truth = posterior_at(f, scheme, X_e, masks[1])
            uncalibrated = np.asarray(calibration.uncalibrated_coverage, np.float64)
            rows.append({
                **base, "stragglers": kind, "order": order,
                "S": None if kind == "bernoulli" else S,
                "p": config.p if kind == "bernoulli" else None,
                "calibrated_on": "exact" if kind == "worst" else kind,
                "rounds_per_batch": 1 if kind == "worst" else config.trials,
                **{f"calibration_gaussian_{100 * q:g}": float(c)
                   for q, c in zip(config.levels, uncalibrated)},
                **scores(post, truth, calibration, config), **extra,
                "seconds": round(time.perf_counter() - start, 2)})
    return rows


def run(config: ReliabilityConfig, progress=True) -> list[dict]:
    """Every model's rows, in the config's order."""
    rows = []
    key = jax.random.PRNGKey(config.seed)
    bar = tqdm(config.models, desc="models", disable=not progress)
    for i, model in enumerate(bar):
        if i:
            # Each model compiles its own programs, and each program keeps memory mappings:
            # one process holding all of them runs out (vm.max_map_count), as in table1.
            jax.clear_caches()
        K, _ = config.settings[model]
        f, X_cal, X_eval = batched_inputs(model, K, config.batches, config.seed,
                                          untrained=config.untrained, train=config.train)
        rows += model_rows(f, model, X_cal, X_eval, config, jax.random.fold_in(key, i), bar)
    return rows


# ------------------------------------------------------------------------ report


def table(rows, config: ReliabilityConfig) -> str:
    """Markdown, one row per condition: coverage before -> after calibration per level, the
    conformal multiplier against z, the conformal coverage in the lowest and highest bin of
    predicted std, RMS error over RMS std, Spearman and AUROC."""
    header = ["f", "K, N", "stragglers", "order"]
    header += [f"cover {100 * q:g}%: Gaussian → conformal" for q in config.levels]
    top = f"{100 * config.levels[-1]:g}"
    header += [f"q{top} (z)", f"conformal {top}%: lowest / highest std bin",
               "RMS err / RMS std", "Spearman", f"AUROC (worst {100 * config.flagged:g}%)"]
    body = []
    for r in rows:
        bound = "≥ " if r["stragglers"] == "worst" and not r.get("worst_exact") else ""
        kind = (f"bernoulli p={r['p']:g}" if r["stragglers"] == "bernoulli"
                else f"{bound}{r['stragglers']} S={r['S']}")
        cells = [r["f"], f"{r['K']}, {r['N']}", kind, SHORT[r["order"]]]
        for q in config.levels:
            tag = f"{100 * q:g}"
            cells.append(f"{r[f'coverage_gaussian_{tag}']:.3f} → "
                         f"{r[f'coverage_conformal_{tag}']:.3f}")
        cells.append(f"{r[f'quantile_{top}']:.3g} ({r[f'z_{top}']:.3g})")
        cells.append(f"{r['bins_coverage'][0]:.2f} / {r['bins_coverage'][-1]:.2f}")
        cells += [f"{r['error_over_std']:.3g}", f"{r['spearman']:.3f}", f"{r['auroc']:.3f}"]
        body.append(cells)
    return markdown_table(header, body)


def plot(rows, out):
    """``reliability.png`` in ``out``: a panel per (model, straggler model), RMS realised
    error against RMS predicted std per bin (log-log), one line per order, the diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["f"] for r in rows))
    kinds = [k for k in KINDS if any(r["stragglers"] == k for r in rows)]
    fig, axes = plt.subplots(len(models), len(kinds), figsize=(3.4 * len(kinds),
                                                               3.0 * len(models)),
                             squeeze=False)
    for i, model in enumerate(models):
        for j, kind in enumerate(kinds):
            ax = axes[i, j]
            here = [r for r in rows if (r["f"], r["stragglers"]) == (model, kind)]
            if not here:
                ax.set_axis_off()
                continue
            values = [v for r in here for v in r["bins_std"] + r["bins_error"] if v > 0]
            for r in here:
                ax.loglog(r["bins_std"], r["bins_error"], marker="o", ms=3, lw=1.2,
                          color=f"C{ORDERS.index(r['order'])}",
                          label=f"{SHORT[r['order']]} (ρ = {r['spearman']:.2f})")
            if values:
                lo, hi = min(values) / 1.5, max(values) * 1.5
                ax.plot([lo, hi], [lo, hi], color="k", lw=0.8, ls=":", label="error = std")
            ax.grid(True, which="both", alpha=0.3)
            K, N = here[0]["K"], here[0]["N"]
            ax.set_title(f"{model} (K={K}, N={N}), {kind}", fontsize=9)
            ax.legend(fontsize=7, loc="upper left")
            if i == len(models) - 1:
                ax.set_xlabel("RMS predicted std (bin)")
            if j == 0:
                ax.set_ylabel("RMS realised error (bin)")
    fig.suptitle("LeTCC's standard errors: entries in deciles of predicted std", fontsize=10)
    fig.tight_layout()
    path = out / "reliability.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


NOTE = (
    "Coverage: the share of entries (input × output column of a round) whose truth lies in "
    "estimate ± multiplier × std, on the evaluation batches; Gaussian: multiplier z_q "
    "(uncalibrated); conformal: the split-conformal quantile from the calibration batches "
    "(same f, order and straggler model; the worst case uses the exact-S calibration). "
    "RMS err / RMS std: 1 where the std is right on average. Spearman: predicted std against "
    "realised |error| per entry. AUROC: per-input predicted std (RMS over columns) for "
    "flagging the inputs whose realised RMSE is in the worst share. Lowest / highest std bin: "
    "the conformal interval's coverage among the entries in the lowest and the highest "
    "equal-count bin of predicted std. ≥: the worst set was found by search (a lower bound "
    "on the worst case)."
)


def report(rows, config: ReliabilityConfig, seconds, out):
    """Prints the table; writes results.json, results.csv, table.md and reliability.png to
    ``out``. Returns the rows."""
    text = (f"## Reliability of LeTCC's standard errors ({config.name} config)\n\n{NOTE}\n\n"
            f"{table(rows, config)}\n\nTime {seconds:.0f} s.\n")
    print("\n" + text)
    write_results(out, config, rows, seconds=seconds)
    (out / "table.md").write_text(text)
    path = plot(rows, out)
    print(f"reliability: {seconds:.0f} s; wrote {out}/results.json, results.csv, table.md, "
          f"{path.name}")
    return rows


def main(argv=None):
    """The command line (``--help``); returns the rows."""
    return experiment_main(
        argv, __name__, RELIABILITY,
        restrict={"--models": ("models", list(RELIABILITY["cpu"].settings))},
        untrained_help="randomly initialised image models (no training, no cache): for tests")


if __name__ == "__main__":
    main()
