"""``needs_data``: skip a test when the Fashion-MNIST files are not installed."""

import pytest

from letcc_jax.zoo.data import load_fashion_mnist


def _fashion_mnist_available() -> bool:
    try:
        load_fashion_mnist(download=False)
    except (FileNotFoundError, OSError):
        return False
    return True


needs_data = pytest.mark.skipif(not _fashion_mnist_available(),
                                reason="Fashion-MNIST files not installed")
