"""Compile time of the public programs: what a user's first call of each entry point costs.

For LeTCC, BACC and replication at a small and a medium size, each public entry point is
called once on empty caches (``jax.clear_caches()`` before every call, so a program shared
by two entry points is counted for both) and timed three ways: the XLA compilations it
starts and their seconds (``jax.monitoring`` duration events whose name contains
``backend_compile``, as ``tests/compiles.py`` counts them), and the wall seconds of that
first call (tracing, lowering, compiling and running) against a second, cached call.
The persistent compilation cache is off, so every number is a cold compile.

    python benchmarks/bench_compile.py            # both sizes, about five minutes on 2 cores
    python benchmarks/bench_compile.py --smoke    # replication at the small size (CI)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, machine, markdown_table  # noqa: E402

from experiments._io import checked_output_dir  # noqa: E402

import letcc_jax as lc  # noqa: E402

jax.config.update("jax_compilation_cache_dir", None)  # cold compiles only

COMPILES: list[float] = []


def _record(event: str, seconds: float, **_) -> None:
    if "backend_compile" in event:
        COMPILES.append(seconds)


jax.monitoring.register_event_duration_secs_listener(_record)

SCHEMES = ("letcc", "bacc", "uncoded")
#: (K, N, S): small and medium.
SIZES = {"small": (10, 40, 8), "medium": (50, 1000, 200)}
D, M = 4, 2


def f(x):
    """The workers' function, R^d -> R^m (module level: the evaluators need it hashable)."""
    return jnp.stack([jnp.sin(x[0] + x[1]), jnp.tanh(x[2] - x[3])])


def _block(result):
    jax.block_until_ready(jax.tree.leaves(result))
    return result


def programs(name: str, K: int, N: int, S: int) -> dict:
    """Entry point -> a call of it, for the scheme ``name`` at (K, N, S)."""
    scheme = lc.make_scheme(name, K, N)
    key = jax.random.PRNGKey(0)
    X = jax.random.normal(key, (K, D))
    X_cal = jax.random.normal(jax.random.fold_in(key, 1), (2, K, D))
    Y = jax.vmap(f)(scheme.encode(X))
    alive = np.ones(N, bool)
    alive[np.random.default_rng(0).choice(N, S, replace=False)] = False
    stragglers = lc.ExactStragglers(S)
    calls = {
        "Scheme.encode": lambda: scheme.encode(X),
        "Scheme.decode": lambda: scheme.decode(Y, alive),
        "Scheme.decoder_matrix": lambda: scheme.decoder_matrix(alive),
        "Scheme.recovered": lambda: scheme.recovered(alive),
        "run_coded": lambda: lc.run_coded(f, scheme, X, key, stragglers=stragglers),
        "monte_carlo": lambda: lc.monte_carlo(f, scheme, X, key, trials=16,
                                              stragglers=stragglers),
    }
    calls["expected_loss"] = lambda: lc.expected_loss(f, scheme, X_cal, key, trials=8,
                                                      stragglers=stragglers)
    if name == "letcc":
        calls["select_lambda"] = lambda: lc.select_lambda(
            f, scheme, X_cal, key, lam_dec_grid=(0.0, 1e-6, 1e-3), trials=8,
            stragglers=stragglers)
        calls["gcv"] = lambda: lc.gcv(scheme, Y, alive, lam_grid=(1e-6, 1e-3))
        calls["tune"] = lambda: lc.tune(f, scheme, X_cal, key, stragglers=stragglers, steps=2,
                                        trials=4, validation_trials=4, validate_every=1,
                                        progress=False)
    if name == "uncoded":
        calls["replication_loss"] = lambda: lc.replication_loss(f, scheme, X,
                                                                stragglers=stragglers)
    return calls


def measure(call) -> dict:
    """Compilations, their seconds, and the first and second call's wall seconds."""
    jax.clear_caches()
    start_count = len(COMPILES)
    start = time.perf_counter()
    _block(call())
    first = time.perf_counter() - start
    compiles = COMPILES[start_count:]
    start = time.perf_counter()
    _block(call())
    second = time.perf_counter() - start
    return {"compilations": len(compiles), "compile_s": round(sum(compiles), 3),
            "first_call_s": round(first, 3), "second_call_s": round(second, 4)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="replication only, at the small size: every part runs (seconds)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR,
                        help="folder for compile[_smoke].json (default: benchmarks/results)")
    args = parser.parse_args()
    results_file = "compile" + ("_smoke" if args.smoke else "") + ".json"
    # before the work: a folder or a read-only file in the way is a usage error now
    checked_output_dir(parser, ".", str(args.out), outputs=(results_file,))
    info = machine()
    print(f"machine: {info['cpu']} ({info['cores']} cores), jax {info['jax']} on "
          f"{info['backend']}")
    sizes = {"small": SIZES["small"]} if args.smoke else SIZES
    # LeTCC's programs take seconds each to compile, ten times BACC's and replication's
    schemes = ("uncoded",) if args.smoke else SCHEMES
    rows = []
    for size, (K, N, S) in sizes.items():
        for name in schemes:
            for program, call in programs(name, K, N, S).items():
                row = {"size": size, "K": K, "N": N, "S": S, "scheme": name,
                       "program": program, **measure(call)}
                rows.append(row)
                print(f"{size:6} {name:8} {program:22} {row['compilations']:3d} compiles "
                      f"{row['compile_s']:7.2f} s  first call {row['first_call_s']:7.2f} s",
                      flush=True)
    table = markdown_table(
        ["size (K, N, S)", "scheme", "program", "compilations", "compile s", "first call s",
         "second call s"],
        [[f"{r['size']} ({r['K']}, {r['N']}, {r['S']})", r["scheme"], r["program"],
          r["compilations"], f"{r['compile_s']:.2f}", f"{r['first_call_s']:.2f}",
          f"{r['second_call_s']:.4f}"] for r in rows])
    print("\n" + table)
    path = args.out / results_file
    path.write_text(json.dumps({"machine": info, "rows": rows}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
