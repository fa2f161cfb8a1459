"""The meter: CPU of this process and its children, the process tree's peak memory, bytes moved."""

from __future__ import annotations

import subprocess
import sys

from common.meter import Meter, disk_use


def test_children_count_in_cpu_and_memory():
    child = ("import numpy as np, time\nx = np.ones((40, 1000, 1000))\nt = time.process_time()\n"
             "while time.process_time() - t < 1.0: x.sum()\n")
    with Meter(sample_s=0.05) as m:
        subprocess.run([sys.executable, "-c", child], check=True)
    assert m.cpu_s >= 1.0  # the child's second of CPU, though it ended before the step
    assert m.peak_rss >= 300e6  # the child's 320 MB array, sampled while it ran
    record = m.record()
    assert set(record) == {"wall_s", "cpu_s", "peak_rss_bytes", "read_bytes", "write_bytes"}


def test_bytes_written_and_disk_use(tmp_path):
    with Meter() as m:
        (tmp_path / "a").mkdir()
        (tmp_path / "a" / "x.bin").write_bytes(b"0" * 3_000_000)
        (tmp_path / "a" / "y.bin").write_bytes(b"0" * 1_000_000)
    assert m.write_bytes >= 4_000_000
    assert disk_use(tmp_path / "a") == 4_000_000 and disk_use(tmp_path / "missing") == 0 and disk_use("s3://b/k") == 0
