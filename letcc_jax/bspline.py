"""B-spline coded computing: a penalised least-squares cubic B-spline both ways.

The encoder fits a cubic B-spline with ``n_basis_enc`` basis functions (default max(4, K);
uniform knots on [-1, 1]) to the K inputs at the data tags alpha, penalised by ``lam_enc``
times its roughness, and evaluates it at the worker tags beta; the decoder fits one with
``n_basis`` functions to the survivors' outputs with ``lam_dec`` and evaluates it at alpha
(the idea of B-spline coded computing, arXiv:2601.10616). A fit costs O(n + J) for n points
and J functions: the Gram matrix is banded, and is solved by a banded LDL^T.

The decoder's basis size, not the number of workers, sets how rough its curve can be, so a
basis of fixed size stops improving with N: with J = K = 8 the error against N is flat from
N = 100 to 1,000 (MSE about 0.07 on the error-vs-N experiment's synthetic f with 20% of the
workers straggling, where LeTCC goes from 4e-6 to 4e-12). The default therefore grows with
N, J = max(4, N). On that f it is as accurate as LeTCC or more up to N = 400 (MSE 2.1e-6,
1.9e-8 and 4.1e-10 at N = 100, 200 and 400, against LeTCC's 4.0e-6, 4.0e-7 and 9.4e-10)
and flattens at 1.5e-10 by N = 1,000 (LeTCC 4.4e-12); on LeNet-5 it is within 25% of LeTCC
(0.031 against 0.025 at N = 100, 9.5e-4 against 1.1e-3 at N = 400). J = N // 2 is 2 to 50
times less accurate from N = 50 to 200. The encoder's basis stays at K functions with a small
penalty (1e-9), so that it nearly interpolates the inputs: more functions than inputs make
its system ill-conditioned (a float32 encode then differs from its own encoder matrix's by
4e-3), and a penalty of 1e-6 misses the inputs by about 4e-3, which bounds the decoder's
error at about 1e-4 whatever J. Its knots are uniform while the data tags are Chebyshev
points, which leaves knot intervals without an input as K grows: at K = 20 the encoder misses
LeNet-5's images by up to 0.58 and Table 1's K = 20 rows are the B-spline scheme's weak ones
(LeNet-5 loss 42.9 at N = 100 against LeTCC's 2.1). ``n_basis_enc = 2 K`` brings that row to
LeTCC's (1.97 against 1.92) at the float32 cost above (7e-3 at K = 6); knots at the data tags
would avoid both.

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
    """The 4 cubic B-splines that are nonzero at each point: ``(columns, values)``, both
    (n, 4), ``values[i, a]`` the basis function ``columns[i, a]`` (int32, consecutive) at
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
    return span[:, None] + jnp.arange(DEGREE + 1, dtype=jnp.int32), jnp.stack(values, axis=-1)


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
    columns, values = _local_basis(x, n_basis)
    rows = jnp.arange(columns.shape[0], dtype=jnp.int32)[:, None]
    return jnp.zeros((columns.shape[0], n_basis), values.dtype).at[rows, columns].set(values)


def _penalty(n_basis: int) -> np.ndarray:
    """||D2 c||^2 / h^3 as a (J, J) matrix: about the bending energy of sum_j c_j B_j."""
    D2 = np.diff(np.eye(n_basis), n=2, axis=0)
    h = 2.0 / (n_basis - DEGREE)
    return D2.T @ D2 / h**3


def _band(matrix: np.ndarray) -> np.ndarray:
    """The lower band of a symmetric (J, J) matrix of bandwidth 3: ``band[k, i] = A[i, i - k]``
    (0 where i < k), shape (4, J)."""
    J = matrix.shape[0]
    band = np.zeros((DEGREE + 1, J))
    for k in range(DEGREE + 1):
        band[k, k:] = np.diagonal(matrix, -k)
    return band


# the (a, b) pairs a >= b of one point's 4 nonzero basis values: entry (columns[a], columns[b])
_ROW, _COL = (i.astype(np.int32) for i in np.tril_indices(DEGREE + 1))


def _band_solve(band, rhs):
    """Solves A x = rhs for a symmetric positive definite A of bandwidth 3 given by its lower
    ``band`` (4, J) (``_band``), rhs (J, m): banded LDL^T, then forward and back substitution,
    as two ``lax.scan`` loops of J steps. O(J) work; differentiable; no LAPACK call (a batched
    LAPACK solve can deadlock XLA's CPU thread pool on a machine with few cores)."""
    J = band.shape[1]
    one = jnp.ones((), band.dtype)

    def factor(carry, inputs):
        # carry: the last three rows (d, l1, l2, l3, z) of D, L and the forward solution
        a, b = inputs                                   # (4,) band row, (m,) rhs row
        r1, r2, r3 = carry
        rows = (r1, r2, r3)                             # rows i-1, i-2, i-3
        l = [None, None, None, None]
        for k in (3, 2, 1):                             # L[i, i-k]
            acc = a[k]
            for q in range(k + 1, DEGREE + 1):          # L[i, i-q] D[i-q] L[i-k, i-q]
                acc = acc - l[q] * rows[q - 1][0] * rows[k - 1][q - k]
            l[k] = acc / rows[k - 1][0]
        d = a[0] - sum(l[q] ** 2 * rows[q - 1][0] for q in (1, 2, 3))
        z = b - sum(l[q] * rows[q - 1][4] for q in (1, 2, 3))
        row = (d, l[1], l[2], l[3], z)
        return (row, r1, r2), row

    zero_row = (one, one * 0, one * 0, one * 0, jnp.zeros(rhs.shape[1:], rhs.dtype))
    _, (d, l1, l2, l3, z) = jax.lax.scan(factor, (zero_row,) * 3, (band.T, rhs))
    y = z / d.reshape((J,) + (1,) * (rhs.ndim - 1))
    # back substitution: x[i] = y[i] - sum_q L[i+q, i] x[i+q], with L[i+q, i] = l_q[i+q]
    lq = jnp.stack([l1, l2, l3], axis=1)                # (J, 3): row i's L[i, i-q]
    below = jnp.stack([jnp.roll(lq[:, q - 1], -q) for q in (1, 2, 3)], axis=1)
    below = jnp.where(jnp.arange(J)[:, None] + jnp.arange(1, 4)[None, :] < J, below, 0.0)

    def back(carry, inputs):
        coef, yi = inputs                               # (3,) L[i+q, i], (m,) y[i]
        x = yi - sum(coef[q - 1] * carry[q - 1] for q in (1, 2, 3))
        return (x, carry[0], carry[1]), x

    zeros = jnp.zeros(rhs.shape[1:], rhs.dtype)
    _, x = jax.lax.scan(back, (zeros,) * 3, (below, y), reverse=True)
    return x


def _fit(nodes, values, weights, lam, n_basis: int):
    """The penalised least-squares coefficients (J, m) through (nodes, values) with 0/1
    ``weights`` (the points that count). The band of B^T W B and B^T W y are summed from each
    point's 4 nonzero basis values (O(n) work), and the banded system is solved in O(J)."""
    columns, B = _local_basis(nodes, n_basis)                          # (n, 4) each
    w = weights.astype(values.dtype)
    count = jnp.maximum(jnp.sum(w), 1.0)
    Bw = B * (w / count)[:, None]                                       # (n, 4)
    band = jnp.zeros((DEGREE + 1, n_basis), values.dtype).at[
        _ROW - _COL, columns[:, _ROW]].add(Bw[:, _ROW] * B[:, _COL])
    rhs = jnp.zeros((n_basis,) + values.shape[1:], values.dtype).at[columns].add(
        Bw[..., None] * values[:, None, :])
    penalty = jnp.asarray(_band(_penalty(n_basis)), values.dtype)
    return _band_solve(band + lam * penalty, rhs)


def _evaluate(x, coef, n_basis: int):
    """sum_j coef_j B_j(x) at the (n,) points: (n, m), from the 4 nonzero basis values."""
    columns, B = _local_basis(x, n_basis)
    return jnp.einsum("na,nam->nm", B, coef[columns])


class BSpline(lc.Scheme):
    """B-spline coded computing: penalised least-squares cubic B-splines both ways.

    Encoder: the fit of ``n_basis`` cubic B-splines to (alpha_k, x_k) with ``lam_enc``,
    evaluated at beta. Decoder: the fit to the survivors (beta_n, y_n) with ``lam_dec``,
    evaluated at alpha (see the module docstring). Build one with ``bspline``.

    Attributes:
      lam_enc (jax.Array): float scalar encoder penalty, finite and > 0.
      lam_dec (jax.Array): float scalar decoder penalty, finite and > 0 (decoder only).
      n_basis (int): J, the decoder's number of basis functions, >= 4 (static).
      n_basis_enc (int | None): the encoder's, >= 4; None takes max(4, K) (static).

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
    n_basis_enc: int | None = lc.field(static=True, default=None)

    name: ClassVar[str] = "bspline"

    def check_values(self) -> None:
        super().check_values()
        for name in ("n_basis", "n_basis_enc"):
            value = getattr(self, name)
            if (value is None and name == "n_basis_enc") or (
                    isinstance(value, (int, np.integer)) and not isinstance(value, bool)
                    and value >= DEGREE + 1):
                continue
            raise ValueError(f"bspline: {name} must be an int >= {DEGREE + 1} (a cubic needs 4 "
                             f"basis functions), got {value!r}.")

    @property
    def encoder_basis(self) -> int:
        """The number of the encoder's basis functions, ``n_basis_enc`` or else max(4, K)."""
        if self.n_basis_enc is not None:
            return self.n_basis_enc
        return max(DEGREE + 1, self.alpha.shape[-1])

    def apply_encoder(self, X):
        alpha, beta = self.alpha.astype(X.dtype), self.beta.astype(X.dtype)
        lam = jnp.asarray(self.lam_enc, X.dtype)
        coef = _fit(alpha, X, jnp.ones(alpha.shape, bool), lam, self.encoder_basis)
        return _evaluate(beta, coef, self.encoder_basis)

    def apply_decoder(self, Y, alive):
        alpha, beta = self.alpha.astype(Y.dtype), self.beta.astype(Y.dtype)
        lam = jnp.asarray(self.lam_dec, Y.dtype)
        coef = _fit(beta, Y, alive, lam, self.n_basis)
        return _evaluate(alpha, coef, self.n_basis)


def bspline(K: int, N: int, *, n_basis: int | None = None,
            n_basis_enc: int | None = None, lam_enc: float = 1e-9,
            lam_dec: float = 1e-6,
            points: str | tuple[Float[Array, " K"], Float[Array, " N"]] = "chebyshev",
            order: Int[Array, " K"] | None = None,
            fallback: Float[Array, " m"] | None = None) -> BSpline:
    """A B-spline coded computing scheme (``BSpline``).

    Args:
      K: number of data points, an int >= 2.
      N: number of workers, an int >= 2.
      n_basis: J, the decoder's number of cubic B-splines, an int >= 4; default max(4, N),
        which grows with N (a fixed J stops improving with N: see the module docstring).
        Schemes stacked or padded together need one J: pass the largest N's.
      n_basis_enc: the encoder's, an int >= 4; default None, max(4, K).
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

    n_basis = max(DEGREE + 1, int(N)) if n_basis is None else n_basis
    extras = {} if fallback is None else {"fallback": number(fallback)}
    if order is not None:
        extras["order"] = jnp.asarray(order)
    return BSpline(number(np.asarray(alpha)), number(np.asarray(beta)), lam_enc=number(lam_enc),
                   lam_dec=number(lam_dec), n_basis=n_basis, n_basis_enc=n_basis_enc,
                   **extras)
