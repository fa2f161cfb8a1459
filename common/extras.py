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


def require(what: str, *modules: str) -> None:
    """Import each of ``modules`` or raise :class:`MissingExtraError` naming the extra that installs it.

    Parameters
    ----------
    what : str
        What needs them, for the message (``"python -m training.fit"``, ``"the explorer"``).
    """
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            raise MissingExtraError(what, module, extra_of(module)) from None


def check_installed(what: str, *modules: str) -> None:
    """As :func:`require`, without importing: for a check before work that another process will import."""
    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(what, module, extra_of(module))
