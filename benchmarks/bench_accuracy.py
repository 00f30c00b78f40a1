"""Accuracy of the LeTCC decoder in float64 against a 50-digit reference.

The reference solves the same smoothing-spline problem (Reinsch form, survivors only) in
mpmath with 50 significant digits, by banded Gaussian elimination; it is independent of
the library's code. Also reported: the float64 LAPACK banded-Cholesky Reinsch solve (what
a careful SciPy user would write) and scipy's make_smoothing_spline, against the same
reference, so the library's error can be read against theirs.

    python benchmarks/bench_accuracy.py [--smoke]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import mpmath as mp  # noqa: E402
import numpy as np  # noqa: E402
from scipy.interpolate import make_smoothing_spline  # noqa: E402

import letcc_jax as lc  # noqa: E402
from _common import machine, markdown_table, write_json  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from reference import reinsch_values  # noqa: E402


def reinsch_mp(t, y, lam, digits=50):
    """Knot values of the mean-form smoothing spline through (t, y), computed in mpmath."""
    mp.mp.dps = digits
    n = len(t)
    t = [mp.mpf(float(v)) for v in t]
    y = [mp.mpf(float(v)) for v in y]
    if lam == 0 or n <= 2:
        return np.array([float(v) for v in y])
    h = [t[i + 1] - t[i] for i in range(n - 1)]
    P, a = n - 2, n * mp.mpf(lam)
    lo = [1 / h[i] for i in range(P)]
    hi = [1 / h[i + 1] for i in range(P)]
    mid = [-(lo[i] + hi[i]) for i in range(P)]
    band = {}
    for i in range(P):
        band[i, i] = (h[i] + h[i + 1]) / 3 + a * (lo[i] ** 2 + mid[i] ** 2 + hi[i] ** 2)
        if i + 1 < P:
            band[i, i + 1] = band[i + 1, i] = h[i + 1] / 6 + a * (mid[i] * lo[i + 1] + hi[i] * mid[i + 1])
        if i + 2 < P:
            band[i, i + 2] = band[i + 2, i] = a * hi[i] * lo[i + 2]
    b = [lo[i] * y[i] + mid[i] * y[i + 1] + hi[i] * y[i + 2] for i in range(P)]
    for k in range(P):
        for i in range(k + 1, min(k + 3, P)):
            factor = band[i, k] / band[k, k]
            for j in range(k, min(k + 3, P)):
                band[i, j] = band.get((i, j), 0) - factor * band[k, j]
            b[i] -= factor * b[k]
    gamma = [mp.mpf(0)] * P
    for k in reversed(range(P)):
        gamma[k] = (b[k] - sum(band[k, j] * gamma[j] for j in range(k + 1, min(k + 3, P)))) / band[k, k]
    gamma = [mp.mpf(0)] + gamma + [mp.mpf(0)]
    g = []
    for k in range(n):
        qg = mp.mpf(0)
        if k >= 1:
            qg += hi[k - 2] * gamma[k - 1] if k - 1 >= 1 else 0
        if 1 <= k <= n - 2:
            qg += mid[k - 1] * gamma[k]
        if k + 1 <= n - 2:
            qg += lo[k] * gamma[k + 1]
        g.append(y[k] - a * qg)
    return np.array([float(v) for v in g])


def case(N, lam, seed=0):
    rng = np.random.default_rng(seed)
    t = lc.chebyshev_second(N)
    alive = np.ones(N, bool)
    alive[rng.choice(N, N // 5, replace=False)] = False
    y = np.sin(3 * t) + 0.1 * rng.standard_normal(N)
    tF, yF = t[alive], y[alive]
    exact = reinsch_mp(tF, yF, lam)
    spline = lc._spline.fit(jnp.asarray(t), jnp.asarray(y[:, None]), jnp.asarray(alive), jnp.asarray(lam))
    ours = np.asarray(spline.g)[: alive.sum(), 0]
    lapack = reinsch_values(tF, yF[:, None], lam)[:, 0]
    scale = np.max(np.abs(exact))
    row = {"N": N, "lam": lam, "letcc_jax": np.max(np.abs(ours - exact)) / scale,
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
    lams = [0.0, 1e-6] if args.smoke else [0.0, 1e-8, 1e-6, 1e-4, 1e-2]
    rows = [case(N, lam) for N in sizes for lam in lams]
    print("## float64 knot values vs a 50-digit reference (Chebyshev workers, N/5 random stragglers)\n")
    print("max relative error; sin(3t) + noise 0.1\n")
    print(markdown_table(
        ["N", "lam_dec", "letcc_jax", "LAPACK Reinsch", "scipy make_smoothing_spline"],
        [[r["N"], f"{r['lam']:g}", f"{r['letcc_jax']:.1e}", f"{r['lapack_reinsch']:.1e}",
          f"{r['scipy_make_smoothing_spline']:.1e}"] for r in rows]))
    path = write_json("accuracy" + ("_smoke" if args.smoke else ""), {"machine": machine(), "rows": rows})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
