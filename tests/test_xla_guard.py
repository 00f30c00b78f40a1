"""The guard against XLA's racy CPU reduce fusion (``letcc_jax._xla``).

On a multi-core CPU, jaxlib 0.10's YNNPACK reduce fusion returns a different wrong sum on
almost every call of ``sum(broadcast_to(ones((1024, 1)), (2, 1024, 1024)))``; importing
letcc_jax first turns that fusion off. Each case runs in a fresh interpreter, because XLA
reads its flags once per process.
"""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import letcc_jax as lc
from letcc_jax import _xla

_REDUCE = """
import jax, jax.numpy as jnp
f = jax.jit(lambda a: jnp.sum(jnp.broadcast_to(a, (2, 1024, 1024))))
ones = jnp.ones((1024, 1), jnp.float32)
print(sorted({float(f(ones)) for _ in range(100)}))
"""


def _python(code, **env):
    base = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run([sys.executable, "-W", "always", "-c", textwrap.dedent(code)],
                         env={**base, "JAX_PLATFORMS": "cpu", **env}, capture_output=True,
                         text=True, timeout=120, check=True)
    return out.stdout.strip().splitlines(), out.stderr


needs_known_jaxlib = pytest.mark.skipif(
    not _xla.KNOWN[0] <= _xla._jaxlib_version() < _xla.KNOWN[1],
    reason="the guard is a no-op outside the jaxlib releases known to take the flag")


@needs_known_jaxlib
@pytest.mark.timeout(150)
def test_sums_are_exact_after_importing_letcc_jax():
    lines, _ = _python("import os, letcc_jax\nprint(os.environ['XLA_FLAGS'])" + _REDUCE)
    assert lines[0] == _xla.SETTING
    assert lines[-1] == "[2097152.0]"


@needs_known_jaxlib
@pytest.mark.timeout(150)
def test_existing_flags_are_kept_and_a_users_own_setting_wins():
    lines, _ = _python("import os, letcc_jax\nprint(os.environ['XLA_FLAGS'])",
                       XLA_FLAGS="--xla_force_host_platform_device_count=2")
    assert lines == [f"--xla_force_host_platform_device_count=2 {_xla.SETTING}"]
    mine = f"{_xla.FLAG}=-eltwise"
    lines, _ = _python("import os, letcc_jax\nprint(os.environ['XLA_FLAGS'])", XLA_FLAGS=mine)
    assert lines == [mine]


@needs_known_jaxlib
@pytest.mark.timeout(150)
def test_a_late_import_warns_how_to_set_the_flag():
    _, err = _python("import jax\njax.numpy.ones(1).block_until_ready()\nimport letcc_jax")
    assert "RuntimeWarning" in err and _xla.SETTING in err


def test_replication_recovery_matches_numpy_on_random_masks():
    """The check that first failed under the race: which inputs have a replica alive."""
    rng = np.random.default_rng(0)
    for K, N in ((4, 10), (8, 20)):
        scheme = lc.uncoded(K, N)
        for dtype in (np.float32, np.float64):
            cast = jax.tree.map(lambda v: jnp.asarray(v, dtype), scheme)
            masks = rng.random((200, N)) < 0.5
            got = np.asarray(jax.vmap(cast.recovered)(masks))
            for alive, row in zip(masks, got):
                want = [alive[np.arange(N) % K == k].any() for k in range(K)]
                np.testing.assert_array_equal(row, want)
            for alive in masks[:50]:
                np.testing.assert_array_equal(
                    np.asarray(cast.recovered(alive)),
                    [alive[np.arange(N) % K == k].any() for k in range(K)])


@needs_known_jaxlib
def test_a_missing_private_jax_name_warns_instead_of_failing(monkeypatch):
    from jax._src import xla_bridge

    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.delattr(xla_bridge, "backends_are_initialized")
    with pytest.warns(RuntimeWarning, match="cannot tell whether JAX has started"):
        assert _xla.guard_cpu_reductions() is False
    assert os.environ["XLA_FLAGS"] == _xla.SETTING
