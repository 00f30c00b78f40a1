"""The simulation engine: the traced code of simulated rounds, one and many.

Everything here is pure JAX without validation, written for one straggler pattern and
batched by ``vmap``/``lax.map``: the workers' outputs, sampled stragglers and faults, the
metrics, Monte Carlo trials, and sweeps over parameter grids. The public entry points
(``run_coded``, ``monte_carlo``, ``expected_loss``, ``select_lambda``, ``tune``) validate
their arguments in Python and then call one of the compiled functions at the end of this
module, whose compilations are cached on the pytree structure (scheme type and static
fields, model types and sizes), shapes and dtypes: a new straggler mask, noise level or
lambda is new data, never a new compilation.

What one round means (the order of the inputs, erasures, decoding, the fallback) is the
scheme's: ``Scheme.encode_report`` and ``Scheme.decode_report`` in ``letcc_jax.core``.
Straggler and fault models implement ``draw_mask`` and ``corrupt`` (the traced rules behind
their checked ``sample`` and ``apply``); this module calls those.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Bool, Float, Int

from .. import _validation as check
from .._pytree import pytree_dataclass

__all__ = [
    "CodedResult",
    "MonteCarloResult",
    "outputs",
    "apply_faults",
    "sample_round",
    "existing_workers",
    "run_round",
    "honest_outputs",
    "mse",
    "relacc",
    "trial_metrics",
    "batch_shape",
    "over_grid",
    "padded_map",
    "monte_carlo",
    "expected_loss",
]


class CodedResult(NamedTuple):
    """One coded round, as ``run_coded`` returns it (JAX arrays).

    Attributes:
      estimate: (K, m) float decoded estimates of f(x_k).
      alive: (N,) bool mask of the results the decoder used (answered and finite).
      outputs: (N, m) float, what the workers returned (after faults; stragglers
        included).
      recovered: (K,) bool, which inputs got a genuine estimate.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> out = lc.run_coded(jnp.tanh, lc.letcc(4, 12), jnp.linspace(-1, 1, 8).reshape(4, 2),
      ...                    jax.random.key(0), stragglers=lc.ExactStragglers(3))
      >>> out.outputs.shape, int(out.alive.sum()), out.recovered.tolist()
      ((12, 2), 9, [True, True, True, True])
    """

    estimate: Float[Array, "K m"]
    alive: Bool[Array, " N"]
    outputs: Float[Array, "N m"]
    recovered: Bool[Array, " K"]


class MonteCarloResult(NamedTuple):
    """Per-trial metrics of ``monte_carlo``, one entry per trial (JAX arrays).

    Each field has shape ``(*grid, trials)``, or ``(*grid, C, trials)`` for C batches of
    inputs: ``grid`` is the broadcast shape of the swept parameters (empty without a
    sweep).

    Attributes:
      mse (jax.Array): float, (1/K) sum_k ||f_hat(x_k) - f(x_k)||^2, the paper's loss for
        that pattern.
      rmse (jax.Array): float, sqrt(mse).
      recovered (jax.Array): float, the fraction of the K inputs with a genuine estimate
        (unrecovered inputs are estimated as 0 and still count in mse).
      survivors (jax.Array): int, the number of results the decoder used.
      relacc (jax.Array): float, the accuracy of argmax f_hat against labels over the
        accuracy of argmax f (NaN if no labels were given).
      agreement (jax.Array): float, the fraction of inputs where argmax f_hat == argmax f
        (NaN without labels).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> X = jnp.linspace(-1, 1, 8).reshape(4, 2)
      >>> result = lc.monte_carlo(jnp.tanh, lc.letcc(4, 12), X, jax.random.key(0), trials=16,
      ...                         stragglers=lc.ExactStragglers(3))
      >>> result.mse.shape, result.survivors.tolist()[:3]    # 9 of the 12 workers answer
      ((16,), [9, 9, 9])
      >>> stats = result.summary()
      >>> stats["trials"], stats["failure_rate"]
      (16, 0.0)
    """

    mse: Float[Array, "*grid T"]
    rmse: Float[Array, "*grid T"]
    recovered: Float[Array, "*grid T"]
    survivors: Int[Array, "*grid T"]
    relacc: Float[Array, "*grid T"]
    agreement: Float[Array, "*grid T"]

    def summary(self) -> dict:
        """Mean and standard deviation over trials of every metric, and the failure rate.

        Returns:
          A dict: ``"trials"`` (an int), ``"<metric>_mean"`` and ``"<metric>_std"`` for
          every field, and ``"failure_rate"``, the share of trials that lost an input.
          The values are Python floats, or, for a sweep or C batches, float64 NumPy
          arrays of shape ``(*grid)`` or ``(*grid, C)``.
        """
        grid = np.shape(self.mse)[:-1]

        def scalar(v):
            return float(v) if not grid else np.asarray(v)

        out = {"trials": int(np.shape(self.mse)[-1])}
        for name in self._fields:
            values = np.asarray(getattr(self, name), np.float64)
            out[f"{name}_mean"] = scalar(np.mean(values, axis=-1))
            out[f"{name}_std"] = scalar(np.std(values, axis=-1))
        out["failure_rate"] = scalar(np.mean(np.asarray(self.recovered) < 1.0, axis=-1))
        return out


# ------------------------------------------------------------------- one round


def outputs(f: Callable, X: Float[Array, "n d"]) -> Float[Array, "n m"]:
    """f on every row of X, each output flattened to a row (a scalar f gives m = 1)."""
    try:
        Y = jax.vmap(f)(X)
    except Exception as exc:  # f's own failure, reported with what it was given
        raise TypeError(f"f failed on inputs of shape {X.shape[1:]} and dtype {X.dtype} "
                        f"(traced by JAX; f must be written with jax.numpy): "
                        f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(Y, jax.Array) or not jnp.issubdtype(Y.dtype, jnp.floating):
        what = f"dtype {Y.dtype}" if isinstance(Y, jax.Array) else f"{jax.tree.structure(Y)}"
        raise TypeError(f"f must return one array of real floating-point values, got {what}; "
                        "for a complex f, return its real and imaginary parts stacked.")
    if math.prod(Y.shape[1:]) == 0:
        raise TypeError(f"f returned an empty output (shape {Y.shape[1:]}); it must return at "
                        "least one value.")
    if jnp.finfo(Y.dtype).bits < 32:  # half precision: decode in float32 (see float_array)
        Y = Y.astype(jnp.float32)
    if Y.ndim == 1:
        Y = Y[:, None]
    return Y.reshape(Y.shape[0], -1)


def apply_faults(key, Y: Float[Array, "N m"], faults: Sequence, n=None) -> Float[Array, "N m"]:
    """The fault models applied in order, each with its own sub-key; ``n``: how many of the
    N workers exist (a padded scheme's ``workers``), None for all."""
    for k, fault in zip(jax.random.split(key, max(len(faults), 1)), faults):
        Y = fault.corrupt(k, Y) if n is None else fault.corrupt(k, Y, n)
    return Y


def sample_round(scheme, stragglers, faults, Y, key):
    """One round's randomness: what the faults make of the honest outputs ``Y`` and which
    workers answer. Returns the outputs after faults and the (N,) answered mask (erasures
    are the decoder's business). The key is split as ``run_round`` and ``monte_carlo``
    split it, so trial i of a Monte Carlo run is ``run_round`` with that trial's key."""
    k_mask, k_fault = jax.random.split(key)
    n = scheme.workers  # a padded scheme: the models draw among the existing workers
    mask = (stragglers.draw_mask(k_mask, scheme.N) if n is None
            else stragglers.draw_mask(k_mask, scheme.N, n))
    return apply_faults(k_fault, Y, faults, n), mask


def existing_workers(scheme) -> int:
    """How many workers a scheme's models draw among: a padded scheme's own count
    (``Scheme.workers``, concrete and one), else N (a stacked sweep of several counts
    counts at its padded N)."""
    workers = scheme.workers
    if workers is not None and np.ndim(workers) == 0 and check.is_concrete(workers):
        return int(workers)
    return scheme.N


def run_round(f, scheme, X, key, stragglers, faults) -> CodedResult:
    """Encode, run f on every worker, draw stragglers and faults, decode."""
    coded, _ = scheme.encode_report(X)
    Y, answered = sample_round(scheme, stragglers, faults, outputs(f, coded), key)
    estimate, used, recovered = scheme.decode_report(Y, answered)
    return CodedResult(estimate, used, Y, recovered)


# ----------------------------------------------------------------------- metrics


def mse(estimate: Float[Array, "K m"], truth: Float[Array, "K m"]) -> Float[Array, ""]:
    """(1/K) sum_k ||estimate_k - truth_k||^2 of (K, m) arrays: the per-trial loss of every
    evaluator. A traced metric (jit, vmap and grad apply); shapes are not checked.

    Args:
      estimate: (K, m) float estimates.
      truth: (K, m) float true outputs.

    Returns:
      A float JAX scalar in the dtype of the inputs.

    Example:
      >>> import jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> float(lc.mse(jnp.array([[1.0, 2.0], [0.0, 0.0]]), jnp.zeros((2, 2))))
      2.5
    """
    return jnp.mean(jnp.sum((estimate - truth) ** 2, axis=-1))


def relacc(
    estimate: Float[Array, "K m"], truth: Float[Array, "K m"], labels: Int[Array, " K"]
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """(RelAcc, agreement) of (K, m) logits: the accuracy of argmax(estimate) over the
    accuracy of argmax(truth) against the (K,) integer ``labels`` (NaN when truth gets
    none right), and the share of inputs whose argmax is unchanged. A traced metric;
    shapes are not checked.

    Args:
      estimate: (K, m) float logits (the estimates).
      truth: (K, m) float logits (f's own outputs).
      labels: (K,) int class labels in [0, m).

    Returns:
      ``(relacc, agreement)``: two float JAX scalars in the dtype of ``estimate``.

    Example:
      >>> import jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> truth = jnp.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])     # argmax 0, 1, 0
      >>> estimate = jnp.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])  # argmax 0, 0, 0
      >>> [round(float(v), 3) for v in lc.relacc(estimate, truth, jnp.array([0, 1, 1]))]
      [0.5, 0.667]
    """
    pred, ref = jnp.argmax(estimate, -1), jnp.argmax(truth, -1)

    def rate(hits):
        return jnp.mean(hits.astype(estimate.dtype))

    labels = labels.astype(pred.dtype)
    acc_ref = rate(ref == labels)
    rel = rate(pred == labels) / jnp.where(acc_ref > 0, acc_ref, jnp.nan)
    return rel, rate(pred == ref)


def trial_metrics(estimate, truth, labels, used, recovered) -> MonteCarloResult:
    """The metrics of one trial (scalars); RelAcc and agreement are NaN without labels."""
    err = mse(estimate, truth)
    if labels is None:
        rel = agree = jnp.full((), jnp.nan, err.dtype)
    else:
        rel, agree = relacc(estimate, truth, labels)
    rec = jnp.mean(recovered.astype(err.dtype))
    return MonteCarloResult(err, jnp.sqrt(err), rec, jnp.sum(used.astype(jnp.int32)), rel, agree)


# ------------------------------------------------------------------------ sweeps


def _leaf_ndims(tree) -> list[int]:
    """The unbatched rank of every leaf of ``tree``, in ``jax.tree.leaves`` order.

    Dataclass pytrees (schemes, models) declare it per field as ``metadata={"ndim": n}``
    (default 0: a scalar parameter); leaves elsewhere are scalars.
    """
    if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        ranks = []
        for field in dataclasses.fields(tree):
            if not field.metadata.get("static", False):
                count = len(jax.tree.leaves(getattr(tree, field.name)))
                ranks += [field.metadata.get("ndim", 0)] * count
        return ranks
    if isinstance(tree, (tuple, list)):
        return [rank for item in tree for rank in _leaf_ndims(item)]
    return [0] * len(jax.tree.leaves(tree))


def _split_shapes(tree):
    """(leaves, treedef, batch shape of each leaf, unbatched shape of each leaf)."""
    leaves, treedef = jax.tree.flatten(tree)
    batch, base = [], []
    for leaf, rank in zip(leaves, _leaf_ndims(tree)):
        shape = np.shape(leaf)
        if len(shape) < rank:
            raise ValueError(f"a parameter of shape {shape} needs at least {rank} dimensions.")
        batch.append(shape[: len(shape) - rank])
        base.append(shape[len(shape) - rank:])
    return leaves, treedef, batch, base


def batch_shape(tree) -> tuple[int, ...]:
    """The sweep grid of ``tree`` (schemes, models, tuples of them): the broadcast of the
    leading axes that parameters carry beyond their own rank; () when nothing is swept."""
    _, _, batch, _ = _split_shapes(tree)
    empty = sorted({s for s in batch if 0 in s})
    if empty:
        raise ValueError(f"a swept parameter has an empty sweep axis (leading axes {empty}); "
                         "give every sweep at least one value.")
    try:
        return tuple(np.broadcast_shapes(*batch)) if batch else ()
    except ValueError:
        swept = sorted({s for s in batch if s})
        raise ValueError(
            f"swept parameters have leading axes {swept} that do not broadcast together; "
            "give them broadcastable shapes (e.g. (10, 1) and (26,) for a 10 x 26 grid)."
        ) from None


def padded_map(fn: Callable, xs, batch_size: int):
    """``lax.map(fn, xs, batch_size=batch_size)``, with the leading axis padded to a multiple
    of ``batch_size`` by repeating its last item (the extra outputs are cut off): one
    compiled body instead of a second one for the remainder."""
    n = jax.tree.leaves(xs)[0].shape[0]
    batch_size = max(1, min(batch_size, n))
    pad = -n % batch_size
    if pad:
        index = jnp.minimum(jnp.arange(n + pad), n - 1)
        xs = jax.tree.map(lambda x: x[index], xs)
    out = lax.map(fn, xs, batch_size=batch_size)
    return jax.tree.map(lambda v: v[:n], out) if pad else out


def over_grid(fn: Callable, tree, batch_size: int | None = 1):
    """``fn(tree)`` at every point of ``tree``'s sweep grid, outputs stacked as (*grid, ...).

    Without a sweep this is ``fn(tree)``. Otherwise every leaf is broadcast to the grid,
    and the points run through ``lax.map`` with ``batch_size`` points vmapped at a time
    (1: one after another, which keeps the working set of each point; None: all at once).
    """
    grid = batch_shape(tree)
    if not grid:
        return fn(tree)
    leaves, treedef, _, base = _split_shapes(tree)
    points = math.prod(grid)
    flat = [jnp.broadcast_to(leaf, grid + b).reshape((points,) + b)
            for leaf, b in zip(leaves, base)]
    out = padded_map(lambda ls: fn(jax.tree.unflatten(treedef, ls)), flat,
                     points if batch_size is None else batch_size)
    return jax.tree.map(lambda v: v.reshape(grid + v.shape[1:]), out)


@pytree_dataclass
@dataclasses.dataclass(frozen=True)
class _Outputs:
    """Honest worker outputs as a sweep-aware leaf: (N, m) per grid point."""

    Y: Float[Array, "*grid N m"] = dataclasses.field(metadata={"ndim": 2})


# ------------------------------------------------------------------- Monte Carlo


def _grid_trials(keys, scheme, stragglers, faults, honest, truth, labels, batch_size):
    """Per-trial metrics (*grid, T) of trials with ``keys`` (T,), on every grid point."""
    batch = keys.shape[0] if batch_size is None else min(batch_size, keys.shape[0])

    def at(point):
        scheme, stragglers, faults, honest = point

        def trial(key):
            Y, answered = sample_round(scheme, stragglers, faults, honest.Y, key)
            estimate, used, recovered = scheme.decode_report(Y, answered)
            return trial_metrics(estimate, truth, labels, used, recovered)

        return padded_map(trial, keys, batch)

    # Few trials per point: vmap several points at once, so a batch still fills the cache.
    grid_batch = None if batch_size is None else max(1, batch_size // batch)
    return over_grid(at, (scheme, stragglers, faults, honest), grid_batch)


def monte_carlo(f, scheme, X, key, labels, stragglers, faults, *, trials: int,
                batch_size: int | None = 64, devices: tuple = ()) -> MonteCarloResult:
    """Per-trial metrics of ``trials`` straggler patterns: (*grid, trials) for inputs X of
    shape (K, d), and (*grid, C, trials) for C batches X of shape (C, K, d).

    f runs on X once and on the coded inputs once per point of the encoder's own grid
    (usually once: sweeping a decoder-only parameter such as ``lam_dec`` reuses the
    outputs). Trial t uses key t of ``jax.random.split(key, trials)``; with batches, batch c
    uses ``key_c = jax.random.split(key, C)[c]`` in its place. Every grid point sees the
    same keys (common random numbers), on any number of ``devices``. ``labels``: None, (K,)
    or, with batches, (C, K).
    """
    batched = X.ndim == 3
    if batched:
        keys = jax.vmap(lambda k: jax.random.split(k, trials))(jax.random.split(key, X.shape[0]))
    else:
        X, keys = X[None], jax.random.split(key, trials)[None]
        labels = None if labels is None else labels[None]
    truth = jax.vmap(functools.partial(outputs, f))(X)
    encoder = scheme.encoder_view()
    honest = jax.vmap(lambda x: over_grid(lambda s: outputs(f, s.encode_report(x)[0]),
                                             encoder))(X)

    def run(keys, scheme, stragglers, faults, honest, truth, labels):
        """(*grid, C, T) metrics of this device's trials, batch after batch."""

        def batch(inputs):
            keys, honest, truth, labels = inputs
            return _grid_trials(keys, scheme, stragglers, faults, _Outputs(honest), truth,
                                labels, batch_size)

        out = lax.map(batch, (keys, honest, truth, labels))
        return jax.tree.map(lambda v: jnp.moveaxis(v, 0, -2), out)

    args = (scheme, stragglers, faults, honest, truth, labels)
    if len(devices) <= 1:
        out = run(keys, *args)
    else:
        # The last device's share is padded with repeats of the last key, then cut off.
        per = -(-trials // len(devices))
        keys = keys[:, jnp.minimum(jnp.arange(per * len(devices)), trials - 1)]
        grid = batch_shape((scheme, stragglers, faults))
        spec = jax.sharding.PartitionSpec
        mesh = jax.sharding.Mesh(np.asarray(devices), ("trials",))
        out = jax.shard_map(run, mesh=mesh, in_specs=(spec(None, "trials"),) + (spec(),) * 6,
                            out_specs=spec(*([None] * (len(grid) + 1)), "trials"),
                            check_vma=False)(keys, *args)
        out = jax.tree.map(lambda v: v[..., :trials], out)
    return out if batched else jax.tree.map(lambda v: v[..., 0, :], out)


def finite_truth(f, X) -> Bool[Array, " C"]:
    """Whether f is finite on every input of each batch X (C, K, d): the evaluators'
    loss compares with f(X), so the programs that compute it report this too."""
    return jax.vmap(lambda x: jnp.all(jnp.isfinite(outputs(f, x))))(X)


def expected_loss(f, scheme, X, key, stragglers, faults, *, trials: int,
                  batch_size: int | None = 64) -> Float[Array, "*grid"]:
    """Mean Monte Carlo loss over calibration batches X (C, K, d) and trials (the keys of
    ``monte_carlo`` with batches). Differentiable in every leaf of ``scheme``."""
    result = monte_carlo(f, scheme, X, key, None, stragglers, faults, trials=trials,
                         batch_size=batch_size)
    return jnp.mean(result.mse, axis=(-2, -1))


# --------------------------------------------------------- compiled entry points
@functools.partial(jax.jit, static_argnames="f")
def honest_outputs(f, scheme, X):
    """f on the inputs (K, m) and on the coded inputs: (N, m), or (*grid, N, m) when an
    encoder parameter is swept."""
    encoder = scheme.encoder_view()
    return outputs(f, X), over_grid(lambda s: outputs(f, s.encode_report(X)[0]), encoder)


# Module-level jitted functions: their caches are what makes eager calls cheap. The
# evaluators' programs also report whether f is finite on the inputs (``finite_truth``;
# XLA computes f(X) once for both).
run_round_compiled = jax.jit(run_round, static_argnames="f")


@functools.partial(jax.jit, static_argnames=("f", "trials", "batch_size", "devices"))
def monte_carlo_compiled(f, scheme, X, key, labels, stragglers, faults, *, trials, batch_size,
                         devices):
    result = monte_carlo(f, scheme, X, key, labels, stragglers, faults, trials=trials,
                         batch_size=batch_size, devices=devices)
    return result, finite_truth(f, X if X.ndim == 3 else X[None])


@functools.partial(jax.jit, static_argnames=("f", "trials", "batch_size"))
def expected_loss_compiled(f, scheme, X, key, stragglers, faults, *, trials, batch_size=64):
    loss = expected_loss(f, scheme, X, key, stragglers, faults, trials=trials,
                         batch_size=batch_size)
    return loss, finite_truth(f, X)

