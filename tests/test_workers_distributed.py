"""The sharded backend across two JAX processes on 127.0.0.1 (jax.distributed, gloo).

Two subprocesses with two CPU devices each form one 4-device mesh; each runs the same
round and must decode exactly what a single process decodes.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from workers_common import F, K, X

import letcc_jax as lc
from letcc_jax import workers

TESTS = os.path.dirname(os.path.abspath(__file__))

_PROCESS = """
    import json, sys
    import jax
    port, rank = sys.argv[1], int(sys.argv[2])
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=rank,
        coordinator_bind_address=f"127.0.0.1:{port}", initialization_timeout=60,
    )
    import numpy as np
    import letcc_jax as lc
    from letcc_jax import workers
    from workers_common import F, K, X

    N = 13  # not a multiple of the 4 devices: padding crosses processes
    alive = ~np.isin(np.arange(N), [1, 6, 10])
    result = workers.run(F, lc.bacc(K, N), X, backend="sharded", alive=alive)
    print(json.dumps({
        "devices": jax.device_count(), "processes": jax.process_count(),
        "estimate": result.estimate.tolist(), "used": result.used.tolist(),
    }))
    jax.distributed.shutdown()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(150)
def test_two_processes_decode_like_one():
    # gloo listens on the address the host name resolves to; stay on loopback.
    if not ipaddress.ip_address(socket.gethostbyname(socket.gethostname())).is_loopback:
        pytest.skip("the host name does not resolve to loopback, where gloo would listen")
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": TESTS, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    code = textwrap.dedent(_PROCESS)
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(port), str(rank)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for rank in (0, 1)
    ]
    try:
        outputs = [proc.communicate(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]

    N = 13
    alive = ~np.isin(np.arange(N), [1, 6, 10])
    single = workers.run(F, lc.bacc(K, N), X, alive=alive)
    for got in results:
        assert (got["devices"], got["processes"]) == (4, 2)
        np.testing.assert_array_equal(got["used"], alive)
        np.testing.assert_allclose(np.asarray(got["estimate"]), single.estimate, rtol=1e-5, atol=1e-6)
