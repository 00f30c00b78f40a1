"""The benchmarks CI runs end to end in their smoke sizes (``--smoke``): the device benchmark
(on the CPU here, unchanged on a GPU or TPU) writes its JSON and Markdown, the compile-time
benchmark its JSON."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(600)
def test_bench_device_smoke(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_device.py"),
                           "--smoke", "--out", str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=540)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "device_cpu_smoke.json").read_text())
    assert result["machine"]["backend"] == "cpu"
    for section in ("monte_carlo", "latency", "float32", "sharded", "f"):
        assert result[section], section
    assert {r["dtype"] for r in result["monte_carlo"]} == {"float32", "float64"}
    assert all(r["patterns_per_s"] > 0 for r in result["monte_carlo"])
    solvers = {r["solver"] for r in result["latency"]}
    assert {"sris", "parallel", "auto"} <= solvers
    # Every solver decodes the same problem: float32 within 1e-3 of float64 (Reinsch's
    # normal equations are the loosest), float64 at round-off.
    for row in result["float32"]:
        assert row["float32_rel_err"] < 1e-3 and row["float64_rel_err"] < 1e-10, row
    table = (tmp_path / "device_cpu_smoke.md").read_text()
    assert "| N | sris |" in table and "coded inputs/s" in table


@pytest.mark.timeout(300)
def test_bench_compile_smoke(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_compile.py"),
                           "--smoke", "--out", str(tmp_path)],
                          env={**os.environ, "JAX_PLATFORMS": "cpu"}, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads((tmp_path / "compile_smoke.json").read_text())["rows"]
    assert {r["program"] for r in rows} >= {"Scheme.encode", "Scheme.decode", "monte_carlo"}
    # every first call compiles (the caches were cleared), a second call does not need to
    assert all(r["compilations"] >= 1 and r["compile_s"] > 0 for r in rows), rows
    assert all(r["second_call_s"] < r["first_call_s"] for r in rows), rows


@pytest.mark.timeout(120)
@pytest.mark.parametrize("script, output", [("bench_device.py", "device_cpu_smoke.json"),
                                            ("bench_compile.py", "compile_smoke.json")])
def test_an_unwritable_output_stops_the_benchmark_before_its_work(tmp_path, script, output):
    (tmp_path / output).mkdir()   # a folder where the results file goes
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--smoke",
                           "--out", str(tmp_path)], env={**os.environ, "JAX_PLATFORMS": "cpu"},
                          capture_output=True, text=True, timeout=100)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"{output} is a folder" in done.stderr
    assert "machine:" not in done.stdout and "monte_carlo" not in done.stdout
