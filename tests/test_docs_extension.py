"""The documentation build's own checks (docs/_ext/letcc_docs.py) catch what they promise:
a public name missing from the API reference, a public method without a docstring."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("sphinx")

import letcc_jax as lc  # noqa: E402
from letcc_jax import workers  # noqa: E402

PATH = Path(__file__).resolve().parents[1] / "docs" / "_ext" / "letcc_docs.py"
_spec = importlib.util.spec_from_file_location("letcc_docs", PATH)
letcc_docs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(letcc_docs)

EVERY = {f"letcc_jax.{n}" for n in lc.__all__} | {f"letcc_jax.workers.{n}" for n in workers.__all__}


def test_a_public_name_left_out_of_the_reference_is_reported():
    problems = letcc_docs.missing_from_reference(EVERY - {"letcc_jax.tune",
                                                          "letcc_jax.workers.run"})
    left_out = [p for p in problems if "is not in the API reference" in p]
    assert left_out == [
        "public name letcc_jax.tune is not in the API reference (docs/api.md)",
        "public name letcc_jax.workers.run is not in the API reference (docs/api.md)",
    ]


def test_every_public_name_has_docstrings_for_itself_and_its_methods():
    assert letcc_docs.missing_from_reference(EVERY) == []


def test_an_undocumented_method_or_property_is_reported_and_inherited_docs_count():
    class Base:
        def sample(self):
            """Documented once, on the base class."""

    class Model(Base):
        def sample(self):  # inherits Base.sample's docstring
            return 1

        def apply(self):
            return 2

        @property
        def size(self):
            return 3

        def _private(self):
            return 4

    assert letcc_docs._undocumented_members(Model) == ["Model.apply", "Model.size"]


def test_signatures_spell_arrays_as_the_source_does():
    signature = "(Y: jaxtyping.Float[jaxlib._jax.Array, 'N m'], key: jax.Array)"
    spelled, returned = letcc_docs._short_annotations(
        None, "function", "f", None, {}, signature, "jaxtyping.Float[jaxlib._jax.Array, 'K m']")
    assert spelled == "(Y: Float[Array, 'N m'], key: Array)"
    assert returned == "Float[Array, 'K m']"
