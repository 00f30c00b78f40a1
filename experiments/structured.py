"""Naturally structured inputs: LeTCC, BACC and replication on sequences whose neighbours
are close.

The experiments before this one code K unrelated inputs in a random order, the worst case
for a code: the encoder curve passes through the inputs in node order, and the coded error
grows with the roughness of f along it (DESIGN.md section 7). Here the order comes with
the data. Each family is K inputs forming a sequence, put on the nodes alpha_1 < ... <
alpha_K in their natural order (``order_method="given"``) and, as the control, in one random
order of the same inputs (``order_method="random"``, the same permutation for every sequence
of a K):

- ``translate``: K frames of a Fashion-MNIST test image moving horizontally from -shift to
  +shift pixels in equal sub-pixel steps (bilinear, ``scipy.ndimage.shift``); label: the
  image's.
- ``rotate``: K frames of a test image rotating from -angle to +angle degrees
  (``scipy.ndimage.rotate``, bilinear); label: the image's.
- ``interpolate``: K blends (1 - t) a + t b of two test images, t = 0 .. 1 in equal steps;
  label: that of the image with the larger weight (a convention: a blend has no true label).
- ``goog``: K consecutive sliding windows of Google's daily log price (2004-08-19 to
  2008-10-14, matplotlib's sample data ``goog.npz``): each window holds the last ``window``
  days relative to its last day, in units of the training period's daily-return std. No
  labels (RelAcc is NaN).

f is an image classifier's logits for the image families (LeNet-5 by default), and for the
prices a tanh network ``window -> hidden -> horizon`` (``_common.tanh_network``) trained by
full-batch Adam to forecast the next ``horizon`` days' log prices, relative to the window's
last day, on the first 40% of the days, with an L2 penalty that keeps it from memorising
them: a forecaster is what one would run on such windows, and a trained f reflects the
data, while a random network's roughness along the sequence would be arbitrary.

Calibration sequences are disjoint from the evaluation sequences: other test images
(``calibration_split``), or other days (the days are cut into a training period (40%), a
calibration period (the next 25%) and an evaluation period (the last 35%); the ``batches``
sequences of a period start at evenly spaced days, overlapping where the period is short).

Per K, N = round(ratio K) and straggler model (exactly S = round(0.2 N) workers, or each
worker with probability p = 0.2): LeTCC is one ``monte_carlo`` sweep over both orders and
every lam_dec of the grid, run on the calibration sequences to choose lam_dec per family
and order, and with the same shapes (so the same compiled program) on the evaluation
sequences; BACC is one call over both orders with LeTCC's evaluation key (common straggler
draws); replication (``lc.uncoded``, worker n computes input n mod K) is scored exactly by
``lc.replication_loss``, never sampled. Every scheme estimates an input it cannot recover
by the same fallback: f's mean output over the family's calibration inputs. A second
replication (``uncoded_interp``) estimates a lost input instead from its recovered
neighbours in the given order (linear interpolation over k), as one would on a sequence;
it is Monte Carlo over ``interp_trials`` draws. For the K in
``worst_K`` the worst S stragglers of every scheme and order on the first evaluation
sequence come from ``lc.worst_stragglers`` (swap search from the greedy set and the worst
run of consecutive workers: a lower bound).

Metrics: MSE = (1/K) sum_k ||f_hat(x_k) - f(x_k)||^2 on f's outputs (logits, or forecast
log prices in return-std units); the headline is the paper's loss E[MSE] (mean over draws
and sequences; exact for replication) and its root. RelAcc = acc(argmax f_hat vs labels) /
acc(argmax f vs labels), per draw, averaged (replication: its expectation, exact; NaN for
the worst case, which maximises the MSE, and for ``goog``). nmse = E[MSE] / spread, where
spread = mean ||f(x_k) - fallback||^2 over the evaluation inputs is what losing every input
costs. Smoothness of a family: ``path_ratio`` = length of the path through the inputs in the
given order / in the random order (``lc.path_length``), ``step_ratio`` = mean
||f(x_{k+1}) - f(x_k)||^2 over neighbours / mean over all pairs (about 1 for unrelated
inputs).

    python -m experiments.structured                # cpu config, about 13 CPU-minutes
    python -m experiments.structured --smoke        # image families only, ~30 s
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import ndimage
from tqdm.auto import tqdm

import letcc_jax as lc
from experiments._common import (
    calibration_mean,
    ends_group,
    load_data,
    model_function,
    padded_sizes,
    padder,
    pool,
    random_network,
    replication_loss_probability,
    tanh_network,
)
from experiments._io import experiment_main, markdown_table, write_results
from experiments.configs import STRUCTURED, StructuredConfig
from letcc_jax.zoo.data import calibration_split

IMAGE_FAMILIES = ("translate", "rotate", "interpolate")
#: The input orders compared, in the order of the swept ``order`` leaf's first axis.
ORDERS = ("given", "random")
#: (scheme, order_method) of every curve and table column, in order.
CURVES = (("letcc", "given"), ("letcc", "random"), ("bacc", "given"), ("bacc", "random"),
          ("uncoded", "given"), ("uncoded_interp", "given"))
LABELS = {("letcc", "given"): "LeTCC, given order", ("letcc", "random"): "LeTCC, random order",
          ("bacc", "given"): "BACC, given order", ("bacc", "random"): "BACC, random order",
          ("uncoded", "given"): "replication (exact)",
          ("uncoded_interp", "given"): "replication + interpolation"}
NAMES = {"letcc": "LeTCC", "bacc": "BACC", "uncoded": "repl.",
         "uncoded_interp": "repl. + interp."}
#: Where the price series is cut: training period, calibration period, evaluation period.
GOOG_SPLIT = (0.4, 0.65)

METRIC_NOTE = (
    "E[MSE] = mean over straggler draws (and sequences) of (1/K) Σ_k ||f̂(x_k) − f(x_k)||² on "
    "f's outputs (logits; for goog, forecast log prices in units of the daily-return std), "
    "exact for replication (letcc_jax.replication_loss); √E[MSE] in brackets. RelAcc = "
    "acc(argmax f̂ vs labels) / acc(argmax f vs labels), its mean over draws (replication: "
    "its exact expectation; n/a without labels and for the worst case). Every scheme "
    "estimates an input it cannot recover by f's mean output on the family's calibration "
    "inputs; replication + interpolation instead interpolates it linearly from the nearest "
    "recovered inputs on either side in the given order (Monte Carlo). Given: the inputs on the nodes in their natural order; random: one random "
    "permutation of them. Stragglers: exact = S = round(0.2N) uniformly random workers; "
    "bernoulli = each worker independently with p = 0.2; worst = the S workers that "
    "maximise each scheme's MSE on the first evaluation sequence (letcc_jax.worst_stragglers, "
    "swap search: a lower bound)."
)


class Sequences(NamedTuple):
    """One family at one K: ``batches`` calibration and as many evaluation sequences."""

    X_cal: jax.Array
    """(B, K, d) float32, each sequence in its natural order."""
    X_eval: jax.Array
    y_cal: jax.Array | None
    """(B, K) int labels, or None (no labels: RelAcc is NaN)."""
    y_eval: jax.Array | None


# ------------------------------------------------------------------ the input families
def frames(family: str, image: np.ndarray, K: int, config: StructuredConfig) -> np.ndarray:
    """(K, H*W*C): the image (H, W, C) moved ("translate", from -shift to +shift pixels
    along the width) or turned ("rotate", from -angle to +angle degrees) in K equal steps,
    bilinear, with a black background."""
    if family == "translate":
        moved = [ndimage.shift(image, (0.0, s, 0.0), order=1)
                 for s in np.linspace(-config.shift, config.shift, K)]
    else:
        moved = [ndimage.rotate(image, a, axes=(1, 0), reshape=False, order=1)
                 for a in np.linspace(-config.angle, config.angle, K)]
    return np.stack(moved).reshape(K, -1)


def image_sequences(family: str, images: np.ndarray, labels: np.ndarray, K: int,
                    config: StructuredConfig) -> tuple[np.ndarray, np.ndarray]:
    """(X (B, K, d) float32, labels (B, K)) of B = ``batches`` sequences of ``family``.

    ``images`` (4B, H, W, C) are the source images of one side of the split: the first B
    are translated, the next B rotated, and the last 2B blended pairwise (image 2B + b
    into image 3B + b).
    """
    B = config.batches
    if family == "interpolate":
        t = np.linspace(0.0, 1.0, K, dtype=np.float32)[None, :, None]
        a, b = (images[i * B:(i + 1) * B].reshape(B, 1, -1) for i in (2, 3))
        X = (1 - t) * a + t * b
        y = np.where(t[..., 0] < 0.5, labels[2 * B:3 * B, None], labels[3 * B:4 * B, None])
    else:
        first = 0 if family == "translate" else B
        X = np.stack([frames(family, image, K, config) for image in images[first:first + B]])
        y = np.repeat(labels[first:first + B, None], K, axis=1)
    return X.astype(np.float32), y.astype(np.int32)


def image_family(family: str, split, K: int, config: StructuredConfig) -> Sequences:
    """The sequences of an image family at K, from both sides of the calibration split."""
    (X_cal, y_cal), (X_eval, y_eval) = (
        image_sequences(family, x, y, K, config)
        for x, y in ((split.x_cal, split.y_cal), (split.x_eval, split.y_eval)))
    return Sequences(*(jnp.asarray(a) for a in (X_cal, X_eval, y_cal, y_eval)))


def random_order(K: int, seed: int) -> np.ndarray:
    """(K,) the random order of the control: one permutation per K, for every family."""
    return np.random.default_rng(seed).permutation(K)


def goog_log_prices() -> np.ndarray:
    """(1047,) float64: log of Google's daily adjusted close, 2004-08-19 to 2008-10-14, from
    the sample data matplotlib ships (no network needed)."""
    from matplotlib import cbook

    with cbook.get_sample_data("goog.npz") as data:
        return np.log(np.asarray(data["price_data"]["adj_close"], np.float64))


def windows(log_price: np.ndarray, ends: np.ndarray, width: int, scale: float) -> np.ndarray:
    """(n, width) float32: for each day t in ``ends`` (n,), the log prices of days
    t - width + 1 .. t minus that of day t, over ``scale``."""
    ends = np.asarray(ends)
    days = ends[:, None] + np.arange(1 - width, 1)
    return ((log_price[days] - log_price[ends, None]) / scale).astype(np.float32)


def targets(log_price: np.ndarray, ends: np.ndarray, horizon: int, scale: float) -> np.ndarray:
    """(n, horizon) float32: the log prices of the ``horizon`` days after each day in
    ``ends``, minus that day's, over ``scale``: what the forecaster predicts."""
    ends = np.asarray(ends)
    days = ends[:, None] + np.arange(1, horizon + 1)
    return ((log_price[days] - log_price[ends, None]) / scale).astype(np.float32)


def period_sequences(log_price, lo: int, hi: int, K: int, scale: float,
                     config: StructuredConfig) -> np.ndarray:
    """(B, K, window) float32: B = ``batches`` runs of K consecutive windows lying in days
    lo .. hi - 1, starting at evenly spaced days (they overlap where the period is short).

    Raises:
      ValueError: the period holds fewer than K + window - 1 days.
    """
    first, last = lo + config.window - 1, hi - K  # the first window's last day
    if last < first:
        raise ValueError(f"goog: days {lo}..{hi - 1} hold fewer than K + window - 1 = "
                         f"{K + config.window - 1} days; choose a smaller K or window.")
    starts = np.linspace(first, last, config.batches).round().astype(int)
    return np.stack([windows(log_price, s + np.arange(K), config.window, scale)
                     for s in starts])


def train_forecaster(config: StructuredConfig, key):
    """(f, info): f (window,) -> (horizon,), the tanh network trained on the training
    period's windows (mean squared error plus ``weight_decay`` ||W||^2 over both weight
    matrices, ``train_steps`` full-batch Adam steps, learning rate 1e-2), and its training
    and held-out (calibration period) errors beside those of the random-walk forecast (0:
    no change)."""
    log_price = goog_log_prices()
    T = len(log_price)
    train_end, cal_end = (int(q * T) for q in GOOG_SPLIT)
    scale = float(np.std(np.diff(log_price[:train_end])))
    w, h = config.window, config.horizon
    fit_days = np.arange(w - 1, train_end - h)
    held_days = np.arange(train_end + w - 1, cal_end - h)
    X, Y = (jnp.asarray(a) for a in (windows(log_price, fit_days, w, scale),
                                      targets(log_price, fit_days, h, scale)))
    params = jax.tree.map(lambda a: a.astype(jnp.float32),
                          random_network(key, w, config.hidden, h))
    optimizer = optax.adam(1e-2)

    def loss(params, X, Y):
        return jnp.mean((tanh_network(params, X) - Y) ** 2)

    def penalised(params):
        W1, _, W2 = params
        return loss(params, X, Y) + config.weight_decay * (jnp.sum(W1 ** 2) + jnp.sum(W2 ** 2))

    @jax.jit
    def fit(params):
        def step(carry, _):
            params, state = carry
            value, grads = jax.value_and_grad(penalised)(params)
            # optax's Adam raises a Python float to the int32 step count, which strict
            # dtype promotion (a user's setting, and the test suite's) rejects
            with jax.numpy_dtype_promotion("standard"):
                updates, state = optimizer.update(grads, state)
            return (optax.apply_updates(params, updates), state), value

        return jax.lax.scan(step, (params, optimizer.init(params)), length=config.train_steps)

    (params, _), _ = fit(params)
    X_held = jnp.asarray(windows(log_price, held_days, w, scale))
    Y_held = jnp.asarray(targets(log_price, held_days, h, scale))
    info = {"log_price_days": T, "periods": [0, train_end, cal_end, T], "scale": scale,
            "train_mse": float(loss(params, X, Y)),
            "train_mse_no_change": float(jnp.mean(Y ** 2)),
            "heldout_mse": float(loss(params, X_held, Y_held)),
            "heldout_mse_no_change": float(jnp.mean(Y_held ** 2))}
    return functools.partial(tanh_network, params), info


def goog_sequences(K: int, config: StructuredConfig, info: dict) -> Sequences:
    """The price windows at K: calibration sequences from the calibration period,
    evaluation sequences from the evaluation period (``info["periods"]``, from
    ``train_forecaster``); no labels."""
    log_price = goog_log_prices()
    _, train_end, cal_end, T = info["periods"]
    return Sequences(
        jnp.asarray(period_sequences(log_price, train_end, cal_end, K, info["scale"], config)),
        jnp.asarray(period_sequences(log_price, cal_end, T, K, info["scale"], config)),
        None, None)


# ------------------------------------------------------------------ scoring
def smoothness(outputs: np.ndarray, X: jax.Array, perm: np.ndarray, fallback) -> dict:
    """How smooth a family is along its given order, on the evaluation sequences X
    (B, K, d) with f's outputs (B, K, m): ``path_ratio`` (input path length, given / random
    order), ``step_ratio`` (mean ||f(x_{k+1}) - f(x_k)||^2 / the mean over all pairs j != k,
    which is 2K/(K-1) times the mean squared distance to the sequence's mean output) and
    ``spread`` = mean ||f(x_k) - fallback||^2."""
    X = np.asarray(X, np.float64)
    K = X.shape[1]
    path = np.mean([lc.path_length(x) / lc.path_length(x, perm) for x in X])
    steps = np.mean(np.sum(np.diff(outputs, axis=1) ** 2, axis=-1))
    centred = outputs - outputs.mean(axis=1, keepdims=True)
    pairs = 2 * K / (K - 1) * np.mean(np.sum(centred ** 2, axis=-1))
    spread = np.mean(np.sum((outputs - np.asarray(fallback, np.float64)) ** 2, axis=-1))
    return {"path_ratio": float(path), "step_ratio": float(steps / pairs),
            "spread": float(spread)}


def sampled(result) -> dict:
    """The row fields of a Monte Carlo result (per field (B, trials)), pooled over draws and
    sequences by ``_common.pool``."""
    p = pool([result])
    return {"mse": p["mse_mean"], "root_mse": p["root_mean_mse"], "relacc": p["relacc_mean"],
            "mse_std": p["mse_std"], "relacc_std": p["relacc_std"],
            "failure_rate": p["failure_rate"],
            "lost_share": float(1 - np.mean(np.asarray(result.recovered, np.float64)))}


def replication(f, scheme, seq: Sequences, outputs: np.ndarray, stragglers) -> dict:
    """Replication's row fields, exact: E[MSE] (``lc.replication_loss``) averaged over the
    evaluation sequences, the probability that a draw loses an input, the expected share of
    inputs lost, and the expected RelAcc. Input k is lost with probability p_k and then
    estimated by the fallback, otherwise exactly, so per sequence E[acc(argmax f_hat)] =
    (1/K) sum_k [(1 - p_k) hit(f(x_k)) + p_k hit(fallback)], a constant times RelAcc
    (sequences where f gets none right are left out, as in ``_common.pool``)."""
    loss = lc.replication_loss(f, scheme, seq.X_eval, stragglers=stragglers)
    mse = float(np.mean(np.asarray(loss.mse, np.float64)))
    p_lost = np.asarray(loss.p_lost, np.float64)
    relacc = float("nan")
    if seq.y_eval is not None:
        labels = np.asarray(seq.y_eval)
        hit = (outputs.argmax(-1) == labels).astype(np.float64)
        guess = (int(np.argmax(scheme.fallback)) == labels).astype(np.float64)
        accuracy = hit.mean(axis=1)
        defined = accuracy > 0
        if defined.any():
            expected = ((1 - p_lost) * hit + p_lost * guess).mean(axis=1)
            relacc = float(np.mean(expected[defined] / accuracy[defined]))
    return {"mse": mse, "root_mse": float(np.sqrt(mse)), "relacc": relacc,
            "failure_rate": float(replication_loss_probability(scheme, stragglers)),
            "lost_share": float(p_lost.mean())}


def interpolated_replication(scheme, seq: Sequences, outputs: np.ndarray, stragglers,
                             trials: int, key) -> dict:
    """Row fields of replication that estimates a lost input from its neighbours in the
    given order instead of the fallback: linear interpolation over k between the nearest
    recovered inputs on either side (the nearest one beyond the ends; the fallback if none
    is recovered). What a practitioner with a sequence would do; Monte Carlo over
    ``trials`` straggler draws shared by all sequences, computed from f's outputs (B, K, m)
    on the evaluation sequences."""
    masks = np.asarray(jax.vmap(lambda k: stragglers.sample(k, scheme.N))(
        jax.random.split(key, trials)))
    owners = np.asarray(scheme.owners())
    recovered = np.stack([np.bincount(owners[alive], minlength=scheme.K) > 0
                          for alive in masks])  # (trials, K)
    k = np.arange(scheme.K)
    fallback = np.asarray(scheme.fallback, np.float64)
    estimates = np.empty((trials, *outputs.shape))  # (trials, B, K, m)
    for t, known in enumerate(recovered):
        if not known.any():
            estimates[t] = fallback
            continue
        for b, j in np.ndindex(outputs.shape[0], outputs.shape[2]):
            estimates[t, b, :, j] = np.interp(k, k[known], outputs[b, known, j])
    mse = np.mean(np.sum((estimates - outputs) ** 2, axis=-1), axis=-1)  # (trials, B)
    relacc = float("nan")
    if seq.y_eval is not None:
        labels = np.asarray(seq.y_eval)
        accuracy = np.mean(outputs.argmax(-1) == labels, axis=-1)  # (B,)
        defined = accuracy > 0
        if defined.any():
            hits = np.mean(estimates.argmax(-1) == labels, axis=-1)  # (trials, B)
            relacc = float(np.mean(hits[:, defined] / accuracy[defined]))
    value = float(np.mean(mse))
    return {"mse": value, "root_mse": float(np.sqrt(value)), "relacc": relacc,
            "mse_std": float(np.std(mse)), "failure_rate": float(np.mean(~recovered.all(1))),
            "lost_share": float(1 - np.mean(recovered))}


def random_stragglers(f, seq: Sequences, outputs, fallback, K, N, model, orders,
                      config: StructuredConfig, key, pad=padder(None)
                      ) -> tuple[list[dict], np.ndarray]:
    """Rows of LeTCC and BACC in both orders and of replication under one random straggler
    model, and LeTCC's chosen lam_dec per order (2,). ``pad``: the simulated schemes'
    padding (``Scheme.pad_workers``; the numbers stay the unpadded ones)."""
    mc = functools.partial(lc.monte_carlo, f, trials=config.trials, stragglers=model)
    k_cal, k_eval = jax.random.split(key)
    grid = jnp.asarray(config.lam_dec_grid, jnp.float32)
    # (orders, lam_dec) sweep; calibration and evaluation share its compiled program
    swept = pad(lc.letcc(K, N, order=orders[:, None, :], fallback=fallback).replace(
        lam_dec=grid))
    calibration = mc(swept, seq.X_cal, k_cal, labels=seq.y_cal)
    best = np.nanargmin(np.asarray(calibration.mse, np.float64).mean(axis=(-2, -1)), axis=1)
    evaluation = mc(swept, seq.X_eval, k_eval, labels=seq.y_eval)
    results = {"letcc": jax.tree.map(lambda a: a[np.arange(len(ORDERS)), best], evaluation),
               "bacc": mc(pad(lc.bacc(K, N, order=orders, fallback=fallback)), seq.X_eval,
                          k_eval, labels=seq.y_eval)}
    lams = np.asarray(config.lam_dec_grid)[best]
    rows = []
    for name, order in CURVES[:4]:
        o = ORDERS.index(order)
        rows.append({"scheme": name, "order_method": order,
                     **sampled(jax.tree.map(lambda a: a[o], results[name])),
                     "lam_dec": float(lams[o]) if name == "letcc" else None})
    scheme = lc.uncoded(K, N, fallback=fallback)
    rows.append({"scheme": "uncoded", "order_method": "given",
                 **replication(f, scheme, seq, outputs, model), "lam_dec": None})
    rows.append({"scheme": "uncoded_interp", "order_method": "given",
                 **interpolated_replication(scheme, seq, outputs, model, config.interp_trials,
                                            k_eval), "lam_dec": None})
    return rows, lams


def worst_stragglers(f, seq: Sequences, fallback, K, N, S, orders, lams,
                     config: StructuredConfig, pad=padder(None)) -> list[dict]:
    """Rows of every scheme and order under its worst S stragglers on the first evaluation
    sequence; LeTCC keeps the lam_dec chosen for S random stragglers (``lams``, per
    order). ``pad`` as in :func:`random_stragglers`."""
    schemes = [("letcc", order, lc.letcc(K, N, order=orders[o], lam_dec=float(lams[o]),
                                         fallback=fallback))
               for o, order in enumerate(ORDERS)]
    schemes += [("bacc", order, lc.bacc(K, N, order=orders[o], fallback=fallback))
                for o, order in enumerate(ORDERS)]
    schemes.append(("uncoded", "given", lc.uncoded(K, N, fallback=fallback)))
    rows = []
    for name, order, scheme in schemes:
        worst = lc.worst_stragglers(f, pad(scheme), seq.X_eval[0], S, restarts=0,
                                    max_rounds=config.worst_max_rounds, seed=config.seed)
        rows.append({"scheme": name, "order_method": order, "mse": float(worst.mse),
                     "root_mse": float(np.sqrt(worst.mse)), "relacc": float("nan"),
                     "worst_exact": worst.exact, "worst_stragglers": worst.stragglers.tolist(),
                     "lam_dec": float(scheme.lam_dec) if name == "letcc" else None})
    return rows


def run_setting(f, fname: str, families: dict, K: int, ratio: float,
                config: StructuredConfig, key, padded_to: int | None = None) -> list[dict]:
    """Every row at one (K, N = round(ratio K)) for the families that share f.
    ``families``: name -> (Sequences, f's outputs on X_eval (B, K, m), fallback (m,),
    smoothness dict). With ``padded_to``, the simulated schemes are padded to that many
    workers (``Scheme.pad_workers``): settings padded to one N share their compiled
    programs, with the unpadded numbers (replication's exact loss takes the unpadded
    scheme)."""
    N = round(ratio * K)
    pad = padder(padded_to)
    S = round(config.S_fraction * N)
    orders = np.stack([np.arange(K), random_order(K, config.seed)])
    models = {"exact": lc.ExactStragglers(S), "bernoulli": lc.BernoulliStragglers(config.p)}
    rows = []
    for j, (family, (seq, outputs, fallback, smooth)) in enumerate(families.items()):
        base = {"experiment": "structured", "family": family, "f": fname, "K": K, "N": N,
                "ratio": N / K, "structure": "sequential"}
        extra = {**smooth, "trials": config.trials, "sequences": config.batches}
        for i, kind in enumerate(config.stragglers):
            scored, chosen = random_stragglers(f, seq, outputs, fallback, K, N, models[kind],
                                               orders, config,
                                               jax.random.fold_in(jax.random.fold_in(key, j), i),
                                               pad)
            if kind == "exact":
                lams = chosen
            given = {"stragglers": kind, "S": S if kind == "exact" else None,
                     "p": config.p if kind == "bernoulli" else None}
            rows += [{**base, **given, **r, **extra} for r in scored]
        if K in config.worst_K:
            scored = worst_stragglers(f, seq, fallback, K, N, S, orders, lams, config, pad)
            rows += [{**base, "stragglers": "worst", "S": S, "p": None, **r, **extra}
                     for r in scored]
    for r in rows:
        r["nmse"] = r["mse"] / r["spread"]
    return rows


def prepare(f, families: dict[str, Sequences], K: int, seed: int) -> dict:
    """name -> (Sequences, f's outputs on X_eval (B, K, m) float64, the fallback (m,),
    smoothness dict): what ``run_setting`` needs besides the sizes."""
    perm = random_order(K, seed)
    apply = jax.jit(jax.vmap(jax.vmap(f)))
    out = {}
    for name, seq in families.items():
        fallback = calibration_mean(f, seq.X_cal)
        outputs = np.asarray(apply(seq.X_eval), np.float64)
        out[name] = (seq, outputs, fallback, smoothness(outputs, seq.X_eval, perm, fallback))
    return out


def run(config: StructuredConfig, progress=True) -> tuple[list[dict], dict]:
    """(rows, models): every row, and what each f is (test accuracy, or the forecaster's
    training and held-out errors)."""
    key = jax.random.PRNGKey(config.seed)
    groups, models = [], {}  # (f, f's name, family -> sequences for a K)
    images = [fam for fam in config.families if fam in IMAGE_FAMILIES]
    if images:
        ds = load_data("fashion_mnist")
        n = 4 * config.batches
        split = calibration_split(ds, n, n, seed=config.seed)
        for model in config.models:
            f, accuracy = model_function(model, ds, config.untrained, train=config.train)
            models[model] = {"dataset": "fashion_mnist", "test_accuracy": accuracy}

            def make(K, split=split, images=images):
                return {fam: image_family(fam, split, K, config) for fam in images}

            groups.append((f, model, make))
    if "goog" in config.families:
        f, info = train_forecaster(config, jax.random.fold_in(key, 1))
        models["goog_mlp"] = info
        groups.append((f, "goog_mlp", lambda K: {"goog": goog_sequences(K, config, info)}))
    jobs = [(g, K, ratio) for g in range(len(groups)) for K in config.K
            for ratio in config.ratios]
    sizes = {K: padded_sizes([round(r * K) for r in config.ratios], config.bucket_ratio)
             for K in config.K}
    padded = {(K, r): sizes[K][round(r * K)] for K in config.K for r in config.ratios}
    shared = [(g, K, padded[K, ratio]) for g, K, ratio in jobs]
    rows, prepared = [], {}
    for i, (g, K, ratio) in enumerate(tqdm(jobs, desc="settings", disable=not progress)):
        f, fname, make = groups[g]
        if (g, K) not in prepared:
            prepared = {(g, K): prepare(f, make(K), K, config.seed)}
        start = time.perf_counter()
        setting = run_setting(f, fname, prepared[(g, K)], K, ratio, config,
                              jax.random.fold_in(key, 1000 * K + round(100 * ratio)),
                              padded_to=padded[K, ratio])
        if ends_group(shared, i):
            jax.clear_caches()
        seconds = round(time.perf_counter() - start, 2)
        rows += [{**r, "padded_to": padded[K, ratio], "setting_seconds": seconds}
                 for r in setting]
    return rows, models


# ------------------------------------------------------------------ tables and figures
def _row(rows, family, fname, K, ratio, kind, scheme, order) -> dict | None:
    return next((r for r in rows if (r["family"], r["f"], r["K"], r["ratio"], r["stragglers"],
                                     r["scheme"], r["order_method"])
                 == (family, fname, K, ratio, kind, scheme, order)), None)


def _panels(rows, kind) -> list[tuple]:
    """(family, f, K) of every panel of ``kind``, in run order."""
    return list(dict.fromkeys((r["family"], r["f"], r["K"]) for r in rows
                              if r["stragglers"] == kind))


def _ratios(rows) -> list[float]:
    return sorted({r["ratio"] for r in rows})


def loss_table(rows, kind: str) -> str:
    """Markdown: per (family, f, K, N/K) under ``kind``, E[MSE] (√E[MSE]) and RelAcc of
    every scheme and order that has rows under ``kind``."""
    curves = [c for c in CURVES
              if any((r["stragglers"], r["scheme"], r["order_method"]) == (kind, *c)
                     for r in rows)]
    body = []
    for family, fname, K in _panels(rows, kind):
        for ratio in _ratios(rows):
            cells = []
            for scheme, order in curves:
                r = _row(rows, family, fname, K, ratio, kind, scheme, order)
                if r is None:
                    cells.append("")
                    continue
                bound = "≥" if kind == "worst" and not r["worst_exact"] else ""
                acc = f" · {r['relacc']:.3f}" if np.isfinite(r["relacc"]) else ""
                cells.append(f"{bound}{r['mse']:.3g} ({r['root_mse']:.3g}){acc}")
            if any(cells):
                body.append([family, fname, K, f"{ratio:g}"] + cells)
    return markdown_table(["family", "f", "K", "N/K"] + [LABELS[c] for c in curves], body)


def winners_table(rows, baseline: str = "uncoded") -> str:
    """Markdown: per (family, f, K, stragglers) and N/K, the better of the codes in the
    given order against ``baseline`` ("uncoded": replication with the fallback;
    "uncoded_interp": replication interpolating lost inputs): "LeTCC ×3" = LeTCC's E[MSE]
    is 3x below the baseline's; "repl. ×3" = the baseline's is 3x below the better
    code's. Settings without the baseline are left out."""
    body = []
    for kind in ("exact", "bernoulli", "worst"):
        for family, fname, K in _panels(rows, kind):
            cells = []
            for ratio in _ratios(rows):
                get = functools.partial(_row, rows, family, fname, K, ratio, kind)
                coded = [get(s, "given") for s in ("letcc", "bacc")]
                rep = get(baseline, "given")
                if rep is None or None in coded:
                    cells.append("")
                    continue
                best = min(coded, key=lambda r: r["mse"])
                cells.append(winner(best, rep))
            if any(cells):
                body.append([family, fname, K, kind] + cells)
    return markdown_table(["family", "f", "K", "stragglers"]
                          + [f"N/K = {r:g}" for r in _ratios(rows)], body)


def winner(coded: dict, rep: dict) -> str:
    """"LeTCC ×f" or "repl. ×f": who has the lower E[MSE] and by what factor."""
    if coded["mse"] < rep["mse"]:
        return f"**{NAMES[coded['scheme']]}** ×{rep['mse'] / coded['mse']:.3g}"
    name = NAMES[rep["scheme"]]
    return f"{name} ×{coded['mse'] / rep['mse']:.3g}" if rep["mse"] > 0 else f"{name} (exact)"


def order_table(rows) -> str:
    """Markdown: per (family, f, K, stragglers) and N/K, E[MSE] in the random order over
    E[MSE] in the given order, for LeTCC and BACC (above 1: the natural order helps)."""
    body = []
    for kind in ("exact", "bernoulli", "worst"):
        for family, fname, K in _panels(rows, kind):
            cells = []
            for ratio in _ratios(rows):
                gains = []
                for scheme in ("letcc", "bacc"):
                    given, random = (_row(rows, family, fname, K, ratio, kind, scheme, o)
                                     for o in ORDERS)
                    if given is not None and random is not None:
                        gains.append(f"{random['mse'] / given['mse']:.3g}")
                cells.append(" / ".join(gains))
            body.append([family, fname, K, kind] + cells)
    return markdown_table(["family", "f", "K", "stragglers"]
                          + [f"N/K = {r:g}: LeTCC / BACC" for r in _ratios(rows)], body)


def smoothness_table(rows) -> str:
    """Markdown: per (family, f, K), the family's smoothness along its given order."""
    body = []
    for family, fname, K in dict.fromkeys((r["family"], r["f"], r["K"]) for r in rows):
        r = next(r for r in rows if (r["family"], r["f"], r["K"]) == (family, fname, K))
        body.append([family, fname, K, f"{r['path_ratio']:.3f}", f"{r['step_ratio']:.3g}",
                     f"{r['spread']:.3g}"])
    return markdown_table(["family", "f", "K", "path ratio (given / random)",
                           "step ratio (neighbours / all pairs)",
                           "spread = mean ‖f − fallback‖²"], body)


def plot(rows, out) -> list:
    """One figure per straggler model, ``structured_<kind>.png`` in ``out``: E[MSE]
    against N/K, a panel per (K, family), a curve per scheme and order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {("letcc", "given"): ("C0", "-", "o"), ("letcc", "random"): ("C0", "--", "o"),
              ("bacc", "given"): ("C1", "-", "s"), ("bacc", "random"): ("C1", "--", "s"),
              ("uncoded", "given"): ("C2", "-", "^"),
              ("uncoded_interp", "given"): ("C3", "-", "v")}
    titles = {"exact": "exactly S = 0.2N random stragglers",
              "bernoulli": "each worker straggles with p = 0.2",
              "worst": "the worst S = 0.2N stragglers (search: a lower bound)"}
    paths = []
    for kind in ("exact", "bernoulli", "worst"):
        panels = _panels(rows, kind)
        if not panels:
            continue
        Ks = list(dict.fromkeys(p[2] for p in panels))
        columns = list(dict.fromkeys(p[:2] for p in panels))
        fig, axes = plt.subplots(len(Ks), len(columns), squeeze=False,
                                 figsize=(3.4 * len(columns), 2.9 * len(Ks) + 0.9))
        for (i, K), (j, (family, fname)) in ((a, b) for a in enumerate(Ks)
                                             for b in enumerate(columns)):
            ax = axes[i][j]
            for curve, (color, line, marker) in styles.items():
                points = [(r["ratio"], r["mse"]) for r in rows
                          if (r["family"], r["f"], r["K"], r["stragglers"], r["scheme"],
                              r["order_method"]) == (family, fname, K, kind, *curve)]
                if points:
                    x, y = zip(*sorted(points))
                    ax.semilogy(x, np.maximum(y, 1e-12), color=color, linestyle=line,
                                marker=marker, ms=4, label=LABELS[curve])
            ax.set_title(f"{family} ({fname}), K = {K}", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
            if i == len(Ks) - 1:
                ax.set_xlabel("N / K")
            if j == 0:
                ax.set_ylabel("E[MSE]")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=len(handles), fontsize=8)
        fig.suptitle(f"Naturally structured inputs: {titles[kind]}", fontsize=10)
        fig.tight_layout(rect=(0, 0.05, 1, 1))
        path = out / f"structured_{kind}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def report(rows, models, config: StructuredConfig, seconds, out):
    """Prints the Markdown tables; writes results.json, results.csv, table.md and the figures to
    ``out``. Returns the rows."""
    sections = [f"## Naturally structured inputs ({config.name} config)", METRIC_NOTE,
                "### Smoothness of each family along its given order", smoothness_table(rows),
                "### Who wins: the better code (given order) against replication, by E[MSE]",
                winners_table(rows),
                "### Against replication that interpolates a lost input from its neighbours",
                winners_table(rows, "uncoded_interp"),
                "### The natural order's gain: E[MSE] in the random order / in the given order",
                order_table(rows)]
    for kind in ("exact", "bernoulli", "worst"):
        if _panels(rows, kind):
            sections += [f"### E[MSE] (√E[MSE]) · RelAcc, {kind} stragglers",
                         loss_table(rows, kind)]
    text = "\n\n".join(sections) + f"\n\nModels: {models}. Time {seconds:.0f} s.\n"
    print("\n" + text)
    write_results(out, config, rows, models=models, seconds=seconds)
    (out / "table.md").write_text(text)
    figures = plot(rows, out)
    print(f"structured: wrote {out}/results.json, results.csv, table.md, "
          + ", ".join(p.name for p in figures))
    return rows


def main(argv=None):
    """The command line (``--help``); returns the rows."""
    return experiment_main(
        argv, __name__, STRUCTURED,
        untrained_help="randomly initialised image models (no training, no cache): for tests")


if __name__ == "__main__":
    main()
