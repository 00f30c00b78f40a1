"""The JAX state-space library a user would reach for, against letcc_jax's own smoothers.

The cubic smoothing spline is the posterior mean of an integrated Wiener process (state:
value and slope; between knots h apart F = [[1, h], [0, 1]], Q = q [[h^3/3, h^2/2],
[h^2/2, h]]) observed with noise sigma^2 = a q, a = |F| lam in the mean form (Wahba 1978;
Wecker and Ansley 1983). ``cuthbert`` (0.1.1, the square-root parallel Kalman filter and
RTS smoother of Yaghoobi, Corenflos, Hassan and Särkkä, over ``jax.lax.associative_scan``)
runs that model here with ``parallel=True``; a straggler's observation is NaN, which
cuthbert treats as missing. It has no diffuse prior, so the spline's natural boundary is
approximated by a wide one (standard deviation 1e4 on value and slope at one unit before
the first knot).

For each N (Chebyshev workers, 20% random stragglers, lam_dec = 1e-6, one output column):
the relative max error of the smoothed values at the knots against letcc_jax's sequential
smoother in float64 (tested to round-off against 40-digit solutions), in float64 and
float32, and the time of one jitted smoothing pass, for cuthbert and for letcc_jax's
``"sris"`` and ``"parallel"`` solvers.

    pip install cuthbert==0.1.1          # not a dependency of letcc_jax
    python benchmarks/eval_ssm_libraries.py            # about two minutes on 2 cores

Writes benchmarks/results/ssm_libraries.json.
"""

from __future__ import annotations

import functools
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import letcc_jax as lc  # noqa: E402
from _common import markdown_table, start, write_json  # noqa: E402
from letcc_jax.core import spline  # noqa: E402

try:
    import cuthbert
    from cuthbert.gaussian import kalman
except ImportError:
    sys.exit("cuthbert is not installed: pip install cuthbert==0.1.1")

PRIOR_SD = 1e4


def _dynamics(inputs):
    h = inputs[0]
    dtype = h.dtype
    F = jnp.array([[1.0, 0.0], [0.0, 1.0]], dtype).at[0, 1].set(h)
    Q = jnp.stack([jnp.stack([h**3 / 3, h**2 / 2]), jnp.stack([h**2 / 2, h])])
    return F, jnp.zeros(2, dtype), jnp.linalg.cholesky(Q)


def _observation(sigma, inputs):
    y = inputs[1]
    dtype = y.dtype
    return (jnp.array([[1.0, 0.0]], dtype), jnp.zeros(1, dtype),
            jnp.reshape(sigma.astype(dtype), (1, 1)), jnp.reshape(y, (1,)))


@functools.partial(jax.jit, static_argnames="parallel")
def cuthbert_smooth(t, y, alive, a, parallel=True):
    """Smoothed values at the knots: the IWP model with q = 1, sigma^2 = a."""
    dtype = y.dtype
    h = jnp.concatenate([jnp.ones(1, dtype), jnp.diff(t)])
    obs = jnp.where(alive, y, jnp.nan)
    filt = kalman.build_filter(jnp.zeros(2, dtype), PRIOR_SD * jnp.eye(2, dtype=dtype),
                               _dynamics, functools.partial(_observation, jnp.sqrt(a)))
    smoother = kalman.build_smoother(_dynamics)
    inputs = (h, obs)
    states = cuthbert.filter(filt, inputs, filt.init_prepare(), parallel=parallel)
    smoothed = cuthbert.smoother(smoother, states, inputs, parallel=parallel)
    return smoothed.mean[1:, 0]


@functools.partial(jax.jit, static_argnames="method")
def ours(t, y, alive, lam, method):
    return spline.fit(t, y[:, None], alive, lam, method).g[:, 0]


def best(fn, repeats=3):
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - begin)
    return min(times)


def main():
    args, info = start(__doc__.splitlines()[0])
    # At N = 100,000 cuthbert gave no result in 13 minutes here (compilation and run).
    sizes = [200, 1000] if args.smoke else [200, 1000, 10_000]
    lam = 1e-6
    rows = []
    for N in sizes:
        rng = np.random.default_rng(N)
        t = np.asarray(lc.chebyshev_second(N))
        y = np.sin(3 * t) + 0.1 * rng.standard_normal(N)
        alive = rng.random(N) >= 0.2
        a = alive.sum() * lam
        exact = np.asarray(ours(jnp.asarray(t), jnp.asarray(y), jnp.asarray(alive),
                                jnp.asarray(lam), "sris"))
        scale = np.max(np.abs(exact))
        for dtype in (np.float64, np.float32):
            tt, yy, aa = jnp.asarray(t, dtype), jnp.asarray(y, dtype), jnp.asarray(alive)
            cases = {
                "cuthbert (parallel)": lambda: cuthbert_smooth(tt, yy, aa, jnp.asarray(a, dtype)),
                "letcc_jax sris": lambda: ours(tt, yy, aa, jnp.asarray(lam, dtype), "sris"),
                "letcc_jax parallel": lambda: ours(tt, yy, aa, jnp.asarray(lam, dtype),
                                                   "parallel"),
            }
            for name, fn in cases.items():
                got = np.asarray(fn(), np.float64)
                err = np.max(np.abs(got - exact)) / scale if np.all(np.isfinite(got)) else np.inf
                rows.append({"N": N, "dtype": np.dtype(dtype).name, "method": name,
                             "rel_err": float(err), "ms": best(fn) * 1e3})
                print(rows[-1], flush=True)
    print(markdown_table(["N", "dtype", "method", "max rel. error", "ms"],
                         [[r["N"], r["dtype"], r["method"], f"{r['rel_err']:.1e}",
                           f"{r['ms']:.2f}"] for r in rows]))
    path = write_json("ssm_libraries" + ("_smoke" if args.smoke else ""),
                      {"machine": info, "cuthbert": cuthbert.__version__ if hasattr(
                          cuthbert, "__version__") else "0.1.1", "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
