"""Optional dependency groups: a clear message, naming the extra, when one is missing.

The core (``etl``, ``features``) installs with ``pip install erosita-lcvae`` and imports without
torch, Prefect, Dash, wandb or scikit-learn; the layers above need their extra. Which extra
installs which distribution is said in one place, ``pyproject.toml``'s
``[project.optional-dependencies]``: it is read from the installed package's metadata (or from
``pyproject.toml`` beside a checkout that was not installed). Only the import names that differ
from their distribution's name are listed here.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import re
import sys
from pathlib import Path

from common.errors import MissingExtraError

PROJECT = "erosita-lcvae"
#: import name -> distribution name where the two differ (or the distribution that brings it in).
DISTRIBUTIONS = {"sklearn": "scikit-learn", "prefect_dask": "prefect-dask", "nested_pandas": "lsdb",
                 "dash_ag_grid": "dash-ag-grid", "plotly": "dash"}


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


@functools.lru_cache(maxsize=1)
def extras() -> dict[str, list[str]]:
    """Extra -> the distribution names it installs (``[dev]`` and other self-references left out)."""
    try:
        from importlib.metadata import PackageNotFoundError, requires

        reqs = requires(PROJECT) or []
    except PackageNotFoundError:  # a checkout run without installing: read its pyproject.toml
        reqs = []
    out: dict[str, list[str]] = {}
    for req in reqs:
        m = re.search(r"""extra\s*==\s*["']([^"']+)["']""", req)
        if m and _name(req) != PROJECT:
            out.setdefault(m[1], []).append(_name(req))
    if out:
        return out
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if pyproject.is_file():
        import tomllib

        groups = tomllib.loads(pyproject.read_text())["project"].get("optional-dependencies", {})
        return {extra: [_name(r) for r in reqs if _name(r) != PROJECT] for extra, reqs in groups.items()}
    return {}


def extra_of(module: str) -> str:
    """The extra that installs ``module`` (an import name); ``dev`` when no smaller one does."""
    dist = DISTRIBUTIONS.get(module, module).lower().replace("_", "-")
    for extra, dists in extras().items():
        if extra != "dev" and dist in dists:
            return extra
    return "dev"


def _missing(what: str, modules: list[str], exit_now: bool) -> None:
    if not modules:
        return
    extras_needed = sorted({extra_of(m) for m in modules})
    error = MissingExtraError(what, ", ".join(modules), ",".join(extras_needed))
    if exit_now:  # a command started with python -m: one line, no traceback
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(error.exit_code)
    raise error


def require(what: str, *modules: str, exit_now: bool = False) -> None:
    """Import ``modules`` or raise :class:`MissingExtraError` naming every missing one and its extra.

    Parameters
    ----------
    what : str
        What needs them, for the message (``"python -m training.fit"``, ``"the explorer"``).
    exit_now : bool
        Print the one-line error and exit with status 2 instead of raising: for the top of a
        command's module (``exit_now=__name__ == "__main__"``) or a package that a command started
        with ``python -m`` imports (:func:`started_with_m`), where nothing could catch it.
    """
    missing = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    _missing(what, missing, exit_now)


def check_installed(what: str, *modules: str, exit_now: bool = False) -> None:
    """As :func:`require`, without importing: for a check before work that another process will import."""
    missing = []
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(module)
    _missing(what, missing, exit_now)


def started_with_m() -> bool:
    """True while ``python -m package.module`` is importing its package (Python sets argv[0] to ``-m`` then)."""
    return bool(sys.argv) and sys.argv[0] == "-m"
