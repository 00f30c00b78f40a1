"""Shared output helpers for the experiments: resolved config, environment, results."""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import sys
from pathlib import Path

import jax
import numpy as np


def use_every_core() -> None:
    """One JAX CPU device per core, so that ``lc.monte_carlo`` shares its trials between
    them (per-trial results do not depend on it). Leaves an explicit choice alone
    (``jax_num_cpu_devices`` or XLA_FLAGS), and is a no-op once JAX has run anything, e.g.
    when an experiment's ``main`` is called from a test."""
    if jax.config.jax_num_cpu_devices > 0 or "device_count" in os.environ.get("XLA_FLAGS", ""):
        return
    try:
        jax.config.update("jax_num_cpu_devices", os.cpu_count() or 1)
    except RuntimeError:
        pass  # JAX is already running: keep its devices


def environment() -> dict:
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "numpy": np.__version__,
    }


def output_dir(name: str, root: str | Path = "results") -> Path:
    path = Path(root) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json(path: Path, payload) -> Path:
    path.write_text(json.dumps(payload, indent=2, default=float))
    return path


def write_csv(path: Path, rows: list[dict]) -> Path:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def print_config(name: str, config: dict) -> None:
    print(f"{name} config: " + json.dumps(config, default=str))


def parse_experiment_args(argv, description: str, configs: dict, *, untrained_help: str,
                          functions: list[str] | None = None):
    """The experiments' shared command line: ``--config`` (any entry of ``configs`` but
    "smoke"), ``--smoke``, ``--untrained``, ``--out`` and, given ``functions``, a
    ``--functions`` restriction. Returns ``(args, name, config)``: the chosen config's name
    and a copy of it, with ``functions`` overridden when the flag is given."""
    use_every_core()
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", choices=[c for c in configs if c != "smoke"], default="cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes for CI")
    parser.add_argument("--untrained", action="store_true", help=untrained_help)
    if functions:
        parser.add_argument("--functions", nargs="+", choices=functions,
                            help="restrict to these f (default: the config's)")
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    name = "smoke" if args.smoke else args.config
    config = dict(configs[name])
    if functions and args.functions:
        config["functions"] = args.functions
    return args, name, config
