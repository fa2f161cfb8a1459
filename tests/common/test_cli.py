"""The one command-line runner: user errors are one line and exit 2, bugs raise, a closed pipe is not an error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from common import cli
from common.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


def test_user_error_is_one_line_and_its_exit_code(capsys):
    class Busy(UserError):
        exit_code = 3

    def main(argv):
        raise Busy("the store is busy")

    assert cli.run(main, []) == 3
    assert capsys.readouterr().err == "error: the store is busy\n"


def test_a_bug_raises_with_its_traceback():
    def main(argv):
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        cli.run(main, [])


def test_status_of_main():
    assert cli.run(lambda argv: None, []) == 0
    assert cli.run(lambda argv: 4, []) == 4


@pytest.mark.slow
def test_output_into_a_closed_pipe_exits_0(rebinned_archive, tmp_path):
    """``python -m etl.ingest ... | head -1``: the command ends quietly with exit 0 when its reader goes away."""
    store = tmp_path / "s"
    cmd = f"set -o pipefail; {sys.executable} -m etl.ingest {rebinned_archive} --store {store} --quiet | head -1"
    proc = subprocess.run(["bash", "-c", cmd], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout.startswith("discovered ")
    assert (store / "catalog.parquet").exists()


def test_every_command_uses_the_runner():
    """Every ``python -m`` entry point ends through cli.run (one way to print errors and exit)."""
    mains = [p for p in ROOT.glob("*/*.py") if p.parts[-2] in ("etl", "features", "training", "flows", "explorer")
             and "if __name__ == \"__main__\":" in p.read_text()]
    assert len(mains) >= 14
    for path in mains:
        tail = path.read_text().split('if __name__ == "__main__":', 1)[1]
        assert "cli.run(main)" in tail, path
