"""Lockstep backends: every worker computes at once, stragglers are masks.

``VmapBackend`` vectorises the N workers on one device. ``ShardedBackend`` spreads them
over a 1-D mesh axis "workers" with ``jax.shard_map``: one slice of coded inputs per
device, on any platform and across hosts after ``jax.distributed.initialize``. SPMD
collectives are synchronous, so these backends cannot skip a slow device; they evaluate f
at scale and simulate stragglers with the ``alive`` mask.
"""

from __future__ import annotations

import functools
import time

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ..sim._rounds import outputs
from ._base import Answers, Backend, Round

__all__ = ["ShardedBackend", "VmapBackend"]


class _Lockstep(Backend):
    """A backend that evaluates all N workers together and masks the stragglers."""

    def _compute(self, f, coded, rnd: Round) -> Answers:
        for option, value in (("wait_for", rnd.wait_for), ("deadline", rnd.deadline),
                              ("faults", rnd.faults), ("tolerance", rnd.tolerance)):
            if value is not None:
                raise ValueError(
                    f"{option} needs an asynchronous backend (backend='dask'): the {self.name} "
                    "backend runs every worker in lockstep. Simulate stragglers with alive=."
                )
        start = time.perf_counter()
        Y = np.asarray(self._outputs(f, coded))
        elapsed = time.perf_counter() - start
        N = coded.shape[0]
        answers = Answers.empty(N, rnd.m, rnd.dtype)
        answers.outputs[rnd.alive] = Y[rnd.alive]
        answers.answered[:] = rnd.alive
        answers.arrival_s[rnd.alive] = elapsed
        return answers

    def _outputs(self, f, coded: np.ndarray) -> jax.Array:
        """f on every row of the (N, d) coded inputs, as an (N, m) array."""
        raise NotImplementedError


_vmap_outputs = jax.jit(outputs, static_argnames="f")


class VmapBackend(_Lockstep):
    """All N workers vectorised with ``jax.vmap`` on the default device.

    A lockstep backend: every worker computes, and stragglers are simulated with the
    ``alive`` mask of ``run`` (``wait_for``, ``deadline`` and ``faults`` need the Dask
    backend). ``workers.run(..., backend="vmap")``, the default, uses one.

    Example:
      >>> import jax.numpy as jnp, numpy as np
      >>> import letcc_jax as lc
      >>> from letcc_jax import workers
      >>> result = workers.VmapBackend().run(jnp.sin, lc.bacc(4, 10), jnp.ones((4, 2)),
      ...                                    alive=np.arange(10) >= 2)  # 2 stragglers
      >>> result.backend, int(result.used.sum()), result.estimate.shape
      ('vmap', 8, (4, 2))
    """

    name = "vmap"

    def _outputs(self, f, coded):
        return _vmap_outputs(f, coded)


@functools.partial(jax.jit, static_argnames=("f", "mesh", "axis"))
def _sharded_outputs(f, coded, mesh, axis):
    per_device = jax.shard_map(
        functools.partial(outputs, f), mesh=mesh, in_specs=P(axis), out_specs=P(axis)
    )
    # Replicate the (N, m) outputs so that every process can decode them.
    return jax.lax.with_sharding_constraint(per_device(coded), NamedSharding(mesh, P()))


class ShardedBackend(_Lockstep):
    """The N workers spread over a mesh axis, one slice of coded inputs per device.

    N need not divide the device count: the coded inputs are padded with copies of the last
    one (so f only sees genuine inputs) and the padding is dropped before decoding. The
    outputs are gathered to every device, so after ``jax.distributed.initialize`` every
    process gets the same decoded result (each process must call ``run`` with the same X).

    Args:
      mesh: a mesh with an axis named ``axis``; other axes, if any, replicate f. Default: a
        1-D mesh over all devices (of all processes) with ``AxisType.Auto``.
      axis: the mesh axis the workers are spread over.

    Raises:
      TypeError: ``mesh`` is not a ``jax.sharding.Mesh``.
      ValueError: ``mesh`` has no axis named ``axis``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import letcc_jax as lc
      >>> from letcc_jax import workers
      >>> backend = workers.ShardedBackend()             # all devices, axis "workers"
      >>> backend.devices == jax.device_count()
      True
      >>> result = backend.run(jnp.sin, lc.bacc(4, 10), jnp.ones((4, 2)))
      >>> result.backend, result.estimate.shape
      ('sharded', (4, 2))
    """

    name = "sharded"

    def __init__(self, mesh: Mesh | None = None, *, axis: str = "workers"):
        if mesh is None:
            mesh = jax.make_mesh((jax.device_count(),), (axis,), axis_types=(AxisType.Auto,))
        if not isinstance(mesh, Mesh):
            raise TypeError(f"mesh must be a jax.sharding.Mesh (e.g. jax.make_mesh(...)) or None, "
                            f"got {type(mesh).__name__}.")
        if axis not in mesh.axis_names:
            raise ValueError(f"the mesh has axes {mesh.axis_names}, none named {axis!r}; pass axis=.")
        self.mesh = mesh
        self.axis = axis

    @property
    def devices(self) -> int:
        """Number of devices along the workers axis."""
        return self.mesh.shape[self.axis]

    def _outputs(self, f, coded):
        N, d = coded.shape
        padded = -(-N // self.devices) * self.devices
        coded = np.concatenate([coded, np.broadcast_to(coded[-1:], (padded - N, d))])
        sharding = NamedSharding(self.mesh, P(self.axis))
        # Built from host data index by index, so it also works when devices span processes.
        xs = jax.make_array_from_callback(coded.shape, sharding, lambda index: coded[index])
        return np.asarray(_sharded_outputs(f, xs, self.mesh, self.axis))[:N]
