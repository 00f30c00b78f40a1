"""A conformance kit for coding schemes: the checks every built-in scheme passes, for yours.

``check_scheme(scheme)`` runs a scheme through what the library relies on and raises an
``AssertionError`` that names the check and what differed at the first failure:

- ``pytree``: flattening and rebuilding gives the same class and leaves; the class is in the
  tree structure (so two classes never share a compiled program).
- ``shapes``: ``encode`` maps (K, d) to (N, d) and ``decode`` (N, m) to (K, m), in the
  inputs' dtype (float32, and float64 when x64 is on), finite.
- ``erasure``: a worker output with a NaN is decoded as that worker's absence.
- ``compile_once``: one compiled decoder serves every straggler pattern.
- ``jit``, ``vmap``: the same numbers under the caller's ``jax.jit`` and over a batch of masks.
- ``grad``: finite gradients of a decode with respect to every float leaf and to the outputs.
- ``linear``: for a linear scheme, ``encoder_matrix`` and ``decoder_matrix`` reproduce
  ``encode`` and ``decode``.
- ``recovery``: fewer than ``min_survivors`` results do not recover every input
  (``recovered``), all of them do, and an input not recovered gets the fallback.
- ``order``: an input order permutes the inputs on the way in and back on the way out.
- ``padding``: ``pad_workers`` changes no decode.
- ``sweep``: a sweep of two copies (``stack_schemes``) gives ``monte_carlo``'s numbers of
  the scheme alone at both points.

Example:
  >>> import letcc_jax as lc
  >>> from letcc_jax.testing import check_scheme
  >>> sorted(check_scheme(lc.bacc(4, 12)))[:3]
  ['compile_once', 'erasure', 'grad']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import letcc_jax as lc

__all__ = ["CHECKS", "check_scheme"]

CHECKS = ("pytree", "shapes", "erasure", "compile_once", "jit", "vmap", "grad", "linear",
          "recovery", "order", "padding", "sweep")

#: Relative tolerance of two computations of the same decode (against the largest value).
_RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-9}


def _f(x):
    """The kit's worker function: smooth, two output columns."""
    s = jnp.sum(x)
    return jnp.stack([jnp.sin(2.0 * s), jnp.cos(s) + 0.5 * s])


def check_scheme(scheme: lc.Scheme, *, f: Callable | None = None, d: int = 3, seed: int = 0,
                 checks: Sequence[str] = CHECKS,
                 dtypes: Sequence | None = None) -> dict[str, str]:
    """Run the conformance checks on ``scheme`` (see the module docstring).

    Args:
      scheme: an unswept, unpadded scheme, e.g. ``lc.bspline(8, 24)``.
      f: the worker function, one (d,) input to one (m,) output; default a smooth one
        with m = 2.
      d: the input dimension.
      seed: seeds the inputs and the straggler patterns.
      checks: the checks to run (a subset of ``CHECKS``).
      dtypes: the input dtypes to check; default float32, and float64 when x64 is on.

    Returns:
      ``{check: "ok"}`` for every check that ran (``"skipped: why"`` for one that does not
      apply, such as ``linear`` for a nonlinear decoder).

    Raises:
      AssertionError: the first check that fails, its name and what differed.
      ValueError: an unknown check; a swept or padded scheme.
    """
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        raise ValueError(f"check_scheme: unknown checks {unknown}; choose from {CHECKS}.")
    if not isinstance(scheme, lc.Scheme):
        raise TypeError(f"check_scheme takes a letcc_jax.Scheme, got {type(scheme).__name__}.")
    scheme.validate()
    if scheme.swept or scheme.workers is not None:
        raise ValueError("check_scheme takes an unswept, unpadded scheme.")
    f = _f if f is None else f
    rng = np.random.default_rng(seed)
    if dtypes is None:
        dtypes = [np.float32] + ([np.float64] if jax.config.jax_enable_x64 else [])
    dtypes = [np.dtype(t) for t in dtypes]
    if not dtypes or any(t not in _RTOL for t in dtypes):
        raise ValueError(f"check_scheme: dtypes must be float32 and/or float64, got {dtypes}.")
    report = {}
    case = _Case(scheme, f, d, rng)
    for name in checks:
        result = getattr(case, name)(dtypes)
        report[name] = result or "ok"
    return report


class _Case:
    """The shared data of one run of the checks."""

    def __init__(self, scheme, f, d, rng):
        self.plain, self.f, self.rng = scheme, f, rng
        self.K, self.N = scheme.K, scheme.N
        need = max(scheme.min_survivors, 2)
        self.S = max(0, min(self.N - need, self.N // 4))
        self.X = rng.uniform(-1, 1, (self.K, d))
        self.masks = np.stack([self._mask(self.S) for _ in range(4)])
        m = int(np.shape(jax.eval_shape(f, jnp.zeros(d, jnp.float32)))[0])
        self.m = m
        self.fallback = np.linspace(-0.5, 0.5, m)
        # with a fallback every decode is defined, also where replication loses an input
        self.scheme = scheme if scheme.fallback is not None else scheme.replace(
            fallback=jnp.asarray(self.fallback, jnp.result_type(scheme.alpha)))

    def _mask(self, S):
        alive = np.ones(self.N, bool)
        alive[self.rng.choice(self.N, S, replace=False)] = False
        return alive

    def _fail(self, check, message):
        raise AssertionError(f"check_scheme({self.plain.name}): {check}: {message}")

    def _close(self, check, got, want, dtype, what):
        got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
        if got.shape != want.shape:
            self._fail(check, f"{what}: shape {got.shape}, expected {want.shape}")
        scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
        err = float(np.max(np.abs(got - want), initial=0.0))
        if not np.isfinite(err) or err > _RTOL[np.dtype(dtype)] * scale:
            self._fail(check, f"{what}: differ by {err:.3g} (bound "
                              f"{_RTOL[np.dtype(dtype)] * scale:.3g}, {np.dtype(dtype).name})")

    def _data(self, dtype):
        X = jnp.asarray(self.X, dtype)
        Y = jax.vmap(self.f)(self.scheme.encode(X))
        return X, Y

    # ------------------------------------------------------------------- checks
    def pytree(self, dtypes):
        leaves, tree = jax.tree.flatten(self.scheme)
        rebuilt = jax.tree.unflatten(tree, leaves)
        if type(rebuilt) is not type(self.scheme):
            self._fail("pytree", f"rebuilt as {type(rebuilt).__name__}")
        for a, b in zip(jax.tree.leaves(rebuilt), leaves):
            if a is not b:
                self._fail("pytree", "a leaf changed on rebuilding")
        if type(self.scheme).__name__ not in str(tree) and type(self.scheme) is not lc.Scheme:
            self._fail("pytree", f"the tree structure does not name the class: {tree}")

    def shapes(self, dtypes):
        for dtype in dtypes:
            X = jnp.asarray(self.X, dtype)
            coded = self.scheme.encode(X)
            if coded.shape != (self.N, X.shape[1]) or coded.dtype != dtype:
                self._fail("shapes", f"encode gave {coded.shape} {coded.dtype}, expected "
                                     f"{(self.N, X.shape[1])} {dtype}")
            if not np.all(np.isfinite(np.asarray(coded))):
                self._fail("shapes", "encode gave non-finite values")
            Y = jax.vmap(self.f)(coded)
            estimate = self.scheme.decode(Y, self.masks[0])
            if estimate.shape != (self.K, self.m) or estimate.dtype != dtype:
                self._fail("shapes", f"decode gave {estimate.shape} {estimate.dtype}, "
                                     f"expected {(self.K, self.m)} {dtype}")
            if not np.all(np.isfinite(np.asarray(estimate))):
                self._fail("shapes", "decode gave non-finite values")

    def erasure(self, dtypes):
        for dtype in dtypes:
            _, Y = self._data(dtype)
            alive = self.masks[0]
            worker = int(np.flatnonzero(alive)[0])
            poisoned = Y.at[worker].set(jnp.nan)
            without = alive.copy()
            without[worker] = False
            self._close("erasure", self.scheme.decode(poisoned, alive),
                        self.scheme.decode(Y, without), dtype,
                        f"a NaN output of worker {worker} against its absence")

    def compile_once(self, dtypes):
        _, Y = self._data(dtypes[0])
        self.scheme.decode(Y, self.masks[0])
        compiles = []

        def record(event, seconds, **_):
            if "backend_compile" in event:
                compiles.append(event)

        jax.monitoring.register_event_duration_secs_listener(record)
        try:
            for alive in self.masks[1:]:
                self.scheme.decode(Y, alive)
        finally:
            jax.monitoring.unregister_event_duration_listener(record)
        if compiles:
            self._fail("compile_once", f"{len(compiles)} compilations for "
                                       f"{len(self.masks) - 1} new straggler patterns")

    def jit(self, dtypes):
        for dtype in dtypes:
            X, Y = self._data(dtype)
            alive = jnp.asarray(self.masks[1])
            self._close("jit", jax.jit(lambda s, Y, a: s.decode(Y, a))(self.scheme, Y, alive),
                        self.scheme.decode(Y, alive), dtype, "jitted decode against eager")
            self._close("jit", jax.jit(lambda s, X: s.encode(X))(self.scheme, X),
                        self.scheme.encode(X), dtype, "jitted encode against eager")

    def vmap(self, dtypes):
        for dtype in dtypes:
            _, Y = self._data(dtype)
            batched = jax.vmap(self.scheme.decode, in_axes=(None, 0))(Y, jnp.asarray(self.masks))
            for i, alive in enumerate(self.masks):
                self._close("vmap", batched[i], self.scheme.decode(Y, alive), dtype,
                            f"vmapped decode of mask {i} against its own decode")

    def grad(self, dtypes):
        dtype = dtypes[-1]
        _, Y = self._data(dtype)
        alive = jnp.asarray(self.masks[0])

        def loss(scheme, Y):
            return jnp.sum(scheme.decode(Y, alive) ** 2)

        g_scheme, g_Y = jax.grad(loss, argnums=(0, 1), allow_int=True)(self.scheme, Y)
        for path, leaf in jax.tree_util.tree_flatten_with_path(g_scheme)[0]:
            if jnp.issubdtype(jnp.result_type(leaf), jnp.floating) and not np.all(
                    np.isfinite(np.asarray(leaf))):
                self._fail("grad", f"non-finite gradient for {jax.tree_util.keystr(path)}")
        if not np.all(np.isfinite(np.asarray(g_Y))):
            self._fail("grad", "non-finite gradient with respect to the outputs")

    def linear(self, dtypes):
        if not self.scheme.linear:
            return "skipped: a nonlinear decoder"
        for dtype in dtypes:
            X, Y = self._data(dtype)
            E = self.scheme.encoder_matrix(dtype)
            self._close("linear", E @ X, self.scheme.encode(X), dtype,
                        "encoder_matrix @ X against encode(X)")
            alive = self.masks[1]
            D = self.scheme.decoder_matrix(alive, dtype)
            recovered = np.asarray(self.scheme.recovered(alive))
            self._close("linear", (D @ Y)[recovered], self.scheme.decode(Y, alive)[recovered],
                        dtype, "decoder_matrix @ Y against decode(Y)")

    def recovery(self, dtypes):
        need = self.plain.min_survivors
        alive = np.zeros(self.N, bool)
        alive[: need - 1] = True
        recovered = np.asarray(self.scheme.recovered(alive))
        if need > 1 and recovered.all():
            self._fail("recovery", f"{need - 1} survivors recovered every input, but "
                                   f"min_survivors = {need} says that needs {need}")
        full = np.asarray(self.scheme.recovered(np.ones(self.N, bool)))
        if not full.all():
            self._fail("recovery", "every worker answered, yet inputs "
                                   f"{np.flatnonzero(~full).tolist()} were not recovered")
        _, Y = self._data(dtypes[0])
        estimate = np.asarray(self.scheme.decode(Y, alive))
        lost = ~recovered
        fallback = np.broadcast_to(np.asarray(self.scheme.fallback, np.float64), estimate.shape)
        if lost.any() and not np.allclose(estimate[lost], fallback[lost], rtol=1e-6, atol=1e-6):
            self._fail("recovery", "an input the survivors cannot determine did not get the "
                                   "fallback")

    def order(self, dtypes):
        dtype = dtypes[-1]
        perm = self.rng.permutation(self.K)
        ordered = self.scheme.replace(order=jnp.asarray(perm))
        X = jnp.asarray(self.X, dtype)
        self._close("order", ordered.encode(X), self.scheme.encode(X[perm]), dtype,
                    "encode with an order against encode of the permuted inputs")
        Y = jax.vmap(self.f)(ordered.encode(X))
        alive = self.masks[2]
        want = np.empty((self.K, self.m))
        want[perm] = np.asarray(self.scheme.decode(Y, alive), np.float64)
        self._close("order", ordered.decode(Y, alive), want, dtype,
                    "decode with an order against the permuted decode")

    def padding(self, dtypes):
        dtype = dtypes[-1]
        _, Y = self._data(dtype)
        padded = self.scheme.pad_workers(self.N + 3)
        Yp = jnp.concatenate([Y, jnp.repeat(Y[-1:], 3, axis=0)])
        for alive in self.masks[:2]:
            mask = np.concatenate([alive, np.ones(3, bool)])
            self._close("padding", padded.decode(Yp, mask), self.scheme.decode(Y, alive), dtype,
                        "decode padded by 3 workers (answering, yet not existing) against "
                        "unpadded")

    def sweep(self, dtypes):
        X = jnp.asarray(self.X, dtypes[0])
        key = jax.random.key(int(self.rng.integers(1 << 30)))
        options = dict(trials=4, stragglers=lc.ExactStragglers(self.S))
        alone = lc.monte_carlo(self.f, self.scheme, X, key, **options)
        swept = lc.monte_carlo(self.f, lc.stack_schemes([self.scheme, self.scheme]), X, key,
                               **options)
        for point in range(2):
            self._close("sweep", np.asarray(swept.mse)[point], alone.mse, dtypes[0],
                        f"monte_carlo's MSE at sweep point {point} against the scheme alone")
