"""The README's quick start runs as written, and the demo runs at smoke size."""

import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _quick_start() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_quick_start_runs(capsys):
    namespace = {}
    exec(compile(_quick_start(), "README quick start", "exec"), namespace)
    assert namespace["estimate"].shape == (namespace["K"], 5)
    assert np.all(np.isfinite(np.asarray(namespace["estimate"])))
    rmse = float(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 < rmse < 1.0


def test_quick_start_is_short():
    assert len(_quick_start().strip().splitlines()) <= 18


def test_demo_smoke(tmp_path, capsys):
    from experiments import demo

    demo.main(["--smoke", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "| N | K | S | letcc | bacc | lcc | uncoded |" in out
    assert (tmp_path / "demo" / "results.json").exists()
    assert (tmp_path / "demo" / "table.md").read_text().count("\n") == 4
