"""The mathematics: evaluation points, banded and spline solvers, barycentric interpolation,
the coding schemes, and the round kernel (the traced code of one coded round).

Imports only jax, numpy and jaxtyping. The public names are re-exported by ``letcc_jax``.
"""
