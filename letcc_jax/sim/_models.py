"""Straggler models (which workers answer) and fault models (what answering workers send).

A straggler model samples a boolean survivor mask of shape (N,); a fault model corrupts the
(N, m) worker outputs. Both take an explicit PRNG key and are immutable pytrees
(``letcc_jax._pytree.pytree_dataclass``): their numeric parameters (noise levels,
probabilities, magnitudes, latency parameters) are array leaves, and only sizes (counts of
workers) and names are static. A new ``sigma`` or ``p`` is therefore new data for a
compiled function, not a new compilation, and a parameter given as an array with leading
axes is a sweep: ``monte_carlo(..., faults=[GaussianNoise(jnp.logspace(-3, -1, 10))])``
evaluates all ten noise levels in one compiled call.

Every concrete value is checked on construction; a model that JAX rebuilt (from
gradients or placeholders) is checked by ``validate()``, which each entry point calls (see
``letcc_jax._validation.Checked``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Bool, Float, Int

from .._pytree import pytree_dataclass
from .._validation import Checked, check_count, check_key, check_parameter, concrete_values
from ..core._schemes import existing
from . import _rounds

__all__ = [
    "StragglerModel",
    "FaultModel",
    "NoStragglers",
    "ExactStragglers",
    "BernoulliStragglers",
    "LatencyStragglers",
    "GaussianNoise",
    "Adversaries",
    "FailedWorkers",
]


def _static(**kw):
    return dataclasses.field(metadata={"static": True}, **kw)


def _set_count(model, field: str, minimum: int = 0):
    """Validate an integer size and store it as a Python int (a stable jit cache key)."""
    name = f"{type(model).__name__}: {field}"
    object.__setattr__(model, field, check_count(getattr(model, field), name, minimum))


def random_subset(key, N: int, count, n=None) -> Bool[Array, " N"]:
    """A uniformly random subset of ``count`` of the N workers, as a mask; with ``n`` (an
    int or a traced one), of the first n workers only (the others are padding, see
    ``Scheme.workers``), the same subset as for N = n.

    Selection sampling (Knuth, TAOCP vol. 2, 3.4.2, Algorithm S): worker n is taken with
    probability (still needed) / (still left), which takes exactly ``count`` workers (when
    as many are needed as are left, every one is taken) with every subset equally likely.
    One scan of N steps carrying a single count, so ``count`` may be traced (a sweep over
    S is one program) and a vmap over keys costs a few vector operations per step, 7x
    less than a partial Fisher-Yates shuffle and 14x less than sorting N random keys
    (``jax.random.permutation``) at N = 1,000. A ``count`` outside [0, N] takes nobody
    (below 0) or everybody (above N).
    """
    u = jax.random.uniform(key, (N,))
    count_from = N if n is None else jnp.asarray(n, jnp.int32)
    left = (count_from - jnp.arange(N, dtype=jnp.int32)).astype(u.dtype)

    def step(needed, drawn):
        u_n, left_n = drawn
        take = (u_n * left_n < needed) & (left_n > 0)
        return needed - take.astype(needed.dtype), take

    _, chosen = lax.scan(step, jnp.asarray(count).astype(u.dtype), (u, left))
    return chosen


class StragglerModel(Checked):
    """Base class of the straggler models: which workers answer.

    ``sample(key, N)`` gives an (N,) boolean mask (True = the worker answered);
    ``min_alive(N)`` is the fewest answers the model can leave (a static bound, checked
    against a scheme's needs before anything runs). Pass a model as ``stragglers=`` to
    ``monte_carlo``, ``run_coded``, ``expected_loss``, ``select_lambda`` or ``tune``.

    Example:
      >>> import letcc_jax as lc
      >>> models = (lc.NoStragglers(), lc.ExactStragglers(3), lc.BernoulliStragglers(0.2),
      ...           lc.LatencyStragglers(wait_for=6))
      >>> [isinstance(m, lc.StragglerModel) for m in models]
      [True, True, True, True]
      >>> [m.min_alive(10) for m in models]          # the fewest answers of N = 10 workers
      [10, 7, 0, 6]
    """

    def sample(self, key, N: int) -> Bool[Array, " N"]:
        """Draw which of the N workers answer.

        Works under ``jit`` and ``vmap`` over keys; the model itself must be unswept (the
        evaluators handle sweeps).

        Args:
          key: one JAX PRNG key (``jax.random.key`` or ``jax.random.PRNGKey``).
          N: the number of workers, a Python int >= 1 (static).

        Returns:
          (N,) bool mask, True where the worker answered.

        Raises:
          TypeError: ``key`` is not one PRNG key (e.g. an int, or a batch of keys).
          ValueError: N is not an int >= 1, or the model's sizes do not fit N workers
            (see ``check_workers``); the model is a sweep (parameters with leading axes).
        """
        self._check_sample(key, N)
        return self.draw_mask(key, N)

    def draw_mask(self, key, N: int, n=None) -> Bool[Array, " N"]:
        """``sample``'s traced rule, without checks: what the simulation engine calls for
        one unswept model (the evaluators validate it and run sweeps first).

        Args:
          key: one JAX PRNG key.
          N: the number of workers, a Python int (static).
          n: None, or how many of the N exist (an int, possibly traced): the scheme's
            ``workers``. The rest never answer, and the first n are drawn as for N = n
            (a model of your own must take this argument to run on ``stack_schemes``).

        Returns:
          (N,) bool mask, True where the worker answered.
        """
        raise NotImplementedError

    def min_alive(self, N: int) -> int:
        """The fewest workers of N that the model can leave answering (a static bound).

        Args:
          N: the number of workers.

        Returns:
          A Python int in [0, N]; 0 when any number of workers may straggle.

        Raises:
          ValueError: N is not an int >= 1, or the model's sizes do not fit N workers
            (``ExactStragglers``: S >= N; ``LatencyStragglers``: ``wait_for`` or ``slow``
            > N).
        """
        raise NotImplementedError

    def check_workers(self, N: int) -> None:
        """Raise if the model's sizes do not fit N workers.

        Args:
          N: the number of workers.

        Raises:
          ValueError: N is not an int >= 1, or a size of the model (``S``, ``wait_for``,
            ``slow``) exceeds what N workers allow.
        """
        _check_N(self, N)

    def _check_sample(self, key, N: int, method: str = "sample") -> None:
        """``sample``'s arguments: one unswept model, one PRNG key, N workers that fit."""
        check_key(key)
        self.check_workers(N)
        _require_unswept(self, method)


class FaultModel(Checked):
    """Base class of the fault models: what answering workers send.

    ``apply(key, Y)`` corrupts the (N, m) worker outputs. Pass a list of models as
    ``faults=`` to ``monte_carlo``, ``run_coded``, ``expected_loss``, ``select_lambda`` or
    ``tune``; they apply in order.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> faults = [lc.GaussianNoise(0.01), lc.FailedWorkers(2)]
      >>> all(isinstance(fault, lc.FaultModel) for fault in faults)
      True
      >>> Y = jnp.ones((10, 3))
      >>> for key, fault in zip(jax.random.split(jax.random.key(0)), faults):
      ...     Y = fault.apply(key, Y)
      >>> Y.shape, int(jnp.isnan(Y).any(axis=1).sum())
      ((10, 3), 2)
    """

    def apply(self, key, Y: Float[Array, "N m"]) -> Float[Array, "N m"]:
        """Corrupt the worker outputs Y (traced: works under ``jit`` and ``vmap``).

        Checks types and shapes only, so it works under ``jit`` and ``vmap`` too, then runs
        the model's traced rule ``corrupt``.

        Args:
          key: one JAX PRNG key.
          Y: (N, m) float outputs, row n from worker n.

        Returns:
          (N, m) corrupted outputs in the dtype of Y.

        Raises:
          TypeError: ``key`` is not one PRNG key; Y is not a real floating-point array.
          ValueError: Y is not (N, m); the model's count exceeds N; the model is a sweep
            (parameters with leading axes).
        """
        self._check_apply(key, Y)
        return self.corrupt(key, Y)

    def corrupt(self, key, Y: Float[Array, "N m"], n=None) -> Float[Array, "N m"]:
        """``apply``'s traced rule, without checks: what the simulation engine calls for
        one unswept model (the evaluators validate it and run sweeps first).

        Args:
          key: one JAX PRNG key.
          Y: (N, m) float outputs.
          n: None, or how many of the N workers exist (the scheme's ``workers``): a model
            that picks workers picks among the first n, as for N = n (a model of your own
            must take this argument to run on ``stack_schemes``).

        Returns:
          (N, m) corrupted outputs in the dtype of Y.
        """
        raise NotImplementedError

    def _check_apply(self, key, Y) -> None:
        """``apply``'s arguments: one unswept model, one PRNG key, (N, m) float outputs
        for N workers that fit (shapes only: the check holds under ``jit`` and ``vmap``)."""
        check_key(key)
        if not hasattr(Y, "shape") or not hasattr(Y, "dtype"):
            raise TypeError(f"{type(self).__name__}.apply: Y must be an (N, m) array of worker "
                            f"outputs, got {type(Y).__name__}.")
        if not jnp.issubdtype(Y.dtype, jnp.floating):
            raise TypeError(f"{type(self).__name__}.apply: Y must be real floating-point, got "
                            f"dtype {Y.dtype}.")
        if len(Y.shape) != 2:
            raise ValueError(f"{type(self).__name__}.apply: Y must be (N, m), one row per "
                             f"worker, got shape {tuple(Y.shape)}; reshape one output per "
                             f"worker to Y[:, None].")
        self.check_workers(Y.shape[0])
        self.check_dtype(Y.dtype)
        _require_unswept(self, "apply")

    def check_dtype(self, dtype) -> None:
        """Raise if the model's values do not fit outputs of ``dtype`` (no-op for models
        without sizes). A value beyond the dtype's largest finite number becomes inf, which
        decoders treat as a missing worker: the fault would silently become an erasure.

        Args:
          dtype: the floating-point dtype of the worker outputs.

        Raises:
          ValueError: a size of the model beyond what ``dtype`` holds.
        """

    def check_workers(self, N: int) -> None:
        """Raise if the model's sizes do not fit N workers (no-op for size-free models).

        Args:
          N: the number of workers.

        Raises:
          ValueError: (``Adversaries``, ``FailedWorkers``) N is not an int >= 1, or
            ``count`` exceeds N.
        """


def _require_unswept(model, method: str) -> None:
    """A model's own ``sample``/``apply`` takes one model; sweeps belong to the evaluators.
    Shapes only (the engine's ``batch_shape``), so the check holds under ``jit`` and
    ``vmap`` too."""
    grid = _rounds.batch_shape(model)
    if grid:
        raise ValueError(
            f"{type(model).__name__}.{method} takes one model, but its parameters carry sweep "
            f"axes {grid}; pass the swept model to monte_carlo, run_coded, expected_loss or "
            f"select_lambda, which run every value, or build one model per value.")


def _check_N(model, N) -> None:
    check_count(N, f"{type(model).__name__}: N (the number of workers)", 1)


def _check_at_most(model, field: str, N: int):
    _check_N(model, N)
    value = getattr(model, field)
    if value > N:
        raise ValueError(f"{type(model).__name__}: {field}={value} exceeds the N={N} workers; "
                         f"use {field} <= {N}.")


@pytree_dataclass
@dataclasses.dataclass(frozen=True)
class NoStragglers(StragglerModel):
    """Every worker answers (the evaluators' default).

    Example:
      >>> import jax
      >>> import letcc_jax as lc
      >>> lc.NoStragglers().sample(jax.random.key(0), 4).tolist()
      [True, True, True, True]
    """

    def draw_mask(self, key, N: int, n=None) -> Bool[Array, " N"]:
        return existing(jnp.ones((N,), bool), n)

    def min_alive(self, N: int) -> int:
        self.check_workers(N)
        return N


@pytree_dataclass
@dataclasses.dataclass(frozen=True, eq=False)
class ExactStragglers(StragglerModel):
    """Exactly ``S`` workers, uniformly at random, fail to answer (the paper's model).

    Args:
      S: the number of stragglers, an int >= 0 (the evaluators check S < N). A leaf: a new
        S is new data for a compiled program, not a new compilation, and an integer array
        of counts is a sweep (``ExactStragglers(jnp.array([4, 8, 16]))`` evaluates the
        three in one ``monte_carlo`` call, on the same random draws: the stragglers of a
        smaller S are among those of a larger one).

    Raises:
      ValueError: S is not an int >= 0 (or an integer array of them).

    Example:
      >>> import jax
      >>> import letcc_jax as lc
      >>> mask = lc.ExactStragglers(3).sample(jax.random.key(0), 10)
      >>> mask.shape, str(mask.dtype), int(mask.sum())   # 3 of the 10 workers straggle
      ((10,), 'bool', 7)
    """

    S: Int[Array, "*batch"]

    def check_values(self) -> None:
        counts = _check_counts(self.S, "ExactStragglers: S")
        if counts is not None and counts.ndim == 0:
            object.__setattr__(self, "S", int(counts))  # one S: a plain int, as it came

    def draw_mask(self, key, N: int, n=None) -> Bool[Array, " N"]:
        return existing(~random_subset(key, N, self.S, n), n)

    def min_alive(self, N: int) -> int:
        self.check_workers(N)
        counts = _counts(self.S)
        return 0 if counts is None or not counts.size else N - int(counts.max())

    def check_workers(self, N: int) -> None:
        _check_N(self, N)
        counts = _counts(self.S)
        if counts is not None and counts.size and counts.max() >= N:
            raise ValueError(f"ExactStragglers: S={self.S} stragglers leave no worker of N={N}; "
                             f"use S < {N}.")


def _counts(value) -> np.ndarray | None:
    """The concrete values of an integer leaf (None for a tracer)."""
    values = concrete_values(value)
    return None if values is None else values.astype(np.int64)


def _check_counts(value, name: str) -> np.ndarray | None:
    """A count that is a leaf (``ExactStragglers.S``): an int >= 0 or an integer array of
    them (a sweep); returns the values (None for a tracer, which cannot be inspected)."""
    if isinstance(value, jax.core.Tracer):
        return None
    values = concrete_values(value)
    if (values is None or values.dtype == np.bool_ or not np.issubdtype(values.dtype, np.integer)
            or (values.size and values.min() < 0)):
        raise ValueError(f"{name} must be an int >= 0 (or an integer array of them, a sweep), "
                         f"got {value!r}.")
    return values


@pytree_dataclass
@dataclasses.dataclass(frozen=True, eq=False)
class BernoulliStragglers(StragglerModel):
    """Each worker straggles independently with probability ``p`` (a leaf).

    Args:
      p: the straggling probability in [0, 1); an array of values is a sweep (see
        ``monte_carlo``).

    Raises:
      ValueError: ``p`` outside [0, 1) or not finite (checked on construction).
      TypeError: ``p`` is not a real number or array (checked likewise).

    Example:
      >>> import jax
      >>> import letcc_jax as lc
      >>> model = lc.BernoulliStragglers(0.25)
      >>> mask = model.sample(jax.random.key(0), 1000)
      >>> model.min_alive(1000), 0.7 < float(mask.mean()) < 0.8   # about 3 in 4 answer
      (0, True)
    """

    p: Float[Array, "*batch"]

    def check_values(self) -> None:
        check_parameter(self.p, "BernoulliStragglers: p", "in [0, 1)",
                        lambda p: (p >= 0) & (p < 1))

    def draw_mask(self, key, N: int, n=None) -> Bool[Array, " N"]:
        u = jax.random.uniform(key, (N,))
        return existing(u >= jnp.asarray(self.p, u.dtype), n)

    def min_alive(self, N: int) -> int:
        self.check_workers(N)
        return 0


@pytree_dataclass
@dataclasses.dataclass(frozen=True, eq=False)
class LatencyStragglers(StragglerModel):
    """Workers finish at random times; the master keeps the first ``wait_for`` results.

    Time of worker n: ``shift + Exponential(rate)`` (the shifted-exponential model of
    coded-computing papers), multiplied by ``slowdown`` for ``slow`` randomly chosen
    workers (persistent stragglers). ``wait_for`` and ``slow`` are sizes (static); the
    three times are leaves (arrays of values are sweeps).

    Args:
      wait_for: results the master waits for, an int >= 1 (<= N, checked when used).
      shift: the minimum time, >= 0.
      rate: the rate of the exponential tail, > 0 (its mean is 1 / rate).
      slow: the number of persistent stragglers, an int >= 0 (<= N, checked when used).
      slowdown: the factor by which the slow workers' times are multiplied, > 0.

    Raises:
      ValueError: a size that is not an int in range; a time parameter that breaks its
        rule or is not finite.

    Example:
      >>> import jax
      >>> import letcc_jax as lc
      >>> model = lc.LatencyStragglers(wait_for=6, shift=1.0, rate=2.0, slow=2)
      >>> key = jax.random.key(0)
      >>> times, mask = model.finish_times(key, 10), model.sample(key, 10)
      >>> int(mask.sum()), bool(times[mask].max() < times[~mask].min())  # the 6 fastest
      (6, True)
    """

    wait_for: int = _static()
    shift: Float[Array, "*batch"] = 1.0
    rate: Float[Array, "*batch"] = 1.0
    slow: int = _static(default=0)
    slowdown: Float[Array, "*batch"] = 10.0

    def check_values(self) -> None:
        _set_count(self, "wait_for", minimum=1)
        _set_count(self, "slow")
        for field, rule, ok in (("shift", ">= 0", lambda v: v >= 0),
                                ("rate", "> 0", lambda v: v > 0),
                                ("slowdown", "> 0", lambda v: v > 0)):
            check_parameter(getattr(self, field), f"LatencyStragglers: {field}", rule, ok)

    def finish_times(self, key, N: int) -> Float[Array, " N"]:
        """The finish time of each of the N workers; ``sample`` with the same key keeps
        the ``wait_for`` earliest.

        Args:
          key: one JAX PRNG key.
          N: the number of workers, a Python int (static).

        Returns:
          (N,) float times, at least ``shift``, in JAX's default float dtype.

        Raises:
          TypeError: ``key`` is not one PRNG key.
          ValueError: N is not an int >= 1, or ``wait_for`` or ``slow`` exceeds it; the
            model is a sweep.
        """
        self._check_sample(key, N, "finish_times")
        return self._times(key, N)

    def _times(self, key, N: int, n=None) -> Float[Array, " N"]:
        """Finish times; with ``n``, the padding workers' are inf (they never finish)."""
        k_time, k_slow = jax.random.split(key)
        draw = jax.random.exponential(k_time, (N,))
        shift, rate, slowdown = (jnp.asarray(v, draw.dtype)
                                 for v in (self.shift, self.rate, self.slowdown))
        t = shift + draw / rate
        t = jnp.where(random_subset(k_slow, N, self.slow, n), t * slowdown, t)
        return jnp.where(existing(jnp.ones((N,), bool), n), t, jnp.inf)

    def check_workers(self, N: int) -> None:
        _check_at_most(self, "wait_for", N)
        _check_at_most(self, "slow", N)

    def draw_mask(self, key, N: int, n=None) -> Bool[Array, " N"]:
        t = self._times(key, N, n)
        return existing(jnp.argsort(jnp.argsort(t)) < self.wait_for, n)

    def min_alive(self, N: int) -> int:
        self.check_workers(N)
        return self.wait_for


@pytree_dataclass
@dataclasses.dataclass(frozen=True, eq=False)
class GaussianNoise(FaultModel):
    """Every worker's output gets i.i.d. N(0, sigma^2) noise (noisy computation).

    Args:
      sigma: the noise standard deviation, finite and >= 0; an array of values is a sweep
        (e.g. ``GaussianNoise(jnp.logspace(-3, -1, 10))`` in ``monte_carlo``).

    Raises:
      ValueError: ``sigma`` negative or not finite (checked on construction); above the
        largest finite value of the outputs' dtype / 16, where draws could overflow to inf
        (checked when used: 1e38 with float32 outputs).
      TypeError: ``sigma`` is not a real number or array (checked likewise).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> noisy = lc.GaussianNoise(0.1).apply(jax.random.key(0), jnp.zeros((1000, 1)))
      >>> noisy.shape, 0.09 < float(jnp.std(noisy)) < 0.11
      ((1000, 1), True)
    """

    sigma: Float[Array, "*batch"]

    def check_values(self) -> None:
        check_parameter(self.sigma, "GaussianNoise: sigma", ">= 0", lambda v: v >= 0)

    def check_dtype(self, dtype) -> None:
        # JAX's normal draws stay within 5.5 (float32) or 8.5 (float64) standard deviations.
        _check_fits(self.sigma, dtype, 16, "GaussianNoise: sigma", "noise")

    def corrupt(self, key, Y: Float[Array, "N m"], n=None) -> Float[Array, "N m"]:
        return Y + jnp.asarray(self.sigma, Y.dtype) * jax.random.normal(key, Y.shape, Y.dtype)


def _check_fits(value, dtype, margin: float, name: str, what: str) -> None:
    """Raise unless every concrete entry of ``value`` is at most the largest finite number
    of ``dtype`` divided by ``margin`` (values under tracing are not checked)."""
    values = concrete_values(value)
    if values is None or not jnp.issubdtype(dtype, jnp.floating):
        return
    largest = float(jnp.finfo(dtype).max)
    if values.size and float(np.max(values)) > largest / margin:
        bound = "" if margin == 1 else f" / {margin:g}"
        raise ValueError(
            f"{name} = {float(np.max(values)):.4g} does not fit worker outputs of dtype "
            f"{np.dtype(dtype).name}, whose largest finite value is {largest:.4g}: {what} that "
            f"large would become inf, which the decoder treats as a missing worker, not as "
            f"{what}. Use {name.split(': ')[-1]} <= {largest / margin:.4g} (the dtype's largest "
            f"value{bound}), or float64 outputs (jax.config.update('jax_enable_x64', True)).")


@pytree_dataclass
@dataclasses.dataclass(frozen=True, eq=False)
class Adversaries(FaultModel):
    """``count`` random workers return arbitrary bounded vectors instead of f(.).

    ``mode="uniform"``: i.i.d. uniform entries in [-magnitude, magnitude].
    ``mode="flip"``: the honest output negated and scaled by ``magnitude`` (a coordinated
    attack that keeps the output looking plausible), saturating at the largest finite value
    of the outputs' dtype. For the worst-case choice of the values, see
    ``worst_adversaries``.

    Args:
      count: the number of adversarial workers, an int >= 0 (static; <= N, checked when
        used).
      magnitude: M >= 0, finite; an array of values is a sweep.
      mode: ``"uniform"`` (default) or ``"flip"`` (static).

    Raises:
      ValueError: ``count`` not an int >= 0; an unknown ``mode``; ``magnitude`` negative or
        not finite; a magnitude beyond the largest finite value of the outputs' dtype
        (checked when used: 1e39 with float32 outputs).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> Y = jnp.ones((10, 2))
      >>> out = lc.Adversaries(3, magnitude=2.0, mode="flip").apply(jax.random.key(0), Y)
      >>> int((out[:, 0] < 0).sum()), sorted(set(out.ravel().tolist()))  # 3 rows are -2 Y
      (3, [-2.0, 1.0])
    """

    count: int = _static()
    magnitude: Float[Array, "*batch"] = 1.0
    mode: str = _static(default="uniform")

    def check_values(self) -> None:
        _set_count(self, "count")
        if self.mode not in ("uniform", "flip"):
            raise ValueError(f"Adversaries: mode must be 'uniform' or 'flip', got {self.mode!r}.")
        check_parameter(self.magnitude, "Adversaries: magnitude", ">= 0", lambda v: v >= 0)

    def check_workers(self, N: int) -> None:
        _check_at_most(self, "count", N)

    def check_dtype(self, dtype) -> None:
        _check_fits(self.magnitude, dtype, 1, "Adversaries: magnitude", "adversarial values")

    def corrupt(self, key, Y: Float[Array, "N m"], n=None) -> Float[Array, "N m"]:
        k_who, k_val = jax.random.split(key)
        bad = random_subset(k_who, Y.shape[0], self.count, n)[:, None]
        magnitude = jnp.asarray(self.magnitude, Y.dtype)
        if self.mode == "uniform":
            fake = magnitude * jax.random.uniform(k_val, Y.shape, Y.dtype, -1.0, 1.0)
        else:
            # An adversary sends at most the dtype's largest value: beyond it the product
            # would be inf, which the decoder would drop as a missing worker.
            largest = jnp.finfo(Y.dtype).max
            fake = jnp.clip(-magnitude * Y, -largest, largest)
        return jnp.where(bad, fake, Y)


@pytree_dataclass
@dataclasses.dataclass(frozen=True)
class FailedWorkers(FaultModel):
    """``count`` random workers return NaN (a crashed kernel, a corrupted message).

    Decoders treat a non-finite row as an erasure, so these act as extra stragglers.

    Args:
      count: the number of failed workers, an int >= 0 (static; <= N, checked when used).

    Raises:
      ValueError: ``count`` not an int >= 0.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> out = lc.FailedWorkers(2).apply(jax.random.key(0), jnp.ones((10, 3)))
      >>> int(jnp.isnan(out).any(axis=1).sum())
      2
    """

    count: int = _static()

    def check_values(self) -> None:
        _set_count(self, "count")

    def check_workers(self, N: int) -> None:
        _check_at_most(self, "count", N)

    def corrupt(self, key, Y: Float[Array, "N m"], n=None) -> Float[Array, "N m"]:
        bad = random_subset(key, Y.shape[0], self.count, n)[:, None]
        return jnp.where(bad, jnp.nan, Y)
