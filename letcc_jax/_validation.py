"""Checks at the API boundary. They run on concrete values only: under jit/vmap the
arguments are tracers, shapes are still checked, and values cannot be inspected."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(*xs) -> bool:
    return not any(isinstance(x, jax.core.Tracer) for x in xs)


def float_array(x, name: str):
    """``x`` as a JAX array of floating dtype (integers promote to the default float)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        if jnp.issubdtype(x.dtype, jnp.complexfloating):
            raise TypeError(f"{name} must be real; got dtype {x.dtype}.")
        x = x.astype(jnp.result_type(float))
    return x


def check_matrix(x, rows: int, name: str, rows_name: str):
    if x.ndim != 2 or x.shape[0] != rows:
        raise ValueError(
            f"{name} must have shape ({rows_name}, features) = ({rows}, ...), got {x.shape}. "
            "Flatten each input/output to a vector first (e.g. x.reshape(len(x), -1))."
        )


def check_finite(x, name: str, what: str = ""):
    if is_concrete(x) and not bool(jnp.all(jnp.isfinite(x))):
        bad = np.argwhere(~np.isfinite(np.asarray(x)))[:5].tolist()
        raise ValueError(f"{name} contains non-finite values (first at indices {bad}).{what}")


def check_lambda(lam, name: str):
    if is_concrete(lam):
        value = np.asarray(lam)
        if value.shape != ():
            raise ValueError(f"{name} must be a scalar, got shape {value.shape}.")
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be finite and >= 0, got {float(value)}.")


def check_mask(alive, N: int):
    alive = jnp.asarray(alive)
    if alive.shape != (N,):
        raise ValueError(f"alive must be a boolean mask of shape (N,) = ({N},), got {alive.shape}.")
    if alive.dtype != jnp.bool_:
        raise TypeError(
            f"alive must be boolean (True = the worker answered), got dtype {alive.dtype}. "
            "Convert an index list with jnp.zeros(N, bool).at[idx].set(True)."
        )
    return alive
