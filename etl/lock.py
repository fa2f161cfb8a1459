"""The store's write lock: one ingest at a time.

Local stores use ``flock`` on ``STORE/.ingest.lock``: the kernel releases it when the holder
dies, even by ``kill -9``, so a crash never leaves a stale lock. Object stores have no
locks; there the lock is an object holding the owner and a heartbeat time, taken over only
when older than ``stale_after`` seconds (advisory: two writers starting within the same
second can both win).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from etl.errors import StoreLockedError
from etl.location import filesystem, join

LOCK_FILE = ".ingest.lock"


class StoreLock:
    """Context manager holding the write lock of ``store_url``.

    Raises
    ------
    StoreLockedError
        At once (no waiting) when another process holds it.
    """

    def __init__(self, store_url: str, storage_options: dict | None = None, stale_after: float = 6 * 3600):
        self.store_url = store_url.rstrip("/")
        self.storage_options = storage_options or {}
        self.stale_after = stale_after
        self._fd: int | None = None
        self._remote = None

    def _owner(self) -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}

    def acquire(self) -> "StoreLock":
        fs, path, local = filesystem(join(self.store_url, LOCK_FILE), self.storage_options)
        if local:
            import fcntl  # POSIX only; imported here so that object-store users on Windows work

            Path(path).parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 4096, 0).decode(errors="replace")
                os.close(fd)
                raise StoreLockedError(self.store_url, f"another ingest holds the store lock ({_describe(holder)}); wait for it to finish") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(self._owner()).encode(), 0)
            self._fd = fd
        else:
            if fs.exists(path):
                holder = fs.cat_file(path).decode(errors="replace")
                try:
                    age = time.time() - float(json.loads(holder)["since"])
                except (ValueError, KeyError, TypeError):
                    age = float("inf")
                if age < self.stale_after:
                    raise StoreLockedError(self.store_url, f"another ingest holds the store lock ({_describe(holder)})")
            fs.pipe_file(path, json.dumps(self._owner()).encode())
            self._remote = (fs, path)
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
        if self._remote is not None:
            fs, path = self._remote
            fs.rm_file(path)
            self._remote = None

    def __enter__(self) -> "StoreLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _describe(holder: str) -> str:
    try:
        info = json.loads(holder)
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["since"])))
        return f"pid {info['pid']} on {info['host']} since {started}"
    except (ValueError, KeyError, TypeError):
        return "owner unknown"
