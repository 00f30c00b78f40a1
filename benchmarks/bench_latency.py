"""End-to-end latency on the Dask backend: time from the K inputs to decoded results.

f is a calibrated compute kernel (a jitted tanh network, ``--task-ms`` per input). Each round
draws new inputs, runs every scheme on an embedded loopback cluster, and records the
end-to-end time and the RMSE of the decoded outputs. Schemes:

  - uncoded, wait for all: K workers, one input each; the master waits for every one.
  - replication: N = r K workers (r = N / K), the master stops once every input has one
    answering replica.
  - BACC and LeTCC: N workers, the master decodes from the first N - S valid results.

Each runs without stragglers, then with a fraction S / N of its workers (new ones each
round) starting ``slowdown`` times the median worker task time late. The embedded cluster
has a few single-threaded worker processes sharing the machine's cores, so tasks queue for
them; a delayed worker holds no execution slot while it waits (a slow machine of its own).

    python benchmarks/bench_latency.py            # 50 rounds, a few minutes on 2 cores
    python benchmarks/bench_latency.py --smoke    # seconds, for CI

Prints a Markdown table and writes benchmarks/results/latency.json (and latency.md).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

import letcc_jax as lc
from _common import RESULTS_DIR, machine, markdown_table, write_json
from letcc_jax import workers


def make_kernel(d: int, width: int, m: int, reps: int, seed: int = 0):
    """f: R^d -> R^m, a tanh network whose hidden state follows ``reps`` Euler steps of
    dh/dt = tanh(W h) over unit time. The cost grows with ``reps``; f itself hardly changes
    (it approximates a smooth flow), so every setting computes the same kind of function."""
    rng = np.random.default_rng(seed)
    W_in = jnp.asarray(rng.normal(size=(width, d)) / np.sqrt(d), jnp.float32)
    W = jnp.asarray(rng.normal(size=(width, width)) / np.sqrt(width), jnp.float32)
    W_out = jnp.asarray(rng.normal(size=(m, width)) / np.sqrt(width), jnp.float32)

    def f(x):
        h = jnp.tanh(W_in @ x)
        h = jax.lax.fori_loop(0, reps, lambda _, h: h + jnp.tanh(W @ h) / reps, h)
        return W_out @ h

    return f


def calibrate(d: int, width: int, m: int, target_s: float) -> tuple[int, float]:
    """Euler steps for one f(x) to take about ``target_s`` here, and the time taken."""

    def seconds(reps):
        f = jax.jit(make_kernel(d, width, m, reps))
        x = jnp.ones((d,), jnp.float32)
        f(x).block_until_ready()
        start = time.perf_counter()
        for _ in range(20):
            f(x).block_until_ready()
        return (time.perf_counter() - start) / 20

    reps = 100
    for _ in range(3):  # the cost per step shrinks a little as the loop grows
        reps = max(1, round(reps * target_s / seconds(reps)))
    return reps, seconds(reps)


def schemes(K: int, N: int, S: int) -> dict:
    """name -> (scheme, wait_for, slow workers) for the four strategies. Every scheme has
    the same fraction S / N of slow workers (uncoded: round(S K / N), at least 1)."""
    return {
        "uncoded, wait for all": (lc.uncoded(K, K), None, max(1, round(S * K / N))),
        f"replication r={N // K}, first replica": (lc.uncoded(K, N), K, S),
        f"BACC, first N-S={N - S}": (lc.bacc(K, N), N - S, S),
        f"LeTCC, first N-S={N - S}": (lc.letcc(K, N), N - S, S),
    }


def run_rounds(backend, f, scheme, wait_for, rounds, S, delay, d, rng, label):
    """``rounds`` rounds; returns end-to-end seconds, RMSE and worker task times."""
    K, N = scheme.K, scheme.N
    batch = jax.jit(jax.vmap(f))
    latency, rmse, task_s = [], [], []
    for _ in tqdm(range(rounds), desc=label, leave=False, file=sys.stderr):
        X = rng.normal(size=(K, d)).astype(np.float32)
        faults = workers.WorkerFaults.slow(N, S, delay, seed=rng) if S else None
        result = backend.run(f, scheme, X, wait_for=wait_for, faults=faults)
        truth = np.asarray(batch(X))
        latency.append(result.timings.total_s)
        rmse.append(float(np.sqrt(np.mean(np.sum((result.estimate - truth) ** 2, axis=1)))))
        task_s.extend(result.timings.worker_s[result.used].tolist())
    return np.asarray(latency), np.asarray(rmse), np.asarray(task_s)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5, help="untimed rounds per scheme")
    parser.add_argument("--K", type=int, default=4)
    parser.add_argument("--N", type=int, default=16)
    parser.add_argument("--S", type=int, default=4)
    parser.add_argument("--slowdown", type=float, default=10.0,
                        help="straggler delay, in median worker task times")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="threads per worker process")
    parser.add_argument("--task-ms", type=float, default=10.0, help="target time of one f(x)")
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--m", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="a few rounds, for CI")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.warmup = 5, 1
    if args.N % args.K or args.N <= args.K or not 0 < args.S < args.N - args.K:
        parser.error("need N a multiple of K, N > K, and 0 < S < N - K.")
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    print(f"config: {vars(args)}", flush=True)

    reps, f_s = calibrate(args.d, args.width, args.m, args.task_ms / 1e3)
    f = make_kernel(args.d, args.width, args.m, reps)
    rng = np.random.default_rng(args.seed)
    table = schemes(args.K, args.N, args.S)
    runs = {}
    with workers.DaskBackend(
        n_workers=args.processes, threads_per_worker=args.threads, seed=args.seed,
        silence_logs=logging.CRITICAL,
    ) as backend:
        for name, (scheme, wait_for, _) in table.items():  # workers compile f, master decoders
            run_rounds(backend, f, scheme, wait_for, args.warmup, 0, 0.0, args.d, rng, "warm-up")
        for name, (scheme, wait_for, _) in table.items():
            runs[name, 0] = run_rounds(backend, f, scheme, wait_for, args.rounds, 0, 0.0,
                                       args.d, rng, f"{name}, no stragglers")
        median_task = float(np.median(np.concatenate([runs[key][2] for key in runs])))
        delay = args.slowdown * median_task
        for name, (scheme, wait_for, S) in table.items():
            runs[name, S] = run_rounds(backend, f, scheme, wait_for, args.rounds, S, delay,
                                       args.d, rng, f"{name}, S={S} slow")

    header = ["scheme", "workers", "stragglers", "p50 (ms)", "p99 (ms)", "p50 / p50 no stragglers",
              "RMSE mean ± std"]
    rows, results = [], []
    for (name, S), (latency, rmse, _) in runs.items():
        scheme = table[name][0]
        p50, p99 = np.percentile(latency, [50, 99]) * 1e3
        base = np.percentile(runs[name, 0][0], 50) * 1e3
        slow = "none" if S == 0 else f"{S} delayed"
        rows.append([name, scheme.N, slow, f"{p50:.1f}", f"{p99:.1f}", f"{p50 / base:.2f}",
                     f"{rmse.mean():.2e} ± {rmse.std():.1e}"])
        results.append({"scheme": name, "K": scheme.K, "N": scheme.N, "stragglers": S,
                        "p50_ms": p50, "p99_ms": p99, "ratio_to_no_stragglers": p50 / base,
                        "rmse_mean": float(rmse.mean()), "rmse_std": float(rmse.std()),
                        "latency_ms": (latency * 1e3).tolist()})
    markdown = markdown_table(header, rows)

    def ratio(prefix):
        return next(r["ratio_to_no_stragglers"] for r in results
                    if r["scheme"].startswith(prefix) and r["stragglers"])

    goals = {"letcc_p50_ratio_at_most_1.5": bool(ratio("LeTCC") <= 1.5),
             "wait_for_all_p50_ratio_at_least_5": bool(ratio("uncoded") >= 5)}
    env = machine()
    notes = (
        f"Command: `{command}`. Machine: {env['cpu']}, {env['cores']} cores; {env['date']}.\n"
        f"Dask LocalCluster on 127.0.0.1: {args.processes} processes x {args.threads} threads. "
        f"K={args.K}, N={args.N}, S={args.S}; f: R^{args.d} -> R^{args.m}, {reps} Euler steps of a tanh layer of "
        f"width {args.width}, {f_s * 1e3:.1f} ms per input alone; median worker task time in "
        f"the rounds {median_task * 1e3:.1f} ms, straggler delay {delay * 1e3:.0f} ms. "
        f"{args.rounds} rounds per row, new inputs each round. Latency: end-to-end time of "
        "`DaskBackend.run` (encode, dispatch, wait, decode). RMSE per round: "
        "sqrt((1/K) sum_k ||f_hat(x_k) - f(x_k)||^2) on the raw outputs, mean ± std over rounds.\n"
        f"Goals: LeTCC p50 with stragglers <= 1.5x without: {ratio('LeTCC'):.2f}x "
        f"({'met' if goals['letcc_p50_ratio_at_most_1.5'] else 'NOT met'}); wait-for-all "
        f">= 5x: {ratio('uncoded'):.2f}x ({'met' if goals['wait_for_all_p50_ratio_at_least_5'] else 'NOT met'})."
    )
    print(markdown)
    print(notes)
    name = "latency_smoke" if args.smoke else "latency"
    path = write_json(name, {
        "command": command, "config": vars(args), "machine": env, "layers": reps,
        "f_alone_ms": f_s * 1e3, "median_task_ms": median_task * 1e3, "delay_ms": delay * 1e3,
        "results": results, "goals": goals, "table": markdown, "notes": notes,
    })
    (RESULTS_DIR / f"{name}.md").write_text(markdown + "\n\n" + notes + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
