"""Input order: random against ordered inputs, for LeTCC, BACC and replication.

The encoder curve passes through the K inputs in node order (input ``order[k]`` at alpha_k),
and the coded error grows with the roughness of f along it. Every earlier experiment coded
the inputs in the order they came, a random one. Here the same K test images (logits as f's
outputs) are coded in each order of ``ORDER_METHODS``: a random permutation, and
``letcc_jax.order_inputs`` in pixel space: the greedy nearest-neighbour chain, the spectral
(Fiedler) order, the chain refined by 2-opt, and the first principal component.

For each model, K and N = round(ratio K):

- stragglers: "exact" (S = round(0.2 N) workers, uniformly at random), "bernoulli" (each
  worker independently with p = 0.2) and, for K up to the config's limit, "worst" (the S
  stragglers that ``letcc_jax.worst_stragglers`` finds worst for each scheme and order on
  the first evaluation batch: a local search, a lower bound unless marked exact);
- LeTCC (lam_enc = 0; lam_dec per order and random straggler model: the grid value of lowest
  E[MSE] on a calibration batch of K images disjoint from the evaluation images, ordered by
  the same method; the worst case keeps the "exact" choice) and BACC. The orders are one
  sweep (for LeTCC an (order, lam_dec) grid), so per evaluation batch ONE ``monte_carlo``
  call scores every order on the same straggler draws, and the calibration batch reuses its
  compiled program. An order is computed per batch of K inputs, so the batches cannot share
  one call;
- replication (``uncoded``, mean of the replicas), which does not depend on the order (one
  row, order_method "given"), is scored exactly: E[MSE] by ``letcc_jax.replication_loss``
  and RelAcc as its expectation (below), never by Monte Carlo;
- every scheme estimates an input it cannot recover by the same fallback, f's mean output
  on the calibration images.

Nodes (``nodes_model`` at ``nodes_settings``, exact stragglers, nearest-neighbour order):
LeTCC and BACC on the default Chebyshev nodes and on the arc-length nodes of
``letcc_jax.path_nodes`` (each batch's own, from its own path), and LeTCC on nodes learned
by ``letcc_jax.tune`` (alpha and lam_dec, by gradient descent on the Monte Carlo loss),
started from the arc-length nodes, on calibration batches each in its own chain order; all
on the held-out evaluation batches with the same draws.

Metrics (per straggler draw): MSE = (1/K) sum_k ||f_hat(x_k) - f(x_k)||^2 on the logits;
the headline is the paper's loss E[MSE], the mean over draws pooled over the evaluation
batches, with its root; RelAcc = acc(argmax f_hat vs labels) / acc(argmax f vs labels),
its mean over draws (NaN where undefined: f right on no input, or the worst case).
Replication's RelAcc is exact: input k is lost with probability p_k and then estimated by
the fallback, so per batch E[acc] = (1/K) sum_k [(1 - p_k) hit(f(x_k)) + p_k hit(fallback)],
divided by f's accuracy on the batch.

    python -m experiments.ordering                 # cpu config, minutes
    python -m experiments.ordering --smoke         # seconds
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

import letcc_jax as lc
from experiments._common import (
    calibration_mean,
    ends_group,
    load_data,
    model_function,
    padded_sizes,
    padder,
    replication_loss_probability,
)
from experiments._io import experiment_main, markdown_table, write_results
from experiments.configs import ORDERING, OrderingConfig
from letcc_jax.zoo.data import calibration_split

NAMES = {"letcc": "LeTCC", "bacc": "BACC", "uncoded": "replication"}
CODED = ("letcc", "bacc")
KINDS = ("exact", "bernoulli", "worst")
SHORT = {"random": "random", "nearest_neighbour": "NN", "spectral": "spectral",
         "nearest_neighbour+2opt": "NN+2opt", "pca": "PCA", "given": "any"}
#: The node placements compared (all with the nearest-neighbour order).
NODES = ("chebyshev", "arc_length", "tuned")

METRIC_NOTE = (
    "Per straggler draw MSE = (1/K) Σ_k ||f̂(x_k) − f(x_k)||² on the logits; the loss E[MSE] "
    "is its mean over the draws, pooled over the evaluation batches, √E[MSE] its root. "
    "RelAcc = acc(argmax f̂ vs labels) / acc(argmax f vs labels), its mean over the draws. "
    "Stragglers: exact = S = round(0.2N) at random; bernoulli = each worker with p = 0.2; "
    "worst = the S = round(0.2N) set letcc_jax.worst_stragglers finds worst for that scheme "
    "and order on the first evaluation batch (a search: a lower bound, ≥). Every scheme "
    "estimates a lost input by f's mean output on the calibration images. Replication "
    "(mean of replicas) does not depend on the order and is exact: E[MSE] by "
    "letcc_jax.replication_loss, RelAcc its expectation. LeTCC: lam_enc = 0, lam_dec per "
    "order chosen on a disjoint calibration batch."
)


# ------------------------------------------------------------------------ data


def input_orders(X, methods, seed: int) -> np.ndarray:
    """(B, K) int permutations of the K rows of X (K, d), one per name in ``methods`` (from
    ``ORDER_METHODS``): "random" draws one from ``seed``, the others are
    ``letcc_jax.order_inputs`` with the method and refinement the name gives."""
    X = np.asarray(X)
    rows = []
    for method in methods:
        if method == "random":
            rows.append(np.random.default_rng(seed).permutation(len(X)))
        else:
            name, _, refine = method.partition("+")
            rows.append(lc.order_inputs(X, name, refine=refine or None))
    return np.stack(rows)


class Batches(NamedTuple):
    """The inputs of one (model, K): a calibration batch and C evaluation batches, each
    with its labels and its B orders (one per order method)."""

    X_cal: jax.Array
    """(K, d) calibration images."""
    y_cal: jax.Array
    """(K,) their labels."""
    orders_cal: np.ndarray
    """(B, K) the calibration batch's orders."""
    X: jax.Array
    """(C, K, d) evaluation images."""
    y: jax.Array
    """(C, K) their labels."""
    orders: np.ndarray
    """(C, B, K) each evaluation batch's orders."""
    truth: np.ndarray
    """(C, K, m) f's outputs on the evaluation images."""
    path_ratio: np.ndarray
    """(B,) mean over the batches of the path length in each order over that in the order
    the images came."""


def batches(apply, split, K: int, config: OrderingConfig) -> Batches:
    """The calibration batch (the first K calibration images) and max(1, eval_inputs // K)
    evaluation batches of K for one K, with their orders (random ones seeded per batch)."""
    C = max(1, config.eval_inputs // K)
    X_cal = split.x_cal[:K].reshape(K, -1)
    X = split.x_eval[:C * K].reshape(C, K, -1)
    orders_cal = input_orders(X_cal, config.orders, config.seed)
    orders = np.stack([input_orders(X[c], config.orders, config.seed + 1 + c)
                       for c in range(C)])
    path_ratio = np.mean([[lc.path_length(X[c], o) / lc.path_length(X[c]) for o in orders[c]]
                          for c in range(C)], axis=0)
    truth = np.asarray(apply(jnp.asarray(X.reshape(C * K, -1))), np.float64).reshape(C, K, -1)
    return Batches(jnp.asarray(X_cal), jnp.asarray(split.y_cal[:K]), orders_cal,
                   jnp.asarray(X), jnp.asarray(split.y_eval[:C * K].reshape(C, K)), orders,
                   truth, path_ratio)


# ------------------------------------------------------------------------ scoring


def pooled(mse, relacc) -> dict:
    """Row fields from per-draw values pooled over batches and draws (any shape): E[MSE],
    its root and std, and RelAcc's mean and std over its finite values."""
    mse = np.asarray(mse, np.float64).ravel()
    relacc = np.asarray(relacc, np.float64).ravel()
    relacc = relacc[np.isfinite(relacc)]
    loss = float(np.mean(mse))
    return {"mse": loss, "root_mse": float(np.sqrt(loss)), "mse_std": float(np.std(mse)),
            "relacc": float(np.mean(relacc)) if relacc.size else float("nan"),
            "relacc_std": float(np.std(relacc)) if relacc.size else float("nan")}


def coded_rows(f, data: Batches, K: int, N: int, stragglers, fallback,
               config: OrderingConfig, key, pad=padder(None)
               ) -> tuple[list[dict], np.ndarray]:
    """LeTCC's and BACC's rows under one random straggler model, every order of a batch in
    one ``monte_carlo`` call (common draws: the same key per batch for both schemes), and
    LeTCC's chosen lam_dec per order, (B,). ``pad``: the simulated schemes' padding
    (``Scheme.pad_workers``; the numbers stay the unpadded ones)."""
    mc = functools.partial(lc.monte_carlo, f, trials=config.trials, stragglers=stragglers)
    k_cal, k_eval = jax.random.split(key)
    B = len(config.orders)
    rows, chosen = [], None
    for name in CODED:
        if name == "letcc":
            def scheme(orders):  # an (order, lam_dec) sweep
                swept = lc.letcc(K, N, order=orders[:, None, :], fallback=fallback)
                return pad(swept.replace(lam_dec=jnp.asarray(config.lam_dec_grid,
                                                             swept.alpha.dtype)))

            calibration = mc(scheme(data.orders_cal), data.X_cal, k_cal, labels=data.y_cal)
            best = np.nanargmin(np.asarray(calibration.mse, np.float64).mean(-1), axis=1)
            chosen = np.asarray(config.lam_dec_grid)[best]

            def pick(result):
                return jax.tree.map(lambda a: a[np.arange(B), best], result)
        else:
            def scheme(orders):
                return pad(lc.bacc(K, N, order=orders, fallback=fallback))

            def pick(result):
                return result
        results = [pick(mc(scheme(data.orders[c]), data.X[c], jax.random.fold_in(k_eval, c),
                           labels=data.y[c]))
                   for c in range(len(data.orders))]
        for b, method in enumerate(config.orders):
            rows.append({"scheme": name, "order_method": method,
                         "structure": "random" if method == "random" else "ordered",
                         **pooled([r.mse[b] for r in results], [r.relacc[b] for r in results]),
                         "lam_dec": float(chosen[b]) if name == "letcc" else None,
                         "path_ratio": float(data.path_ratio[b])})
    return rows, chosen


def replication_row(f, data: Batches, K: int, N: int, stragglers, fallback) -> dict:
    """Replication's row, exact: E[MSE] by ``letcc_jax.replication_loss`` averaged over the
    evaluation batches, its expected RelAcc (module docstring), the probability that a draw
    loses some input and the expected share of inputs lost."""
    scheme = lc.uncoded(K, N, fallback=fallback)
    loss = lc.replication_loss(f, scheme, data.X, stragglers=stragglers)
    mse = float(np.mean(np.asarray(loss.mse, np.float64)))
    lost = np.asarray(loss.p_lost, np.float64)  # (K,)
    labels = np.asarray(data.y)
    hit = data.truth.argmax(-1) == labels  # (C, K)
    guess = int(np.argmax(np.asarray(fallback))) == labels
    accuracy = hit.mean(axis=-1)
    defined = accuracy > 0
    expected = np.mean((1 - lost) * hit + lost * guess, axis=-1)
    relacc = (float(np.mean(expected[defined] / accuracy[defined])) if defined.any()
              else float("nan"))
    return {"scheme": "uncoded", "order_method": "given", "structure": "random", "mse": mse,
            "root_mse": float(np.sqrt(mse)), "mse_std": float("nan"), "relacc": relacc,
            "relacc_std": float("nan"), "lam_dec": None, "path_ratio": float("nan"),
            "p_lose_any": float(replication_loss_probability(scheme, stragglers)),
            "lost_share": float(lost.mean())}


def worst_rows(f, data: Batches, K: int, N: int, S: int, fallback, lams,
               config: OrderingConfig, pad=padder(None)) -> list[dict]:
    """Every scheme and order under its worst S stragglers on the first evaluation batch;
    LeTCC keeps the lam_dec chosen for S random stragglers (``lams``, per order). RelAcc is
    not reported (NaN): the set maximises the error, not the misclassifications."""
    schemes = [("letcc", method, lc.letcc(K, N, order=data.orders[0, b], lam_dec=float(lams[b]),
                                          fallback=fallback))
               for b, method in enumerate(config.orders)]
    schemes += [("bacc", method, lc.bacc(K, N, order=data.orders[0, b], fallback=fallback))
                for b, method in enumerate(config.orders)]
    schemes.append(("uncoded", "given", lc.uncoded(K, N, fallback=fallback)))
    rows = []
    for name, method, scheme in schemes:
        worst = lc.worst_stragglers(f, pad(scheme), data.X[0], S, restarts=config.worst_restarts,
                                    max_rounds=config.worst_max_rounds, seed=config.seed)
        structure = "random" if method in ("random", "given") else "ordered"
        rows.append({"scheme": name, "order_method": method, "structure": structure,
                     "mse": float(worst.mse), "root_mse": float(np.sqrt(worst.mse)),
                     "mse_std": float("nan"), "relacc": float("nan"),
                     "relacc_std": float("nan"), "worst_exact": worst.exact,
                     "worst_stragglers": worst.stragglers.tolist(),
                     "lam_dec": float(scheme.lam_dec) if name == "letcc" else None,
                     "path_ratio": (float(data.path_ratio[config.orders.index(method)])
                                    if method != "given" else float("nan"))})
    return rows


def setting_rows(f, model: str, data: Batches, K: int, N: int, fallback,
                 config: OrderingConfig, key, padded_to: int | None = None) -> list[dict]:
    """Every row of one (model, K, N): both random straggler models, and the worst case
    where ``config.worst`` allows it. With ``padded_to``, the simulated schemes are padded
    to that many workers (``Scheme.pad_workers``): settings padded to one N share their
    compiled programs, with the unpadded numbers (replication's exact loss takes the
    unpadded scheme)."""
    pad = padder(padded_to)
    S = round(config.S_fraction * N)
    base = {"experiment": "ordering", "f": model, "K": K, "N": N, "ratio": N / K,
            "nodes": "chebyshev", "trials": config.trials, "batches": len(data.orders)}
    models = {"exact": lc.ExactStragglers(S), "bernoulli": lc.BernoulliStragglers(config.p)}
    rows = []
    for kind in config.stragglers:
        stragglers = models[kind]
        scored, chosen = coded_rows(f, data, K, N, stragglers, fallback, config,
                                    jax.random.fold_in(key, KINDS.index(kind)), pad)
        if kind == "exact":
            lams = chosen
        scored.append(replication_row(f, data, K, N, stragglers, fallback))
        given = {"stragglers": kind, "S": S if kind == "exact" else None,
                 "p": config.p if kind == "bernoulli" else None}
        rows += [{**base, **given, **r} for r in scored]
    if K <= config.worst.get(model, 0):
        rows += [{**base, "stragglers": "worst", "S": S, "p": None, **r}
                 for r in worst_rows(f, data, K, N, S, fallback, lams, config, pad)]
    return rows


def node_rows(f, model: str, split, data: Batches, K: int, N: int, fallback,
              config: OrderingConfig, key) -> list[dict]:
    """LeTCC and BACC in the nearest-neighbour order on Chebyshev, arc-length and (LeTCC)
    tuned nodes, under exact stragglers, on the evaluation batches with the draws of the
    main comparison's "exact" rows (so its Chebyshev rows repeat those at lam_dec = 0)."""
    S = round(config.S_fraction * N)
    stragglers = lc.ExactStragglers(S)
    nn = config.orders.index("nearest_neighbour")
    alphas = {"chebyshev": lc.chebyshev_first(K)}
    lams, tuning = {"chebyshev": 0.0, "arc_length": 0.0}, {}
    if config.tune_steps:
        C_cal = config.nodes_cal_batches
        X_cal = split.x_cal[:C_cal * K].reshape(C_cal, K, -1)
        perms = [lc.order_inputs(x) for x in X_cal]
        # Each calibration batch goes in its own chain order, so the scheme's order is the
        # identity and one set of nodes is learned for all of them.
        ordered = jnp.asarray(np.stack([x[p] for x, p in zip(X_cal, perms)]))
        start = np.mean([lc.path_nodes(x, p, min_gap=config.min_gap)
                         for x, p in zip(X_cal, perms)], axis=0)
        begin = lc.letcc(K, N, points=(start, lc.chebyshev_second(N)), fallback=fallback)
        tuned = lc.tune(f, begin, ordered, jax.random.fold_in(key, 2), stragglers=stragglers,
                        learn=("alpha", "lam_dec"), steps=config.tune_steps,
                        trials=config.tune_trials, validation_trials=2 * config.tune_trials,
                        progress=False)
        alphas["tuned"] = np.asarray(tuned.scheme.alpha, np.float64)
        lams["tuned"] = float(tuned.scheme.lam_dec)
        tuning = {"tune_calibration_start": float(tuned.validation[0]),
                  "tune_calibration_best": float(np.min(tuned.validation)),
                  "tune_best_step": int(tuned.best_step)}
    k_eval = jax.random.split(jax.random.fold_in(key, 0))[1]  # the "exact" rows' draws
    variants = {"letcc": [n for n in NODES if n != "tuned" or config.tune_steps],
                "bacc": NODES[:2]}
    results = {name: [] for name in variants}
    for c in range(len(data.orders)):
        perm = data.orders[c, nn]
        alphas["arc_length"] = lc.path_nodes(data.X[c], perm, min_gap=config.min_gap)
        for name, nodes in variants.items():
            scheme = lc.make_scheme(name, K, N, order=perm, fallback=fallback)
            dtype = scheme.alpha.dtype
            scheme = scheme.replace(alpha=jnp.asarray(np.stack([alphas[n] for n in nodes]), dtype))
            if name == "letcc":
                scheme = scheme.replace(lam_dec=jnp.asarray([lams[n] for n in nodes], dtype))
            results[name].append(lc.monte_carlo(f, scheme, data.X[c],
                                                jax.random.fold_in(k_eval, c),
                                                trials=config.trials, stragglers=stragglers,
                                                labels=data.y[c]))
    base = {"experiment": "ordering", "f": model, "K": K, "N": N, "ratio": N / K,
            "stragglers": "exact", "S": S, "p": None, "order_method": "nearest_neighbour",
            "structure": "ordered", "trials": config.trials, "batches": len(data.orders),
            "path_ratio": float(data.path_ratio[nn]), "node_comparison": True}
    rows = []
    for name, nodes in variants.items():
        for v, node in enumerate(nodes):
            rows.append({**base, "scheme": name, "nodes": node,
                         **pooled([r.mse[v] for r in results[name]],
                                  [r.relacc[v] for r in results[name]]),
                         "lam_dec": lams[node] if name == "letcc" else None,
                         **(tuning if node == "tuned" else {})})
    return rows


def run(config: OrderingConfig, progress=True):
    rows, models = [], {}
    key = jax.random.PRNGKey(config.seed)
    ds = load_data(config.dataset)
    K_all = {K for pairs in config.settings.values() for K, _ in pairs}
    K_nodes = [K for K, _ in config.nodes_settings]
    n_cal = max([*K_all, *(config.nodes_cal_batches * K for K in K_nodes)])
    n_eval = max(max(1, config.eval_inputs // K) * K for K in K_all | set(K_nodes))
    split = calibration_split(ds, n_cal, n_eval, seed=config.seed)
    jobs = [(m, K, r) for m, pairs in config.settings.items() for K, ratios in pairs
            for r in ratios]
    jobs += [(config.nodes_model, K, r, "nodes") for K, r in config.nodes_settings]
    padded = {(m, K, N): to  # (model, K, N) of the order comparison -> its padded N, or None
              for m, pairs in config.settings.items() for K, ratios in pairs
              for N, to in padded_sizes([round(r * K) for r in ratios],
                                        config.bucket_ratio).items()}
    shared = [None if len(job) > 3 else (*job[:2], padded[job[0], job[1], round(job[2] * job[1])])
              for job in jobs]
    bar = tqdm(jobs, desc="settings", disable=not progress)
    current, data = None, {}
    for i, job in enumerate(bar):
        model, K, ratio = job[:3]
        N = round(ratio * K)
        bar.set_postfix_str(f"{model} K={K} N={N}" + (" nodes" if len(job) > 3 else ""))
        if model != current:
            f, acc = model_function(model, ds, config.untrained, train=config.train)
            apply = jax.jit(jax.vmap(f))
            fallback = calibration_mean(f, split.x_cal.reshape(n_cal, -1))
            models[model] = {"dataset": config.dataset, "test_accuracy": acc}
            current, data = model, {}
        if K not in data:
            data[K] = batches(apply, split, K, config)
        start = time.perf_counter()
        setting_key = jax.random.fold_in(jax.random.fold_in(key, K), N)
        if len(job) > 3:
            new = node_rows(f, model, split, data[K], K, N, fallback, config, setting_key)
        else:
            new = setting_rows(f, model, data[K], K, N, fallback, config, setting_key,
                               padded_to=padded[model, K, N])
        if ends_group(shared, i):
            jax.clear_caches()
        seconds = round(time.perf_counter() - start, 2)
        rows += [{**r, "padded_to": None if len(job) > 3 else padded[model, K, N],
                  "setting_seconds": seconds} for r in new]
    return rows, models


# ------------------------------------------------------------------------ report


def _rows(rows, **match) -> list[dict]:
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def main_rows(rows) -> list[dict]:
    """The rows of the order comparison (not the node comparison)."""
    return [r for r in rows if not r.get("node_comparison")]


def settings(rows) -> list[tuple]:
    """(model, K, N, stragglers) of the order comparison, in run order."""
    return list(dict.fromkeys((r["f"], r["K"], r["N"], r["stragglers"]) for r in main_rows(rows)))


def gain_table(rows, kind: str) -> str:
    """Markdown, one row per (model, K, N/K) under the straggler model ``kind``: per coded
    scheme the gain random-order loss / best-order loss and that order; replication's loss;
    and the winner among every scheme and order, with its loss. '' without such rows."""
    body = []
    for model, K, N, stragglers in settings(rows):
        if stragglers != kind:
            continue
        found = _rows(main_rows(rows), f=model, K=K, N=N, stragglers=kind)
        cells = []
        for name in CODED:
            coded = [r for r in found if r["scheme"] == name]
            best = min(coded, key=lambda r: r["mse"])
            random = next((r for r in coded if r["order_method"] == "random"), None)
            gain = f"×{random['mse'] / best['mse']:.3g}" if random else "–"
            cells.append(f"{gain} ({SHORT[best['order_method']]}: {best['mse']:.3g})")
        rep = next(r for r in found if r["scheme"] == "uncoded")
        cells.append(f"{rep['mse']:.3g}")
        winner = min(found, key=lambda r: r["mse"])
        bound = "≥" if kind == "worst" and not winner.get("worst_exact") else ""
        cells.append(f"{NAMES[winner['scheme']]} {SHORT[winner['order_method']]} "
                     f"({bound}{winner['mse']:.3g})")
        body.append([model, K, f"{N / K:.3g}"] + cells)
    if not body:
        return ""
    return markdown_table(["model", "K", "N/K", "LeTCC: random / best order (best)",
                           "BACC: random / best order (best)", "replication", "winner (E[MSE])"],
                          body)


def loss_table(rows) -> str:
    """Markdown, the full comparison: per setting, E[MSE] of replication and of each coded
    scheme in each order (≥ marks a worst case found by search)."""
    orders = list(dict.fromkeys(r["order_method"] for r in main_rows(rows)
                                if r["scheme"] != "uncoded"))
    body = []
    for model, K, N, kind in settings(rows):
        found = _rows(main_rows(rows), f=model, K=K, N=N, stragglers=kind)
        cells = []
        for name, method in [("uncoded", "given")] + [(s, o) for s in CODED for o in orders]:
            r = next(r for r in found if (r["scheme"], r["order_method"]) == (name, method))
            bound = "≥" if kind == "worst" and not r.get("worst_exact") else ""
            cells.append(f"{bound}{r['mse']:.3g}")
        body.append([model, K, f"{N / K:.3g}", kind] + cells)
    header = (["model", "K", "N/K", "stragglers", "replication"]
              + [f"{NAMES[s]} {SHORT[o]}" for s in CODED for o in orders])
    return markdown_table(header, body)


def relacc_table(rows) -> str:
    """Markdown, RelAcc under the random straggler models: replication (exact) and each coded
    scheme in the random and the nearest-neighbour order."""
    body = []
    columns = [("uncoded", "given"), ("letcc", "random"), ("letcc", "nearest_neighbour"),
               ("bacc", "random"), ("bacc", "nearest_neighbour")]
    for model, K, N, kind in settings(rows):
        if kind == "worst":
            continue
        found = _rows(main_rows(rows), f=model, K=K, N=N, stragglers=kind)
        cells = []
        for name, method in columns:
            r = next((r for r in found if (r["scheme"], r["order_method"]) == (name, method)),
                     None)
            cells.append(f"{r['relacc']:.3f}" if r else "–")
        body.append([model, K, f"{N / K:.3g}", kind] + cells)
    return markdown_table(["model", "K", "N/K", "stragglers"]
                          + [f"{NAMES[s]} {SHORT[o]}" for s, o in columns], body)


def nodes_table(rows) -> str:
    """Markdown: the node comparison, E[MSE] (√E[MSE]) per scheme and node placement, and
    the tuning's calibration loss before and after. '' without it."""
    found = [r for r in rows if r.get("node_comparison")]
    body = []
    for model, K, N in dict.fromkeys((r["f"], r["K"], r["N"]) for r in found):
        here = _rows(found, f=model, K=K, N=N)
        cells = []
        for name in CODED:
            for node in NODES:
                r = next((r for r in here if (r["scheme"], r["nodes"]) == (name, node)), None)
                cells.append(f"{r['mse']:.3g} ({r['root_mse']:.3g})" if r else "–")
        tuned = next((r for r in here if r["nodes"] == "tuned"), None)
        cells.append(f"{tuned['tune_calibration_start']:.3g} → "
                     f"{tuned['tune_calibration_best']:.3g}" if tuned else "–")
        body.append([model, K, f"{N / K:.3g}"] + cells)
    if not body:
        return ""
    header = (["model", "K", "N/K"] + [f"{NAMES[s]} {n.replace('_', '-')}" for s in CODED
                                        for n in NODES]
              + ["tuning: calibration E[MSE]"])
    return markdown_table(header, body)


def plot(rows, out) -> list:
    """One figure per model, ``ordering_<model>.png`` in ``out``: E[MSE] (log) against N/K,
    a panel per (straggler model, K); colour = order, solid LeTCC, dashed BACC, black
    dotted replication."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main = main_rows(rows)
    orders = list(dict.fromkeys(r["order_method"] for r in main if r["scheme"] != "uncoded"))
    paths = []
    for model in dict.fromkeys(r["f"] for r in main):
        mine = _rows(main, f=model)
        Ks = list(dict.fromkeys(r["K"] for r in mine))
        kinds = [k for k in KINDS if any(r["stragglers"] == k for r in mine)]
        fig, axes = plt.subplots(len(kinds), len(Ks), figsize=(3.2 * len(Ks), 2.8 * len(kinds)),
                                 squeeze=False, sharex=True)
        for i, kind in enumerate(kinds):
            for j, K in enumerate(Ks):
                ax = axes[i, j]
                here = _rows(mine, K=K, stragglers=kind)
                if not here:
                    ax.set_axis_off()
                    continue
                curves = [("uncoded", "given")] + [(s, o) for s in CODED for o in orders]
                for name, method in curves:
                    pts = sorted((r["ratio"], r["mse"]) for r in here
                                 if (r["scheme"], r["order_method"]) == (name, method))
                    if not pts:
                        continue
                    x, y = zip(*pts)
                    if name == "uncoded":
                        style = dict(color="k", ls=":", marker="s", label="replication")
                    else:
                        style = dict(color=f"C{orders.index(method)}",
                                     ls="-" if name == "letcc" else "--",
                                     marker="o" if name == "letcc" else "^",
                                     label=f"{NAMES[name]} {SHORT[method]}")
                    ax.plot(x, y, ms=3.5, lw=1.2, **style)
                ax.set_yscale("log")
                ax.grid(True, which="both", alpha=0.3)
                ax.set_title(f"K={K}, {kind}", fontsize=9)
                if i == len(kinds) - 1:
                    ax.set_xlabel("N/K")
                if j == 0:
                    ax.set_ylabel("E[MSE] (logits)")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.suptitle(f"{model}: random against ordered inputs", fontsize=10)
        fig.tight_layout()
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
        path = out / f"ordering_{model}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths


def report(rows, models, config: OrderingConfig, seconds, out):
    """Prints the Markdown tables; writes results.json, results.csv, table.md and the figures to
    ``out``. Returns the rows."""
    sections = [f"## Input order: random against ordered inputs ({config.name} config)",
                METRIC_NOTE]
    titles = {"exact": "S = 0.2N random stragglers", "bernoulli": "independent stragglers, "
              "p = 0.2", "worst": "the worst S = 0.2N stragglers"}
    for kind in KINDS:
        table = gain_table(rows, kind)
        if table:
            sections += [f"### Gain of ordering and winner: {titles[kind]}", table]
    sections += ["### E[MSE] per scheme and order", loss_table(rows),
                 "### RelAcc", relacc_table(rows)]
    nodes = nodes_table(rows)
    if nodes:
        sections += ["### Node placement (nearest-neighbour order, exact stragglers), "
                     "E[MSE] (√E[MSE])", nodes]
    sections.append(f"Models: {models}. Time {seconds:.0f} s.")
    text = "\n\n".join(sections) + "\n"
    print("\n" + text)
    write_results(out, config, rows, models=models, seconds=seconds)
    (out / "table.md").write_text(text)
    figures = plot(rows, out)
    print(f"ordering: wrote {out}/results.json, results.csv, table.md, "
          + ", ".join(p.name for p in figures))
    return rows


def main(argv=None):
    """The command line (``--help``); returns the rows."""
    return experiment_main(
        argv, __name__, ORDERING,
        untrained_help="randomly initialised models (no training, no cache): for tests")


if __name__ == "__main__":
    main()
