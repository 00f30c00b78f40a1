"""Counting XLA compilations in tests: one listener on JAX's compile events for the whole
session, and a context manager that counts the compilations inside it."""

from __future__ import annotations

import contextlib

import jax

_COMPILES: list[str] = []


def _record(event, seconds, **_):
    if "backend_compile" in event:
        _COMPILES.append(event)


jax.monitoring.register_event_duration_secs_listener(_record)


@contextlib.contextmanager
def compilations():
    """Yields a function that returns how many XLA compilations ran since entering."""
    start = len(_COMPILES)
    yield lambda: len(_COMPILES) - start
