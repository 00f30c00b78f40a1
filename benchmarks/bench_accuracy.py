"""Accuracy of the LeTCC decoder in float64 against a 50-digit reference.

The reference solves the same smoothing-spline problem (Reinsch form, survivors only) in
mpmath with 50 significant digits, by banded Gaussian elimination; it is independent of
the library's code. Reported: the library's default solver (Reinsch for lam = 0, the
square-root information smoother for lam > 0), its Reinsch solver (``solver="reinsch"``),
the float64 LAPACK banded-Cholesky Reinsch solve (what a careful SciPy user would write)
and scipy's make_smoothing_spline, all against the same reference.

    python benchmarks/bench_accuracy.py [--smoke]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from scipy.interpolate import make_smoothing_spline  # noqa: E402

import letcc_jax as lc  # noqa: E402
from _common import machine, markdown_table, write_json  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from reference import reinsch_mp, reinsch_values  # noqa: E402


def case(N, lam, seed=0):
    rng = np.random.default_rng(seed)
    t = lc.chebyshev_second(N)
    alive = np.ones(N, bool)
    alive[rng.choice(N, N // 5, replace=False)] = False
    y = np.sin(3 * t) + 0.1 * rng.standard_normal(N)
    tF, yF = t[alive], y[alive]
    exact = reinsch_mp(tF, yF, lam, dps=50)[0][:, 0]
    def ours(method):
        spline = lc._spline.fit(jnp.asarray(t), jnp.asarray(y[:, None]), jnp.asarray(alive),
                                jnp.asarray(lam), method=method)
        return np.asarray(spline.g)[: alive.sum(), 0]

    lapack = reinsch_values(tF, yF[:, None], lam)[:, 0]
    scale = np.max(np.abs(exact))
    row = {"N": N, "lam": lam, "letcc_jax": np.max(np.abs(ours("auto") - exact)) / scale,
           "letcc_jax_reinsch": np.max(np.abs(ours("reinsch") - exact)) / scale,
           "lapack_reinsch": np.max(np.abs(lapack - exact)) / scale}
    if lam > 0:
        row["scipy_make_smoothing_spline"] = np.max(
            np.abs(make_smoothing_spline(tF, yF, lam=len(tF) * lam)(tF) - exact)) / scale
    else:
        row["scipy_make_smoothing_spline"] = float("nan")
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    sizes = [200, 1000] if args.smoke else [200, 2000, 10000]
    lams = [0.0, 1e-6] if args.smoke else [0.0, 1e-8, 1e-6, 1e-4, 1e-2, 1.0]
    rows = [case(N, lam) for N in sizes for lam in lams]
    print("## float64 knot values vs a 50-digit reference (Chebyshev workers, N/5 random stragglers)\n")
    print("max relative error; sin(3t) + noise 0.1\n")
    print(markdown_table(
        ["N", "lam_dec", "letcc_jax (default)", "letcc_jax solver=\"reinsch\"", "LAPACK Reinsch",
         "scipy make_smoothing_spline"],
        [[r["N"], f"{r['lam']:g}", f"{r['letcc_jax']:.1e}", f"{r['letcc_jax_reinsch']:.1e}",
          f"{r['lapack_reinsch']:.1e}", f"{r['scipy_make_smoothing_spline']:.1e}"] for r in rows]))
    path = write_json("accuracy" + ("_smoke" if args.smoke else ""), {"machine": machine(), "rows": rows})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
