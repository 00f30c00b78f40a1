"""Values inside a caller's ``shard_map``: the manual mesh axes a value varies over.

With ``shard_map``'s type checks on (``check_vma=True``, the default), a value computed from
the caller's sharded arguments varies over their mesh axes, and a constant made inside the
library does not. A loop's carry must keep its type from one step to the next, so a carry
that starts as such a constant and takes in the sharded data is a type error unless it is
made varying first (``varying_like``). Outside ``shard_map`` nothing varies and nothing is
changed.
"""

from __future__ import annotations

import jax
from jax import lax


def varying_like(tree, *like):
    """``tree``'s leaves made varying over every manual mesh axis that a leaf of ``like``
    varies over (inside a caller's ``shard_map``; elsewhere there are none, and ``tree``
    comes back as it is). A scan's carry must start with the type its body returns, which
    varies wherever the scanned data does: zeros made for a carry do not, by themselves."""
    axes = frozenset().union(*map(_varying, jax.tree.leaves(like)))

    def cast(leaf):
        missing = tuple(sorted(axes - _varying(leaf)))
        return lax.pcast(leaf, missing, to="varying") if missing else leaf

    return jax.tree.map(cast, tree) if axes else tree


def _varying(x) -> frozenset:
    """The manual mesh axes ``x`` varies over (its type's ``vma``, in older JAX releases)."""
    aval = jax.typeof(x)
    axis_type = getattr(aval, "manual_axis_type", None)
    return axis_type.varying if axis_type is not None else getattr(aval, "vma", frozenset())
