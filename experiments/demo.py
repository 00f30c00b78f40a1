"""Demo: LeNet-5 on Fashion-MNIST behind LeTCC, BACC, LCC and uncoded replication.

Trains LeNet-5 on Fashion-MNIST (or loads it from the checkpoint cache, ``$LETCC_JAX_CACHE``),
then runs the two experiments' command lines with their ``demo`` config
(``experiments/configs.py``), side by side, each in its own process that loads the model
from the cache (error-vs-N's output follows Table 1's):

- Table 1 rows (``experiments.table1``): for a few (N, K, S), K test images coded for N
  workers of which exactly S straggle; the loss E[MSE] on the logits (and its root), RMSE
  and RelAcc mean ± std, over straggler draws and evaluation batches, for LeTCC, BACC, LCC
  and uncoded replication (its E[MSE], RelAcc and chance of losing an input exact, in
  closed form); every scheme estimates a lost input by f's mean output on calibration
  images.
- a small error-vs-N sweep (``experiments.error_vs_n``): LeTCC against BACC on LeNet-5,
  noiseless and noisy, drawn log-log with the fitted slopes and the theory's rates.

Results go to ``results/demo/table1/`` and ``results/demo/error_vs_n/`` (the plot is
``error_vs_n_lenet5.png``). Under five minutes on two CPU cores from an empty cache.

    python -m experiments.demo              # the demo (make demo)
    python -m experiments.demo --synthetic  # seconds: a random tanh network, no data or training
    python -m experiments.demo --smoke      # CI size (--untrained: no training either)
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
import time

import jax

import letcc_jax as lc
from experiments._common import (
    SCHEMES,
    calibration_mean,
    load_data,
    model_function,
    random_tanh_network,
    replication_loss_probability,
)
from experiments._io import (OUTPUTS, checked_output_dir, configure_jax, environment,
                             lost_note, markdown_table, write_json)
from experiments.configs import TABLE1

SYNTHETIC_SETTINGS = [(20, 5, 4), (50, 10, 10), (100, 20, 20), (200, 50, 40)]


def synthetic_table(settings, trials, seed, out):
    """The loss E[MSE] (and its root) of the schemes on f = a random tanh network
    R^8 -> R^4 (LeTCC's lambdas 0, the B-spline's 1e-6 and K basis functions), each with f's mean output on K calibration inputs as the
    fallback for a lost input; replication's loss and chance of losing an input exact."""
    key_net, key_data, key_mc = jax.random.split(jax.random.PRNGKey(seed), 3)
    f = random_tanh_network(key_net)
    rows, table = [], []
    for N, K, S in settings:
        X, X_cal = jax.random.normal(jax.random.fold_in(key_data, N), (2, K, 8))
        stragglers, fallback = lc.ExactStragglers(S), calibration_mean(f, X_cal)
        cells = []
        for name in SCHEMES:
            scheme = lc.make_scheme(name, K, N, fallback=fallback)
            if name == "uncoded":
                summary = {"mse_mean": float(lc.replication_loss(f, scheme, X,
                                                                 stragglers=stragglers).mse),
                           "failure_rate": float(replication_loss_probability(scheme,
                                                                              stragglers)),
                           "exact": True}
            else:
                summary = lc.monte_carlo(f, scheme, X, key_mc, trials=trials,
                                         stragglers=stragglers).summary()
            rows.append({"N": N, "K": K, "S": S, "scheme": name, **summary})
            cells.append(f"{summary['mse_mean']:.2e} ({summary['mse_mean'] ** 0.5:.2e})"
                         + lost_note(summary["failure_rate"]))
        table.append([N, K, S] + cells)
    md = markdown_table(["N", "K", "S"] + SCHEMES, table)
    print("\nE[MSE], the mean over straggler patterns of the per-pattern MSE, with its root "
          "(exactly S of N workers missing; uncoded: exact, the others over draws); 'lost': "
          "the probability that uncoded loses an input (estimated by f's mean output on "
          "calibration inputs, as by every scheme):\n\n" + md)
    write_json(out / "results.json", {"config": {"settings": settings, "trials": trials,
                                                 "seed": seed},
                                      "environment": environment(), "rows": rows})
    (out / "table.md").write_text(md + "\n")
    print(f"\nwrote {out}/results.json and {out}/table.md")


def run_experiment(*commands: tuple[str, ...]) -> None:
    """Runs ``python -m experiments.<module> *args`` for every ``(module, *args)`` with this
    interpreter, all at once: each process compiles its own programs, and compilation, most
    of a first run, keeps one core busy, so two cores take two experiments in the time of
    the longer one. The first command's output streams through; each other's follows when
    it ends. A failure stops the demo (and the experiments still running)."""
    children = []
    for i, (module, *args) in enumerate(commands):
        command = [sys.executable, "-m", f"experiments.{module}", *args]
        if i == 0:
            print(f"\n$ {shlex.join(command)}", flush=True)  # ahead of the child's output
        log = tempfile.TemporaryFile("w+") if i else None
        children.append((module, command, log, subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT if log else None, text=True)))
    try:
        for module, command, log, child in children:
            status = child.wait()
            if log:
                log.seek(0)
                print(f"\n$ {shlex.join(command)}\n{log.read()}", end="", flush=True)
            if status:
                raise SystemExit(f"demo: experiments.{module} failed (exit status {status}): "
                                 f"{shlex.join(command)}")
    finally:
        for _, _, log, child in children:
            if child.poll() is None:
                child.terminate()
                child.wait()
            if log:
                log.close()


def main(argv=None):
    configure_jax()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes for CI")
    parser.add_argument("--untrained", action="store_true",
                        help="randomly initialised LeNet-5 (no training, no cache): for tests")
    parser.add_argument("--synthetic", action="store_true",
                        help="a random tanh network instead of LeNet-5: seconds, no data")
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    # checked here, before training; each experiment checks its own folder in it again
    out = checked_output_dir(parser, "demo", args.out)
    if args.synthetic:
        settings = SYNTHETIC_SETTINGS[:1] if args.smoke else SYNTHETIC_SETTINGS
        synthetic_table(settings, 20 if args.smoke else 500, 0,
                        checked_output_dir(parser, "demo/synthetic", args.out,
                                           OUTPUTS["synthetic"]))
        return

    name = "smoke" if args.smoke else "demo"
    for experiment in ("table1", "error_vs_n"):  # their files too, before training
        checked_output_dir(parser, f"demo/{experiment}", args.out, OUTPUTS[experiment])
    # Trained here, with a progress bar, so that both experiments load it from the cache.
    if not args.untrained:
        model_function("lenet5", load_data("fashion_mnist"), progress=True,
                       train=TABLE1[name].train)
    flags = (["--smoke"] if args.smoke else ["--config", "demo"]) + ["--out", str(out)]
    flags += ["--untrained"] if args.untrained else []
    # LeNet-5 only: the smoke config also sweeps the synthetic f
    run_experiment(("table1", *flags), ("error_vs_n", *flags, "--functions", "lenet5"))
    print(f"\ndemo: {time.perf_counter() - start:.0f} s in all (training included when the "
          "model was not cached)")


if __name__ == "__main__":
    main()
