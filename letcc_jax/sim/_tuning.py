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
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .. import _validation as check
from . import _rounds
from ..core._schemes import LeTCC, ResidualLeTCC, Scheme, existing
from ._evaluate import check_round, check_truth
from ._models import FaultModel, NoStragglers, StragglerModel

__all__ = ["LEARNABLE", "Tuner", "TunerState", "TuningResult", "node_logits", "ordered_nodes",
           "tunable", "tune", "tuner"]

#: What ``tune`` can learn of a LeTCC scheme (``tunable`` gives any scheme's).
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
    return _padded_nodes(logits, pin_ends, None)


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


def _check_nodes(values, pin_ends, name: str = "nodes", option: str = "pin_ends"):
    """The nodes' rules for ``pin_ends``; messages name the nodes ``name`` and the caller's
    option that sets ``pin_ends`` (``tune``'s ``pin_alpha_ends``, for instance)."""
    if not np.all(np.diff(values) > 0):
        raise ValueError(f"{name} must be strictly increasing.")
    if pin_ends and (values[0] != -1.0 or values[-1] != 1.0):
        raise ValueError(
            f"pinned ends need {name}[0] = -1 and {name}[-1] = 1, got {values[0]} and "
            f"{values[-1]}; use free ends ({option}=False) for these nodes."
        )
    if not pin_ends and (values[0] <= -1.0 or values[-1] >= 1.0):
        raise ValueError(
            f"free ends need every node strictly inside (-1, 1), got {name} in [{values[0]}, "
            f"{values[-1]}]; use pinned ends ({option}=True) when the ends are -1 and 1."
        )


def _padded_logits(nodes, pin_ends: bool, count: int | None, name: str, option: str):
    """``node_logits`` of the first ``count`` nodes (all when None), embedded in the logits of
    all of them: the gaps beyond ``count`` are masked by ``_padded_nodes`` (0 here). The
    nodes are checked first, with messages that name them ``name`` and the ``option`` that
    sets ``pin_ends``."""
    if check.is_concrete(nodes):
        _check_nodes(np.asarray(nodes[:count], np.float64), pin_ends, name, option)
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


def tunable(scheme: Scheme) -> tuple[str, ...]:
    """The leaves of ``scheme`` that ``tune`` can learn: the nodes ``alpha`` and ``beta``,
    every float leaf declared with a ``constraint`` (``letcc_jax.field``: LeTCC's and
    ``bspline``'s lambdas, a weight of your own scheme), and for LeTCC its learned encoder
    ``"residual"`` (``ResidualLeTCC``).

    Args:
      scheme: any scheme.

    Returns:
      The names, in field order.

    Example:
      >>> import letcc_jax as lc
      >>> lc.tunable(lc.letcc(4, 10)), lc.tunable(lc.bacc(4, 10))
      (('alpha', 'beta', 'lam_enc', 'lam_dec', 'residual'), ('alpha', 'beta'))
    """
    names = []
    for spec in dataclasses.fields(scheme):
        value = getattr(scheme, spec.name)
        if spec.metadata.get("static", False) or value is None and spec.name != "residual":
            continue
        if spec.name in ("alpha", "beta") or (
                spec.metadata.get("constraint") is not None
                and jnp.issubdtype(jnp.result_type(value), jnp.floating)):
            names.append(spec.name)
    if isinstance(scheme, LeTCC) and "residual" not in names:
        names.append("residual")
    return tuple(names)


def _kind(template: Scheme, name: str) -> str:
    """How a leaf is optimised: "nodes" (ordered logits), "log" (a positive or nonnegative
    leaf) or "real" (as it is)."""
    if name in ("alpha", "beta"):
        return "nodes"
    constraint = template.__dataclass_fields__[name].metadata.get("constraint")
    return "log" if constraint in ("positive", "nonnegative") else "real"


@dataclasses.dataclass(frozen=True)
class _Spec:
    """How the parameters map to a scheme and how they are optimised (hashable: a static
    argument of the jitted step). What is learned is data (``train``), so every choice of
    ``learn`` shares one compiled step."""

    kinds: tuple[tuple[str, str], ...]
    rates: tuple[tuple[str, float], ...]
    pin_alpha_ends: bool
    pin_beta_ends: bool
    residual_l2: float


def _init_params(scheme: Scheme, learn: tuple, spec: _Spec) -> dict:
    """Unconstrained starting values; the ones not learned are placeholders of the right
    shape (the step's shapes must not depend on ``learn``)."""
    dtype = scheme.alpha.dtype
    count = None if scheme.workers is None else int(scheme.workers)
    params = {}
    for name, kind in spec.kinds:
        value = getattr(scheme, name)
        if kind == "nodes":
            pin, n, option = ((spec.pin_alpha_ends, None, "pin_alpha_ends") if name == "alpha"
                              else (spec.pin_beta_ends, count, "pin_beta_ends"))
            size = value.shape[0] + (-1 if pin else 1)
            params[name] = (_padded_logits(value, pin, n, name, option) if name in learn
                            else jnp.zeros(size, dtype))
        elif kind == "log":
            value = np.asarray(value, np.float64)
            # a log cannot start at 0: a zero starts where it does not change the fit yet
            if isinstance(scheme, LeTCC) and name in ("lam_enc", "lam_dec"):
                nodes = scheme.alpha if name == "lam_enc" else scheme.beta[:count]
                value = np.maximum(value, _negligible_lambda(nodes))
            else:
                value = np.where(value > 0, value, float(np.sqrt(np.finfo(dtype).eps)))
            params[name] = jnp.log(jnp.asarray(value, jnp.result_type(getattr(scheme, name))))
        else:
            params[name] = jnp.asarray(value)
    return params


def _scheme(template: Scheme, params: dict, train: dict, spec: _Spec) -> Scheme:
    """``template`` with every field flagged in ``train`` replaced by its value under
    ``params``; the other fields keep the template's values exactly (and get no gradient)."""
    values = {}
    for name, kind in spec.kinds:
        value = params[name]
        if kind == "nodes":
            pin = spec.pin_alpha_ends if name == "alpha" else spec.pin_beta_ends
            value = _padded_nodes(value, pin, None if name == "alpha" else template.workers)
        elif kind == "log":
            value = jnp.exp(value)
        elif name == "residual" and template.workers is not None:
            # padded workers repeat the last one's row
            rows = existing(jnp.ones(value.shape[0], bool), template.workers)
            value = jnp.where(rows[:, None], value, value[template.workers - 1])
        values[name] = value
    return template.replace(**{name: jnp.where(train[name], value, getattr(template, name))
                               for name, value in values.items()})


def _optimizer(spec: _Spec):
    try:
        import optax  # optional dependency (the "models" extra): only tuning needs it
    except ImportError as exc:
        raise ImportError(
            "letcc_jax.tune needs optax: pip install optax (or letcc_jax[models])."
        ) from exc
    return optax.multi_transform({name: optax.adam(rate) for name, rate in spec.rates},
                                 {name: name for name, _ in spec.rates})


def _objective(params, train, template, X, key, scale, f, trials, stragglers, faults, spec):
    scheme = _scheme(template, params, train, spec)
    loss = _rounds.expected_loss(f, scheme, X, key, stragglers, faults, trials=trials) / scale
    if not isinstance(scheme, ResidualLeTCC):
        return loss
    residual = scheme.residual
    if scheme.workers is not None:  # the existing workers' rows only, not the padding's
        rows = existing(jnp.ones(residual.shape[0], bool), scheme.workers)
        residual = jnp.where(rows[:, None], residual, jnp.zeros((), residual.dtype))
    return loss + spec.residual_l2 * jnp.sum(residual**2)


def _update(state, X, key, scale, f, trials, stragglers, faults, spec):
    loss, grads = jax.value_and_grad(_objective)(state.params, state.train, state.template, X,
                                                 key, scale, f, trials, stragglers, faults,
                                                 spec)
    # optax's Adam raises a Python float to the int32 step count, which strict dtype
    # promotion rejects.
    with jax.numpy_dtype_promotion("standard"):
        updates, opt_state = _optimizer(spec).update(grads, state.opt_state, state.params)
    params = jax.tree.map(jnp.add, state.params, updates)
    return state._replace(params=params, opt_state=opt_state), loss


_step = jax.jit(_update, static_argnames=("f", "trials", "spec"))


def _plain(scheme: Scheme) -> Scheme:
    """A tuned ResidualLeTCC without a learned residual, back as the LeTCC it started as."""
    if type(scheme) is not ResidualLeTCC:
        return scheme
    return LeTCC(**{field.name: getattr(scheme, field.name)
                    for field in dataclasses.fields(LeTCC)})


class TunerState(NamedTuple):
    """The state of a ``Tuner``: a pytree (so a step runs under ``jit`` and ``lax.scan``).

    Attributes:
      params: the unconstrained parameters, one entry per tunable leaf.
      opt_state: optax's Adam state.
      template: the scheme the parameters are mapped into.
      train: per tunable leaf, a boolean scalar: whether it is learned.

    Example:
      >>> import jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> state = lc.tuner(jnp.tanh, lc.bacc(4, 10)).init()
      >>> sorted(state.params), type(state.template).__name__
      (['alpha', 'beta'], 'BACC')
    """

    params: dict
    opt_state: object
    template: Scheme
    train: dict


class Tuner(NamedTuple):
    """Tuning as a pure ``init``/``step`` pair (optax's style), from ``tuner``.

    Attributes:
      init: ``() -> TunerState``, the starting state.
      step: ``(state, X, key) -> (state, loss)``: one Adam step on the Monte Carlo loss of
        fresh straggler patterns drawn from ``key``, on the calibration inputs X (K, d) or
        (C, K, d); the loss is relative to the tuner's ``scale``. Pure: jit it, scan it.
      scheme: ``(state) -> Scheme``, the scheme the state holds.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> t = lc.tuner(jnp.tanh, lc.letcc(4, 10), trials=2)
      >>> state, loss = t.step(t.init(), jnp.ones((4, 2)), jax.random.key(0))
      >>> type(t.scheme(state)).__name__, loss.shape
      ('LeTCC', ())
    """

    init: Callable[[], TunerState]
    step: Callable
    scheme: Callable[[TunerState], Scheme]


def _setup(scheme, learn, trials, learning_rate, lambda_learning_rate, residual_learning_rate,
           learning_rates, residual_l2, pin_alpha_ends, pin_beta_ends):
    """Check ``tuner``'s arguments: ``(template, learn, spec, train, keep_residual)``."""
    if not isinstance(scheme, Scheme):
        raise TypeError(f"tune tunes a scheme (letcc_jax.Scheme), got {type(scheme).__name__}.")
    scheme.validate()
    if _rounds.batch_shape(scheme):
        raise ValueError("tune tunes one scheme in one setting; this scheme is a sweep.")
    names = tunable(scheme)
    letcc = isinstance(scheme, LeTCC)
    if learn is None:
        learn = ("alpha", "beta", "lam_enc", "lam_dec") if letcc else names
    try:
        learn = tuple(dict.fromkeys((learn,) if isinstance(learn, str) else learn))
    except TypeError:
        raise ValueError(f"learn must name some of {names}, got {learn!r}.") from None
    unknown = [name for name in learn if name not in names]
    if unknown or not learn:
        raise ValueError(f"learn must name some of this {scheme.name} scheme's tunable leaves "
                         f"{names}, got {learn!r} (a leaf is tunable when it is a node or "
                         "declared with a constraint: letcc_jax.field(constraint=...)).")
    rates = {} if learning_rates is None else dict(learning_rates)
    for value, name in ((learning_rate, "learning_rate"),
                        (lambda_learning_rate, "lambda_learning_rate"),
                        (residual_learning_rate, "residual_learning_rate"),
                        *((v, f"learning_rates[{k!r}]") for k, v in rates.items())):
        check.check_real(value, name, "finite and > 0", lambda v: v > 0)
    bad = [k for k in rates if k not in names]
    if bad:
        raise ValueError(f"learning_rates names {bad}, which are not tunable leaves {names}.")
    check.check_real(residual_l2, "residual_l2", "finite and >= 0", lambda v: v >= 0)
    check.check_positive_int(trials, "trials")
    # LeTCC is tuned as a ResidualLeTCC (a zero, frozen residual unless learned)
    template = (ResidualLeTCC.from_letcc(scheme) if letcc and not isinstance(
        scheme, ResidualLeTCC) else scheme)
    kinds = tuple((name, _kind(template, name)) for name in names)
    default = {"nodes": learning_rate, "log": lambda_learning_rate, "real": learning_rate}
    spec = _Spec(kinds,
                 tuple((name, float(rates.get(name, residual_learning_rate if name == "residual"
                                                   else default[kind])))
                       for name, kind in kinds),
                 bool(pin_alpha_ends), bool(pin_beta_ends), float(residual_l2))
    keep_residual = "residual" in learn or isinstance(scheme, ResidualLeTCC)
    train = {name: jnp.asarray(name in learn) for name in names}
    return template, learn, spec, train, keep_residual


def tuner(
    f: Callable,
    scheme: Scheme,
    *,
    stragglers: StragglerModel = NoStragglers(),
    faults: Sequence[FaultModel] = (),
    learn: Sequence[str] | None = None,
    trials: int = 32,
    scale: float = 1.0,
    learning_rate: float = 0.02,
    lambda_learning_rate: float = 0.1,
    residual_learning_rate: float = 3e-3,
    learning_rates: dict | None = None,
    residual_l2: float = 1e-3,
    pin_alpha_ends: bool = False,
    pin_beta_ends: bool = True,
) -> Tuner:
    """The optimisation of ``tune`` as a pure ``init``/``step`` pair, for your own loop
    (``jit``, ``lax.scan``, your own validation or schedule). The arguments are ``tune``'s.

    Parametrisation: nodes as ordered logits (``ordered_nodes``), positive and nonnegative
    leaves as their log, other float leaves as they are; Adam per leaf, at
    ``learning_rate`` (nodes and plain leaves), ``lambda_learning_rate`` (log leaves),
    ``residual_learning_rate`` (LeTCC's residual), or the rate ``learning_rates`` names.

    Args:
      f: one input (d,) -> one output (m,), differentiable; hashable.
      scheme: the starting scheme (any type; unswept; padded or not). LeTCC is tuned as a
        ``ResidualLeTCC`` whose residual is frozen at zero unless learned.
      stragglers, faults: the setting the loss is measured in.
      learn: names from ``tunable(scheme)``; default LeTCC's ``("alpha", "beta", "lam_enc",
        "lam_dec")``, or every tunable leaf of another scheme.
      trials: straggler patterns per batch and step.
      scale: the loss is divided by it (``tune`` passes the starting loss).
      learning_rate, lambda_learning_rate, residual_learning_rate: Adam's rates.
      learning_rates: per leaf name, a rate that replaces the default one.
      residual_l2: the ridge penalty on LeTCC's residual.
      pin_alpha_ends, pin_beta_ends: keep the first and last node at -1 and +1.

    Returns:
      A ``Tuner``.

    Raises:
      TypeError, ValueError: as ``tune`` (the arguments checked here are those that do not
        need f or the data).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> X = jnp.linspace(-1, 1, 8).reshape(4, 2)
      >>> t = lc.tuner(jnp.tanh, lc.bspline(4, 10), stragglers=lc.ExactStragglers(2),
      ...              trials=4, learn=("lam_dec",))
      >>> step = jax.jit(t.step)
      >>> state, losses = jax.lax.scan(lambda s, k: step(s, X, k), t.init(),
      ...                              jax.random.split(jax.random.key(0), 3))
      >>> losses.shape, type(t.scheme(state)).__name__
      ((3,), 'BSpline')
    """
    setup = _setup(scheme, learn, trials, learning_rate, lambda_learning_rate,
                   residual_learning_rate, learning_rates, residual_l2, pin_alpha_ends,
                   pin_beta_ends)
    check.check_real(scale, "scale", "finite and > 0", lambda v: v > 0)
    template, learn, spec, train, keep_residual = setup

    def init() -> TunerState:
        params = _init_params(template, learn, spec)
        return TunerState(params, _optimizer(spec).init(params), template, train)

    def step(state: TunerState, X, key):
        X = jnp.asarray(X)
        X = X[None] if X.ndim == 2 else X  # one batch
        return _update(state, X, key, jnp.asarray(scale, X.dtype), f, int(trials), stragglers,
                       tuple(faults), spec)

    def scheme_of(state: TunerState) -> Scheme:
        tuned = _scheme(state.template, state.params, state.train, spec)
        return tuned if keep_residual else _plain(tuned)

    return Tuner(init, step, scheme_of)


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
    scheme: Scheme,
    X_cal: Float[Array, "C K d"],
    key: jax.Array,
    *,
    stragglers: StragglerModel = NoStragglers(),
    faults: Sequence[FaultModel] = (),
    learn: Sequence[str] | None = None,
    steps: int = 200,
    trials: int = 32,
    validation_trials: int = 128,
    validate_every: int = 10,
    learning_rate: float = 0.02,
    lambda_learning_rate: float = 0.1,
    residual_learning_rate: float = 3e-3,
    learning_rates: dict | None = None,
    residual_l2: float = 1e-3,
    pin_alpha_ends: bool = False,
    pin_beta_ends: bool = True,
    progress: bool = True,
) -> TuningResult:
    """Tune a scheme by Adam on the Monte Carlo loss over a calibration set.

    Each step draws ``trials`` fresh straggler patterns (and fault draws) per calibration
    batch and follows the gradient of the mean loss, relative to the starting loss (so the
    learning rates do not depend on the scale of f). Every ``validate_every`` steps the
    loss is measured on one fixed set of ``validation_trials`` patterns, on the same
    calibration inputs; the best parameters are returned. Evaluate the result on held-out
    inputs and a different key.

    Args:
      f: one input (d,) -> one output (m,), differentiable in its input; hashable.
      scheme: the starting scheme, of any type (e.g. the result of ``select_lambda``): its
        nodes and its float leaves with a declared constraint (``tunable``). A padded
        scheme (``Scheme.pad_workers``) is tuned as its unpadded self, its padding kept:
        settings of different N padded to one N share one compiled step.
      X_cal: calibration inputs, (K, d) or C batches (C, K, d).
      key: PRNG key; the training patterns and the validation patterns come from
        different sub-keys.
      stragglers: straggler model, e.g. ``ExactStragglers(S)``.
      faults: output fault models, e.g. ``(GaussianNoise(sigma),)``.
      learn: names from ``tunable(scheme)``; default LeTCC's ``("alpha", "beta", "lam_enc",
        "lam_dec")`` (``LEARNABLE`` adds ``"residual"``, which turns it into a
        ``ResidualLeTCC`` with a zero residual at the start), or every tunable leaf of
        another scheme.
      steps: optimiser steps.
      trials: straggler patterns per batch per step.
      validation_trials: patterns of the fixed validation set.
      validate_every: steps between validations.
      learning_rate: Adam's rate for the node logits.
      lambda_learning_rate: Adam's rate for log lambda (every positive or nonnegative
        leaf, optimised as its log).
      residual_learning_rate: Adam's rate for the residual.
      learning_rates: per leaf name, a rate that replaces the default one.
      residual_l2: weight of the ridge penalty ||R||_F^2 on the residual.
      pin_alpha_ends, pin_beta_ends: keep the first and last node at -1 and +1 (see the
        module docstring for why beta's are pinned by default).
      progress: show a progress bar.

    Returns:
      A ``TuningResult``: the best scheme (a ``ResidualLeTCC`` when a residual is learned
      or given), the starting scheme, the (steps,) training losses and the validation
      history.

    Raises:
      TypeError: ``scheme`` is not a scheme; called under a JAX transformation; a
        learning rate or ``residual_l2`` that is not a real number; f, the models or the
        key of the wrong type (as ``monte_carlo``).
      ValueError: ``learn`` empty or naming something outside ``tunable(scheme)``; ``steps``,
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
    if not isinstance(scheme, Scheme):
        raise TypeError(f"tune tunes a scheme (letcc_jax.Scheme), got {type(scheme).__name__}.")
    if not check.is_concrete(*jax.tree.leaves((scheme, X_cal, key))):
        raise TypeError("tune runs eagerly (an optimisation loop in Python); call it outside "
                        "jax.jit / jax.vmap / jax.grad, or loop over letcc_jax.tuner's step.")
    for value, name in ((steps, "steps"), (validation_trials, "validation_trials"),
                        (validate_every, "validate_every")):
        check.check_positive_int(value, name)
    template, learn, spec, train, keep_residual = _setup(
        scheme, learn, trials, learning_rate, lambda_learning_rate, residual_learning_rate,
        learning_rates, residual_l2, pin_alpha_ends, pin_beta_ends)
    X, faults = check_round(f, scheme, X_cal, stragglers, faults, key, name="X_cal",
                            batches=True)
    if _rounds.batch_shape((scheme, stragglers, faults)):
        raise ValueError("tune tunes one scheme in one setting; its arguments are a sweep.")
    params = _init_params(template, learn, spec)
    state = TunerState(params, _optimizer(spec).init(params), template, train)
    k_train, k_val = jax.random.split(key)

    def validate(state):
        candidate = _scheme(state.template, state.params, state.train, spec)
        candidate = candidate if keep_residual else _plain(candidate)
        loss, finite = _rounds.expected_loss_compiled(
            f, candidate, X, k_val, stragglers, faults, trials=validation_trials)
        return candidate, float(loss), finite

    best, best_loss, finite = validate(state)
    check_truth(finite, X, "X_cal")
    if not np.isfinite(best_loss):
        raise ValueError(
            f"the starting scheme's loss on the calibration set is {best_loss}; check f and "
            "the calibration inputs (f must be finite on the coded inputs)."
        )
    initial = best
    scale = jnp.asarray(best_loss if best_loss > 0 else 1.0, X.dtype)
    val_steps, val_losses, losses, best_step = [0], [best_loss], [], 0
    bar = _progress_bar(steps) if progress else None
    for step in range(1, steps + 1):
        state, loss = _step(state, X, jax.random.fold_in(k_train, step), scale, f, trials,
                            stragglers, faults, spec)
        losses.append(float(loss))
        if step % validate_every == 0 or step == steps:
            candidate, value, _ = validate(state)
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
