"""Faults injected into real workers, by coded-worker index n in [0, N).

These are facts about a run (a worker sleeps, raises, dies, or sends NaN or garbage), not
about the decoded values: they need an asynchronous backend, where the master sees them
happen. The simulated output faults of the core (``letcc_jax.GaussianNoise``, ...) are the
lockstep counterpart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import NamedTuple

import numpy as np

from .._validation import check_count, check_real, is_int

__all__ = ["InjectedFault", "WorkerFaults"]


class InjectedFault(RuntimeError):
    """The exception a worker raises when ``WorkerFaults.fail`` names it.

    It reaches the master as that worker's entry in ``WorkerResult.errors`` (and, if the
    round cannot be decoded, as the ``__cause__`` of ``NotEnoughResults``).

    Example:
      >>> from letcc_jax import workers
      >>> issubclass(workers.InjectedFault, RuntimeError)
      True
      >>> 5 in workers.WorkerFaults(fail=[5]).fail       # worker 5's task will raise it
      True
    """


class TaskFault(NamedTuple):
    """The faults of one worker's task, as shipped with it (see ``WorkerFaults``)."""

    worker: int
    delay: float
    fail: bool
    kill: bool
    nan: bool
    garbage: bool
    garbage_scale: float


def _indices(values, name: str) -> frozenset[int]:
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Collection):
        raise TypeError(
            f"WorkerFaults.{name} must be a collection of worker indices (e.g. [0, 3]), "
            f"got {values!r}."
        )
    out = set()
    for v in values:
        if not is_int(v):
            raise TypeError(f"WorkerFaults.{name} must hold worker indices (ints), got {v!r}.")
        out.add(int(v))
    return frozenset(out)


def _generator(seed, method: str) -> np.random.Generator:
    if not (seed is None or is_int(seed) or isinstance(seed, np.random.Generator)):
        raise TypeError(
            f"WorkerFaults.{method}: seed must be an int or a numpy.random.Generator, got {seed!r}."
        )
    return np.random.default_rng(seed)


@dataclasses.dataclass(frozen=True)
class WorkerFaults:
    """Faults to inject into the workers of one round, keyed by worker index n in [0, N).

    Attributes:
      delay: worker -> extra seconds before it starts computing (a straggler). The wait
        takes no execution slot from other workers (a slow machine of its own) and ends
        early if the master cancels the task.
      fail: workers whose task raises ``InjectedFault``.
      kill: workers whose process is killed (SIGKILL) when it starts the task, the first
        time only: the cluster may re-run the task elsewhere, as after a real crash.
        Needs worker processes (not threads inside the master).
      nan: workers that return NaN (an erasure for the decoder).
      garbage: workers that return finite random values, uniform in
        [-garbage_scale, garbage_scale] (undetectable by the master; the decoder's
        smoothing has to absorb them).
      garbage_scale: size of the garbage values.

    Raises:
      TypeError: ``delay`` not a mapping; a collection of indices that is not a collection
        (an int, a string); an index that is not an int; a delay or ``garbage_scale``
        that is not a real number.
      ValueError: a negative or non-finite delay; ``garbage_scale`` not finite and > 0.
        (Indices are checked against N when a round runs, see ``check``.)

    Example:
      >>> from letcc_jax import workers
      >>> faults = workers.WorkerFaults(delay={0: 0.5}, fail=[5], nan=[3])
      >>> sorted(faults.workers()), faults.task(3).nan, faults.task(7)
      ([0, 3, 5], True, None)
    """

    delay: Mapping[int, float] = dataclasses.field(default_factory=dict)
    fail: Collection[int] = ()
    kill: Collection[int] = ()
    nan: Collection[int] = ()
    garbage: Collection[int] = ()
    garbage_scale: float = 1e3

    def __post_init__(self):
        if not isinstance(self.delay, Mapping):
            raise TypeError(
                "WorkerFaults.delay must be a mapping worker index -> seconds (e.g. {3: 0.5}), "
                f"got {self.delay!r}."
            )
        delay = {}
        for n, seconds in self.delay.items():
            (n,) = _indices([n], "delay")
            delay[n] = check_real(seconds, f"WorkerFaults.delay[{n}]", "finite seconds >= 0",
                                  lambda s: s >= 0)
        object.__setattr__(self, "delay", delay)
        for name in ("fail", "kill", "nan", "garbage"):
            object.__setattr__(self, name, _indices(getattr(self, name), name))
        object.__setattr__(self, "garbage_scale", check_real(
            self.garbage_scale, "WorkerFaults.garbage_scale", "finite and > 0", lambda s: s > 0))

    @classmethod
    def slow(cls, N: int, S: int, delay: float, *, seed: int | np.random.Generator = 0) -> WorkerFaults:
        """``S`` of the ``N`` workers, chosen uniformly at random, start ``delay`` s late.

        Args:
          N: the number of workers, an int >= 0.
          S: the number of slow workers, an int in [0, N].
          delay: seconds, finite and >= 0.
          seed: an int or a ``numpy.random.Generator`` choosing the workers.

        Returns:
          A ``WorkerFaults`` with only ``delay`` set.

        Raises:
          ValueError: N or S not an int >= 0, or S > N; a negative or non-finite delay.
          TypeError: a delay that is not a real number; a seed that is neither an int
            nor a Generator.

        Example:
          >>> from letcc_jax import workers
          >>> faults = workers.WorkerFaults.slow(10, 3, 0.5, seed=0)
          >>> len(faults.delay), set(faults.delay.values())
          (3, {0.5})
        """
        N = check_count(N, "WorkerFaults.slow: N")
        S = check_count(S, "WorkerFaults.slow: S")
        if S > N:
            raise ValueError(f"WorkerFaults.slow: need 0 <= S <= N, got S={S}, N={N}.")
        delay = check_real(delay, "WorkerFaults.slow: delay", "finite seconds >= 0", lambda s: s >= 0)
        chosen = _generator(seed, "slow").choice(N, size=S, replace=False)
        return cls(delay={int(n): delay for n in chosen})

    @classmethod
    def shifted_exponential(cls, N: int, shift: float, rate: float, *,
                            seed: int | np.random.Generator = 0) -> WorkerFaults:
        """Every one of the ``N`` workers starts ``shift + Exp(rate)`` s late, independently.

        The shifted-exponential service time of the coded computing literature (Lee et al.,
        "Speeding up distributed machine learning using codes", 2018): a fixed minimum
        ``shift`` plus an exponential tail of mean ``1 / rate`` seconds.

        Args:
          N: the number of workers, an int >= 1.
          shift: seconds, finite and >= 0.
          rate: per second, finite and > 0.
          seed: an int or a ``numpy.random.Generator`` drawing the delays.

        Returns:
          A ``WorkerFaults`` whose ``delay`` names every worker 0, ..., N - 1.

        Raises:
          ValueError: N not an int >= 1; shift < 0 or rate <= 0, or either not finite.
          TypeError: shift or rate not a real number; a seed that is neither an int nor a
            Generator.

        Example:
          >>> from letcc_jax import workers
          >>> faults = workers.WorkerFaults.shifted_exponential(10, shift=0.1, rate=20.0)
          >>> len(faults.delay), min(faults.delay.values()) >= 0.1
          (10, True)
        """
        N = check_count(N, "WorkerFaults.shifted_exponential: N", 1)
        shift = check_real(shift, "WorkerFaults.shifted_exponential: shift", "finite seconds >= 0",
                           lambda s: s >= 0)
        rate = check_real(rate, "WorkerFaults.shifted_exponential: rate",
                          "finite and > 0 (per second; the tail's mean is 1 / rate s)",
                          lambda r: r > 0)
        draws = shift + _generator(seed, "shifted_exponential").exponential(1.0 / rate, size=N)
        return cls(delay={n: float(t) for n, t in enumerate(draws)})

    @classmethod
    def pareto(cls, N: int, scale: float, shape: float, *,
               seed: int | np.random.Generator = 0) -> WorkerFaults:
        """Every one of the ``N`` workers starts a Pareto(``scale``, ``shape``) time late,
        independently: P(delay > t) = (scale / t) ** shape for t >= scale.

        The heavy-tailed service time of the straggler literature: the mean is
        ``shape * scale / (shape - 1)`` for shape > 1 and infinite otherwise; the variance is
        infinite for shape <= 2, so rare workers are very late.

        Args:
          N: the number of workers, an int >= 1.
          scale: the smallest delay in seconds, finite and > 0.
          shape: the tail index, finite and > 0 (at least about 0.1 in practice).
          seed: an int or a ``numpy.random.Generator`` drawing the delays.

        Returns:
          A ``WorkerFaults`` whose ``delay`` names every worker 0, ..., N - 1.

        Raises:
          ValueError: N not an int >= 1; scale or shape not finite and > 0; a shape so
            small that a drawn delay overflows to inf.
          TypeError: scale or shape not a real number; a seed that is neither an int nor
            a Generator.

        Example:
          >>> from letcc_jax import workers
          >>> faults = workers.WorkerFaults.pareto(10, scale=0.1, shape=2.0)
          >>> len(faults.delay), min(faults.delay.values()) >= 0.1
          (10, True)
        """
        N = check_count(N, "WorkerFaults.pareto: N", 1)
        scale = check_real(scale, "WorkerFaults.pareto: scale", "finite seconds > 0",
                           lambda s: s > 0)
        shape = check_real(shape, "WorkerFaults.pareto: shape", "finite and > 0 (the tail index)",
                           lambda a: a > 0)
        # numpy's pareto is the Lomax law (Pareto shifted to start at 0, scale 1).
        draws = scale * (1.0 + _generator(seed, "pareto").pareto(shape, size=N))
        if not np.all(np.isfinite(draws)):
            raise ValueError(
                f"WorkerFaults.pareto: shape={shape!r} is so small that a drawn delay overflowed "
                "to inf; use a tail index of at least about 0.1."
            )
        return cls(delay={n: float(t) for n, t in enumerate(draws)})

    def workers(self) -> frozenset[int]:
        """Every worker index some fault names.

        Returns:
          A frozenset of ints.
        """
        return frozenset(self.delay) | self.fail | self.kill | self.nan | self.garbage

    def check(self, N: int):
        """Raise if a fault names a worker outside [0, N).

        Args:
          N: the number of workers, an int.

        Raises:
          ValueError: N is not an int >= 0; some fault names a worker index outside
            [0, N).
        """
        N = check_count(N, "WorkerFaults.check: N")
        bad = sorted(n for n in self.workers() if not 0 <= n < N)
        if bad:
            raise ValueError(f"WorkerFaults name worker(s) {bad[:10]} outside [0, N) = [0, {N}).")

    def task(self, n: int) -> TaskFault | None:
        """The faults of worker n, as shipped with its task, or None if it has none.

        Args:
          n: a worker index.

        Returns:
          A ``TaskFault`` named tuple (``worker``, ``delay``, ``fail``, ``kill``, ``nan``,
          ``garbage``, ``garbage_scale``), or None.
        """
        if n not in self.workers():
            return None
        return TaskFault(
            n, self.delay.get(n, 0.0), n in self.fail, n in self.kill, n in self.nan,
            n in self.garbage, self.garbage_scale,
        )
