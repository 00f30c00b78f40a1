"""letcc_jax: learning-theoretic coded computing (LeTCC) in JAX.

A master with K inputs and N workers, some of which straggle or lie, sends each worker a
coded input, runs any f on the workers, and recovers all K outputs from whichever workers
answer. Glossary used everywhere: K data points, N workers, S stragglers, d input
dimension, m output dimension.

Quick start::

    import jax, letcc_jax as lc
    scheme = lc.letcc(K=10, N=40)
    coded = scheme.encode(X)                      # (K, d) -> (N, d)
    Y = jax.vmap(f)(coded)                        # the workers
    estimate = scheme.decode(Y, alive)            # (N, m), (N,) bool -> (K, m)
"""

from importlib.metadata import PackageNotFoundError, version

from .sim._evaluate import CodedResult, MonteCarloResult, monte_carlo, mse, relacc, run_coded
from .sim._models import (
    Adversaries,
    BernoulliStragglers,
    ExactStragglers,
    FailedWorkers,
    GaussianNoise,
    LatencyStragglers,
    NoStragglers,
)
from .sim._lambda import DEFAULT_LAMBDA_GRID, LambdaSearch, gcv, select_lambda
from .core._points import chebyshev_first, chebyshev_second, equispaced
from .core._schemes import (
    BACC,
    LCC,
    SCHEMES,
    LeTCC,
    Scheme,
    Uncoded,
    bacc,
    lcc,
    letcc,
    make_scheme,
    uncoded,
)
from .core.spline import smooth as smoothing_spline
from .sim._tuning import (
    LEARNABLE,
    ResidualLeTCC,
    TuningResult,
    expected_loss,
    grid_search,
    node_logits,
    ordered_nodes,
    residual_letcc,
    tune,
)

try:
    __version__ = version("letcc_jax")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = [
    "Adversaries",
    "BACC",
    "BernoulliStragglers",
    "CodedResult",
    "DEFAULT_LAMBDA_GRID",
    "ExactStragglers",
    "FailedWorkers",
    "GaussianNoise",
    "LCC",
    "LEARNABLE",
    "LambdaSearch",
    "LatencyStragglers",
    "LeTCC",
    "MonteCarloResult",
    "NoStragglers",
    "ResidualLeTCC",
    "SCHEMES",
    "Scheme",
    "TuningResult",
    "Uncoded",
    "bacc",
    "chebyshev_first",
    "chebyshev_second",
    "equispaced",
    "expected_loss",
    "gcv",
    "grid_search",
    "lcc",
    "letcc",
    "make_scheme",
    "monte_carlo",
    "mse",
    "node_logits",
    "ordered_nodes",
    "relacc",
    "residual_letcc",
    "run_coded",
    "select_lambda",
    "smoothing_spline",
    "tune",
    "uncoded",
]
