"""The README's quick start runs as written, and its Demo section shows the demo's table."""

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


def test_readme_real_workers_snippet_runs_as_a_script(tmp_path):
    """The Dask snippet spawns worker processes: it must run as a script, guard included."""
    section = (ROOT / "README.md").read_text().split("## Real workers", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert 'if __name__ == "__main__":' in snippet
    script = tmp_path / "workers_snippet.py"
    script.write_text(snippet)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    K, d, used = re.match(r"\((\d+), (\d+)\) (\d+) \{\} ", done.stdout).groups()
    assert (int(K), int(d)) == (8, 4) and int(used) >= 13
