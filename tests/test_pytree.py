"""The library's pytrees: a class is part of its tree structure.

jit keys compiled programs on argument structures; two classes whose structures compare
equal can share a compiled program (``register_dataclass`` on jaxlib 0.10 made
``BACC`` and ``Uncoded`` of the same sizes equal, and a BACC encode returned replicated
inputs once the two keys met in jit's cache).
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import letcc_jax as lc
from letcc_jax._pytree import pytree_dataclass
from letcc_jax.sim import _rounds as _round
from letcc_jax.core.spline import SplineFit


def _instances():
    """One instance of every registered class, shaped so that as many as possible share
    their leaf count, shapes and static values."""
    K, N = 4, 7
    schemes = [lc.make_scheme(name, K, N) for name in ("letcc", "bacc", "lcc", "uncoded")]
    schemes.append(lc.ResidualLeTCC.from_letcc(schemes[0]))
    schemes.append(lc.uncoded(K, N, order=[2, 0, 3, 1], fallback=jnp.zeros(3), combine="median"))
    stragglers = [lc.NoStragglers(), lc.ExactStragglers(1), lc.BernoulliStragglers(0.1),
                  lc.LatencyStragglers(wait_for=1)]
    faults = [lc.GaussianNoise(0.1), lc.Adversaries(1), lc.FailedWorkers(1)]
    z = jnp.zeros((N, 1))
    internal = [_round._Outputs(z), SplineFit(jnp.zeros(N), z, z)]
    return schemes + stragglers + faults + internal


def test_every_class_has_its_own_tree_structure():
    objects = _instances()
    for a, b in itertools.combinations(objects, 2):
        ta, tb = jax.tree.structure(a), jax.tree.structure(b)
        assert ta != tb, f"{type(a).__name__} and {type(b).__name__} share {ta}"


def test_equal_leaf_layouts_do_not_share_a_compiled_program():
    """BACC and Uncoded with the same sizes: one jitted function, two different answers,
    each equal to the float64 reference of its own scheme (replication copies inputs)."""
    bacc, uncoded = lc.make_scheme("bacc", 4, 7), lc.make_scheme("uncoded", 4, 7)
    X = np.random.default_rng(0).normal(size=(4, 2))
    encode = jax.jit(lambda scheme, x: scheme.apply_encoder(x))
    for _ in range(3):
        np.testing.assert_array_equal(encode(uncoded, X), X[np.arange(7) % 4])
        np.testing.assert_allclose(encode(bacc, X), np.asarray(bacc.encoder_matrix()) @ X, atol=1e-12)
        assert not np.allclose(encode(bacc, X), X[np.arange(7) % 4])


@pytest.mark.parametrize("obj", _instances(), ids=lambda o: type(o).__name__)
def test_round_trip_and_key_paths(obj):
    leaves, treedef = jax.tree.flatten(obj)
    again = jax.tree.unflatten(treedef, leaves)
    assert type(again) is type(obj)
    for field in dataclasses.fields(obj):
        a, b = getattr(obj, field.name), getattr(again, field.name)
        if field.metadata.get("static", False):
            assert a == b
        else:
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    paths = [jax.tree_util.keystr(path)
             for path, _ in jax.tree_util.tree_flatten_with_path(obj)[0]]
    data = [f.name for f in dataclasses.fields(obj)  # None (an unset option) has no leaf
            if f.init and not f.metadata.get("static", False) and getattr(obj, f.name) is not None]
    assert paths == [f".{name}" for name in data]


def test_static_fields_are_part_of_the_structure():
    assert jax.tree.structure(lc.Adversaries(1)) != jax.tree.structure(lc.Adversaries(2))
    assert jax.tree.structure(lc.Adversaries(1)) == jax.tree.structure(lc.Adversaries(1, 3.0))


def test_rejects_a_plain_class():
    with pytest.raises(TypeError, match="dataclass"):
        pytree_dataclass(type("Plain", (), {}))


@pytest.mark.parametrize("obj", _instances()[:13], ids=lambda o: type(o).__name__)
def test_rebuilding_runs_no_checks_and_entry_points_still_do(obj):
    """JAX rebuilds trees from placeholders (None, in_axes specs, gradients): that must not
    run the constructor's checks; a rebuilt object that holds bad values is reported by
    ``validate``, which every entry point calls, and a constructed one was checked once."""
    leaves, treedef = jax.tree.flatten(obj)
    jax.tree.unflatten(treedef, [None] * len(leaves))  # would fail in any constructor check
    assert obj.__dict__.get("_validated") is True
    if not leaves:
        return
    bad = jax.tree.unflatten(treedef, [jnp.full(jnp.shape(v), jnp.nan) for v in leaves])
    assert "_validated" not in bad.__dict__
    with pytest.raises((ValueError, TypeError)):
        bad.validate()


def test_models_split_a_checked_method_from_a_traced_rule():
    """``sample``/``apply`` check their arguments, ``draw_mask``/``corrupt`` (what the
    simulation engine calls) compute the same thing without checks."""
    key = jax.random.key(3)
    stragglers = lc.ExactStragglers(3)
    np.testing.assert_array_equal(stragglers.sample(key, 10), stragglers.draw_mask(key, 10))
    with pytest.raises(TypeError, match="key"):
        stragglers.sample(3, 10)
    Y = jnp.ones((10, 2))
    noise = lc.GaussianNoise(0.5)
    np.testing.assert_array_equal(noise.apply(key, Y), noise.corrupt(key, Y))
    with pytest.raises(ValueError, match=r"\(N, m\)"):
        noise.apply(key, jnp.ones(10))
