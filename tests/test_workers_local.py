"""The lockstep backends (vmap, sharded) and the execution interface shared by all backends.

The 8-device sharding check and the import check run in subprocesses, because XLA_FLAGS
must be set before JAX is imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType
from workers_common import ALIVE, D, F, K, M, N, SCHEMES, X, reference

import letcc_jax as lc
from letcc_jax import workers

TESTS = os.path.dirname(os.path.abspath(__file__))


def _python(code: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    """Run ``code`` in a fresh interpreter (tests dir importable); return its stdout."""
    full_env = {**os.environ, "PYTHONPATH": TESTS, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=full_env, capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["bacc", "lcc", "uncoded"])
def test_vmap_matches_core_reference(name):
    scheme = SCHEMES[name]
    result = workers.run(F, scheme, X, alive=ALIVE)
    np.testing.assert_allclose(result.estimate, reference(F, scheme, X, ALIVE), rtol=1e-5, atol=1e-5)
    assert result.estimate.shape == (K, M) and result.backend == "vmap"
    np.testing.assert_array_equal(result.used, ALIVE)
    np.testing.assert_array_equal(result.answered, ALIVE)
    assert np.isnan(result.outputs[~ALIVE]).all() and np.isfinite(result.outputs[ALIVE]).all()
    assert result.errors == {}
    t = result.timings
    assert t.total_s >= t.encode_s + t.compute_s + t.decode_s > 0
    assert np.isnan(t.arrival_s[~ALIVE]).all()
    assert np.ptp(t.arrival_s[ALIVE]) == 0 and 0 < t.arrival_s[0] <= t.compute_s
    assert np.isnan(t.worker_s).all()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(SCHEMES))
def test_sharded_matches_vmap_on_one_device(name):
    scheme = SCHEMES[name]
    ref = workers.run(F, scheme, X, alive=ALIVE)
    got = workers.run(F, scheme, X, alive=ALIVE, backend="sharded")
    assert got.backend == "sharded"
    np.testing.assert_allclose(got.outputs, ref.outputs, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got.estimate, ref.estimate, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(got.used, ref.used)


@pytest.mark.timeout(60)
def test_float64_follows_the_input():
    with jax.enable_x64(True):
        scheme = lc.bacc(K, N)
        result = workers.run(F, scheme, X.astype(np.float64), alive=ALIVE)
        assert result.estimate.dtype == np.float64
        np.testing.assert_allclose(
            result.estimate, reference(F, scheme, X.astype(np.float64), ALIVE), rtol=1e-12, atol=1e-12
        )


@pytest.mark.timeout(60)
def test_non_finite_outputs_are_erasures():
    def f(x):  # NaN on the coded inputs whose first coordinate is large
        y = F(x)
        return jnp.where(x[0] > 0.5, jnp.nan, y)

    scheme = SCHEMES["bacc"]
    nan_rows = np.asarray(scheme.encode(X))[:, 0] > 0.5
    assert 0 < nan_rows.sum() < N - scheme.min_survivors
    result = workers.run(f, scheme, X)
    np.testing.assert_array_equal(result.answered, np.ones(N, bool))
    np.testing.assert_array_equal(result.used, ~nan_rows)
    np.testing.assert_allclose(result.estimate, reference(F, scheme, X, ~nan_rows), rtol=1e-5, atol=1e-5)


@pytest.mark.timeout(60)
def test_lost_input_fails_loudly():
    alive = np.ones(N, bool)
    alive[[3, 3 + K]] = False  # both replicas of input 3
    with pytest.raises(workers.NotEnoughResults, match=r"input\(s\) \[3\]"):
        workers.run(F, SCHEMES["uncoded"], X, alive=alive)
    one = np.zeros(N, bool)
    one[0] = True
    with pytest.raises(workers.NotEnoughResults, match="needs at least 2"):
        workers.run(F, SCHEMES["bacc"], X, alive=one)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["vmap", "sharded"])
@pytest.mark.parametrize(
    "option", [{"wait_for": N}, {"deadline": 1.0}, {"faults": workers.WorkerFaults(nan=[1])}]
)
def test_lockstep_backends_reject_asynchronous_options(backend, option):
    with pytest.raises(ValueError, match="asynchronous backend"):
        workers.run(F, SCHEMES["bacc"], X, backend=backend, **option)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"X": X[:, :, None]}, ValueError, "shape"),
        ({"X": np.where(np.eye(K, D, dtype=bool), np.nan, X)}, ValueError, "non-finite"),
        ({"alive": np.ones(N - 1, bool)}, ValueError, "shape"),
        ({"alive": np.ones(N, int)}, TypeError, "boolean"),
        ({"wait_for": N + 1}, ValueError, "exceeds"),
        ({"wait_for": 0}, ValueError, "positive int"),
        ({"deadline": -1.0}, ValueError, "deadline"),
        ({"faults": {"nan": [1]}}, TypeError, "WorkerFaults"),
        ({"faults": workers.WorkerFaults(nan=[N])}, ValueError, "outside"),
        ({"backend": "ray"}, ValueError, "unknown backend"),
        ({"f": 3}, TypeError, "callable"),
        ({"f": lambda x: x.astype(jnp.int32)}, TypeError, "floating"),
        ({"f": lambda x: (x, x)}, TypeError, "one array"),
        ({"f": lambda x: x.reshape(2, 2)}, TypeError, "failed on one input"),
        ({"scheme": "letcc"}, TypeError, "scheme"),
    ],
)
def test_clear_errors_at_the_boundary(kwargs, error, match):
    args = {"f": F, "scheme": SCHEMES["bacc"], "X": X, **kwargs}
    with pytest.raises(error, match=match):
        workers.run(args.pop("f"), args.pop("scheme"), args.pop("X"), **args)


def test_worker_faults_validation():
    faults = workers.WorkerFaults.slow(N, 4, 0.5, seed=3)
    assert len(faults.delay) == 4 and set(faults.delay.values()) == {0.5}
    assert faults.task(next(iter(faults.delay))).delay == 0.5
    assert workers.WorkerFaults(nan=[2]).task(3) is None
    with pytest.raises(ValueError, match="seconds"):
        workers.WorkerFaults(delay={1: -1.0})
    with pytest.raises(TypeError, match="indices"):
        workers.WorkerFaults(fail=[1.5])
    with pytest.raises(ValueError, match="S <= N"):
        workers.WorkerFaults.slow(4, 5, 1.0)


def test_sharded_backend_needs_the_axis():
    mesh = jax.make_mesh((1,), ("data",), axis_types=(AxisType.Auto,))
    with pytest.raises(ValueError, match="none named 'workers'"):
        workers.ShardedBackend(mesh)
    assert workers.ShardedBackend(mesh, axis="data").devices == 1


_EIGHT_DEVICES = """
    import json
    import jax, numpy as np
    import letcc_jax as lc
    from letcc_jax import workers
    from workers_common import F, K, X

    assert jax.device_count() == 8
    backend = workers.ShardedBackend()
    out = {}
    # Fewer workers than devices, padding, an even split.
    for k, n in ((4, 5), (K, 13), (K, 16)):
        for name in ("bacc", "lcc", "uncoded"):
            scheme = lc.make_scheme(name, k, n)
            alive = ~np.isin(np.arange(n), [k, n - 1])  # replicas, for uncoded
            ref = workers.run(F, scheme, X[:k], alive=alive)
            got = backend.run(F, scheme, X[:k], alive=alive)
            out[f"{name}-{n}"] = [
                float(np.nanmax(np.abs(got.outputs - ref.outputs))),
                float(np.max(np.abs(got.estimate - ref.estimate))),
                bool((got.used == ref.used).all()),
            ]
    print(json.dumps(out))
"""


@pytest.mark.timeout(180)
def test_sharded_matches_vmap_on_eight_devices():
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    out = json.loads(_python(_EIGHT_DEVICES, env).strip().splitlines()[-1])
    assert len(out) == 9
    for case, (outputs_err, estimate_err, same_mask) in out.items():
        assert outputs_err <= 1e-6 and estimate_err <= 1e-5 and same_mask, case


@pytest.mark.timeout(120)
def test_workers_are_import_light():
    out = _python(
        """
        import sys
        import letcc_jax
        core_only = "letcc_jax.workers" not in sys.modules
        import letcc_jax.workers
        print(core_only, "distributed" in sys.modules, "dask" in sys.modules)
        """
    )
    assert out.split() == ["True", "False", "False"]
