"""Session-wide test configuration.

float64 is enabled for the whole session so that float64 cases really run in float64; the
library follows the input dtype, so float32 cases pass explicit float32 arrays. Nothing
here touches a device at import time (test modules may still set XLA_FLAGS for their
subprocesses), and the library itself never flips jax_enable_x64.
"""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)
# Strict dtype promotion: an implicit mix of dtypes (float32 with float64, int32 with int64)
# is an error, in the tests' own process and in the processes they start (experiments,
# notebooks, extra devices), so that the library's dtype always follows its inputs.
os.environ["JAX_NUMPY_DTYPE_PROMOTION"] = "strict"
jax.config.update("jax_numpy_dtype_promotion", "strict")
# Tests never download: a missing data file must fail loudly, not reach for the network.
os.environ.setdefault("LETCC_OFFLINE", "1")
# Tests count compilations: the experiments' on-disk cache of compiled programs stays off.
os.environ["LETCC_JAX_XLA_CACHE"] = "0"

DTYPES = (np.float32, np.float64)


@pytest.fixture(params=DTYPES, ids=lambda d: np.dtype(d).name)
def dtype(request):
    """Every numeric test runs once in float32 and once in float64."""
    return request.param


@pytest.fixture
def rng(request):
    """A NumPy generator seeded from the test's name: reproducible, different per test.
    ``LETCC_TEST_SEED=n`` shifts every such seed, to check that tolerances hold on other
    draws than the ones they were measured on."""
    seed = (sum(map(ord, request.node.nodeid)) + int(os.environ.get("LETCC_TEST_SEED", "0")))
    seed %= 2**32
    return np.random.default_rng(seed)


@pytest.fixture(scope="session")
def jit_encode():
    """One jitted encoder shared by every test file, so each configuration compiles once."""
    return jax.jit(lambda scheme, X: scheme.encode(X))


DECODE_TRACES = []


def _traced_decode(scheme, Y, alive):
    DECODE_TRACES.append(type(scheme).__name__)  # runs only when jax traces (compiles)
    return scheme.decode(Y, alive)


_JIT_DECODE = jax.jit(_traced_decode)


@pytest.fixture(scope="session")
def jit_decode():
    """One jitted decoder shared by every test file (the scheme is a pytree argument)."""
    return _JIT_DECODE


@pytest.fixture
def decode_traces():
    """The log of jit_decode's traces: it grows exactly when jit_decode recompiles."""
    return DECODE_TRACES


@pytest.fixture(scope="module", autouse=True)
def _release_compiled_programs():
    """Drop JAX's compiled programs after each test module.

    Each program XLA compiles for the CPU keeps a few memory mappings; the whole suite
    compiles thousands, and one process holding all of them reaches the kernel's limit on
    mappings per process (vm.max_map_count, 65530 by default), where XLA's compiler
    crashes. Programs are rarely shared between modules, so this costs little.
    """
    yield
    jax.clear_caches()
