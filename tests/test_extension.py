"""User-defined schemes: declaring fields (``letcc_jax.field``), registration as pytrees at
class creation, the declared checks, sweeps under the caller's vmap (``sweep_axes``),
``register_scheme``, and the conformance kit (``letcc_jax.testing``) on every built-in
scheme."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import letcc_jax as lc
from letcc_jax.testing import CHECKS, check_scheme


class Damped(lc.BACC):
    """BACC whose estimates are divided by 1 + damping (a decoder-only scalar)."""

    damping: jax.Array = lc.field(ndim=0, decoder=True, constraint="nonnegative", default=0.0,
                                  kw_only=True)

    def apply_decoder(self, Y, alive):
        return super().apply_decoder(Y, alive) / (1.0 + self.damping.astype(Y.dtype))


class Weighted(lc.Scheme):
    """A linear scheme of its own: encode = E X with a learned (N, K) matrix, decode = the
    least-squares fit of the survivors (a minimal complete example)."""

    E: jax.Array = lc.field(ndim=2, per_worker=True)
    ridge: jax.Array = lc.field(ndim=0, decoder=True, constraint="positive", default=1e-6,
                                kw_only=True)
    name: ClassVar[str] = "weighted"

    @property
    def min_survivors(self) -> int:
        return self.K

    def apply_encoder(self, X):
        return self.E.astype(X.dtype) @ X

    def apply_decoder(self, Y, alive):
        E = jnp.where(alive[:, None], self.E.astype(Y.dtype), 0.0)
        gram = E.T @ E + self.ridge.astype(Y.dtype) * jnp.eye(self.K, dtype=Y.dtype)
        return jnp.linalg.solve(gram, E.T @ Y)

    def apply_recovery(self, alive):
        return jnp.broadcast_to(jnp.sum(alive.astype(jnp.int32)) >= self.K, (self.K,))


def weighted(K, N, seed=0):
    E = np.random.default_rng(seed).standard_normal((N, K)) / np.sqrt(K)
    return Weighted(jnp.asarray(lc.chebyshev_first(K)), jnp.asarray(lc.chebyshev_second(N)),
                    jnp.asarray(E))


def test_a_subclass_is_a_registered_pytree_with_its_declarations():
    base = lc.bacc(4, 10)
    scheme = Damped(base.alpha, base.beta, damping=jnp.asarray(0.5))
    assert scheme.name == "damped" and Damped.decoder_fields == ("damping",)
    leaves, tree = jax.tree.flatten(scheme)
    assert type(jax.tree.unflatten(tree, leaves)) is Damped
    assert len(leaves) == 3

    # the class is in the structure: same leaves and statics, different classes, different
    # structures (so jit never runs one class's program for the other)
    class First(lc.BACC):
        pass

    class Second(lc.BACC):
        pass

    assert jax.tree.structure(First(base.alpha, base.beta)) != jax.tree.structure(
        Second(base.alpha, base.beta))
    np.testing.assert_allclose(np.asarray(scheme.decode(jnp.ones((10, 1)))),
                               np.asarray(base.decode(jnp.ones((10, 1)))) / 1.5, rtol=1e-12)
    # decoder-only: a sweep over it reuses the coded inputs (encoder_view drops it)
    assert np.shape(scheme.replace(damping=jnp.ones(3)).encoder_view().damping) == ()


def test_an_undeclared_field_is_an_error_at_class_creation_naming_it():
    with pytest.raises(TypeError, match="the field 'gain' is not declared.*letcc_jax.field"):
        class Plain(lc.BACC):
            gain: float = 1.0
    with pytest.raises(TypeError, match="the field 'gain' is not declared"):
        class Bare(lc.BACC):
            gain: float = dataclasses.field(default=1.0)
    with pytest.raises(TypeError, match="the field 'gain' needs ndim"):
        class NoRank(lc.BACC):
            gain: float = lc.field(default=1.0)
    with pytest.raises(TypeError, match="decoder_fields names \\['nope'\\]"):
        class Wrong(lc.BACC):
            decoder_fields: ClassVar[tuple[str, ...]] = ("nope",)

    class Constant(lc.BACC):  # a ClassVar is no field
        scale: ClassVar[float] = 2.0
    assert Constant.scale == 2.0 and Constant.name == "constant"


def test_field_arguments_and_a_decorated_subclass_are_errors():
    with pytest.raises(ValueError, match="constraint must be one of"):
        lc.field(ndim=0, constraint="odd")
    with pytest.raises(ValueError, match="a static field is a setting"):
        lc.field(static=True, ndim=0)

    # subclassing makes the dataclass and the pytree: decorating again fails where it stands
    with pytest.raises(TypeError, match="Cannot overwrite attribute __setattr__"):
        @dataclasses.dataclass(frozen=True, eq=False)
        class Decorated(lc.BACC):
            gain: float = lc.field(ndim=0, default=1.0, kw_only=True)
    with pytest.raises(ValueError, match="Duplicate custom .*PyTreeDef type registration"):
        @jax.tree_util.register_dataclass
        class Registered(lc.BACC):
            pass


@pytest.mark.parametrize("value, match", [
    (-1.0, "damping must be finite and >= 0, got -1.0"),
    (np.nan, "damping must be finite and >= 0"),
    ("x", "damping must be a real number or array, got the string"),
    (np.full(20, -1.0), r"got -1.0 at index \(0,\) \(of an array of shape \(20,\)\)"),
])
def test_declared_constraints_are_checked_with_the_field_named(value, match):
    base = lc.bacc(4, 10)
    with pytest.raises((ValueError, TypeError), match=match):
        Damped(base.alpha, base.beta, damping=value)
    with pytest.raises(ValueError, match="ridge must be finite and > 0"):
        weighted(3, 8).replace(ridge=0.0)


def test_sweep_axes_maps_a_swept_scheme_under_the_callers_vmap(dtype):
    lams = jnp.asarray([0.0, 1e-4, 1e-2], dtype)
    sweep = lc.letcc(5, 16).replace(lam_dec=lams)
    Y = jnp.sin(3 * sweep.beta.astype(dtype))[:, None]
    alive = jnp.arange(16) % 5 != 0
    axes = lc.sweep_axes(sweep)
    assert axes.lam_dec == 0 and axes.alpha is None and axes.beta is None
    got = jax.jit(jax.vmap(lambda s: s.decode(Y, alive), in_axes=(axes,)))(sweep)
    for i, lam in enumerate(lams):
        np.testing.assert_allclose(np.asarray(got[i]), np.asarray(
            lc.letcc(5, 16, lam_dec=float(lam)).decode(Y, alive)), rtol=1e-5, atol=1e-6)
    # a pytree of schemes and models, and other leaves
    mixed = lc.sweep_axes({"scheme": sweep, "model": lc.GaussianNoise(jnp.ones(3)), "x": 1.0})
    assert mixed["x"] is None and mixed["model"].sigma == 0


def test_a_vmap_that_maps_a_node_axis_is_a_clear_error():
    # in_axes=0 over a scheme swept over beta only maps alpha's node axis too (K = 4 sweep
    # points): the decode sees alpha of shape () and says what to do.
    base = lc.bacc(4, 4)
    sweep = base.replace(beta=jnp.stack([base.beta] * 4))
    with pytest.raises(ValueError, match="alpha must have at least 1 dimension.*got shape \\(\\).*sweep_axes"):
        jax.vmap(lambda s: s.decode(jnp.ones((4, 1))))(sweep)
    # the per-round methods name the swept field and the fix
    with pytest.raises(ValueError, match=r"beta of shape \(4, 4\).*sweep_axes"):
        sweep.decode(jnp.ones((4, 1)))
    ok = jax.vmap(lambda s: s.decode(jnp.ones((4, 1))), in_axes=(lc.sweep_axes(sweep),))(sweep)
    assert ok.shape == (4, 4, 1)


def test_register_scheme_and_make_scheme():
    lc.register_scheme("weighted-test", lambda K, N, **options: weighted(K, N, **options))
    try:
        assert isinstance(lc.make_scheme("weighted-test", 3, 8, seed=1), Weighted)
        with pytest.raises(ValueError, match="registered already; pass replace=True"):
            lc.register_scheme("weighted-test", lambda K, N: weighted(K, N))
        with pytest.raises(TypeError, match="non-empty string"):
            lc.register_scheme("", weighted)
        with pytest.raises(TypeError, match="must be callable"):
            lc.register_scheme("x", 3)
    finally:
        lc.SCHEMES.pop("weighted-test")
    assert lc.make_scheme("bspline", 4, 10).name == "bspline"


# ------------------------------------------------------------------ conformance kit

BUILTIN = {
    "letcc": lambda: lc.letcc(6, 20),
    "letcc+residual": lambda: lc.residual_letcc(6, 20),
    "letcc+bounded": lambda: lc.bounded_letcc(6, 20, fallback=np.zeros(2), prior_std=np.ones(2)),
    "bacc": lambda: lc.bacc(6, 20),
    "lcc": lambda: lc.lcc(4, 20),
    "uncoded": lambda: lc.uncoded(6, 20),
    "bspline": lambda: lc.bspline(6, 20),
    "damped (user)": lambda: Damped(lc.bacc(6, 20).alpha, lc.bacc(6, 20).beta,
                                    damping=jnp.asarray(0.1)),
    "weighted (user)": lambda: weighted(4, 12),
}


@pytest.mark.parametrize("name", list(BUILTIN))
def test_every_scheme_passes_the_conformance_kit(name):
    # float64 for the schemes written on the public API here, float32 (the experiments'
    # dtype) for the library's own, whose float64 paths their own tests cover
    float64 = name.endswith("(user)") or name == "bspline"
    # the LeTCC family's sweeps, padding and jit have their own tests (test_core_sweeps,
    # test_stack, test_core_semantics), and compile the spline solvers again here
    checks = [c for c in CHECKS if not (name.startswith("letcc")
                                        and c in ("sweep", "padding", "jit"))]
    report = check_scheme(BUILTIN[name](), dtypes=(np.float32, np.float64) if float64
                          else (np.float32,), checks=checks)
    assert set(report) == set(checks)
    linear = name not in ("letcc+bounded",)
    assert report["linear"] == ("ok" if linear else "skipped: a nonlinear decoder")


def test_the_kit_catches_a_broken_scheme():
    class Clipped(lc.BACC):  # nonlinear, yet it keeps the default linear = True
        def apply_decoder(self, Y, alive):
            return jnp.clip(super().apply_decoder(Y, alive), -0.1, 0.1)

    base = lc.bacc(6, 20)
    with pytest.raises(AssertionError, match=r"check_scheme\(clipped\): linear: "
                                             r"decoder_matrix @ Y against decode"):
        check_scheme(Clipped(base.alpha, base.beta), checks=("linear",))

    with pytest.raises(ValueError, match="unknown checks"):
        check_scheme(base, checks=("nope",))
    with pytest.raises(ValueError, match="unswept, unpadded"):
        check_scheme(base.pad_workers(25))
