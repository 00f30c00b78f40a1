"""Accuracy of the LeTCC decoder in float64 against a 50-digit reference.

The reference solves the same smoothing-spline problem (Reinsch form, survivors only) in
mpmath with 50 significant digits, by banded Gaussian elimination; it is independent of
the library's code. Reported: the library's default solver (Reinsch for lam = 0, the
square-root information smoother for lam > 0), its two-level smoother
(``solver="blocked"``, the default for float64 from 20,000 workers; at lam = 0 it is
Reinsch too), its Reinsch solver (``solver="reinsch"``),
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
from letcc_jax.core import spline  # noqa: E402
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
        fitted = spline.fit(jnp.asarray(t), jnp.asarray(y[:, None]), jnp.asarray(alive),
                            jnp.asarray(lam), method=method)
        return np.asarray(fitted.g)[alive, 0]  # the fit at every knot; survivors' values

    lapack = reinsch_values(tF, yF[:, None], lam)[:, 0]
    scale = np.max(np.abs(exact))
    row = {"N": N, "lam": lam, "letcc_jax": np.max(np.abs(ours("auto") - exact)) / scale,
           "letcc_jax_blocked": np.max(np.abs(ours("blocked") - exact)) / scale,
           "letcc_jax_reinsch": np.max(np.abs(ours("reinsch") - exact)) / scale,
           "lapack_reinsch": np.max(np.abs(lapack - exact)) / scale}
    if lam > 0:
        row["scipy_make_smoothing_spline"] = np.max(
            np.abs(make_smoothing_spline(tF, yF, lam=len(tF) * lam)(tF) - exact)) / scale
    else:
        row["scipy_make_smoothing_spline"] = float("nan")
    return row


def blocked_vs_sequential(N, lam, seed=0):
    """Beyond the reach of the mpmath reference: the two-level smoother (the float64
    default from 20,000 workers) against the sequential one, decoded values at K = 50
    Chebyshev data points and slopes at the knots, max relative difference."""
    rng = np.random.default_rng(seed)
    t = jnp.asarray(lc.chebyshev_second(N))
    alive = rng.random(N) > 0.2
    alive[: N // 50] = alive[-(N // 50):] = False  # dead ends: the decoder extrapolates
    y = jnp.asarray(np.stack([np.sin(3 * np.asarray(t)), np.cos(2 * np.asarray(t))], 1)
                    + 0.1 * rng.standard_normal((N, 2)))
    x = jnp.asarray(lc.chebyshev_first(50))
    fit = jax.jit(spline.fit, static_argnames="method")
    out = {}
    for method in ("sris", "blocked"):
        fitted = fit(t, y, jnp.asarray(alive), jnp.asarray(lam), method=method)
        out[method] = (np.asarray(spline.evaluate(fitted, x)), np.asarray(fitted.slope))
    (v0, s0), (v1, s1) = out["sris"], out["blocked"]
    return {"N": N, "lam": lam, "values": float(np.max(np.abs(v1 - v0)) / np.max(np.abs(v0))),
            "slopes": float(np.max(np.abs(s1 - s0)) / np.max(np.abs(s0)))}


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
        ["N", "lam_dec", "letcc_jax (default)", "letcc_jax solver=\"blocked\"",
         "letcc_jax solver=\"reinsch\"", "LAPACK Reinsch", "scipy make_smoothing_spline"],
        [[r["N"], f"{r['lam']:g}", f"{r['letcc_jax']:.1e}", f"{r['letcc_jax_blocked']:.1e}",
          f"{r['letcc_jax_reinsch']:.1e}",
          f"{r['lapack_reinsch']:.1e}", f"{r['scipy_make_smoothing_spline']:.1e}"] for r in rows]))
    big = [blocked_vs_sequential(N, lam) for N in ([20000] if args.smoke else [30000, 100000])
           for lam in ([1e-6] if args.smoke else [1e-8, 1e-6, 1e-4, 1e-2, 1.0])]
    print("\n## float64, solver=\"blocked\" against solver=\"sris\" at large N\n")
    print("max relative difference; 20% random stragglers and the first and last 2% dead\n")
    print(markdown_table(["N", "lam_dec", "decoded values (K = 50)", "slopes at the knots"],
                         [[r["N"], f"{r['lam']:g}", f"{r['values']:.1e}", f"{r['slopes']:.1e}"]
                          for r in big]))
    path = write_json("accuracy" + ("_smoke" if args.smoke else ""),
                      {"machine": machine(), "rows": rows, "blocked_vs_sequential": big})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
