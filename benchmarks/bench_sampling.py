"""Drawing exactly-S straggler patterns: the library's sampler against the alternatives.

    python benchmarks/bench_sampling.py           # seconds
    python benchmarks/bench_sampling.py --smoke   # N = 40 only

``ExactStragglers`` draws a uniform S-subset of the N workers by selection sampling (one
scan of N steps carrying one count, so S may be traced: a sweep over S is one program).
Against it, for 2,000 patterns under ``jax.jit(jax.vmap(...))``: the partial Fisher-Yates
shuffle the library used before (min(S, N - S) swaps, S static), ``jax.random.permutation``
(a sort of N random keys) and, for scale, one LeTCC decode of each pattern (K = 8, m = 10,
lam_dec = 1e-3). Writes benchmarks/results/sampling.json.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

import letcc_jax as lc
from _common import best_time, markdown_table, start, write_json
from letcc_jax.sim._models import random_subset

PATTERNS = 2_000


def fisher_yates(key, N: int, count: int):
    """The first min(count, N - count) steps of a Fisher-Yates shuffle (count static)."""
    picks = min(count, N - count)
    steps = jnp.arange(picks)
    targets = jax.random.randint(key, (picks,), steps, N)

    def swap(perm, i_j):
        i, j = i_j
        return perm.at[i].set(perm[j]).at[j].set(perm[i]), None

    perm, _ = lax.scan(swap, jnp.arange(N), (steps, targets))
    chosen = jnp.zeros((N,), bool).at[perm[:picks]].set(True)
    return chosen if picks == count else ~chosen


def main():
    args, info = start(__doc__.splitlines()[0])
    keys = jax.random.split(jax.random.key(0), PATTERNS)
    rows, table = [], []
    for N in (40,) if args.smoke else (40, 160, 1000):
        S = N // 5
        draws = {
            "selection (library)": jax.jit(jax.vmap(lambda k, s: random_subset(k, N, s),
                                                    in_axes=(0, None))),
            "partial Fisher-Yates": jax.jit(jax.vmap(lambda k, s: fisher_yates(k, N, S),
                                                     in_axes=(0, None))),
            "permutation (sort)": jax.jit(jax.vmap(lambda k, s: jax.random.permutation(k, N) < s,
                                                   in_axes=(0, None))),
        }
        ms = {name: 1e3 * best_time(lambda d=draw: d(keys, S).block_until_ready())
              for name, draw in draws.items()}
        scheme = lc.letcc(8, N, lam_dec=1e-3)
        Y = jax.random.normal(jax.random.key(1), (N, 10))
        masks = ~draws["selection (library)"](keys, S)
        decode = jax.jit(jax.vmap(lambda m: scheme.decode(Y, m)))
        ms["LeTCC decode"] = 1e3 * best_time(lambda: decode(masks).block_until_ready())
        rows.append({"N": N, "S": S, "patterns": PATTERNS, "ms": ms})
        table.append([N, S] + [f"{v:.2f}" for v in ms.values()])
    print(f"\n{PATTERNS} patterns, ms (best of 5):\n")
    print(markdown_table(["N", "S"] + list(rows[0]["ms"]), table))
    write_json("sampling", {"machine": info, "rows": rows})


if __name__ == "__main__":
    main()
