"""The coding schemes behind one interface.

Every scheme is linear in the data: ``encode`` maps the K inputs (K, d) to the N coded
inputs (N, d), and ``decode`` maps the N worker outputs (N, m) plus a boolean survivor mask
(N,) to K estimates (K, m). Output coordinates never mix, so one scalar operator serves
all d (or m) columns.

Schemes are immutable pytrees (``letcc_jax._pytree.pytree_dataclass``): the node positions,
the smoothing parameters and learned weights are leaves (so they can be differentiated,
vmapped over, swept and tuned), the sizes and names are static. Each declares the rank of
its leaves (``metadata={"ndim": ...}``), so that a leaf with extra leading axes is read as
a sweep (see ``monte_carlo``).

A scheme implements three traced rules, used by the round kernel (``letcc_jax.core.
_round``) and never validated: ``apply_encoder(X)``, ``apply_decoder(Y, alive)`` (outputs
of stragglers already zeroed, ``alive`` free of erasures) and ``apply_recovery(alive)``.
The public methods (``encode``, ``decode``, ``recovered``, ``encoder_matrix``,
``decoder_matrix``) validate their arguments in Python and call the kernel's compiled
functions, so an eager call costs one cached dispatch.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from .. import _validation as check
from .._pytree import pytree_dataclass
from . import _barycentric as bary
from . import _round
from . import spline as _spline
from ._points import PointsSpec, resolve_points

__all__ = ["Scheme", "LeTCC", "ResidualLeTCC", "BarycentricScheme", "BACC", "LCC", "Uncoded",
           "letcc", "residual_letcc", "bacc", "lcc", "uncoded", "make_scheme", "SCHEMES"]


def _leaf(ndim: int = 0, **kw):
    """A data field whose unbatched value has ``ndim`` dimensions."""
    return dataclasses.field(metadata={"ndim": ndim}, **kw)


def _static(**kw):
    return dataclasses.field(metadata={"static": True}, **kw)


def _check_nodes(values, name: str, strict: bool):
    """Finite and ascending along the last axis; with ``strict``, no repeats.

    The data tags alpha must be distinct (an encoder through two inputs at one tag is
    undefined). Worker tags may repeat: workers at one tag compute the same coded input
    (a replica), and the decoders use the first of them that answered. Distinct float64
    worker tags may also coincide once rounded to float32 (Chebyshev points near +-1 for
    N in the tens of thousands).
    """
    if values is None:
        return
    if values.ndim < 1:
        raise ValueError(f"{name} must be a 1-D array of nodes, got shape {values.shape}.")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} contains non-finite values.")
    step = np.diff(values, axis=-1)
    if np.any(step <= 0 if strict else step < 0):
        rule = "strictly ascending (distinct)" if strict else "ascending"
        raise ValueError(f"{name} must be {rule}; sort it"
                         f"{' and remove duplicates' if strict else ''}.")


@dataclasses.dataclass(frozen=True, eq=False)
class Scheme(check.Checked):
    """Base class: the public, validated entry points and the erasure semantics.

    Attributes:
      alpha: (K,) data tags in [-1, 1], strictly ascending, K >= 2.
      beta: (N,) worker tags in [-1, 1], ascending, N >= 2; workers may share a tag (they
        then compute the same coded input, and the decoder uses the first that answered).
    """

    alpha: Float[Array, "*batch K"] = _leaf(1)
    beta: Float[Array, "*batch N"] = _leaf(1)

    name: ClassVar[str] = "scheme"
    #: Leaves that only the decoder reads: sweeping them reuses the coded inputs.
    decoder_fields: ClassVar[tuple[str, ...]] = ()

    def check_values(self, literal_only: bool) -> None:
        for field, strict, size in (("alpha", True, "K"), ("beta", False, "N")):
            name = f"{self.name}: {field}"
            values = check.concrete_parameter(getattr(self, field), name, literal_only)
            _check_nodes(values, name, strict)
            if values is not None and values.shape[-1] < 2:
                raise ValueError(f"{name} must hold at least 2 nodes ({size} >= 2), got "
                                 f"{values.shape[-1]}.")

    @property
    def K(self) -> int:
        return np.shape(self.alpha)[-1]

    @property
    def N(self) -> int:
        return np.shape(self.beta)[-1]

    @property
    def min_survivors(self) -> int:
        """Fewest answering workers from which every input can be estimated."""
        return 2

    def replace(self, **changes) -> Scheme:
        """A copy with some fields changed (schemes are immutable); validated like a new
        scheme. A leaf with extra leading axes makes a swept scheme for ``monte_carlo``."""
        return dataclasses.replace(self, **changes).validate()

    def encoder_view(self) -> Scheme:
        """This scheme with the decoder-only leaves unswept: what the coded inputs depend on."""
        changes = {}
        for field in dataclasses.fields(self):
            if field.name in self.decoder_fields:
                value = getattr(self, field.name)
                shape = np.shape(value)
                base = shape[len(shape) - field.metadata.get("ndim", 0):]
                changes[field.name] = jnp.zeros(base, jnp.result_type(value))
        return dataclasses.replace(self, **changes) if changes else self

    # ----------------------------------------------------------------- public API
    def encode(self, X: Float[Array, "K d"]) -> Float[Array, "N d"]:
        """Coded inputs: worker n receives row n. Follows the dtype of ``X`` (half precision
        is encoded in float32).

        Raises:
          ValueError: X is not (K, d), or (on concrete inputs) not finite.
        """
        self._require_unswept("encode")
        X = check.float_array(X, "X")
        check.check_matrix(X, self.K, "X", "K")
        coded, finite = _round.encode_compiled(self, X)
        if check.is_concrete(finite) and not bool(finite):
            check.check_finite(X, "X", " Coded computing needs finite inputs; clean or drop "
                                    "them first.")
        return coded

    def decode(
        self, Y: Float[Array, "N m"], alive: Bool[Array, " N"] | None = None
    ) -> Float[Array, "K m"]:
        """Estimates of f(x_1), ..., f(x_K) from the workers that answered.

        Args:
          Y: worker outputs, row n from worker n; rows of stragglers are ignored (any
            value). A row with a NaN or inf is an erasure: that worker counts as a
            straggler.
          alive: boolean mask, True where the worker answered; default all True.

        Returns:
          (K, m) estimates in the dtype of Y (float32 for half-precision Y). Under jit (no error can be raised), an input
          the valid results cannot determine (see ``recovered``) is estimated as 0.

        Raises:
          ValueError: Y is not (N, m); ``alive`` is not an (N,) bool mask; (on concrete
            inputs) too few valid results arrived to estimate every input (the message
            says how many are needed).
          TypeError: Y is complex, or ``alive`` is not boolean.
        """
        self._require_unswept("decode")
        Y = check.float_array(Y, "Y")
        check.check_matrix(Y, self.N, "Y", "N")
        alive = np.ones((self.N,), bool) if alive is None else check.check_mask(alive, self.N)
        estimate, used, recovered = _round.decode_compiled(self, Y, alive)
        self.check_recovered(used, recovered)
        return estimate

    @staticmethod
    def effective_mask(Y: Float[Array, "N m"], alive: Bool[Array, " N"]) -> Bool[Array, " N"]:
        """The survivor mask after non-finite rows are turned into erasures."""
        return _round.usable(jnp.asarray(Y), jnp.asarray(alive))

    def recovered(self, alive: Bool[Array, " N"],
                  Y: Float[Array, "N m"] | None = None) -> Bool[Array, " K"]:
        """Which inputs get a genuine estimate from the workers in ``alive`` (works under
        jit too). With the outputs ``Y``, a row with a NaN or inf is an erasure, as in
        ``decode``: pass Y whenever you have it, or an input whose answers are all NaN is
        reported recovered.

        An input that is not recovered is estimated as 0 wherever no error can be raised
        (``decode`` under jit, ``run_coded`` under jit, every Monte Carlo trial, where it
        counts as a failure and in the MSE); eager ``decode`` and ``run_coded`` raise.
        """
        self._require_unswept("recovered")
        alive = check.check_mask(alive, self.N)
        if Y is not None:
            Y = check.float_array(Y, "Y")
            check.check_matrix(Y, self.N, "Y", "N")
        return _round.recovery_compiled(self, alive, Y)

    def encoder_matrix(self, dtype=None) -> Float[Array, "N K"]:
        """The (N, K) matrix E with encode(X) = E @ X."""
        self._require_unswept("encoder_matrix")
        return _round.encoder_matrix_compiled(self, _dtype(self.alpha, dtype))

    def decoder_matrix(self, alive: Bool[Array, " N"], dtype=None) -> Float[Array, "K N"]:
        """The (K, N) matrix D_F with decode(Y, alive) = D_F @ Y (stragglers' columns 0)."""
        self._require_unswept("decoder_matrix")
        alive = check.check_mask(alive, self.N)
        return _round.decoder_matrix_compiled(self, alive, _dtype(self.beta, dtype))

    def check_recovered(self, used: Bool[Array, " N"], recovered: Bool[Array, " K"]) -> None:
        """Raise ``ValueError`` if, on concrete values, an input was not recovered; the
        message says how many valid results the scheme needs. No-op under tracing."""
        if not check.is_concrete(used, recovered):
            return
        recovered = np.asarray(recovered)
        if not recovered.all():
            raise ValueError(self._unrecovered_message(int(np.sum(used)),
                                                       np.flatnonzero(~recovered)))

    # ------------------------------------------------------ traced rules (kernel)
    def apply_encoder(self, X: Float[Array, "K d"]) -> Float[Array, "N d"]:
        """The encoder's linear map (traced, no validation)."""
        raise NotImplementedError

    def apply_decoder(self, Y: Float[Array, "N m"],
                      alive: Bool[Array, " N"]) -> Float[Array, "K m"]:
        """The decoder's linear map on clean outputs: stragglers' rows are zero and
        ``alive`` has no erasures (traced, no validation)."""
        raise NotImplementedError

    def apply_recovery(self, alive: Bool[Array, " N"]) -> Bool[Array, " K"]:
        """Which inputs the decoder estimates from the clean mask ``alive`` (traced): all of
        them once ``min_survivors`` distinct worker tags answered."""
        ok = jnp.sum(_distinct(self.beta, alive).astype(jnp.int32)) >= self.min_survivors
        return jnp.broadcast_to(ok, (self.K,))

    # ------------------------------------------------------------ implementation
    def _unrecovered_message(self, count: int, lost: np.ndarray) -> str:
        return (
            f"{self.name} needs at least {self.min_survivors} valid worker results to "
            f"decode K={self.K} inputs from N={self.N} workers, but only {count} arrived "
            "(non-finite outputs count as missing). Wait for more workers or use more "
            "workers / fewer stragglers."
        )

    def _require_unswept(self, method: str):
        self.validate()
        grid = _round.batch_shape(self)
        if grid:
            raise ValueError(
                f"{method}: this {self.name} scheme is a sweep (parameters with leading axes "
                f"{grid}); pass the sweep to monte_carlo / expected_loss, or map over the "
                f"values yourself, e.g. jax.vmap(lambda lam: scheme.replace(lam_dec=lam)."
                f"{method}(...))(lams)."
            )

    def _nodes(self, dtype):
        return self.alpha.astype(dtype), self.beta.astype(dtype)


def _dtype(leaf, dtype) -> np.dtype:
    """``dtype``, or by default the leaf's: a hashable static argument, real floating."""
    if dtype is None:
        return np.dtype(jnp.result_type(leaf))
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be a floating-point dtype such as jnp.float32, got "
                        f"{dtype!r}.") from None
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"dtype must be a real floating-point dtype, got {dtype}.")
    return dtype


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


@pytree_dataclass
@dataclasses.dataclass(frozen=True, eq=False)
class LeTCC(Scheme):
    """Learning-theoretic coded computing: natural cubic smoothing splines both ways.

    Encoder: the smoothing spline through (alpha_k, x_k) with ``lam_enc``, evaluated at
    the worker points. Decoder: the smoothing spline through the survivors (beta_n, y_n)
    with ``lam_dec``, evaluated at the data points. Lambdas are in mean form (see
    ``letcc_jax.smoothing_spline``); 0 means interpolation. Costs O(N m) per decode.
    ``solver`` (static) picks the spline solver: ``"auto"``, ``"sris"``, ``"blocked"``,
    ``"parallel"`` or ``"reinsch"`` (see ``letcc``).
    """

    lam_enc: Float[Array, "*batch"] = _leaf(0, default=0.0)
    lam_dec: Float[Array, "*batch"] = _leaf(0, default=0.0)
    solver: str = _static(default="auto")

    name: ClassVar[str] = "letcc"
    decoder_fields: ClassVar[tuple[str, ...]] = ("lam_dec",)

    def check_values(self, literal_only: bool) -> None:
        super().check_values(literal_only)
        for name in ("lam_enc", "lam_dec"):
            check.check_parameter(getattr(self, name), f"{self.name}: {name}",
                                  "finite and >= 0", lambda v: v >= 0, literal_only)
        if self.solver not in _spline.METHODS:
            raise ValueError(f"{self.name}: solver must be one of {_spline.METHODS}, "
                             f"got {self.solver!r}.")

    def apply_encoder(self, X):
        alpha, beta = self._nodes(X.dtype)
        return _spline.smooth(
            alpha, X, jnp.ones((self.K,), bool), jnp.asarray(self.lam_enc, X.dtype), beta,
            method=self.solver,
        )

    def apply_decoder(self, Y, alive):
        alpha, beta = self._nodes(Y.dtype)
        lam = jnp.asarray(self.lam_dec, Y.dtype)
        return _spline.smooth(beta, Y, _distinct(beta, alive), lam, alpha, method=self.solver)


@pytree_dataclass
@dataclasses.dataclass(frozen=True, eq=False)
class ResidualLeTCC(LeTCC):
    """LeTCC whose encoder matrix carries a learned residual: encode(X) = (E + R) X.

    ``residual`` is (N, K), a leaf; the decoder is LeTCC's. Still a linear code, so it
    runs through ``monte_carlo``, ``run_coded`` and the real workers unchanged. Build one
    with ``residual_letcc`` and learn R with ``tune(..., learn=(..., "residual"))``.
    """

    residual: Float[Array, "*batch N K"] = _leaf(2, default=None)

    name: ClassVar[str] = "letcc+residual"

    def check_values(self, literal_only: bool) -> None:
        super().check_values(literal_only)
        shape = np.shape(self.residual)
        values = check.concrete_parameter(self.residual, f"{self.name}: residual", literal_only)
        if values is not None and shape[-2:] != (self.N, self.K):
            raise ValueError(f"residual must have shape (N, K) = ({self.N}, {self.K}), "
                             f"got {shape}.")
        if values is not None and not np.all(np.isfinite(values)):
            raise ValueError(f"{self.name}: residual contains non-finite values.")

    @classmethod
    def from_letcc(cls, scheme: LeTCC, residual: Float[Array, "N K"] | None = None):
        """``scheme`` with a residual added to its encoder matrix (zero by default)."""
        if not isinstance(scheme, LeTCC):
            raise TypeError(f"residual_letcc extends a LeTCC scheme, got {type(scheme).__name__}.")
        if residual is None:
            residual = jnp.zeros((scheme.N, scheme.K), jnp.result_type(scheme.alpha))
        residual = check.float_array(residual, "residual")
        fields = {f.name: getattr(scheme, f.name) for f in dataclasses.fields(LeTCC)}
        return cls(**fields, residual=residual).validate()

    def apply_encoder(self, X):
        return super().apply_encoder(X) + self.residual.astype(X.dtype) @ X


class BarycentricScheme(Scheme):
    """Interpolation both ways in the barycentric form r(x) = sum_i w_i v_i / (x - z_i) /
    sum_i w_i / (x - z_i): the encoder through (alpha_k, x_k), the decoder through the
    survivors (beta_n, y_n). Members of the family differ only in their ``weights``."""

    def weights(self, nodes: Float[Array, " n"], mask: Bool[Array, " n"]) -> Float[Array, " n"]:
        """Barycentric weights of the selected nodes (0 for the others)."""
        raise NotImplementedError

    def apply_encoder(self, X):
        alpha, beta = self._nodes(X.dtype)
        w = self.weights(alpha, jnp.ones((self.K,), bool))
        return bary.interpolation_matrix(alpha, w, beta) @ X

    def apply_decoder(self, Y, alive):
        alpha, beta = self._nodes(Y.dtype)
        w = self.weights(beta, _distinct(beta, alive))
        return bary.interpolation_matrix(beta, w, alpha) @ Y


@pytree_dataclass
@dataclasses.dataclass(frozen=True, eq=False)
class BACC(BarycentricScheme):
    """Berrut approximated coded computing: Berrut's rational interpolant both ways,
    weights (-1)^i; in the decoder the signs alternate over the survivors in node order."""

    name: ClassVar[str] = "bacc"

    def weights(self, nodes, mask):
        return bary.berrut_weights(mask, nodes.dtype)


@pytree_dataclass
@dataclasses.dataclass(frozen=True, eq=False)
class LCC(BarycentricScheme):
    """Lagrange coded computing over the reals: the interpolating polynomial both ways.

    Encoder: the degree K-1 polynomial through (alpha_k, x_k). Decoder: the interpolating
    polynomial through all survivors. For f a polynomial of degree ``degree`` the worker
    results lie on a polynomial of degree (K-1)*degree, so any (K-1)*degree + 1 survivors
    recover f(x_k) exactly (in exact arithmetic); using every survivor gives the same
    polynomial with better conditioning. For non-polynomial f, or large N, polynomial
    interpolation is ill-conditioned: that failure is what BACC and LeTCC address.
    """

    degree: int = _static(default=1)

    name: ClassVar[str] = "lcc"

    def check_values(self, literal_only: bool) -> None:
        super().check_values(literal_only)
        if not check.is_int(self.degree) or self.degree < 1:
            raise ValueError(f"lcc: degree must be a positive int, got {self.degree!r}.")
        object.__setattr__(self, "degree", int(self.degree))

    @property
    def min_survivors(self) -> int:
        return (self.K - 1) * self.degree + 1

    def weights(self, nodes, mask):
        return bary.lagrange_weights(nodes, mask)


@pytree_dataclass
@dataclasses.dataclass(frozen=True, eq=False)
class Uncoded(Scheme):
    """Replication: worker n computes f(x_{n mod K}); the estimate of f(x_k) is the mean
    of its answering replicas. An input none of whose replicas answered is lost."""

    name: ClassVar[str] = "uncoded"

    def check_values(self, literal_only: bool) -> None:
        # beta repeats alpha (worker n sits at the tag of the input it copies).
        _check_nodes(check.concrete_parameter(self.alpha, f"{self.name}: alpha", literal_only),
                     f"{self.name}: alpha", strict=True)
        check.concrete_parameter(self.beta, f"{self.name}: beta", literal_only)

    @property
    def min_survivors(self) -> int:
        return self.K

    def _assignment(self, dtype):
        n = jnp.arange(self.N)
        return (n[:, None] % self.K == jnp.arange(self.K)[None, :]).astype(dtype)  # (N, K)

    def apply_encoder(self, X):
        return self._assignment(X.dtype) @ X

    def apply_decoder(self, Y, alive):
        A = self._assignment(Y.dtype) * alive[:, None].astype(Y.dtype)
        count = jnp.sum(A, axis=0)
        return (A.T @ Y) / jnp.maximum(count, 1.0)[:, None]

    def apply_recovery(self, alive):
        return jnp.any(self._assignment(bool) & alive[:, None], axis=0)

    def _unrecovered_message(self, count, lost):
        lost = lost.tolist()
        return (
            f"uncoded: no replica of input(s) {lost[:10]}{'...' if len(lost) > 10 else ''} "
            f"answered (worker n computes input n mod K={self.K}); those outputs are lost. "
            "Wait for one of their workers, or use a coded scheme."
        )


# ---------------------------------------------------------------- factories


def _check_sizes(K, N, name):
    for value, label in ((K, "K"), (N, "N")):
        if not check.is_int(value):
            raise TypeError(f"{name}: {label} must be an int, got {type(value).__name__}.")
    if K < 2:
        raise ValueError(f"{name}: K must be at least 2 data points, got K={K}.")
    if N < 2:
        raise ValueError(f"{name}: N must be at least 2 workers, got N={N}.")
    return int(K), int(N)


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
      solver: ``"auto"`` (default: Reinsch for lam = 0; for lam > 0 on a GPU or TPU the
        parallel smoother, on a CPU the square-root information smoother, in its two-level
        form for float64 from N = 20,000), ``"sris"`` (always the sequential smoother: the
        most accurate, and the fastest under vmap over many patterns on a CPU),
        ``"blocked"`` (always the two-level form: the fastest single decode on a CPU),
        ``"parallel"`` (orthogonal cyclic reduction, O(log N) sequential depth: for
        accelerators) or ``"reinsch"`` (normal equations: lose accuracy as N * lam grows).
        See ``letcc_jax.core.spline``.

    Returns:
      A ``LeTCC`` scheme: data tags ``alpha`` (K,), worker tags ``beta`` (N,) and the two
      lambdas as float32 leaves (float64 with ``jax_enable_x64``); encode and decode
      follow the dtype of their inputs.

    Raises:
      TypeError: K or N is not an int.
      ValueError: K < 2 or N < 2; a lambda that is not a finite scalar >= 0; an unknown
        ``solver`` or ``points``; explicit nodes that are not increasing in [-1, 1].

    Example:
      >>> import jax.numpy as jnp, numpy as np
      >>> import letcc_jax as lc
      >>> scheme = lc.letcc(4, 10, lam_dec=1e-6)
      >>> scheme.encode(jnp.ones((4, 3))).shape        # one coded input per worker
      (10, 3)
      >>> alive = np.arange(10) % 3 != 0                # workers 0, 3, 6, 9 straggle
      >>> scheme.decode(jnp.ones((10, 2)), alive).shape # f(x_1), ..., f(x_4)
      (4, 2)
    """
    K, N = _check_sizes(K, N, "letcc")
    check.check_lambda(lam_enc, "lam_enc")
    check.check_lambda(lam_dec, "lam_dec")
    if solver not in _spline.METHODS:
        raise ValueError(f"letcc: solver must be one of {_spline.METHODS}, got {solver!r}.")
    alpha, beta = _nodes(points, K, N)
    return LeTCC(alpha, beta, jnp.asarray(lam_enc, alpha.dtype), jnp.asarray(lam_dec, alpha.dtype),
                 solver=solver).validate()


def residual_letcc(K: int, N: int, *, residual: Float[Array, "N K"] | None = None,
                   **options) -> ResidualLeTCC:
    """LeTCC whose encoder matrix carries a residual R (N, K), zero by default: encode(X) =
    (E + R) X. ``options`` are ``letcc``'s. To extend an existing LeTCC scheme, use
    ``ResidualLeTCC.from_letcc(scheme, residual)``; ``tune(..., learn=(..., "residual"))``
    learns R.

    Raises:
      ValueError, TypeError: as ``letcc``; a residual that is not a finite real (N, K)
        array.

    Example:
      >>> import jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> scheme = lc.residual_letcc(4, 10, residual=jnp.zeros((10, 4)))
      >>> bool(jnp.allclose(scheme.encode(jnp.eye(4)), lc.letcc(4, 10).encode(jnp.eye(4))))
      True
    """
    return ResidualLeTCC.from_letcc(letcc(K, N, **options), residual)


def bacc(K: int, N: int, *, points: PointsSpec = "chebyshev") -> BACC:
    """Berrut approximated coded computing: Berrut's rational interpolant both ways, on
    Chebyshev points by default (``points`` as in ``letcc``).

    Raises:
      TypeError: K or N is not an int.
      ValueError: K < 2 or N < 2; unknown or invalid ``points``.

    Example:
      >>> import jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> scheme = lc.bacc(4, 10)
      >>> estimate = scheme.decode(scheme.encode(jnp.ones((4, 2))))  # f = identity
      >>> estimate.shape, bool(jnp.allclose(estimate, 1.0))  # constants are reproduced
      ((4, 2), True)
    """
    K, N = _check_sizes(K, N, "bacc")
    return BACC(*_nodes(points, K, N)).validate()


def lcc(K: int, N: int, *, degree: int = 1, points: PointsSpec = "chebyshev") -> LCC:
    """Lagrange coded computing: exact for a polynomial f of ``degree`` from any
    (K-1)*degree + 1 survivors (``min_survivors``); ill-conditioned for large N or a
    non-polynomial f, which is what BACC and LeTCC address.

    Raises:
      TypeError: K or N is not an int.
      ValueError: K < 2 or N < 2; ``degree`` not a positive int; N below the recovery
        threshold (K-1)*degree + 1; unknown or invalid ``points``.

    Example:
      >>> import letcc_jax as lc
      >>> lc.lcc(4, 10, degree=2).min_survivors
      7
    """
    K, N = _check_sizes(K, N, "lcc")
    if not check.is_int(degree) or degree < 1:
        raise ValueError(f"lcc: degree must be a positive int, got {degree!r}.")
    threshold = (K - 1) * degree + 1
    if N < threshold:
        raise ValueError(
            f"lcc: N={N} workers cannot reach the recovery threshold (K-1)*degree+1 = "
            f"{threshold}; use N >= {threshold}."
        )
    return LCC(*_nodes(points, K, N), degree=degree).validate()


def uncoded(K: int, N: int) -> Uncoded:
    """Uncoded replication: worker n computes f(x_{n mod K}); the estimate of f(x_k) is the
    mean of its answering replicas, and an input none of whose replicas answered is lost.

    Raises:
      TypeError: K or N is not an int.
      ValueError: K < 2 or N < 2, or N < K (an input without a worker).

    Example:
      >>> import numpy as np
      >>> import letcc_jax as lc
      >>> scheme = lc.uncoded(4, 8)                     # two replicas of every input
      >>> alive = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
      >>> np.asarray(scheme.recovered(alive)).tolist()  # the first copies suffice
      [True, True, True, True]
    """
    K, N = _check_sizes(K, N, "uncoded")
    if N < K:
        raise ValueError(
            f"uncoded: N={N} workers cannot hold K={K} inputs (each input needs a worker); "
            f"use N >= K."
        )
    # The tags are only for plotting: each worker sits at the tag of the input it copies.
    alpha, _ = resolve_points("chebyshev", K, N)
    beta = alpha[np.arange(N) % K]
    return Uncoded(jnp.asarray(alpha), jnp.asarray(beta)).validate()


#: Every scheme by name: ``make_scheme(name, K, N, **options)`` calls the factory.
SCHEMES = {"letcc": letcc, "letcc+residual": residual_letcc, "bacc": bacc, "lcc": lcc,
           "uncoded": uncoded}


def make_scheme(name: str, K: int, N: int, **options) -> Scheme:
    """Build a scheme by name: one of ``SCHEMES`` ("letcc", "letcc+residual", "bacc",
    "lcc", "uncoded"); ``options`` are that factory's keyword arguments.

    Raises:
      ValueError: an unknown name, or what the factory raises.
      TypeError: an option the factory does not take (the message lists its options).

    Example:
      >>> import letcc_jax as lc
      >>> [lc.make_scheme(name, 4, 12).name for name in ("letcc", "bacc", "uncoded")]
      ['letcc', 'bacc', 'uncoded']
    """
    try:
        factory = SCHEMES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown scheme {name!r}; choose from {sorted(SCHEMES)}.") from None
    accepted = _options(factory)
    unknown = sorted(set(options) - set(accepted)) if accepted is not None else []
    if unknown:
        raise TypeError(f"make_scheme: {name} takes no option {', '.join(unknown)}; its options "
                        f"are {', '.join(accepted) or 'none'}.")
    return factory(K, N, **options)


def _options(factory) -> list[str] | None:
    """The keyword options of a scheme factory (None if it takes any)."""
    params = list(inspect.signature(factory).parameters.values())[2:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None if factory is not residual_letcc else (
            ["residual"] + _options(letcc))
    return [p.name for p in params]
