"""Regimes where coding can win: few workers, systematic nodes, near-linear f, output noise.

Table 1 and the probabilistic sweep found replication's loss lowest whenever it has a
replica per input; these four studies look where that need not hold. Every study codes K
inputs for N workers, compares LeTCC, BACC and replication on the same inputs and the same
straggler (and noise) draws, and runs twice: inputs in a random order along the encoder
nodes, and in a nearest-neighbour chain through the pixels (``letcc_jax.order_inputs``).

- ``few_workers`` (N < K, one round): LeTCC and BACC decode all K inputs from N = K/2 ..
  K workers, S = qN exactly or each with probability p = q. Replication cannot hold every
  input: N random inputs get a worker each, and an input without a worker or whose only
  replica straggles is estimated by the fallback (exact expected loss). Its second round,
  which recomputes what is missing, is timed under a stated latency model
  (:func:`round_latencies`).
- ``systematic`` (1 < N/K < 2): worker points that contain the data nodes
  (:func:`systematic_points`), so a surviving systematic worker returns f(x_k) itself,
  against the default Chebyshev points and replication; S = qN, p = q, and the worst S.
- ``near_linear``: f(x) = tanh(c W x), a fixed random W, over c x N/K (the phase diagram).
- ``noise``: GaussianNoise(sigma) on every worker's output, sigma relative to the RMS of f's
  outputs; LeTCC's lam_dec chosen per sigma; replication averages its replicas.

Each study pads its codes to its largest N (``Scheme.pad_workers``: the padding never
answers, and each N draws what it draws unpadded), so it compiles one program per scheme
and straggler model, not one per N. LeTCC's lam_dec is chosen per setting (and order,
noise level, points) on ``batches``
calibration batches, disjoint from the ``batches`` evaluation batches, with lam_enc = 0.
Every scheme gets the same fallback, the mean output of f on the calibration inputs, for
an input its decoder cannot recover. Replication is scored by its exact expected loss
(``letcc_jax.replication_loss``), never by Monte Carlo; its worst case comes from
``letcc_jax.worst_stragglers``, like the codes'.

Metrics: per straggler draw MSE = (1/K) sum_k ||f_hat(x_k) - f(x_k)||^2 on the outputs
(LeNet-5's logits); the headline is the paper's loss E[MSE], the mean over draws and
evaluation batches (replication: the exact expectation, averaged over the batches), and
sqrt(E[MSE]) in the outputs' units. RelAcc = accuracy of argmax f_hat against the labels /
accuracy of argmax f (LeNet-5 only; replication's is its exact expectation without noise;
NaN for replication with noise, for the worst cases and for the synthetic f). The worst
cases report the loss of the one worst straggler set on the first evaluation batch.

    python -m experiments.regimes                          # cpu config, all four studies
    python -m experiments.regimes --study systematic noise # a subset
    python -m experiments.regimes --smoke --untrained      # seconds
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

import letcc_jax as lc
from experiments._common import load_data, model_function, tanh_network
from experiments._io import experiment_main, markdown_table, write_results
from experiments.configs import REGIME_STUDIES, REGIMES, RegimesConfig
from letcc_jax.zoo.data import calibration_split

#: The order axis of every sweep, in this order; the row's ``structure`` for each.
ORDERS = ("nearest_neighbour", "random")
STRUCTURE = {"nearest_neighbour": "ordered", "random": "random"}
#: The systematic study's point sets, in the order of its beta sweep axis.
POINTS = ("systematic", "chebyshev")
NAMES = {"letcc": "LeTCC", "bacc": "BACC", "uncoded": "replication"}
LETTER = {"letcc": "L", "bacc": "B", "uncoded": "R"}

METRIC_NOTE = (
    "Per straggler draw MSE = (1/K) Σ_k ||f̂(x_k) − f(x_k)||² on f's outputs (LeNet-5's "
    "logits); the cells give the loss E[MSE], the mean over the draws and the evaluation "
    "batches (replication: its exact expectation, `replication_loss`), with √E[MSE] in "
    "brackets. RelAcc = acc(argmax f̂ vs labels) / acc(argmax f vs labels). Every scheme "
    "estimates an input it cannot recover by the same fallback, the mean output of f on the "
    "calibration inputs. LeTCC: lam_enc = 0, lam_dec chosen on disjoint calibration batches. "
    "Order: nn = nearest-neighbour chain through the pixels, random = a random order. "
    "coded/repl. = the best code's loss / replication's (below 1: coding wins)."
)


class Stragglers(NamedTuple):
    """A straggler setting: ``kind`` ("exact", "bernoulli" or "worst"), S or p (the other
    None), and its model (None for "worst")."""

    kind: str
    S: int | None
    p: float | None
    model: lc.StragglerModel | None


def straggler_settings(N: int, q: float, kinds) -> list[Stragglers]:
    """Exactly S = round(qN) of the N workers straggle ("exact"), and/or each does with
    probability p = q ("bernoulli")."""
    S = round(q * N)
    return [Stragglers("exact", S, None, lc.ExactStragglers(S)) if kind == "exact"
            else Stragglers("bernoulli", None, q, lc.BernoulliStragglers(q)) for kind in kinds]


@dataclasses.dataclass(frozen=True)
class Inputs:
    """A study's data: f; ``X_cal`` and ``X_eval`` (C, K, d), C disjoint batches each; their
    orders ``orders_cal`` and ``orders_eval`` (C, 2, K), per batch the nearest-neighbour
    chain and a random permutation (``ORDERS``); their ``labels_cal`` and ``labels_eval``
    (C, K), or None; the ``fallback`` (m,), the mean of f over every calibration input;
    and ``fallback_mse``, the loss of answering the fallback for every evaluation input,
    mean_k ||f(x_k) - fallback||^2 (what a scheme that recovers nothing scores)."""

    f: object
    X_cal: jax.Array
    X_eval: jax.Array
    orders_cal: np.ndarray
    orders_eval: np.ndarray
    labels_cal: jax.Array | None
    labels_eval: jax.Array | None
    fallback: jax.Array
    fallback_mse: float


def node_orders(X, rng: np.random.Generator) -> np.ndarray:
    """(C, 2, K) orders of the batches X (C, K, d): the nearest-neighbour chain through the
    rows and a random permutation (``ORDERS``)."""
    X = np.asarray(X)
    return np.stack([np.stack([lc.order_inputs(x), rng.permutation(len(x))]) for x in X])


@functools.partial(jax.jit, static_argnums=0)
def outputs(f, X) -> jax.Array:
    """f on every input of the batches X (C, K, d): (C, K, m). Jitted (one program per f
    and shape): eager, each layer of a network compiles on its own."""
    return jax.vmap(jax.vmap(f))(X)


def make_inputs(f, X_cal, X_eval, labels, orders) -> Inputs:
    """The ``Inputs`` of f on these batches; ``labels`` = (labels_cal, labels_eval) or None,
    ``orders`` = (orders_cal, orders_eval)."""
    Y_cal = outputs(f, X_cal)
    fallback = jnp.mean(Y_cal.reshape(-1, Y_cal.shape[-1]), axis=0)
    fallback_mse = float(jnp.mean(jnp.sum((outputs(f, X_eval) - fallback) ** 2, axis=-1)))
    return Inputs(f, X_cal, X_eval, *orders, *(labels or (None, None)), fallback, fallback_mse)


def image_batches(config: RegimesConfig):
    """(dataset, X_cal, X_eval, labels): ``batches`` calibration and as many disjoint
    evaluation batches of K flattened Fashion-MNIST test images (C, K, 784), and their
    labels (labels_cal, labels_eval), (C, K) each."""
    ds = load_data("fashion_mnist")
    C, K = config.batches, config.K
    split = calibration_split(ds, C * K, C * K, seed=config.seed)
    return (ds, jnp.asarray(split.x_cal.reshape(C, K, -1)),
            jnp.asarray(split.x_eval.reshape(C, K, -1)),
            (jnp.asarray(split.y_cal.reshape(C, K)), jnp.asarray(split.y_eval.reshape(C, K))))


def near_linear_function(X_cal, m: int, seed: int):
    """f(x) = tanh(x W) with W (d, m) Gaussian, each column scaled so that x W has unit RMS
    over the calibration inputs X_cal (C, K, d): tanh(c x W) is then near-linear for c << 1
    and a saturated step for c >> 1. (The two-layer ``tanh_network`` with an identity
    output layer and no bias.)"""
    X = X_cal.reshape(-1, X_cal.shape[-1])
    W = jax.random.normal(jax.random.PRNGKey(seed), (X.shape[1], m), X.dtype)
    W = W / jnp.sqrt(jnp.mean((X @ W) ** 2, axis=0))
    return functools.partial(tanh_network, (W, jnp.zeros(m, X.dtype), jnp.eye(m, dtype=X.dtype)))


# ------------------------------------------------------------------ evaluation
def padded_size(K: int, ratios) -> int:
    """The N every setting of a study is padded to (``Scheme.pad_workers``): its largest.
    Padded workers never answer and the draws among the others are unchanged, so each N
    scores what it scores unpadded, and the study compiles one program per scheme and
    straggler model instead of one per N."""
    return max(round(ratio * K) for ratio in ratios)


def monte_carlo_batches(inputs: Inputs, make, X, orders, key, trials: int, stragglers,
                        faults=(), labels=None):
    """``lc.monte_carlo`` on each batch of X (C, K, d) with the scheme ``make(orders[b])``
    (the batch's own orders, (2, K), on the scheme's order sweep axis). Batch b draws with
    ``fold_in(key, b)`` for every scheme: common straggler and noise draws.

    Returns:
      (mse, relacc), per-trial values of shape (*grid, C, trials) (relacc None without
      labels).
    """
    results = [lc.monte_carlo(inputs.f, make(orders[b]), X[b], jax.random.fold_in(key, b),
                              trials=trials, stragglers=stragglers, faults=faults,
                              labels=None if labels is None else labels[b])
               for b in range(X.shape[0])]
    mse = np.stack([np.asarray(r.mse, np.float64) for r in results], axis=-2)
    if labels is None:
        return mse, None
    return mse, np.stack([np.asarray(r.relacc, np.float64) for r in results], axis=-2)


def letcc_chosen(inputs: Inputs, make, grid, key, trials: int, stragglers, faults=()):
    """LeTCC with lam_dec chosen on the calibration batches, per point of the other sweep
    axes; ``make(order)`` builds the scheme swept over ``grid`` on its last axis.

    Returns:
      (mse, relacc, lam): evaluation per-trial values (*grid, C, trials) at the chosen
      lam_dec (relacc None without labels) and the chosen lam_dec (*grid) (grid without
      its last axis). Calibration and evaluation share one compiled program (both with
      labels, or both without).
    """
    k_cal, k_eval = jax.random.split(key)
    cal, _ = monte_carlo_batches(inputs, make, inputs.X_cal, inputs.orders_cal, k_cal, trials,
                                 stragglers, faults, inputs.labels_cal)
    mse, relacc = monte_carlo_batches(inputs, make, inputs.X_eval, inputs.orders_eval, k_eval,
                                      trials, stragglers, faults, inputs.labels_eval)
    best = np.argmin(np.mean(cal, axis=(-2, -1)), axis=-1)

    def pick(values):
        return np.take_along_axis(values, best[..., None, None, None], axis=-3)[..., 0, :, :]

    return pick(mse), None if relacc is None else pick(relacc), np.asarray(grid)[best]


def eval_key(key):
    """The evaluation key of ``letcc_chosen``: the codes without a parameter to choose run
    on it, so they see LeTCC's straggler and noise draws."""
    return jax.random.split(key)[1]


def replication_batches(inputs: Inputs, K: int, N: int, stragglers, faults=()):
    """Replication's exact loss on each evaluation batch, the batch's orders on the sweep
    axis: mse (*grid, C) and p_lost (*grid, C, K), grid = (2,) (the orders) broadcast with
    the faults' sweep axes."""
    losses = [lc.replication_loss(inputs.f, lc.uncoded(K, N, order=inputs.orders_eval[b],
                                                       fallback=inputs.fallback),
                                  inputs.X_eval[b], stragglers=stragglers, faults=faults)
              for b in range(inputs.X_eval.shape[0])]
    return (np.stack([np.asarray(r.mse, np.float64) for r in losses], axis=-1),
            np.stack([np.asarray(r.p_lost, np.float64) for r in losses], axis=-2))


def replication_relacc(inputs: Inputs, p_lost) -> np.ndarray:
    """Replication's exact expected RelAcc without noise, per evaluation batch: input k is
    f(x_k) with probability 1 - p_lost and the fallback otherwise. p_lost (*grid, C, K);
    returns (*grid, C); NaN where f classifies nothing right."""
    Y = np.asarray(outputs(inputs.f, inputs.X_eval))
    labels = np.asarray(inputs.labels_eval)
    right = (Y.argmax(-1) == labels).astype(np.float64)                       # (C, K)
    fallback_right = (int(np.argmax(np.asarray(inputs.fallback))) == labels).astype(np.float64)
    accuracy = right.mean(-1)
    expected = ((1.0 - p_lost) * right + p_lost * fallback_right).mean(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(accuracy > 0, expected / accuracy, np.nan)


def row(inputs: Inputs, study: str, f: str, N: int, order: str, stragglers: Stragglers,
        scheme: str, mse, relacc=None, **extra) -> dict:
    """One results row: the common fields, then ``extra``. ``mse`` holds the values whose
    mean is E[MSE] (per-draw values, or replication's exact per-batch expectations);
    ``fallback_mse`` is the loss of answering the fallback for every input."""
    mse = np.asarray(mse, np.float64)
    mean = float(np.mean(mse))
    relacc = np.asarray(np.nan if relacc is None else relacc, np.float64)
    finite = relacc[np.isfinite(relacc)]
    K = inputs.X_eval.shape[1]
    return {"experiment": "regimes", "study": study, "f": f, "K": K, "N": N, "ratio": N / K,
            "structure": STRUCTURE[order], "order_method": order,
            "stragglers": stragglers.kind, "S": stragglers.S, "p": stragglers.p,
            "scheme": scheme, "mse": mean, "root_mse": math.sqrt(mean),
            "relacc": float(finite.mean()) if finite.size else float("nan"),
            "mse_std": float(np.std(mse)), "values": int(mse.size),
            "fallback_mse": inputs.fallback_mse, **extra}


# ------------------------------------------------------------------ (c) N < K
def one_round_replication(inputs: Inputs, K: int, N: int, st: Stragglers):
    """Replication with N < K workers in one round: N of the K inputs, chosen uniformly at
    random, get one worker each, and an input without a worker, or whose worker straggles
    (probability P = S/N or p), gets the fallback. Exact in expectation over the draw of
    the held inputs and the stragglers: input k is lost with probability
    1 - (N/K)(1 - P), whatever the node order.

    Returns:
      mse (2, C) per order (the same for both) and evaluation batch, and p_lost (2, C, K).
    """
    P = st.S / N if st.kind == "exact" else st.p
    Y = np.asarray(outputs(inputs.f, inputs.X_eval), np.float64)
    missing = np.sum((Y - np.asarray(inputs.fallback, np.float64)) ** 2, axis=-1)  # (C, K)
    p_lost = np.full((len(ORDERS), *missing.shape), 1.0 - (N / K) * (1.0 - P))
    return (p_lost * missing).mean(-1), p_lost


def round_latencies(K: int, N: int, S: int, shift: float, rate: float, draws: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Times (draws,) until the master has an estimate of every input, N <= K.

    The latency model: every task a worker runs takes shift + Exp(rate) (the law of
    ``letcc_jax.workers.WorkerFaults.shifted_exponential``), independently over tasks and
    workers. Coded: one round of N tasks that ends at the (N - S)-th arrival. Replication:
    the same first round (N distinct inputs, the first N - S back), then a second round for
    the M = K - N + S inputs still missing, dealt round robin to all N workers (input
    j mod M to task j; a worker with several tasks runs them one after another), which ends
    when every missing input has one result back.

    Returns:
      (coded, replication), each (draws,).
    """
    first = np.sort(shift + rng.exponential(1.0 / rate, (draws, N)), axis=1)[:, N - S - 1]
    M = K - N + S
    tasks = max(M, N)
    rows = -(-tasks // N)
    finish = np.cumsum(shift + rng.exponential(1.0 / rate, (draws, rows, N)), axis=1)
    finish = finish.reshape(draws, rows * N)[:, :tasks]     # task j: worker j mod N
    pad = -(-tasks // M) * M - tasks
    finish = np.concatenate([finish, np.full((draws, pad), np.inf)], axis=1)
    done = finish.reshape(draws, -1, M).min(axis=1)        # each input at its first result
    return first, first + done.max(axis=1)


def few_workers(config: RegimesConfig, inputs: Inputs, key, progress: bool):
    """Study (c): rows at N = ratio K <= K workers. With exact S, every row carries the
    one-round latency quantiles (``latency_p50``, ``latency_p99``) and replication's row
    its two-round ones (``two_round_p50``, ``two_round_p99``); Bernoulli stragglers never
    answer, so their round has no arrival order to time."""
    K, q = config.K, config.straggler_fraction
    rows = []
    grid = jnp.asarray(config.lam_dec_grid)
    padded = padded_size(K, config.few_workers_ratios)
    for ratio in tqdm(config.few_workers_ratios, desc="few_workers", disable=not progress):
        N = round(ratio * K)

        def make_letcc(order):
            return lc.letcc(K, N, order=order[:, None, :],
                            fallback=inputs.fallback).replace(lam_dec=grid).pad_workers(padded)

        def make_bacc(order):
            return lc.bacc(K, N, order=order, fallback=inputs.fallback).pad_workers(padded)

        for i, st in enumerate(straggler_settings(N, q, config.straggler_kinds)):
            k = jax.random.fold_in(key, 10 * N + i)
            l_mse, l_acc, lam = letcc_chosen(inputs, make_letcc, grid, k, config.trials,
                                             st.model)
            b_mse, b_acc = monte_carlo_batches(inputs, make_bacc, inputs.X_eval,
                                               inputs.orders_eval, eval_key(k), config.trials,
                                               st.model, labels=inputs.labels_eval)
            r_mse, r_lost = one_round_replication(inputs, K, N, st)
            r_acc = replication_relacc(inputs, r_lost)
            coded_t = repl_t = {}
            if st.kind == "exact":
                one, two = round_latencies(K, N, st.S, config.latency_shift, config.latency_rate,
                                           config.latency_draws,
                                           np.random.default_rng([config.seed, N]))
                coded_t = {"latency_p50": float(np.median(one)),
                           "latency_p99": float(np.quantile(one, 0.99))}
                repl_t = {**coded_t, "two_round_p50": float(np.median(two)),
                          "two_round_p99": float(np.quantile(two, 0.99))}
            for o, order in enumerate(ORDERS):
                common = (inputs, "few_workers", "lenet5", N, order, st)
                rows.append(row(*common, "letcc", l_mse[o], l_acc[o], lam_dec=float(lam[o]),
                                **coded_t))
                rows.append(row(*common, "bacc", b_mse[o], b_acc[o], **coded_t))
                rows.append(row(*common, "uncoded", r_mse[o], r_acc[o],
                                p_lost=float(r_lost[o].mean()), **repl_t))
    jax.clear_caches()  # the study's programs serve no other (see table1.run)
    return rows


# ------------------------------------------------------------------ (d) systematic points
def systematic_points(K: int, N: int) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, beta) with beta containing alpha: alpha the default Chebyshev points of the
    first kind (K,), beta (N,) = sorted(alpha and N - K extra points), the extras picked
    evenly (by index) among -1, the K - 1 midpoints between neighbouring alphas, and +1, so
    that the ends are covered first. Needs K < N <= 2K + 1."""
    if not K < N <= 2 * K + 1:
        raise ValueError(f"systematic points need K < N <= 2K + 1, got K={K}, N={N}.")
    alpha = np.asarray(lc.chebyshev_first(K), np.float64)
    candidates = np.concatenate([[-1.0], (alpha[1:] + alpha[:-1]) / 2, [1.0]])
    extra = candidates[np.round(np.linspace(0, K, N - K)).astype(int)]
    return alpha, np.sort(np.concatenate([alpha, extra]))


def systematic(config: RegimesConfig, inputs: Inputs, key, progress: bool):
    """Study (d): rows at K < N < 2K workers, systematic against default points."""
    K, q = config.K, config.straggler_fraction
    grid = jnp.asarray(config.lam_dec_grid)
    rows = []
    padded = padded_size(K, config.systematic_ratios)
    for ratio in tqdm(config.systematic_ratios, desc="systematic", disable=not progress):
        N = round(ratio * K)
        alpha, beta = systematic_points(K, N)
        betas = np.stack([beta, np.asarray(lc.chebyshev_second(N), np.float64)])  # POINTS

        def make_letcc(order):  # grid (points, order, lam_dec)
            scheme = lc.letcc(K, N, points=(alpha, beta), order=order[None, :, None, :],
                              fallback=inputs.fallback)
            return scheme.replace(beta=jnp.asarray(betas[:, None, None, :], scheme.beta.dtype),
                                  lam_dec=grid).pad_workers(padded)

        def make_bacc(order):  # grid (points, order)
            scheme = lc.bacc(K, N, points=(alpha, beta), order=order[None],
                             fallback=inputs.fallback)
            return scheme.replace(beta=jnp.asarray(betas[:, None, :], scheme.beta.dtype)
                                  ).pad_workers(padded)

        exact = {}
        for i, st in enumerate(straggler_settings(N, q, config.straggler_kinds)):
            k = jax.random.fold_in(key, 10 * N + i)
            l_mse, l_acc, lam = letcc_chosen(inputs, make_letcc, grid, k, config.trials, st.model)
            b_mse, b_acc = monte_carlo_batches(inputs, make_bacc, inputs.X_eval,
                                               inputs.orders_eval, eval_key(k), config.trials,
                                               st.model, labels=inputs.labels_eval)
            r_mse, r_lost = replication_batches(inputs, K, N, st.model)
            r_acc = replication_relacc(inputs, r_lost)
            if st.kind == "exact":
                exact = {"lam": lam, "S": st.S, "random": (l_mse, b_mse, r_mse)}
            for o, order in enumerate(ORDERS):
                common = (inputs, "systematic", "lenet5", N, order, st)
                for j, points in enumerate(POINTS):
                    rows.append(row(*common, "letcc", l_mse[j, o], l_acc[j, o], points=points,
                                    lam_dec=float(lam[j, o])))
                    rows.append(row(*common, "bacc", b_mse[j, o], b_acc[j, o], points=points))
                rows.append(row(*common, "uncoded", r_mse[o], r_acc[o], points="replicas",
                                p_lost=float(r_lost[o].mean())))
        if config.worst_case and exact:
            rows += systematic_worst(config, inputs, K, N, alpha, betas, exact)
    jax.clear_caches()
    return rows


def systematic_worst(config: RegimesConfig, inputs: Inputs, K, N, alpha, betas, exact):
    """Worst-case rows of study (d): per order, point set and scheme, the S stragglers that
    maximise the loss on the first evaluation batch (``lc.worst_stragglers``), beside the
    random stragglers' E[MSE] on that batch. ``exact`` holds what the exact-S setting
    found: its S, LeTCC's chosen lam_dec (points, order) and the per-trial losses of the
    codes and replication ("random")."""
    S, X = exact["S"], inputs.X_eval[0]
    st = Stragglers("worst", S, None, None)
    l_random, b_random, r_random = exact["random"]
    rows = []

    def worst(scheme):
        return lc.worst_stragglers(inputs.f, scheme, X, S, restarts=config.worst_restarts,
                                   max_rounds=config.worst_max_rounds, seed=config.seed)

    for o, order in enumerate(ORDERS):
        perm = inputs.orders_eval[0, o]
        common = (inputs, "systematic", "lenet5", N, order, st)
        for j, points in enumerate(POINTS):
            nodes = (alpha, betas[j])
            for name, scheme, random in (
                    ("letcc", lc.letcc(K, N, points=nodes, order=perm, fallback=inputs.fallback,
                                       lam_dec=float(exact["lam"][j, o])), l_random[j, o, 0]),
                    ("bacc", lc.bacc(K, N, points=nodes, order=perm, fallback=inputs.fallback),
                     b_random[j, o, 0])):
                found = worst(scheme)
                rows.append(row(*common, name, found.mse, points=points,
                                worst_exact=found.exact, random_mse_batch0=float(np.mean(random))))
        found = worst(lc.uncoded(K, N, order=perm, fallback=inputs.fallback))
        rows.append(row(*common, "uncoded", found.mse, points="replicas", worst_exact=found.exact,
                        random_mse_batch0=float(r_random[o, 0])))
    return rows


# ------------------------------------------------------------------ (e) near-linear f
def near_linear(config: RegimesConfig, inputs: Inputs, key, progress: bool):
    """Study (e): rows over c x N/K for f(x) = tanh(c x W). The encoder is linear, so coding
    c x and computing tanh(x W) is coding x and computing tanh(c x W): c scales the inputs,
    one compiled program per N serves every c, and every c sees the same draws."""
    K, q = config.K, config.straggler_fraction
    grid = jnp.asarray(config.lam_dec_grid)
    rows = []
    padded = padded_size(K, config.near_linear_ratios)
    for ratio in tqdm(config.near_linear_ratios, desc="near_linear", disable=not progress):
        N = round(ratio * K)
        (st,) = straggler_settings(N, q, ("exact",))
        k = jax.random.fold_in(key, N)
        for c in config.near_linear_c:
            scaled = make_inputs(inputs.f, c * inputs.X_cal, c * inputs.X_eval, None,
                                 (inputs.orders_cal, inputs.orders_eval))

            def make_letcc(order):
                return lc.letcc(K, N, order=order[:, None, :], fallback=scaled.fallback
                                ).replace(lam_dec=grid).pad_workers(padded)

            def make_bacc(order):
                return lc.bacc(K, N, order=order, fallback=scaled.fallback).pad_workers(padded)

            l_mse, _, lam = letcc_chosen(scaled, make_letcc, grid, k, config.trials, st.model)
            b_mse, _ = monte_carlo_batches(scaled, make_bacc, scaled.X_eval, scaled.orders_eval,
                                           eval_key(k), config.trials, st.model)
            r_mse, r_lost = replication_batches(scaled, K, N, st.model)
            for o, order in enumerate(ORDERS):
                common = (scaled, "near_linear", "tanh", N, order, st)
                extra = {"c": float(c)}
                rows.append(row(*common, "letcc", l_mse[o], lam_dec=float(lam[o]), **extra))
                rows.append(row(*common, "bacc", b_mse[o], **extra))
                rows.append(row(*common, "uncoded", r_mse[o], p_lost=float(r_lost[o].mean()),
                                **extra))
    jax.clear_caches()
    return rows


# ------------------------------------------------------------------ (f) output noise
def noise(config: RegimesConfig, inputs: Inputs, key, progress: bool):
    """Study (f): rows over sigma / rms x N/K with GaussianNoise on every worker's output,
    LeTCC's lam_dec chosen per sigma (one sweep over sigma, order and lam_dec)."""
    K, q = config.K, config.straggler_fraction
    grid = jnp.asarray(config.noise_lam_dec_grid)
    Y_cal = outputs(inputs.f, inputs.X_cal)
    rms = float(jnp.sqrt(jnp.mean(Y_cal ** 2)))
    sigmas = jnp.asarray(config.rel_sigmas) * rms
    rows = []
    padded = padded_size(K, config.noise_ratios)
    for ratio in tqdm(config.noise_ratios, desc="noise", disable=not progress):
        N = round(ratio * K)
        (st,) = straggler_settings(N, q, ("exact",))
        k = jax.random.fold_in(key, N)

        def make_letcc(order):  # grid (order, lam_dec); with the noise (sigma, order, lam_dec)
            return lc.letcc(K, N, order=order[:, None, :],
                            fallback=inputs.fallback).replace(lam_dec=grid).pad_workers(padded)

        l_mse, l_acc, lam = letcc_chosen(inputs, make_letcc, grid, k, config.trials, st.model,
                                         faults=[lc.GaussianNoise(sigmas[:, None, None])])
        b_mse, b_acc = monte_carlo_batches(
            inputs, lambda order: lc.bacc(K, N, order=order,
                                          fallback=inputs.fallback).pad_workers(padded),
            inputs.X_eval, inputs.orders_eval, eval_key(k), config.trials, st.model,
            faults=[lc.GaussianNoise(sigmas[:, None])], labels=inputs.labels_eval)
        r_mse, r_lost = replication_batches(inputs, K, N, st.model,
                                            faults=[lc.GaussianNoise(sigmas[:, None])])
        for s, rel in enumerate(config.rel_sigmas):
            extra = {"rel_sigma": float(rel), "sigma": float(sigmas[s])}
            for o, order in enumerate(ORDERS):
                common = (inputs, "noise", "lenet5", N, order, st)
                rows.append(row(*common, "letcc", l_mse[s, o], l_acc[s, o],
                                lam_dec=float(lam[s, o]), **extra))
                rows.append(row(*common, "bacc", b_mse[s, o], b_acc[s, o], **extra))
                rows.append(row(*common, "uncoded", r_mse[s, o], None,
                                p_lost=float(r_lost[s, o].mean()), **extra))
    jax.clear_caches()
    return rows


# ------------------------------------------------------------------ driver
STUDIES = {"few_workers": few_workers, "systematic": systematic, "near_linear": near_linear,
           "noise": noise}


def run(config: RegimesConfig, progress: bool = True):
    """The config's studies: (rows, info)."""
    rows, info, seconds = [], {}, {}
    key = jax.random.PRNGKey(config.seed)
    ds, X_cal, X_eval, labels = image_batches(config)
    rng = np.random.default_rng(config.seed)
    # The chain depends on distances only, so centring the pixels (near_linear) keeps it.
    orders = (node_orders(X_cal, rng), node_orders(X_eval, rng))
    images = None
    for i, study in enumerate(REGIME_STUDIES):
        if study not in config.studies:
            continue
        start = time.perf_counter()
        if study == "near_linear":
            centre = jnp.mean(X_cal.reshape(-1, X_cal.shape[-1]), axis=0)
            f = near_linear_function(X_cal - centre, config.near_linear_m, config.seed)
            inputs = make_inputs(f, X_cal - centre, X_eval - centre, None, orders)
        else:
            if images is None:
                f, info["lenet5_test_accuracy"] = model_function("lenet5", ds, config.untrained,
                                                                 train=config.train)
                images = make_inputs(f, X_cal, X_eval, labels, orders)
            inputs = images
        rows += STUDIES[study](config, inputs, jax.random.fold_in(key, i), progress)
        seconds[study] = round(time.perf_counter() - start, 1)
    info["study_seconds"] = seconds
    return rows, info


# ------------------------------------------------------------------ tables
def variant(r: dict) -> str:
    """A row's column: the scheme, with its point set in the systematic study."""
    return f"{r['scheme']}_{r['points']}" if r.get("points") in POINTS else r["scheme"]


def compare(rows, keys) -> dict:
    """Rows grouped by the values of ``keys`` (in first-seen order): key tuple -> {variant:
    row, "winner": the variant of lowest loss, "factor": the best code's loss /
    replication's}."""
    groups = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), {})[variant(r)] = r
    for group in groups.values():
        losses = {v: r["mse"] for v, r in group.items()}
        coded = min(m for v, m in losses.items() if v != "uncoded")
        group["winner"] = min(losses, key=losses.get)
        group["factor"] = coded / losses["uncoded"] if losses["uncoded"] > 0 else float("inf")
    return groups


def cell(r: dict, lam: bool = False) -> str:
    text = f"{r['mse']:.3g} ({r['root_mse']:.3g})"
    return text + (f" [λ={r['lam_dec']:.0e}]" if lam else "")


def stragglers_label(r: dict) -> str:
    return {"exact": f"S={r['S']}", "bernoulli": f"p={r['p']}", "worst": f"worst S={r['S']}"}[
        r["stragglers"]]


def winner_label(group) -> str:
    winner = group["winner"]
    name = NAMES[winner.split("_")[0]] + (f" {winner.split('_')[1]}" if "_" in winner else "")
    return f"{name} ({group['factor']:.2g})"


ORDER_LABEL = {"nearest_neighbour": "nn", "random": "random"}


def latency_rows(rows) -> list[dict]:
    """Replication's few-workers rows with latencies, one per N (they do not depend on the
    order)."""
    timed = {r["N"]: r for r in rows if r["study"] == "few_workers" and r["scheme"] == "uncoded"
             and "two_round_p50" in r}
    return [timed[N] for N in sorted(timed)]


def few_workers_tables(rows) -> str:
    rows = [r for r in rows if r["study"] == "few_workers"]
    body = []
    for (ratio, N, kind, order), g in compare(rows, ("ratio", "N", "stragglers",
                                                     "order_method")).items():
        body.append([f"{ratio:g}", N, stragglers_label(g["letcc"]), ORDER_LABEL[order],
                     cell(g["letcc"], lam=True), cell(g["bacc"]), cell(g["uncoded"]),
                     f"{g['uncoded']['p_lost']:.2f}",
                     " / ".join(f"{g[s]['relacc']:.3f}" for s in ("letcc", "bacc", "uncoded")),
                     winner_label(g)])
    loss = markdown_table(["N/K", "N", "stragglers", "order", "LeTCC", "BACC",
                           "replication, 1 round", "share lost (repl.)",
                           "RelAcc L / B / R", "winner (coded/repl.)"], body)
    times = markdown_table(
        ["N/K", "N", "S", "inputs missing after round 1", "one round p50 / p99",
         "replication, two rounds p50 / p99", "ratio at p50 / p99"],
        [[f"{t['ratio']:g}", t["N"], t["S"], t["K"] - t["N"] + t["S"],
          f"{t['latency_p50']:.2f} / {t['latency_p99']:.2f}",
          f"{t['two_round_p50']:.2f} / {t['two_round_p99']:.2f}",
          f"{t['two_round_p50'] / t['latency_p50']:.2f} / "
          f"{t['two_round_p99'] / t['latency_p99']:.2f}"] for t in latency_rows(rows)])
    return (f"Loss E[MSE] (√E[MSE]) [LeTCC's lam_dec]; replication computes N random "
            f"inputs once, the others get the fallback (exact expectation):\n\n{loss}\n\n"
            f"Time until every input has an estimate, in units of the shift (coded and "
            f"replication's first round: the (N−S)-th of N arrivals; replication's second "
            f"round: the missing inputs dealt round robin to all N workers, until each has "
            f"one result):\n\n{times}")


def systematic_table(rows) -> str:
    rows = [r for r in rows if r["study"] == "systematic"]
    body = []
    for (ratio, N, kind, order), g in compare(rows, ("ratio", "N", "stragglers",
                                                     "order_method")).items():
        body.append([f"{ratio:g}", N, stragglers_label(g["uncoded"]), ORDER_LABEL[order],
                     *(cell(g[f"{s}_{p}"], lam=s == "letcc" and kind != "worst")
                       for s in ("letcc", "bacc") for p in POINTS),
                     cell(g["uncoded"]), winner_label(g)])
    return markdown_table(["N/K", "N", "stragglers", "order", "LeTCC systematic",
                           "LeTCC Chebyshev", "BACC systematic", "BACC Chebyshev",
                           "replication", "winner (coded/repl.)"], body)


def near_linear_table(rows) -> str:
    rows = [r for r in rows if r["study"] == "near_linear"]
    groups = compare(rows, ("order_method", "ratio", "c"))
    cs = sorted({r["c"] for r in rows})
    tables = []
    for order in ORDERS:
        body = [[f"{ratio:g}"] + [f"{LETTER[groups[(order, ratio, c)]['winner']]} "
                                  f"{groups[(order, ratio, c)]['factor']:.2g}" for c in cs]
                for ratio in sorted({r["ratio"] for r in rows})]
        tables.append(f"{ORDER_LABEL[order]} order:\n\n"
                      + markdown_table(["N/K \\ c"] + [f"{c:.2g}" for c in cs], body))
    return ("Winner (L = LeTCC, B = BACC, R = replication) and the best code's loss / "
            "replication's:\n\n" + "\n\n".join(tables))


def noise_table(rows) -> str:
    rows = [r for r in rows if r["study"] == "noise"]
    body = [[f"{ratio:g}", N, f"{rel:g}", ORDER_LABEL[order], cell(g["letcc"], lam=True),
             cell(g["bacc"]), cell(g["uncoded"]), winner_label(g)]
            for (ratio, N, rel, order), g in compare(rows, ("ratio", "N", "rel_sigma",
                                                            "order_method")).items()]
    return markdown_table(["N/K", "N", "σ/rms", "order", "LeTCC", "BACC", "replication",
                           "winner (coded/repl.)"], body)


TABLES = {"few_workers": ("(c) N < K workers, one round", few_workers_tables),
          "systematic": ("(d) Systematic worker points, 1 < N/K < 2", systematic_table),
          "near_linear": ("(e) Near-linear f = tanh(c W x)", near_linear_table),
          "noise": ("(f) Output noise", noise_table)}


# ------------------------------------------------------------------ figures
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


LINE = {"nearest_neighbour": "-", "random": "--"}
STRAGGLER_TITLE = {
    "exact": lambda r: f"S = {r['S'] / r['N']:.2g} N random stragglers",
    "bernoulli": lambda r: f"each worker straggles with p = {r['p']:g}",
    "worst": lambda r: f"the worst S = {r['S'] / r['N']:.2g} N stragglers (batch 1)"}
COLOR = {"letcc": "C0", "bacc": "C1", "uncoded": "C2"}


def _curves(ax, rows, x: str, variants):
    """One line per (variant, order) of ``rows`` against the field ``x``."""
    for v in variants:
        for order in ORDERS:
            sel = sorted((r for r in rows if variant(r) == v and r["order_method"] == order),
                         key=lambda r: r[x])
            if not sel:
                continue
            scheme = v.split("_")[0]
            hollow = v.endswith("_chebyshev")
            ax.plot([r[x] for r in sel], [r["mse"] for r in sel], LINE[order], marker="o",
                    color=COLOR[scheme], mfc="white" if hollow else COLOR[scheme], ms=4,
                    label=f"{NAMES[scheme]}{' ' + v.split('_')[1] if '_' in v else ''}, "
                          f"{ORDER_LABEL[order]}")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)


def _save(fig, path, **options):
    """Lay ``fig`` out, write it to ``path`` and close it; returns ``path``."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120, **options)
    plt.close(fig)
    return path


def plot_few_workers(rows, out):
    rows = [r for r in rows if r["study"] == "few_workers"]
    latency = latency_rows(rows)
    plt = _pyplot()
    kinds = list(dict.fromkeys(r["stragglers"] for r in rows))
    fig, axes = plt.subplots(1, len(kinds) + bool(latency), figsize=(4.6 * (len(kinds) + 1), 4))
    axes = np.atleast_1d(axes)
    for ax, kind in zip(axes, kinds):
        sel = [r for r in rows if r["stragglers"] == kind]
        _curves(ax, sel, "ratio", ("letcc", "bacc", "uncoded"))
        ax.axhline(sel[0]["fallback_mse"], color="grey", lw=0.8, ls=":", label="fallback only")
        ax.set_xlabel("N / K")
        ax.set_ylabel("E[MSE] (logits)")
        ax.set_title(STRAGGLER_TITLE[kind](sel[0]) + ", one round", fontsize=9)
    axes[0].legend(fontsize=7)
    if latency:
        ax = axes[-1]
        ratios = [t["ratio"] for t in latency]
        for q, marker in (("p50", "o"), ("p99", "^")):
            ax.plot(ratios, [t[f"latency_{q}"] for t in latency], "-", marker=marker,
                    color="C0", label=f"coded, one round {q}")
            ax.plot(ratios, [t[f"two_round_{q}"] for t in latency], "-", marker=marker,
                    color="C2", label=f"replication, two rounds {q}")
        ax.set_xlabel("N / K")
        ax.set_ylabel("time to every input (units of the shift)")
        ax.set_title("shifted-exponential service times", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, out / "regimes_few_workers.png")


def plot_systematic(rows, out):
    rows = [r for r in rows if r["study"] == "systematic"]
    plt = _pyplot()
    kinds = list(dict.fromkeys(r["stragglers"] for r in rows))
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.8 * len(kinds), 4.2), squeeze=False)
    variants = [f"{s}_{p}" for s in ("letcc", "bacc") for p in POINTS] + ["uncoded"]
    for ax, kind in zip(axes[0], kinds):
        sel = [r for r in rows if r["stragglers"] == kind]
        _curves(ax, sel, "ratio", variants)
        ax.set_xlabel("N / K")
        ax.set_ylabel("E[MSE] (logits)" if kind != "worst" else "worst-case MSE (batch 1)")
        ax.set_title(STRAGGLER_TITLE[kind](sel[-1]), fontsize=9)
    axes[0, 0].legend(fontsize=6, ncol=2)
    fig.suptitle("Systematic points (filled: β ⊃ α) against Chebyshev points (hollow); "
                 "solid: nn order, dashed: random", fontsize=9)
    return _save(fig, out / "regimes_systematic.png")


def plot_near_linear(rows, out):
    rows = [r for r in rows if r["study"] == "near_linear"]
    plt = _pyplot()
    groups = compare(rows, ("order_method", "ratio", "c"))
    cs = sorted({r["c"] for r in rows})
    ratios = sorted({r["ratio"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), squeeze=False)
    values = {o: np.array([[np.log10(groups[(o, q, c)]["factor"]) for c in cs] for q in ratios])
              for o in ORDERS}
    bound = max(np.max(np.abs(v)) for v in values.values())
    for ax, order in zip(axes[0], ORDERS):
        image = ax.imshow(values[order], cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto",
                          origin="lower")
        for i, q in enumerate(ratios):
            for j, c in enumerate(cs):
                g = groups[(order, q, c)]
                ax.text(j, i, f"{LETTER[g['winner']]}\n{g['factor']:.2g}", ha="center",
                        va="center", fontsize=6.5)
        ax.set_xticks(range(len(cs)))
        ax.set_xticklabels([f"{c:.2g}" for c in cs], fontsize=7)
        ax.set_yticks(range(len(ratios)))
        ax.set_yticklabels([f"{q:g}" for q in ratios])
        ax.set_xlabel("c in f(x) = tanh(c W x)")
        ax.set_ylabel("N / K")
        ax.set_title(f"{ORDER_LABEL[order]} order: winner (L/B/R), best code / replication",
                     fontsize=9)
    fig.colorbar(image, ax=axes[0].tolist(), label="log10(best coded / replication)")
    path = out / "regimes_near_linear.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_noise(rows, out):
    rows = [r for r in rows if r["study"] == "noise"]
    plt = _pyplot()
    ratios = sorted({r["ratio"] for r in rows})
    fig, axes = plt.subplots(1, len(ratios), figsize=(4.4 * len(ratios), 4), squeeze=False)
    for ax, ratio in zip(axes[0], ratios):
        sel = [r for r in rows if r["ratio"] == ratio]
        _curves(ax, sel, "rel_sigma", ("letcc", "bacc", "uncoded"))
        ax.set_xscale("log")
        ax.set_xlabel("σ / rms of f's outputs")
        ax.set_ylabel("E[MSE] (logits)")
        ax.set_title(f"N/K = {ratio:g}, S = {sel[0]['S']} of N = {sel[0]['N']}", fontsize=9)
    axes[0, 0].legend(fontsize=7)
    return _save(fig, out / "regimes_noise.png")


def plot(rows, out) -> list:
    studies = {r["study"] for r in rows}
    paths = []
    if "few_workers" in studies:
        paths.append(plot_few_workers(rows, out))
    if "systematic" in studies:
        paths.append(plot_systematic(rows, out))
    if "near_linear" in studies:
        paths.append(plot_near_linear(rows, out))
    if "noise" in studies:
        paths.append(plot_noise(rows, out))
    return paths


def report(rows, info, config: RegimesConfig, seconds: float, out):
    """Prints the Markdown tables; writes results.json, results.csv, table.md and the figures to
    ``out``. Returns the rows."""
    studies = [s for s in REGIME_STUDIES if any(r["study"] == s for r in rows)]
    parts = []
    for s in studies:
        title, table = TABLES[s]
        parts.append(f"### {title}\n\n"
                     + table(rows))
    text = (f"## Regimes where coding can win ({config.name} config)\n\n{METRIC_NOTE}\n\n"
            + "\n\n".join(parts) + f"\n\n{info}. Time {seconds:.0f} s.\n")
    print("\n" + text)
    write_results(out, config, rows, info=info, seconds=seconds)
    (out / "table.md").write_text(text)
    figures = plot(rows, out)
    print(f"regimes: wrote {out}/results.json, results.csv, table.md, "
          + ", ".join(p.name for p in figures))
    return rows


def main(argv=None):
    """The command line (``--help``); returns the rows."""
    return experiment_main(
        argv, __name__, REGIMES,
        restrict={"--study": ("studies", REGIME_STUDIES)},
        untrained_help="LeNet-5 with random initial weights (no training, no cache): for tests")


if __name__ == "__main__":
    main()
