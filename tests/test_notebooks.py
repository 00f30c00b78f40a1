"""The notebooks execute at small size (LETCC_NOTEBOOK_SMOKE=1) and render their figures,
and they are stored without outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
#: Figures (image/png outputs) each notebook draws.
FIGURES = {"01_quickstart.ipynb": 2, "02_theory_rates.ipynb": 2,
           "03_autodiff_encoders.ipynb": 4}


def test_every_notebook_is_covered():
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == sorted(FIGURES)


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_notebook_is_stored_without_outputs(name):
    notebook = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (name, cell.source[:60])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FIGURES))
def test_notebook_executes_and_draws(name, monkeypatch):
    monkeypatch.setenv("LETCC_NOTEBOOK_SMOKE", "1")  # the kernel inherits the environment
    notebook = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error
    figures = [output for cell in notebook.cells for output in cell.get("outputs", [])
               if "image/png" in output.get("data", {})]
    assert len(figures) == FIGURES[name]
    assert all(len(output["data"]["image/png"]) > 1000 for output in figures)
