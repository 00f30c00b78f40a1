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

from . import _xla

_xla.guard_cpu_reductions()  # before anything below can start a JAX backend

from .core._points import chebyshev_first, chebyshev_second, equispaced
from .sim._rounds import CodedResult, MonteCarloResult, mse, relacc
from .core._schemes import (
    BACC,
    LCC,
    SCHEMES,
    BarycentricScheme,
    BoundedLeTCC,
    LeTCC,
    Posterior,
    ResidualLeTCC,
    Scheme,
    Uncoded,
    bacc,
    bounded_letcc,
    field,
    lcc,
    letcc,
    make_scheme,
    register_scheme,
    residual_letcc,
    stack_schemes,
    sweep_axes,
    uncoded,
)
from .core._smoothing import smoothing_spline
from .sim._adversary import AdversarialAttack, worst_adversaries
from .sim._calibrate import (
    Calibration,
    calibrate,
    conformal_quantiles,
    coverage,
    posterior_rounds,
)
from .sim._evaluate import expected_loss, monte_carlo, run_coded
from .sim._exact import ReplicationLoss, replication_loss
from .sim._lambda import DEFAULT_LAMBDA_GRID, LambdaSearch, gcv, select_lambda
from .sim._models import (
    Adversaries,
    BernoulliStragglers,
    ExactStragglers,
    FailedWorkers,
    FaultModel,
    GaussianNoise,
    LatencyStragglers,
    NoStragglers,
    StragglerModel,
)
from .sim._order import order_inputs, path_length, path_nodes
from .sim._tuning import (
    LEARNABLE,
    Tuner,
    TunerState,
    TuningResult,
    node_logits,
    ordered_nodes,
    tunable,
    tune,
    tuner,
)
from .sim._worst import WorstCase, worst_stragglers
from .bspline import BSpline, bspline, bspline_basis  # on the public API above: last

register_scheme("bspline", bspline)

try:
    __version__ = version("letcc_jax")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = [
    "AdversarialAttack",
    "Adversaries",
    "BACC",
    "BSpline",
    "BarycentricScheme",
    "BernoulliStragglers",
    "BoundedLeTCC",
    "Calibration",
    "CodedResult",
    "DEFAULT_LAMBDA_GRID",
    "ExactStragglers",
    "FailedWorkers",
    "FaultModel",
    "GaussianNoise",
    "LCC",
    "LEARNABLE",
    "LambdaSearch",
    "LatencyStragglers",
    "LeTCC",
    "Posterior",
    "MonteCarloResult",
    "NoStragglers",
    "ReplicationLoss",
    "ResidualLeTCC",
    "SCHEMES",
    "Scheme",
    "StragglerModel",
    "Tuner",
    "TunerState",
    "TuningResult",
    "Uncoded",
    "WorstCase",
    "bacc",
    "bounded_letcc",
    "bspline",
    "bspline_basis",
    "calibrate",
    "chebyshev_first",
    "chebyshev_second",
    "conformal_quantiles",
    "coverage",
    "equispaced",
    "expected_loss",
    "field",
    "gcv",
    "lcc",
    "letcc",
    "make_scheme",
    "monte_carlo",
    "mse",
    "node_logits",
    "order_inputs",
    "ordered_nodes",
    "path_length",
    "path_nodes",
    "posterior_rounds",
    "register_scheme",
    "relacc",
    "replication_loss",
    "residual_letcc",
    "run_coded",
    "select_lambda",
    "smoothing_spline",
    "stack_schemes",
    "sweep_axes",
    "tunable",
    "tune",
    "tuner",
    "uncoded",
    "worst_adversaries",
    "worst_stragglers",
]
