"""The README's quick start runs as written, its Demo section shows the demo's table, its
links lead to the documentation pages, and the real-workers page's snippet runs."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from experiments import configs

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


def test_readme_demo_table_is_the_demo_output_format():
    # the Demo section pastes the tables printed by `make demo`
    section = (ROOT / "README.md").read_text().split("## Demo", 1)[1].split("\n## ", 1)[0]
    header = "| model | N | K | survivors N−S | LeTCC | BACC | LCC | uncoded |"
    assert header in section
    shown = {tuple(int(c) for c in line.split("|")[2:5])  # N, K, survivors
             for line in section.splitlines() if line.startswith("| lenet5 |")}
    assert {(N, K, N - S) for N, K, S in configs.TABLE1["demo"].settings} <= shown


def test_readme_links_every_docs_page_built_and_source():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Documentation", 1)[1].split("\n## ", 1)[0]
    assert "make docs" in section and "make docs-serve" in section
    pages = sorted(p.stem for p in (ROOT / "docs").glob("*.md") if p.name != "README.md")
    for page in pages:
        target = "" if page == "index" else page
        if target:
            assert f"(docs/_build/html/{page}.html)" in section, page
            assert f"(docs/{page}.md)" in section, page
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert f"(docs/_build/html/tutorials/{notebook.stem}.html)" in section, notebook.name
        assert f"(notebooks/{notebook.name})" in section, notebook.name
    for source in re.findall(r"\]\(((?:docs|notebooks)/[^)#]+)\)", text):
        assert source.startswith("docs/_build/") or (ROOT / source).exists(), source


def test_real_workers_snippet_runs_as_a_script(tmp_path):
    """The Dask snippet of docs/workers.md spawns worker processes: it must run as a
    script, guard included."""
    section = (ROOT / "docs" / "workers.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert 'if __name__ == "__main__":' in snippet
    script = tmp_path / "workers_snippet.py"
    script.write_text(snippet)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    K, d, used = re.match(r"\((\d+), (\d+)\) (\d+) \{\} ", done.stdout).groups()
    assert (int(K), int(d)) == (8, 4) and int(used) >= 13
