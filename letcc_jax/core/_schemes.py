"""The coding schemes behind one interface.

Every scheme is linear in the data: ``encode`` maps the K inputs (K, d) to the N coded
inputs (N, d), and ``decode`` maps the N worker outputs (N, m) plus a boolean survivor mask
(N,) to K estimates (K, m). Output coordinates never mix, so one scalar operator serves
all d (or m) columns.

Schemes are immutable pytrees: the node positions and the smoothing parameters are leaves
(so they can be differentiated, vmapped over, and tuned), the sizes are static.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from . import _barycentric as bary
from . import spline as _spline
from ._points import PointsSpec, resolve_points
from .._validation import (
    check_finite,
    check_lambda,
    check_mask,
    check_matrix,
    float_array,
    is_concrete,
)

__all__ = ["Scheme", "LeTCC", "BACC", "LCC", "Uncoded", "letcc", "bacc", "lcc", "uncoded",
           "make_scheme", "SCHEMES"]


def _pytree(cls):
    data = [f.name for f in dataclasses.fields(cls) if f.metadata.get("static") is not True]
    meta = [f.name for f in dataclasses.fields(cls) if f.metadata.get("static") is True]
    return jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=meta)


def _static(**kw):
    return dataclasses.field(metadata={"static": True}, **kw)


@dataclasses.dataclass(frozen=True)
class Scheme:
    """Base class: validation at the boundary, erasure semantics, shared helpers.

    Attributes:
      alpha: (K,) data tags in [-1, 1], ascending.
      beta: (N,) worker tags in [-1, 1], ascending.
    """

    alpha: Float[Array, " K"]
    beta: Float[Array, " N"]

    name: ClassVar[str] = "scheme"

    @property
    def K(self) -> int:
        return self.alpha.shape[0]

    @property
    def N(self) -> int:
        return self.beta.shape[0]

    @property
    def min_survivors(self) -> int:
        """Fewest answering workers from which every input can be estimated."""
        return 2

    def replace(self, **changes) -> "Scheme":
        """A copy with some fields changed (schemes are immutable)."""
        return dataclasses.replace(self, **changes)

    # ----------------------------------------------------------------- public API
    def encode(self, X: Float[Array, "K d"]) -> Float[Array, "N d"]:
        """Coded inputs: worker n receives row n. Follows the dtype of ``X``."""
        X = float_array(X, "X")
        check_matrix(X, self.K, "X", "K")
        check_finite(X, "X", " Coded computing needs finite inputs; clean or drop them first.")
        return self._encode(X)

    def decode(
        self, Y: Float[Array, "N m"], alive: Bool[Array, " N"] | None = None
    ) -> Float[Array, "K m"]:
        """Estimates of f(x_1), ..., f(x_K) from the workers that answered.

        Args:
          Y: worker outputs, row n from worker n; rows of stragglers are ignored (any
            value). A row with a NaN or inf is an erasure: that worker counts as a
            straggler.
          alive: boolean mask, True where the worker answered; default all True.

        Raises:
          ValueError: (on concrete inputs) if too few valid results arrived to estimate
            every input; the message says how many are needed.
        """
        Y = float_array(Y, "Y")
        check_matrix(Y, self.N, "Y", "N")
        alive = jnp.ones((self.N,), bool) if alive is None else check_mask(alive, self.N)
        alive = self.effective_mask(Y, alive)
        if is_concrete(alive):
            self._check_recoverable(alive)
        return self._decode(jnp.where(alive[:, None], Y, 0.0), alive)

    @staticmethod
    def effective_mask(Y: Float[Array, "N m"], alive: Bool[Array, " N"]) -> Bool[Array, " N"]:
        """The survivor mask after non-finite rows are turned into erasures."""
        return alive & jnp.all(jnp.isfinite(Y), axis=1)

    def recovered(self, alive: Bool[Array, " N"]) -> Bool[Array, " K"]:
        """Which inputs get a genuine estimate under ``alive`` (jittable).

        When an input is not recovered (too few survivors), ``decode`` under jit returns 0
        for it; ``monte_carlo`` counts such trials as failures.
        """
        ok = jnp.sum(alive) >= self.min_survivors
        return jnp.broadcast_to(ok, (self.K,))

    def encoder_matrix(self, dtype=None) -> Float[Array, "N K"]:
        """The (N, K) matrix E with encode(X) = E @ X."""
        dtype = dtype or self.alpha.dtype
        return self._encode(jnp.eye(self.K, dtype=dtype))

    def decoder_matrix(self, alive: Bool[Array, " N"], dtype=None) -> Float[Array, "K N"]:
        """The (K, N) matrix D_F with decode(Y, alive) = D_F @ Y (stragglers' columns 0)."""
        dtype = dtype or self.beta.dtype
        alive = check_mask(alive, self.N)
        return self._decode(jnp.diag(alive.astype(dtype)), alive)

    # ------------------------------------------------------------ implementation
    def _encode(self, X):
        raise NotImplementedError

    def _decode(self, Y, alive):
        raise NotImplementedError

    def _check_recoverable(self, alive):
        count = int(jnp.sum(alive))
        if count < self.min_survivors:
            raise ValueError(
                f"{self.name} needs at least {self.min_survivors} valid worker results to "
                f"decode K={self.K} inputs from N={self.N} workers, but only {count} arrived "
                "(non-finite outputs count as missing). Wait for more workers or use more "
                "workers / fewer stragglers."
            )

    def _nodes(self, dtype):
        return self.alpha.astype(dtype), self.beta.astype(dtype)


def _distinct(nodes: Float[Array, " n"], alive: Bool[Array, " n"]) -> Bool[Array, " n"]:
    """``alive`` without the nodes that coincide with the previous alive node.

    Distinct float64 nodes can round to the same value in a lower precision (Chebyshev
    points near +-1 for N in the tens of thousands in float32); an interpolant through two
    values at one point is undefined, so the first result at that point is kept.
    """
    n = nodes.shape[0]
    last = jax.lax.cummax(jnp.where(alive, jnp.arange(n), -1))
    prev = jnp.concatenate([jnp.full((1,), -1, last.dtype), last[:-1]])
    same = (prev >= 0) & (nodes[jnp.maximum(prev, 0)] == nodes)
    return alive & ~same


@_pytree
@dataclasses.dataclass(frozen=True)
class LeTCC(Scheme):
    """Learning-theoretic coded computing: natural cubic smoothing splines both ways.

    Encoder: the smoothing spline through (alpha_k, x_k) with ``lam_enc``, evaluated at
    the worker points. Decoder: the smoothing spline through the survivors (beta_n, y_n)
    with ``lam_dec``, evaluated at the data points. Lambdas are in mean form (see
    ``letcc_jax.smoothing_spline``); 0 means interpolation. Costs O(N m) per decode.
    ``solver`` (static) picks the spline solver: ``"auto"``, ``"sris"``, ``"blocked"`` or
    ``"reinsch"`` (see ``letcc``).
    """

    lam_enc: Float[Array, ""] = 0.0
    lam_dec: Float[Array, ""] = 0.0
    solver: str = _static(default="auto")

    name: ClassVar[str] = "letcc"

    def _encode(self, X):
        alpha, beta = self._nodes(X.dtype)
        return _spline.smooth(
            alpha, X, jnp.ones((self.K,), bool), jnp.asarray(self.lam_enc, X.dtype), beta,
            method=self.solver,
        )

    def _decode(self, Y, alive):
        alpha, beta = self._nodes(Y.dtype)
        lam = jnp.asarray(self.lam_dec, Y.dtype)
        return _spline.smooth(beta, Y, _distinct(beta, alive), lam, alpha, method=self.solver)


@_pytree
@dataclasses.dataclass(frozen=True)
class BACC(Scheme):
    """Berrut approximated coded computing: Berrut's rational interpolant both ways.

    The decoder's alternating signs run over the survivors in node order.
    """

    name: ClassVar[str] = "bacc"

    def _encode(self, X):
        alpha, beta = self._nodes(X.dtype)
        w = bary.berrut_weights(jnp.ones((self.K,), bool), X.dtype)
        return bary.interpolation_matrix(alpha, w, beta) @ X

    def _decode(self, Y, alive):
        alpha, beta = self._nodes(Y.dtype)
        w = bary.berrut_weights(_distinct(beta, alive), Y.dtype)
        return bary.interpolation_matrix(beta, w, alpha) @ Y


@_pytree
@dataclasses.dataclass(frozen=True)
class LCC(Scheme):
    """Lagrange coded computing over the reals, in barycentric form.

    Encoder: the degree K-1 polynomial through (alpha_k, x_k). Decoder: the interpolating
    polynomial through all survivors. For f a polynomial of degree ``degree`` the worker
    results lie on a polynomial of degree (K-1)*degree, so any (K-1)*degree + 1 survivors
    recover f(x_k) exactly (in exact arithmetic); using every survivor gives the same
    polynomial with better conditioning. For non-polynomial f, or large N, polynomial
    interpolation is ill-conditioned: that failure is what BACC and LeTCC address.
    """

    degree: int = _static(default=1)

    name: ClassVar[str] = "lcc"

    @property
    def min_survivors(self) -> int:
        return (self.K - 1) * self.degree + 1

    def _encode(self, X):
        alpha, beta = self._nodes(X.dtype)
        w = bary.lagrange_weights(alpha, jnp.ones((self.K,), bool))
        return bary.interpolation_matrix(alpha, w, beta) @ X

    def _decode(self, Y, alive):
        alpha, beta = self._nodes(Y.dtype)
        w = bary.lagrange_weights(beta, _distinct(beta, alive))
        return bary.interpolation_matrix(beta, w, alpha) @ Y


@_pytree
@dataclasses.dataclass(frozen=True)
class Uncoded(Scheme):
    """Replication: worker n computes f(x_{n mod K}); the estimate of f(x_k) is the mean
    of its answering replicas. An input none of whose replicas answered is lost."""

    name: ClassVar[str] = "uncoded"

    @property
    def min_survivors(self) -> int:
        return self.K

    def _assignment(self, dtype):
        n = jnp.arange(self.N)
        return (n[:, None] % self.K == jnp.arange(self.K)[None, :]).astype(dtype)  # (N, K)

    def _encode(self, X):
        return self._assignment(X.dtype) @ X

    def _decode(self, Y, alive):
        A = self._assignment(Y.dtype) * alive[:, None].astype(Y.dtype)
        count = jnp.sum(A, axis=0)
        return (A.T @ Y) / jnp.maximum(count, 1.0)[:, None]

    def recovered(self, alive):
        return jnp.sum(self._assignment(jnp.float32) * alive[:, None], axis=0) > 0

    def _check_recoverable(self, alive):
        lost = [int(k) for k in jnp.nonzero(~self.recovered(alive))[0]]
        if lost:
            raise ValueError(
                f"uncoded: no replica of input(s) {lost[:10]}{'...' if len(lost) > 10 else ''} "
                f"answered (worker n computes input n mod K={self.K}); those outputs are lost. "
                "Wait for one of their workers, or use a coded scheme."
            )


# ---------------------------------------------------------------- factories


def _check_sizes(K, N, name):
    for value, label in ((K, "K"), (N, "N")):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name}: {label} must be an int, got {type(value).__name__}.")
    if K < 2:
        raise ValueError(f"{name}: K must be at least 2 data points, got K={K}.")
    if N < 2:
        raise ValueError(f"{name}: N must be at least 2 workers, got N={N}.")


def _nodes(points, K, N):
    alpha, beta = resolve_points(points, K, N)
    return jnp.asarray(alpha), jnp.asarray(beta)


def letcc(
    K: int,
    N: int,
    *,
    lam_enc: float = 0.0,
    lam_dec: float = 0.0,
    points: PointsSpec = "chebyshev",
    solver: str = "auto",
) -> LeTCC:
    """LeTCC with smoothing-spline encoder and decoder (mean-form lambdas, 0 = interpolate).

    Args:
      K: number of data points.
      N: number of workers.
      lam_enc: encoder smoothing parameter (>= 0).
      lam_dec: decoder smoothing parameter (>= 0); grows with output noise, see
        ``select_lambda`` and ``gcv``.
      points: ``"chebyshev"`` (default), ``"equispaced"`` or explicit ``(alpha, beta)``.
      solver: ``"auto"`` (default: Reinsch for lam = 0; for lam > 0 the square-root
        information smoother, in its two-level form for float64 from N = 20,000),
        ``"sris"`` (always the sequential smoother: the most accurate, and the fastest
        under vmap over many patterns), ``"blocked"`` (always the two-level form: the
        fastest single decode) or ``"reinsch"`` (normal equations: lose accuracy as
        N * lam grows). See ``letcc_jax._spline``.
    """
    _check_sizes(K, N, "letcc")
    check_lambda(lam_enc, "lam_enc")
    check_lambda(lam_dec, "lam_dec")
    if solver not in _spline.METHODS:
        raise ValueError(f"letcc: solver must be one of {_spline.METHODS}, got {solver!r}.")
    alpha, beta = _nodes(points, K, N)
    return LeTCC(alpha, beta, jnp.asarray(lam_enc, alpha.dtype), jnp.asarray(lam_dec, alpha.dtype),
                 solver=solver)


def bacc(K: int, N: int, *, points: PointsSpec = "chebyshev") -> BACC:
    """Berrut approximated coded computing (Berrut interpolation both ways)."""
    _check_sizes(K, N, "bacc")
    return BACC(*_nodes(points, K, N))


def lcc(K: int, N: int, *, degree: int = 1, points: PointsSpec = "chebyshev") -> LCC:
    """Lagrange coded computing; exact for polynomial f of ``degree`` from any
    (K-1)*degree + 1 survivors."""
    _check_sizes(K, N, "lcc")
    if not isinstance(degree, int) or degree < 1:
        raise ValueError(f"lcc: degree must be a positive int, got {degree!r}.")
    threshold = (K - 1) * degree + 1
    if N < threshold:
        raise ValueError(
            f"lcc: N={N} workers cannot reach the recovery threshold (K-1)*degree+1 = "
            f"{threshold}; use N >= {threshold}."
        )
    return LCC(*_nodes(points, K, N), degree=degree)


def uncoded(K: int, N: int) -> Uncoded:
    """Uncoded replication: worker n computes f(x_{n mod K}); needs N >= K."""
    _check_sizes(K, N, "uncoded")
    if N < K:
        raise ValueError(
            f"uncoded: N={N} workers cannot hold K={K} inputs (each input needs a worker); "
            f"use N >= K."
        )
    # The tags are only for plotting: each worker sits at the tag of the input it copies.
    alpha, _ = resolve_points("chebyshev", K, N)
    beta = alpha[jnp.arange(N) % K]
    return Uncoded(jnp.asarray(alpha), jnp.asarray(beta))


SCHEMES = {"letcc": letcc, "bacc": bacc, "lcc": lcc, "uncoded": uncoded}


def make_scheme(name: str, K: int, N: int, **options) -> Scheme:
    """Build a scheme by name: one of ``SCHEMES`` ("letcc", "bacc", "lcc", "uncoded")."""
    try:
        factory = SCHEMES[name]
    except KeyError:
        raise ValueError(f"unknown scheme {name!r}; choose from {sorted(SCHEMES)}.") from None
    return factory(K, N, **options)
