"""A guard against a data race in XLA's CPU backend (seen in jaxlib 0.10.2).

On a CPU with more than one core, XLA's YNNPACK reduce fusion (on by default) can return a
different, wrong value on almost every call: summing ``broadcast_to(ones((1024, 1)), (2,
1024, 1024))`` in float32 gives numbers between 2,118,000 and 2,250,000 instead of
2,097,152, and a boolean ``any`` over a broadcast mask can mark the wrong inputs as lost.
Pinned to one core the result is exact, and so it is with that fusion off, at a cost of
about 5-10% of Monte Carlo throughput (``benchmarks/RESULTS.md``).

XLA reads its flags once, when JAX starts its first backend. Importing ``letcc_jax`` before
that adds ``--xla_cpu_experimental_ynn_fusion_type=-reduce`` to ``XLA_FLAGS`` (also seen by
the processes started from this one: Dask workers, experiment subprocesses). A user's own
setting of that flag is left alone. If JAX already runs on the CPU without it, a warning says
how to set it. Whether JAX has started is asked of a private JAX function, only in the jaxlib
releases known to have it (``KNOWN``); should it be missing, a warning says so and how to
set the flag by hand.
"""

from __future__ import annotations

import os
import warnings

__all__ = ["FLAG", "KNOWN", "SETTING", "guard_cpu_reductions"]

FLAG = "--xla_cpu_experimental_ynn_fusion_type"
SETTING = f"{FLAG}=-reduce"
#: jaxlib releases known to take the flag (an unknown flag in XLA_FLAGS aborts the process).
KNOWN = ((0, 8, 3), (0, 11, 0))


def _jaxlib_version() -> tuple[int, ...]:
    import jaxlib

    parts = []
    for part in jaxlib.__version__.split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _flag_set(flags: str) -> bool:
    return any(part.split("=", 1)[0] == FLAG for part in flags.split())


def guard_cpu_reductions() -> bool:
    """Turn off the racy fusion if XLA has not started yet; returns whether it is off (or
    set by the user). A no-op outside the jaxlib releases known to take the flag."""
    flags = os.environ.get("XLA_FLAGS", "")
    if _flag_set(flags):
        return True
    if not KNOWN[0] <= _jaxlib_version() < KNOWN[1]:
        return False
    # Private, but the only way to ask whether XLA has read its flags; within KNOWN it exists.
    try:
        from jax._src import xla_bridge

        started = xla_bridge.backends_are_initialized()
    except (ImportError, AttributeError) as exc:
        os.environ["XLA_FLAGS"] = f"{flags} {SETTING}".strip()  # in time if JAX has not started
        warnings.warn(
            f"letcc_jax cannot tell whether JAX has started its backend ({exc}), so XLA's "
            "racy CPU reduce fusion may still be on in this process. Set "
            f"XLA_FLAGS='{SETTING}' before starting Python to be sure.",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    if not started:
        os.environ["XLA_FLAGS"] = f"{flags} {SETTING}".strip()
        return True
    try:
        on_cpu = bool(xla_bridge.devices("cpu"))
    except RuntimeError:  # no CPU backend in this process
        on_cpu = False
    if on_cpu and os.cpu_count() != 1:
        warnings.warn(
            "letcc_jax was imported after JAX started its CPU backend, so XLA's CPU reduce "
            "fusion is still on; in jaxlib 0.10 it races on multi-core CPUs and can return "
            f"wrong sums. Import letcc_jax before running any JAX computation, or set "
            f"XLA_FLAGS='{SETTING}' before starting Python.",
            RuntimeWarning,
            stacklevel=3,
        )
    return False
