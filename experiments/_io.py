"""Shared output helpers for the experiments: resolved config, environment, results."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import fnmatch
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

__all__ = ["OUTPUTS", "checked_output_dir", "configure_jax", "environment", "experiment_main",
           "lost_note", "markdown_table", "output_dir", "parse_experiment_args", "print_config",
           "write_csv", "write_json", "write_results"]


def configure_jax() -> None:
    """The experiments' JAX set-up, before anything runs.

    - One JAX CPU device per core, so that ``lc.monte_carlo`` shares its trials between them
      (per-trial results do not depend on it). An explicit choice (``jax_num_cpu_devices``
      or XLA_FLAGS) is left alone, and nothing changes once JAX has run (e.g. when an
      experiment's ``main`` is called from a test).
    - XLA's compiled programs kept on disk under ``$LETCC_JAX_CACHE/xla`` (default
      ``~/.cache/letcc_jax/xla``): compilation is most of a first run, and a second run
      skips it. ``LETCC_JAX_XLA_CACHE=0`` turns this off; an explicit
      ``jax_compilation_cache_dir`` is left alone.
    """
    chosen = jax.config.jax_num_cpu_devices > 0 or "device_count" in os.environ.get("XLA_FLAGS", "")
    if not chosen:
        try:
            jax.config.update("jax_num_cpu_devices", os.cpu_count() or 1)
        except RuntimeError:
            pass  # JAX is already running: keep its devices
    wanted = os.environ.get("LETCC_JAX_XLA_CACHE", "1") != "0"
    if wanted and not jax.config.jax_compilation_cache_dir:
        root = Path(os.environ.get("LETCC_JAX_CACHE", "~/.cache/letcc_jax")).expanduser()
        jax.config.update("jax_compilation_cache_dir", str(root / "xla"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


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


_RESULTS = ("results.json", "results.csv")  # what write_results writes

#: The files each experiment writes in its folder (``fnmatch`` patterns, for the figures
#: named after a function or model), by the folder's name: :func:`output_dir` checks that
#: every one of them can be written before the experiment runs. "synthetic" is the demo's
#: ``--synthetic`` table; "demo" itself writes only into its experiments' folders.
OUTPUTS: dict[str, tuple[str, ...]] = {
    "adversarial": (*_RESULTS, "adversarial_vs_n.png"),
    "demo": (),
    "error_vs_n": (*_RESULTS, "error_vs_n_*.png"),
    "latency": (*_RESULTS, "table.md", "latency_frontier.png"),
    "ordering": (*_RESULTS, "table.md", "ordering_*.png"),
    "probabilistic": (*_RESULTS, "table.md", "probabilistic_*.png"),
    "regime_map": ("results.json", "table.md", "regime_map.png"),
    "regimes": (*_RESULTS, "table.md", "regimes_*.png"),
    "reliability": (*_RESULTS, "table.md", "reliability.png"),
    "structured": (*_RESULTS, "table.md", "structured_*.png"),
    "synthetic": ("results.json", "table.md"),
    "table1": (*_RESULTS, "table.md", "table1_worst_case.png"),
    "tuning": (*_RESULTS, "table.md", "tuning.png"),
}


def _unwritable(folder: Path, patterns) -> str | None:
    """Why an existing entry of ``folder`` that matches one of ``patterns`` cannot be
    overwritten by a file (a folder, a broken link, no write permission), or None."""
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if not any(fnmatch.fnmatchcase(entry.name, p) for p in patterns):
                continue
            path = folder / entry.name
            if path.is_dir():
                return f"{path} is a folder, not a file; move it away"
            if not path.exists():
                return f"{path} is a broken symbolic link; remove it"
            if not os.access(path, os.W_OK):
                return f"{path} is not writable; change its permissions or remove it"
    return None


def output_dir(name: str, root: str | Path = "results", outputs=None) -> Path:
    """``root/name``, created, once a probe file has been written to it and removed and none
    of the files written there (``outputs``, default :data:`OUTPUTS` of the first part of
    ``name``) is a folder or otherwise unwritable, so that a run stops at its start, not
    after its work, when its results could not be written.

    Raises:
        OSError: the folder cannot be created or written, or a file the experiment writes
            cannot; the message names ``--out`` and the path.
    """
    path = Path(root) / name
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise OSError(f"--out {root}: cannot write results to {path} ({exc.strerror or exc}); "
                      "choose a writable folder") from exc
    problem = _unwritable(path, OUTPUTS[Path(name).parts[0]] if outputs is None else outputs)
    if problem:
        raise OSError(f"--out {root}: cannot write results to {path}: {problem}, or choose "
                      "another --out")
    return path


def checked_output_dir(parser: argparse.ArgumentParser, name: str, root: str,
                       outputs=None) -> Path:
    """:func:`output_dir` for a command line: an unusable ``--out`` is a usage error (exit
    status 2, with the message) before anything runs."""
    if not root:
        parser.error("--out must name a folder, got an empty string")
    try:
        return output_dir(name, root, outputs)
    except OSError as exc:
        parser.error(str(exc))


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


def write_results(out: Path, config, rows: list[dict], **fields) -> None:
    """``out/results.json`` (the config as a dict, the environment, ``fields`` in order, then
    the rows) and ``out/results.csv`` (the rows)."""
    write_json(out / "results.json", {"config": dataclasses.asdict(config),
                                      "environment": environment(), **fields, "rows": rows})
    write_csv(out / "results.csv", rows)


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def lost_note(rate: float) -> str:
    """' (x% lost)' for a table cell: the share of straggler draws that lose an input, or
    its probability where exact, to two digits; '' when none is lost."""
    return f" ({100 * rate:.2g}% lost)" if rate > 0 else ""


def print_config(name: str, config) -> None:
    """One line: the experiment's resolved config (a dataclass) as JSON."""
    print(f"{name} config: " + json.dumps(dataclasses.asdict(config), default=str))


def parse_experiment_args(argv, experiment: str, description: str, configs: dict, *,
                          untrained_help: str, restrict: dict | None = None,
                          per_config: bool = False):
    """The experiments' shared command line: ``--config`` (any entry of ``configs`` but
    "smoke"; default "cpu") or ``--smoke`` (not both), ``--untrained``, ``--out`` and one
    restriction flag per entry of ``restrict``, ``{flag: (config field, choices)}`` (e.g.
    ``{"--functions": ("functions", ["synthetic", "lenet5"])}``), which replaces that field
    of the config by the chosen values, in order, without repeats.

    Returns ``(config, out)``: the chosen config with the run's ``name`` and ``untrained``
    set and the restrictions applied; and the folder ``<--out>/<experiment>`` (with
    ``per_config``, ``<--out>/<experiment>/<config>`` for every config but cpu, so that
    other sizes do not overwrite the cpu results), created and checked to be writable.
    Every mistake (an unknown config or choice, a config that rejects a restriction, an
    unwritable ``--out``) is a usage error, exit status 2, before anything runs."""
    configure_jax()
    restrict = restrict or {}
    parser = argparse.ArgumentParser(description=description)
    # Default None, not "cpu": argparse sees a clash only with a value that is not the default.
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--config", choices=[c for c in configs if c != "smoke"], default=None,
                      help="sizes to run (default: cpu)")
    size.add_argument("--smoke", action="store_true", help="tiny sizes for CI")
    parser.add_argument("--untrained", action="store_true", help=untrained_help)
    for flag, (field, choices) in restrict.items():
        parser.add_argument(flag, dest=field, nargs="+", choices=choices,
                            help=f"restrict to these {field} (default: the config's)")
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    name = "smoke" if args.smoke else args.config or "cpu"
    config = dataclasses.replace(configs[name], name=name, untrained=args.untrained)
    for flag, (field, _) in restrict.items():
        chosen = getattr(args, field)
        if chosen:
            try:
                config = dataclasses.replace(config, **{field: tuple(dict.fromkeys(chosen))})
            except ValueError as exc:
                parser.error(f"{flag}: {exc}")
    folder = f"{experiment}/{name}" if per_config and name != "cpu" else experiment
    return config, checked_output_dir(parser, folder, args.out)


def experiment_main(argv, module: str, configs: dict, **cli):
    """The command line of an experiment, the module named ``module`` (its ``__name__``),
    which defines ``run(config)``, returning its results (a tuple, or one value), and
    ``report(*results, config, seconds, out)``, which prints and writes them and returns
    what the command returns. Parses ``argv`` with :func:`parse_experiment_args` (``cli``:
    its keyword arguments; the description is the module docstring's first line), prints the
    resolved config, runs, reports. ``run`` and ``report`` are looked up at call time, so a
    test may replace them."""
    experiment = sys.modules[module]
    name = Path(experiment.__file__).stem
    config, out = parse_experiment_args(argv, name, experiment.__doc__.splitlines()[0],
                                        configs, **cli)
    print_config(name, config)
    start = time.perf_counter()
    results = experiment.run(config)
    results = results if isinstance(results, tuple) else (results,)
    return experiment.report(*results, config, time.perf_counter() - start, out)
