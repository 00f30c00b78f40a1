"""XLA's CPU reduce race and the cost of the guard that ``import letcc_jax`` installs.

Runs the same script in fresh interpreters (XLA reads its flags once per process), with the
guard's setting (``--xla_cpu_experimental_ynn_fusion_type=-reduce``) and with the fusion
back on (``+reduce``, jaxlib's default), alternating: how many distinct values 50 calls of a
float32 sum over a broadcast array return (exact: 2,097,152, so one value), Monte Carlo
patterns/s at K=50, N=200, S=40 on one device, an eager decode at K=8, N=160 and single
jitted decodes at N = 1e3, 1e4.

    python benchmarks/bench_xla_guard.py           # about a minute on 2 cores
    python benchmarks/bench_xla_guard.py --smoke   # seconds

Writes benchmarks/results/xla_guard.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from _common import markdown_table, start, write_json

CHILD = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import letcc_jax as lc
    smoke = sys.argv[1] == "1"
    out = {}
    f = jax.jit(lambda a: jnp.sum(jnp.broadcast_to(a, (2, 1024, 1024))))
    out["distinct sums in 50 calls"] = len({float(f(jnp.ones((1024, 1), jnp.float32)))
                                            for _ in range(50)})
    rng = np.random.default_rng(0)
    W = jnp.asarray(rng.normal(size=(8, 10)))
    fn = lambda x: jnp.sin(x @ W)
    trials = 2000 if smoke else 20000
    for dt in (np.float32, np.float64):
        s = jax.tree.map(lambda v: jnp.asarray(v, dt), lc.letcc(50, 200, lam_dec=1e-6))
        X = jnp.asarray(rng.normal(size=(50, 8)), dt)
        run = lambda k: jax.block_until_ready(lc.monte_carlo(
            fn, s, X, jax.random.key(k), trials=trials, stragglers=lc.ExactStragglers(40),
            devices=jax.devices()[:1]).mse)
        run(0)
        best = float("inf")
        for k in range(1, 4):
            t = time.perf_counter(); run(k); best = min(best, time.perf_counter() - t)
        out[f"MC patterns/s {dt.__name__}"] = round(trials / best)
    s = lc.letcc(8, 160)
    Y = jnp.sin(s.encode(jnp.asarray(rng.normal(size=(8, 6)))))
    alive = np.ones(160, bool); alive[:40] = False
    s.decode(Y, alive)
    times = []
    for i in range(200):
        a = np.roll(alive, i); t = time.perf_counter()
        jax.block_until_ready(s.decode(Y, a)); times.append(time.perf_counter() - t)
    out["eager decode ms"] = round(float(np.median(times)) * 1e3, 3)
    for N in ((1000,) if smoke else (1000, 10000)):
        s = lc.letcc(50, N, lam_dec=1e-6)
        Y = jnp.asarray(rng.normal(size=(N, 10))); a = rng.random(N) > 0.2
        d = jax.jit(lambda s, y, a: s.decode(y, a)); d(s, Y, a).block_until_ready()
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter(); d(s, Y, a).block_until_ready()
            best = min(best, time.perf_counter() - t)
        out[f"decode N={N} ms"] = round(best * 1e3, 3)
    print(json.dumps(out))
""")


def child(setting: str, smoke: bool) -> dict:
    env = {**os.environ, "XLA_FLAGS": f"--xla_cpu_experimental_ynn_fusion_type={setting}",
           "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", CHILD, "1" if smoke else "0"], env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    args, info = start(__doc__.splitlines()[0])
    rounds = 1 if args.smoke else 2
    runs = []
    for r in range(rounds):
        for setting, label in (("-reduce", "guard (-reduce)"), ("+reduce", "fusion on (+reduce)")):
            runs.append({"setting": label, "round": r + 1, **child(setting, args.smoke)})
            print(runs[-1], flush=True)
    header = list(runs[0])
    print(markdown_table(header, [[run[h] for h in header] for run in runs]))
    path = write_json("xla_guard" + ("_smoke" if args.smoke else ""),
                      {"machine": info, "runs": runs})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
