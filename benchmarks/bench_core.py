"""Core benchmarks: Monte Carlo decode throughput against a scipy loop, single-decode time
against N, and float32 accuracy against float64.

    python benchmarks/bench_core.py            # full run (a few minutes on 2 cores)
    python benchmarks/bench_core.py --smoke    # seconds, for CI

Prints Markdown tables and writes benchmarks/results/core.json.
"""

from __future__ import annotations

import argparse
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from scipy.interpolate import make_smoothing_spline  # noqa: E402

import letcc_jax as lc  # noqa: E402
from _common import best_time, machine, markdown_table, write_json  # noqa: E402


def smooth_outputs(beta, m, dtype):
    """Worker outputs of a smooth f along the worker tags: (N, m)."""
    freq = np.linspace(0.5, 3.0, m)
    return jnp.asarray(np.sin(np.outer(beta, freq) + freq), dtype)


def throughput(N, K, S, m, lam, patterns, scipy_patterns):
    scheme = lc.letcc(K, N, lam_dec=lam)
    alpha, beta = np.asarray(scheme.alpha), np.asarray(scheme.beta)
    Y = smooth_outputs(beta, m, jnp.float64)
    masks = jax.vmap(lambda k: lc.ExactStragglers(S).sample(k, N))(
        jax.random.split(jax.random.PRNGKey(0), patterns)
    )
    decode_all = jax.jit(jax.vmap(lambda a: scheme.decode(Y, a)))
    t_ours = best_time(lambda: decode_all(masks).block_until_ready(), repeats=3)

    masks_np, Y_np = np.asarray(masks[:scipy_patterns]), np.asarray(Y)

    def scipy_loop():
        out = []
        for a in masks_np:
            spl = make_smoothing_spline(beta[a], Y_np[a], lam=a.sum() * lam)
            out.append(spl(alpha))
        return out

    start = time.perf_counter()
    ref = scipy_loop()
    t_scipy = (time.perf_counter() - start) / scipy_patterns
    ours = np.asarray(decode_all(masks[:scipy_patterns]))
    agree = float(np.max(np.abs(ours - np.stack(ref))))
    return {
        "N": N, "K": K, "S": S, "m": m, "lam_dec": lam,
        "ours_patterns_per_s": patterns / t_ours,
        "scipy_patterns_per_s": 1.0 / t_scipy,
        "ratio": (patterns / t_ours) * t_scipy,
        "max_abs_diff_vs_scipy": agree,
    }


def decode_time(N, K, m, lam, dtype):
    scheme = lc.letcc(K, N, lam_dec=lam)
    Y = smooth_outputs(np.asarray(scheme.beta), m, dtype)
    alive = lc.ExactStragglers(N // 5).sample(jax.random.PRNGKey(1), N)
    decode = jax.jit(lambda Y, a: scheme.decode(Y, a))
    return best_time(lambda: decode(Y, alive).block_until_ready(), repeats=5, min_time=0.1)


def float32_error(N, K, m, lam):
    scheme = lc.letcc(K, N, lam_dec=lam)
    Y64 = smooth_outputs(np.asarray(scheme.beta), m, jnp.float64)
    Y32 = Y64.astype(jnp.float32)
    alive = lc.ExactStragglers(N // 5).sample(jax.random.PRNGKey(2), N)
    ref = scheme.decode(Y32.astype(jnp.float64), alive)  # same data, float64 arithmetic
    out = scheme.decode(Y32, alive)
    return float(jnp.max(jnp.abs(out - ref)) / jnp.max(jnp.abs(ref)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (seconds)")
    args = parser.parse_args()
    info = machine()
    print(f"machine: {info['cpu']} ({info['cores']} cores), jax {info['jax']} on {info['backend']}")

    if args.smoke:
        tp_cfg = dict(patterns=200, scipy_patterns=20)
        sizes = [100, 1000]
        err_sizes = [100, 500]
    else:
        tp_cfg = dict(patterns=20000, scipy_patterns=300)
        sizes = [100, 300, 1000, 3000, 10000, 30000, 100000]
        err_sizes = [100, 200, 500, 1000, 2000, 5000, 10000]

    tp = [throughput(200, 50, 40, 10, lam, **tp_cfg) for lam in (1e-6, 1e-4)]
    print("\n## Monte Carlo decode throughput (N=200, K=50, S=40, m=10)\n")
    print(markdown_table(
        ["lam_dec", "letcc_jax patterns/s", "scipy loop patterns/s", "ratio", "max |diff|"],
        [[r["lam_dec"], f"{r['ours_patterns_per_s']:.0f}", f"{r['scipy_patterns_per_s']:.0f}",
          f"{r['ratio']:.0f}x", f"{r['max_abs_diff_vs_scipy']:.1e}"] for r in tp],
    ))

    timing = []
    for N in sizes:
        row = {"N": N}
        for name, dtype in (("float32", jnp.float32), ("float64", jnp.float64)):
            row[name + "_ms"] = 1e3 * decode_time(N, 50, 10, 1e-6, dtype)
        timing.append(row)
    print("\n## Single decode time after compilation (K=50, m=10, S=N/5, lam_dec=1e-6)\n")
    print(markdown_table(
        ["N", "float32 ms", "float64 ms", "float64 us per worker"],
        [[r["N"], f"{r['float32_ms']:.3f}", f"{r['float64_ms']:.3f}",
          f"{1e3 * r['float64_ms'] / r['N']:.3f}"] for r in timing],
    ))

    errors = [{"N": N, **{f"lam={lam:g}": float32_error(N, 20, 10, lam) for lam in (0.0, 1e-6)}}
              for N in err_sizes]
    print("\n## float32 decode vs float64 decode of the same data (K=20, m=10, S=N/5)\n")
    keys = [k for k in errors[0] if k != "N"]
    print(markdown_table(["N"] + [f"rel. error {k}" for k in keys],
                         [[e["N"]] + [f"{e[k]:.1e}" for k in keys] for e in errors]))
    path = write_json("core" + ("_smoke" if args.smoke else ""),
                      {"machine": info, "throughput": tp, "decode_time": timing, "float32_error": errors})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
