"""The library as users call it: eager, jitted and vmapped calls of the public API.

    python benchmarks/bench_api.py            # about two minutes on 2 cores
    python benchmarks/bench_api.py --smoke    # seconds, for CI

Three tables: the time of one call of every public entry point called eagerly (first call,
which compiles, then the median of later calls with new data), under the user's own
``jax.jit``, against the scipy call a user would otherwise make; decoding many straggler
patterns eagerly in a loop, under ``jax.jit(jax.vmap(scheme.decode))`` and with
``monte_carlo``; and a 10 x 26 (sigma, lam_dec) sweep in one call against a loop of
calls. Each table also counts XLA compilations (``jax.monitoring`` compile events).
Writes benchmarks/results/api.json.
"""

from __future__ import annotations

import functools
import os
import time

import jax

jax.config.update("jax_enable_x64", True)
# One JAX device per core, so that monte_carlo can share its trials; everything else runs
# on the first device, as in a user's process.
jax.config.update("jax_num_cpu_devices", os.cpu_count() or 1)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from scipy.interpolate import make_smoothing_spline  # noqa: E402

import letcc_jax as lc  # noqa: E402
from _common import best_time, markdown_table, start, write_json  # noqa: E402

COMPILES = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, seconds, **_: COMPILES.append(seconds) if "backend_compile" in event else None)


def _network(W, x):
    return jnp.sin(x @ W)


def eager_calls(K, N, m, S, repeats):
    """Per entry point: first eager call (compiles), median eager call, compilations in the
    later calls, the same call under the user's jax.jit, and scipy's equivalent."""
    rng = np.random.default_rng(0)
    d = 4
    f = functools.partial(_network, jnp.asarray(rng.standard_normal((d, m))))
    scheme = lc.letcc(K, N, lam_dec=1e-6)
    X = rng.standard_normal((K, d))
    Y = rng.standard_normal((N, m))
    beta, alpha = np.asarray(scheme.beta), np.asarray(scheme.alpha)
    masks = np.argsort(rng.random((repeats + 1, N)), axis=1) >= S
    keys = jax.random.split(jax.random.key(1), repeats + 1)
    calls = {
        "decode": (lambda i: scheme.decode(Y, masks[i]),
                   lambda i: make_smoothing_spline(beta[masks[i]], Y[masks[i]],
                                                   lam=masks[i].sum() * 1e-6)(alpha)),
        "encode": (lambda i: scheme.encode(X + i),
                   lambda i: make_smoothing_spline(alpha, X + i, lam=0.0)(beta)),
        "recovered": (lambda i: scheme.recovered(masks[i]), None),
        "decoder_matrix": (lambda i: scheme.decoder_matrix(masks[i]), None),
        "smoothing_spline": (lambda i: lc.smoothing_spline(beta, Y, masks[i], 1e-6, alpha),
                             lambda i: make_smoothing_spline(beta[masks[i]], Y[masks[i]],
                                                             lam=masks[i].sum() * 1e-6)(alpha)),
        "run_coded": (lambda i: lc.run_coded(f, scheme, X, keys[i],
                                             stragglers=lc.ExactStragglers(S)).estimate, None),
        "monte_carlo (100 trials)": (
            lambda i: lc.monte_carlo(f, scheme, X, keys[i], trials=100,
                                     stragglers=lc.ExactStragglers(S)).mse, None),
    }
    jitted = {"decode": jax.jit(scheme.decode), "encode": jax.jit(scheme.encode)}
    rows = []
    for name, (call, scipy_call) in calls.items():
        start = time.perf_counter()
        jax.block_until_ready(call(0))
        first = time.perf_counter() - start
        before = len(COMPILES)
        times = []
        for i in range(1, repeats + 1):
            start = time.perf_counter()
            jax.block_until_ready(call(i))
            times.append(time.perf_counter() - start)
        row = {"call": name, "first_ms": 1e3 * first, "eager_ms": 1e3 * float(np.median(times)),
               "compilations_after_first": len(COMPILES) - before}
        if name in jitted:
            args = (Y, jnp.asarray(masks[1])) if name == "decode" else (jnp.asarray(X),)
            row["jit_ms"] = 1e3 * best_time(lambda: jitted[name](*args).block_until_ready())
        if scipy_call is not None:
            row["scipy_ms"] = 1e3 * best_time(lambda: scipy_call(1))
        rows.append(row)
    return rows


def many_patterns(K, N, m, S, patterns, loop_patterns):
    """Patterns per second: an eager loop of decodes, the user's jit(vmap(decode)), and
    monte_carlo (one device, and every device), on the same worker outputs."""
    rng = np.random.default_rng(2)
    d = 8
    f = functools.partial(_network, jnp.asarray(rng.standard_normal((d, m))))
    X = jnp.asarray(rng.standard_normal((K, d)))
    scheme = lc.letcc(K, N, lam_dec=1e-6)
    Y = jax.vmap(f)(scheme.encode(X))
    masks = jnp.asarray(np.argsort(rng.random((patterns, N)), axis=1) >= S)
    vmapped = jax.jit(jax.vmap(scheme.decode, in_axes=(None, 0)))

    loop_masks = np.asarray(masks[:loop_patterns])

    def loop():
        for alive in loop_masks:
            scheme.decode(Y, alive).block_until_ready()

    def mc(devices):
        return lc.monte_carlo(f, scheme, X, jax.random.key(3), trials=patterns,
                              stragglers=lc.ExactStragglers(S), devices=devices).mse

    scheme.decode(Y, loop_masks[0]).block_until_ready()  # compiles
    before = len(COMPILES)
    t_loop = best_time(loop, repeats=3, min_time=0.0)
    loop_compiles = len(COMPILES) - before
    t_vmap = best_time(lambda: vmapped(Y, masks).block_until_ready(), repeats=5)
    t_mc1 = best_time(lambda: mc(jax.devices()[:1]).block_until_ready(), repeats=5)
    t_mc = best_time(lambda: mc(None).block_until_ready(), repeats=5)
    return {"N": N, "K": K, "m": m, "S": S, "patterns": patterns,
            "eager_loop_per_s": loop_patterns / t_loop, "eager_loop_compilations": loop_compiles,
            "vmap_per_s": patterns / t_vmap, "mc_one_device_per_s": patterns / t_mc1,
            "mc_all_devices_per_s": patterns / t_mc, "devices": len(jax.devices())}


def sweep(K, N, m, S, trials):
    """A 10 x 26 (sigma, lam_dec) grid: one monte_carlo call against 260 calls."""
    rng = np.random.default_rng(4)
    d = 8
    f = functools.partial(_network, jnp.asarray(rng.standard_normal((d, m))))
    X = jnp.asarray(rng.standard_normal((K, d)))
    scheme = lc.letcc(K, N)
    sigmas = np.logspace(-3, -1, 10)
    lams = np.concatenate([[0.0], np.logspace(-9, 0, 25)])
    swept = dict(scheme=scheme.replace(lam_dec=jnp.asarray(lams)),
                 faults=[lc.GaussianNoise(jnp.asarray(sigmas[:, None]))])
    stragglers = lc.ExactStragglers(S)
    before = len(COMPILES)
    start = time.perf_counter()
    grid = lc.monte_carlo(f, swept["scheme"], X, jax.random.key(5), trials=trials,
                          stragglers=stragglers, faults=swept["faults"])
    grid.mse.block_until_ready()
    t_grid_first = time.perf_counter() - start
    grid_compiles = len(COMPILES) - before
    t_grid = best_time(lambda: lc.monte_carlo(
        f, swept["scheme"], X, jax.random.key(5), trials=trials, stragglers=stragglers,
        faults=swept["faults"]).mse.block_until_ready(), repeats=3, min_time=0.0)
    before = len(COMPILES)
    start = time.perf_counter()
    loop = np.empty((10, 26))
    for i, sigma in enumerate(sigmas):
        for j, lam in enumerate(lams):
            loop[i, j] = float(jnp.mean(lc.monte_carlo(
                f, scheme.replace(lam_dec=lam), X, jax.random.key(5), trials=trials,
                stragglers=stragglers, faults=[lc.GaussianNoise(sigma)]).mse))
    t_loop = time.perf_counter() - start
    return {"N": N, "K": K, "m": m, "S": S, "trials": trials, "grid": [10, 26],
            "grid_first_s": t_grid_first, "grid_s": t_grid, "grid_compilations": grid_compiles,
            "loop_s": t_loop, "loop_compilations": len(COMPILES) - before,
            "max_rel_diff": float(np.max(np.abs(np.asarray(grid.mse).mean(-1) - loop)
                                         / np.abs(loop)))}


def main():
    args, info = start(__doc__.splitlines()[0])
    small = dict(K=8, N=160, m=6, S=40)
    if args.smoke:
        calls = eager_calls(**small, repeats=5)
        patterns = many_patterns(50, 200, 10, 40, patterns=256, loop_patterns=16)
        grid = sweep(8, 40, 2, 8, trials=4)
    else:
        calls = eager_calls(**small, repeats=200)
        patterns = many_patterns(50, 200, 10, 40, patterns=4000, loop_patterns=500)
        grid = sweep(8, 160, 2, 32, trials=100)

    print(f"\n## One call at K={small['K']}, N={small['N']}, m={small['m']}, S={small['S']}, "
          "float64 (ms)\n")
    print(markdown_table(
        ["call", "eager, first call (compiles)", "eager, later calls (median)",
         "compilations in later calls", "user's jax.jit", "scipy", "scipy / eager"],
        [[r["call"], f"{r['first_ms']:.0f}", f"{r['eager_ms']:.3f}",
          r["compilations_after_first"], f"{r['jit_ms']:.3f}" if "jit_ms" in r else "",
          f"{r['scipy_ms']:.3f}" if "scipy_ms" in r else "",
          f"{r['scipy_ms'] / r['eager_ms']:.1f}x" if "scipy_ms" in r else ""] for r in calls]))

    p = patterns
    print(f"\n## Many patterns at K={p['K']}, N={p['N']}, m={p['m']}, S={p['S']}, lam_dec=1e-6, "
          "float64 (patterns/s)\n")
    print(markdown_table(
        ["eager loop of decode", "compilations in the loop", "jit(vmap(decode))",
         "monte_carlo, 1 device", f"monte_carlo, {p['devices']} devices",
         "monte_carlo 1 device / vmap"],
        [[f"{p['eager_loop_per_s']:.0f}", p["eager_loop_compilations"], f"{p['vmap_per_s']:.0f}",
          f"{p['mc_one_device_per_s']:.0f}", f"{p['mc_all_devices_per_s']:.0f}",
          f"{p['mc_one_device_per_s'] / p['vmap_per_s']:.2f}"]]))

    g = grid
    print(f"\n## 10 x 26 (sigma, lam_dec) sweep, K={g['K']}, N={g['N']}, S={g['S']}, "
          f"{g['trials']} trials per point\n")
    print(markdown_table(
        ["one swept call, first (s)", "one swept call (s)", "compilations", "260 calls (s)",
         "compilations", "loop / swept", "max rel. diff of mean MSE"],
        [[f"{g['grid_first_s']:.2f}", f"{g['grid_s']:.2f}", g["grid_compilations"],
          f"{g['loop_s']:.2f}", g["loop_compilations"], f"{g['loop_s'] / g['grid_s']:.1f}x",
          f"{g['max_rel_diff']:.1e}"]]))
    path = write_json("api" + ("_smoke" if args.smoke else ""),
                      {"machine": info, "calls": calls, "patterns": patterns, "sweep": grid})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
