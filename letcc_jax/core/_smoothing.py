"""``smoothing_spline``: the natural cubic smoothing spline as a validated, compiled call."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from .. import _validation as check
from . import spline
from ._schemes import usable

__all__ = ["smoothing_spline"]


@functools.partial(jax.jit, static_argnames="method")
def _smooth(t, y, alive, lam, x, method):
    used = usable(y, alive)  # a row with a NaN or inf is an erasure
    return spline.smooth(t, y, used, lam, x, method=method), jnp.any(used)


def smoothing_spline(
    t: Float[Array, " n"],
    y: Float[Array, "n m"],
    alive: Bool[Array, " n"] | None = None,
    lam: Float[Array, ""] = 0.0,
    x: Float[Array, " E"] | None = None,
    method: str = "auto",
) -> Float[Array, "E m"]:
    """Fit the natural cubic smoothing spline to the alive rows of ``(t, y)``; evaluate at x.

    The spline minimises ``(1/|F|) sum_{i in F} (y_i - u(t_i))^2 + lam * int u''(t)^2 dt``
    over the alive rows F (mean form: scipy's ``make_smoothing_spline`` takes ``|F| lam``);
    ``lam = 0`` interpolates. Outside the survivors' range the curve is linear.

    Args:
      t: (n,) real knots, finite and strictly ascending (like scipy's
        ``make_smoothing_spline``). Knots in a finer precision than y keep it (float64
        knots with float32 values): spacings and offsets are taken in it and only then
        rounded, so knots closer than float32 resolves (Chebyshev ends at n = 10^5) stay
        apart.
      y: (n, m) real values (or (n,), giving an (E,) result); rows that are not alive are
        ignored, whatever they hold, and a row with a NaN or inf counts as not alive (an
        erasure, as in ``decode``).
      alive: (n,) bool mask of the rows to fit; default all.
      lam: smoothing parameter, a real scalar, finite and >= 0.
      x: (E,) real evaluation points, finite; default ``t``. Like t, kept in their own
        precision where it is finer than y's.
      method: ``"auto"``, ``"sris"``, ``"blocked"``, ``"parallel"`` or ``"reinsch"`` (see
        ``letcc_jax.core.spline``).

    Returns:
      (E, m) values of the spline at x, in the dtype of y (float32 for half-precision y);
      under jit, 0 where ``alive`` selects no finite row.

    Raises:
      ValueError: shapes that do not match (y not (n,) or (n, m) with n, m >= 1, t not
        (n,), x not 1-D, alive not (n,), lam not a scalar); knots or x not finite, knots
        not strictly ascending; lam negative or not finite; an unknown ``method``;
        (eagerly) no alive row with finite values.
      TypeError: complex or non-numeric arrays (a string, None); a non-boolean ``alive``.

    Example:
      >>> import jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> t = jnp.linspace(-1, 1, 50)
      >>> y = jnp.sin(3 * t) + 0.1 * jnp.cos(40 * t)      # a smooth curve plus a wiggle
      >>> smooth = lc.smoothing_spline(t, y, lam=1e-5)
      >>> [round(float(jnp.abs(v - jnp.sin(3 * t)).max()), 2) for v in (y, smooth)]
      [0.1, 0.02]
      >>> bool(jnp.allclose(lc.smoothing_spline(t, y), y, atol=1e-5))  # lam = 0 interpolates
      True
      >>> lc.smoothing_spline(t, y[:, None], lam=1e-5, x=jnp.array([0.0, 0.5])).shape
      (2, 1)
    """
    if method not in spline.METHODS:
        raise ValueError(f"method must be one of {spline.METHODS}, got {method!r}.")
    y = check.float_array(y, "y")
    if y.ndim not in (1, 2):
        raise ValueError(f"y must have shape (n,) or (n, m), got {y.shape}.")
    n = y.shape[0]
    if n == 0 or (y.ndim == 2 and y.shape[1] == 0):
        raise ValueError(f"y has shape {y.shape}: it needs at least one row and one column.")
    given, t = t, _points(check.float_array(t, "t"), y.dtype)
    if t.shape != (n,):
        raise ValueError(f"t must have shape (n,) = ({n},) like the rows of y, got {t.shape}.")
    values = check.concrete_values(t)
    if values is not None and (not np.all(np.isfinite(values)) or np.any(np.diff(values) <= 0)):
        raise ValueError(_knots_message(given, values))
    alive = np.ones((n,), bool) if alive is None else check.check_mask(alive, n)
    check.check_lambda(lam, "lam")
    x = t if x is None else _points(check.float_array(x, "x"), y.dtype)
    if x.ndim != 1:
        raise ValueError(f"x must be a 1-D array of evaluation points, got shape {x.shape}.")
    check.check_finite(x, "x")
    out, fitted = _smooth(t, y if y.ndim == 2 else y[:, None], alive, jnp.asarray(lam, y.dtype),
                          x, method)
    if check.is_concrete(fitted) and not bool(fitted):
        raise ValueError("alive selects no rows of y with finite values; there is nothing to "
                         "fit.")
    return out if y.ndim == 2 else out[:, 0]


def _points(v, dtype):
    """Knots or evaluation points in their own precision where it is finer than the values'
    ``dtype``, else in ``dtype``."""
    return v.astype(spline.finer(v.dtype, dtype))


def _knots_message(given, values: np.ndarray) -> str:
    """Why the knots, ``values`` as the spline computes with them, are not finite and strictly
    ascending: as ``given``, or only since they were rounded to a coarser dtype (float64
    knots become float32 when JAX's 64-bit mode is off)."""
    try:
        given = np.asarray(given)
    except (TypeError, ValueError):
        given = values
    rounded = (np.issubdtype(given.dtype, np.floating) and given.shape == values.shape
               and np.finfo(given.dtype).bits > np.finfo(values.dtype).bits
               and np.all(np.isfinite(given)) and np.all(np.diff(given) > 0))
    if not rounded:
        return ("t must be finite and strictly ascending; sort the knots (and their rows of "
                "y), and average the rows of repeated knots.")
    i = int(np.argmax(np.diff(values) <= 0))
    eps = float(np.finfo(values.dtype).eps)
    return (f"t is strictly ascending as given ({given.dtype}), but t[{i}] = "
            f"{float(given[i])!r} and t[{i + 1}] = {float(given[i + 1])!r} are equal in "
            f"{values.dtype}, the dtype the spline is computed in: JAX's 64-bit mode is off, "
            f"so {given.dtype} arrays become {values.dtype}. Enable it "
            f"(jax.config.update(\"jax_enable_x64\", True) at start-up) to keep float64 "
            f"knots, with float64 or float32 values, or spread the knots at least "
            f"{values.dtype} resolution apart (relative spacing above {eps:.1e}).")
