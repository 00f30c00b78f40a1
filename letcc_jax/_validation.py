"""Checks at the API boundary, shared by every layer.

Values are inspected only when they are concrete: under a user's ``jit``, ``vmap`` or
``grad`` the arguments are tracers, shapes and dtypes are still checked, and the value
checks are skipped (never turned into a Python bool, which would fail on a tracer). The
checks are therefore eager-only; the traced code treats what it cannot check as data
(a non-finite worker output is an erasure, for instance).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(*xs) -> bool:
    """True when none of ``xs`` is a tracer (their values can be inspected)."""
    return not any(isinstance(x, jax.core.Tracer) for x in xs)


def concrete_values(x) -> np.ndarray | None:
    """``x`` as a NumPy array when it is a concrete number or array, else None (tracers)."""
    if isinstance(x, jax.core.Tracer):
        return None
    if isinstance(x, (bool, int, float, np.ndarray, np.generic, jax.Array)):
        return np.asarray(x)
    return None


def concrete_parameter(x, literal_only: bool = False) -> np.ndarray | None:
    """A pytree leaf's value to validate: a concrete floating-point number or array, else
    None. With ``literal_only``, only values written as Python or NumPy numbers (what a
    constructor call receives from a user), not ``jax.Array`` leaves (what JAX rebuilds
    pytrees from: gradients, tangents, placeholders)."""
    if literal_only and isinstance(x, jax.Array):
        return None
    values = concrete_values(x)
    if values is None or not np.issubdtype(values.dtype, np.floating):
        return None
    return values


class Checked:
    """Value checks of an immutable pytree (a scheme or a model).

    JAX rebuilds pytrees through their constructor from values that are not parameters at
    all (gradients, tangents, Adam moments, placeholder leaves), so a constructor may only
    reject the values a user writes: Python and NumPy numbers. ``validate`` checks every
    concrete value, ``jax.Array`` leaves included; every public entry point calls it, and
    ``replace`` too, so a bad value is reported before anything runs. Subclasses implement
    ``check_values``; static fields are checked there in both modes.
    """

    def __post_init__(self):
        self.check_values(literal_only=True)

    def check_values(self, literal_only: bool) -> None:
        """Raise a ValueError/TypeError naming the field and the rule it breaks."""

    def validate(self):
        """Check every concrete value (once per object); returns the object."""
        if not self.__dict__.get("_validated", False):
            self.check_values(literal_only=False)
            object.__setattr__(self, "_validated", True)
        return self


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
    values = concrete_values(x)
    if values is not None and not np.all(np.isfinite(values)):
        bad = np.argwhere(~np.isfinite(values))[:5].tolist()
        raise ValueError(f"{name} contains non-finite values (first at indices {bad}).{what}")


def check_lambda(lam, name: str):
    values = concrete_values(lam)
    if values is None:
        return
    if values.shape != ():
        raise ValueError(f"{name} must be a scalar, got shape {values.shape}.")
    if not np.isfinite(values) or values < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {float(values)}.")


def check_parameter(value, name: str, rule: str, ok, literal_only: bool = False) -> None:
    """A numeric parameter at construction: every entry finite and with ``ok(values)`` true
    (``rule`` says what that means). Entries beyond a scalar are sweep values (see
    ``monte_carlo``). Skips what ``concrete_parameter`` skips."""
    values = concrete_parameter(value, literal_only)
    if values is None:
        return
    if not (np.all(np.isfinite(values)) and np.all(ok(values))):
        raise ValueError(f"{name} must be {rule}, got {value!r}.")


def is_int(value) -> bool:
    """A Python or NumPy integer, not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_count(value, name: str, minimum: int = 0) -> int:
    """A size (a number of workers): a Python or NumPy int of at least ``minimum``."""
    if not is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}.")
    return int(value)


def check_positive_int(value, name: str) -> int:
    """A number of trials, steps or items: a Python or NumPy int >= 1."""
    if not is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return int(value)


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
