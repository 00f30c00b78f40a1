"""Simulation: straggler and fault models, the Monte Carlo evaluator, choosing the smoothing
parameters, and tuning by autodiff. Validating entry points over the round kernel of
``letcc_jax.core``; the public names are re-exported by ``letcc_jax``.
"""
