"""What a step of work cost: wall and CPU time, peak memory of the process tree, bytes read and written.

    with Meter() as m:
        run_the_step()
    m.record()   # {"wall_s": ..., "cpu_s": ..., "peak_rss_bytes": ..., "read_bytes": ..., "write_bytes": ...}

* **CPU** is this process's user + system time plus that of its children, the ones that ended
  (``RUSAGE_CHILDREN``, which counts them once reaped) and the ones still running (psutil).
* **Peak memory** is the largest sum of resident set sizes over this process and all its
  descendants (parse workers, DataLoader workers, a Prefect server it started), sampled every
  :data:`SAMPLE_S` seconds by a thread: the figure to compare with a machine's memory, since a
  pool of workers is as real as the process that started it. Short peaks between two samples
  can be missed.
* **Bytes read and written** are the characters passed to read/write system calls (Linux
  ``/proc/PID/io`` ``rchar``/``wchar``, through psutil) by this process and its descendants
  (each child's last sample): what the step moved, from the disk or the page cache alike.
  Zero where the platform does not say.
"""

from __future__ import annotations

import os
import resource
import threading
import time

import psutil

#: Seconds between two samples of the process tree.
SAMPLE_S = 0.2


def _cpu_self_and_reaped() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _io(proc: psutil.Process) -> tuple[int, int]:
    try:
        io = proc.io_counters()
    except (psutil.Error, AttributeError, NotImplementedError):
        return 0, 0
    return int(getattr(io, "read_chars", io.read_bytes)), int(getattr(io, "write_chars", io.write_bytes))


class Meter:
    """Measures a block of work (module docstring); use as a context manager, then :meth:`record`."""

    def __init__(self, sample_s: float = SAMPLE_S):
        self.sample_s = sample_s
        self.me = psutil.Process(os.getpid())
        self.peak_rss = 0
        self._children_cpu: dict[int, float] = {}  # pid -> last cpu time seen (while alive)
        self._children_io: dict[int, tuple[int, int]] = {}  # pid -> last (read, write) seen
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.wall_s = self.cpu_s = 0.0
        self.read_bytes = self.write_bytes = 0

    def _sample(self) -> None:
        total = 0
        try:
            total += self.me.memory_info().rss
            children = self.me.children(recursive=True)
        except psutil.Error:
            children = []
        for child in children:
            try:
                with child.oneshot():
                    total += child.memory_info().rss
                    t = child.cpu_times()
                    self._children_cpu[child.pid] = t.user + t.system
                    self._children_io[child.pid] = _io(child)
            except psutil.Error:
                continue
        self.peak_rss = max(self.peak_rss, total)

    def _run(self) -> None:
        while not self._stop.wait(self.sample_s):
            self._sample()

    def __enter__(self) -> "Meter":
        self._t0 = time.perf_counter()
        self._cpu0 = _cpu_self_and_reaped()
        self._io0 = _io(self.me)
        self._sample()
        self._base_cpu = dict(self._children_cpu)  # children alive before the step: only what they add counts
        self._base_io = dict(self._children_io)
        self._thread = threading.Thread(target=self._run, name="meter", daemon=True)
        self._thread.start()
        return self

    def _safe_children(self) -> list[psutil.Process]:
        try:
            return self.me.children(recursive=True)
        except psutil.Error:
            return []

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        self.wall_s = time.perf_counter() - self._t0
        alive = {c.pid for c in self._safe_children()}
        # children still running: their CPU in this step (the reaped ones are in RUSAGE_CHILDREN)
        running_cpu = sum(cpu - self._base_cpu.get(pid, 0.0) for pid, cpu in self._children_cpu.items() if pid in alive)
        self.cpu_s = _cpu_self_and_reaped() - self._cpu0 + running_cpu
        io1 = _io(self.me)
        moved = [(r - self._base_io.get(pid, (0, 0))[0], w - self._base_io.get(pid, (0, 0))[1])
                 for pid, (r, w) in self._children_io.items()]
        self.read_bytes = io1[0] - self._io0[0] + sum(r for r, _ in moved)
        self.write_bytes = io1[1] - self._io0[1] + sum(w for _, w in moved)

    def record(self) -> dict:
        """The figures, as a JSON-ready dict."""
        return {"wall_s": round(self.wall_s, 3), "cpu_s": round(self.cpu_s, 3), "peak_rss_bytes": int(self.peak_rss),
                "read_bytes": int(self.read_bytes), "write_bytes": int(self.write_bytes)}


def disk_use(path: str | os.PathLike) -> int:
    """Bytes of the files under ``path`` (links not followed; 0 for a URL or a path that is not there)."""
    if "://" in str(path) or not os.path.exists(path):
        return 0
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total
