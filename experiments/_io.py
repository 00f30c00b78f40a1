"""Shared output helpers for the experiments: resolved config, environment, results."""

from __future__ import annotations

import csv
import datetime
import json
import platform
import sys
from pathlib import Path

import jax
import numpy as np


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
