"""The manual's commands name what exists: every fenced ``bash`` block in README.md and docs/.

Nothing is run. Each command is read: ``python -m MODULE --flag`` must name a module of the project
(or an installed one) and flags its ``--help`` lists; ``python benchmarks/x.py --flag`` a script
that defines the flag; ``prefect deployment run FLOW/NAME --param key=...`` a deployment that
``flows.serve`` serves and a parameter of its flow; a path into the repository (``configs/...``,
``benchmarks/...``, ``requirements/...``) a file that is there. Placeholders (``STORE``,
``ARCHIVE_DIR``, ``demo/...``) are left alone.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import io
import re
import shlex
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
REPO_DIRS = ("configs", "benchmarks", "docs", "tests", "requirements", "common", "etl", "features", "training", "flows",
             "explorer", ".ci")
FLAG = re.compile(r"--[a-z][a-z0-9_-]*")


def bash_commands(page: Path) -> list[tuple[int, str]]:
    """(line, command) of every command in the page's ```bash blocks, continuation lines joined, comments cut."""
    out, block, start, pending = [], False, 0, ""
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if line.strip().startswith("```"):
            block = line.strip() == "```bash" if not block else False
            continue
        if not block:
            continue
        text = re.sub(r"(^|\s)#(?![!/]).*$", "", line).rstrip()  # a comment (not #! or a URL fragment)
        if not pending:
            start = number
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        command = (pending + text).strip()
        pending = ""
        if command:
            out.append((start, command))
    return out


def segments(command: str) -> list[list[str]]:
    """The simple commands of a line (split at &&, ||, |, ;), as shell words (brackets of usage kept out)."""
    out = []
    for part in re.split(r"\s(?:&&|\|\||\||;)\s", command):
        try:
            words = shlex.split(part)
        except ValueError:
            words = part.split()
        out.append([w for w in (w.strip("[]") for w in words) if w])
    return out


@lru_cache(maxsize=None)
def module_flags(module: str, subcommand: str | None = None) -> frozenset[str] | None:
    """The flags ``python -m module [subcommand] --help`` lists (None when the module has no ``main`` to ask)."""
    target = module
    spec = importlib.util.find_spec(module)
    if spec is not None and spec.submodule_search_locations:  # a package: ask what its __main__ runs
        main_src = Path(spec.submodule_search_locations[0], "__main__.py").read_text()
        target = re.search(r"from (\S+) import main", main_src)[1]
    mod = importlib.import_module(target)
    main = getattr(mod, "main", None)
    if main is None:
        return None
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.suppress(SystemExit):
        main([subcommand, "--help"] if subcommand else ["--help"])
    return frozenset(FLAG.findall(buffer.getvalue()))


@lru_cache(maxsize=None)
def deployments() -> dict[str, object]:
    """flow/deployment name -> flow, as flows.serve serves them (names equal flow names)."""
    src = (ROOT / "flows" / "serve.py").read_text()
    names = re.search(r"for f in \(([^)]*)\)", src)[1].split(",")
    flows = {}
    for name in (n.strip() for n in names):
        module = re.search(rf"from (flows\.\w+) import {name}\b", src)[1]
        flow = getattr(importlib.import_module(module), name)
        flows[f"{flow.name}/{flow.name}"] = flow
    return flows


def _has_subcommands(module: str) -> bool:
    flags_text = Path(importlib.util.find_spec(module).origin).read_text()
    return "add_subparsers" in flags_text


def check_words(words: list[str]) -> list[str]:
    """What is wrong with one simple command (empty when nothing is)."""
    problems = []
    for word in words:  # paths into the repository must exist
        path = word.split("=", 1)[-1]
        if "/" in path and path.split("/", 1)[0] in REPO_DIRS and not any(c in path for c in "*<>{}"):
            if not (ROOT / path).exists():
                problems.append(f"no file {path}")
    if not words:
        return problems
    flags = [FLAG.match(w)[0] for w in words if FLAG.match(w)]
    if words[0] in ("python", "python3", "torchrun") and "-m" in words:
        module = words[words.index("-m") + 1]
        if module in ("pip", "venv", "pytest", "prefect", "uv"):
            return problems
        if importlib.util.find_spec(module.split(".")[0]) is None or importlib.util.find_spec(module) is None:
            return problems + [f"no module {module}"]
        after = words[words.index("-m") + 2:]
        subcommand = after[0] if after and re.fullmatch(r"[a-z]+", after[0]) and _has_subcommands(module) else None
        known = module_flags(module, subcommand)
        own = [FLAG.match(w)[0] for w in after if FLAG.match(w)] if known is not None else []
        problems += [f"python -m {module} has no flag {f}" for f in own if f not in known and f != "--help"]
    elif words[0] in ("python", "python3") and len(words) > 1 and words[1].endswith(".py"):
        script = ROOT / words[1]
        if not script.is_file():
            return problems + [f"no script {words[1]}"]
        text = script.read_text()
        problems += [f"{words[1]} has no flag {f}" for f in flags if f'"{f}"' not in text]
    elif words[:3] == ["prefect", "deployment", "run"]:
        name = words[3]
        flow = deployments().get(name)
        if flow is None:
            return problems + [f"no deployment {name} (served: {', '.join(deployments())})"]
        params = set(inspect.signature(flow.fn).parameters)
        for i, word in enumerate(words):
            if word == "--param":
                key = words[i + 1].split("=", 1)[0]
                if key not in params:
                    problems.append(f"deployment {name} has no parameter {key}")
    return problems


def all_commands() -> list[tuple[str, int, str]]:
    return [(page.relative_to(ROOT).as_posix(), line, command) for page in PAGES for line, command in bash_commands(page)]


def test_the_manual_has_commands():
    commands = all_commands()
    assert len(commands) > 40
    assert {page for page, _, _ in commands} >= {"README.md", "docs/ingest.md", "docs/survey.md", "docs/training.md"}


def test_every_command_names_what_exists():
    problems = []
    for page, line, command in all_commands():
        for words in segments(command):
            problems += [f"{page}:{line}: {p}    ({command[:100]})" for p in check_words(words)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("command, problem", [
    ("python -m etl.ingest A --store S --no-such-flag", "python -m etl.ingest has no flag --no-such-flag"),
    ("python -m etl.nonexistent --x", "no module etl.nonexistent"),
    ("python benchmarks/survey.py --bogus 3", "benchmarks/survey.py has no flag --bogus"),
    ("python benchmarks/missing.py", "no script benchmarks/missing.py"),
    ("prefect deployment run survey/survey --param nope=1", "deployment survey/survey has no parameter nope"),
    ("prefect deployment run nothing/nothing", "no deployment nothing/nothing"),
    ("python -m training.fit --config configs/missing.toml --store S", "no file configs/missing.toml"),
])
def test_the_check_catches_a_wrong_command(command, problem):
    found = [p for words in segments(command) for p in check_words(words)]
    assert any(problem in p for p in found), found
