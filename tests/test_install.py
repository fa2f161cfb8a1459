"""The install path: the lock pins what pyproject asks for, and CI installs exactly as the README says."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"


def pinned() -> dict[str, list[str]]:
    """Package name -> the versions the lock pins for it (one per environment marker)."""
    pins: dict[str, list[str]] = {}
    for line in LOCK.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)", line)
        if m:
            pins.setdefault(canonicalize_name(m[1].split("[")[0]), []).append(m[2])
    return pins


def requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra if not r.startswith(project["name"])]
    return reqs


def test_lock_pins_every_requirement_but_torch():
    pins = pinned()
    assert len(pins) > 100
    missing, outside = [], []
    for req in requirements():
        name = canonicalize_name(req.name)
        if name == "torch":  # the user's build (docs/install.md): never pinned (next test)
            continue
        if name not in pins:
            missing.append(req.name)
        elif not any(req.specifier.contains(v, prereleases=True) for v in pins[name]):
            outside.append(f"{req} (lock: {pins[name]})")
    assert not missing, f"not in requirements/lock.txt, refresh it (docs/install.md): {missing}"
    assert not outside, f"the lock pins versions pyproject.toml excludes, refresh it: {outside}"


def test_torch_is_left_out_of_the_lock():
    lines = [line for line in LOCK.read_text().splitlines() if line.startswith("torch==")]
    assert lines and all("sys_platform == 'never'" in line for line in lines)
    assert not [line for line in LOCK.read_text().splitlines() if line.startswith(("nvidia-", "triton=="))]


def readme_install_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Install", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)[1]
    return [line.strip() for line in block.splitlines() if line.strip()]


def test_ci_runs_exactly_the_readme_install_and_test_commands():
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    commands = readme_install_commands()
    assert commands[0].startswith("python3 -m venv") and "requirements/lock.txt" in commands[-1]
    start = ci.index(commands[0])
    assert ci[start : start + len(commands)] == commands
    runs = [line for line in ci if line and not line.startswith(("#", "set ", "cd ", "if ", "fi", "apt-get"))
            and "command -v" not in line]
    assert runs == [*commands, "python -m pytest"]
    assert "python -m pytest" in (ROOT / "README.md").read_text()
