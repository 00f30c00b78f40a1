"""Registering the library's frozen dataclasses (schemes, models, fits) as pytrees.

``jax.tree_util.register_dataclass`` would be the obvious tool, but with it the tree
structures of two *different* registered dataclasses compare equal as soon as they hold
the same number of leaves and equal static fields: on jaxlib 0.10,
``tree_structure(BACC(...)) == tree_structure(Uncoded(...))``. jit keys its cache of
compiled programs on argument structures, so whenever two such keys met in the cache's
hash table, a BACC scheme ran the program compiled for Uncoded: a wrong number with no
error. ``pytree_dataclass`` registers through ``register_pytree_with_keys`` instead, whose
structures always include the class, and keeps what ``register_dataclass`` offered:
fields marked ``metadata={"static": True}`` are auxiliary data (hashable, part of jit's
cache key), the other ``init`` fields are children, and key paths name the fields.
"""

from __future__ import annotations

import dataclasses

import jax

__all__ = ["pytree_dataclass"]


def pytree_dataclass(cls: type) -> type:
    """Register the dataclass ``cls`` as a pytree node; returns ``cls`` (a decorator).

    Children are the ``init`` fields without ``metadata["static"]``, in declaration order;
    static fields travel as auxiliary data. Rebuilding sets the fields without calling
    ``__init__`` (so without ``__post_init__``'s checks).
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"pytree_dataclass needs a dataclass, got {cls!r}.")
    fields = [f for f in dataclasses.fields(cls) if f.init]
    data = tuple(f.name for f in fields if not f.metadata.get("static", False))
    meta = tuple(f.name for f in fields if f.metadata.get("static", False))
    keys = tuple(jax.tree_util.GetAttrKey(name) for name in data)

    def flatten(node):
        return ([getattr(node, name) for name in data],
                tuple(getattr(node, name) for name in meta))

    def flatten_with_keys(node):
        return ([(key, getattr(node, name)) for key, name in zip(keys, data)],
                tuple(getattr(node, name) for name in meta))

    def unflatten(aux, children):
        # Without __init__: JAX rebuilds trees from gradients, tangents and placeholder
        # leaves (None, in_axes specs), which are no parameters to check (see
        # letcc_jax._validation.Checked).
        node = object.__new__(cls)
        for name, value in zip(meta + data, tuple(aux) + tuple(children)):
            object.__setattr__(node, name, value)
        return node

    jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)
    return cls
