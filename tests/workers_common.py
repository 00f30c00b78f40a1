"""Inputs shared by the worker-backend tests: f, X, and one straggler pattern.

f is built inside a function, so cloudpickle ships it to Dask workers by value (with its
weights) instead of by a module reference the workers would have to import. Every test
uses the same K, N, d, m, so each scheme's decoder compiles once per test process.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import letcc_jax as lc

K, N, D, M = 8, 16, 6, 10
STRAGGLERS = (2, 7, 11)  # also kills no input of uncoded(K, N): replicas are n and n + K


def make_f(seed: int = 0):
    """A smooth nonlinear f: R^D -> R^M, a one-layer tanh network with fixed weights."""
    rng = np.random.default_rng(seed)
    W = jnp.asarray(rng.normal(size=(M, D)) / np.sqrt(D), jnp.float32)
    b = jnp.asarray(rng.normal(size=(M,)), jnp.float32)

    def f(x):
        return jnp.tanh(W.astype(x.dtype) @ x + b.astype(x.dtype))

    return f


F = make_f()
X = np.random.default_rng(1).normal(size=(K, D)).astype(np.float32)
ALIVE = np.ones((N,), bool)
ALIVE[list(STRAGGLERS)] = False

SCHEMES = {
    "letcc": lc.letcc(K, N),
    "bacc": lc.bacc(K, N),
    "lcc": lc.lcc(K, N),
    "uncoded": lc.uncoded(K, N),
}


def reference(f, scheme, X, alive):
    """The decoded estimate computed directly with the core: (K, m)."""
    coded = scheme.encode(jnp.asarray(X))
    Y = jnp.stack([f(x).reshape(-1) for x in coded])
    return np.asarray(scheme.decode(Y, jnp.asarray(alive)))
