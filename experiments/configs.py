"""Resolved sizes of the experiments: ``cpu`` (minutes on two cores), ``paper`` (the paper's
datasets, when their files are present) and ``smoke`` (seconds, for CI).

Settings are (N, K, S) with S = N - |F| stragglers; |F| stays between 0.5 N and 0.9 N.
"""

from __future__ import annotations

import numpy as np

#: lam_dec grid for LeTCC (mean-form lambda); 0 is interpolation, right for noiseless f.
LAM_DEC_GRID = tuple(float(v) for v in np.concatenate([[0.0], np.logspace(-8, 0, 9)]))
#: Finer and lower-reaching grid for noisy outputs: with sigma = 1e-3 rms and N = 1000 the
#: best lam_dec measured ~1e-9, below LAM_DEC_GRID (which then picked 0 and plateaued).
LAM_DEC_GRID_FINE = tuple(float(v) for v in np.concatenate([[0.0], np.logspace(-12, 0, 25)]))

#: Overrides of the default TrainConfig for make demo (LeNet-5: 3 epochs instead of 5).
_DEMO_TRAIN = {"epochs": 3}

_CPU_SETTINGS = [(20, 5, 6), (50, 10, 15), (100, 20, 30), (200, 20, 80)]
#: Low redundancy (N/K = 1.5 and 2), where replication has inputs with a single replica.
_LOW_REDUNDANCY = [(30, 20, 6), (40, 20, 10)]

TABLE1 = {
    "cpu": {
        "models": {"lenet5": "fashion_mnist", "repvgg": "fashion_mnist", "vit": "fashion_mnist"},
        "settings": _LOW_REDUNDANCY + _CPU_SETTINGS,
        "trials": 25,
        "batches": 4,
        "cal_trials": 25,
        "lam_dec_grid": LAM_DEC_GRID,
        "seed": 0,
    },
    "paper": {
        "models": {"lenet5": "mnist", "repvgg": "cifar10", "vit": "cifar100"},
        "settings": _LOW_REDUNDANCY + _CPU_SETTINGS + [(200, 50, 40)],
        "trials": 50,
        "batches": 10,
        "cal_trials": 50,
        "lam_dec_grid": LAM_DEC_GRID,
        "seed": 0,
    },
    # make demo: LeNet-5 only, trained for fewer epochs (the whole demo, training included,
    # fits in five minutes on two cores); trials, batches and seed as in "cpu"
    "demo": {
        "models": {"lenet5": "fashion_mnist"},
        "train": _DEMO_TRAIN,
        "settings": [(30, 20, 6), (100, 20, 30)],
        "trials": 25,
        "batches": 4,
        "cal_trials": 25,
        "lam_dec_grid": LAM_DEC_GRID,
        "seed": 0,
    },
    "smoke": {
        "models": {"lenet5": "fashion_mnist"},
        "settings": [(12, 4, 3)],
        "trials": 20,
        "batches": 2,
        "cal_trials": 8,
        "lam_dec_grid": (0.0, 1e-4, 1e-2),
        "seed": 0,
    },
}

ERROR_VS_N = {
    "cpu": {
        "N": [10, 16, 25, 40, 63, 100, 160, 250, 400, 630, 1000],
        "K": 8,
        "S_fraction": 0.2,
        "S_fixed": 4,
        # noise sigma relative to the RMS of f's outputs on the evaluation inputs
        "rel_sigmas": [0.0, 1e-3, 1e-2],
        "functions": ["synthetic", "lenet5"],
        "trials": 50,
        "batches": 4,
        "cal_trials": 20,
        # lam_dec is chosen on the mean over several batches: one batch of K = 8 images picked
        # lam_dec = 0 for LeNet-5 at sigma/rms = 1e-3 where 1e-12 helped the evaluation images
        "cal_batches": 4,
        "lam_dec_grid": LAM_DEC_GRID_FINE,
        "seed": 0,
    },
    # make demo: LeNet-5 only (the demo's), fewer N, sigmas and draws
    "demo": {
        "train": _DEMO_TRAIN,
        "N": [10, 20, 40, 80, 160],
        "K": 8,
        "S_fraction": 0.2,
        "S_fixed": 4,
        "rel_sigmas": [0.0, 1e-2],
        "functions": ["lenet5"],
        "trials": 30,
        "batches": 2,
        "cal_trials": 10,
        "cal_batches": 2,
        "lam_dec_grid": LAM_DEC_GRID_FINE,
        "seed": 0,
    },
    "smoke": {
        "N": [10, 20],
        "K": 4,
        "S_fraction": 0.2,
        "S_fixed": 2,
        "rel_sigmas": [0.0, 1e-2],
        "functions": ["synthetic", "lenet5"],
        "trials": 8,
        "batches": 2,
        "cal_trials": 4,
        "cal_batches": 2,
        "lam_dec_grid": (0.0, 1e-4),
        "seed": 0,
    },
}

TUNING = {
    "cpu": {
        "functions": ["sincos", "tanh_net", "lenet5"],
        "settings": {"sincos": [(20, 5, 6)], "tanh_net": [(50, 10, 15)], "lenet5": [(20, 5, 6)]},
        # noise sigma relative to the RMS of f's outputs
        "rel_sigmas": [0.0, 1e-1],
        "repeats": 3,
        # calibration batches of K inputs (and as many evaluation batches), per f
        "batches": {"sincos": 16, "tanh_net": 16, "lenet5": 8},
        "cal_trials": 32,
        "eval_trials": 64,
        "steps": 150,
        "lam_dec_grid": LAM_DEC_GRID_FINE,
        "seed": 0,
    },
    "smoke": {
        "functions": ["sincos", "lenet5"],
        "settings": {"sincos": [(10, 4, 3)], "lenet5": [(10, 4, 3)]},
        "rel_sigmas": [1e-2],
        "repeats": 2,
        "batches": {"sincos": 2, "lenet5": 2},
        "cal_trials": 4,
        "eval_trials": 4,
        "steps": 4,
        "lam_dec_grid": (0.0, 1e-4),
        "seed": 0,
    },
}
