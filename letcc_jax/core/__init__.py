"""The mathematics: evaluation points, banded and spline solvers, barycentric interpolation,
and the coding schemes with the traced semantics of one coded round.

Imports only jax, numpy and jaxtyping. The public names are re-exported by ``letcc_jax``.
"""
