"""The layers stay apart: no module reaches into another module's private names, and the
core never imports the heavy optional dependencies."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for folder in ("letcc_jax", "experiments", "benchmarks")
                 for p in (ROOT / folder).rglob("*.py"))
# NamedTuple's public API starts with an underscore.
NAMEDTUPLE_API = {"_fields", "_replace", "_asdict", "_make", "_field_defaults"}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _is_module(path: Path, node: ast.ImportFrom, name: str, root: Path = ROOT) -> bool:
    """Whether ``from <node.module> import name`` in ``path`` imports a module (a package's
    private submodule is the package's business, not another module's private name)."""
    base = path.parent
    for _ in range(max(node.level - 1, 0)):
        base = base.parent
    if node.level == 0:
        base = root
    target = base.joinpath(*(node.module or "").split(".")) if node.module else base
    return (target / f"{name}.py").exists() or (target / name / "__init__.py").exists()


def private_uses(path: Path, root: Path = ROOT) -> list[str]:
    """``from X import _name`` of a non-module, and ``obj._name`` on anything but self/cls
    (``root``: the repository the path lies in)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            found += [f"{path.relative_to(root)}:{node.lineno}: from {node.module} import {a.name}"
                      for a in node.names
                      if _private(a.name) and not _is_module(path, node, a.name, root)]
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            owner = node.value
            if node.attr in NAMEDTUPLE_API or (isinstance(owner, ast.Name)
                                               and owner.id in ("self", "cls")):
                continue
            found.append(f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_uses_another_modules_private_names():
    assert len(SOURCES) > 20
    found = [use for path in SOURCES for use in private_uses(path)]
    assert not found, "\n".join(found)


def test_the_checker_finds_private_uses(tmp_path):
    package = tmp_path / "letcc_jax" / "sim"  # a stand-in tree: the package stays untouched
    package.mkdir(parents=True)
    (package / "_models.py").write_text("")
    sample = package / "_layout_probe.py"
    sample.write_text("from ._evaluate import _secret\nfrom . import _models\n"
                      "import numpy as np\nx = np._private_thing\ny = self_like._z\n")
    found = private_uses(sample, tmp_path)
    assert len(found) == 3, found  # the private function and two attributes, not the module


@pytest.mark.parametrize("module", ["letcc_jax", "letcc_jax.workers"])
def test_core_imports_no_heavy_optional_dependency(module):
    code = (f"import sys, {module}\n"
            "heavy = {'flax', 'optax', 'dask', 'distributed', 'matplotlib', 'scipy', 'tqdm'}"
            " & set(sys.modules)\n"
            "print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.strip()
    assert out == "[]", out


CORE = ROOT / "letcc_jax" / "core"
#: What the simulation layer's models offer; the core must not call it.
MODEL_METHODS = {"sample", "apply", "min_alive", "check_workers"}


def _imports(path: Path, source: str | None = None) -> list[str]:
    """The absolute module names that ``path`` (or ``source`` placed there) imports,
    relative imports resolved."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    names = []
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = list(package[:len(package) - node.level + 1]) if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names += [f"{module}.{alias.name}" for alias in node.names]
    return names


def test_core_knows_nothing_of_the_simulation_layer():
    """The core is mathematics: it imports nothing above itself and calls no straggler or
    fault model method."""
    sources = sorted(CORE.rglob("*.py"))
    assert len(sources) > 10
    above = ("letcc_jax.sim", "letcc_jax.workers", "letcc_jax.zoo", "experiments")
    found = [f"{p.relative_to(ROOT)}: imports {name}" for p in sources
             for name in _imports(p) if name.startswith(above)]
    found += [f"{p.relative_to(ROOT)}:{node.lineno}: calls .{node.func.attr}"
              for p in sources for node in ast.walk(ast.parse(p.read_text()))
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in MODEL_METHODS]
    assert not found, "\n".join(found)


def test_the_import_checker_resolves_relative_imports():
    where = CORE / "spline" / "_probe.py"  # not written: only its place in the tree counts
    source = "from ...sim import _rounds\nfrom .. import _schemes\nimport numpy as np\n"
    assert _imports(where, source) == ["letcc_jax.sim._rounds", "letcc_jax.core._schemes",
                                       "numpy"]


def test_a_decode_runs_only_the_schemes_and_the_spline_solvers():
    """Following ``Scheme.decode`` from the call to the numbers (a first call, so that it
    traces) visits the schemes module, the spline and banded solvers (with their helper for
    values inside shard_map) and the argument checks only."""
    import sys

    import jax.numpy as jnp

    import letcc_jax as lc

    scheme = lc.letcc(5, 13, lam_dec=1e-3)
    Y = jnp.ones((13, 7))  # a shape no other test decodes: the call compiles
    package = ROOT / "letcc_jax"
    visited = set()

    def profile(frame, event, arg):
        path = Path(frame.f_code.co_filename)
        if event == "call" and path.is_relative_to(package):
            visited.add(path.relative_to(package).as_posix())

    sys.setprofile(profile)
    try:
        scheme.decode(Y)
    finally:
        sys.setprofile(None)
    allowed = {"core/_schemes.py", "core/_banded.py", "core/_vma.py", "_validation.py",
               "_pytree.py"}
    assert "core/_schemes.py" in visited and any(p.startswith("core/spline/") for p in visited)
    assert {p for p in visited if not p.startswith("core/spline/")} <= allowed, visited


def _bound_and_listed(path: Path) -> tuple[set[str], list[str] | None]:
    """The names a module binds at its top level (also inside top-level if/try, and those its
    ``__getattr__`` names), and its ``__all__`` (None without one)."""
    bound, listed = set(), None
    nodes = list(ast.parse(path.read_text()).body)
    while nodes:
        node = nodes.pop()
        if isinstance(node, (ast.If, ast.Try)):
            nodes += node.body + node.orelse + getattr(node, "finalbody", [])
            nodes += [n for h in getattr(node, "handlers", []) for n in h.body]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
            if node.name == "__getattr__":  # names made on first use (a lazy import)
                bound |= {n.value for n in ast.walk(node)
                          if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names = {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
                bound |= names
                if "__all__" in names:
                    listed = list(ast.literal_eval(node.value))
    return bound, listed


def test_every_all_lists_names_the_module_defines():
    wrong = []
    for path in SOURCES:
        bound, listed = _bound_and_listed(path)
        if listed is None:
            continue
        package = path.name == "__init__.py"  # may list its submodules
        wrong += [f"{path.relative_to(ROOT)}: {name}" for name in listed
                  if name not in bound and not (package and _is_submodule(path, name))]
        wrong += [f"{path.relative_to(ROOT)}: {name} twice" for name in set(listed)
                  if listed.count(name) > 1]
    assert not wrong, "\n".join(wrong)


def _is_submodule(init: Path, name: str) -> bool:
    return (init.parent / f"{name}.py").exists() or (init.parent / name).is_dir()


def test_the_package_lists_every_public_name_it_imports():
    bound, listed = _bound_and_listed(ROOT / "letcc_jax" / "__init__.py")
    imported_modules = {"PackageNotFoundError", "version"}  # for __version__ only
    public = {n for n in bound if not n.startswith("_")} - imported_modules
    assert public == set(listed)
