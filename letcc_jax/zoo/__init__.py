"""The model zoo behind the ``models`` extra: data loaders (``letcc_jax.zoo.data``), flax
models (``letcc_jax.zoo.models``) and training with a checkpoint cache
(``letcc_jax.zoo.train``). Nothing in ``letcc_jax.core`` or ``letcc_jax.sim`` imports it.
"""
