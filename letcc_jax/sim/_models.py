"""Straggler models (which workers answer) and fault models (what answering workers send).

A straggler model samples a boolean survivor mask of shape (N,); a fault model corrupts
the (N, m) worker outputs. Both are frozen, hashable dataclasses, so they can be static
arguments of jitted functions, and both take an explicit PRNG key.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

__all__ = [
    "NoStragglers",
    "ExactStragglers",
    "BernoulliStragglers",
    "LatencyStragglers",
    "GaussianNoise",
    "Adversaries",
    "FailedWorkers",
]


def _random_subset(key, N: int, count: int) -> Bool[Array, " N"]:
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


@dataclasses.dataclass(frozen=True)
class NoStragglers:
    """Every worker answers."""

    def sample(self, key, N: int) -> Bool[Array, " N"]:
        return jnp.ones((N,), bool)

    def min_alive(self, N: int) -> int:
        return N


@dataclasses.dataclass(frozen=True)
class ExactStragglers:
    """Exactly ``S`` workers, uniformly at random, fail to answer (the paper's model)."""

    S: int

    def __post_init__(self):
        if not isinstance(self.S, int) or self.S < 0:
            raise ValueError(f"ExactStragglers: S must be an int >= 0, got {self.S!r}.")

    def sample(self, key, N: int) -> Bool[Array, " N"]:
        self._check(N)
        return ~_random_subset(key, N, self.S)

    def min_alive(self, N: int) -> int:
        self._check(N)
        return N - self.S

    def _check(self, N):
        if self.S >= N:
            raise ValueError(f"ExactStragglers: S={self.S} stragglers leave no worker of N={N}.")


@dataclasses.dataclass(frozen=True)
class BernoulliStragglers:
    """Each worker straggles independently with probability ``p``."""

    p: float

    def __post_init__(self):
        if not 0.0 <= self.p < 1.0:
            raise ValueError(f"BernoulliStragglers: p must be in [0, 1), got {self.p!r}.")

    def sample(self, key, N: int) -> Bool[Array, " N"]:
        return jax.random.uniform(key, (N,)) >= self.p

    def min_alive(self, N: int) -> int:
        return 0


@dataclasses.dataclass(frozen=True)
class LatencyStragglers:
    """Workers finish at random times; the master keeps the first ``wait_for`` results.

    Time of worker n: ``shift + Exponential(rate)`` (the shifted-exponential model of
    coded-computing papers), multiplied by ``slowdown`` for ``slow`` randomly chosen
    workers (persistent stragglers).
    """

    wait_for: int
    shift: float = 1.0
    rate: float = 1.0
    slow: int = 0
    slowdown: float = 10.0

    def __post_init__(self):
        if not isinstance(self.wait_for, int) or self.wait_for < 1:
            raise ValueError(f"LatencyStragglers: wait_for must be an int >= 1, got {self.wait_for!r}.")
        if self.shift < 0 or self.rate <= 0 or self.slowdown <= 0 or self.slow < 0:
            raise ValueError("LatencyStragglers: need shift >= 0, rate > 0, slowdown > 0, slow >= 0.")

    def finish_times(self, key, N: int) -> Float[Array, " N"]:
        k_time, k_slow = jax.random.split(key)
        t = self.shift + jax.random.exponential(k_time, (N,)) / self.rate
        return jnp.where(_random_subset(k_slow, N, self.slow), t * self.slowdown, t)

    def sample(self, key, N: int) -> Bool[Array, " N"]:
        if self.wait_for > N:
            raise ValueError(f"LatencyStragglers: wait_for={self.wait_for} exceeds N={N}.")
        t = self.finish_times(key, N)
        return jnp.argsort(jnp.argsort(t)) < self.wait_for

    def min_alive(self, N: int) -> int:
        return min(self.wait_for, N)


@dataclasses.dataclass(frozen=True)
class GaussianNoise:
    """Every worker's output gets i.i.d. N(0, sigma^2) noise (noisy computation)."""

    sigma: float

    def __post_init__(self):
        if not self.sigma >= 0:
            raise ValueError(f"GaussianNoise: sigma must be >= 0, got {self.sigma!r}.")

    def apply(self, key, Y: Float[Array, "N m"]) -> Float[Array, "N m"]:
        return Y + self.sigma * jax.random.normal(key, Y.shape, Y.dtype)


@dataclasses.dataclass(frozen=True)
class Adversaries:
    """``count`` random workers return arbitrary bounded vectors instead of f(.).

    ``mode="uniform"``: i.i.d. uniform entries in [-magnitude, magnitude].
    ``mode="flip"``: the honest output negated and scaled by ``magnitude`` (a coordinated
    attack that keeps the output looking plausible).
    """

    count: int
    magnitude: float = 1.0
    mode: str = "uniform"

    def __post_init__(self):
        if not isinstance(self.count, int) or self.count < 0:
            raise ValueError(f"Adversaries: count must be an int >= 0, got {self.count!r}.")
        if self.mode not in ("uniform", "flip"):
            raise ValueError(f"Adversaries: mode must be 'uniform' or 'flip', got {self.mode!r}.")

    def apply(self, key, Y: Float[Array, "N m"]) -> Float[Array, "N m"]:
        k_who, k_val = jax.random.split(key)
        bad = _random_subset(k_who, Y.shape[0], self.count)[:, None]
        if self.mode == "uniform":
            fake = jax.random.uniform(k_val, Y.shape, Y.dtype, -self.magnitude, self.magnitude)
        else:
            fake = -self.magnitude * Y
        return jnp.where(bad, fake, Y)


@dataclasses.dataclass(frozen=True)
class FailedWorkers:
    """``count`` random workers return NaN (a crashed kernel, a corrupted message).

    Decoders treat a non-finite row as an erasure, so these act as extra stragglers."""

    count: int

    def __post_init__(self):
        if not isinstance(self.count, int) or self.count < 0:
            raise ValueError(f"FailedWorkers: count must be an int >= 0, got {self.count!r}.")

    def apply(self, key, Y: Float[Array, "N m"]) -> Float[Array, "N m"]:
        bad = _random_subset(key, Y.shape[0], self.count)[:, None]
        return jnp.where(bad, jnp.nan, Y)
