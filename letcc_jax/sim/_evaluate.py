"""Running f on coded inputs, and the Monte Carlo evaluator of the paper's loss.

The paper's loss is E_F[(1/K) sum_k ||f_hat(x_k) - f(x_k)||^2], the expectation over the
survivor set F. ``monte_carlo`` estimates it in one compiled call: f runs once on the K
inputs and once on the N coded inputs (f is deterministic, so stragglers only decide which
results are used), then every trial's faults and decoding run in vmapped blocks.

Sweeps: any numeric parameter of the scheme or the models given as an array with extra
leading axes (e.g. ``GaussianNoise(jnp.logspace(-3, -1, 10)[:, None])`` and
``scheme.replace(lam_dec=jnp.logspace(-9, 0, 26))``) is swept; the axes broadcast like
NumPy's (here to a 10 x 26 grid), every grid point sees the same straggler patterns and
noise draws (common random numbers), and the whole grid is one compilation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from .. import _validation as check
from . import _rounds
from ._rounds import CodedResult, MonteCarloResult, mse, relacc
from ..core._schemes import Scheme
from ._models import FaultModel, NoStragglers, StragglerModel

__all__ = ["CodedResult", "MonteCarloResult", "run_coded", "monte_carlo", "expected_loss",
           "mse", "relacc", "check_round", "check_truth"]


def check_round(f, scheme, X, stragglers, faults, key, *, name: str = "X",
                batches: bool = False, single: bool = False):
    """Validate the arguments of a simulated round, X being (K, d) inputs or (C, K, d)
    batches (with ``batches``, (K, d) becomes C = 1; with ``single``, only (K, d)); returns
    ``(X, faults)`` as used.

    Raises a clear error for a non-callable or unhashable f, a non-scheme, inputs of the
    wrong shape or with non-finite values, a scheme's fallback of the wrong size, unknown model objects, models whose sizes exceed
    N, a straggler model that leaves fewer survivors than the scheme needs (unless the
    scheme has a fallback for what it loses), and a key that
    is not one PRNG key. Whether f is finite on X is for ``check_truth`` (the programs
    that compute f(X) report it).
    """
    check.check_key(key)
    if not callable(f):
        raise TypeError(f"f must be callable (one input (d,) -> one output (m,)), got {f!r}.")
    try:
        hash(f)
    except TypeError:
        raise TypeError(f"f must be hashable: compilations are cached per f. Pass a function "
                        f"or a functools.partial instead of {type(f).__name__}.") from None
    if not isinstance(scheme, Scheme):
        raise TypeError("scheme must be a letcc_jax scheme (e.g. letcc_jax.letcc(K, N)), "
                        f"got {scheme!r}.")
    if batches or (np.ndim(X) == 3 and not single):
        X = _calibration_batches(X, scheme.K, name)
    else:
        X = check.float_array(X, name)
        check.check_matrix(X, scheme.K, name, "K")
    check.check_finite(X, name, " Coded computing needs finite inputs; clean or drop them first.")
    if not isinstance(stragglers, StragglerModel):
        raise TypeError("stragglers must be a straggler model (e.g. "
                        f"letcc_jax.ExactStragglers(S)), got {stragglers!r}.")
    if faults is None or isinstance(faults, FaultModel):
        faults = () if faults is None else (faults,)
    elif not isinstance(faults, (tuple, list)):
        raise TypeError(f"faults must be a list of fault models (e.g. "
                        f"[letcc_jax.GaussianNoise(sigma)]), got {faults!r}.")
    faults = tuple(faults)
    for fault in faults:
        if not isinstance(fault, FaultModel):
            raise TypeError(f"faults must be fault models (e.g. letcc_jax.GaussianNoise(sigma)), "
                            f"got {fault!r}.")
    for model in (scheme, stragglers, *faults):
        model.validate()
    N = _rounds.existing_workers(scheme)  # the workers the models draw among
    for model in (stragglers, *faults):
        model.check_workers(N)
    need, guaranteed = scheme.min_survivors, stragglers.min_alive(N)
    if 0 < guaranteed < need and scheme.fallback is None:  # a fallback estimates the lost
        raise ValueError(
            f"{scheme.name} needs at least {need} survivors but {stragglers} leaves only "
            f"{guaranteed} of N={N}; reduce the stragglers or add workers."
        )
    _rounds.batch_shape((scheme, stragglers, faults))  # a clear error if sweeps do not broadcast
    if faults:  # sizes the outputs' dtype cannot hold (1e30 in float32) would become inf
        dtype = _output(f, tuple(X.shape[-1:]), X.dtype).dtype
        for fault in faults:
            fault.check_dtype(dtype)
    if scheme.fallback is not None:
        scheme.check_fallback(_output_size(f, tuple(X.shape[-1:]), X.dtype))
    return X, faults


def check_truth(finite, X, name: str = "X") -> None:
    """Raise unless f was finite on every batch of inputs (``finite``: (C,) bool, from the
    program that evaluated f(X)); skipped under a transformation, where it is traced."""
    if not check.is_concrete(X, finite):
        return
    finite = np.asarray(finite)
    if not finite.all():
        where = "" if X.ndim == 2 else f" (batch {np.flatnonzero(~finite).tolist()[:5]})"
        raise ValueError(f"f returned NaN or inf on the inputs {name}{where}: the loss "
                         "compares the estimates with f's outputs there, so they must be "
                         "finite.")


@functools.lru_cache(maxsize=64)
def _output(f, shape: tuple, dtype) -> jax.ShapeDtypeStruct:
    """The shape and dtype of f's outputs on one input of ``shape`` and ``dtype``."""
    return jax.eval_shape(lambda x: _rounds.outputs(f, x),
                          jax.ShapeDtypeStruct((1,) + shape, dtype))


def _output_size(f, shape: tuple, dtype) -> int:
    """m, the size of one output of f on an input of ``shape`` and ``dtype``."""
    return int(_output(f, shape, dtype).shape[-1])


def _calibration_batches(X, K: int, name: str):
    """Inputs as (C, K, d) batches; a single (K, d) batch becomes C = 1."""
    X = check.float_array(X, name)
    if X.ndim == 2:
        X = X[None]
    if X.ndim != 3 or X.shape[1] != K:
        raise ValueError(
            f"{name} must have shape (K, d) or (C, K, d) with K = {K}, got {X.shape}. "
            "Flatten each input to a vector first."
        )
    if X.shape[0] == 0 or X.shape[2] == 0:
        raise ValueError(f"{name} has shape {X.shape}: it needs at least one batch (C >= 1) "
                         "of inputs with at least one feature (d >= 1).")
    return X


def run_coded(
    f: Callable,
    scheme: Scheme,
    X: Float[Array, "K d"],
    key: jax.Array,
    *,
    stragglers: StragglerModel = NoStragglers(),
    faults: Sequence[FaultModel] = (),
) -> CodedResult:
    """Encode X, run f on every worker (vectorised), drop stragglers, decode.

    Args:
      f: maps one input (d,) to one output (m,) (or a scalar), e.g. a flax apply; it must
        be hashable (a function or a ``functools.partial``): compilations are cached per f.
      scheme: a coding scheme, e.g. ``letcc_jax.letcc(K, N)``.
      X: (K, d) inputs.
      key: PRNG key for the straggler pattern and faults.
      stragglers: a straggler model (default: everyone answers).
      faults: fault models applied to the worker outputs, in order.

    Returns:
      A ``CodedResult``; ``estimate`` is (K, m).

    Raises:
      TypeError: as ``monte_carlo`` (f, the scheme, the models or the key of the wrong
        type).
      ValueError: bad inputs as for ``monte_carlo``, or (on concrete values) an input
        could not be estimated from the workers that answered.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> def f(x):
      ...     return jnp.tanh(x)
      >>> out = lc.run_coded(f, lc.letcc(4, 12), jnp.linspace(-1, 1, 8).reshape(4, 2),
      ...                    jax.random.key(0), stragglers=lc.ExactStragglers(3))
      >>> out.estimate.shape, int(out.alive.sum())
      ((4, 2), 9)
    """
    X, faults = check_round(f, scheme, X, stragglers, faults, key, single=True)
    grid = _rounds.batch_shape((scheme, stragglers, faults))
    if grid:
        raise ValueError(f"run_coded runs one round; its parameters are swept over {grid}. "
                         "Use monte_carlo for sweeps.")
    result = _rounds.run_round_compiled(f, scheme, X, key, stragglers, faults)
    scheme.check_recovered(result.alive, result.recovered)
    return result


def monte_carlo(
    f: Callable,
    scheme: Scheme,
    X: Float[Array, "*C K d"],
    key: jax.Array,
    *,
    trials: int = 100,
    stragglers: StragglerModel = NoStragglers(),
    faults: Sequence[FaultModel] = (),
    labels: Int[Array, "*C K"] | None = None,
    batch_size: int | None = 64,
    devices: Sequence[jax.Device] | None = None,
) -> MonteCarloResult:
    """Monte Carlo estimate of the paper's loss over random straggler patterns.

    One compiled call, cached on f, the scheme's and the models' structure (types and
    sizes), shapes and dtypes: new parameter values, keys and inputs reuse it. f runs on X
    and on the coded inputs once; then ``trials`` patterns (and fault draws) are decoded in
    vmapped batches of ``batch_size``, spread over ``devices``. Trial i's pattern depends
    only on ``key`` and i, never on the devices or the grid point.

    Args:
      f: one input (d,) -> one output (m,); hashable (compilations are cached per f).
      scheme: the coding scheme; its numeric leaves may carry sweep axes.
      X: (K, d) inputs, or C batches of them (C, K, d); batch c uses key c of
        ``jax.random.split(key, C)`` in place of ``key``.
      key: PRNG key.
      trials: number of straggler patterns (per batch).
      stragglers: straggler model, e.g. ``ExactStragglers(S)``; parameters may be swept.
      faults: output fault models (noise, adversaries, failed workers); parameters may be
        swept.
      labels: optional (K,) integer labels (C, K with batches), to report RelAcc.
      batch_size: trials decoded per vmapped batch; moderate batches keep the working set
        in cache (64 measured fastest on CPU); None = all at once.
      devices: devices to share the trials between (each decodes its share); None = every
        local device of the default backend. A CPU is one device unless JAX is told
        otherwise: ``jax.config.update("jax_num_cpu_devices", os.cpu_count())`` before
        the first JAX computation makes one per core (trials are independent, so this
        scales with cores).

    Returns:
      ``MonteCarloResult`` with per-trial metrics of shape ``(*grid, trials)``, or
      ``(*grid, C, trials)`` with batches; grid = the broadcast sweep axes (empty without
      a sweep). ``.summary()`` gives mean and std over trials.

    Raises:
      TypeError: f not callable or not hashable, or with complex, integer or tuple
        outputs; a scheme, straggler model, fault model, key or devices of the wrong type;
        labels that are not integers.
      ValueError: X not (K, d) or (C, K, d), or not finite; f not finite on X; ``trials``
        or ``batch_size`` not a positive int; a model that names more workers than N, or
        leaves fewer survivors than the scheme needs; sweep axes that do not broadcast;
        labels of the wrong shape or outside [0, m); a device named twice in ``devices``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> X = jnp.linspace(-1, 1, 8).reshape(4, 2)
      >>> sigmas = jnp.array([[0.0], [0.1]])                             # (2, 1)
      >>> swept = lc.letcc(4, 12).replace(lam_dec=jnp.array([0.0, 1e-4, 1e-2]))  # (3,)
      >>> result = lc.monte_carlo(jnp.tanh, swept, X, jax.random.key(0), trials=16,
      ...                         stragglers=lc.ExactStragglers(3),
      ...                         faults=[lc.GaussianNoise(sigmas)])
      >>> result.mse.shape                                   # (sigma, lam_dec, trials)
      (2, 3, 16)
      >>> result.summary()["mse_mean"].shape                 # averaged over the trials
      (2, 3)
    """
    trials = check.check_positive_int(trials, "trials")
    X, faults = check_round(f, scheme, X, stragglers, faults, key)
    if labels is not None:
        try:
            labels = jnp.asarray(labels)
        except TypeError:
            raise TypeError(f"labels must be an integer array, got {labels!r}.") from None
        shape = X.shape[:-1]
        if labels.shape != shape or not jnp.issubdtype(labels.dtype, jnp.integer):
            name = "(C, K)" if X.ndim == 3 else "(K,)"
            raise ValueError(f"labels must be integers of shape {name} = {shape}, got "
                             f"{labels.shape} {labels.dtype}.")
        values = check.concrete_values(labels)
        m = _output_size(f, X.shape[-1:], X.dtype)
        if values is not None and values.size and (values.min() < 0 or values.max() >= m):
            raise ValueError(f"labels must be class indices in [0, m) = [0, {m}) (argmax over "
                             f"f's {m} outputs), got values in [{values.min()}, {values.max()}].")
    if batch_size is not None:
        batch_size = check.check_positive_int(batch_size, "batch_size")
    if isinstance(devices, jax.Device):
        devices = (devices,)
    devices = tuple(jax.local_devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices: give at least one device (or None for all local devices).")
    if not all(isinstance(device, jax.Device) for device in devices):
        raise TypeError(f"devices must be JAX devices (e.g. jax.local_devices()), got "
                        f"{devices!r}.")
    repeated = [device for i, device in enumerate(devices) if device in devices[:i]]
    if repeated:
        raise ValueError(
            f"devices must be distinct: {repeated[0]} appears more than once in {devices!r}. "
            "Give each device once (each decodes its share of the trials); for more CPU "
            "devices, call jax.config.update(\"jax_num_cpu_devices\", os.cpu_count()) before "
            "the first JAX computation.")
    result, finite = _rounds.monte_carlo_compiled(
        f, scheme, X, key, labels, stragglers, faults, trials=trials, batch_size=batch_size,
        devices=devices if len(devices) > 1 else ())
    check_truth(finite, X)
    return result


def expected_loss(
    f: Callable,
    scheme: Scheme,
    X_cal: Float[Array, "C K d"],
    key: jax.Array,
    *,
    trials: int = 32,
    stragglers: StragglerModel = NoStragglers(),
    faults: Sequence[FaultModel] = (),
) -> Float[Array, "*grid"]:
    """Monte Carlo estimate of the paper's loss, averaged over calibration batches.

    Exactly ``monte_carlo``'s mean MSE for each (K, d) batch of ``X_cal``, batch c using
    the c-th key of ``jax.random.split(key, C)`` (a single (K, d) batch is C = 1);
    differentiable in every leaf of ``scheme`` (``jax.grad`` of this function is what
    ``tune`` follows). Swept parameters give one value per grid point, shape ``(*grid)``.

    Args:
      f: one input (d,) -> one output (m,); hashable (compilations are cached per f).
      scheme: the coding scheme; its numeric leaves may carry sweep axes.
      X_cal: (K, d) or (C, K, d) float calibration inputs.
      key: PRNG key.
      trials: straggler patterns per batch.
      stragglers: straggler model (default: everyone answers); may be swept.
      faults: output fault models; may be swept.

    Returns:
      The mean loss as a float JAX scalar, or an array of shape ``(*grid)`` for a sweep,
      in the dtype of the decoded outputs.

    Raises:
      TypeError, ValueError: as ``monte_carlo``; X_cal must be (K, d) or (C, K, d).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> def f(x):
      ...     return jnp.tanh(x)
      >>> X_cal = jnp.linspace(-1, 1, 16).reshape(2, 4, 2)           # C = 2 batches
      >>> swept = lc.letcc(4, 12).replace(lam_dec=jnp.array([0.0, 1e-3]))
      >>> lc.expected_loss(f, swept, X_cal, jax.random.key(0), trials=8,
      ...                  stragglers=lc.ExactStragglers(3)).shape
      (2,)
    """
    trials = check.check_positive_int(trials, "trials")
    X, faults = check_round(f, scheme, X_cal, stragglers, faults, key, name="X_cal",
                            batches=True)
    loss, finite = _rounds.expected_loss_compiled(f, scheme, X, key, stragglers, faults,
                                                  trials=trials)
    check_truth(finite, X, "X_cal")
    return loss
