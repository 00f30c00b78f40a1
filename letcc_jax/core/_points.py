"""Evaluation points on [-1, 1]: the data tags alpha (K,) and the worker tags beta (N,).

All functions return ascending NumPy float64 arrays; schemes convert them to JAX arrays.
"""

from __future__ import annotations

from typing import Union

import numpy as np

PointsSpec = Union[str, tuple]

__all__ = ["chebyshev_first", "chebyshev_second", "equispaced", "resolve_points"]


def chebyshev_first(n: int) -> np.ndarray:
    """Chebyshev points of the first kind, ``cos((2k-1) pi / (2n))``, k = 1..n, ascending.

    They lie strictly inside (-1, 1): the default data tags alpha.

    Args:
      n: number of points, an int >= 1.

    Returns:
      (n,) float64 NumPy array, ascending, exactly symmetric about 0.

    Raises:
      TypeError: n is not an int.
      ValueError: n < 1.

    Example:
      >>> import letcc_jax as lc
      >>> lc.chebyshev_first(3).round(4).tolist()
      [-0.866, 0.0, 0.866]
    """
    _check_count(n, "n", minimum=1)
    k = np.arange(1, n + 1)
    pts = np.sort(np.cos((2 * k - 1) * np.pi / (2 * n)))
    return 0.5 * (pts - pts[::-1])  # exactly symmetric, with an exact 0 for odd n


def chebyshev_second(n: int) -> np.ndarray:
    """Chebyshev points of the second kind, ``cos((j-1) pi / (n-1))``, j = 1..n, ascending.

    They include both end points -1 and 1: the default worker tags beta.

    Args:
      n: number of points, an int >= 2.

    Returns:
      (n,) float64 NumPy array, ascending, exactly symmetric about 0, from -1 to 1.

    Raises:
      TypeError: n is not an int.
      ValueError: n < 2.

    Example:
      >>> import letcc_jax as lc
      >>> lc.chebyshev_second(5).round(4).tolist()
      [-1.0, -0.7071, 0.0, 0.7071, 1.0]
    """
    _check_count(n, "n", minimum=2)
    j = np.arange(n)
    pts = np.cos(j * np.pi / (n - 1))[::-1]
    # Exact symmetry and exact end points: cos does not return exactly -1, 0, 1.
    pts = 0.5 * (pts - pts[::-1])
    pts[0], pts[-1] = -1.0, 1.0
    return pts


def equispaced(n: int) -> np.ndarray:
    """``n`` equispaced points on [-1, 1], end points included.

    Args:
      n: number of points, an int >= 2.

    Returns:
      (n,) float64 NumPy array, ascending, from -1 to 1.

    Raises:
      TypeError: n is not an int.
      ValueError: n < 2.

    Example:
      >>> import letcc_jax as lc
      >>> lc.equispaced(5).tolist()
      [-1.0, -0.5, 0.0, 0.5, 1.0]
    """
    _check_count(n, "n", minimum=2)
    return np.linspace(-1.0, 1.0, n)


def resolve_points(points: PointsSpec, K: int, N: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(alpha, beta)`` of shapes (K,) and (N,) for a points specification.

    Args:
      points: ``"chebyshev"`` (alpha = first kind, beta = second kind, the convention of
        Berrut coded computing), ``"equispaced"`` (both equispaced on [-1, 1]; alpha is
        the midpoints grid so the data tags stay inside the worker range), or a tuple
        ``(alpha, beta)`` of explicit increasing arrays: alpha strictly, beta may
        repeat a tag (workers at one tag compute the same coded input).
      K: number of data points.
      N: number of workers.
    """
    if isinstance(points, str):
        if points == "chebyshev":
            return chebyshev_first(K), chebyshev_second(N)
        if points == "equispaced":
            return -1.0 + (2.0 * np.arange(K) + 1.0) / K, equispaced(N)
        raise ValueError(
            f"points={points!r} is not known; use 'chebyshev', 'equispaced' or a tuple "
            "(alpha, beta) of increasing arrays in [-1, 1]."
        )
    if isinstance(points, (tuple, list)) and len(points) == 2:
        alpha = _check_nodes(points[0], K, "alpha", "K", strict=True)
        beta = _check_nodes(points[1], N, "beta", "N", strict=False)
        return alpha, beta
    raise ValueError(
        "points must be 'chebyshev', 'equispaced' or a tuple (alpha, beta); "
        f"got {type(points).__name__}."
    )


def _check_count(n, name: str, minimum: int) -> None:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool):
        raise TypeError(f"{name} must be an int, got {type(n).__name__}.")
    if n < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {n}.")


def _check_nodes(nodes, n: int, name: str, size_name: str, strict: bool) -> np.ndarray:
    try:
        if np.asarray(nodes).dtype.kind not in "fiu":  # no strings, booleans or complex
            raise TypeError
        arr = np.asarray(nodes, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of {n} real numbers, got {nodes!r}.") from None
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({size_name},) = ({n},), got {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values.")
    step = np.diff(arr)
    if np.any(step <= 0 if strict else step < 0):
        raise ValueError(f"{name} must be {'strictly ' if strict else ''}increasing; sort it"
                         f"{' and remove duplicates' if strict else ''}.")
    return arr
