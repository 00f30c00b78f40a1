"""Sphinx configuration of the letcc_jax documentation site (see docs/README.md).

Build: ``make docs`` (offline, warnings are errors, the notebooks run; ``LETCC_NOTEBOOK_SMOKE=1``
runs them at smoke size).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "_ext"))

# The notebooks run while the site builds, at full size; LETCC_NOTEBOOK_SMOKE=1 runs them small.
os.environ.setdefault("LETCC_NOTEBOOK_SMOKE", "0")

import letcc_jax  # noqa: E402  (after sys.path; also installs the XLA CPU guard)

# ---------------------------------------------------------------- the notebooks
# The notebooks live in notebooks/ (one copy, stored without outputs); Sphinx reads sources
# only under docs/, so the build copies them to docs/tutorials/ (ignored by git), with a
# note under the title that says at which size the site ran them.
TUTORIALS = DOCS / "tutorials"
SMOKE = os.environ["LETCC_NOTEBOOK_SMOKE"] == "1"
SIZE_NOTE = (
    "```{note}\nThis page ran at **smoke size** (`LETCC_NOTEBOOK_SMOKE=1`) when the site was "
    "built, so that the build takes minutes: its numbers and plots show what the code does, "
    "not converged results. Run the notebook from `notebooks/`, or build the site with "
    "`make docs`, for the full size; the measured experiments are on "
    "the {doc}`../experiments` and {doc}`../tuning` pages.\n```"
    if SMOKE else
    "```{note}\nThis page ran at full size when the site was built.\n```")


def _tutorial(source: Path) -> str:
    notebook = json.loads(source.read_text())
    note = {"cell_type": "markdown", "metadata": {}, "source": SIZE_NOTE}
    if (notebook["nbformat"], notebook["nbformat_minor"]) >= (4, 5):
        note["id"] = "site-size-note"
    notebook["cells"].insert(1, note)  # after the title cell
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


TUTORIALS.mkdir(exist_ok=True)
for stale in TUTORIALS.glob("*.ipynb"):
    if not (ROOT / "notebooks" / stale.name).exists():
        stale.unlink()
for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
    target, text = TUTORIALS / notebook.name, _tutorial(notebook)
    if not target.exists() or target.read_text() != text:  # unchanged: the cache holds
        target.write_text(text)

# ---------------------------------------------------------------- project
project = "letcc_jax"
author = "the letcc_jax authors"
copyright = "2026, the letcc_jax authors"
release = letcc_jax.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_nb",
    "sphinx_copybutton",
    "letcc_docs",  # _ext/letcc_docs.py: the public-name check and the signatures' spelling
]

exclude_patterns = ["_build", "README.md", "test_site.py", "tutorials/.ipynb_checkpoints"]
templates_path = ["_templates"]

# Math: MathJax 2 from the jupyter-server-mathjax package, copied into the site, so that
# pages render their formulas without reaching a CDN (offline builds and readers).
_MATHJAX = Path(importlib.util.find_spec("jupyter_server_mathjax").origin).parent / "static"
html_static_path = ["_static", str(_MATHJAX)]
mathjax_path = "MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"
mathjax3_config = None
mathjax2_config = {  # the package ships the STIX-Web fonts only, as Jupyter configures it
    "messageStyle": "none",
    # MyST marks the page tex2jax_ignore and the formulas "math" (its MathJax 3 options say
    # the same in MathJax 3's words): process those, ignore the rest.
    "tex2jax": {"processEscapes": True,
                "processClass": "tex2jax_process|mathjax_process|math|output_area"},
    "HTML-CSS": {"availableFonts": ["STIX-Web"], "preferredFont": "STIX-Web",
                 "webFont": "STIX-Web", "imageFont": None},
}
html_css_files = ["custom.css"]

# ---------------------------------------------------------------- HTML
html_theme = "furo"
html_title = f"letcc_jax {release}"
html_theme_options = {
    "source_repository": "",
    "navigation_with_keys": True,
}
html_show_sourcelink = False
pygments_style = "default"

# ---------------------------------------------------------------- MyST and notebooks
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = os.environ.get("LETCC_DOCS_EXECUTE", "cache")  # "off" for a quick draft
# One cache per size: the cache keys on the code, which is the same at both sizes.
nb_execution_cache_path = str(DOCS / "_build" / ".jupyter_cache" / ("smoke" if SMOKE else "full"))
nb_execution_timeout = 600
nb_execution_raise_on_error = True  # a failing cell fails the build, with its traceback
nb_execution_show_tb = True
nb_merge_streams = True

# ---------------------------------------------------------------- API reference
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autodoc_class_signature = "mixed"
autodoc_inherit_docstrings = True
add_module_names = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True
napoleon_custom_sections = [("Shapes", "params_style"), ("Example", "examples_style")]

# Broken cross-references are errors (-n -W) for the project's own names. Names of other
# libraries are not resolved: the build is offline, so there is no intersphinx inventory.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(jax|jaxlib|jaxtyping|numpy|np|jnp|optax|flax|dask|distributed|scipy)(\..*)?"),
    (r"py:.*", r"(Array|Float|Bool|Int|Shaped|ArrayLike|DTypeLike|PRNGKeyArray|Callable)"),
    (r"py:.*", r"(collections\.abc|typing|types|dataclasses|concurrent|pathlib)\..*"),
    (r"py:.*", r"(int|float|bool|str|bytes|object|tuple|list|dict|None|type|Ellipsis)"),
    (r"py:.*", r"(Sequence|Mapping|Iterable|Iterator|Any|Literal|Self|Optional|Union|ClassVar)"),
    (r"py:class", r"'.*'"),  # jaxtyping's shape strings, e.g. 'K m'
    # WorkerFaults.task returns the record the Dask backend ships with each task.
    (r"py:class", r"letcc_jax\.workers\._faults\.TaskFault"),
]
