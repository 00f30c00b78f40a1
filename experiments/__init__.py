"""Command-line experiments built on letcc_jax; each writes under results/<experiment>/."""
