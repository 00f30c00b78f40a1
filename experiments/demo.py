"""Demo: LeTCC against BACC, LCC and uncoded replication on a smooth nonlinear f.

f is a random two-layer tanh network R^d -> R^m. For each (N, K, S) the Monte Carlo
evaluator draws random straggler patterns (exactly S of N workers missing) and reports
RMSE = sqrt((1/K) sum_k ||f_hat(x_k) - f(x_k)||^2) per pattern, mean +- std over patterns.

    python -m experiments.demo            # a few seconds
    python -m experiments.demo --smoke    # CI size
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp

import letcc_jax as lc
from experiments._io import environment, markdown_table, output_dir, print_config, write_json

SETTINGS = [(20, 5, 4), (50, 10, 10), (100, 20, 20), (200, 50, 40)]
SCHEMES = ["letcc", "bacc", "lcc", "uncoded"]


def tanh_network(params, x):
    """A random two-layer tanh network; ``params = (W1, b1, W2)``."""
    W1, b1, W2 = params
    return jnp.tanh(x @ W1 + b1) @ W2


def random_network(key, d, hidden, m):
    k1, k2, k3 = jax.random.split(key, 3)
    return (
        jax.random.normal(k1, (d, hidden)) / jnp.sqrt(d),
        0.1 * jax.random.normal(k2, (hidden,)),
        jax.random.normal(k3, (hidden, m)) / jnp.sqrt(hidden),
    )


def run(settings, trials, d, hidden, m, seed):
    key_net, key_data, key_mc = jax.random.split(jax.random.PRNGKey(seed), 3)
    # The network's weights are closed over: f must be hashable for the jitted evaluator.
    f = functools.partial(tanh_network, random_network(key_net, d, hidden, m))
    rows = []
    for N, K, S in settings:
        X = jax.random.normal(jax.random.fold_in(key_data, N), (K, d))
        for name in SCHEMES:
            scheme = lc.make_scheme(name, K, N)
            result = lc.monte_carlo(f, scheme, X, key_mc, trials=trials,
                                    stragglers=lc.ExactStragglers(S))
            rows.append({"N": N, "K": K, "S": S, "scheme": name, **result.summary()})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes for CI")
    args = parser.parse_args(argv)
    settings = SETTINGS[:2] if args.smoke else SETTINGS
    config = {"settings": settings, "trials": 20 if args.smoke else args.trials,
              "d": 8, "hidden": 32, "m": 4, "seed": args.seed, "stragglers": "exactly S"}
    print_config("demo", config)
    rows = run(config["settings"], config["trials"], config["d"], config["hidden"],
               config["m"], config["seed"])

    header = ["N", "K", "S"] + SCHEMES
    table = []
    for N, K, S in settings:
        cells = []
        for name in SCHEMES:
            r = next(r for r in rows if (r["N"], r["K"], r["S"], r["scheme"]) == (N, K, S, name))
            cell = f"{r['rmse_mean']:.2e} ± {r['rmse_std']:.1e}"
            if r["failure_rate"] > 0:
                cell += f" ({100 * r['failure_rate']:.1f}% lost)"
            cells.append(cell)
        table.append([N, K, S] + cells)
    md = markdown_table(header, table)
    print("\nRMSE, mean ± std over straggler patterns (exactly S of N workers missing); "
          "'lost': share of patterns where uncoded lost an input (estimated as 0):\n")
    print(md)
    out = output_dir("demo", args.out)
    write_json(out / "results.json", {"config": config, "environment": environment(), "rows": rows})
    (out / "table.md").write_text(md + "\n")
    print(f"\nwrote {out}/results.json and {out}/table.md")


if __name__ == "__main__":
    main()
