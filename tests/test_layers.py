"""The project's architecture as tests: layers import downwards only (import-linter), and the core
installs and imports without the extras of the layers above it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("torch", "prefect", "prefect_dask", "dash", "wandb", "sklearn", "h5py", "matplotlib", "coniferest", "lsdb", "hats")


def test_import_contracts_are_kept():
    """Pyproject's [tool.importlinter] contracts: layers, Prefect only in flows/, no torch in the core."""
    proc = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
                           "sys.exit(lint_imports(config_filename='pyproject.toml'))"],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    assert len(contracts) >= 6 and f"{len(contracts)} kept, 0 broken" in proc.stdout


@pytest.mark.parametrize("module, line, broken", [
    ("etl/store.py", "from features.featurestore import get_features", "etl.store -> features.featurestore"),  # upwards
    ("etl/cone.py", "import lsdb", "etl.cone -> lsdb"),  # an extra, lazily, outside the modules allowed it
    ("features/variability.py", "import torch", "features.variability -> torch"),
])
def test_import_contracts_catch_a_wrong_import(tmp_path, module, line, broken):
    """The same contracts fail on a copy of the tree with one import added inside a function."""
    for name in ("common", "etl", "features", "training", "explorer", "flows"):
        subprocess.run(["cp", "-r", str(ROOT / name), str(tmp_path / name)], check=True)
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    with open(tmp_path / module, "a") as fh:
        fh.write(f"\n\ndef _wrong():\n    {line}  # noqa: F401\n")
    proc = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, '.'); from importlinter.cli import lint_imports; "
                           "sys.exit(lint_imports(config_filename='pyproject.toml'))"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert proc.returncode != 0
    assert broken in proc.stdout


BLOCKER = textwrap.dedent(f"""
    # Every extra's package is missing, as when it is not installed: importing it raises
    # ModuleNotFoundError and importlib.util.find_spec finds nothing.
    import importlib.abc, importlib.machinery, importlib.util, sys
    BLOCKED = {EXTRAS!r}
    class Missing(importlib.abc.Loader):
        def create_module(self, spec):
            raise ModuleNotFoundError(f"No module named {{spec.name!r}}", name=spec.name)
        def exec_module(self, module):
            pass
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                return importlib.machinery.ModuleSpec(name, Missing())
    sys.meta_path.insert(0, Block())
    _find_spec = importlib.util.find_spec
    def find_spec(name, package=None):
        return None if name.split(".")[0] in BLOCKED else _find_spec(name, package)
    importlib.util.find_spec = find_spec
""")



def _without_extras(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where every extra's package is missing."""
    return subprocess.run([sys.executable, "-c", BLOCKER + textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def _command_without_extras(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """``python -m ...`` exactly as a user types it, in an interpreter where every extra is missing
    (the blocker is a ``sitecustomize`` module, which Python imports at start-up)."""
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)


def test_core_imports_without_the_extras():
    proc = _without_extras("""
        import importlib, pkgutil
        for pkg in ("common", "etl", "features"):
            for info in pkgutil.iter_modules(importlib.import_module(pkg).__path__):
                importlib.import_module(f"{pkg}.{info.name}")
        from features.build import main
        print("core ok")
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "core ok" in proc.stdout


@pytest.mark.parametrize("args, extra", [
    (("-m", "training.fit", "--help"), "[train]"),
    (("-m", "training.evaluate", "--checkpoint", "x.h5"), "[train]"),
    (("-m", "training.score", "--store", "S", "--checkpoint", "x.h5"), "[train]"),
    (("-m", "explorer", "--store", "S"), "[explorer]"),
    (("-m", "flows.demo"), "[flows,hats,train]"),
    (("-m", "flows.survey", "A", "--store", "S"), "[flows,hats,train]"),
    (("-m", "flows.serve", "--port", "9"), "[flows]"),
    (("-m", "features.build", "--store", "S", "--checkpoint", "x.h5"), "[train]"),
])
def test_a_command_without_its_extra_says_which_in_one_line(tmp_path, args, extra):
    """Before any work, one ``error:`` line naming the extra(s) to install, exit status 2, no traceback."""
    proc = _command_without_extras(tmp_path, *args)
    assert proc.returncode == 2, (args, proc.returncode, proc.stderr[-2000:])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and f"erosita-lcvae{extra}" in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_a_missing_extra_is_named():
    cases = {"import runpy; runpy.run_module('training.fit', run_name='__main__')": "erosita-lcvae[train]",
             "from common import cli; from flows.serve import main; sys.exit(cli.run(main, ['--port', '9']))": "erosita-lcvae[flows]",
             "import explorer.app": "erosita-lcvae[explorer]",
             "from features.active import ActiveRanker; ActiveRanker(['a'], [[0.0]])": "erosita-lcvae[explorer]"}
    for code, extra in cases.items():
        proc = _without_extras(code)
        assert proc.returncode != 0 and extra in proc.stderr, (code, proc.stderr[-2000:])
