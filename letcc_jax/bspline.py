"""B-spline coded computing: a penalised least-squares cubic B-spline both ways.

The encoder fits a cubic B-spline with ``n_basis`` basis functions (uniform knots on
[-1, 1]) to the K inputs at the data tags alpha, penalised by ``lam_enc`` times its roughness,
and evaluates it at the worker tags beta; the decoder fits one to the survivors' outputs with
``lam_dec`` and evaluates it at alpha. A fit costs O(n + J^3) for n points and
J = ``n_basis`` functions (the idea of B-spline coded computing, arXiv:2601.10616).

The basis size, not the number of workers, sets how rough the curves can be, so a basis of
fixed size stops improving with N: with J = K = 8 the error against N is flat from N = 100
to 1,000 (MSE 0.07 on the error-vs-N experiment's synthetic f, where LeTCC reaches 4e-12).
The default therefore grows with N, J = max(K, N // 2), which follows LeTCC's convergence
(MSE 7e-7, 5e-9 and 2e-10 at N = 200, 400 and 1,000 with 20% stragglers, against LeTCC's
4e-7, 9e-10 and 4e-12). J = N is closer at N = 200 and 400 (3e-7 and 7e-10) but loses
float32's accuracy by N = 1,000 (3e-7) and costs 8 times as much per fit: the fit's dense
(J, J) solve dominates its cost. The encoder's default penalty is small (1e-9) so that it
nearly interpolates the inputs: at 1e-6 it misses them by about 4e-3, which bounds the
decoder's error at about 1e-4 whatever J.

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


def _local_basis(x: Float[Array, " n"], n_basis: int):
    """The 4 cubic B-splines that are nonzero at each point: ``(span, values)`` with ``span``
    (n,) int32 and ``values`` (n, 4), ``values[i, a]`` the basis function ``span[i] + a`` at
    ``x[i]`` (de Boor's triangular scheme, Piegl & Tiller's A2.2; differentiable in x)."""
    x = jnp.clip(jnp.asarray(x), -1.0, 1.0)
    t = jnp.asarray(_knots(n_basis), x.dtype)
    intervals = n_basis - DEGREE
    # the knot interval of each point, the last one closed on the right
    span = jnp.clip(jnp.floor((x + 1.0) * (intervals / 2.0)), 0, intervals - 1).astype(jnp.int32)
    mu = span + DEGREE                                  # t[mu] <= x < t[mu + 1]
    left = [None] + [x - t[mu + 1 - j] for j in range(1, DEGREE + 1)]
    right = [None] + [t[mu + j] - x for j in range(1, DEGREE + 1)]
    values = [jnp.ones_like(x)]
    for j in range(1, DEGREE + 1):
        saved = jnp.zeros_like(x)
        nxt = []
        for r in range(j):
            temp = values[r] / (right[r + 1] + left[j - r])   # a knot span: never 0
            nxt.append(saved + right[r + 1] * temp)
            saved = left[j - r] * temp
        values = nxt + [saved]
    return span, jnp.stack(values, axis=-1)


def bspline_basis(x: Float[Array, " n"], n_basis: int) -> Float[Array, "n J"]:
    """The ``n_basis`` cubic B-splines on uniform clamped knots over [-1, 1], at ``x``.

    De Boor's recursion, vectorised; differentiable in ``x`` (the basis is a piecewise
    cubic). Points outside [-1, 1] are clamped to it. Each row has 4 nonzeros, which the
    scheme's fits use directly (O(n) work for n points, not O(n J)).

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
    span, values = _local_basis(x, n_basis)
    columns = span[:, None] + jnp.arange(DEGREE + 1, dtype=jnp.int32)
    rows = jnp.arange(span.shape[0], dtype=jnp.int32)[:, None]
    return jnp.zeros((span.shape[0], n_basis), values.dtype).at[rows, columns].set(values)


def _penalty(n_basis: int, dtype) -> Float[Array, "J J"]:
    """||D2 c||^2 / h^3 as a (J, J) matrix: about the bending energy of sum_j c_j B_j."""
    D2 = np.diff(np.eye(n_basis), n=2, axis=0)
    h = 2.0 / (n_basis - DEGREE)
    return jnp.asarray(D2.T @ D2 / h**3, dtype)


def _fit(nodes, values, weights, lam, n_basis: int):
    """The penalised least-squares coefficients (J, m) through (nodes, values) with 0/1
    ``weights`` (the points that count). The Gram matrix B^T W B and B^T W y are summed
    from each point's 4 nonzero basis values: O(n) work, then one dense (J, J) solve."""
    span, B = _local_basis(nodes, n_basis)
    w = weights.astype(values.dtype)
    count = jnp.maximum(jnp.sum(w), 1.0)
    Bw = B * (w / count)[:, None]                                   # (n, 4)
    columns = span[:, None] + jnp.arange(DEGREE + 1, dtype=jnp.int32)   # (n, 4)
    gram = jnp.zeros((n_basis, n_basis), values.dtype).at[
        columns[:, :, None], columns[:, None, :]].add(Bw[:, :, None] * B[:, None, :])
    rhs = jnp.zeros((n_basis,) + values.shape[1:], values.dtype).at[columns].add(
        Bw[..., None] * values[:, None, :])
    return jnp.linalg.solve(gram + lam * _penalty(n_basis, values.dtype), rhs)


def _evaluate(x, coef, n_basis: int):
    """sum_j coef_j B_j(x) at the (n,) points: (n, m), from the 4 nonzero basis values."""
    span, B = _local_basis(x, n_basis)
    columns = span[:, None] + jnp.arange(DEGREE + 1, dtype=jnp.int32)
    return jnp.einsum("na,nam->nm", B, coef[columns])


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

    lam_enc: Float[Array, "*batch"] = lc.field(ndim=0, constraint="positive", default=1e-9)
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
        return _evaluate(beta, coef, self.n_basis)

    def apply_decoder(self, Y, alive):
        alpha, beta = self.alpha.astype(Y.dtype), self.beta.astype(Y.dtype)
        lam = jnp.asarray(self.lam_dec, Y.dtype)
        coef = _fit(beta, Y, alive, lam, self.n_basis)
        return _evaluate(alpha, coef, self.n_basis)


def bspline(K: int, N: int, *, n_basis: int | None = None, lam_enc: float = 1e-9,
            lam_dec: float = 1e-6,
            points: str | tuple[Float[Array, " K"], Float[Array, " N"]] = "chebyshev",
            order: Int[Array, " K"] | None = None,
            fallback: Float[Array, " m"] | None = None) -> BSpline:
    """A B-spline coded computing scheme (``BSpline``).

    Args:
      K: number of data points, an int >= 2.
      N: number of workers, an int >= 2.
      n_basis: J, the number of cubic B-splines, an int >= 4; default max(4, K, N // 2),
        which grows with N (a fixed J stops improving with N: see the module docstring).
        Schemes stacked or padded together need one J: pass the largest N's.
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

    n_basis = max(DEGREE + 1, int(K), int(N) // 2) if n_basis is None else n_basis
    extras = {} if fallback is None else {"fallback": number(fallback)}
    if order is not None:
        extras["order"] = jnp.asarray(order)
    return BSpline(number(np.asarray(alpha)), number(np.asarray(beta)), lam_enc=number(lam_enc),
                   lam_dec=number(lam_dec), n_basis=n_basis, **extras)
