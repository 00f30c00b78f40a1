"""Running f on coded inputs, and the Monte Carlo evaluator of the paper's loss.

The paper's loss is E_F[(1/K) sum_k ||f_hat(x_k) - f(x_k)||^2], the expectation over the
survivor set F. ``monte_carlo`` estimates it in one jitted call: f runs once on the K
inputs and once on the N coded inputs (f is deterministic, so stragglers only decide which
results are used), then every trial's faults and decoding are vmapped.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from ._models import NoStragglers
from ..core._schemes import Scheme
from .._validation import check_finite, check_matrix, float_array, is_concrete

__all__ = ["CodedResult", "MonteCarloResult", "run_coded", "monte_carlo", "mse", "relacc"]


class CodedResult(NamedTuple):
    """One coded round.

    Attributes:
      estimate: (K, m) decoded estimates of f(x_k).
      alive: (N,) mask of the results the decoder used (answered and finite).
      outputs: (N, m) what the workers returned (after faults; stragglers included).
      recovered: (K,) which inputs got a genuine estimate.
    """

    estimate: Float[Array, "K m"]
    alive: Bool[Array, " N"]
    outputs: Float[Array, "N m"]
    recovered: Bool[Array, " K"]


class MonteCarloResult(NamedTuple):
    """Per-trial metrics of ``monte_carlo`` (each of shape (trials,)).

    Attributes:
      mse: (1/K) sum_k ||f_hat(x_k) - f(x_k)||^2, the paper's loss for that pattern.
      rmse: sqrt(mse).
      recovered: fraction of the K inputs with a genuine estimate (unrecovered inputs are
        estimated as 0 and still count in mse).
      survivors: number of results the decoder used.
      relacc: accuracy of argmax f_hat against labels / accuracy of argmax f (NaN if no
        labels were given).
      agreement: fraction of inputs where argmax f_hat == argmax f.
    """

    mse: Float[Array, " T"]
    rmse: Float[Array, " T"]
    recovered: Float[Array, " T"]
    survivors: Int[Array, " T"]
    relacc: Float[Array, " T"]
    agreement: Float[Array, " T"]

    def summary(self) -> dict:
        """Mean and standard deviation over trials of every metric, as Python floats."""
        out = {"trials": int(self.mse.shape[0])}
        for name in self._fields:
            values = np.asarray(getattr(self, name), np.float64)
            out[f"{name}_mean"] = float(np.mean(values))
            out[f"{name}_std"] = float(np.std(values))
        out["failure_rate"] = float(np.mean(np.asarray(self.recovered) < 1.0))
        return out


def mse(estimate: Float[Array, "K m"], truth: Float[Array, "K m"]) -> Float[Array, ""]:
    """(1/K) sum_k ||estimate_k - truth_k||^2."""
    return jnp.mean(jnp.sum((estimate - truth) ** 2, axis=-1))


def relacc(
    estimate: Float[Array, "K m"], truth: Float[Array, "K m"], labels: Int[Array, " K"]
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """(RelAcc, agreement): accuracy of argmax(estimate) over accuracy of argmax(truth)
    against ``labels``, and the fraction of matching argmaxes."""
    pred, ref = jnp.argmax(estimate, -1), jnp.argmax(truth, -1)

    def rate(hits):
        return jnp.mean(hits.astype(estimate.dtype))

    acc_ref = rate(ref == labels)
    rel = rate(pred == labels) / jnp.where(acc_ref > 0, acc_ref, jnp.nan)
    return rel, rate(pred == ref)


def _apply_faults(key, Y, faults):
    for k, fault in zip(jax.random.split(key, max(len(faults), 1)), faults):
        Y = fault.apply(k, Y)
    return Y


def _check_inputs(f, scheme, X, stragglers):
    if not callable(f):
        raise TypeError(f"f must be callable (one input (d,) -> one output (m,)), got {f!r}.")
    if not isinstance(scheme, Scheme):
        raise TypeError(f"scheme must be a letcc_jax scheme (e.g. letcc_jax.letcc(K, N)), got {scheme!r}.")
    X = float_array(X, "X")
    check_matrix(X, scheme.K, "X", "K")
    check_finite(X, "X")
    need, guaranteed = scheme.min_survivors, stragglers.min_alive(scheme.N)
    if 0 < guaranteed < need:
        raise ValueError(
            f"{scheme.name} needs at least {need} survivors but {stragglers} leaves only "
            f"{guaranteed} of N={scheme.N}; reduce the stragglers or add workers."
        )
    return X


def _outputs(f, X):
    Y = jax.vmap(f)(X)
    if Y.ndim == 1:
        Y = Y[:, None]
    return Y.reshape(Y.shape[0], -1)


@functools.partial(jax.jit, static_argnames=("f", "stragglers", "faults"))
def _run_coded(f, scheme, X, key, stragglers, faults):
    k_mask, k_fault = jax.random.split(key)
    Y = _apply_faults(k_fault, _outputs(f, scheme.encode(X)), faults)
    alive = scheme.effective_mask(Y, stragglers.sample(k_mask, scheme.N))
    estimate = scheme._decode(jnp.where(alive[:, None], Y, 0.0), alive)
    return CodedResult(estimate, alive, Y, scheme.recovered(alive))


def run_coded(
    f: Callable,
    scheme: Scheme,
    X: Float[Array, "K d"],
    key: jax.Array,
    *,
    stragglers=NoStragglers(),
    faults: Sequence = (),
) -> CodedResult:
    """Encode X, run f on every worker (vectorised), drop stragglers, decode.

    Args:
      f: maps one input (d,) to one output (m,) (or a scalar), e.g. a flax apply; it must
        be hashable (a function or a ``functools.partial``) since it is a static argument.
      scheme: a coding scheme, e.g. ``letcc_jax.letcc(K, N)``.
      X: (K, d) inputs.
      key: PRNG key for the straggler pattern and faults.
      stragglers: a straggler model (default: everyone answers).
      faults: fault models applied to the worker outputs, in order.

    Returns:
      A ``CodedResult``; ``estimate`` is (K, m).
    """
    X = _check_inputs(f, scheme, X, stragglers)
    result = _run_coded(f, scheme, X, key, stragglers, tuple(faults))
    if is_concrete(result.alive):
        scheme._check_recoverable(result.alive)
    return result


@functools.partial(
    jax.jit,
    static_argnames=("f", "trials", "stragglers", "faults", "with_labels", "batch_size", "devices"),
)
def _monte_carlo(f, scheme, X, key, labels, trials, stragglers, faults, with_labels, batch_size,
                 devices=()):
    truth = _outputs(f, X)
    Y = _outputs(f, scheme.encode(X))

    def trials_on(keys, scheme, Y, truth, labels):
        def trial(k):
            k_mask, k_fault = jax.random.split(k)
            Yt = _apply_faults(k_fault, Y, faults)
            alive = scheme.effective_mask(Yt, stragglers.sample(k_mask, scheme.N))
            est = scheme._decode(jnp.where(alive[:, None], Yt, 0.0), alive)
            err = mse(est, truth)
            if with_labels:
                rel, agree = relacc(est, truth, labels)
            else:
                rel = agree = jnp.full((), jnp.nan, err.dtype)
            rec = jnp.mean(scheme.recovered(alive).astype(err.dtype))
            return MonteCarloResult(err, jnp.sqrt(err), rec, jnp.sum(alive), rel, agree)

        batch = None if batch_size is None else min(batch_size, keys.shape[0])
        return jax.lax.map(trial, keys, batch_size=batch)

    keys = jax.random.split(key, trials)
    if len(devices) <= 1:
        return trials_on(keys, scheme, Y, truth, labels)
    # Trial i always gets key i, so the result does not depend on the number of devices;
    # the last device's share is padded with repeats of the last key, then cut off.
    per = -(-trials // len(devices))
    padded = keys[jnp.minimum(jnp.arange(per * len(devices)), trials - 1)]
    mesh = jax.sharding.Mesh(np.asarray(devices), ("trials",))
    spec = jax.sharding.PartitionSpec
    out = jax.shard_map(trials_on, mesh=mesh, in_specs=(spec("trials"), spec(), spec(), spec(), spec()),
                        out_specs=spec("trials"), check_vma=False)(padded, scheme, Y, truth, labels)
    return jax.tree.map(lambda v: v[:trials], out)


def monte_carlo(
    f: Callable,
    scheme: Scheme,
    X: Float[Array, "K d"],
    key: jax.Array,
    *,
    trials: int = 100,
    stragglers=NoStragglers(),
    faults: Sequence = (),
    labels: Int[Array, " K"] | None = None,
    batch_size: int | None = 64,
    devices: Sequence[jax.Device] | None = None,
) -> MonteCarloResult:
    """Monte Carlo estimate of the paper's loss over random straggler patterns.

    One jitted call: f runs on X and on the coded inputs once; then ``trials`` patterns
    (and fault draws) are decoded in vmapped batches of ``batch_size``, spread over
    ``devices``. Trial i's pattern depends only on ``key`` and i, never on the devices.

    Args:
      f: one input (d,) -> one output (m,); hashable (static argument).
      scheme: the coding scheme.
      X: (K, d) inputs.
      key: PRNG key.
      trials: number of straggler patterns.
      stragglers: straggler model, e.g. ``ExactStragglers(S)``.
      faults: output fault models (noise, adversaries, failed workers).
      labels: optional (K,) integer labels, to report RelAcc.
      batch_size: trials decoded per vmapped batch; moderate batches keep the working set
        in cache (64 measured fastest on CPU); None = all at once.
      devices: devices to share the trials between (each decodes its share); None = every
        local device of the default backend. A CPU is one device unless JAX is told
        otherwise: ``jax.config.update("jax_num_cpu_devices", os.cpu_count())`` before
        the first JAX computation makes one per core (trials are independent, so this
        scales with cores).

    Returns:
      ``MonteCarloResult`` with per-trial metrics; ``.summary()`` gives mean and std.
    """
    if not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials must be a positive int, got {trials!r}.")
    X = _check_inputs(f, scheme, X, stragglers)
    with_labels = labels is not None
    if with_labels:
        labels = jnp.asarray(labels)
        if labels.shape != (scheme.K,) or not jnp.issubdtype(labels.dtype, jnp.integer):
            raise ValueError(f"labels must be integers of shape (K,) = ({scheme.K},), got {labels.shape} {labels.dtype}.")
    else:
        labels = jnp.zeros((scheme.K,), jnp.int32)
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}.")
    devices = tuple(jax.local_devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices: give at least one device (or None for all local devices).")
    return _monte_carlo(
        f, scheme, X, key, labels, trials, stragglers, tuple(faults), with_labels, batch_size,
        devices=devices if len(devices) > 1 else (),
    )
