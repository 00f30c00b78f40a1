"""Core benchmarks: Monte Carlo decode throughput against a scipy loop, single-decode time
against N, and float32 accuracy against float64.

    python benchmarks/bench_core.py            # full run (a few minutes on 2 cores)
    python benchmarks/bench_core.py --smoke    # seconds, for CI
    python benchmarks/bench_core.py --float32-scale           # float32 at N = 10^4..10^6
    python benchmarks/bench_core.py --float32-scale --smoke   # the same at N = 10^3

Prints Markdown tables and writes benchmarks/results/core.json (``--float32-scale``:
core_float32.json).
"""

from __future__ import annotations

import functools
import os
import time

import jax

jax.config.update("jax_enable_x64", True)
# One JAX device per core, so that lc.monte_carlo can share trials between them (the
# one-core rows pass devices=jax.devices()[:1]).
jax.config.update("jax_num_cpu_devices", os.cpu_count() or 1)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from scipy.interpolate import make_smoothing_spline  # noqa: E402

import letcc_jax as lc  # noqa: E402
from _common import best_time, markdown_table, start, write_json  # noqa: E402


def smooth_outputs(beta, m, dtype):
    """Worker outputs of a smooth f along the worker tags: (N, m)."""
    freq = np.linspace(0.5, 3.0, m)
    return jnp.asarray(np.sin(np.outer(beta, freq) + freq), dtype)


def _network(params, x):
    W, b = params
    return jnp.sin(x @ W + b)


def throughput(N, K, S, m, lam, trials, scipy_trials, dtype=jnp.float64):
    """Patterns per second of lc.monte_carlo, on one core and on all of them, against a
    scipy loop decoding the same patterns from the same worker outputs (one
    make_smoothing_spline fit per pattern, one core)."""
    d = 8
    key_w, key_x, key_mc = jax.random.split(jax.random.PRNGKey(0), 3)
    params = (jax.random.normal(key_w, (d, m), dtype), jnp.linspace(0, 1, m, dtype=dtype))
    f = functools.partial(_network, params)
    X = jax.random.normal(key_x, (K, d), dtype)
    scheme = lc.letcc(K, N, lam_dec=lam)
    stragglers = lc.ExactStragglers(S)

    def ours(devices=None):
        return lc.monte_carlo(f, scheme, X, key_mc, trials=trials, stragglers=stragglers,
                              devices=devices).mse.block_until_ready()

    t_ours = best_time(lambda: ours(jax.devices()[:1]), repeats=3)
    t_all = best_time(ours, repeats=3)

    # The same patterns, decoded by scipy: monte_carlo derives trial i's mask from
    # split(split(key, trials)[i])[0].
    alpha, beta = np.asarray(scheme.alpha, np.float64), np.asarray(scheme.beta, np.float64)
    truth = np.asarray(jax.vmap(f)(X), np.float64)
    Y = np.asarray(jax.vmap(f)(scheme.encode(X)), np.float64)
    keys = jax.random.split(key_mc, trials)[:scipy_trials]
    masks = np.asarray(jax.vmap(lambda k: stragglers.sample(jax.random.split(k)[0], N))(keys))

    def scipy_loop():
        losses = []
        for a in masks:
            est = make_smoothing_spline(beta[a], Y[a], lam=a.sum() * lam)(alpha)
            losses.append(np.mean(np.sum((est - truth) ** 2, axis=1)))
        return np.array(losses)

    start = time.perf_counter()
    ref = scipy_loop()
    t_scipy = (time.perf_counter() - start) / scipy_trials
    mse_ours = np.asarray(ours()[:scipy_trials], np.float64)
    return {
        "N": N, "K": K, "S": S, "m": m, "lam_dec": lam, "dtype": jnp.dtype(dtype).name,
        "ours_patterns_per_s": trials / t_ours,
        "ours_all_cores_patterns_per_s": trials / t_all,
        "devices": len(jax.devices()),
        "scipy_patterns_per_s": 1.0 / t_scipy,
        "ratio": (trials / t_ours) * t_scipy,
        "ratio_all_cores": (trials / t_all) * t_scipy,
        "max_rel_mse_diff_vs_scipy": float(np.max(np.abs(mse_ours - ref) / ref)),
    }


def decode_time(N, K, m, lam, dtype, solver="auto"):
    scheme = lc.letcc(K, N, lam_dec=lam, solver=solver)
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


SOLVERS = ("sris", "blocked", "parallel")


def _rounded_like_new(alpha, beta):
    """The points as the float32 decode of float64 points sees them: the worker spacings,
    and each data point's offset from the worker at or before it, rounded to float32."""
    h = np.diff(beta).astype(np.float32).astype(np.float64)
    beta_r = beta[0] + np.concatenate([[0.0], np.cumsum(h)])
    j = np.clip(np.searchsorted(beta, alpha, side="right") - 1, 0, beta.size - 2)
    offset = (alpha - beta[j]).astype(np.float32).astype(np.float64)
    return beta_r[j] + offset, beta_r


def float32_at_scale(N, seed=0, K=50, lam=1e-6):
    """The float32 decode of white-noise outputs (m = 2, 20% random stragglers) against the
    float64 decode of the same data, split into what the points' rounding costs (float64
    solver on the rounded points against float64 solver on the exact ones) and what the
    float32 solver costs on the same points; for points cast to float32 before the fit
    ("old") and for the float64 points with float32 spacings and offsets ("new")."""
    rng = np.random.default_rng(seed)
    scheme = lc.letcc(K, N, lam_dec=lam)
    Y = jnp.asarray(rng.standard_normal((N, 2)), jnp.float32)
    alive = jnp.asarray(rng.random(N) >= 0.2)
    decode = jax.jit(lambda s, y, a: s.decode(y, a))
    alpha, beta = np.asarray(scheme.alpha), np.asarray(scheme.beta)

    def run(solver, dtype, points=None):
        """The decode in ``dtype`` from the scheme's float64 points, or from ``points`` as
        leaves of that dtype (float32 points: what the decode saw before, and sees with
        jax_enable_x64 off)."""
        s = scheme.replace(solver=solver)
        if points is not None:
            s = s.replace(alpha=jnp.asarray(points[0], dtype), beta=jnp.asarray(points[1], dtype))
        return np.asarray(decode(s, Y.astype(dtype), alive), np.float64)

    exact = run("sris", jnp.float64)
    scale = np.max(np.abs(exact))

    def err(v, ref=exact):
        return float(np.max(np.abs(v - ref)) / scale)

    cast = (alpha.astype(np.float32).astype(np.float64), beta.astype(np.float32).astype(np.float64))
    on_cast, on_new = run("sris", jnp.float64, cast), run("sris", jnp.float64,
                                                          _rounded_like_new(alpha, beta))
    row = {"N": N, "seed": seed, "merged_workers": int(N - np.unique(cast[1]).size),
           "points_old": err(on_cast), "points_new": err(on_new)}
    for solver in SOLVERS:
        old, new = run(solver, jnp.float32, cast), run(solver, jnp.float32)
        row[solver] = {"old": err(old), "old_solver": err(old, on_cast),
                       "new": err(new), "new_solver": err(new, on_new)}
    return row


def decode_cpu_time(N, K, m, lam, dtype, solver="auto", calls=5, repeats=7):
    """Best CPU time of this process per decode (seconds): on a machine shared with other
    jobs it moves less than the wall time, which waits for the cores."""
    scheme = lc.letcc(K, N, lam_dec=lam, solver=solver)
    Y = smooth_outputs(np.asarray(scheme.beta), m, dtype)
    alive = lc.ExactStragglers(N // 5).sample(jax.random.PRNGKey(1), N)
    decode = jax.jit(lambda Y, a: scheme.decode(Y, a))
    decode(Y, alive).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        begin = time.process_time()
        for _ in range(calls):
            decode(Y, alive).block_until_ready()
        best = min(best, (time.process_time() - begin) / calls)
    return best


def float32_crossover(sizes, K=50, m=10, lam=1e-6):
    """One float32 decode's wall and CPU time by each smoother and by "auto" (K=50, m=10,
    S=N/5)."""
    rows = []
    for N in sizes:
        row = {"N": N}
        for solver in SOLVERS + ("auto",):
            row[solver + "_ms"] = 1e3 * decode_time(N, K, m, lam, jnp.float32, solver)
            row[solver + "_cpu_ms"] = 1e3 * decode_cpu_time(N, K, m, lam, jnp.float32, solver)
        rows.append(row)
        print(row, flush=True)
    return rows


def main_float32(args, info):
    sizes = [1000] if args.smoke else [10_000, 100_000, 1_000_000]
    errors = [float32_at_scale(N) for N in sizes]
    print("\n## float32 decode vs float64 decode of the same data: points and solver "
          "(K=50, white-noise outputs, m=2, S=N/5, lam_dec=1e-6)\n")
    head = ["N", "merged workers (old)", "points old", "points new"]
    for solver in SOLVERS:
        head += [f"{solver} old (solver part)", f"{solver} new (solver part)"]
    body = []
    for r in errors:
        line = [r["N"], r["merged_workers"], f"{r['points_old']:.1e}", f"{r['points_new']:.1e}"]
        for solver in SOLVERS:
            e = r[solver]
            line += [f"{e['old']:.1e} ({e['old_solver']:.1e})",
                     f"{e['new']:.1e} ({e['new_solver']:.1e})"]
        body.append(line)
    print(markdown_table(head, body))
    timing = float32_crossover([1000, 3000] if args.smoke else
                               [300, 1000, 3000, 10_000, 20_000, 30_000, 100_000])
    print("\n## float32 decode time by smoother, wall (CPU) ms (K=50, m=10, S=N/5, "
          "lam_dec=1e-6)\n")
    print(markdown_table(["N"] + [f"{s} ms" for s in SOLVERS + ("auto",)],
                         [[r["N"]] + [f"{r[s + '_ms']:.2f} ({r[s + '_cpu_ms']:.2f})"
                                      for s in SOLVERS + ("auto",)] for r in timing]))
    path = write_json("core_float32" + ("_smoke" if args.smoke else ""),
                      {"machine": info, "float32_at_scale": errors, "float32_time": timing})
    print(f"\nwrote {path}")


def main():
    args, info = start(__doc__.splitlines()[0], lambda parser: parser.add_argument(
        "--float32-scale", action="store_true",
        help="only the float32 tables at N = 10^4..10^6 (points vs solver, crossover)"))
    if args.float32_scale:
        return main_float32(args, info)

    if args.smoke:
        tp_cfg = dict(trials=200, scipy_trials=20)
        sizes = [100, 1000]
        err_sizes = [100, 500]
    else:
        tp_cfg = dict(trials=20000, scipy_trials=300)
        sizes = [100, 300, 1000, 3000, 10000, 30000, 100000]
        err_sizes = [100, 200, 500, 1000, 2000, 5000, 10000]

    tp = [throughput(200, 50, 40, 10, lam, dtype=dtype, **tp_cfg)
          for lam in (1e-6, 1e-4) for dtype in (jnp.float64, jnp.float32)]
    print("\n## Monte Carlo throughput, lc.monte_carlo vs a scipy make_smoothing_spline loop"
          " (N=200, K=50, S=40, m=10)\n")
    print(markdown_table(
        ["lam_dec", "dtype", "scipy loop patterns/s", "letcc_jax 1 core patterns/s", "ratio",
         f"letcc_jax {tp[0]['devices']} cores patterns/s", "ratio", "max rel. diff of per-pattern MSE"],
        [[r["lam_dec"], r["dtype"], f"{r['scipy_patterns_per_s']:.0f}",
          f"{r['ours_patterns_per_s']:.0f}", f"{r['ratio']:.0f}x",
          f"{r['ours_all_cores_patterns_per_s']:.0f}", f"{r['ratio_all_cores']:.0f}x",
          f"{r['max_rel_mse_diff_vs_scipy']:.1e}"] for r in tp],
    ))

    timing = []
    for N in sizes:
        row = {"N": N}
        for name, dtype in (("float32", jnp.float32), ("float64", jnp.float64)):
            row[name + "_ms"] = 1e3 * decode_time(N, 50, 10, 1e-6, dtype)
            row[name + "_reinsch_ms"] = 1e3 * decode_time(N, 50, 10, 1e-6, dtype, "reinsch")
        row["float64_sris_ms"] = 1e3 * decode_time(N, 50, 10, 1e-6, jnp.float64, "sris")
        row["float64_interp_ms"] = 1e3 * decode_time(N, 50, 10, 0.0, jnp.float64)
        timing.append(row)
    print("\n## Single decode time after compilation (K=50, m=10, S=N/5)\n")
    print(markdown_table(
        ["N", "lam=1e-6 float32 ms", "lam=1e-6 float64 ms", "float64 us per worker",
         "solver=sris float64 ms", "solver=reinsch float32 ms", "solver=reinsch float64 ms",
         "lam=0 float64 ms"],
        [[r["N"], f"{r['float32_ms']:.3f}", f"{r['float64_ms']:.3f}",
          f"{1e3 * r['float64_ms'] / r['N']:.3f}", f"{r['float64_sris_ms']:.3f}",
          f"{r['float32_reinsch_ms']:.3f}", f"{r['float64_reinsch_ms']:.3f}",
          f"{r['float64_interp_ms']:.3f}"] for r in timing],
    ))

    lams = (0.0, 1e-6) if args.smoke else (0.0, 1e-6, 1e-4, 1e-2, 1.0)
    errors = [{"N": N, **{f"lam={lam:g}": float32_error(N, 20, 10, lam) for lam in lams}}
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
