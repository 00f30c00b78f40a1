"""The examples in the public API's docstrings run and print what they show (doctest).

Every public function or class of ``letcc_jax`` and ``letcc_jax.workers`` whose docstring
has ``>>>`` lines is collected, and so is every public method or property such a class
defines; the examples run in the test session's settings (float64 on, strict dtype
promotion), so their printed values must not depend on the precision."""

from __future__ import annotations

import doctest
import inspect

import pytest

import letcc_jax as lc
from letcc_jax import workers

MODULES = (lc, workers)

#: Public classes whose docstring shows its example as a plain code block instead of
#: ``>>>`` lines, and why.
NO_DOCTEST = {
    # Its example starts a Dask cluster with worker processes (spawned: seconds, and only
    # under ``if __name__ == "__main__":``), which a doctest cannot do.
    "letcc_jax.workers.DaskBackend",
}


def _public():
    """Every public function and class of both modules, by full name."""
    found = {}
    for module in MODULES:
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                found[f"{module.__name__}.{name}"] = obj
    return found


def _members(cls):
    """The public methods and properties ``cls`` defines itself, as functions."""
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, property):
            value = value.fget
        value = getattr(value, "__func__", value)  # classmethod, staticmethod
        if inspect.isfunction(value):
            yield name, value


def _with_examples():
    found = {}
    for full, obj in _public().items():
        if ">>>" in (obj.__doc__ or ""):
            found[full] = obj
        if inspect.isclass(obj):
            for name, member in _members(obj):
                if ">>>" in (member.__doc__ or ""):
                    found[f"{full}.{name}"] = member
    return found


EXAMPLES = _with_examples()


def test_the_factories_and_point_sets_have_examples():
    names = {n.rsplit(".", 1)[1] for n in EXAMPLES}
    assert {"letcc", "residual_letcc", "bacc", "lcc", "uncoded", "make_scheme",
            "chebyshev_first", "chebyshev_second", "equispaced"} <= names


def test_every_public_function_and_class_has_an_example():
    public = _public()
    missing = sorted(name for name in public if name not in EXAMPLES and name not in NO_DOCTEST)
    assert not missing, f"public names without a >>> example in their docstring: {missing}"
    # The justified exceptions still show an example, as a code block.
    for name in NO_DOCTEST:
        doc = public[name].__doc__
        assert "Example:" in doc and ".. code-block:: python" in doc, name


def test_the_worker_fault_constructors_have_examples():
    for name in ("slow", "shifted_exponential", "pareto"):
        assert f"letcc_jax.workers.WorkerFaults.{name}" in EXAMPLES, name


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_docstring_examples_run(name):
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    tests = finder.find(EXAMPLES[name], name, globs={})
    assert tests and tests[0].examples
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
