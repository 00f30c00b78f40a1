"""B-spline coded computing: a penalised least-squares cubic B-spline both ways.

The encoder fits a cubic B-spline with a fixed number of basis functions ``n_basis`` (uniform
knots on [-1, 1]) to the K inputs at the data tags alpha, penalised by ``lam_enc`` times its
roughness, and evaluates it at the worker tags beta; the decoder fits one to the survivors'
outputs with ``lam_dec`` and evaluates it at alpha. A fit costs O(n J^2 + J^3) for n points
and J = ``n_basis`` functions, whatever N: the basis size, not the number of workers, sets
how rough the curves can be (the idea of B-spline coded computing, arXiv:2601.10616).

The penalty is the P-spline second-difference penalty (Eilers & Marx 1996) scaled by the knot
spacing h as ``||D2 c||^2 / h^3``, which approximates the bending energy of the curve, and
the data term is a mean over the points, so ``lam`` is in the mean form of
``letcc_jax.smoothing_spline`` (comparable with LeTCC's lambdas):

    minimise (1/n) sum_i (y_i - g(t_i))^2 + lam ||D2 c||^2 / h^3,   g = sum_j c_j B_j.

This module uses the public extension API only (``letcc_jax.Scheme`` and
``letcc_jax.field``): it is the worked example of the "Write your own scheme" page.
"""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

import letcc_jax as lc

__all__ = ["BSpline", "bspline", "bspline_basis"]

DEGREE = 3  # cubic


def _knots(n_basis: int) -> np.ndarray:
    """The clamped uniform knot vector on [-1, 1] of ``n_basis`` cubic B-splines (float64)."""
    inner = np.linspace(-1.0, 1.0, n_basis - DEGREE + 1)
    return np.concatenate([np.full(DEGREE, -1.0), inner, np.full(DEGREE, 1.0)])


def bspline_basis(x: Float[Array, " n"], n_basis: int) -> Float[Array, "n J"]:
    """The ``n_basis`` cubic B-splines on uniform clamped knots over [-1, 1], at ``x``.

    Cox-de Boor's recursion, vectorised; differentiable in ``x`` (the basis is a piecewise
    cubic). Points outside [-1, 1] are clamped to it.

    Args:
      x: (n,) real points.
      n_basis: J, the number of basis functions, an int >= 4.

    Returns:
      (n, J) values in the dtype of ``x`` (a partition of unity: each row sums to 1).

    Example:
      >>> import jax.numpy as jnp
      >>> from letcc_jax.bspline import bspline_basis
      >>> B = bspline_basis(jnp.linspace(-1, 1, 5), 6)
      >>> B.shape, [round(float(v), 6) for v in B.sum(axis=1)]
      ((5, 6), [1.0, 1.0, 1.0, 1.0, 1.0])
    """
    x = jnp.clip(jnp.asarray(x), -1.0, 1.0)
    t = jnp.asarray(_knots(n_basis), x.dtype)
    intervals = n_basis - DEGREE
    # the knot interval of each point, the last one closed on the right
    span = jnp.clip(jnp.floor((x + 1.0) * (intervals / 2.0)), 0, intervals - 1).astype(jnp.int32)
    B = (jnp.arange(t.shape[0] - 1, dtype=jnp.int32)[None, :]
         == (span + DEGREE)[:, None]).astype(x.dtype)
    for k in range(1, DEGREE + 1):
        left_den = t[k:-1] - t[:-k - 1]             # t_{i+k} - t_i
        right_den = t[k + 1:] - t[1:-k]             # t_{i+k+1} - t_{i+1}
        left = jnp.where(left_den > 0, (x[:, None] - t[None, :-k - 1])
                         / jnp.where(left_den > 0, left_den, 1.0), 0.0)
        right = jnp.where(right_den > 0, (t[None, k + 1:] - x[:, None])
                          / jnp.where(right_den > 0, right_den, 1.0), 0.0)
        B = left * B[:, :-1] + right * B[:, 1:]
    return B


def _penalty(n_basis: int, dtype) -> Float[Array, "J J"]:
    """||D2 c||^2 / h^3 as a (J, J) matrix: about the bending energy of sum_j c_j B_j."""
    D2 = np.diff(np.eye(n_basis), n=2, axis=0)
    h = 2.0 / (n_basis - DEGREE)
    return jnp.asarray(D2.T @ D2 / h**3, dtype)


def _fit(nodes, values, weights, lam, n_basis: int):
    """The penalised least-squares coefficients (J, m) through (nodes, values) with 0/1
    ``weights`` (the points that count)."""
    B = bspline_basis(nodes, n_basis)
    w = weights.astype(values.dtype)
    count = jnp.maximum(jnp.sum(w), 1.0)
    Bw = B * w[:, None]
    gram = Bw.T @ B / count + lam * _penalty(n_basis, values.dtype)
    return jnp.linalg.solve(gram, Bw.T @ values / count)


class BSpline(lc.Scheme):
    """B-spline coded computing: penalised least-squares cubic B-splines both ways.

    Encoder: the fit of ``n_basis`` cubic B-splines to (alpha_k, x_k) with ``lam_enc``,
    evaluated at beta. Decoder: the fit to the survivors (beta_n, y_n) with ``lam_dec``,
    evaluated at alpha (see the module docstring). Build one with ``bspline``.

    Attributes:
      lam_enc (jax.Array): float scalar encoder penalty, finite and > 0.
      lam_dec (jax.Array): float scalar decoder penalty, finite and > 0 (decoder only).
      n_basis (int): J, the number of basis functions, >= 4 (static).

    Example:
      >>> import jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> scheme = lc.bspline(4, 12, n_basis=6)
      >>> scheme.name, scheme.decoder_fields, scheme.encode(jnp.ones((4, 2))).shape
      ('bspline', ('lam_dec',), (12, 2))
    """

    lam_enc: Float[Array, "*batch"] = lc.field(ndim=0, constraint="positive", default=1e-6)
    lam_dec: Float[Array, "*batch"] = lc.field(ndim=0, constraint="positive", decoder=True,
                                               default=1e-6)
    n_basis: int = lc.field(static=True, default=8)

    name: ClassVar[str] = "bspline"

    def check_values(self) -> None:
        super().check_values()
        if not isinstance(self.n_basis, (int, np.integer)) or isinstance(self.n_basis, bool) \
                or self.n_basis < DEGREE + 1:
            raise ValueError(f"bspline: n_basis must be an int >= {DEGREE + 1} (a cubic needs "
                             f"4 basis functions), got {self.n_basis!r}.")

    def apply_encoder(self, X):
        alpha, beta = self.alpha.astype(X.dtype), self.beta.astype(X.dtype)
        lam = jnp.asarray(self.lam_enc, X.dtype)
        coef = _fit(alpha, X, jnp.ones(alpha.shape, bool), lam, self.n_basis)
        return bspline_basis(beta, self.n_basis) @ coef

    def apply_decoder(self, Y, alive):
        alpha, beta = self.alpha.astype(Y.dtype), self.beta.astype(Y.dtype)
        lam = jnp.asarray(self.lam_dec, Y.dtype)
        coef = _fit(beta, Y, alive, lam, self.n_basis)
        return bspline_basis(alpha, self.n_basis) @ coef


def bspline(K: int, N: int, *, n_basis: int | None = None, lam_enc: float = 1e-6,
            lam_dec: float = 1e-6,
            points: str | tuple[Float[Array, " K"], Float[Array, " N"]] = "chebyshev",
            order: Int[Array, " K"] | None = None,
            fallback: Float[Array, " m"] | None = None) -> BSpline:
    """A B-spline coded computing scheme (``BSpline``).

    Args:
      K: number of data points, an int >= 2.
      N: number of workers, an int >= 2.
      n_basis: J, the number of cubic B-splines, an int >= 4; default max(4, K) (the
        encoder then nearly interpolates the K inputs at a small ``lam_enc``).
      lam_enc, lam_dec: the penalties in mean form, finite and > 0 (a penalty keeps the fit
        defined with fewer points than basis functions).
      points: ``"chebyshev"`` (alpha of the first kind, beta of the second, as the other
        schemes), or ``(alpha, beta)``: K strictly ascending and N ascending tags in
        [-1, 1].
      order, fallback: as for ``letcc``.

    Returns:
      A ``BSpline`` scheme with float64 nodes and lambdas (float32 without x64).

    Raises:
      ValueError: sizes below 2, ``n_basis`` < 4, a penalty <= 0 or not finite, nodes
        not ascending, an unknown ``points``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> scheme = lc.bspline(8, 24)
      >>> X = jnp.linspace(-1, 1, 8)[:, None]
      >>> alive = jnp.arange(24) % 4 != 0                     # every 4th worker straggles
      >>> estimate = scheme.decode(jnp.sin(scheme.encode(X)), alive)
      >>> bool(jnp.max(jnp.abs(estimate - jnp.sin(X))) < 1e-2)
      True
    """
    for value, name in ((K, "K"), (N, "N")):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 2:
            raise ValueError(f"bspline: {name} must be an int >= 2, got {value!r}.")
    if isinstance(points, str):
        if points != "chebyshev":
            raise ValueError(f"bspline: points must be 'chebyshev' or (alpha, beta), got "
                             f"{points!r}.")
        alpha, beta = lc.chebyshev_first(K), lc.chebyshev_second(N)
    else:
        alpha, beta = points
    dtype = jnp.result_type(float)

    def number(value):  # anything else reaches the scheme's own checks as it is
        numeric = isinstance(value, (int, float, np.number, np.ndarray, jax.Array))
        return jnp.asarray(value, dtype) if numeric and not isinstance(value, bool) else value

    n_basis = max(DEGREE + 1, int(K)) if n_basis is None else n_basis
    extras = {} if fallback is None else {"fallback": number(fallback)}
    if order is not None:
        extras["order"] = jnp.asarray(order)
    return BSpline(number(np.asarray(alpha)), number(np.asarray(beta)), lam_enc=number(lam_enc),
                   lam_dec=number(lam_dec), n_basis=n_basis, **extras)
