"""Sphinx extension of the letcc_jax site: the public-name check and short annotations.

- Every name in ``letcc_jax.__all__`` and ``letcc_jax.workers.__all__`` must be documented
  in the API reference and have a docstring, and every public method or property a public
  class defines must have one; each miss is a warning, an error under ``-W``.
- Signatures spell JAX's array type as the source does: ``Float[Array, 'K d']``.
"""

from __future__ import annotations

import inspect
import re

from sphinx.util import logging

import letcc_jax
from letcc_jax import workers

logger = logging.getLogger("letcc_jax.docs")

#: Every public name of these modules must appear in the API reference, with a docstring.
PUBLIC = {"letcc_jax": letcc_jax, "letcc_jax.workers": workers}


def _unwrap(value):
    """The function behind a method, classmethod, staticmethod or property (else None)."""
    if isinstance(value, property):
        return value.fget
    target = getattr(value, "__func__", value)
    return target if inspect.isfunction(target) else None


def _undocumented_members(cls) -> list[str]:
    """Public methods and properties a class defines itself without a docstring, its own
    or one inherited from the base class that defines the same name."""
    missing = []
    for name, value in vars(cls).items():
        if name.startswith("_") or _unwrap(value) is None:
            continue
        if not any(getattr(_unwrap(vars(klass)[name]), "__doc__", None)
                   for klass in cls.__mro__ if name in vars(klass)):
            missing.append(f"{cls.__name__}.{name}")
    return missing


def missing_from_reference(documented: set[str]) -> list[str]:
    """Problems with the public names, given the fully qualified names documented."""
    problems = []
    for modname, module in PUBLIC.items():
        for name in module.__all__:
            full = f"{modname}.{name}"
            obj = getattr(module, name)
            if full not in documented:
                problems.append(f"public name {full} is not in the API reference (docs/api.md)")
                continue
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and not inspect.getdoc(obj):
                problems.append(f"public name {full} has no docstring")
            if inspect.isclass(obj):
                problems += [f"public method {modname}.{member} has no docstring"
                             for member in _undocumented_members(obj)]
    return problems


def _check_public_names(app, env):
    for problem in missing_from_reference(set(env.get_domain("py").objects)):
        logger.warning(problem)


#: How the signatures spell JAX's array type: ``Float[Array, 'K d']``, as in the source.
_SPELLING = [(re.compile(r"jaxlib\._jax\.Array|jaxlib\.xla_extension\.ArrayImpl|jax\.Array"), "Array"),
             (re.compile(r"jaxtyping\.(Float|Bool|Int|Shaped|Array)"), r"\1")]


def _short_annotations(app, what, name, obj, options, signature, return_annotation):
    def spell(text):
        if text is None:
            return None
        for pattern, replacement in _SPELLING:
            text = pattern.sub(replacement, text)
        return text

    return spell(signature), spell(return_annotation)


def setup(app):
    app.connect("autodoc-process-signature", _short_annotations)
    app.connect("env-check-consistency", _check_public_names)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
