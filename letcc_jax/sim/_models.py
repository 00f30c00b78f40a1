"""Straggler models (which workers answer) and fault models (what answering workers send).

A straggler model samples a boolean survivor mask of shape (N,); a fault model corrupts the
(N, m) worker outputs. Both take an explicit PRNG key and are immutable pytrees
(``letcc_jax._pytree.pytree_dataclass``): their numeric parameters (noise levels,
probabilities, magnitudes, latency parameters) are array leaves, and only sizes (counts of
workers) and names are static. A new ``sigma`` or ``p`` is therefore new data for a
compiled function, not a new compilation, and a parameter given as an array with leading
axes is a sweep: ``monte_carlo(..., faults=[GaussianNoise(jnp.logspace(-3, -1, 10))])``
evaluates all ten noise levels in one compiled call.

Values written as Python or NumPy numbers are checked on construction, every value by
``validate()``, which each entry point calls (see ``letcc_jax._validation.Checked``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from .._pytree import pytree_dataclass
from .._validation import Checked, check_count, check_key, check_parameter

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


def random_subset(key, N: int, count: int) -> Bool[Array, " N"]:
    """A uniformly random subset of ``count`` of the N workers, as a mask.

    The first min(count, N - count) steps of a Fisher-Yates shuffle pick the smaller side:
    O(N + min(count, N - count)) work, with no sort (sorting N random keys per pattern,
    as ``jax.random.permutation`` does, cost a third of a Monte Carlo decode).
    """
    picks = min(count, N - count)
    if picks == 0:
        return jnp.full((N,), count == N)
    steps = jnp.arange(picks)
    targets = jax.random.randint(key, (picks,), steps, N)

    def swap(perm, i_j):
        i, j = i_j
        return perm.at[i].set(perm[j]).at[j].set(perm[i]), None

    perm, _ = jax.lax.scan(swap, jnp.arange(N), (steps, targets))
    chosen = jnp.zeros((N,), bool).at[perm[:picks]].set(True)
    return chosen if picks == count else ~chosen


class StragglerModel(Checked):
    """Which workers answer: ``sample(key, N)`` gives an (N,) boolean mask (True = the
    worker answered); ``min_alive(N)`` is the fewest answers the model can leave (a
    static bound, checked against a scheme's needs before anything runs)."""

    def sample(self, key, N: int) -> Bool[Array, " N"]:
        raise NotImplementedError

    def min_alive(self, N: int) -> int:
        raise NotImplementedError

    def check_workers(self, N: int) -> None:
        """Raise a ValueError if the model's sizes do not fit N workers."""
        _check_N(self, N)

    def _check_sample(self, key, N: int) -> None:
        """``sample``'s arguments: one PRNG key and a number of workers that fits."""
        check_key(key)
        self.check_workers(N)


class FaultModel(Checked):
    """What answering workers send: ``apply(key, Y)`` corrupts the (N, m) outputs."""

    def apply(self, key, Y: Float[Array, "N m"]) -> Float[Array, "N m"]:
        raise NotImplementedError

    def check_workers(self, N: int) -> None:
        """Raise a ValueError if the model's sizes do not fit N workers."""


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
    """Every worker answers."""

    def sample(self, key, N: int) -> Bool[Array, " N"]:
        self._check_sample(key, N)
        return jnp.ones((N,), bool)

    def min_alive(self, N: int) -> int:
        return N


@pytree_dataclass
@dataclasses.dataclass(frozen=True)
class ExactStragglers(StragglerModel):
    """Exactly ``S`` workers, uniformly at random, fail to answer (the paper's model)."""

    S: int = _static()

    def check_values(self, literal_only: bool) -> None:
        _set_count(self, "S")

    def sample(self, key, N: int) -> Bool[Array, " N"]:
        self._check_sample(key, N)
        return ~random_subset(key, N, self.S)

    def min_alive(self, N: int) -> int:
        self.check_workers(N)
        return N - self.S

    def check_workers(self, N: int) -> None:
        _check_N(self, N)
        if self.S >= N:
            raise ValueError(f"ExactStragglers: S={self.S} stragglers leave no worker of N={N}; "
                             f"use S < {N}.")


@pytree_dataclass
@dataclasses.dataclass(frozen=True, eq=False)
class BernoulliStragglers(StragglerModel):
    """Each worker straggles independently with probability ``p`` (a leaf)."""

    p: Float[Array, "*batch"]

    def check_values(self, literal_only: bool) -> None:
        check_parameter(self.p, "BernoulliStragglers: p", "in [0, 1)",
                        lambda p: (p >= 0) & (p < 1), literal_only=literal_only)

    def sample(self, key, N: int) -> Bool[Array, " N"]:
        self._check_sample(key, N)
        u = jax.random.uniform(key, (N,))
        return u >= jnp.asarray(self.p, u.dtype)

    def min_alive(self, N: int) -> int:
        return 0


@pytree_dataclass
@dataclasses.dataclass(frozen=True, eq=False)
class LatencyStragglers(StragglerModel):
    """Workers finish at random times; the master keeps the first ``wait_for`` results.

    Time of worker n: ``shift + Exponential(rate)`` (the shifted-exponential model of
    coded-computing papers), multiplied by ``slowdown`` for ``slow`` randomly chosen
    workers (persistent stragglers). ``wait_for`` and ``slow`` are sizes (static); the
    three times are leaves.
    """

    wait_for: int = _static()
    shift: Float[Array, "*batch"] = 1.0
    rate: Float[Array, "*batch"] = 1.0
    slow: int = _static(default=0)
    slowdown: Float[Array, "*batch"] = 10.0

    def check_values(self, literal_only: bool) -> None:
        _set_count(self, "wait_for", minimum=1)
        _set_count(self, "slow")
        for field, rule, ok in (("shift", ">= 0", lambda v: v >= 0),
                                ("rate", "> 0", lambda v: v > 0),
                                ("slowdown", "> 0", lambda v: v > 0)):
            check_parameter(getattr(self, field), f"LatencyStragglers: {field}", rule, ok,
                            literal_only=literal_only)

    def finish_times(self, key, N: int) -> Float[Array, " N"]:
        k_time, k_slow = jax.random.split(key)
        draw = jax.random.exponential(k_time, (N,))
        shift, rate, slowdown = (jnp.asarray(v, draw.dtype)
                                 for v in (self.shift, self.rate, self.slowdown))
        t = shift + draw / rate
        return jnp.where(random_subset(k_slow, N, self.slow), t * slowdown, t)

    def check_workers(self, N: int) -> None:
        _check_at_most(self, "wait_for", N)
        _check_at_most(self, "slow", N)

    def sample(self, key, N: int) -> Bool[Array, " N"]:
        self._check_sample(key, N)
        t = self.finish_times(key, N)
        return jnp.argsort(jnp.argsort(t)) < self.wait_for

    def min_alive(self, N: int) -> int:
        return min(self.wait_for, N)


@pytree_dataclass
@dataclasses.dataclass(frozen=True, eq=False)
class GaussianNoise(FaultModel):
    """Every worker's output gets i.i.d. N(0, sigma^2) noise (noisy computation)."""

    sigma: Float[Array, "*batch"]

    def check_values(self, literal_only: bool) -> None:
        check_parameter(self.sigma, "GaussianNoise: sigma", ">= 0", lambda v: v >= 0,
                        literal_only=literal_only)

    def apply(self, key, Y: Float[Array, "N m"]) -> Float[Array, "N m"]:
        return Y + jnp.asarray(self.sigma, Y.dtype) * jax.random.normal(key, Y.shape, Y.dtype)


@pytree_dataclass
@dataclasses.dataclass(frozen=True, eq=False)
class Adversaries(FaultModel):
    """``count`` random workers return arbitrary bounded vectors instead of f(.).

    ``mode="uniform"``: i.i.d. uniform entries in [-magnitude, magnitude].
    ``mode="flip"``: the honest output negated and scaled by ``magnitude`` (a coordinated
    attack that keeps the output looking plausible).
    """

    count: int = _static()
    magnitude: Float[Array, "*batch"] = 1.0
    mode: str = _static(default="uniform")

    def check_values(self, literal_only: bool) -> None:
        _set_count(self, "count")
        if self.mode not in ("uniform", "flip"):
            raise ValueError(f"Adversaries: mode must be 'uniform' or 'flip', got {self.mode!r}.")
        check_parameter(self.magnitude, "Adversaries: magnitude", ">= 0", lambda v: v >= 0,
                        literal_only=literal_only)

    def check_workers(self, N: int) -> None:
        _check_at_most(self, "count", N)

    def apply(self, key, Y: Float[Array, "N m"]) -> Float[Array, "N m"]:
        k_who, k_val = jax.random.split(key)
        bad = random_subset(k_who, Y.shape[0], self.count)[:, None]
        magnitude = jnp.asarray(self.magnitude, Y.dtype)
        if self.mode == "uniform":
            fake = magnitude * jax.random.uniform(k_val, Y.shape, Y.dtype, -1.0, 1.0)
        else:
            fake = -magnitude * Y
        return jnp.where(bad, fake, Y)


@pytree_dataclass
@dataclasses.dataclass(frozen=True)
class FailedWorkers(FaultModel):
    """``count`` random workers return NaN (a crashed kernel, a corrupted message).

    Decoders treat a non-finite row as an erasure, so these act as extra stragglers."""

    count: int = _static()

    def check_values(self, literal_only: bool) -> None:
        _set_count(self, "count")

    def check_workers(self, N: int) -> None:
        _check_at_most(self, "count", N)

    def apply(self, key, Y: Float[Array, "N m"]) -> Float[Array, "N m"]:
        bad = random_subset(key, Y.shape[0], self.count)[:, None]
        return jnp.where(bad, jnp.nan, Y)
