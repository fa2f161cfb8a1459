"""The run record: each step's status and cost, written as it goes, the earlier runs kept."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from common.runlog import RunLog, read_runlog


def test_steps_are_recorded_with_their_cost(tmp_path):
    log = RunLog(tmp_path / "run.json", {"store": "S"})
    with log.step("first") as step:
        step.detail["files"] = 3
        data = bytearray(50_000_000)  # noqa: F841 - memory the step holds
        (tmp_path / "out.bin").write_bytes(b"x" * 10_000_000)
    with log.step("second") as step:
        step.did_work = False
    log.skip("third", "nothing to match")
    record = log.finish(extra=1)
    first, second, third = record["steps"]
    assert first["status"] == "done" and first["files"] == 3 and first["write_bytes"] >= 10_000_000
    assert first["peak_rss_bytes"] > 50_000_000 and first["wall_s"] > 0 and first["cpu_s"] >= 0
    assert second["status"] == "current" and third == {"step": "third", "status": "skipped", "why": "nothing to match"}
    assert record["status"] == "done" and record["extra"] == 1
    assert read_runlog(tmp_path / "run.json") == json.loads((tmp_path / "run.json").read_text())
    assert record["totals"]["wall_s"] == pytest.approx(first["wall_s"] + second["wall_s"], abs=0.002)


def test_a_failing_step_is_recorded_then_raised(tmp_path):
    log = RunLog(tmp_path / "run.json")
    with pytest.raises(ValueError, match="bad"):
        with log.step("broken"):
            raise ValueError("bad input")
    saved = read_runlog(tmp_path / "run.json")
    assert saved["status"] == "failed" and saved["steps"][0]["error"] == "ValueError: bad input"


def test_a_killed_run_says_which_step_it_was_in_and_the_next_run_keeps_its_history(tmp_path):
    code = ("import os, signal, sys; from common.runlog import RunLog\n"
            "log = RunLog(sys.argv[1])\n"
            "with log.step('one'): pass\n"
            "with log.step('two'): os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run.json")], capture_output=True)
    assert proc.returncode == -9
    killed = read_runlog(tmp_path / "run.json")
    assert [(s["step"], s["status"]) for s in killed["steps"]] == [("one", "done"), ("two", "running")]
    again = RunLog(tmp_path / "run.json")
    assert again.history[-1]["steps"] == {"one": "done", "two": "running"} and again.steps == []


def test_an_unreadable_record_is_replaced(tmp_path):
    (tmp_path / "run.json").write_text("{not json")
    assert read_runlog(tmp_path / "run.json") is None
    assert RunLog(tmp_path / "run.json").history == []
