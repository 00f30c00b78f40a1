"""Shared helpers for the benchmark scripts: timing, machine description, output."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import jax

from experiments._io import markdown_table  # noqa: F401  (re-exported for the scripts)

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def best_time(fn, *, repeats: int = 5, min_time: float = 0.2) -> float:
    """Best wall time of ``fn()`` in seconds over ``repeats`` rounds; each round runs
    ``fn`` enough times to last ``min_time`` (``fn`` must block until its result is ready)."""
    fn()  # compile / warm up
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    inner = max(1, int(min_time / once))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - start) / inner)
    return best


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "commit": commit,
    }


def start(description: str, configure=None):
    """A benchmark's ``--smoke`` command line and machine: ``(args, machine())``, the machine
    printed first. ``configure(parser)`` adds a script's own options."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (seconds)")
    if configure is not None:
        configure(parser)
    args = parser.parse_args()
    info = machine()
    print(f"machine: {info['cpu']} ({info['cores']} cores), jax {info['jax']} on {info['backend']}")
    return args, info


def write_json(name: str, payload: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    return path
