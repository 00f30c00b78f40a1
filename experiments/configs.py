"""Resolved sizes of the experiments: ``cpu`` (minutes on two cores), ``paper`` (the paper's
datasets, when their files are present), ``demo`` (``make demo``) and ``smoke`` (seconds, for
CI). One frozen dataclass per experiment; a command line picks one of its named instances and
sets the run's fields with ``dataclasses.replace``.

Settings are (N, K, S) with S = N - |F| stragglers; |F| stays between 0.5 N and 0.9 N.
"""

from __future__ import annotations

import dataclasses

import numpy as np

#: lam_dec grid for LeTCC (mean-form lambda); 0 is interpolation, right for noiseless f.
LAM_DEC_GRID = tuple(float(v) for v in np.concatenate([[0.0], np.logspace(-8, 0, 9)]))
#: Finer and lower-reaching grid for noisy outputs: with sigma = 1e-3 rms and N = 1000 the
#: best lam_dec measured ~1e-9, below LAM_DEC_GRID (which then picked 0 and plateaued).
LAM_DEC_GRID_FINE = tuple(float(v) for v in np.concatenate([[0.0], np.logspace(-12, 0, 25)]))

Setting = tuple[int, int, int]


class FrozenDict(dict):
    """A dict that cannot change and hashes by its items, so that a config holding one stays
    immutable and hashable; ``dataclasses.asdict`` and ``json`` still see a plain dict, which
    keeps results.json as it was."""

    def __hash__(self):
        return hash(frozenset(self.items()))

    def __reduce__(self):
        return type(self), (dict(self),)

    def _immutable(self, *args, **kwargs):
        raise TypeError("a config is immutable: make a new one with dataclasses.replace")

    __setitem__ = __delitem__ = __ior__ = _immutable
    clear = pop = popitem = setdefault = update = _immutable


@dataclasses.dataclass(frozen=True, kw_only=True)
class Table1Config:
    """Sizes of Table 1 (``experiments.table1``)."""

    models: FrozenDict
    """Model name -> the dataset it is trained and evaluated on."""
    train: FrozenDict | None = None
    """Overrides of the model's default ``TrainConfig`` (e.g. fewer epochs); None keeps it."""
    settings: tuple[Setting, ...]
    """The (N, K, S) rows, each run for every model."""
    trials: int
    batches: int
    """Straggler draws on each of ``batches`` evaluation batches of K test images; the
    per-trial values of all batches are pooled into one mean and std."""
    cal_trials: int
    lam_dec_grid: tuple[float, ...]
    """LeTCC's lam_dec is the grid value with the lowest mean loss over ``cal_trials``
    straggler draws on a calibration batch disjoint from the evaluation images."""
    seed: int
    """Seeds the data split and every straggler draw."""
    worst_case: tuple[str, ...] = ()
    """Models whose settings also get the worst-case table: every scheme, plus LeTCC tuned
    by ``letcc_jax.tune``, under the S stragglers that ``letcc_jax.worst_stragglers``
    finds worst on the first evaluation batch."""
    worst_restarts: int = 0
    worst_max_rounds: int = 1_000
    """Random starts and swap rounds per local search of ``worst_stragglers`` (besides its
    greedy and tag-window starts); exhaustive where C(N, S) <= 20,000."""
    tune_steps: int = 100
    """Adam steps of ``letcc_jax.tune`` (from the selected lam_dec, on the calibration
    batch) for the tuned LeTCC of the worst-case table."""
    name: str = ""
    untrained: bool = False
    """Set per run by the command line: the config's name, and whether the models keep their
    random initial weights (a fast stand-in for tests)."""

    def __post_init__(self):
        unknown = [m for m in self.worst_case if m not in self.models]
        if unknown:
            raise ValueError(f"worst_case names models the config does not run: {unknown}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ErrorVsNConfig:
    """Sizes of the error-vs-N sweep (``experiments.error_vs_n``)."""

    train: FrozenDict | None = None
    """Overrides of LeNet-5's default ``TrainConfig``; None keeps it."""
    N: tuple[int, ...]
    K: int
    """The worker counts swept, at a fixed number K of inputs."""
    S_fraction: float
    S_fixed: int
    """The two straggler regimes: S = round(S_fraction N), or S = S_fixed; either leaves at
    least 4 survivors at small N."""
    rel_sigmas: tuple[float, ...]
    """Noise sigma relative to the RMS of f's outputs on the evaluation inputs."""
    functions: tuple[str, ...]
    """The f swept: "synthetic" (a smooth function of a 1-D input) and/or "lenet5"."""
    trials: int
    batches: int
    """``batches`` calibration batches of K inputs and as many disjoint evaluation batches,
    ``trials`` straggler and noise draws on each. Calibration and evaluation share both
    sizes, so that per (N, S) one compiled sweep serves them both."""
    lam_dec_grid: tuple[float, ...]
    """lam_dec is re-tuned on the grid for every (N, S, sigma), on the mean loss over the
    calibration batches: one batch of K = 8 images picked lam_dec = 0 for LeNet-5 at
    sigma/rms = 1e-3 where 1e-12 helped the evaluation images."""
    seed: int
    """Seeds the inputs, the data split and every straggler and noise draw."""
    name: str = ""
    untrained: bool = False
    """Set per run by the command line: the config's name, and whether LeNet-5 keeps its
    random initial weights (a fast stand-in for tests)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProbabilisticConfig:
    """Sizes of the probabilistic-straggler sweep (``experiments.probabilistic``)."""

    train: FrozenDict | None = None
    """Overrides of LeNet-5's default ``TrainConfig``; None keeps it."""
    N: tuple[int, ...]
    K: int
    """The worker counts swept, at a fixed number K of inputs."""
    p: tuple[float, ...]
    """Each worker straggles independently with probability p (one curve per p)."""
    functions: tuple[str, ...]
    """The f swept: "synthetic" and/or "lenet5" (as in the error-vs-N sweep)."""
    trials: int
    batches: int
    """``batches`` calibration and as many disjoint evaluation batches of K inputs,
    ``trials`` straggler draws on each."""
    lam_dec_grid: tuple[float, ...]
    """LeTCC's lam_dec is re-tuned per (N, p) on the mean loss over the calibration
    batches."""
    seed: int
    name: str = ""
    untrained: bool = False
    """Set per run by the command line."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class TuningConfig:
    """Sizes of the tuned-against-grid comparison (``experiments.tuning``)."""

    functions: tuple[str, ...]
    settings: FrozenDict
    """The f compared ("sincos", "tanh_net", "lenet5") and, per f, its (N, K, S) settings."""
    rel_sigmas: tuple[float, ...]
    """Noise sigma relative to the RMS of f's outputs."""
    repeats: int
    """Independent repeats, each with fresh calibration and evaluation inputs."""
    batches: FrozenDict
    """Per f: calibration batches of K inputs, and as many evaluation batches."""
    cal_trials: int
    eval_trials: int
    steps: int
    """Straggler draws: ``cal_trials`` per calibration loss (the grid search, each tuning
    step), ``eval_trials`` per held-out evaluation and per validation of the tuned scheme;
    ``steps``: Adam steps of ``letcc_jax.tune``."""
    lam_dec_grid: tuple[float, ...]
    """The grid searched for lam_dec, and from which GCV picks."""
    seed: int
    """Seeds the inputs, the random network and every draw."""
    name: str = ""
    untrained: bool = False
    """Set per run by the command line: the config's name, and whether LeNet-5 keeps its
    random initial weights (a fast stand-in for tests)."""

    def __post_init__(self):
        missing = [f for f in self.functions if f not in self.settings or f not in self.batches]
        if missing:
            raise ValueError(
                f"the {self.name or 'chosen'} config has no settings or batches for "
                f"{', '.join(missing)}; choose among {', '.join(self.settings)}."
            )


@dataclasses.dataclass(frozen=True, kw_only=True)
class AdversarialConfig:
    """Sizes of the adversarial sweep (``experiments.adversarial``)."""

    N: tuple[int, ...]
    K: int
    """The worker counts swept (the smallest calibrates the theory scaling's constant), at
    a fixed number K of inputs."""
    exponents: tuple[float, ...]
    """The a of round(N^a) adversaries, each in [0, 1)."""
    magnitude: float
    """The bound M on every entry an adversary sends (the synthetic f's outputs lie in
    [-1, 1])."""
    batches: int
    """Calibration batches of K inputs, and as many disjoint evaluation batches; one attack
    per batch, scheme, lam_dec and N."""
    restarts: int
    """Random starts of each attack, besides the 2K structured ones."""
    lam_dec_grid: tuple[float, ...]
    """The grid searched for the tuned lam_dec and for the theory scaling's constant."""
    seed: int
    """Seeds the inputs and the attacks' random starts."""
    name: str = ""
    untrained: bool = False
    """Set per run by the command line (``untrained`` has no effect: f is synthetic)."""

    def __post_init__(self):
        if not all(0 <= a < 1 for a in self.exponents):
            raise ValueError(f"exponents must lie in [0, 1), got {self.exponents}.")


#: The service-time laws of ``experiments.latency``.
LAWS = ("shifted_exponential", "pareto")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LatencyConfig:
    """Sizes of the latency-accuracy frontier (``experiments.latency``)."""

    K: int
    N: int
    """K inputs per round, coded for N workers; N a multiple of K gives replication N / K
    replicas of every input."""
    functions: tuple[str, ...]
    """The f: "synthetic" (a smooth function of a 1-D input) and/or "lenet5"."""
    distributions: tuple[tuple[str, float, float], ...]
    """Per-worker service-time laws: ("shifted_exponential", shift s, rate 1/s) or
    ("pareto", scale s, shape)."""
    rounds: int
    cal_rounds: int
    """Evaluation rounds per (f, law), each running every scheme once; and calibration
    rounds (LeTCC only, other inputs and delays) that set the deadlines and lam_dec."""
    deadline_quantiles: tuple[float, ...]
    """Deadlines: these quantiles of the calibration rounds' pooled arrival times; the
    curve's last point has no deadline (inf)."""
    lam_dec_grid: tuple[float, ...]
    """LeTCC's lam_dec, chosen per deadline: the lowest mean MSE on the calibration rounds."""
    n_workers: int
    """Dask worker processes (one thread each): an injected delay leaves the thread pool,
    so a late worker blocks no one; the processes only compute f."""
    seed: int
    """Seeds the inputs, the data split, the delay draws and Dask's dispatch order."""
    name: str = ""
    untrained: bool = False
    """Set per run by the command line: the config's name, and whether LeNet-5 keeps its
    random initial weights (a fast stand-in for tests)."""

    def __post_init__(self):
        unknown = [d[0] for d in self.distributions if d[0] not in LAWS]
        if unknown:
            raise ValueError(f"unknown service-time law(s) {unknown}; choose from {LAWS}.")
        if not all(0.0 < q < 1.0 for q in self.deadline_quantiles):
            raise ValueError(f"deadline_quantiles must lie in (0, 1), got {self.deadline_quantiles}.")
        if self.N < self.K:
            raise ValueError(f"replication needs N >= K, got N={self.N}, K={self.K}.")


#: Overrides of the default TrainConfig for make demo (LeNet-5: 3 epochs instead of 5).
_DEMO_TRAIN = FrozenDict(epochs=3)

_CPU_SETTINGS = ((20, 5, 6), (50, 10, 15), (100, 20, 30), (200, 20, 80))
#: Low redundancy (N/K = 1.5 and 2), where replication has inputs with a single replica.
_LOW_REDUNDANCY = ((30, 20, 6), (40, 20, 10))

TABLE1 = {
    "cpu": Table1Config(
        models=FrozenDict(lenet5="fashion_mnist", repvgg="fashion_mnist", vit="fashion_mnist"),
        settings=_LOW_REDUNDANCY + _CPU_SETTINGS,
        trials=25,
        batches=4,
        cal_trials=25,
        lam_dec_grid=LAM_DEC_GRID,
        seed=0,
        worst_case=("lenet5",),
        worst_max_rounds=20,
    ),
    "paper": Table1Config(
        models=FrozenDict(lenet5="mnist", repvgg="cifar10", vit="cifar100"),
        settings=_LOW_REDUNDANCY + _CPU_SETTINGS + ((200, 50, 40),),
        trials=50,
        batches=10,
        cal_trials=50,
        lam_dec_grid=LAM_DEC_GRID,
        seed=0,
        worst_case=("lenet5", "repvgg", "vit"),
        worst_restarts=2,
        tune_steps=150,
    ),
    # make demo: LeNet-5 only, trained for fewer epochs (the whole demo, training included,
    # fits in five minutes on two cores); trials, batches and seed as in "cpu"
    "demo": Table1Config(
        models=FrozenDict(lenet5="fashion_mnist"),
        train=_DEMO_TRAIN,
        settings=((30, 20, 6), (100, 20, 30)),
        trials=25,
        batches=4,
        cal_trials=25,
        lam_dec_grid=LAM_DEC_GRID,
        seed=0,
    ),
    "smoke": Table1Config(
        models=FrozenDict(lenet5="fashion_mnist"),
        settings=((12, 4, 3),),
        trials=20,
        batches=2,
        cal_trials=8,
        lam_dec_grid=(0.0, 1e-4, 1e-2),
        seed=0,
        worst_case=("lenet5",),
        tune_steps=3,
    ),
}

ERROR_VS_N = {
    "cpu": ErrorVsNConfig(
        N=(10, 16, 25, 40, 63, 100, 160, 250, 400, 630, 1000),
        K=8,
        S_fraction=0.2,
        S_fixed=4,
        rel_sigmas=(0.0, 1e-3, 1e-2),
        functions=("synthetic", "lenet5"),
        trials=50,
        batches=4,
        lam_dec_grid=LAM_DEC_GRID_FINE,
        seed=0,
    ),
    # make demo: LeNet-5 only (the demo's), fewer N, sigmas and draws
    "demo": ErrorVsNConfig(
        train=_DEMO_TRAIN,
        N=(10, 20, 40, 80, 160),
        K=8,
        S_fraction=0.2,
        S_fixed=4,
        rel_sigmas=(0.0, 1e-2),
        functions=("lenet5",),
        trials=30,
        batches=2,
        lam_dec_grid=LAM_DEC_GRID_FINE,
        seed=0,
    ),
    "smoke": ErrorVsNConfig(
        N=(10, 20),
        K=4,
        S_fraction=0.2,
        S_fixed=2,
        rel_sigmas=(0.0, 1e-2),
        functions=("synthetic", "lenet5"),
        trials=8,
        batches=2,
        lam_dec_grid=(0.0, 1e-4),
        seed=0,
    ),
}

PROBABILISTIC = {
    "cpu": ProbabilisticConfig(
        N=(10, 16, 25, 40, 63, 100, 160, 250, 400, 630, 1000, 1600),
        K=8,
        p=(0.1, 0.3),
        functions=("synthetic", "lenet5"),
        trials=50,
        batches=4,
        lam_dec_grid=LAM_DEC_GRID,
        seed=0,
    ),
    # the synthetic f only: LeNet-5's inputs load as in the error-vs-N sweep
    "smoke": ProbabilisticConfig(
        N=(10, 20),
        K=4,
        p=(0.1, 0.3),
        functions=("synthetic",),
        trials=8,
        batches=2,
        lam_dec_grid=(0.0, 1e-4),
        seed=0,
    ),
}

TUNING = {
    "cpu": TuningConfig(
        functions=("sincos", "tanh_net", "lenet5"),
        settings=FrozenDict(sincos=((20, 5, 6),), tanh_net=((50, 10, 15),),
                            lenet5=((20, 5, 6),)),
        rel_sigmas=(0.0, 1e-1),
        repeats=3,
        batches=FrozenDict(sincos=16, tanh_net=16, lenet5=8),
        cal_trials=32,
        eval_trials=64,
        steps=150,
        lam_dec_grid=LAM_DEC_GRID_FINE,
        seed=0,
    ),
    "smoke": TuningConfig(
        functions=("sincos", "lenet5"),
        settings=FrozenDict(sincos=((10, 4, 3),), lenet5=((10, 4, 3),)),
        rel_sigmas=(1e-2,),
        repeats=2,
        batches=FrozenDict(sincos=2, lenet5=2),
        cal_trials=4,
        eval_trials=4,
        steps=4,
        lam_dec_grid=(0.0, 1e-4),
        seed=0,
    ),
}

ADVERSARIAL = {
    "cpu": AdversarialConfig(
        N=(16, 32, 64, 128, 256, 512, 1024),
        K=8,
        exponents=(0.0, 0.25, 0.5),
        magnitude=1.0,
        batches=4,
        restarts=8,
        lam_dec_grid=LAM_DEC_GRID_FINE[1:],
        seed=0,
    ),
    "smoke": AdversarialConfig(
        N=(8, 16),
        K=4,
        exponents=(0.5,),
        magnitude=1.0,
        batches=2,
        restarts=2,
        lam_dec_grid=(1e-8, 1e-5, 1e-2),
        seed=0,
    ),
}

# Delays of ~0.1 s rather than tens of ms: on a shared 2-core machine Dask's own dispatch
# spreads 40 undelayed tasks' arrivals over ~0.1 s (more under load), which would otherwise
# drown the service-time law.
_LATENCY_CPU = LatencyConfig(
    K=8,
    N=40,
    functions=("synthetic", "lenet5"),
    distributions=(("shifted_exponential", 0.1, 10.0), ("pareto", 0.05, 1.8)),
    rounds=30,
    cal_rounds=8,
    deadline_quantiles=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99),
    lam_dec_grid=(0.0, 1e-6, 1e-4, 1e-2),
    n_workers=2,
    seed=0,
)

LATENCY = {
    "cpu": _LATENCY_CPU,
    # Twice as many workers as inputs instead of five times: replication keeps 2 replicas
    "low_redundancy": dataclasses.replace(_LATENCY_CPU, N=16),
    "smoke": LatencyConfig(
        K=4,
        N=12,
        functions=("synthetic",),
        distributions=(("shifted_exponential", 0.01, 100.0), ("pareto", 0.01, 1.8)),
        rounds=3,
        cal_rounds=2,
        deadline_quantiles=(0.3, 0.6, 0.9),
        lam_dec_grid=(0.0, 1e-4),
        n_workers=2,
        seed=0,
    ),
}
