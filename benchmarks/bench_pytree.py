"""Cost of the schemes' pytree registration on the eager path.

Schemes register through ``letcc_jax._pytree.pytree_dataclass`` (Python flatten functions)
rather than ``jax.tree_util.register_dataclass`` (C++), so that different classes never
share a tree structure. This measures what that costs per flatten, against a
``register_dataclass`` node of four leaves, and next to one eager decode.

    python benchmarks/bench_pytree.py
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

import letcc_jax as lc


def per_call_us(fn, calls: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FourLeaves:
    a: jax.Array
    b: jax.Array
    c: jax.Array
    d: jax.Array


def main():
    scheme = lc.letcc(20, 100)
    plain = FourLeaves(*(jnp.zeros(3) for _ in range(4)))
    Y, alive = jnp.ones((100, 10)), np.ones(100, bool)
    rows = [
        ("flatten a LeTCC scheme (pytree_dataclass)",
         per_call_us(lambda: jax.tree.flatten(scheme), 20_000)),
        ("flatten a 4-leaf register_dataclass node",
         per_call_us(lambda: jax.tree.flatten(plain), 20_000)),
        ("eager decode, K = 20, N = 100, m = 10",
         per_call_us(lambda: scheme.decode(Y, alive).block_until_ready(), 2_000)),
    ]
    print("| operation | µs per call |\n|---|---|")
    for name, us in rows:
        print(f"| {name} | {us:.1f} |")


if __name__ == "__main__":
    main()
