"""Tuning LeTCC end to end by differentiating the Monte Carlo loss, and a learned encoder.

The paper's loss E_F[(1/K) sum_k ||f_hat(x_k) - f(x_k)||^2] is differentiable in every
leaf of a LeTCC scheme: the node positions alpha and beta, and the two smoothing
parameters. ``tune`` minimises it with optax on a calibration set, drawing fresh straggler
patterns (and fault draws) at every step, and keeps the parameters that score best on a
fixed set of validation patterns. Grid search (``select_lambda``) and GCV
(``letcc_jax.gcv``) stay the baselines.

Parametrisation (unconstrained -> valid scheme):

- Nodes: n ordered points in [-1, 1] are the cumulative sums of positive gaps, and the gaps
  are a softmax of logits, so any logits give strictly increasing nodes and the softmax
  keeps the total length fixed. Free ends: n + 1 gaps (the two margins included), nodes
  strictly inside (-1, 1). Pinned ends: n - 1 gaps between -1 and +1.
- Default: alpha free, beta pinned at +-1. The loss is invariant under a common affine map
  t -> a t + b of alpha and beta (natural cubic splines map to natural cubic splines, and
  the roughness penalty scales by a^3, which the lambdas absorb), so two of the K + N
  node degrees of freedom would be a flat direction; pinning beta's end points removes
  exactly that redundancy, and loses no scheme whose data points lie between its end
  workers. Every built-in point set has beta_1 = -1, beta_N = 1 already.
- Lambdas: lam = exp(rho). A lambda of 0 (interpolation) starts at a value too small to
  change the fit (1e-3 h_min^3 / n, h_min the smallest node gap), from where the optimiser
  can still move it up or further down.

The learned variant is ``ResidualLeTCC`` (``letcc_jax.core``): a LeTCC encoder plus a
learned linear residual, encode(X) = (E + R) X with R of shape (N, K), trained jointly with
the nodes and lambdas.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .. import _validation as check
from . import _rounds
from ..core._schemes import LeTCC, ResidualLeTCC
from ._evaluate import check_round, check_truth
from ._models import FaultModel, NoStragglers, StragglerModel

__all__ = ["LEARNABLE", "TuningResult", "node_logits", "ordered_nodes", "tune"]

#: What ``tune`` can learn.
LEARNABLE = ("alpha", "beta", "lam_enc", "lam_dec", "residual")


# ------------------------------------------------------------------ parametrisation


def ordered_nodes(logits: Float[Array, " G"], pin_ends: bool = False) -> Float[Array, " n"]:
    """Strictly increasing nodes in [-1, 1] from unconstrained logits (softmax of the gaps).

    Args:
      logits: (n + 1,) real logits with free ends (the nodes lie strictly inside
        (-1, 1)); (n - 1,) with pinned ends (the first node is exactly -1, the last
        exactly +1).
      pin_ends: which of the two.

    Returns:
      (n,) nodes, ascending, in the dtype of the logits (float32 for half precision).
      Adding a constant to the logits does not change them; logits more than
      ~log(1/eps) apart give gaps below round-off, and nodes that coincide.

    Raises:
      ValueError: logits not 1-D with at least 1 entry (3 free), or (eagerly) not finite.
      TypeError: logits complex or not numeric (a string, None).

    Example:
      >>> import jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> [round(float(v), 4) for v in lc.ordered_nodes(jnp.zeros(5))]  # equal gaps
      [-0.6, -0.2, 0.2, 0.6]
      >>> [round(float(v), 4) for v in lc.ordered_nodes(jnp.zeros(3), pin_ends=True)]
      [-1.0, -0.3333, 0.3333, 1.0]
    """
    logits = check.float_array(logits, "logits")
    if logits.ndim != 1 or logits.shape[0] < (1 if pin_ends else 3):
        raise ValueError(f"logits must be 1-D with at least {1 if pin_ends else 3} entries "
                         f"(n - 1 with pinned ends, n + 1 free), got shape {logits.shape}.")
    check.check_finite(logits, "logits")
    inner = -1.0 + 2.0 * jnp.cumsum(jax.nn.softmax(logits))[:-1]
    if not pin_ends:
        return inner
    one = jnp.ones((1,), inner.dtype)
    return jnp.concatenate([-one, inner, one])


def node_logits(nodes: Float[Array, " n"], pin_ends: bool = False) -> Float[Array, " G"]:
    """The inverse of ``ordered_nodes``: the centred logits (mean 0) of ``nodes``.

    Args:
      nodes: (n,) real nodes, n >= 2, strictly increasing in [-1, 1].
      pin_ends: whether the first and last node are the fixed ends -1 and +1 (logits of
        the n - 1 inner gaps) or free (logits of the n + 1 gaps, margins included).

    Returns:
      (n - 1,) logits with pinned ends, (n + 1,) with free ends, in the dtype of the nodes
      (float32 for half precision).

    Raises:
      ValueError: nodes not 1-D with at least 2 entries; (on concrete input) if the nodes
        are not strictly increasing (a NaN included), if ``pin_ends`` and the ends are
        not exactly -1 and +1, or if not ``pin_ends`` and a node lies on or outside -1 or
        +1.
      TypeError: nodes complex or not numeric (a string, None).

    Example:
      >>> import jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> logits = lc.node_logits(jnp.array([-0.5, 0.25, 0.5]))  # free ends: 4 gaps
      >>> logits.shape, [round(float(v), 4) for v in lc.ordered_nodes(logits)]
      ((4,), [-0.5, 0.25, 0.5])
    """
    nodes = check.float_array(nodes, "nodes")
    if nodes.ndim != 1 or nodes.shape[0] < 2:
        raise ValueError(
            f"nodes must be a 1-D array of at least 2 points, got shape {nodes.shape}."
        )
    if check.is_concrete(nodes):
        _check_nodes(np.asarray(nodes, np.float64), pin_ends)
    edges = nodes if pin_ends else jnp.concatenate([-jnp.ones(1, nodes.dtype), nodes,
                                                    jnp.ones(1, nodes.dtype)])
    log_gaps = jnp.log(jnp.diff(edges))
    return log_gaps - jnp.mean(log_gaps)


def _check_nodes(values, pin_ends):
    if not np.all(np.diff(values) > 0):
        raise ValueError("nodes must be strictly increasing.")
    if pin_ends and (values[0] != -1.0 or values[-1] != 1.0):
        raise ValueError(
            f"pinned ends need nodes[0] = -1 and nodes[-1] = 1, got {values[0]} and "
            f"{values[-1]}; use free ends (pin_ends=False) for these nodes."
        )
    if not pin_ends and (values[0] <= -1.0 or values[-1] >= 1.0):
        raise ValueError(
            f"free ends need every node strictly inside (-1, 1), got [{values[0]}, "
            f"{values[-1]}]; use pinned ends (pin_ends=True) when the ends are -1 and 1."
        )


def _padded_logits(nodes, pin_ends: bool, count: int | None):
    """``node_logits`` of the first ``count`` nodes (all when None), embedded in the logits of
    all of them: the gaps beyond ``count`` are masked by ``_padded_nodes`` (0 here)."""
    if count is None:
        return node_logits(nodes, pin_ends)
    size = nodes.shape[0] + (-1 if pin_ends else 1)
    own = node_logits(nodes[:count], pin_ends)
    full = jnp.zeros(size, own.dtype)
    if pin_ends:
        return full.at[:count - 1].set(own)
    return full.at[:count].set(own[:-1]).at[-1].set(own[-1])


def _padded_nodes(logits, pin_ends: bool, count):
    """``ordered_nodes`` of a padded scheme's nodes (traced, unchecked): the first ``count``
    (a traced int; None: all) from their gaps, every node beyond them equal to the last,
    as ``Scheme.pad_workers`` pads. The masked gaps get no gradient."""
    if count is not None:
        i = jnp.arange(logits.shape[0], dtype=jnp.result_type(count))
        active = (i < count - 1) if pin_ends else (i < count) | (i == logits.shape[0] - 1)
        logits = jnp.where(active, logits, -jnp.inf)
    inner = -1.0 + 2.0 * jnp.cumsum(jax.nn.softmax(logits))[:-1]
    if not pin_ends:
        return inner
    one = jnp.ones((1,), inner.dtype)
    nodes = jnp.concatenate([-one, inner, one])
    if count is not None:  # the last node is +1 exactly, as unpadded (not a rounded sum)
        nodes = jnp.where(jnp.arange(nodes.shape[0], dtype=jnp.result_type(count)) < count - 1,
                          nodes, one)
    return nodes


def _negligible_lambda(nodes) -> float:
    """A mean-form lambda that changes a smoothing spline on ``nodes`` by ~1e-3 relative.

    At node gap h the penalty weighs about n lam / h^3 against the data term (Reinsch's
    form R + n lam Q^T Q with R ~ h and Q^T Q ~ 1/h^2).
    """
    nodes = np.asarray(nodes, np.float64)
    return 1e-3 * float(np.min(np.diff(nodes))) ** 3 / nodes.size


# ------------------------------------------------------------------ tuning


@dataclasses.dataclass(frozen=True)
class _Spec:
    """How the parameters map to a scheme and how they are optimised (hashable: a static
    argument of the jitted step). What is learned is data (``train``), so every choice of
    ``learn`` shares one compiled step."""

    pin_alpha_ends: bool
    pin_beta_ends: bool
    learning_rate: float
    lambda_learning_rate: float
    residual_learning_rate: float
    residual_l2: float


def _init_params(scheme: ResidualLeTCC, learn: tuple, spec: _Spec) -> dict:
    """Unconstrained starting values; the ones not learned are placeholders of the right
    shape (the step's shapes must not depend on ``learn``)."""
    dtype = scheme.alpha.dtype
    count = None if scheme.workers is None else int(scheme.workers)
    params = {"residual": scheme.residual}
    for name, nodes, pin, n in (("alpha", scheme.alpha, spec.pin_alpha_ends, None),
                                ("beta", scheme.beta, spec.pin_beta_ends, count)):
        size = nodes.shape[0] + (-1 if pin else 1)
        params[name] = (_padded_logits(nodes, pin, n) if name in learn
                        else jnp.zeros(size, dtype))
    for name, nodes in (("lam_enc", scheme.alpha), ("lam_dec", scheme.beta[:count])):
        lam = max(float(getattr(scheme, name)), _negligible_lambda(nodes))
        params[name] = jnp.log(jnp.asarray(lam, dtype))
    return params


def _scheme(template: ResidualLeTCC, params: dict, train: dict, spec: _Spec) -> ResidualLeTCC:
    """``template`` with every field flagged in ``train`` replaced by its value under
    ``params``; the other fields keep the template's values exactly (and get no gradient)."""
    residual = params["residual"]
    if template.workers is not None:  # padded workers repeat the last one's row
        rows = jnp.arange(residual.shape[0], dtype=template.workers.dtype) < template.workers
        residual = jnp.where(rows[:, None], residual, residual[template.workers - 1])
    values = {
        "alpha": _padded_nodes(params["alpha"], spec.pin_alpha_ends, None),
        "beta": _padded_nodes(params["beta"], spec.pin_beta_ends, template.workers),
        "lam_enc": jnp.exp(params["lam_enc"]),
        "lam_dec": jnp.exp(params["lam_dec"]),
        "residual": residual,
    }
    return template.replace(**{name: jnp.where(train[name], value, getattr(template, name))
                               for name, value in values.items()})


def _optimizer(spec: _Spec):
    try:
        import optax  # optional dependency (the "models" extra): only tuning needs it
    except ImportError as exc:
        raise ImportError(
            "letcc_jax.tune needs optax: pip install optax (or letcc_jax[models])."
        ) from exc
    rates = {"alpha": spec.learning_rate, "beta": spec.learning_rate,
             "lam_enc": spec.lambda_learning_rate, "lam_dec": spec.lambda_learning_rate,
             "residual": spec.residual_learning_rate}
    return optax.multi_transform({name: optax.adam(rate) for name, rate in rates.items()},
                                 {name: name for name in rates})


def _objective(params, train, template, X, key, scale, f, trials, stragglers, faults, spec):
    scheme = _scheme(template, params, train, spec)
    loss = _rounds.expected_loss(f, scheme, X, key, stragglers, faults, trials=trials) / scale
    residual = scheme.residual
    if scheme.workers is not None:  # the existing workers' rows only, not the padding's
        rows = jnp.arange(residual.shape[0], dtype=scheme.workers.dtype) < scheme.workers
        residual = jnp.where(rows[:, None], residual, jnp.zeros((), residual.dtype))
    return loss + spec.residual_l2 * jnp.sum(residual**2)


@functools.partial(jax.jit, static_argnames=("f", "trials", "spec"))
def _step(params, opt_state, train, template, X, key, scale, f, trials, stragglers, faults,
          spec):
    loss, grads = jax.value_and_grad(_objective)(params, train, template, X, key, scale, f,
                                                 trials, stragglers, faults, spec)
    # optax's Adam raises a Python float to the int32 step count, which strict dtype
    # promotion rejects.
    with jax.numpy_dtype_promotion("standard"):
        updates, opt_state = _optimizer(spec).update(grads, opt_state, params)
    return jax.tree.map(jnp.add, params, updates), opt_state, loss


def _plain(scheme: ResidualLeTCC) -> LeTCC:
    return LeTCC(**{field.name: getattr(scheme, field.name)
                    for field in dataclasses.fields(LeTCC)})


class TuningResult(NamedTuple):
    """Result of ``tune``.

    Attributes:
      scheme: the tuned scheme: the parameters with the lowest validation loss (the
        initial scheme counts, so validation never gets worse than the start).
      initial: the scheme tuning started from, as parametrised (a learned lambda of 0
        starts at a negligible positive value); a ``ResidualLeTCC`` when a residual is
        learned.
      loss: (steps,) training loss per step, relative to the initial validation loss,
        each on fresh straggler patterns (plus ``residual_l2 * ||R||^2`` for a residual).
      validation_steps: (V,) steps at which the validation loss was measured (0 = start).
      validation: (V,) Monte Carlo loss on the fixed validation patterns, absolute.
      best_step: the step whose parameters ``scheme`` holds.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> X_cal = jnp.linspace(-1, 1, 8).reshape(4, 2)
      >>> result = lc.tune(jnp.tanh, lc.letcc(4, 8, solver="reinsch"), X_cal,
      ...                  jax.random.key(0), stragglers=lc.ExactStragglers(2), steps=2,
      ...                  trials=2, validation_trials=2, progress=False)
      >>> type(result.scheme).__name__, result.best_step in result.validation_steps
      ('LeTCC', True)
    """

    scheme: LeTCC
    initial: LeTCC
    loss: np.ndarray
    validation_steps: np.ndarray
    validation: np.ndarray
    best_step: int


def tune(
    f: Callable,
    scheme: LeTCC,
    X_cal: Float[Array, "C K d"],
    key: jax.Array,
    *,
    stragglers: StragglerModel = NoStragglers(),
    faults: Sequence[FaultModel] = (),
    learn: Sequence[str] = ("alpha", "beta", "lam_enc", "lam_dec"),
    steps: int = 200,
    trials: int = 32,
    validation_trials: int = 128,
    validate_every: int = 10,
    learning_rate: float = 0.02,
    lambda_learning_rate: float = 0.1,
    residual_learning_rate: float = 3e-3,
    residual_l2: float = 1e-3,
    pin_alpha_ends: bool = False,
    pin_beta_ends: bool = True,
    progress: bool = True,
) -> TuningResult:
    """Tune a LeTCC scheme by Adam on the Monte Carlo loss over a calibration set.

    Each step draws ``trials`` fresh straggler patterns (and fault draws) per calibration
    batch and follows the gradient of the mean loss, relative to the starting loss (so the
    learning rates do not depend on the scale of f). Every ``validate_every`` steps the
    loss is measured on one fixed set of ``validation_trials`` patterns, on the same
    calibration inputs; the best parameters are returned. Evaluate the result on held-out
    inputs and a different key.

    Args:
      f: one input (d,) -> one output (m,), differentiable in its input; hashable.
      scheme: the starting LeTCC scheme (e.g. the result of ``select_lambda``). A padded
        scheme (``Scheme.pad_workers``) is tuned as its unpadded self, its padding kept:
        settings of different N padded to one N share one compiled step.
      X_cal: calibration inputs, (K, d) or C batches (C, K, d).
      key: PRNG key; the training patterns and the validation patterns come from
        different sub-keys.
      stragglers: straggler model, e.g. ``ExactStragglers(S)``.
      faults: output fault models, e.g. ``(GaussianNoise(sigma),)``.
      learn: any of ``LEARNABLE``; ``"residual"`` turns the scheme into a
        ``ResidualLeTCC`` (zero residual at the start).
      steps: optimiser steps.
      trials: straggler patterns per batch per step.
      validation_trials: patterns of the fixed validation set.
      validate_every: steps between validations.
      learning_rate: Adam's rate for the node logits.
      lambda_learning_rate: Adam's rate for log lambda.
      residual_learning_rate: Adam's rate for the residual.
      residual_l2: weight of the ridge penalty ||R||_F^2 on the residual.
      pin_alpha_ends, pin_beta_ends: keep the first and last node at -1 and +1 (see the
        module docstring for why beta's are pinned by default).
      progress: show a progress bar.

    Returns:
      A ``TuningResult``: the best scheme (a ``ResidualLeTCC`` when a residual is learned
      or given), the starting scheme, the (steps,) training losses and the validation
      history.

    Raises:
      TypeError: ``scheme`` is not a LeTCC scheme; called under a JAX transformation; a
        learning rate or ``residual_l2`` that is not a real number; f, the models or the
        key of the wrong type (as ``monte_carlo``).
      ValueError: ``learn`` empty or naming something outside ``LEARNABLE``; ``steps``,
        ``trials``, ``validation_trials`` or ``validate_every`` not a positive int; a
        learning rate <= 0 or ``residual_l2`` < 0 (or not finite); X_cal not (K, d) or
        (C, K, d), or not finite; f not finite on X_cal; a swept scheme or swept models;
        a straggler model that leaves fewer survivors than the scheme needs; a starting
        loss that is not finite.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> X_cal = jnp.linspace(-1, 1, 8).reshape(4, 2)
      >>> result = lc.tune(jnp.tanh, lc.letcc(4, 8, solver="reinsch"), X_cal,
      ...                  jax.random.key(0), stragglers=lc.ExactStragglers(2), steps=2,
      ...                  trials=2, validation_trials=2, progress=False)
      >>> result.loss.shape, result.validation_steps.tolist()   # validated at 0 and 2
      ((2,), [0, 2])
      >>> bool(result.validation.min() <= result.validation[0])  # never worse than the start
      True
    """
    if not isinstance(scheme, LeTCC):
        raise TypeError(f"tune tunes a LeTCC scheme, got {type(scheme).__name__}.")
    if not check.is_concrete(*jax.tree.leaves((scheme, X_cal, key))):
        raise TypeError("tune runs eagerly (an optimisation loop in Python); call it outside "
                        "jax.jit / jax.vmap / jax.grad.")
    try:
        learn = tuple(dict.fromkeys((learn,) if isinstance(learn, str) else learn))
    except TypeError:
        raise ValueError(f"learn must name some of {LEARNABLE}, got {learn!r}.") from None
    unknown = [name for name in learn if name not in LEARNABLE]
    if unknown or not learn:
        raise ValueError(f"learn must name some of {LEARNABLE}, got {learn!r}.")
    for value, name in ((steps, "steps"), (trials, "trials"),
                        (validation_trials, "validation_trials"),
                        (validate_every, "validate_every")):
        check.check_positive_int(value, name)
    for value, name in ((learning_rate, "learning_rate"),
                        (lambda_learning_rate, "lambda_learning_rate"),
                        (residual_learning_rate, "residual_learning_rate")):
        check.check_real(value, name, "finite and > 0", lambda v: v > 0)
    check.check_real(residual_l2, "residual_l2", "finite and >= 0", lambda v: v >= 0)
    X, faults = check_round(f, scheme, X_cal, stragglers, faults, key, name="X_cal",
                            batches=True)
    if _rounds.batch_shape((scheme, stragglers, faults)):
        raise ValueError("tune tunes one scheme in one setting; its arguments are a sweep.")
    with_residual = "residual" in learn or isinstance(scheme, ResidualLeTCC)
    # Tuning always runs on a ResidualLeTCC (zero, frozen residual unless learned).
    template = scheme if isinstance(scheme, ResidualLeTCC) else ResidualLeTCC.from_letcc(scheme)
    spec = _Spec(bool(pin_alpha_ends), bool(pin_beta_ends), float(learning_rate),
                 float(lambda_learning_rate), float(residual_learning_rate),
                 float(residual_l2))
    params = _init_params(template, learn, spec)
    train = {name: jnp.asarray(name in learn) for name in LEARNABLE}
    k_train, k_val = jax.random.split(key)

    def validate(p):
        candidate = _scheme(template, p, train, spec)
        candidate = candidate if with_residual else _plain(candidate)
        loss, finite = _rounds.expected_loss_compiled(
            f, candidate, X, k_val, stragglers, faults, trials=validation_trials)
        return candidate, float(loss), finite

    best, best_loss, finite = validate(params)
    check_truth(finite, X, "X_cal")
    if not np.isfinite(best_loss):
        raise ValueError(
            f"the starting scheme's loss on the calibration set is {best_loss}; check f and "
            "the calibration inputs (f must be finite on the coded inputs)."
        )
    initial = best
    scale = jnp.asarray(best_loss if best_loss > 0 else 1.0, X.dtype)
    val_steps, val_losses, losses, best_step = [0], [best_loss], [], 0
    opt_state = _optimizer(spec).init(params)
    bar = _progress_bar(steps) if progress else None
    for step in range(1, steps + 1):
        params, opt_state, loss = _step(params, opt_state, train, template, X,
                                         jax.random.fold_in(k_train, step), scale, f, trials,
                                         stragglers, faults, spec)
        losses.append(float(loss))
        if step % validate_every == 0 or step == steps:
            candidate, value, _ = validate(params)
            val_steps.append(step)
            val_losses.append(value)
            if value < best_loss:
                best, best_loss, best_step = candidate, value, step
            if bar is not None:
                bar.set_postfix(validation=f"{value:.3g}")
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    return TuningResult(best, initial, np.asarray(losses), np.asarray(val_steps),
                        np.asarray(val_losses), best_step)


def _progress_bar(steps: int):
    """tqdm's bar over ``steps`` tuning steps, or None where tqdm is not installed (the
    simulation layer does not need it)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=steps, desc="tuning", leave=False)
