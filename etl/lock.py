"""Locks on a store: one ingest at a time (``.ingest.lock``), one feature build at a time (``.features.lock``).

Local stores use ``flock`` on a file in the store: the kernel releases it when the holder dies,
even by ``kill -9``, so a crash never leaves a stale lock. Object stores have no locks; there the
lock is an object holding the owner and a heartbeat time, taken over only when older than
``stale_after`` seconds (advisory: two writers starting within the same second can both win).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

from common.location import filesystem, join
from etl.errors import StoreError, StoreLockedError

LOCK_FILE = ".ingest.lock"
#: Feature builds (``features.build``, the ``build-features`` flow, model scoring) share this one.
FEATURES_LOCK_FILE = ".features.lock"
#: Locks this process holds re-entrantly: path -> [StoreLock holding it, depth].
_HELD: dict[str, list] = {}
_HELD_GUARD = threading.Lock()


class StoreLock:
    """Context manager holding a lock of ``store_url`` (module docstring).

    Parameters
    ----------
    name : str
        Lock file in the store (:data:`LOCK_FILE` for ingest, :data:`FEATURES_LOCK_FILE`).
    purpose : str
        What holds it, for the message a second writer gets ("ingest", "feature build").
    wait : float
        Seconds to wait for another holder to finish (0: fail at once; ``inf``: as long as it takes).
    reentrant : bool
        A second acquire by this process (any thread) succeeds and is released with the first:
        a feature build's steps each take the lock the build already holds.

    Raises
    ------
    StoreLockedError
        When another process holds it beyond ``wait`` seconds; the message names it.
    """

    def __init__(self, store_url: str, storage_options: dict | None = None, stale_after: float = 6 * 3600,
                 name: str = LOCK_FILE, purpose: str = "ingest", wait: float = 0.0, reentrant: bool = False,
                 on_wait=None):
        self.store_url = str(store_url).rstrip("/")
        self.storage_options = storage_options or {}
        self.stale_after = stale_after
        self.name, self.purpose, self.wait, self.reentrant = name, purpose, wait, reentrant
        self.on_wait = on_wait  # called once with the holder's description when the lock is busy
        self._fd: int | None = None
        self._remote = None
        self._key: str | None = None

    def _owner(self) -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), "purpose": self.purpose}

    def acquire(self) -> "StoreLock":
        fs, path, local = filesystem(join(self.store_url, self.name), self.storage_options)
        self._key = f"{fs.protocol}:{path}"
        if self.reentrant:
            with _HELD_GUARD:
                held = _HELD.get(self._key)
                if held is not None:
                    held[1] += 1
                    return self
        deadline = time.monotonic() + self.wait
        told = False
        while True:
            holder = self._try_local(path) if local else self._try_remote(fs, path)
            if holder is None:
                break
            if time.monotonic() >= deadline:
                raise StoreLockedError(self.store_url, f"another {self.purpose} holds the store lock ({_describe(holder)}); "
                                                       "wait for it to finish")
            if not told and self.on_wait is not None:
                self.on_wait(_describe(holder))
                told = True
            time.sleep(min(0.5, max(deadline - time.monotonic(), 0.0)))
        if self.reentrant:
            with _HELD_GUARD:
                _HELD[self._key] = [self, 1]
        return self

    def _try_local(self, path: str) -> str | None:
        """Take the flock; None when taken, else the holder's record."""
        import fcntl  # POSIX only; imported here so that object-store users on Windows work

        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:  # a read-only store or file system: nothing can be written there anyway
            raise StoreError(self.store_url, f"cannot take the {self.purpose} lock {path}: {exc.strerror or exc} "
                                             "(is the store read-only? a " + self.purpose + " writes into it)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace")
            os.close(fd)
            return holder
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(self._owner()).encode(), 0)
        self._fd = fd
        return None

    def _try_remote(self, fs, path: str) -> str | None:
        if fs.exists(path):
            holder = fs.cat_file(path).decode(errors="replace")
            try:
                age = time.time() - float(json.loads(holder)["since"])
            except (ValueError, KeyError, TypeError):
                age = float("inf")
            if age < self.stale_after:
                return holder
        fs.pipe_file(path, json.dumps(self._owner()).encode())
        self._remote = (fs, path)
        return None

    def release(self) -> None:
        if self.reentrant and self._key is not None:
            with _HELD_GUARD:
                held = _HELD.get(self._key)
                if held is not None:
                    held[1] -= 1
                    if held[1] > 0:
                        return
                    del _HELD[self._key]
                    owner = held[0]
                    if owner is not self:
                        owner._drop()
                        return
        self._drop()

    def _drop(self) -> None:
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
