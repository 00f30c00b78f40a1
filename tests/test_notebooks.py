"""The notebooks are stored without outputs, and every one of them is a page of the
documentation site, whose build (``make docs``) executes them at small size
(LETCC_NOTEBOOK_SMOKE=1) and whose browser check (docs/test_site.py) counts their figures."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb"))


def test_every_notebook_is_a_page_of_the_site_and_checked_there():
    index = (ROOT / "docs" / "index.md").read_text()
    listed = re.findall(r"^tutorials/(\S+)$", index, re.M)
    assert sorted(f"{name}.ipynb" for name in listed) == NOTEBOOKS
    site_check = (ROOT / "docs" / "test_site.py").read_text()
    figures = re.search(r"NOTEBOOK_FIGURES = \{(.*?)\}", site_check, re.S).group(1)
    assert sorted(f"{name}.ipynb" for name in re.findall(r'"(\w+)": \d+', figures)) == NOTEBOOKS


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_without_outputs(name):
    notebook = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (name, cell.source[:60])
