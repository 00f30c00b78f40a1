"""One benchmark for whatever JAX backend is present (CPU, GPU, TPU).

Measures, on the default backend:

- Monte Carlo throughput: ``lc.monte_carlo`` patterns/s at N=200, K=50, m=10, S=40
  (f(x) = sin(Wx + b), R^8 -> R^10), float32 and float64, trials shared over every local
  device;
- single-decode latency: one jitted ``scheme.decode`` (LeTCC, K=50, m=10, lam_dec=1e-6,
  20% random stragglers, float32) for N = 1e2 ... 1e6 and every solver, with its
  compilation time; a solver is not timed at the next N once one decode takes over 2 s;
- float32 against float64: the relative error of a float32 decode (points rounded to
  float32 included) against the float64 one, at N = 10^4 (smooth outputs), per solver;
- the sharded worker backend: rounds/s of ``ShardedBackend`` (workers spread over every
  local device) with LeNet-5 as f, K=50, N=200;
- f throughput: coded inputs/s through ``jit(vmap(f))`` for LeNet-5 (28x28x1) and the ViT
  (32x32x3), float32, a batch of 1,024 coded inputs.

    python benchmarks/bench_device.py            # under eight minutes
    python benchmarks/bench_device.py --smoke    # seconds on a CPU (run in CI)

Writes ``device_<backend>.json`` and ``device_<backend>.md`` to ``--out`` (default
benchmarks/results).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)
# On a CPU, one JAX device per core, so that the multi-device parts use every core (this
# setting changes nothing on an accelerator).
jax.config.update("jax_num_cpu_devices", os.cpu_count() or 1)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import letcc_jax as lc  # noqa: E402
from _common import RESULTS_DIR, machine, markdown_table  # noqa: E402

from experiments._io import checked_output_dir  # noqa: E402
from letcc_jax import workers  # noqa: E402
from letcc_jax.core import spline  # noqa: E402

SOLVERS = [s for s in spline.METHODS if s != "auto"] + ["auto"]
SLOW_S = 2.0  # a solver whose decode took this long is not timed at the next N


def timed(fn, repeats=3):
    """Seconds of the first call (compilation included) and the best of ``repeats``."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return first, best


def _network(params, x):
    W, b = params
    return jnp.sin(x @ W + b)


def monte_carlo(trials, K=50, N=200):
    rows = []
    for dtype in (jnp.float32, jnp.float64):
        key_w, key_x, key_mc = jax.random.split(jax.random.key(0), 3)
        params = (jax.random.normal(key_w, (8, 10), dtype), jnp.linspace(0, 1, 10, dtype=dtype))
        f = functools.partial(_network, params)
        X = jax.random.normal(key_x, (K, 8), dtype)
        scheme = jax.tree.map(lambda v: jnp.asarray(v, dtype), lc.letcc(K, N, lam_dec=1e-6))
        run = lambda: lc.monte_carlo(f, scheme, X, key_mc, trials=trials,  # noqa: E731
                                     stragglers=lc.ExactStragglers(N // 5)).mse
        first, best = timed(run)
        rows.append({"dtype": jnp.dtype(dtype).name, "trials": trials, "K": K, "N": N,
                     "devices": len(jax.devices()), "first_s": first,
                     "patterns_per_s": trials / best})
        print(f"  monte_carlo {rows[-1]['dtype']}: {rows[-1]['patterns_per_s']:,.0f} patterns/s",
              flush=True)
    return rows


def latency(sizes):
    rows, slow = [], set()
    rng = np.random.default_rng(0)
    decode = jax.jit(lambda s, y, a: s.decode(y, a))
    for N in sizes:
        Y = jnp.asarray(rng.standard_normal((N, 10)), jnp.float32)
        alive = jnp.asarray(rng.random(N) >= 0.2)
        for solver in SOLVERS:
            if solver in slow:
                continue
            scheme = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32),
                                  lc.letcc(50, N, lam_dec=1e-6, solver=solver))
            first, best = timed(lambda: decode(scheme, Y, alive))
            rows.append({"N": N, "solver": solver, "compile_s": first - best, "ms": best * 1e3})
            print(f"  decode N={N} {solver}: {best * 1e3:.3f} ms "
                  f"(first call {first:.1f} s)", flush=True)
            if best > SLOW_S:
                slow.add(solver)
    return rows


def float32_error(N):
    rng = np.random.default_rng(1)
    rows = []
    base = lc.letcc(50, N, lam_dec=1e-6, solver="sris")
    X = rng.standard_normal((50, 4))
    Y = np.sin(3 * np.asarray(base.encode(jnp.asarray(X))))
    alive = rng.random(N) >= 0.2
    exact = np.asarray(base.decode(jnp.asarray(Y), alive))
    scale = np.max(np.abs(exact))
    for solver in SOLVERS:
        scheme = lc.letcc(50, N, lam_dec=1e-6, solver=solver)
        d64 = np.asarray(scheme.decode(jnp.asarray(Y), alive))
        s32 = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), scheme)
        d32 = np.asarray(s32.decode(jnp.asarray(Y, jnp.float32), alive), np.float64)
        rows.append({"N": N, "solver": solver,
                     "float64_rel_err": float(np.max(np.abs(d64 - exact)) / scale),
                     "float32_rel_err": float(np.max(np.abs(d32 - exact)) / scale)})
        print(f"  float32 N={N} {solver}: {rows[-1]['float32_rel_err']:.1e} "
              f"(float64 {rows[-1]['float64_rel_err']:.1e})", flush=True)
    return rows


def _model(name, shape, **kwargs):
    from letcc_jax.zoo import models

    return models.pure_apply(models.make_model(name, shape, 10, **kwargs))


def sharded(rounds, K=50, N=200):
    f = _model("lenet5", (28, 28, 1))
    scheme = lc.letcc(K, N, lam_dec=1e-6)
    X = np.random.default_rng(2).random((K, 28 * 28)).astype(np.float32)
    backend = workers.ShardedBackend()
    run = lambda: backend.run(f, scheme, X).estimate  # noqa: E731
    first, best = timed(run, repeats=rounds)
    row = {"devices": backend.devices, "K": K, "N": N, "first_s": first,
           "round_ms": best * 1e3}
    print(f"  sharded LeNet-5 round over {backend.devices} devices: {best * 1e3:.1f} ms",
          flush=True)
    return [row]


MODELS = (("lenet5", (28, 28, 1), {}), ("vit", (32, 32, 3), {"patch_size": 4}))


def f_throughput(batch, models=MODELS):
    rows = []
    for name, shape, kwargs in models:
        f = _model(name, shape, **kwargs)
        d = int(np.prod(shape))
        scheme = lc.letcc(50, batch, lam_enc=0.0)
        X = jnp.asarray(np.random.default_rng(3).random((50, d)), jnp.float32)
        coded = scheme.encode(X)
        fn = jax.jit(jax.vmap(f))
        first, best = timed(lambda: fn(coded))
        rows.append({"model": name, "batch": batch, "first_s": first,
                     "inputs_per_s": batch / best})
        print(f"  f = {name}: {batch / best:,.0f} coded inputs/s", flush=True)
    return rows


def report(info, results) -> str:
    lines = [f"Backend {info['backend']} ({', '.join(sorted(set(info['devices'])))[:200]}), "
             f"{info['cpu']}, jax {info['jax']}, {info['date']}.", ""]
    mc = results["monte_carlo"][0]
    lines += [f"Monte Carlo, N={mc['N']}, K={mc['K']}, m=10, S={mc['N'] // 5}:", "",
              markdown_table(["dtype", "devices", "patterns/s"],
                             [[r["dtype"], r["devices"], f"{r['patterns_per_s']:,.0f}"]
                              for r in results["monte_carlo"]]), ""]
    sizes = sorted({r["N"] for r in results["latency"]})
    cell = {(r["N"], r["solver"]): r["ms"] for r in results["latency"]}
    lines += ["Single decode, float32, K=50, m=10 (ms, best of 3; blank: not timed):", "",
              markdown_table(["N"] + SOLVERS,
                             [[N] + [f"{cell[N, s]:.3f}" if (N, s) in cell else ""
                                     for s in SOLVERS] for N in sizes]), ""]
    lines += ["float32 decode against float64 (relative, points rounded to float32 included):",
              "", markdown_table(["N", "solver", "float32", "float64 vs sris"],
                                 [[r["N"], r["solver"], f"{r['float32_rel_err']:.1e}",
                                   f"{r['float64_rel_err']:.1e}"] for r in results["float32"]]),
              ""]
    sh = results["sharded"][0]
    lines += [f"Sharded backend, LeNet-5, K={sh['K']}, N={sh['N']}:", "",
              markdown_table(["devices", "round (ms)"],
                             [[r["devices"], f"{r['round_ms']:.1f}"] for r in results["sharded"]]),
              ""]
    lines += ["f on coded inputs, float32:", "",
              markdown_table(["model", "batch", "coded inputs/s"],
                             [[r["model"], r["batch"], f"{r['inputs_per_s']:,.0f}"]
                              for r in results["f"]])]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (seconds, on a CPU)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="output folder")
    args = parser.parse_args()
    info = machine()
    print(f"backend {info['backend']}: {len(info['devices'])} device(s), {info['cpu']}, "
          f"jax {info['jax']}", flush=True)
    smoke = args.smoke
    stem = f"device_{info['backend']}" + ("_smoke" if smoke else "")
    # before the work: a folder or a read-only file in the way is a usage error now
    checked_output_dir(parser, ".", str(args.out), outputs=(f"{stem}.json", f"{stem}.md"))
    start = time.perf_counter()
    results = {
        # the smoke sizes compile small programs: it checks that every part runs
        "monte_carlo": monte_carlo(64, K=8, N=32) if smoke else monte_carlo(20_000),
        "latency": latency([100] if smoke else [100, 1_000, 10_000, 100_000, 1_000_000]),
        "float32": float32_error(100 if smoke else 10_000),
        "sharded": sharded(1, K=8, N=32) if smoke else sharded(5),
        "f": f_throughput(16, MODELS[:1]) if smoke else f_throughput(1024),
    }
    info["wall_s"] = time.perf_counter() - start
    (args.out / f"{stem}.json").write_text(json.dumps({"machine": info, **results}, indent=2))
    table = report(info, results)
    (args.out / f"{stem}.md").write_text(table)
    print(table)
    print(f"wrote {args.out / stem}.json and .md in {info['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
