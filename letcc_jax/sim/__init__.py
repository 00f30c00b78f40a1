"""Simulation: straggler and fault models, the Monte Carlo evaluator, choosing the smoothing
parameters, and tuning by autodiff: the engine of many simulated rounds (``_rounds``) over
the schemes' one-round semantics in ``letcc_jax.core``, behind validating entry points; the
public names are re-exported by ``letcc_jax``.
"""
