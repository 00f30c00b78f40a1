"""Demo: LeNet-5 on Fashion-MNIST behind LeTCC, BACC, LCC and uncoded replication.

Trains LeNet-5 on Fashion-MNIST (or loads it from the checkpoint cache, ``$LETCC_JAX_CACHE``),
then runs the ``demo`` configs of the two experiments (``experiments/configs.py``):

- Table 1 rows (``experiments.table1``): for a few (N, K, S), K test images coded for N
  workers of which exactly S straggle; RMSE of the logits and RelAcc, mean ± std over
  straggler draws and evaluation batches, for LeTCC, BACC, LCC and uncoded replication.
- a small error-vs-N sweep (``experiments.error_vs_n``): LeTCC against BACC on LeNet-5,
  noiseless and noisy, drawn log-log with the fitted slopes and the theory's N^-3 and N^-3/5.

Results go to ``results/demo/table1/`` and ``results/demo/error_vs_n/`` (the plot is
``error_vs_n_lenet5.png``). Under five minutes on two CPU cores from an empty cache.

    python -m experiments.demo              # the demo (make demo)
    python -m experiments.demo --synthetic  # seconds: a random tanh network, no data or training
    python -m experiments.demo --smoke      # CI size (--untrained: no training either)
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

import jax
import jax.numpy as jnp

import letcc_jax as lc
from experiments import error_vs_n, table1
from experiments._io import (environment, markdown_table, output_dir, print_config,
                             use_every_core, write_json)
from experiments.configs import ERROR_VS_N, TABLE1

SYNTHETIC_SETTINGS = [(20, 5, 4), (50, 10, 10), (100, 20, 20), (200, 50, 40)]


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


def synthetic(settings, trials, seed, out):
    """RMSE of the four schemes on f = a random tanh network R^8 -> R^4 (lambdas 0)."""
    key_net, key_data, key_mc = jax.random.split(jax.random.PRNGKey(seed), 3)
    # The network's weights are closed over: f must be hashable for the jitted evaluator.
    f = functools.partial(tanh_network, random_network(key_net, 8, 32, 4))
    rows, table = [], []
    for N, K, S in settings:
        X = jax.random.normal(jax.random.fold_in(key_data, N), (K, 8))
        cells = []
        for name in table1.SCHEMES:
            summary = lc.monte_carlo(f, lc.make_scheme(name, K, N), X, key_mc, trials=trials,
                                     stragglers=lc.ExactStragglers(S)).summary()
            rows.append({"N": N, "K": K, "S": S, "scheme": name, **summary})
            lost = summary["failure_rate"]
            cells.append(f"{summary['rmse_mean']:.2e} ± {summary['rmse_std']:.1e}"
                         + (f" ({100 * lost:.1f}% lost)" if lost > 0 else ""))
        table.append([N, K, S] + cells)
    md = markdown_table(["N", "K", "S"] + table1.SCHEMES, table)
    print("\nRMSE, mean ± std over straggler patterns (exactly S of N workers missing); "
          "'lost': share of patterns where uncoded lost an input (estimated as 0):\n\n" + md)
    write_json(out / "results.json", {"config": {"settings": settings, "trials": trials,
                                                 "seed": seed},
                                      "environment": environment(), "rows": rows})
    (out / "table.md").write_text(md + "\n")
    print(f"\nwrote {out}/results.json and {out}/table.md")
    return rows


def main(argv=None):
    use_every_core()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes for CI")
    parser.add_argument("--untrained", action="store_true",
                        help="randomly initialised LeNet-5 (no training, no cache): for tests")
    parser.add_argument("--synthetic", action="store_true",
                        help="a random tanh network instead of LeNet-5: seconds, no data")
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.synthetic:
        settings = SYNTHETIC_SETTINGS[:1] if args.smoke else SYNTHETIC_SETTINGS
        return synthetic(settings, 20 if args.smoke else 500, 0,
                         output_dir("synthetic", Path(args.out) / "demo"))

    name = "smoke" if args.smoke else "demo"
    configs = {"table1": dict(TABLE1[name]), "error_vs_n": dict(ERROR_VS_N[name])}
    configs["table1"]["models"] = {"lenet5": "fashion_mnist"}
    configs["error_vs_n"]["functions"] = ["lenet5"]
    for experiment, config in configs.items():
        config |= {"name": name, "untrained": args.untrained}
        print_config(experiment, config)

    # LeNet-5 is trained (or loaded) here, with a progress bar; the experiments then load it.
    if not args.untrained:
        table1.model_function("lenet5", table1.load_data("fashion_mnist"), progress=True,
                              train=configs["table1"].get("train"))
    t = time.perf_counter()
    rows, models = table1.run(configs["table1"], untrained=args.untrained)
    table1.report(rows, models, configs["table1"], time.perf_counter() - t,
                  output_dir("table1", Path(args.out) / "demo"))
    t = time.perf_counter()
    curves = error_vs_n.run(configs["error_vs_n"], untrained=args.untrained)
    error_vs_n.report(curves, configs["error_vs_n"], time.perf_counter() - t,
                      output_dir("error_vs_n", Path(args.out) / "demo"))
    print(f"\ndemo: {time.perf_counter() - start:.0f} s in all (training included when the "
          "model was not cached)")
    return rows, curves


if __name__ == "__main__":
    main()
