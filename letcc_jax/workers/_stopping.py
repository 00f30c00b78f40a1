"""Stopping at a tolerance: the half-widths of the posterior intervals of a round's estimates.

A scheme with posterior standard errors (LeTCC and its variants, ``posterior_report``)
gives each estimate an interval ``estimate +- q * std``: q the Gaussian z of ``level``, or a
calibration's quantile for it (``letcc_jax.calibrate``). A master that stops once every
half-width ``q * std`` is at most a tolerance has kept its promise on an estimate when the
realised error is within that tolerance too.
"""

from __future__ import annotations

import statistics

import jax
import numpy as np

from ..core._schemes import Scheme

__all__ = ["needs_posterior", "multiplier", "check_tolerance", "half_widths", "widest",
           "meets"]


def needs_posterior(scheme: Scheme, caller: str) -> None:
    """Raise unless ``scheme`` has posterior standard errors."""
    if not callable(getattr(scheme, "posterior_report", None)):
        raise TypeError(f"{caller}: stopping at a tolerance needs a scheme with posterior "
                        f"standard errors (a LeTCC scheme, e.g. letcc_jax.letcc(K, N)); "
                        f"{scheme.name} has none.")


def multiplier(level, calibration, m: int) -> np.ndarray:
    """(m,) multipliers q of the standard errors: ``calibration.quantile(level)`` (a
    ``letcc_jax.Calibration``), or the Gaussian z of ``level`` without one."""
    if isinstance(level, (bool, np.bool_)) or not isinstance(
            level, (int, float, np.integer, np.floating)) or not 0 < level < 1:
        raise ValueError(f"level must be a coverage in (0, 1), e.g. 0.95, got {level!r}.")
    if calibration is None:
        q = np.asarray(statistics.NormalDist().inv_cdf((1 + float(level)) / 2))
    else:
        if not callable(getattr(calibration, "quantile", None)):
            raise TypeError("calibration must be a letcc_jax.Calibration (from "
                            f"letcc_jax.calibrate), got {calibration!r}.")
        q = np.asarray(calibration.quantile(level), np.float64)
        if q.ndim and q.shape != (m,):
            raise ValueError(f"the calibration has quantiles for {q.shape[-1]} output columns; "
                             f"f gives m={m}.")
    return np.broadcast_to(q, (m,)).astype(np.float64)


def check_tolerance(tolerance, name: str = "tolerance") -> float:
    """A tolerance on the outputs' scale: a number > 0 (inf: met as soon as every estimate
    has a finite half-width, see ``meets``)."""
    if isinstance(tolerance, (bool, np.bool_)) or not isinstance(
            tolerance, (int, float, np.integer, np.floating)) or not tolerance > 0:
        raise ValueError(f"{name} must be a number > 0 on the scale of f's outputs, got "
                         f"{tolerance!r}.")
    return float(tolerance)


@jax.jit
def half_widths(scheme, Y, masks, q):
    """Per survivor mask of ``masks`` (P, N): the posterior estimates (P, K, m), the
    half-widths ``q * std`` (P, K, m; inf for an input not recovered), and the masks of
    the results used (P, N) and of the inputs recovered (P, K). One compiled program."""

    def one(mask):
        post, used, recovered = scheme.posterior_report(Y, mask)
        return post.estimate, q.astype(post.std.dtype) * post.std, used, recovered

    return jax.vmap(one)(masks)


def widest(half) -> np.ndarray:
    """The largest half-width over the last two axes (K, m) of ``half``: inf where an
    input has no finite one (NaN included)."""
    half = np.asarray(half)
    return np.max(np.where(np.isnan(half), np.inf, half), axis=(-2, -1))


def meets(widest_half, tolerance) -> np.ndarray:
    """The stopping rule: every half-width finite and at most the tolerance. A round that
    leaves an input without a finite half-width never meets it, not even an infinite
    tolerance."""
    widest_half = np.asarray(widest_half)
    return np.isfinite(widest_half) & (widest_half <= tolerance)
