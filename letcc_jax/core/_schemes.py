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

A scheme implements three traced rules, never validated: ``apply_encoder(X)``,
``apply_decoder(Y, alive)`` (outputs of stragglers already zeroed, ``alive`` free of
erasures) and ``apply_recovery(alive)``. The rules see the inputs in node order (row k at
alpha_k). The base class turns them into the traced semantics of one round,
``encode_report`` and ``decode_report``: every scheme may carry an ``order``, the
permutation that assigns the caller's inputs to the nodes, applied on the way in and
undone on the way out; a worker output with a NaN or inf is an erasure (``usable``); every
column reaches the rules scaled by a power of two to unit size (exact for the linear maps
that every code here is; no column underflows next to a large one, no sum overflows near
the dtype's largest value); and an
input the decoder cannot recover gets the scheme's ``fallback``. ``decode_masks`` decodes
under many survivor masks at once, in blocks that fit the cache.

The public methods (``encode``, ``decode``, ``recovered``, ``encoder_matrix``,
``decoder_matrix``) validate their arguments in Python and call a compiled function of this
module, so an eager call costs one cached dispatch.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import math
import re
import typing
from collections.abc import Callable, Sequence
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_batching import custom_vmap
from jaxtyping import Array, Bool, Float, Int

from .. import _validation as check
from .._pytree import pytree_dataclass
from . import _barycentric as bary
from . import spline as _spline
from ._points import PointsSpec, resolve_points

__all__ = ["Scheme", "LeTCC", "Posterior", "ResidualLeTCC", "BoundedLeTCC", "BarycentricScheme",
           "BACC", "LCC", "Uncoded", "letcc", "residual_letcc", "bounded_letcc", "bacc", "lcc",
           "uncoded", "make_scheme", "stack_schemes", "SCHEMES", "usable", "existing",
           "decode_masks", "decoder_matrix", "BLOCK_ELEMENTS", "field", "sweep_axes", "CONSTRAINTS",
           "register_scheme"]


#: The value rules a scheme's field can declare (``field(constraint=...)``): each is checked
#: when a scheme is built (on concrete values), and ``tune`` optimises such a leaf in an
#: unconstrained form (identity, or the log for the positive rules).
CONSTRAINTS = {
    "real": ("finite", lambda v: np.isfinite(v)),
    "nonnegative": ("finite and >= 0", lambda v: np.isfinite(v) & (v >= 0)),
    "positive": ("finite and > 0", lambda v: np.isfinite(v) & (v > 0)),
}

_MARK = "letcc_jax"  # field metadata written by ``field``, read at class creation


def field(*, ndim: int | None = None, static: bool = False, decoder: bool = False,
          per_worker: bool = False, constraint: str | None = "real",
          default=dataclasses.MISSING, kw_only=dataclasses.MISSING) -> dataclasses.Field:
    """Declare a field of a ``Scheme`` subclass: an array leaf or a static setting.

    Every field a subclass adds must be declared with ``field`` (a plain annotation is an
    error at class creation that names the field), so that the library knows how to trace,
    sweep, pad, check and tune it.

    Args:
      ndim: for an array leaf, the number of dimensions of its unswept value (0 for a
        scalar such as a smoothing parameter, 1 for a vector of nodes or per-column
        values, 2 for a matrix). A value with more dimensions is a sweep over the extra
        leading axes (see ``monte_carlo``). Required unless ``static``.
      static: a static setting instead of a leaf: hashable (a string, an int, a bool), part
        of the compiled program's key, never differentiated or swept.
      decoder: only the decoder reads this leaf, so sweeping it reuses the coded inputs
        (collected in the class's ``decoder_fields``).
      per_worker: the leaf's first unswept axis runs over the N workers (``pad_workers`` and
        ``stack_schemes`` pad it by repeating the last worker's entry).
      constraint: the rule its values follow, checked when the scheme is built: ``"real"``
        (finite, the default), ``"nonnegative"``, ``"positive"``, or None (no automatic
        check: the class's ``check_values`` checks it).
      default, kw_only: as for ``dataclasses.field``. A leaf that may be absent takes
        ``default=None``.

    Returns:
      A ``dataclasses.Field`` carrying the declaration.

    Raises:
      ValueError: an unknown ``constraint``; ``static`` with ``decoder``, ``per_worker`` or
        ``ndim``.

    Example:
      >>> import letcc_jax as lc
      >>> class Shrunk(lc.BACC):                        # BACC whose estimates shrink
      ...     shrink: float = lc.field(ndim=0, decoder=True, constraint="nonnegative",
      ...                              default=0.0, kw_only=True)
      ...     def apply_decoder(self, Y, alive):
      ...         return super().apply_decoder(Y, alive) / (1.0 + self.shrink)
      >>> scheme = Shrunk(lc.bacc(4, 10).alpha, lc.bacc(4, 10).beta, shrink=1.0)
      >>> scheme.name, scheme.decoder_fields
      ('shrunk', ('shrink',))
    """
    if constraint is not None and constraint not in CONSTRAINTS:
        raise ValueError(f"field: constraint must be one of {sorted(CONSTRAINTS)} or None, got "
                         f"{constraint!r}.")
    if static and (decoder or per_worker or ndim is not None):
        raise ValueError("field: a static field is a setting, not an array: it takes no ndim, "
                         "decoder or per_worker.")
    metadata = {_MARK: True, "static": bool(static)}
    if not static:
        metadata.update(ndim=ndim, per_worker=bool(per_worker), decoder=bool(decoder),
                        constraint=constraint)
    return dataclasses.field(default=default, kw_only=kw_only, metadata=metadata)


def _is_classvar(annotation) -> bool:
    if isinstance(annotation, str):
        return re.match(r"^\s*(typing\.)?ClassVar\b", annotation) is not None
    return annotation is ClassVar or typing.get_origin(annotation) is ClassVar


def _declare(cls) -> None:
    """Make the ``Scheme`` subclass ``cls`` a frozen dataclass and a pytree, from its fields'
    declarations (``field``); raise a TypeError naming any field not declared."""
    where = f"{cls.__module__}.{cls.__qualname__}"
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        if _is_classvar(annotation):
            continue
        value = cls.__dict__.get(name, dataclasses.MISSING)
        if not (isinstance(value, dataclasses.Field) and value.metadata.get(_MARK)):
            raise TypeError(
                f"{where}: the field {name!r} is not declared. Declare an array the scheme "
                f"computes with as {name}: ... = letcc_jax.field(ndim=...) (its unswept "
                f"number of dimensions), or a hashable setting as letcc_jax.field(static="
                f"True); a constant that is no field is a ClassVar.")
        if not value.metadata["static"]:
            ndim = value.metadata["ndim"]
            if not (isinstance(ndim, int) and not isinstance(ndim, bool) and ndim >= 0):
                raise TypeError(f"{where}: the field {name!r} needs ndim, the number of "
                                f"dimensions of its unswept value (an int >= 0), got "
                                f"{ndim!r}: letcc_jax.field(ndim=...).")
    dataclasses.dataclass(frozen=True, eq=False)(cls)
    fields = dataclasses.fields(cls)
    declared = tuple(f.name for f in fields if f.metadata.get("decoder", False))
    explicit = cls.__dict__.get("decoder_fields", ())
    names = tuple(dict.fromkeys(tuple(explicit) + declared))
    unknown = [n for n in names if n not in {f.name for f in fields}]
    if unknown:
        raise TypeError(f"{where}: decoder_fields names {unknown}, which are no fields.")
    cls.decoder_fields = names
    if "name" not in cls.__dict__:
        cls.name = cls.__name__.lower()
    pytree_dataclass(cls)


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


def _check_order(order, K: int, name: str) -> None:
    """An integer permutation of 0..K-1 along the last axis (checked when concrete)."""
    if order is None or isinstance(order, jax.core.Tracer):
        return
    values = check.concrete_values(order)
    if values is None or values.dtype == np.bool_ or not np.issubdtype(values.dtype, np.integer):
        what = f"dtype {values.dtype}" if values is not None else type(order).__name__
        raise TypeError(f"{name} must be an integer permutation of 0..K-1 (e.g. from "
                        f"letcc_jax.order_inputs), got {what}.")
    if values.ndim < 1 or values.shape[-1] != K:
        raise ValueError(f"{name} must have shape (K,) = ({K},), one node per input, got "
                         f"{values.shape}.")
    rows = values.reshape(-1, K)
    bad = ~np.all(np.sort(rows, axis=1) == np.arange(K), axis=1)
    if bad.any():
        row = rows[np.flatnonzero(bad)[0]]
        missing = np.setdiff1d(np.arange(K), row)[:5].tolist()
        raise ValueError(f"{name} must be a permutation of 0..K-1 (every input assigned to "
                         f"exactly one node); inputs {missing} have no node.")


@dataclasses.dataclass(frozen=True, eq=False)
class Scheme(check.Checked):
    """Base class of every coding scheme: the validated entry points and the erasure semantics.

    A scheme is an immutable pytree made by a factory (``letcc``, ``bacc``, ``lcc``,
    ``uncoded``, ``residual_letcc``, ``make_scheme``). Its numeric fields are leaves: a
    leaf with extra leading axes is a sweep, which ``monte_carlo`` and ``expected_loss``
    evaluate on every grid point, while ``encode``, ``decode`` and the other per-round
    methods need an unswept scheme.

    Attributes:
      alpha (jax.Array): (K,) float data tags in [-1, 1], strictly ascending, K >= 2
        (``(*batch, K)`` in a sweep).
      beta (jax.Array): (N,) float worker tags in [-1, 1], ascending, N >= 2; workers may
        share a tag (they then compute the same coded input, and the decoder uses the
        first that answered). ``(*batch, N)`` in a sweep.
      order (jax.Array | None): (K,) int permutation of 0..K-1, or None (the identity):
        input ``order[k]`` (in the caller's order) is assigned to the node ``alpha[k]``.
        ``encode`` takes and ``decode`` returns the inputs in the caller's order; the
        order only decides which input sits where on the encoder's curve, which is what
        makes that curve smooth or rough (see ``order_inputs``). An integer leaf:
        differentiate the float leaves only (``jax.grad(..., allow_int=True)``).
        ``(*batch, K)`` in a sweep over orders.
      fallback (jax.Array | None): (m,) float estimate of an input the valid results
        cannot determine (see ``recovered``), e.g. the mean output on calibration data;
        None estimates such an input as 0. ``(*batch, m)`` in a sweep.
      workers (jax.Array | None): how many of the N workers exist, an int in [2, N], or
        None (all N). The first ``workers`` tags are the scheme's; the rest are padding,
        workers that never answer (a decode ignores them whatever ``alive`` says, and the
        straggler and fault models draw among the existing workers only). Set by
        ``pad_workers`` and ``stack_schemes``, which pads schemes of different N to one
        shape: a sweep over N in one compiled program. ``(*batch,)`` in a sweep.

    Example:
      >>> import numpy as np
      >>> import letcc_jax as lc
      >>> scheme = lc.letcc(4, 10)                      # every factory returns a Scheme
      >>> isinstance(scheme, lc.Scheme), scheme.K, scheme.N, scheme.min_survivors
      (True, 4, 10, 2)
      >>> alive = np.arange(10) == 9                    # one answer is not enough
      >>> np.asarray(scheme.recovered(alive)).tolist()
      [False, False, False, False]
    """

    alpha: Float[Array, "*batch K"] = field(ndim=1, constraint=None)
    beta: Float[Array, "*batch N"] = field(ndim=1, per_worker=True, constraint=None)
    order: Int[Array, "*batch K"] | None = field(ndim=1, constraint=None, default=None,
                                                 kw_only=True)
    fallback: Float[Array, "*batch m"] | None = field(ndim=1, constraint=None, default=None,
                                                      kw_only=True)
    workers: Int[Array, "*batch"] | None = field(ndim=0, constraint=None, default=None,
                                                 kw_only=True)

    name: ClassVar[str] = "scheme"
    #: The names of the leaves only the decoder reads (besides ``fallback``, which every
    #: scheme's decoder alone reads); sweeping them reuses the coded inputs. Collected from
    #: the fields declared with ``field(decoder=True)``.
    decoder_fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        # Every subclass is a frozen dataclass and a pytree whose structure holds its class
        # (``letcc_jax._pytree``), built from its fields' declarations (``field``).
        super().__init_subclass__(**kwargs)
        _declare(cls)

    def __post_init__(self):
        self.validate()

    def validate(self):
        """Check every concrete value (once per object); returns the object."""
        if not self.__dict__.get("_validated", False):
            self._check_fields(traced=True)
            self.check_values()
            self._check_fields()
            object.__setattr__(self, "_validated", True)
        return self

    def _check_fields(self, traced: bool = False) -> None:
        """The declared rules of every leaf (``field``): its rank, and its ``constraint`` on
        concrete values. With ``traced``, the ranks of the traced leaves only, before any
        other check reads a shape: a ``jax.vmap`` that maps an axis a leaf does not sweep
        leaves it too few."""
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if spec.metadata.get("static", False):
                continue
            if traced and not isinstance(value, jax.core.Tracer):
                continue
            if value is None:
                if spec.default is None:  # an optional leaf, absent
                    continue
                raise TypeError(f"{self.name}: {spec.name} must be a real number or array, "
                                f"got None.")
            if not isinstance(value, (jax.Array, jax.core.Tracer, np.ndarray, np.generic,
                                      int, float)):
                continue  # not an array: the constraint's type check below says so
            ndim, shape = spec.metadata.get("ndim", 0), np.shape(value)
            if len(shape) < ndim:
                where = (" Inside jax.vmap this means an axis was mapped that it does not "
                         "sweep: map a swept scheme with in_axes=letcc_jax.sweep_axes(scheme), "
                         "which maps the sweep axes only."
                         if isinstance(value, jax.core.Tracer) else "")
                raise ValueError(f"{self.name}: {spec.name} must have at least {ndim} "
                                 f"dimension(s) (more: a sweep), got shape {shape}.{where}")
        if traced:
            return
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            constraint = spec.metadata.get("constraint")
            if value is not None and constraint is not None:
                rule, ok = CONSTRAINTS[constraint]
                check.check_parameter(value, f"{self.name}: {spec.name}", rule, ok)

    def check_values(self) -> None:
        for field, strict, size in (("alpha", True, "K"), ("beta", False, "N")):
            name = f"{self.name}: {field}"
            values = check.concrete_parameter(getattr(self, field), name)
            _check_nodes(values, name, strict)
            if values is not None and values.shape[-1] < 2:
                raise ValueError(f"{name} must hold at least 2 nodes ({size} >= 2), got "
                                 f"{values.shape[-1]}.")
        self._check_order_and_fallback()

    def _check_order_and_fallback(self) -> None:
        _check_order(self.order, self.K, f"{self.name}: order")
        if self.workers is not None:
            name = f"{self.name}: workers"
            values = None if isinstance(self.workers, jax.core.Tracer) else \
                check.concrete_values(self.workers)
            if values is not None and (values.dtype == np.bool_
                                       or not np.issubdtype(values.dtype, np.integer)
                                       or (values.size and (values.min() < 2
                                                            or values.max() > self.N))):
                raise ValueError(f"{name} must be an int in [2, N] = [2, {self.N}] (or an "
                                 f"integer array of them, a sweep), got {self.workers!r}.")
        if self.fallback is not None:
            name = f"{self.name}: fallback"
            values = check.concrete_parameter(self.fallback, name)
            if values is not None and values.ndim < 1:
                raise ValueError(f"{name} must be an (m,) array, one value per output column, "
                                 f"got shape {values.shape}.")
            if values is not None and not np.all(np.isfinite(values)):
                raise ValueError(f"{name} contains non-finite values.")

    @property
    def K(self) -> int:
        """K, the number of data points (the size of the last axis of ``alpha``)."""
        return np.shape(self.alpha)[-1]

    @property
    def N(self) -> int:
        """N, the number of workers (the size of the last axis of ``beta``)."""
        return np.shape(self.beta)[-1]

    @property
    def min_survivors(self) -> int:
        """Fewest valid worker results from which every input can be estimated.

        2 for LeTCC and BACC, (K-1)*degree + 1 for LCC, and K for replication (which
        also needs an answering replica of every input, see ``recovered``).
        """
        return 2

    def replace(self, **changes) -> Scheme:
        """A copy with some fields changed (schemes are immutable), validated like a new one.

        A leaf with extra leading axes makes a swept scheme for ``monte_carlo`` and
        ``expected_loss``, e.g. ``scheme.replace(lam_dec=jnp.logspace(-9, 0, 26))``.

        Args:
          **changes: field name -> new value, e.g. ``lam_dec=1e-4`` or ``beta=nodes``.

        Returns:
          A scheme of the same type.

        Raises:
          TypeError: a name that is not a field of the scheme; a value that is not a real
            number or array (a string, None).
          ValueError: a value that breaks the field's rule (a negative or non-finite
            lambda, nodes that are not ascending, fewer than 2 nodes, an unknown
            ``solver``).
        """
        return dataclasses.replace(self, **changes)

    def encoder_view(self) -> Scheme:
        """This scheme with the decoder-only leaves unswept: what the coded inputs depend on.

        Returns:
          A scheme of the same type whose ``decoder_fields`` and ``fallback`` are replaced
          by zeros of their unswept shape (the scheme itself when it has none).
        """
        changes = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is not None and field.name in self.decoder_fields + ("fallback",):
                shape = np.shape(value)
                base = shape[len(shape) - field.metadata.get("ndim", 0):]
                changes[field.name] = jnp.zeros(base, jnp.result_type(value))
        if not changes:
            return self
        # placeholders, not parameters: set without the constructor's checks (a zero where
        # a field's rule says positive), as JAX rebuilds pytrees
        view = copy.copy(self)
        for name, value in changes.items():
            object.__setattr__(view, name, value)
        return view

    # ----------------------------------------------------------------- public API
    def encode(self, X: Float[Array, "K d"]) -> Float[Array, "N d"]:
        """Coded inputs: worker n receives row n.

        Args:
          X: (K, d) real inputs, one row per data point (integers and booleans are
            promoted to the default float).

        Returns:
          (N, d) coded inputs in the dtype of ``X`` (float32 for half-precision X).

        Raises:
          ValueError: X is not (K, d) with d >= 1; (on concrete inputs) X is not finite;
            the scheme is a sweep.
          TypeError: X is complex, a string or None.
        """
        self._require_unswept("encode")
        X = check.float_array(X, "X")
        check.check_matrix(X, self.K, "X", "K")
        coded, finite = _encode(self, X)
        if check.is_concrete(finite) and not bool(finite):
            check.check_finite(X, "X", " Coded computing needs finite inputs; clean or drop "
                                    "them first.")
        return coded

    def decode(
        self, Y: Float[Array, "N m"], alive: Bool[Array, " N"] | None = None
    ) -> Float[Array, "K m"]:
        """Estimates of f(x_1), ..., f(x_K) from the workers that answered.

        Args:
          Y: (N, m) float worker outputs, row n from worker n; rows of stragglers are
            ignored (any value). A row with a NaN or inf is an erasure: that worker counts
            as a straggler.
          alive: (N,) bool mask, True where the worker answered; default all True.

        Returns:
          (K, m) estimates in the dtype of Y (float32 for half-precision Y). An input the
          valid results cannot determine (see ``recovered``) is estimated by the scheme's
          ``fallback``; without one it is an error, or 0 under jit (where no error can be
          raised).

        Raises:
          ValueError: Y is not (N, m); ``alive`` is not of shape (N,); (on concrete
            inputs, without a ``fallback``) too few valid results arrived to estimate every
            input (the message says how many are needed); the scheme is a sweep; a
            ``fallback`` whose size is not m.
          TypeError: Y is complex, or ``alive`` is not boolean.
        """
        Y, alive = self._round_args(Y, alive, "decode")
        estimate, used, recovered = _decode(self, Y, alive)
        self.check_recovered(used, recovered)
        return estimate

    def _round_args(self, Y, alive, method: str):
        """The checked arguments of a one-round call (``decode``, ``posterior``): Y as a
        float (N, m) array, the (N,) mask (all True for None)."""
        self._require_unswept(method)
        Y = check.float_array(Y, "Y")
        check.check_matrix(Y, self.N, "Y", "N")
        self.check_fallback(Y.shape[1])
        return Y, np.ones((self.N,), bool) if alive is None else check.check_mask(alive, self.N)

    @staticmethod
    def effective_mask(Y: Float[Array, "N m"], alive: Bool[Array, " N"]) -> Bool[Array, " N"]:
        """The survivor mask after non-finite rows are turned into erasures.

        A traced helper without validation (the shapes are not checked).

        Args:
          Y: (N, m) float worker outputs.
          alive: (N,) bool mask of the workers that answered.

        Returns:
          (N,) bool: ``alive`` and every entry of the worker's row of Y finite.
        """
        return usable(jnp.asarray(Y), jnp.asarray(alive))

    def recovered(self, alive: Bool[Array, " N"],
                  Y: Float[Array, "N m"] | None = None) -> Bool[Array, " K"]:
        """Which inputs get a genuine estimate from the workers in ``alive`` (works under
        jit too). With the outputs ``Y``, a row with a NaN or inf is an erasure, as in
        ``decode``: pass Y whenever you have it, or an input whose answers are all NaN is
        reported recovered.

        An input that is not recovered is estimated by the scheme's ``fallback`` (0 without
        one) wherever no error can be raised (``decode`` under jit, ``run_coded`` under jit,
        every Monte Carlo trial, where it counts as a failure and in the MSE); eager
        ``decode`` and ``run_coded`` raise unless the scheme has a ``fallback``.

        Args:
          alive: (N,) bool mask, True where the worker answered.
          Y: optional (N, m) float worker outputs; their non-finite rows are erasures.

        Returns:
          (K,) bool, True for the inputs with a genuine estimate.

        Raises:
          ValueError: ``alive`` is not of shape (N,); Y is not (N, m); the scheme is a
            sweep.
          TypeError: ``alive`` is not boolean; Y is complex.
        """
        self._require_unswept("recovered")
        alive = check.check_mask(alive, self.N)
        if Y is not None:
            Y = check.float_array(Y, "Y")
            check.check_matrix(Y, self.N, "Y", "N")
        return _recovered(self, alive, Y)

    def encoder_matrix(self, dtype=None) -> Float[Array, "N K"]:
        """The (N, K) matrix E with encode(X) = E @ X.

        Args:
          dtype: a real floating dtype; default the dtype of ``alpha``.

        Returns:
          (N, K) array of that dtype; half precision (float16, bfloat16) gives float32,
          the precision ``encode`` computes in for half-precision data.

        Raises:
          TypeError: ``dtype`` is not a real floating-point dtype.
          ValueError: the scheme is a sweep.
        """
        self._require_unswept("encoder_matrix")
        return _encoder_matrix(self, _dtype(self.alpha, dtype))

    def decoder_matrix(self, alive: Bool[Array, " N"], dtype=None) -> Float[Array, "K N"]:
        """The (K, N) matrix D_F with decode(Y, alive) = D_F @ Y (stragglers' columns 0).

        Unlike ``decode`` it raises no error when ``alive`` cannot determine an input: the
        row of such an input is 0 (see ``recovered``).

        Args:
          alive: (N,) bool mask, True where the worker answered.
          dtype: a real floating dtype; default the dtype of ``beta``.

        Returns:
          (K, N) array of that dtype; half precision (float16, bfloat16) gives float32,
          the precision ``decode`` computes in for half-precision outputs.

        Raises:
          TypeError: ``alive`` is not boolean; ``dtype`` is not a real floating-point
            dtype.
          ValueError: ``alive`` is not of shape (N,); the scheme is a sweep.
        """
        self._require_unswept("decoder_matrix")
        if not self.linear:
            raise ValueError(f"decoder_matrix: this {self.name} scheme's decoder is not linear "
                             f"({self._nonlinear_reason()}), so it has no decoder matrix.")
        alive = check.check_mask(alive, self.N)
        return _decoder_matrix(self, alive, _dtype(self.beta, dtype))

    def check_recovered(self, used: Bool[Array, " N"], recovered: Bool[Array, " K"]) -> None:
        """Raise if, on concrete values, an input was not recovered and the scheme has no
        ``fallback`` to estimate it by; no-op under tracing.

        Args:
          used: (N,) bool mask of the valid results the decoder used.
          recovered: (K,) bool, which inputs got a genuine estimate (``recovered``).

        Raises:
          ValueError: some entry of ``recovered`` is False and ``fallback`` is None; the
            message says how many valid results the scheme needs (or, for replication,
            which inputs lost every replica).
        """
        if self.fallback is not None or not check.is_concrete(used, recovered):
            return
        recovered = np.asarray(recovered)
        if not recovered.all():
            raise ValueError(self._unrecovered_message(int(np.sum(used)),
                                                       np.flatnonzero(~recovered)))

    def check_fallback(self, m: int) -> None:
        """Raise unless ``fallback`` is None or has m entries, one per output column.

        Args:
          m: the number of output columns.

        Raises:
          ValueError: ``fallback`` does not have shape ``(*batch, m)``.
        """
        if self.fallback is not None and np.shape(self.fallback)[-1:] != (m,):
            raise ValueError(f"{self.name}: fallback has shape {np.shape(self.fallback)} but "
                             f"the outputs have m={m} columns; give one value per column.")

    @property
    def linear(self) -> bool:
        """Whether the decoder is a linear map of the outputs (it then has a
        ``decoder_matrix``; every scheme but replication by median is)."""
        return True

    def _nonlinear_reason(self) -> str:
        return "it is not a linear map of the outputs"

    # ------------------------------------------------------ traced rules (kernel)
    def to_node_order(self, X: Float[Array, "K ..."]) -> Float[Array, "K ..."]:
        """Rows of X (in the caller's order) in node order: row k is the input assigned to
        ``alpha[k]`` (traced; the identity without an ``order``)."""
        if self.order is None:
            return X
        return X[jnp.asarray(self.order).astype(jnp.int32)]

    def to_input_order(self, V: Float[Array, "K ..."]) -> Float[Array, "K ..."]:
        """The inverse of ``to_node_order``: rows in node order back in the caller's order
        (traced)."""
        if self.order is None:
            return V
        return jnp.zeros_like(V).at[jnp.asarray(self.order).astype(jnp.int32)].set(V)

    def apply_encoder(self, X: Float[Array, "K d"]) -> Float[Array, "N d"]:
        """The encoder's linear map (traced, no validation): what ``encode`` computes.

        Args:
          X: (K, d) float inputs in node order (row k at ``alpha[k]``).

        Returns:
          (N, d) coded inputs in the dtype of X.
        """
        raise NotImplementedError

    def apply_decoder(self, Y: Float[Array, "N m"],
                      alive: Bool[Array, " N"]) -> Float[Array, "K m"]:
        """The decoder's linear map on clean outputs (traced, no validation).

        Args:
          Y: (N, m) float outputs whose stragglers' rows are zero.
          alive: (N,) bool mask without erasures (every alive row of Y is finite).

        Returns:
          (K, m) estimates in node order, in the dtype of Y (meaningful where
          ``apply_recovery`` is True).
        """
        raise NotImplementedError

    def apply_recovery(self, alive: Bool[Array, " N"]) -> Bool[Array, " K"]:
        """Which inputs the decoder estimates from the clean mask ``alive`` (traced).

        By default all of them once ``min_survivors`` distinct worker tags answered.

        Args:
          alive: (N,) bool mask without erasures.

        Returns:
          (K,) bool, in node order.
        """
        ok = jnp.sum(_distinct(self.beta, alive).astype(jnp.int32)) >= self.min_survivors
        return jnp.broadcast_to(ok, (self.K,))

    # ------------------------------------------------- one round (traced semantics)
    def encode_report(self, X: Float[Array, "K d"]) -> tuple[Float[Array, "N d"],
                                                             Bool[Array, ""]]:
        """The coded inputs and whether every input is finite (traced, no validation).

        Args:
          X: (K, d) float inputs in the caller's order.

        Returns:
          ``(coded, finite)``: (N, d) coded inputs in the dtype of X, and a bool scalar
          (``encode`` raises on it where it can).
        """
        # Each column at unit size by a power of two (exact; the map is linear), so that no
        # sum overflows near the dtype's largest value nor a small column underflows.
        v = _spline.column_scale(X, jnp.ones(X.shape[:1], bool))
        coded = _spline.from_unit(self.apply_encoder(self.to_node_order(X * v)), v)
        return coded, jnp.all(jnp.isfinite(X))

    def decode_report(self, Y: Float[Array, "N m"], alive: Bool[Array, " N"]) -> tuple[
            Float[Array, "K m"], Bool[Array, " N"], Bool[Array, " K"]]:
        """One round's decode with what it used (traced, no validation): what ``decode``,
        ``run_coded``, every Monte Carlo trial and the worker backends compute.

        A worker row with a NaN or inf is an erasure (``usable``); the other rows of
        non-answering workers are zeroed before the decoder sees them, so that no NaN
        reaches an estimate even through a zero weight. An input the survivors cannot
        determine (``apply_recovery``) gets the ``fallback`` (0 without one).

        Args:
          Y: (N, m) float worker outputs (any value in a straggler's row).
          alive: (N,) bool, the workers that answered.

        Returns:
          ``(estimate, used, recovered)``: (K, m) estimates in the caller's order, the (N,)
          mask of the results used, and the (K,) inputs with a genuine estimate.
        """
        used = self.present(usable(Y, alive))
        estimate, recovered = self.decode_linear(Y, used)
        if self.fallback is not None:
            estimate = jnp.where(recovered[:, None], estimate,
                                 self.fallback.astype(estimate.dtype))
        return estimate, used, recovered

    def decode_linear(self, Y: Float[Array, "N m"], used: Bool[Array, " N"]) -> tuple[
            Float[Array, "K m"], Bool[Array, " K"]]:
        """The decoder's linear map under the clean mask ``used`` (traced, no validation):
        estimates in the caller's order, 0 for an input ``used`` cannot determine (below
        its threshold a decoder would extrapolate, as LCC does, or repeat one survivor for
        every input), no fallback. ``decoder_matrix`` is this map.

        Args:
          Y: (N, m) float outputs; rows outside ``used`` are ignored (any value).
          used: (N,) bool mask without erasures (every row it selects is finite).

        Returns:
          ``(estimate, recovered)``: (K, m) and (K,) bool.
        """
        used = self.present(used)
        recovered = self.to_input_order(self.apply_recovery(used))
        clean = jnp.where(used[:, None], Y, jnp.zeros((), Y.dtype))
        # Each column at unit size by a power of two, as in ``encode_report``.
        v = _spline.column_scale(clean, used)
        estimate = self.to_input_order(_spline.from_unit(self.apply_decoder(clean * v, used), v))
        return jnp.where(recovered[:, None], estimate, jnp.zeros((), estimate.dtype)), recovered

    def pad_workers(self, N: int) -> Scheme:
        """This scheme with N workers: the workers beyond its own never answer.

        Its per-worker leaves (``beta``; ``residual``) repeat its last worker up to N, and
        ``workers`` records how many exist (see ``Scheme.workers``): every decode, and in
        ``monte_carlo`` every straggler and fault draw, is what the unpadded scheme gives
        (to round-off). Schemes of different N padded to one N share one compiled program,
        each call with its own key; ``stack_schemes`` stacks them into one sweep instead.
        A swept scheme is padded along its workers' axis.

        Args:
          N: the padded number of workers, an int >= the scheme's N.

        Returns:
          A scheme of the same type with N workers and ``workers`` set (kept, if already).

        Raises:
          ValueError: N is not an int at least the scheme's N.

        Example:
          >>> import letcc_jax as lc
          >>> padded = lc.letcc(4, 10).pad_workers(16)
          >>> padded.N, int(padded.workers)
          (16, 10)
        """
        self.validate()
        if not check.is_int(N) or N < self.N:
            raise ValueError(f"pad_workers: N must be an int >= the scheme's N = {self.N}, "
                             f"got {N!r}.")
        changes = {"workers": jnp.asarray(self.N if self.workers is None else self.workers,
                                          jnp.int32)}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is not None and field.metadata.get("per_worker", False):
                value = jnp.asarray(value)
                axis = value.ndim - field.metadata["ndim"]
                extra = jnp.take(value, jnp.asarray([value.shape[axis] - 1]), axis=axis)
                reps = [1] * value.ndim
                reps[axis] = int(N) - value.shape[axis]
                changes[field.name] = jnp.concatenate([value, jnp.tile(extra, reps)], axis=axis)
        return dataclasses.replace(self, **changes)

    def check_unpadded(self, caller: str) -> None:
        """Raise unless all N workers exist (``workers`` is None): for the calls that do
        not take padding (GCV, the adversary search, exact losses, calibration,
        real workers).

        Args:
          caller: the public function's name, for the message.

        Raises:
          ValueError: the scheme is padded.
        """
        if self.workers is not None:
            raise ValueError(f"{caller} takes a scheme whose N workers all exist; this {self.name} "
                             "scheme is padded (workers set by pad_workers or stack_schemes, "
                             "for monte_carlo, expected_loss, select_lambda, tune and "
                             "worst_stragglers). Pass the unpadded scheme.")

    def present(self, mask: Bool[Array, " N"]) -> Bool[Array, " N"]:
        """``mask`` without the padding workers (see ``workers``); ``mask`` itself when
        every worker exists. Traced, no validation.

        Args:
          mask: (N,) bool, e.g. the workers that answered.

        Returns:
          (N,) bool, False from worker ``workers`` on.
        """
        return existing(mask, self.workers)

    @property
    def swept(self) -> bool:
        """Whether a leaf carries sweep axes (a scheme for ``monte_carlo`` and
        ``expected_loss``, not for the per-round methods)."""
        return bool(self._leading_axes())

    def _leading_axes(self) -> tuple[tuple[int, ...], ...]:
        """The leading (sweep) axes of every leaf that has them; () for an unswept scheme."""
        found = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is not None and not field.metadata.get("static", False):
                shape = np.shape(value)
                lead = shape[:max(0, len(shape) - field.metadata.get("ndim", 0))]
                if lead:
                    found.append(lead)
        return tuple(found)

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
        swept = {}
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if value is not None and not spec.metadata.get("static", False):
                if np.ndim(value) > spec.metadata.get("ndim", 0):
                    swept[spec.name] = (np.shape(value), spec.metadata.get("ndim", 0))
        if swept:
            what = ", ".join(f"{name} of shape {shape} (unswept: {ndim} dimension(s))"
                             for name, (shape, ndim) in swept.items())
            raise ValueError(
                f"{method}: this {self.name} scheme is a sweep ({what}). Pass the sweep to "
                f"monte_carlo / expected_loss, or map {method} over it with jax.vmap(lambda "
                f"s: s.{method}(...), in_axes=(letcc_jax.sweep_axes(scheme),))(scheme). (A "
                f"field declared with too small an ndim reads as a sweep too: "
                f"letcc_jax.field(ndim=...).)"
            )

    def _nodes(self, dtype):
        return self.alpha.astype(dtype), self.beta.astype(dtype)


def sweep_axes(tree):
    """``jax.vmap``'s ``in_axes`` for mapping over the first sweep axis of swept schemes (or
    any dataclass pytree that declares its leaves' ranks, such as the straggler and fault
    models): 0 for every leaf that has the sweep's leading axes, None for the others.

    ``jax.vmap(fn)(swept)`` maps every leaf along axis 0, the unswept ones too (the nodes,
    a scalar lambda), which JAX refuses (a rank error, or inconsistent sizes) or, worse,
    maps a node axis of matching size. Nest one ``vmap`` per axis for a grid of several.

    Args:
      tree: a scheme, a model, or a pytree of them and other values (those get None).

    Returns:
      A pytree of ``tree``'s structure, with 0 or None for each of its leaves.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> sweep = lc.letcc(4, 10).replace(lam_dec=jnp.array([0.0, 1e-3, 1e-1]))
      >>> Y = jnp.sin(3 * sweep.beta)[:, None]
      >>> decode = jax.vmap(lambda s: s.decode(Y), in_axes=(lc.sweep_axes(sweep),))
      >>> decode(sweep).shape                              # one decode per lambda
      (3, 4, 1)
    """
    def declares(node) -> bool:  # a dataclass pytree (a leaf's rank: its "ndim", else 0)
        return dataclasses.is_dataclass(node) and not isinstance(node, type) and not (
            jax.tree_util.treedef_is_leaf(jax.tree.structure(node)))

    def axes(node):
        if not declares(node):
            return None
        fields = [f for f in dataclasses.fields(node)
                  if f.init and not f.metadata.get("static", False)]
        leads = [np.shape(getattr(node, f.name))[:max(0, np.ndim(getattr(node, f.name))
                                                      - f.metadata.get("ndim", 0))]
                 for f in fields if getattr(node, f.name) is not None]
        rank = max((len(lead) for lead in leads), default=0)
        values = [None if rank == 0 or len(lead) < rank else 0 for lead in leads]
        return jax.tree.unflatten(jax.tree.structure(node), values)

    return jax.tree.map(axes, tree, is_leaf=declares)


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
    if jnp.finfo(dtype).bits < 32:  # half precision: float32, as encode and decode compute
        return np.dtype(np.float32)
    return dtype


def _distinct(nodes: Float[Array, " n"], alive: Bool[Array, " n"]) -> Bool[Array, " n"]:
    """``alive`` without the nodes that coincide with the previous alive node.

    Equal nodes, or distinct float64 nodes rounded to one value in a lower precision
    (Chebyshev points near +-1 for N in the tens of thousands in float32: the barycentric
    schemes' float32 nodes, and LeTCC's when the leaves themselves are float32, with
    jax_enable_x64 off); an interpolant through two values at one point is undefined, so
    the first result at that point is kept.
    """
    n = nodes.shape[0]
    last = jax.lax.cummax(jnp.where(alive, jnp.arange(n), -1))
    prev = jnp.concatenate([jnp.full((1,), -1, last.dtype), last[:-1]])
    same = (prev >= 0) & (nodes[jnp.maximum(prev, 0)] == nodes)
    return alive & ~same


def existing(mask: Bool[Array, " N"], n) -> Bool[Array, " N"]:
    """``mask`` without the padding workers from worker ``n`` on (``Scheme.workers``; an
    int, possibly traced), or ``mask`` itself when ``n`` is None."""
    if n is None:
        return mask
    return mask & (jnp.arange(mask.shape[0], dtype=jnp.int32) < jnp.asarray(n, jnp.int32))


def usable(Y: Float[Array, "N m"], alive: Bool[Array, " N"]) -> Bool[Array, " N"]:
    """The erasure rule: the survivor mask without the rows that hold a NaN or inf."""
    return alive & jnp.all(jnp.isfinite(Y), axis=1)


# ------------------------------------------------------ many masks, in cache blocks

#: Elements of one pattern's outputs that a vmapped block should hold in all: 64
#: patterns at N = 200, m = 10 (measured fastest on a CPU).
BLOCK_ELEMENTS = 1 << 17


def _in_cache_blocks(fn: Callable, per_item: Callable[..., int]) -> Callable:
    """``fn``, except that under ``vmap`` on a CPU the batch runs in blocks that fit in the
    cache (``lax.map`` with ``batch_size``): one huge vmapped batch streams every
    intermediate through memory. ``per_item(*args)`` is the size of one item's working
    set. Derivatives follow ``fn`` itself."""

    @custom_vmap
    def blocked(*args):
        return fn(*args)

    @blocked.def_vmap
    def _(axis_size, in_batched, *args):
        block = max(1, BLOCK_ELEMENTS // max(per_item(*args), 1))
        flags = jax.tree.leaves(in_batched)
        if axis_size <= block or jax.default_backend() != "cpu":
            in_axes = tuple(jax.tree.map(lambda b: 0 if b else None, in_batched))
            out = jax.vmap(fn, in_axes=in_axes)(*args)
        else:
            leaves, treedef = jax.tree.flatten(args)
            batched = [leaf for leaf, b in zip(leaves, flags) if b]

            def item(xs):
                it = iter(xs)
                full = [next(it) if b else leaf for leaf, b in zip(leaves, flags)]
                return fn(*jax.tree.unflatten(treedef, full))

            out = lax.map(item, batched, batch_size=block)
        return out, jax.tree.map(lambda _: True, out)

    differentiable = jax.custom_jvp(blocked)
    differentiable.defjvp(lambda primals, tangents: jax.jvp(fn, primals, tangents))
    return differentiable


def _pattern_size(scheme, Y, alive) -> int:
    return math.prod(np.shape(Y)[-2:])


_decode_one = _in_cache_blocks(lambda scheme, Y, alive: scheme.decode_report(Y, alive),
                               _pattern_size)
_linear_one = _in_cache_blocks(lambda scheme, Y, alive: scheme.decode_linear(Y, alive),
                               _pattern_size)


@functools.partial(jax.jit, static_argnames="linear")
def decode_masks(scheme: Scheme, Y: Float[Array, "*P N m"], masks: Bool[Array, "P N"], *,
                 linear: bool = False):
    """``scheme.decode_report`` under each of P survivor masks: one program for every caller
    that decodes many patterns (worst-case searches, deadlines, decoder matrices), run in
    cache-sized blocks on a CPU. Traced, no validation.

    Args:
      scheme: an unswept scheme.
      Y: (N, m) outputs shared by every mask, or (P, N, m), one set per mask.
      masks: (P, N) bool survivor masks.
      linear: return the decoder's linear map instead: no erasures (``masks`` are taken
        as clean), and 0, not the fallback, for an input a mask cannot determine.

    Returns:
      ``(estimate, used, recovered)`` stacked over the masks: (P, K, m), (P, N) and (P, K);
      with ``linear``, ``(estimate, recovered)``.
    """
    one = _linear_one if linear else _decode_one
    return jax.vmap(one, in_axes=(None, 0 if Y.ndim == 3 else None, 0))(scheme, Y, masks)


# ---------------------------------------------------- compiled per-round programs
# Module-level jits: their caches (on the scheme's type and static fields, shapes and
# dtypes) are what makes eager calls of the public methods cheap.


@jax.jit
def _encode(scheme, X):
    return scheme.encode_report(X)


@jax.jit
def _decode(scheme, Y, alive):
    return _decode_one(scheme, Y, alive)


@jax.jit
def _posterior(scheme, Y, alive, scale):
    return scheme.posterior_report(Y, alive, scale)


@jax.jit
def _recovered(scheme, alive, Y=None):
    used = scheme.present(alive if Y is None else usable(Y, alive))
    return scheme.to_input_order(scheme.apply_recovery(used))


@functools.partial(jax.jit, static_argnames="dtype")
def _encoder_matrix(scheme, dtype):
    return scheme.encode_report(jnp.eye(scheme.K, dtype=dtype))[0]


def decoder_matrix(scheme: Scheme, alive: Bool[Array, " N"], dtype) -> Float[Array, "K N"]:
    """The (K, N) decoder matrix under ``alive`` (traced, no validation): the decoder's
    linear map applied to the unit outputs, through ``decode_masks``."""
    return decode_masks(scheme, jnp.eye(scheme.N, dtype=dtype), alive[None], linear=True)[0][0]


_decoder_matrix = jax.jit(decoder_matrix, static_argnames="dtype")


@pytree_dataclass
@dataclasses.dataclass(frozen=True)
class Posterior:
    """LeTCC's decode with its Gaussian-process reading (``LeTCC.posterior``).

    Attributes:
      estimate (jax.Array): (K, m) estimates, equal to ``decode(Y, alive)``.
      std (jax.Array): (K, m) predicted standard errors of the estimates: the posterior
        standard deviation of f at each input's point, ``power[k] * scale[c]``; inf for an
        input the survivors cannot determine (its estimate is the fallback).
      scale (jax.Array): (m,) the prior's scale tau per output column: estimated from the
        surviving outputs by restricted maximum likelihood, or as given; inf with fewer
        than three distinct survivors (nothing left to estimate it from).
      power (jax.Array): (K,) the standard deviation per unit scale: at lam_dec = 0 the
        power function P_F(alpha_k) of the survivor set F, so that
        ``|g(alpha_k) - estimate[k]| <= power[k] * ||g||_H`` for every g of the native space.

    Example:
      >>> import jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> scheme = lc.letcc(3, 9)
      >>> post = scheme.posterior(jnp.cos(scheme.beta)[:, None], jnp.arange(9) % 4 != 1)
      >>> isinstance(post, lc.Posterior), post.estimate.shape, post.power.shape
      (True, (3, 1), (3,))
    """

    estimate: Float[Array, "K m"]
    std: Float[Array, "K m"]
    scale: Float[Array, " m"]
    power: Float[Array, " K"]


class LeTCC(Scheme):
    """Learning-theoretic coded computing: natural cubic smoothing splines both ways.

    Encoder: the smoothing spline through (alpha_k, x_k) with ``lam_enc``, evaluated at
    the worker points. Decoder: the smoothing spline through the survivors (beta_n, y_n)
    with ``lam_dec``, evaluated at the data points. Lambdas are in mean form (see
    ``letcc_jax.smoothing_spline``); 0 means interpolation. Costs O(N m) per decode.
    ``solver`` (static) picks the spline solver: ``"auto"``, ``"sris"``, ``"blocked"``,
    ``"parallel"`` or ``"reinsch"`` (see ``letcc``). Build one with ``letcc``.

    Attributes:
      lam_enc (jax.Array): float scalar encoder lambda, finite and >= 0 (``(*batch)`` in a
        sweep).
      lam_dec (jax.Array): float scalar decoder lambda, finite and >= 0 (``(*batch)`` in a
        sweep).
      solver (str): the spline solver (static).

    Example:
      >>> import jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> scheme = lc.letcc(4, 10, lam_dec=1e-3)
      >>> type(scheme).__name__, scheme.decoder_fields, round(float(scheme.lam_dec), 6)
      ('LeTCC', ('lam_dec',), 0.001)
      >>> scheme.replace(lam_dec=jnp.array([0.0, 1e-3])).lam_dec.shape  # a sweep of two
      (2,)
    """

    lam_enc: Float[Array, "*batch"] = field(ndim=0, constraint="nonnegative", default=0.0)
    lam_dec: Float[Array, "*batch"] = field(ndim=0, constraint="nonnegative", decoder=True,
                                            default=0.0)
    solver: str = field(static=True, default="auto")

    name: ClassVar[str] = "letcc"

    def check_values(self) -> None:
        super().check_values()
        if self.solver not in _spline.METHODS:
            raise ValueError(f"{self.name}: solver must be one of {_spline.METHODS}, "
                             f"got {self.solver!r}.")

    def apply_encoder(self, X):
        # The splines take the nodes in their own precision when it is finer than the data's
        # (float64 leaves, float32 data): spacings and offsets are computed in it, so no two
        # workers merge in float32 (``letcc_jax.core.spline.smooth``).
        alpha, beta = self._nodes(_spline.finer(self.beta.dtype, X.dtype))
        return _spline.smooth(
            alpha, X, jnp.ones((self.K,), bool), jnp.asarray(self.lam_enc, X.dtype), beta,
            method=self.solver,
        )

    def apply_decoder(self, Y, alive):
        alpha, beta = self._nodes(_spline.finer(self.beta.dtype, Y.dtype))
        lam = jnp.asarray(self.lam_dec, Y.dtype)
        return _spline.smooth(beta, Y, _distinct(beta, alive), lam, alpha, method=self.solver)

    def posterior(self, Y: Float[Array, "N m"], alive: Bool[Array, " N"] | None = None,
                  scale: Float[Array, "*m"] | None = None) -> Posterior:
        """The decode with a predicted standard error per estimate.

        The decoder's smoothing spline is the posterior mean of a Gaussian process: f(t) =
        b0 + b1 t + tau W2(t), W2 the integrated Wiener process, (b0, b1) without prior
        (diffuse), observed at the survivors' points beta_n with noise of variance
        ``sigma^2 = |F| lam_dec tau^2`` (Kimeldorf & Wahba 1970; Wahba 1983). ``std`` is that
        posterior's standard deviation of f at each input's point alpha_k, the variance of
        the latent output: at lam_dec = 0 the survivors are exact and ``power`` is the
        kernel's power function for the survivor set (the error bound of optimal
        recovery, times the native-space norm of f); with lam_dec > 0 the noise it assumes
        widens it. The scale tau per column is estimated from the survivors by restricted
        maximum likelihood, which at lam_dec = 0 is the decoded curve's bending energy per
        degree of freedom,
        ``int g''^2 / (|F| - 2)``: like GCV it reads the scale from the data, but it needs no
        second fit and stays defined when the spline interpolates, where the GCV residual
        is 0. Computed in O(N) by the square-root information smoother's covariances
        (``letcc_jax.core.spline._posterior``), or in O(log N) depth by cyclic reduction
        where the solver is loop-free (``solver="parallel"``, and "auto" on an
        accelerator; ``letcc_jax.core.spline._parallel``), in the points' precision
        (float64 nodes with float32 outputs: the scale reads the fit's bending energy,
        which float32 slopes at the crowded Chebyshev ends lose from N ~ 1,000; float32
        cyclic reduction would also lose 1e-3 ... 4e-2 of the variances at N = 10^5 where
        the sweep loses 6e-4 ... 1.5e-3, ``tests/test_core_parallel.py``), returned in the
        outputs' dtype, and compiled once for every straggler pattern. At lam_dec = 0 the
        outputs are taken as exact, so their own rounding is roughness: float32 outputs
        of N >= 1,000 Chebyshev workers raise the scale (by 2.4e-3 at N = 1,000 and 1.7x at
        N = 3,000 for a smooth f); a small lam_dec (1e-6) reads that rounding as noise.

        Args:
          Y: (N, m) float worker outputs, as for ``decode`` (a row with a NaN or inf is an
            erasure).
          alive: (N,) bool mask of the workers that answered; default all.
          scale: tau, a positive scalar or (m,) per column, in place of the estimate.

        Returns:
          ``Posterior(estimate, std, scale, power)``.

        Raises:
          ValueError: as ``decode``; a ``scale`` that is not positive and finite or not
            of size 1 or m.
          TypeError: as ``decode``.

        Example:
          >>> import jax.numpy as jnp
          >>> import letcc_jax as lc
          >>> scheme = lc.letcc(4, 12)
          >>> Y = jnp.sin(3 * scheme.beta)[:, None]
          >>> post = scheme.posterior(Y, jnp.arange(12) != 5)
          >>> post.std.shape, bool(jnp.all(post.std > 0)), post.scale.shape
          ((4, 1), True, (1,))
          >>> bool(jnp.allclose(post.estimate, scheme.decode(Y, jnp.arange(12) != 5)))
          True
        """
        Y, alive = self._round_args(Y, alive, "posterior")
        if scale is not None:
            check.check_parameter(scale, f"{self.name}: posterior scale", "positive and finite",
                                  lambda v: v > 0)
            if np.ndim(scale) > 1 or np.size(scale) not in (1, Y.shape[1]):
                raise ValueError(f"{self.name}: posterior scale must be a scalar or of size "
                                 f"m = {Y.shape[1]} (one per output column), got shape "
                                 f"{np.shape(scale)}.")
        result, used, recovered = _posterior(self, Y, alive, scale)
        self.check_recovered(used, recovered)
        return result

    def posterior_report(self, Y: Float[Array, "N m"], alive: Bool[Array, " N"],
                         scale: Float[Array, "*m"] | None = None) -> tuple[
            Posterior, Bool[Array, " N"], Bool[Array, " K"]]:
        """``posterior``'s traced rule, without checks, with what it used: ``(posterior,
        used, recovered)`` as in ``decode_report``."""
        estimate, used, recovered = LeTCC.decode_report(self, Y, alive)
        clean = jnp.where(used[:, None], Y, jnp.zeros((), Y.dtype))
        # The variances and the scale in the points' precision when it is finer (float64
        # nodes, float32 outputs): the scale is read from the fit's bending energy, which
        # float32 slopes at crowded Chebyshev ends (spacing ~ 5 / N^2) lose from N ~ 1,000.
        work = _spline.finer(self.beta.dtype, Y.dtype)
        alpha, beta = self._nodes(work)
        lam = jnp.asarray(self.lam_dec, work)
        _, variance, tau = _spline.posterior(beta, clean.astype(work), _distinct(beta, used),
                                             lam, alpha, method=self.solver)
        variance, tau = variance.astype(Y.dtype), tau.astype(Y.dtype)
        if scale is not None:
            tau = jnp.broadcast_to(jnp.asarray(scale, Y.dtype), tau.shape)
        power = self.to_input_order(jnp.sqrt(variance))
        std = jnp.where(recovered[:, None], power[:, None] * tau, jnp.inf)
        return Posterior(estimate, std, tau, power), used, recovered


class ResidualLeTCC(LeTCC):
    """LeTCC whose encoder matrix carries a learned residual: encode(X) = (E + R) X.

    ``residual`` is (N, K), a leaf; the decoder is LeTCC's. Still a linear code, so it
    runs through ``monte_carlo``, ``run_coded`` and the real workers unchanged. Build one
    with ``residual_letcc`` and learn R with ``tune(..., learn=(..., "residual"))``.

    Attributes:
      residual (jax.Array): (N, K) float residual R, finite (``(*batch, N, K)`` in a
        sweep).

    Example:
      >>> import letcc_jax as lc
      >>> scheme = lc.residual_letcc(4, 10)                   # R = 0: plain LeTCC
      >>> isinstance(scheme, lc.LeTCC), scheme.residual.shape, float(abs(scheme.residual).max())
      (True, (10, 4), 0.0)
    """

    residual: Float[Array, "*batch N K"] = field(ndim=2, per_worker=True, default=None)

    name: ClassVar[str] = "letcc+residual"

    def check_values(self) -> None:
        super().check_values()
        shape = np.shape(self.residual)
        values = check.concrete_parameter(self.residual, f"{self.name}: residual")
        if values is not None and shape[-2:] != (self.N, self.K):
            raise ValueError(f"residual must have shape (N, K) = ({self.N}, {self.K}), "
                             f"got {shape}.")
        if values is not None and not np.all(np.isfinite(values)):
            raise ValueError(f"{self.name}: residual contains non-finite values.")

    @classmethod
    def from_letcc(cls, scheme: LeTCC, residual: Float[Array, "N K"] | None = None):
        """``scheme`` with a residual added to its encoder matrix (zero by default).

        Args:
          scheme: a ``LeTCC`` scheme (unswept).
          residual: (N, K) real residual R, finite; default zeros in the dtype of
            ``scheme.alpha``.

        Returns:
          A ``ResidualLeTCC`` with the nodes, lambdas and solver of ``scheme``.

        Raises:
          TypeError: ``scheme`` is not a LeTCC scheme; ``residual`` is complex or not
            numeric.
          ValueError: ``residual`` is not (N, K) or not finite.
        """
        if not isinstance(scheme, LeTCC):
            raise TypeError(f"residual_letcc extends a LeTCC scheme, got {type(scheme).__name__}.")
        if residual is None:
            residual = jnp.zeros((scheme.N, scheme.K), jnp.result_type(scheme.alpha))
        residual = check.float_array(residual, "residual")
        fields = {f.name: getattr(scheme, f.name) for f in dataclasses.fields(LeTCC)}
        return cls(**fields, residual=residual)

    def apply_encoder(self, X):
        return super().apply_encoder(X) + self.residual.astype(X.dtype) @ X


class BoundedLeTCC(LeTCC):
    """LeTCC whose estimates cannot run away across a gap of stragglers.

    Where stragglers leave a gap, the decoder's spline extrapolates linearly across it and
    its estimate can land far from any output f ever gives; its posterior standard error
    (``LeTCC.posterior``) says so. This decoder combines that posterior, N(estimate,
    std^2) per input and column, with a prior N(fallback, prior_std^2) on the output
    (``fallback`` is the prior mean, e.g. the mean output on calibration data, the same
    fallback replication gets), and returns the posterior mean of the two:

        fallback + w (estimate - fallback),   w = prior_std^2 / (prior_std^2 + std^2),

    with standard error ``sqrt(w) std``. Near answering workers std is small and the
    estimate LeTCC's; across a gap w falls and the estimate moves to the fallback; an input
    the survivors cannot determine gets the fallback. With ``low`` and ``high`` the
    estimates are then clipped to that range (e.g. the calibration outputs' range), the
    simpler bound. The weights depend on the outputs (through the scale the posterior
    estimates from them), so the decoder is not linear: ``decoder_matrix`` and
    ``worst_adversaries`` do not apply, while ``monte_carlo``, ``worst_stragglers`` (which
    then searches against this decoder) and the worker backends do. Build one with
    ``bounded_letcc`` or ``BoundedLeTCC.from_letcc``.

    Attributes:
      prior_std (jax.Array | None): (m,) positive spread of the outputs around
        ``fallback``, or None (no shrinking); an entry of ``inf`` leaves its column
        unshrunk. ``(*batch, m)`` in a sweep.
      low (jax.Array | None): (m,) lower bound of the estimates, or None; ``-inf`` leaves
        a column unclipped from below.
      high (jax.Array | None): (m,) upper bound, or None; both or neither; ``inf`` leaves
        a column unclipped from above. Infinite entries give the same numbers as None and
        keep every leaf present: one pytree structure, so one compiled program serves
        shrunk and clipped schemes (or a sweep over ``prior_std`` that includes ``inf``).
        That program computes the posterior variances, which the program of a scheme with
        ``prior_std=None`` leaves out: clipping alone is about 3x cheaper in its own.

    Example:
      >>> import jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> scheme = lc.bounded_letcc(4, 12, fallback=jnp.zeros(1), prior_std=jnp.ones(1))
      >>> Y = jnp.sin(3 * scheme.beta)[:, None]
      >>> gap = (jnp.arange(12) < 2) | (jnp.arange(12) > 7)   # the middle workers straggle
      >>> plain = lc.letcc(4, 12).decode(Y, gap)
      >>> bool(jnp.all(jnp.abs(scheme.decode(Y, gap)) <= jnp.abs(plain) + 1e-6))
      True
    """

    prior_std: Float[Array, "*batch m"] | None = field(ndim=1, decoder=True, constraint=None,
                                                       default=None, kw_only=True)
    low: Float[Array, "*batch m"] | None = field(ndim=1, decoder=True, constraint=None,
                                                 default=None, kw_only=True)
    high: Float[Array, "*batch m"] | None = field(ndim=1, decoder=True, constraint=None,
                                                  default=None, kw_only=True)

    name: ClassVar[str] = "letcc+bounded"

    def check_values(self) -> None:
        super().check_values()
        if self.prior_std is None and self.low is None and self.high is None:
            raise ValueError(f"{self.name}: give prior_std (shrink toward the fallback), "
                             f"low and high (clip), or both; without either it is letcc.")
        if self.prior_std is not None and self.fallback is None:
            raise ValueError(f"{self.name}: prior_std shrinks the estimates toward the "
                             f"fallback; give fallback= too (e.g. the mean calibration output).")
        if (self.low is None) != (self.high is None):
            raise ValueError(f"{self.name}: give both low and high, or neither.")
        values = {}
        for field, rule, ok in (("prior_std", "positive (inf: no shrinking)", lambda v: v > 0),
                                ("low", "finite or -inf", lambda v: v < np.inf),
                                ("high", "finite or inf", lambda v: v > -np.inf)):
            if getattr(self, field) is None:
                continue
            name = f"{self.name}: {field}"
            values[field] = check.concrete_parameter(getattr(self, field), name)
            if values[field] is not None and not np.all(ok(values[field])):
                raise ValueError(f"{name} must be {rule}, got {getattr(self, field)!r}.")
            if values[field] is not None and values[field].ndim < 1:
                raise ValueError(f"{name} must be an (m,) array, one value per output "
                                 f"column, got shape {values[field].shape}.")
        low, high = values.get("low"), values.get("high")
        if low is not None and high is not None and np.any(np.asarray(low) > np.asarray(high)):
            raise ValueError(f"{self.name}: low must not exceed high, got low={low}, "
                             f"high={high}.")

    def check_fallback(self, m: int) -> None:
        super().check_fallback(m)
        for field in ("prior_std", "low", "high"):
            value = getattr(self, field)
            if value is not None and np.shape(value)[-1:] != (m,):
                raise ValueError(f"{self.name}: {field} has shape {np.shape(value)} but the "
                                 f"outputs have m={m} columns; give one value per column.")

    @property
    def linear(self) -> bool:
        return False

    def _nonlinear_reason(self) -> str:
        return "its weights depend on the outputs (through the posterior's scale)"

    @classmethod
    def from_letcc(cls, scheme: LeTCC, *, fallback=None, prior_std=None, low=None,
                   high=None) -> BoundedLeTCC:
        """``scheme``'s decoder, bounded.

        Args:
          scheme: a ``LeTCC`` scheme (unswept or swept).
          fallback: (m,) prior mean; default the scheme's own fallback.
          prior_std: (m,) spread of the outputs around it, positive; None: no shrinking.
          low, high: (m,) clipping range; None: no clipping.

        Returns:
          A ``BoundedLeTCC`` with the nodes, lambdas, order and solver of ``scheme``.

        Raises:
          TypeError: ``scheme`` is not a LeTCC scheme.
          ValueError: as ``bounded_letcc``.
        """
        if not isinstance(scheme, LeTCC):
            raise TypeError(f"BoundedLeTCC bounds a LeTCC decoder, got {type(scheme).__name__}.")
        fields = {f.name: getattr(scheme, f.name) for f in dataclasses.fields(LeTCC)}
        if fallback is not None:
            fields["fallback"] = check.float_array(fallback, "fallback")
        extra = {name: None if value is None else check.float_array(value, name)
                 for name, value in (("prior_std", prior_std), ("low", low), ("high", high))}
        return cls(**fields, **extra)

    @classmethod
    def from_outputs(cls, scheme: LeTCC, outputs: Float[Array, "n m"], *, shrink: bool = True,
                     clip: bool = False) -> BoundedLeTCC:
        """``scheme`` bounded by calibration outputs f(x) (n, m): the fallback is their
        mean, ``prior_std`` their standard deviation (with ``shrink``), ``low``/``high``
        their range (with ``clip``).

        Example:
          >>> import jax.numpy as jnp
          >>> import letcc_jax as lc
          >>> outputs = jnp.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
          >>> bounded = lc.BoundedLeTCC.from_outputs(lc.letcc(4, 10), outputs, clip=True)
          >>> bounded.fallback.tolist(), bounded.low.tolist(), bounded.high.tolist()
          ([2.0, 3.0], [0.0, 1.0], [4.0, 5.0])
        """
        outputs = np.asarray(check.float_array(outputs, "outputs"))
        if outputs.ndim != 2 or outputs.shape[0] < 2 or not np.all(np.isfinite(outputs)):
            raise ValueError(f"outputs must be a finite (n, m) array of calibration outputs "
                             f"with n >= 2, got shape {outputs.shape}.")
        if not (shrink or clip):
            raise ValueError("from_outputs: ask for shrink=True, clip=True or both.")
        spread = outputs.std(axis=0, ddof=1)
        spread = np.where(spread > 0, spread, np.finfo(outputs.dtype).tiny)
        return cls.from_letcc(scheme, fallback=outputs.mean(axis=0),
                              prior_std=spread if shrink else None,
                              low=outputs.min(axis=0) if clip else None,
                              high=outputs.max(axis=0) if clip else None)

    def posterior_report(self, Y, alive, scale=None):
        post, used, recovered = super().posterior_report(Y, alive, scale)
        estimate, std = post.estimate, post.std
        if self.prior_std is not None:
            mean = self.fallback.astype(estimate.dtype)
            spread = self.prior_std.astype(estimate.dtype)
            known = jnp.isfinite(std)
            ratio = jnp.where(known, std, 0.0) / spread  # w = 1 / (1 + ratio^2), no overflow
            w = jnp.where(known, 1.0 / (1.0 + ratio * ratio), 0.0)
            # w == 1 (an infinite prior_std, or a negligible std) keeps LeTCC's estimate
            # exactly rather than mean + (estimate - mean).
            estimate = jnp.where(known, jnp.where(w < 1.0, mean + w * (estimate - mean),
                                                  estimate), mean)
            # sqrt(w) std = spread r / sqrt(1 + r^2): the form that cannot overflow per side
            wide = ratio > 1.0
            inv = 1.0 / jnp.where(wide, ratio, 1.0)
            std = jnp.where(~known, spread, jnp.where(wide, spread / jnp.sqrt(1.0 + inv * inv),
                                                      std * jnp.sqrt(w)))
        if self.low is not None:
            estimate = jnp.clip(estimate, self.low.astype(estimate.dtype),
                                self.high.astype(estimate.dtype))
        return Posterior(estimate, std, post.scale, post.power), used, recovered

    def decode_report(self, Y, alive):
        post, used, recovered = self.posterior_report(Y, alive)
        return post.estimate, used, recovered


class BarycentricScheme(Scheme):
    """Base class of the interpolating schemes in barycentric form (BACC, LCC).

    r(x) = sum_i w_i v_i / (x - z_i) / sum_i w_i / (x - z_i): the encoder through
    (alpha_k, x_k), the decoder through the survivors (beta_n, y_n). Members of the family
    differ only in their ``weights``.

    Example:
      >>> import letcc_jax as lc
      >>> [isinstance(s, lc.BarycentricScheme) for s in (lc.bacc(4, 10), lc.lcc(4, 10),
      ...                                                 lc.letcc(4, 10))]
      [True, True, False]
    """

    def weights(self, nodes: Float[Array, " n"], mask: Bool[Array, " n"]) -> Float[Array, " n"]:
        """Barycentric weights of the selected nodes, 0 for the others (traced).

        Args:
          nodes: (n,) float nodes, ascending.
          mask: (n,) bool, the nodes to interpolate through.

        Returns:
          (n,) weights in the dtype of ``nodes``.
        """
        raise NotImplementedError

    def apply_encoder(self, X):
        alpha, beta = self._nodes(X.dtype)
        w = self.weights(alpha, jnp.ones((self.K,), bool))
        return bary.interpolation_matrix(alpha, w, beta) @ X

    def apply_decoder(self, Y, alive):
        alpha, beta = self._nodes(Y.dtype)
        w = self.weights(beta, _distinct(beta, alive))
        return bary.interpolation_matrix(beta, w, alpha) @ Y


class BACC(BarycentricScheme):
    """Berrut approximated coded computing: Berrut's rational interpolant both ways.

    Weights (-1)^i; in the decoder the signs alternate over the survivors in node order.
    Build one with ``bacc``.

    Example:
      >>> import jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> scheme = lc.bacc(4, 10)
      >>> scheme.weights(jnp.linspace(-1, 1, 4), jnp.array([True, False, True, True])).tolist()
      [1.0, 0.0, -1.0, 1.0]
    """

    name: ClassVar[str] = "bacc"

    def weights(self, nodes, mask):
        return bary.berrut_weights(mask, nodes.dtype)


class LCC(BarycentricScheme):
    """Lagrange coded computing over the reals: the interpolating polynomial both ways.

    Encoder: the degree K-1 polynomial through (alpha_k, x_k). Decoder: the interpolating
    polynomial through all survivors. For f a polynomial of degree ``degree`` the worker
    results lie on a polynomial of degree (K-1)*degree, so any (K-1)*degree + 1 survivors
    recover f(x_k) exactly (in exact arithmetic); using every survivor gives the same
    polynomial with better conditioning. For non-polynomial f, or large N, polynomial
    interpolation is ill-conditioned: that failure is what BACC and LeTCC address. Build
    one with ``lcc``.

    Attributes:
      degree (int): the degree of the polynomial f, a positive int (static).

    Example:
      >>> import jax.numpy as jnp, numpy as np
      >>> import letcc_jax as lc
      >>> scheme = lc.lcc(4, 10, degree=2)                # f(x) = x**2 has degree 2
      >>> X = jnp.linspace(-1, 1, 8).reshape(4, 2)
      >>> alive = np.arange(10) >= 3                      # 7 = min_survivors answer
      >>> estimate = scheme.decode(scheme.encode(X) ** 2, alive)
      >>> bool(jnp.allclose(estimate, X ** 2, atol=1e-3))  # exact up to round-off
      True
    """

    degree: int = field(static=True, default=1)

    name: ClassVar[str] = "lcc"

    def check_values(self) -> None:
        super().check_values()
        if not check.is_int(self.degree) or self.degree < 1:
            raise ValueError(f"lcc: degree must be a positive int, got {self.degree!r}.")
        object.__setattr__(self, "degree", int(self.degree))
        if self.N < self.min_survivors:
            raise ValueError(
                f"lcc: N={self.N} workers cannot reach the recovery threshold (K-1)*degree+1 = "
                f"{self.min_survivors}; use N >= {self.min_survivors}."
            )

    @property
    def min_survivors(self) -> int:
        return (self.K - 1) * self.degree + 1

    def weights(self, nodes, mask):
        return bary.lagrange_weights(nodes, mask)


class Uncoded(Scheme):
    """Replication: worker n computes the input at node n mod K.

    The estimate of f(x_k) combines its answering replicas: their mean (``combine="mean"``,
    the default: the least-squares estimate under output noise) or their coordinate-wise
    median (``"median"``: exact for a deterministic f while liars hold fewer than half of
    an input's answering replicas, a majority vote). An input none of whose replicas
    answered is lost (estimated by ``fallback``). Build one with ``uncoded``.

    Attributes:
      combine (str): ``"mean"`` or ``"median"`` (static).

    Example:
      >>> import jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> scheme = lc.uncoded(4, 8)                       # workers k and k + 4 copy input k
      >>> scheme.decode(jnp.arange(8.0)[:, None]).ravel().tolist()  # replicas averaged
      [2.0, 3.0, 4.0, 5.0]
      >>> Y = jnp.array([0.0, 1, 2, 3, 0, 1, 2, 3, 9, 9, 9, 9])[:, None]  # last 4 lie
      >>> lc.uncoded(4, 12, combine="median").decode(Y).ravel().tolist()
      [0.0, 1.0, 2.0, 3.0]
    """

    combine: str = field(static=True, default="mean")

    name: ClassVar[str] = "uncoded"

    def check_values(self) -> None:
        # beta repeats alpha (worker n sits at the tag of the input it copies).
        _check_nodes(check.concrete_parameter(self.alpha, f"{self.name}: alpha"),
                     f"{self.name}: alpha", strict=True)
        check.concrete_parameter(self.beta, f"{self.name}: beta")
        if self.combine not in COMBINE:
            raise ValueError(f"uncoded: combine must be one of {COMBINE}, got {self.combine!r}.")
        self._check_order_and_fallback()

    @property
    def min_survivors(self) -> int:
        return self.K

    @property
    def linear(self) -> bool:
        return self.combine == "mean"

    def _nonlinear_reason(self) -> str:
        return "the median of replicas"

    def owners(self) -> Int[Array, " N"]:
        """The input (in the caller's order) that each worker computes (traced).

        Returns:
          (N,) int32: worker n holds node n mod K, that is input ``order[n mod K]``.
        """
        node = jnp.arange(self.N, dtype=jnp.int32) % self.K
        return node if self.order is None else jnp.asarray(self.order).astype(jnp.int32)[node]

    def _assignment(self, dtype):
        n = jnp.arange(self.N)
        return (n[:, None] % self.K == jnp.arange(self.K)[None, :]).astype(dtype)  # (N, K)

    def apply_encoder(self, X):
        return self._assignment(X.dtype) @ X

    def apply_decoder(self, Y, alive):
        if self.combine == "median":
            return self._median(Y, alive)
        A = self._assignment(Y.dtype) * alive[:, None].astype(Y.dtype)
        count = jnp.sum(A, axis=0)
        return (A.T @ Y) / jnp.maximum(count, 1.0)[:, None]

    def _median(self, Y, alive):
        """Coordinate-wise median of each node's answering replicas (workers k, k + K, ...):
        the replicas sorted with the missing ones last as +inf, the middle one or two."""
        R = -(-self.N // self.K)
        workers = jnp.arange(self.K)[:, None] + self.K * jnp.arange(R)[None, :]  # (K, R)
        present = (workers < self.N) & alive[jnp.minimum(workers, self.N - 1)]
        values = jnp.where(present[..., None], Y[jnp.minimum(workers, self.N - 1)], jnp.inf)
        values = jnp.sort(values, axis=1)  # (K, R, m)
        count = jnp.sum(present, axis=1)
        lo = jnp.maximum(count - 1, 0) // 2
        hi = jnp.maximum(count // 2, lo)

        def pick(index):
            return jnp.take_along_axis(values, index[:, None, None], axis=1)[:, 0]

        return jnp.where((count > 0)[:, None], (pick(lo) + pick(hi)) / 2, 0.0).astype(Y.dtype)

    def apply_recovery(self, alive):
        return jnp.any(self._assignment(bool) & alive[:, None], axis=0)

    def _unrecovered_message(self, count, lost):
        lost = lost.tolist()
        return (
            f"uncoded: no replica of input(s) {lost[:10]}{'...' if len(lost) > 10 else ''} "
            f"answered (see Uncoded.owners for which worker holds which input); those outputs "
            "are lost. Wait for one of their workers, give the scheme a fallback, or use a "
            "coded scheme."
        )


#: How replication combines the answering replicas of an input.
COMBINE = ("mean", "median")


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


def _lambda_leaf(value, name: str, dtype):
    """A smoothing parameter given as a number, as a leaf of the nodes' dtype; anything else
    unchanged, for the scheme's own checks to report.

    The number is checked as given (a message shows the value passed, not its cast). A
    finite lambda beyond the dtype's range (1e300 with float32 nodes) becomes the dtype's
    largest number: both lie far beyond the straight-line limit, where the smoother caps
    every lambda, so the scheme decodes as ``replace`` with the same value does.
    """
    if isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_)):
        check.check_lambda(value, f"letcc: {name}")
        return jnp.asarray(min(float(value), float(jnp.finfo(dtype).max)), dtype)
    return value


def _extras(order, fallback) -> dict:
    """The ``order`` and ``fallback`` options of every factory, as leaves (checked by the
    scheme's constructor)."""
    if order is not None and not isinstance(order, jax.Array):
        order = np.asarray(order)
        if np.issubdtype(order.dtype, np.integer):
            order = jnp.asarray(order)
    if fallback is not None:
        fallback = check.float_array(fallback, "fallback")
    return {"order": order, "fallback": fallback}


def letcc(
    K: int,
    N: int,
    *,
    lam_enc: float = 0.0,
    lam_dec: float = 0.0,
    points: PointsSpec = "chebyshev",
    solver: str = "auto",
    order: Int[Array, " K"] | None = None,
    fallback: Float[Array, " m"] | None = None,
) -> LeTCC:
    """LeTCC with smoothing-spline encoder and decoder (mean-form lambdas, 0 = interpolate).

    Args:
      K: number of data points.
      N: number of workers.
      lam_enc: encoder smoothing parameter (>= 0).
      lam_dec: decoder smoothing parameter (>= 0); grows with output noise, see
        ``select_lambda`` and ``gcv``. A lambda beyond 1e4/eps of the dtype is the
        straight-line limit and is capped there (one beyond the dtype's range too).
      points: ``"chebyshev"`` (default), ``"equispaced"`` or explicit ``(alpha, beta)``.
      solver: ``"auto"`` (default: on a CPU the square-root information smoother, which
        up to 2,048 workers interpolates too (lam = 0), else Reinsch for lam = 0, and which
        runs in its two-level form from N = 20,000; on a GPU or TPU the parallel smoother,
        and Reinsch for lam = 0), ``"sris"`` (always the sequential smoother, for lam = 0
        too: the most accurate, one solver to compile, and the fastest under vmap over many
        patterns on a CPU),
        ``"blocked"`` (always the two-level form: the fastest single decode on a CPU),
        ``"parallel"`` (orthogonal cyclic reduction, O(log N) sequential depth: for
        accelerators) or ``"reinsch"`` (normal equations: lose accuracy as N * lam grows).
        See ``letcc_jax.core.spline``.
      order: an int permutation of 0..K-1 (e.g. from ``order_inputs``): input
        ``order[k]`` is assigned to the node ``alpha[k]``; default the identity.
      fallback: an (m,) estimate for inputs the valid results cannot determine (e.g. the
        mean output on calibration data); default 0.

    Returns:
      A ``LeTCC`` scheme: data tags ``alpha`` (K,), worker tags ``beta`` (N,) and the two
      lambdas as float32 leaves (float64 with ``jax_enable_x64``); encode and decode
      follow the dtype of their inputs.

    Raises:
      TypeError: K or N is not an int.
      ValueError: K < 2 or N < 2; a lambda that is not a finite scalar >= 0; an unknown
        ``solver`` or ``points``; explicit nodes that are not increasing in [-1, 1];
        ``order`` not a permutation of 0..K-1; ``fallback`` not a finite 1-D array.
      TypeError: ``order`` not integer.

    Example:
      >>> import jax.numpy as jnp, numpy as np
      >>> import letcc_jax as lc
      >>> scheme = lc.letcc(4, 10, lam_dec=1e-6)
      >>> scheme.encode(jnp.ones((4, 3))).shape        # one coded input per worker
      (10, 3)
      >>> alive = np.arange(10) % 3 != 0                # workers 0, 3, 6, 9 straggle
      >>> scheme.decode(jnp.ones((10, 2)), alive).shape # f(x_1), ..., f(x_4)
      (4, 2)
      >>> X = jnp.array([[0.0, 0.0], [3.0, 1.0], [1.0, 0.5], [2.0, 1.0]])
      >>> perm = lc.order_inputs(X)                     # a short path through the inputs
      >>> ordered = lc.letcc(4, 10, order=perm)         # input perm[k] at node alpha_k
      >>> bool(jnp.allclose(ordered.encode(X), lc.letcc(4, 10).encode(X[perm])))
      True
    """
    K, N = _check_sizes(K, N, "letcc")
    for name, lam in (("lam_enc", lam_enc), ("lam_dec", lam_dec)):
        if np.ndim(lam) != 0:  # the one rule of a factory that replace does not share
            raise ValueError(f"letcc: {name} must be a scalar, got shape {np.shape(lam)}; "
                             f"sweep it with scheme.replace({name}=values).")
    alpha, beta = _nodes(points, K, N)
    return LeTCC(alpha, beta, _lambda_leaf(lam_enc, "lam_enc", alpha.dtype),
                 _lambda_leaf(lam_dec, "lam_dec", alpha.dtype), solver=solver,
                 **_extras(order, fallback))


def residual_letcc(K: int, N: int, *, residual: Float[Array, "N K"] | None = None,
                   **options) -> ResidualLeTCC:
    """LeTCC whose encoder matrix carries a residual R (N, K), zero by default: encode(X) =
    (E + R) X. ``options`` are ``letcc``'s. To extend an existing LeTCC scheme, use
    ``ResidualLeTCC.from_letcc(scheme, residual)``; ``tune(..., learn=(..., "residual"))``
    learns R.

    Args:
      K: number of data points, an int >= 2.
      N: number of workers, an int >= 2.
      residual: (N, K) real residual R, finite; default zeros.
      **options: ``letcc``'s keyword options (``lam_enc``, ``lam_dec``, ``points``,
        ``solver``).

    Returns:
      A ``ResidualLeTCC`` scheme: ``letcc(K, N, **options)`` plus the (N, K) leaf
      ``residual``.

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


def bounded_letcc(K: int, N: int, *, fallback: Float[Array, " m"] | None = None,
                  prior_std: Float[Array, " m"] | None = None,
                  low: Float[Array, " m"] | None = None, high: Float[Array, " m"] | None = None,
                  **options) -> BoundedLeTCC:
    """LeTCC with a bounded decoder (``BoundedLeTCC``): estimates shrunk toward
    ``fallback`` as their posterior standard error grows against ``prior_std``, and/or
    clipped to [``low``, ``high``]. ``options`` are ``letcc``'s. From calibration outputs:
    ``BoundedLeTCC.from_outputs(lc.letcc(K, N), f_of_X_cal)``.

    Args:
      K: number of data points, an int >= 2.
      N: number of workers, an int >= 2.
      fallback: (m,) prior mean, finite; required with ``prior_std``.
      prior_std: (m,) positive spread of the outputs around it; None (or ``inf``
        entries): no shrinking.
      low, high: (m,) clipping range, ``low <= high``; None (or ``-inf``/``inf``
        entries): no clipping.
      **options: ``letcc``'s keyword options (``lam_dec``, ``points``, ``order``, ...).

    Returns:
      A ``BoundedLeTCC`` scheme.

    Raises:
      ValueError: neither ``prior_std`` nor ``low``/``high``; ``prior_std`` without
        ``fallback``; NaN, a ``prior_std`` <= 0, ``low = inf`` or ``high = -inf``; only
        one of ``low``, ``high``.
      TypeError: as ``letcc``.

    Example:
      >>> import jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> scheme = lc.bounded_letcc(4, 10, fallback=jnp.zeros(2), prior_std=jnp.ones(2))
      >>> type(scheme).__name__, scheme.linear
      ('BoundedLeTCC', False)
    """
    return BoundedLeTCC.from_letcc(letcc(K, N, **options), fallback=fallback,
                                   prior_std=prior_std, low=low, high=high)


def bacc(K: int, N: int, *, points: PointsSpec = "chebyshev",
         order: Int[Array, " K"] | None = None, fallback: Float[Array, " m"] | None = None
         ) -> BACC:
    """Berrut approximated coded computing: Berrut's rational interpolant both ways, on
    Chebyshev points by default (``points`` as in ``letcc``).

    Args:
      K: number of data points, an int >= 2.
      N: number of workers, an int >= 2.
      points: ``"chebyshev"`` (default), ``"equispaced"`` or explicit ``(alpha, beta)``.
      order: an int permutation of 0..K-1, as in ``letcc``.
      fallback: an (m,) estimate for inputs that cannot be recovered, as in ``letcc``.

    Returns:
      A ``BACC`` scheme with data tags ``alpha`` (K,) and worker tags ``beta`` (N,) as
      float32 leaves (float64 with ``jax_enable_x64``).

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
    return BACC(*_nodes(points, K, N), **_extras(order, fallback))


def lcc(K: int, N: int, *, degree: int = 1, points: PointsSpec = "chebyshev",
        order: Int[Array, " K"] | None = None, fallback: Float[Array, " m"] | None = None
        ) -> LCC:
    """Lagrange coded computing: exact for a polynomial f of ``degree`` from any
    (K-1)*degree + 1 survivors (``min_survivors``); ill-conditioned for large N or a
    non-polynomial f, which is what BACC and LeTCC address.

    Args:
      K: number of data points, an int >= 2.
      N: number of workers, at least (K-1)*degree + 1.
      degree: the degree of the polynomial f, a positive int.
      points: ``"chebyshev"`` (default), ``"equispaced"`` or explicit ``(alpha, beta)``.
      order: an int permutation of 0..K-1, as in ``letcc``.
      fallback: an (m,) estimate for inputs that cannot be recovered, as in ``letcc``.

    Returns:
      An ``LCC`` scheme with data tags ``alpha`` (K,) and worker tags ``beta`` (N,) as
      float32 leaves (float64 with ``jax_enable_x64``).

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
    return LCC(*_nodes(points, K, N), degree=degree, **_extras(order, fallback))


def uncoded(K: int, N: int, *, combine: str = "mean", order: Int[Array, " K"] | None = None,
            fallback: Float[Array, " m"] | None = None) -> Uncoded:
    """Uncoded replication: worker n computes f(x_{n mod K}); the estimate of f(x_k) is the
    mean (or median) of its answering replicas, and an input none of whose replicas
    answered is lost.

    Args:
      K: number of data points, an int >= 2.
      N: number of workers, an int >= K.
      combine: ``"mean"`` (default) or ``"median"`` of the answering replicas; the median
        is exact for a deterministic f while liars hold fewer than half of an input's
        answering replicas.
      order: an int permutation of 0..K-1, as in ``letcc``: worker n computes input
        ``order[n mod K]``.
      fallback: an (m,) estimate for inputs whose replicas were all lost, as in ``letcc``
        (the same fallback every scheme can be given).

    Returns:
      An ``Uncoded`` scheme: ``alpha`` (K,) are Chebyshev points of the first kind, and
      worker n's tag ``beta[n]`` is ``alpha[n mod K]`` (float32 leaves, float64 with
      ``jax_enable_x64``).

    Raises:
      TypeError: K or N is not an int.
      ValueError: K < 2 or N < 2, or N < K (an input without a worker); an unknown
        ``combine``; a bad ``order`` or ``fallback`` (as in ``letcc``).

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
    return Uncoded(jnp.asarray(alpha), jnp.asarray(beta), combine=combine,
                   **_extras(order, fallback))


#: Every scheme by name: ``make_scheme(name, K, N, **options)`` calls the factory.
SCHEMES = {"letcc": letcc, "letcc+residual": residual_letcc, "bacc": bacc, "lcc": lcc,
           "uncoded": uncoded}


def register_scheme(name: str, factory: Callable[..., Scheme], *,
                    replace: bool = False) -> None:
    """Make ``make_scheme(name, K, N, **options)`` call ``factory(K, N, **options)``: a
    user-defined scheme by name, e.g. in a config or an experiment's list of schemes.

    Args:
      name: the scheme's name, a non-empty string.
      factory: a callable ``(K, N, **options) -> Scheme``.
      replace: allow replacing a name already registered.

    Raises:
      TypeError: ``name`` not a non-empty string, ``factory`` not callable.
      ValueError: ``name`` is taken and ``replace`` is False.

    Example:
      >>> import letcc_jax as lc
      >>> lc.register_scheme("wide_bspline", lambda K, N, **o: lc.bspline(K, N, n_basis=2 * K, **o))
      >>> lc.make_scheme("wide_bspline", 4, 10).n_basis
      8
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"register_scheme: name must be a non-empty string, got {name!r}.")
    if not callable(factory):
        raise TypeError(f"register_scheme: factory must be callable (K, N, **options) -> "
                        f"Scheme, got {factory!r}.")
    if name in SCHEMES and not replace and SCHEMES[name] is not factory:
        raise ValueError(f"register_scheme: {name!r} is registered already; pass replace=True "
                         "to replace it.")
    SCHEMES[name] = factory


def make_scheme(name: str, K: int, N: int, **options) -> Scheme:
    """Build a scheme by name: one of ``SCHEMES`` ("letcc", "letcc+residual", "bacc",
    "lcc", "uncoded"); ``options`` are that factory's keyword arguments.

    Args:
      name: a key of ``SCHEMES``.
      K: number of data points.
      N: number of workers.
      **options: the factory's keyword options, e.g. ``lam_dec=1e-4`` for ``"letcc"``.

    Returns:
      The scheme that ``SCHEMES[name](K, N, **options)`` makes.

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


def stack_schemes(schemes: Sequence[Scheme]) -> Scheme:
    """One swept scheme from unswept schemes of one type, along a new leading axis: a sweep
    over whatever differs between them, the number of workers N included.

    Schemes with fewer workers than the largest are padded to it: their per-worker leaves
    (``beta``; ``residual``) repeat their last worker, and ``workers`` records how many
    exist, so the padding never answers (see ``Scheme.workers``). ``monte_carlo`` and
    ``expected_loss`` then evaluate every scheme in one compiled program, where each N
    would compile its own; each point costs what the largest N costs. Trial t draws the
    same stragglers and noise among a scheme's workers as it would unpadded (JAX's
    partitionable random bits: the first N draws of a longer stream are the draws of N).

    Args:
      schemes: unswept schemes of one type, with equal K, equal static options (solver,
        degree, combine) and leaves of equal shapes besides the workers' axis (the same
        optional leaves given, e.g. a fallback of the same size in each).

    Returns:
      A scheme of the same type, every leaf with a leading axis of ``len(schemes)``, and
      ``workers`` the (len(schemes),) N of each (or its own ``workers``, if padded).

    Raises:
      TypeError: an empty sequence or one that mixes types or holds a non-scheme.
      ValueError: a swept scheme; schemes that differ in K, in a static option, in which
        optional leaves they give, or in a leaf's shape.

    Example:
      >>> import letcc_jax as lc
      >>> sweep = lc.stack_schemes([lc.letcc(8, N) for N in (10, 16, 25)])
      >>> sweep.beta.shape, sweep.workers.tolist()
      ((3, 25), [10, 16, 25])
    """
    schemes = list(schemes) if isinstance(schemes, (list, tuple)) else None
    if not schemes or not all(isinstance(s, Scheme) for s in schemes):
        raise TypeError("stack_schemes takes a non-empty list of schemes (e.g. "
                        "[letcc_jax.letcc(8, N) for N in (10, 20)]).")
    kind = type(schemes[0])
    if any(type(s) is not kind for s in schemes):
        names = sorted({type(s).__name__ for s in schemes})
        raise TypeError(f"stack_schemes stacks schemes of one type, got {', '.join(names)}.")
    for i, scheme in enumerate(schemes):
        scheme.validate()
        if scheme.swept:
            raise ValueError(f"stack_schemes: scheme {i} is a sweep already; stack unswept "
                             "schemes.")
        if scheme.K != schemes[0].K:
            raise ValueError(f"stack_schemes: every scheme needs the same K, got "
                             f"{[s.K for s in schemes]}.")
    N = max(s.N for s in schemes)
    schemes = [s.pad_workers(N) for s in schemes]
    changes = {}
    for field in dataclasses.fields(kind):
        values = [getattr(s, field.name) for s in schemes]
        if field.metadata.get("static", False) or not field.init:
            if any(v != values[0] for v in values):
                raise ValueError(f"stack_schemes: {field.name} differs between the schemes "
                                 f"({sorted({repr(v) for v in values})}); it is static, so "
                                 "stack schemes that share it.")
            continue
        given = [v is not None for v in values]
        if not any(given):
            continue
        if not all(given):
            raise ValueError(f"stack_schemes: {field.name} is given for some schemes and not "
                             "others; give it for all or none.")
        shapes = {np.shape(v) for v in values}
        if len(shapes) > 1:
            raise ValueError(f"stack_schemes: {field.name} has shapes {sorted(shapes)}; "
                             "stacked leaves need one shape.")
        changes[field.name] = jnp.stack([jnp.asarray(v) for v in values])
    return dataclasses.replace(schemes[0], **changes)
