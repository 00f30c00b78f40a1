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


def _check_random_stragglers(stragglers) -> None:
    """A config's random straggler models: "exact" (S workers) and/or "bernoulli"."""
    if not set(stragglers) <= {"exact", "bernoulli"} or not stragglers:
        raise ValueError(f"stragglers must name 'exact' and/or 'bernoulli', got "
                         f"{stragglers}.")


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
    bucket_ratio: float = 10.0
    """Settings of one K whose N are within this ratio of the smallest of their run are
    simulated padded to the largest N (``Scheme.pad_workers``): one compiled program per
    scheme and run, the same numbers, every N of it at the cost of the largest."""
    tune_bucket_ratio: float = 2.6
    """The same for tuning (``letcc_jax.tune`` takes padded schemes): one compiled tuning
    step per run. A tuning step costs about N, so its runs are kept tighter."""
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
    bucket_ratio: float = 2.6
    """N within this ratio of the smallest of their bucket run as one padded sweep (one
    compiled program per scheme and bucket; every N of it costs the largest)."""
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
    bucket_ratio: float = 2.6
    """N within this ratio of the smallest of their bucket run as one padded sweep (one
    compiled program per code and bucket; every N of it costs the largest)."""
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


#: The input families of ``experiments.structured``: frames of a translating and of a
#: rotating Fashion-MNIST test image, blends between two test images, and sliding windows
#: of Google's daily stock price (matplotlib's sample data).
STRUCTURED_FAMILIES = ("translate", "rotate", "interpolate", "goog")


@dataclasses.dataclass(frozen=True, kw_only=True)
class StructuredConfig:
    """Sizes of the naturally structured inputs (``experiments.structured``)."""

    families: tuple[str, ...]
    """Input families, from ``STRUCTURED_FAMILIES``; each is K inputs in their natural order."""
    models: tuple[str, ...]
    """The image classifiers f of the image families ("lenet5", "repvgg", "vit")."""
    train: FrozenDict | None = None
    """Overrides of the image models' default ``TrainConfig``; None keeps it."""
    K: tuple[int, ...]
    ratios: tuple[float, ...]
    """N = round(ratio K) workers for every K; ratio >= 1, as replication needs N >= K."""
    stragglers: tuple[str, ...] = ("exact", "bernoulli")
    """Random straggler models: "exact" (S = round(S_fraction N) workers) and/or
    "bernoulli" (each worker with probability p)."""
    S_fraction: float = 0.2
    p: float = 0.2
    worst_K: tuple[int, ...] = ()
    """The K whose settings also get the worst S stragglers (``letcc_jax.worst_stragglers``,
    at most ``worst_max_rounds`` swap rounds) on the first evaluation sequence."""
    worst_max_rounds: int = 20
    trials: int
    batches: int
    """Straggler draws per sequence; sequences per family for calibration, and as many,
    disjoint, for evaluation."""
    bucket_ratio: float = 10.0
    """The N of one K within this ratio of the smallest of their run are simulated padded
    to the largest (``Scheme.pad_workers``): one compiled program per scheme and run, the
    same numbers, every N of it at the cost of the largest."""
    interp_trials: int = 400
    """Straggler draws of replication with interpolation (numpy, cheap; shared by the
    sequences)."""
    lam_dec_grid: tuple[float, ...]
    """LeTCC's lam_dec: the grid value of lowest mean loss on the calibration sequences,
    per family, straggler model and input order."""
    shift: float = 3.0
    angle: float = 30.0
    """The frames move the image from -shift to +shift pixels (horizontally), or rotate it
    from -angle to +angle degrees, in K equal steps."""
    window: int = 20
    horizon: int = 4
    hidden: int = 32
    train_steps: int = 300
    weight_decay: float = 0.1
    """The stock-price f: a tanh network (``window`` -> ``hidden`` -> ``horizon``) trained
    by ``train_steps`` full-batch Adam steps to forecast the next ``horizon`` log prices
    from the last ``window``, with the penalty ``weight_decay`` times the squared norm of
    its weights: among 0, 1e-3, 1e-2 and 0.1, the value whose held-out error (calibration
    period) is lowest; without it the network memorises the training period (held-out
    error 2.3 against 0.93 for the no-change forecast)."""
    seed: int
    """Seeds the image split, the random input order, the network and every draw."""
    name: str = ""
    untrained: bool = False
    """Set per run by the command line: the config's name, and whether the image models
    keep their random initial weights (a fast stand-in for tests)."""

    def __post_init__(self):
        unknown = [f for f in self.families if f not in STRUCTURED_FAMILIES]
        if unknown:
            raise ValueError(f"unknown families {unknown}; choose from {STRUCTURED_FAMILIES}.")
        if not all(r >= 1 for r in self.ratios):
            raise ValueError(f"ratios N/K must be >= 1 (replication), got {self.ratios}.")
        _check_random_stragglers(self.stragglers)
        if not set(self.worst_K) <= set(self.K):
            raise ValueError(f"worst_K {self.worst_K} must be among K {self.K}.")
        if self.worst_K and "exact" not in self.stragglers:
            raise ValueError("worst_K needs 'exact' stragglers: the worst case keeps the "
                             "lam_dec chosen for S random stragglers.")


STRUCTURED = {
    "cpu": StructuredConfig(
        families=STRUCTURED_FAMILIES,
        models=("lenet5",),
        K=(20, 100),
        ratios=(1.25, 1.5, 2.0, 3.0),
        worst_K=(20,),
        trials=50,
        batches=4,
        lam_dec_grid=LAM_DEC_GRID,
        seed=0,
    ),
    # One K, one N, one f: the compiled programs, not the sizes, take a smoke run's time,
    # and every f compiles its own (with goog's network too it took twice the ~30 s).
    "smoke": StructuredConfig(
        families=("translate", "rotate", "interpolate"),
        models=("lenet5",),
        K=(8,),
        ratios=(1.5, 2.0),
        stragglers=("exact",),
        worst_K=(8,),
        worst_max_rounds=2,
        trials=4,
        batches=2,
        lam_dec_grid=(0.0, 1e-4),
        # goog's sizes, for the tests of its own path
        window=8,
        hidden=8,
        train_steps=20,
        seed=0,
    ),
}


#: The studies of ``experiments.regimes``, in the order they run: (c) N < K workers in one
#: round, (d) systematic worker points, (e) a near-linear f, (f) output noise.
REGIME_STUDIES = ("few_workers", "systematic", "near_linear", "noise")


@dataclasses.dataclass(frozen=True, kw_only=True)
class RegimesConfig:
    """Sizes of the regimes where coding can win (``experiments.regimes``)."""

    studies: tuple[str, ...] = REGIME_STUDIES
    """The studies run, from ``REGIME_STUDIES`` (``--study`` overrides)."""
    train: FrozenDict | None = None
    """Overrides of LeNet-5's default ``TrainConfig``; None keeps it."""
    K: int
    """Inputs per batch, in every study."""
    batches: int
    trials: int
    """``batches`` calibration batches of K Fashion-MNIST test images and as many disjoint
    evaluation batches; ``trials`` straggler (and noise) draws on each."""
    straggler_fraction: float = 0.2
    """Exactly S = round(q N) stragglers, or each worker with probability p = q."""
    straggler_kinds: tuple[str, ...] = ("exact", "bernoulli")
    """The random straggler models of the few-workers and systematic studies; the
    near-linear and noise studies use "exact" only."""
    lam_dec_grid: tuple[float, ...]
    """LeTCC's lam_dec (noiseless studies): the grid value of lowest mean loss on the
    calibration batches, per setting and input order (and point set)."""
    few_workers_ratios: tuple[float, ...]
    """N / K <= 1 of the few-workers study."""
    latency_shift: float = 1.0
    latency_rate: float = 1.0
    latency_draws: int = 100_000
    """Service time of a task: shift + Exp(rate); rounds drawn for the latency quantiles."""
    systematic_ratios: tuple[float, ...]
    """N / K in (1, 2] of the systematic study."""
    worst_case: bool = True
    worst_restarts: int = 0
    worst_max_rounds: int = 20
    """The systematic study's worst S stragglers (``letcc_jax.worst_stragglers`` on the
    first evaluation batch): whether to search, random starts and swap rounds."""
    near_linear_ratios: tuple[float, ...]
    near_linear_c: tuple[float, ...]
    near_linear_m: int = 10
    """The near-linear phase diagram: N / K >= 1 x c in f(x) = tanh(c x W), W (784, m)."""
    noise_ratios: tuple[float, ...]
    rel_sigmas: tuple[float, ...]
    """N / K >= 1 and noise sigma relative to the RMS of f's outputs (noise study)."""
    noise_lam_dec_grid: tuple[float, ...]
    """LeTCC's lam_dec grid of the noise study, chosen per sigma."""
    seed: int
    """Seeds the image split, the random orders, W and every draw."""
    name: str = ""
    untrained: bool = False
    """Set per run by the command line: the config's name, and whether LeNet-5 keeps its
    random initial weights (a fast stand-in for tests)."""

    def __post_init__(self):
        unknown = [s for s in self.studies if s not in REGIME_STUDIES]
        if unknown or not self.studies:
            raise ValueError(f"studies must name some of {REGIME_STUDIES}, got {self.studies}.")
        if not set(self.straggler_kinds) <= {"exact", "bernoulli"} or not self.straggler_kinds:
            raise ValueError("straggler_kinds must name 'exact' and/or 'bernoulli', got "
                             f"{self.straggler_kinds}.")
        if not all(0 < r <= 1 for r in self.few_workers_ratios):
            raise ValueError(f"few_workers_ratios must lie in (0, 1], got "
                             f"{self.few_workers_ratios}.")
        if not all(1 < r <= 2 for r in self.systematic_ratios):
            raise ValueError(f"systematic_ratios must lie in (1, 2], got {self.systematic_ratios}.")
        if not all(r >= 1 for r in self.near_linear_ratios + self.noise_ratios):
            raise ValueError("near_linear_ratios and noise_ratios must be >= 1 (replication "
                             "needs N >= K).")


#: lam_dec grids of the regimes: the noiseless choices fell in [1e-8, 1e-5] (fewer workers
#: than inputs) or at 0; with noise in [1e-12, 3e-8] (sigma/rms up to 0.3, N/K >= 1.5).
_REGIMES_LAM = tuple(float(v) for v in np.concatenate([[0.0], np.logspace(-10, -3, 8)]))
_REGIMES_NOISE_LAM = tuple(float(v) for v in np.concatenate([[0.0], np.logspace(-13, -6, 15)]))

REGIMES = {
    "cpu": RegimesConfig(
        K=40,
        batches=4,
        trials=50,
        lam_dec_grid=_REGIMES_LAM,
        few_workers_ratios=(0.5, 0.75, 1.0),
        systematic_ratios=(1.25, 1.5, 1.75),
        worst_max_rounds=10,
        near_linear_ratios=(1.25, 1.5, 2.0, 3.0),
        near_linear_c=tuple(float(c) for c in np.logspace(-2, 1, 10)),
        noise_ratios=(1.5, 2.0, 3.0),
        rel_sigmas=(1e-3, 1e-2, 3e-2, 1e-1, 3e-1),
        noise_lam_dec_grid=_REGIMES_NOISE_LAM,
        seed=0,
    ),
    # one N per study and exact stragglers only: each study's compiled programs, not its
    # sizes, take the time
    "smoke": RegimesConfig(
        K=8,
        batches=2,
        trials=4,
        straggler_kinds=("exact",),
        lam_dec_grid=(0.0, 1e-4),
        few_workers_ratios=(0.5,),
        latency_draws=1_000,
        systematic_ratios=(1.5,),
        worst_max_rounds=2,
        near_linear_ratios=(1.5,),
        near_linear_c=(0.1, 3.0),
        noise_ratios=(1.5,),
        rel_sigmas=(1e-2, 1e-1),
        noise_lam_dec_grid=(0.0, 1e-4),
        seed=0,
    ),
}


#: The input orders of ``experiments.ordering``: a random permutation, or
#: ``letcc_jax.order_inputs`` with the method named (and the refinement after "+").
ORDER_METHODS = ("random", "nearest_neighbour", "spectral", "nearest_neighbour+2opt", "pca")


@dataclasses.dataclass(frozen=True, kw_only=True)
class OrderingConfig:
    """Sizes of the input-order comparison (``experiments.ordering``)."""

    settings: FrozenDict
    """Model name -> its (K, ratios) pairs: K inputs per batch, coded for N = round(ratio K)
    workers for each ratio >= 1 (replication needs N >= K)."""
    dataset: str = "fashion_mnist"
    train: FrozenDict | None = None
    """The dataset of every model, and overrides of their default ``TrainConfig``."""
    orders: tuple[str, ...] = ORDER_METHODS
    """The input orders compared, from ``ORDER_METHODS``."""
    stragglers: tuple[str, ...] = ("exact", "bernoulli")
    S_fraction: float = 0.2
    p: float = 0.2
    """Random straggler models: "exact" (S = round(S_fraction N) workers; the worst case
    uses the same S) and/or "bernoulli" (each worker independently with probability p)."""
    eval_inputs: int
    """Evaluation images per K: max(1, eval_inputs // K) disjoint batches of K."""
    trials: int
    """Straggler draws per evaluation batch, and on the calibration batch (one compiled
    program serves both)."""
    lam_dec_grid: tuple[float, ...]
    """LeTCC's lam_dec: the grid value of lowest E[MSE] on a calibration batch of K images,
    per setting, straggler model and order."""
    worst: FrozenDict = FrozenDict()
    """Model name -> the largest K whose settings also get the worst S stragglers
    (``letcc_jax.worst_stragglers`` on the first evaluation batch, for every scheme and
    order)."""
    worst_restarts: int = 0
    worst_max_rounds: int = 20
    nodes_model: str = ""
    nodes_settings: tuple[tuple[int, float], ...] = ()
    """The node comparison (Chebyshev, arc-length and tuned nodes, nearest-neighbour
    order, exact stragglers) for ``nodes_model`` at these (K, ratio); "" for none."""
    nodes_cal_batches: int = 4
    min_gap: float = 0.25
    tune_steps: int = 100
    tune_trials: int = 16
    """Calibration batches of K images that ``letcc_jax.tune`` learns alpha and lam_dec
    on (each in its own chain order), from the mean of their arc-length nodes
    (``letcc_jax.path_nodes`` with ``min_gap``); its Adam steps (0: no tuned nodes) and
    straggler draws per batch and step."""
    seed: int
    """Seeds the image split, the random orders and every draw."""
    bucket_ratio: float = 10.0
    """The N of one model and K within this ratio of the smallest of their run are
    simulated padded to the largest (``Scheme.pad_workers``): one compiled program per
    scheme and run, the same numbers, every N of it at the cost of the largest."""
    name: str = ""
    untrained: bool = False
    """Set per run by the command line: the config's name, and whether the models keep
    their random initial weights (a fast stand-in for tests)."""

    def __post_init__(self):
        unknown = [o for o in self.orders if o not in ORDER_METHODS]
        if unknown or not self.orders:
            raise ValueError(f"orders must name some of {ORDER_METHODS}, got {self.orders}.")
        ratios = [r for pairs in self.settings.values() for _, rs in pairs for r in rs]
        ratios += [r for _, r in self.nodes_settings]
        if not all(r >= 1 for r in ratios):
            raise ValueError(f"ratios N/K must be >= 1 (replication), got {ratios}.")
        if not set(self.worst) <= set(self.settings):
            raise ValueError(f"worst names models the config does not run: {list(self.worst)}")
        if self.nodes_model and self.nodes_model not in self.settings:
            raise ValueError(f"nodes_model {self.nodes_model!r} is not among the models.")
        if self.nodes_model and "nearest_neighbour" not in self.orders:
            raise ValueError("the node comparison uses the nearest_neighbour order: keep it "
                             "in orders.")
        _check_random_stragglers(self.stragglers)
        if (self.worst or self.nodes_model) and "exact" not in self.stragglers:
            raise ValueError("worst and the node comparison need 'exact' stragglers (the "
                             "worst case keeps the lam_dec chosen for S random stragglers).")


_ORDERING_RATIOS = (1.25, 1.5, 2.0, 3.0)

ORDERING = {
    # LeNet-5 at K = 20, 100 and 400 with every ratio and at K = 1000 with two; RepVGG and
    # ViT at K = 20 with every ratio and at K = 100 with two; the worst case at K = 20. The
    # compiled programs (four per model and (K, N), three more for the worst case) take
    # most of the time, so settings, not sizes, are what this config rations.
    "cpu": OrderingConfig(
        settings=FrozenDict(
            lenet5=((20, _ORDERING_RATIOS), (100, _ORDERING_RATIOS), (400, _ORDERING_RATIOS),
                    (1000, (1.5, 3.0))),
            repvgg=((20, _ORDERING_RATIOS), (100, (1.5, 3.0))),
            vit=((20, _ORDERING_RATIOS), (100, (1.5, 3.0))),
        ),
        eval_inputs=400,
        trials=32,
        lam_dec_grid=(0.0, 1e-9, 1e-7),
        worst=FrozenDict(lenet5=20, repvgg=20, vit=20),
        worst_max_rounds=10,
        nodes_model="lenet5",
        nodes_settings=((20, 1.5), (100, 2.0)),
        tune_steps=60,
        tune_trials=8,
        seed=0,
    ),
    # One K, one N, one model, exact stragglers, no tuning: a smoke run's time is its
    # compiled programs (tuning's gradient alone doubled it).
    "smoke": OrderingConfig(
        settings=FrozenDict(lenet5=((8, (1.5, 2.0)),)),
        stragglers=("exact",),
        eval_inputs=16,
        trials=4,
        lam_dec_grid=(0.0, 1e-6),
        worst=FrozenDict(lenet5=8),
        worst_max_rounds=2,
        nodes_model="lenet5",
        nodes_settings=((8, 1.5),),
        nodes_cal_batches=2,
        tune_steps=0,
        seed=0,
    ),
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReliabilityConfig:
    """Sizes of the reliability study of LeTCC's standard errors
    (``experiments.reliability``)."""

    models: tuple[str, ...]
    """The f studied, in order: "synthetic" or an image model of ``settings``."""
    settings: FrozenDict
    """Model name -> (K, N): K inputs per batch, coded for N workers."""
    train: FrozenDict | None = None
    """Overrides of the image models' default ``TrainConfig``; None keeps them."""
    stragglers: tuple[str, ...] = ("exact", "bernoulli")
    S_fraction: float = 0.2
    p: float = 0.2
    """Random straggler models: "exact" (S = round(S_fraction N) workers at random) and/or
    "bernoulli" (each worker independently with probability p)."""
    worst: tuple[str, ...]
    """Models that also get the worst case: on each evaluation batch the S stragglers that
    ``letcc_jax.worst_stragglers`` finds worst for LeTCC, scored with the "exact"
    calibration (it has no rounds of its own to calibrate on)."""
    batches: int
    trials: int
    """``batches`` calibration batches of K inputs and as many disjoint evaluation batches;
    ``trials`` straggler draws on each (the worst case: one round per evaluation batch)."""
    lam_dec: float = 0.0
    """LeTCC's lam_dec: 0 interpolates the survivors, right for a noiseless f."""
    levels: tuple[float, ...] = (0.8, 0.95)
    """Nominal coverage levels of the intervals."""
    flagged: float = 0.1
    """The share of inputs, worst by realised RMSE, that the predicted std should flag."""
    bins: int = 10
    """Equal-count bins of entries by predicted std in the reliability diagram."""
    worst_restarts: int = 0
    worst_max_rounds: int = 20
    """Random starts and swap rounds of each search of ``worst_stragglers`` (exhaustive
    where C(N, S) <= 20,000)."""
    seed: int
    """Seeds the data split, the synthetic inputs and every draw."""
    name: str = ""
    untrained: bool = False
    """Set per run by the command line: the config's name, and whether the image models keep
    their random initial weights (a fast stand-in for tests)."""

    def __post_init__(self):
        missing = [m for m in self.models if m not in self.settings]
        if missing or not self.models:
            raise ValueError(f"models must name some of {list(self.settings)}, got "
                             f"{self.models}.")
        if not all(N > K >= 2 for K, N in self.settings.values()):
            raise ValueError(f"settings must be (K, N) with N > K >= 2, got {self.settings}.")
        _check_random_stragglers(self.stragglers)
        if not set(self.worst) <= set(self.settings):
            raise ValueError(f"worst names models without settings: {self.worst}.")
        if self.worst and "exact" not in self.stragglers:
            raise ValueError("the worst case is scored with the 'exact' calibration: keep "
                             "'exact' in stragglers.")
        if not all(0 < q < 1 for q in self.levels) or not 0 < self.flagged < 1:
            raise ValueError(f"levels and flagged must lie in (0, 1), got {self.levels} and "
                             f"{self.flagged}.")


_RELIABILITY_MODELS = ("synthetic", "lenet5", "repvgg", "vit")

RELIABILITY = {
    # The image models at K = 20, N = 30 (Table 1's low-redundancy setting, the ordering
    # study's K = 20 at N/K = 1.5), the synthetic f at its usual K = 8 (N = 16: its worst
    # case is enumerated, exact). One compiled program per model runs every round.
    "cpu": ReliabilityConfig(
        models=_RELIABILITY_MODELS,
        settings=FrozenDict(synthetic=(8, 16), lenet5=(20, 30), repvgg=(20, 30),
                            vit=(20, 30)),
        worst=_RELIABILITY_MODELS,
        batches=64,
        trials=64,
        worst_max_rounds=10,
        seed=0,
    ),
    # Compiled programs, not sizes, take a smoke run's time: one per model runs its rounds
    # (about 6 s each); the worst case's search would add 4 s per model and Bernoulli
    # stragglers 0.5 s, so the smoke run has exact stragglers only. Many small batches: the
    # check of the calibrated coverage counts batches, not entries.
    "smoke": ReliabilityConfig(
        models=("lenet5", "synthetic"),
        settings=FrozenDict(synthetic=(4, 8), lenet5=(4, 8)),
        stragglers=("exact",),
        worst=(),
        batches=12,
        trials=8,
        seed=0,
    ),
}
