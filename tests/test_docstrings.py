"""The examples in the public API's docstrings run and print what they show (doctest).

Every public function or class of ``letcc_jax`` and ``letcc_jax.workers`` whose docstring
has ``>>>`` lines is collected; the examples run in the test session's settings."""

from __future__ import annotations

import doctest
import inspect

import pytest

import letcc_jax as lc
from letcc_jax import workers


def _with_examples():
    found = {}
    for module in (lc, workers):
        for name in module.__all__:
            obj = getattr(module, name)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and ">>>" in (obj.__doc__ or ""):
                found[f"{module.__name__}.{name}"] = obj
    return found


EXAMPLES = _with_examples()


def test_the_factories_and_point_sets_have_examples():
    names = {n.rsplit(".", 1)[1] for n in EXAMPLES}
    assert {"letcc", "residual_letcc", "bacc", "lcc", "uncoded", "make_scheme",
            "chebyshev_first", "chebyshev_second", "equispaced"} <= names


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
