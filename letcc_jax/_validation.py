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


def require_eager(caller: str, *args) -> None:
    """A TypeError when ``caller`` is reached under a transformation: a leaf of ``args`` is a
    tracer (``jit``, ``vmap``, ``grad`` over them), or ``jit`` is tracing (where every new
    array is a tracer, even without traced arguments)."""
    if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(args)) or isinstance(
            jnp.zeros(()), jax.core.Tracer):
        raise TypeError(
            f"{caller} runs eagerly and cannot be called inside jax.jit, vmap or grad: it "
            "compiles its own programs and steers its search by their results, which a traced "
            f"call cannot read. Call {caller} outside the transformation, on concrete arrays "
            "(it compiles once per configuration, so repeated calls are fast).")


def concrete_values(x) -> np.ndarray | None:
    """``x`` as a NumPy array when it is a concrete number or array, else None (tracers)."""
    if isinstance(x, jax.core.Tracer):
        return None
    if isinstance(x, (bool, int, float, np.ndarray, np.generic, jax.Array)):
        return np.asarray(x)
    return None


def concrete_parameter(x, name: str = "parameter"):
    """A pytree leaf's value to validate, as a NumPy array, or None when it cannot be
    inspected (a tracer).

    Every leaf must be a real number or array: integers are returned as float64, anything
    else (None, strings, booleans, complex numbers) raises a TypeError naming ``name``.
    """
    if isinstance(x, jax.core.Tracer):
        return None
    if isinstance(x, (str, bytes)):
        raise TypeError(f"{name} must be a real number or array, got the string {x!r}.")
    values = concrete_values(x)
    if values is None or values.dtype == np.bool_ or not (
            np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer)):
        what = f"dtype {values.dtype}" if values is not None else type(x).__name__
        raise TypeError(f"{name} must be a real number or array, got {what}.")
    return values if np.issubdtype(values.dtype, np.floating) else values.astype(np.float64)


class Checked:
    """Value checks of an immutable pytree (a scheme or a model).

    A constructor call checks every concrete value (tracers are data: under a user's
    ``jit`` they cannot be inspected). JAX rebuilds pytrees without the constructor
    (``letcc_jax._pytree.pytree_dataclass``), from values that are not parameters at all
    (gradients, tangents, Adam moments, placeholder leaves), so such an object is checked
    when it reaches an entry point: every public entry point calls ``validate``, which
    checks an object once. Subclasses implement ``check_values``.
    """

    def __post_init__(self):
        self.check_values()
        object.__setattr__(self, "_validated", True)

    def check_values(self) -> None:
        """Check the fields' values; raise an error naming the field and the rule it breaks.

        Called on construction and by ``validate``; rarely called directly.

        Raises:
          ValueError: a value that breaks its field's rule (the message names both).
          TypeError: a value of the wrong type (a string, None, a complex number).
        """

    def validate(self):
        """Check every concrete value (once per object); returns the object."""
        if not self.__dict__.get("_validated", False):
            self.check_values()
            object.__setattr__(self, "_validated", True)
        return self


def float_array(x, name: str):
    """``x`` as a JAX array of floating dtype (integers and booleans promote to the default
    float, half precision to float32); a TypeError naming ``name`` for anything else
    (None, strings, complex)."""
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{name} must be an array of real numbers, got {x!r}.")
    try:
        x = jnp.asarray(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array of real numbers, got {type(x).__name__} "
                        f"({exc}).") from None
    if not jnp.issubdtype(x.dtype, jnp.floating):
        if not (jnp.issubdtype(x.dtype, jnp.integer) or x.dtype == jnp.bool_):
            raise TypeError(f"{name} must be real; got dtype {x.dtype}.")
        x = x.astype(jnp.result_type(float))
    return at_least_float32(x)


def at_least_float32(x):
    """Half-precision data (float16, bfloat16) as float32: the decoders need float32's range
    and resolution (node spacings of 1/N^2, squares of the data). Other dtypes unchanged."""
    return x.astype(jnp.float32) if jnp.finfo(x.dtype).bits < 32 else x


def check_matrix(x, rows: int, name: str, rows_name: str):
    if x.ndim != 2 or x.shape[0] != rows:
        raise ValueError(
            f"{name} must have shape ({rows_name}, features) = ({rows}, ...), got {x.shape}. "
            "Flatten each input/output to a vector first (e.g. x.reshape(len(x), -1))."
        )
    if x.shape[1] == 0:
        raise ValueError(f"{name} has shape {x.shape}: no features; each row needs at least "
                         "one value.")


def check_finite(x, name: str, what: str = ""):
    values = concrete_values(x)
    if values is not None and not np.all(np.isfinite(values)):
        bad = np.argwhere(~np.isfinite(values))[:5].tolist()
        raise ValueError(f"{name} contains non-finite values (first at indices {bad}).{what}")


def check_lambda(lam, name: str):
    """A smoothing parameter: a real scalar, finite and >= 0 (skipped on tracers)."""
    values = concrete_parameter(lam, name)
    if values is None:
        return
    if values.shape != ():
        raise ValueError(f"{name} must be a scalar, got shape {values.shape}.")
    if not np.isfinite(values) or values < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {float(values)}.")


def check_parameter(value, name: str, rule: str, ok) -> None:
    """A numeric parameter at construction: every entry finite and with ``ok(values)`` true
    (``rule`` says what that means). Entries beyond a scalar are sweep values (see
    ``monte_carlo``). Skips what ``concrete_parameter`` skips."""
    values = concrete_parameter(value, name)
    if values is None:
        return
    good = np.isfinite(values) & np.asarray(ok(values), bool)
    if not np.all(good):
        if values.size <= 8:
            raise ValueError(f"{name} must be {rule}, got {value!r}.")
        bad = tuple(int(i) for i in np.argwhere(~good)[0])
        raise ValueError(f"{name} must be {rule}, got {values[bad]} at index {bad} (of an "
                         f"array of shape {values.shape}).")


def check_real(value, name: str, rule: str, ok) -> float:
    """A real Python or NumPy number (not a bool), finite and with ``ok(value)`` true
    (``rule`` says what that means): a learning rate, a penalty weight."""
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(
            value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a real number, got {value!r}.")
    if not (np.isfinite(value) and ok(value)):
        raise ValueError(f"{name} must be {rule}, got {value!r}.")
    return float(value)


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


def check_mask(alive, N: int, name: str = "alive"):
    """An (N,) boolean survivor mask."""
    if isinstance(alive, (str, bytes)) or alive is None:
        raise TypeError(f"{name} must be a boolean mask of shape (N,) = ({N},), got {alive!r}.")
    try:
        alive = jnp.asarray(alive)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a boolean mask of shape (N,) = ({N},), got "
                        f"{type(alive).__name__}.") from None
    if alive.shape != (N,):
        raise ValueError(f"{name} must be a boolean mask of shape (N,) = ({N},), got "
                         f"{alive.shape}.")
    if alive.dtype != jnp.bool_:
        raise TypeError(
            f"{name} must be boolean (True = the worker answered), got dtype {alive.dtype}. "
            "Convert an index list with jnp.zeros(N, bool).at[idx].set(True)."
        )
    return alive


def check_key(key, name: str = "key"):
    """A JAX PRNG key: a typed key array of shape () (``jax.random.key``) or a raw
    uint32 key (``jax.random.PRNGKey``)."""
    if isinstance(key, jax.Array) or isinstance(key, jax.core.Tracer):
        dtype, shape = key.dtype, key.shape
        if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
            if shape == ():
                return key
        elif dtype == jnp.uint32 and shape == jax.random.key_data(jax.random.key(0)).shape:
            return key
    raise TypeError(
        f"{name} must be one JAX PRNG key, e.g. jax.random.key(0) or jax.random.PRNGKey(0); "
        f"got {_describe(key)}. Split keys with jax.random.split first if you have several."
    )


def _describe(x) -> str:
    shape, dtype = getattr(x, "shape", None), getattr(x, "dtype", None)
    if shape is not None and dtype is not None:
        return f"{type(x).__name__} of shape {tuple(shape)} and dtype {dtype}"
    return repr(x)
