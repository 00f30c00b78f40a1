"""What the experiments code and compare, shared by all of them: the schemes of Table 1, the
datasets, the image classifiers f (trained once, then cached), the synthetic test f, and the
two things every scheme is scored with alike: the fallback estimate of a lost input and
replication's exact chance of losing one."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

import letcc_jax as lc
from letcc_jax.zoo.data import DataFileError, load_dataset
from letcc_jax.zoo.models import make_model, pure_apply

__all__ = ["METRICS", "SCHEMES", "batched_inputs", "buckets", "calibration_mean",
           "ends_group", "expected_longest_run", "fit_slope", "letcc_over_N", "load_data",
           "model_function", "padded_sizes", "padder", "pool", "positive", "random_network",
           "random_tanh_network", "replication_loss_probability", "synthetic", "tanh_network"]

#: The schemes compared in Table 1 and the demo, in column order.
SCHEMES = ["letcc", "bspline", "bacc", "lcc", "uncoded"]


def load_data(name: str):
    """The dataset ``name``, or SystemExit with a clear message when its files are missing
    or damaged."""
    try:
        return load_dataset(name, download=False)
    except (FileNotFoundError, OSError) as exc:
        raise SystemExit(
            f"dataset {name!r} is not available offline ({exc}). Put its standard files under "
            "$LETCC_DATA (see letcc_jax.zoo.data); the cpu configs need Fashion-MNIST only."
        ) from None
    except DataFileError as exc:
        raise SystemExit(f"dataset {name!r} cannot be read: {exc}") from None


def model_function(name: str, ds, untrained: bool = False, progress: bool = False,
                   train: Mapping | None = None):
    """(f, test accuracy or None): f maps one flat (d,) image to logits.

    The model is trained on first use and then loaded from the checkpoint cache
    (``letcc_jax.zoo.train.get_trained_model``); ``train`` overrides fields of its default
    ``TrainConfig`` (a mapping, e.g. ``{"epochs": 3}``), ``progress`` shows training progress
    bars. ``untrained`` uses freshly initialised weights (seed 0): a fast stand-in for tests.
    """
    if untrained:
        return pure_apply(make_model(name, ds.image_shape, ds.num_classes, seed=0)), None
    from letcc_jax.zoo.train import DEFAULT_CONFIGS, get_trained_model

    config = dataclasses.replace(DEFAULT_CONFIGS[name], **train) if train else None
    trained = get_trained_model(name, ds, config, progress=progress)
    return pure_apply(trained.model), trained.record.get("test_accuracy")


def synthetic(x):
    """A smooth function of a 1-D input: (d,) = (1,) -> (2,), (sin 3x, tanh 2x)."""
    return jnp.stack([jnp.sin(3.0 * x[0]), jnp.tanh(2.0 * x[0])])


def tanh_network(params, x):
    """A random two-layer tanh network; ``params = (W1, b1, W2)``."""
    W1, b1, W2 = params
    return jnp.tanh(x @ W1 + b1) @ W2


def random_network(key, d, hidden, m):
    """Random parameters of ``tanh_network`` R^d -> R^m with ``hidden`` units; weights scaled
    by 1/sqrt(fan-in)."""
    k1, k2, k3 = jax.random.split(key, 3)
    return (
        jax.random.normal(k1, (d, hidden)) / jnp.sqrt(d),
        0.1 * jax.random.normal(k2, (hidden,)),
        jax.random.normal(k3, (hidden, m)) / jnp.sqrt(hidden),
    )


def random_tanh_network(key, d=8, hidden=32, m=4):
    """f = ``tanh_network`` R^d -> R^m with random weights drawn from ``key``. The weights are
    closed over: f must be hashable for the jitted evaluators."""
    return functools.partial(tanh_network, random_network(key, d, hidden, m))


def batched_inputs(name: str, K: int, batches: int, seed: int, *, untrained: bool = False,
                   train: Mapping | None = None):
    """(f, X_cal, X_eval) for f = ``name`` ("synthetic" or "lenet5"): ``batches``
    calibration batches of K inputs and as many disjoint evaluation batches, (batches, K, d)
    each. Synthetic inputs are uniform on [-1, 1]; LeNet-5's are Fashion-MNIST test images
    split by ``letcc_jax.zoo.data.calibration_split``."""
    if name == "synthetic":
        keys = jax.random.split(jax.random.PRNGKey(seed))
        return (synthetic,
                *(jax.random.uniform(k, (batches, K, 1), minval=-1.0, maxval=1.0)
                  for k in keys))
    from letcc_jax.zoo.data import calibration_split

    ds = load_data("fashion_mnist")
    split = calibration_split(ds, batches * K, batches * K, seed=seed)
    f, _ = model_function(name, ds, untrained, train=train)
    return f, *(jnp.asarray(a.reshape(batches, K, -1)) for a in (split.x_cal, split.x_eval))


@functools.partial(jax.jit, static_argnames="f")
def calibration_mean(f, X) -> jnp.ndarray:
    """The fallback every scheme is given: f's mean output (m,) over the calibration inputs X
    (..., d), the prior mean of an output whose input could not be recovered. A lost input
    estimated as 0 instead costs ||f(x_k)||^2, which for logits is far more than its spread
    around the mean, and would handicap whichever scheme loses inputs (replication). One
    compiled program per f (hashable) and shape."""
    return jnp.mean(jax.vmap(f)(X.reshape(-1, X.shape[-1])), axis=0)


def replication_loss_probability(scheme, stragglers) -> np.ndarray:
    """Exact probability that replication (``scheme``, an ``lc.uncoded``) loses at least one
    input, i.e. that every replica of some input straggles; float64, of the shape of ``p``
    under ``lc.BernoulliStragglers(p)``, a scalar under ``lc.ExactStragglers(S)``.

    Input k has r_k replicas (``scheme.owners()``). Independent stragglers lose it with
    probability p^r_k, independently of the others. Under exactly S stragglers (a uniform
    S-subset of the N workers) the S-sets that leave every input a replica are counted in
    integers: the coefficient of x^S in prod_k ((1 + x)^r_k - x^r_k), each factor choosing
    which of input k's replicas straggle, all but all of them.
    """
    replicas = np.bincount(np.asarray(scheme.owners()), minlength=scheme.K)
    if isinstance(stragglers, lc.BernoulliStragglers):
        p = np.asarray(stragglers.p, np.float64)[..., None]
        return -np.expm1(np.sum(np.log1p(-p ** replicas), axis=-1))  # 1 - prod, no cancellation
    if not isinstance(stragglers, lc.ExactStragglers):
        raise TypeError(f"replication_loss_probability: BernoulliStragglers or ExactStragglers "
                        f"only, got {type(stragglers).__name__}.")
    # Python ints (object arrays): the counts pass float64's range from N of about 1,000.
    kept = np.ones(1, dtype=object)
    for r in replicas.tolist():
        kept = np.convolve(kept, np.array([math.comb(r, j) for j in range(r)], dtype=object))
    S, total = stragglers.S, math.comb(scheme.N, stragglers.S)
    safe = int(kept[S]) if S < kept.size else 0  # more than N - K stragglers: none is safe
    return np.float64((total - safe) / total)


def fit_slope(N, mse) -> float:
    """Least-squares slope of log(mse) against log(N) over the large-N half of the points."""
    N, mse = np.asarray(N, np.float64), np.asarray(mse, np.float64)
    keep = (N >= np.median(N)) & np.isfinite(mse) & (mse > 0)
    if keep.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(N[keep]), np.log(mse[keep]), 1)[0])


def expected_longest_run(N: int, S: int) -> float:
    """Expected length of the longest run of consecutive stragglers, in worker-tag order,
    when exactly S of the N workers straggle, all sets equally likely (``ExactStragglers``).

    Exact, in integers: the longest run is shorter than L iff every one of the N - S + 1
    gaps around the survivors holds at most L - 1 stragglers, and those spreads are counted
    by inclusion-exclusion. E = sum over L >= 1 of P(longest >= L). About log(N)/log(1/q)
    for S = qN (the longest head run of N coin tosses); it falls to 1 for a fixed S as N
    grows, since a few random stragglers are then rarely adjacent.
    """
    if not 0 <= S <= N:
        raise ValueError(f"need 0 <= S <= N, got S={S}, N={N}.")
    gaps = N - S + 1
    total = math.comb(N, S)

    def spreads_below(L):  # sets of S stragglers whose runs are all shorter than L
        return sum((-1) ** j * math.comb(gaps, j) * math.comb(S - j * L + gaps - 1, gaps - 1)
                   for j in range(S // L + 1))

    return sum(total - spreads_below(L) for L in range(1, S + 1)) / total


#: Pooled metrics, the headline (the paper's loss) first.
METRICS = ("mse", "rmse", "relacc", "agreement")


def pool(results) -> dict:
    """Mean and std of each metric over the per-trial values of several MonteCarloResults,
    and ``root_mean_mse`` = sqrt(mse_mean), the root of the loss E[MSE].

    RelAcc is undefined (NaN) on a batch where f itself classifies nothing correctly; such
    values are dropped and counted in ``relacc_undefined``.
    """
    out = {}
    for name in METRICS:
        values = np.concatenate([np.asarray(getattr(r, name), np.float64) for r in results])
        finite = values[np.isfinite(values)]
        out[f"{name}_mean"] = float(np.mean(finite)) if finite.size else float("nan")
        out[f"{name}_std"] = float(np.std(finite)) if finite.size else float("nan")
        if name == "mse":
            out["root_mean_mse"] = float(np.sqrt(out["mse_mean"]))
        if name == "relacc":
            out["relacc_undefined"] = int(values.size - finite.size)
    recovered = np.concatenate([np.asarray(r.recovered) for r in results])
    out["failure_rate"] = float(np.mean(recovered < 1.0))
    out["values"] = int(recovered.size)
    return out


def buckets(Ns, ratio: float) -> list[tuple[int, ...]]:
    """The N in increasing order, in runs whose largest is at most ``ratio`` times their
    smallest: each run is one compiled program per scheme, every N costing its largest."""
    out = []
    for N in sorted(Ns):
        if out and N <= ratio * out[-1][0]:
            out[-1] = out[-1] + (N,)
        else:
            out.append((N,))
    return out


def padded_sizes(Ns, ratio: float) -> dict:
    """N -> the N it is simulated padded to (``Scheme.pad_workers``): the largest of its run
    within ``ratio`` (``buckets``), whose N then share one compiled program per scheme;
    None for an N alone in its run."""
    return {N: max(run) if len(run) > 1 else None
            for run in buckets(set(Ns), ratio) for N in run}


def padder(padded_to: int | None):
    """How an experiment pads the schemes it simulates: ``scheme.pad_workers(padded_to)``
    (its numbers stay the unpadded scheme's), or the scheme itself for None."""
    def pad(scheme):
        return scheme if padded_to is None else scheme.pad_workers(padded_to)
    return pad


def ends_group(groups: list, i: int) -> bool:
    """Whether job i is the last of a run of jobs that share compiled programs: ``groups``
    holds each job's group (e.g. (model, K, padded N)), None or ending in None for a job
    that shares nothing. An experiment clears JAX's caches there: each program keeps
    memory mappings, and one process holding all of them runs out (vm.max_map_count)."""
    group = groups[i]
    return group is None or group[-1] is None or i + 1 == len(groups) or groups[i + 1] != group


def letcc_over_N(K: int, Ns, fallback, lam_dec_grid, factory=None):
    """LeTCC (or the scheme ``factory(K, N, fallback=...)`` makes, with a scalar lam_dec) at
    every N of ``Ns`` (B,) (``lc.stack_schemes``, padded to the largest) with the (m,)
    ``fallback``, swept over the lam_dec grid (G,): leading axes (B, G)."""
    factory = lc.letcc if factory is None else factory
    stacked = lc.stack_schemes([factory(K, N, fallback=fallback) for N in Ns])
    stacked = jax.tree.map(lambda v: v[:, None], stacked)   # (B, 1), beside the grid's (G,)
    return stacked.replace(lam_dec=jnp.asarray(lam_dec_grid, jnp.float32))


def positive(grid) -> tuple[float, ...]:
    """The positive values of a lambda grid: the grid of a scheme whose penalty must be > 0
    (``lc.bspline``)."""
    return tuple(float(v) for v in grid if v > 0)
