"""Child processes that die with their parent, even when the parent is killed with SIGKILL.

A process killed by ``kill -9`` runs no clean-up, so the pool workers and servers it started
would live on as orphans (seen: ingest workers and multiprocessing's resource tracker still
running 15 minutes after the ingest was killed). Linux delivers a chosen signal to a child
when its parent dies (``prctl(PR_SET_PDEATHSIG)``); elsewhere, and as a second line, a daemon
thread notices that the child was re-parented and exits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux); True if set.

    Use it as ``preexec_fn`` of ``subprocess.Popen`` (it survives ``exec``) or at the start of
    a worker process.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def watch_parent(parent: int | None = None, interval: float = 1.0) -> None:
    """Exit this process (``os._exit``) once its parent process ``parent`` is gone (re-parented).

    ``parent`` is the pid the caller expects as parent (default: the current one). Passing it
    from the parent matters: a worker still importing when its parent was killed starts this
    watch already re-parented, and must exit at once rather than watch its new parent.
    """
    parent = os.getppid() if parent is None else parent
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="lifeline", daemon=True).start()


def die_with_parent(parent: int | None = None) -> None:
    """Both guards: the kernel's parent-death signal and the watching thread.

    Use as a pool ``initializer`` with ``initargs=(os.getpid(),)`` from the parent.
    """
    set_parent_death_signal(signal.SIGKILL)
    watch_parent(parent)


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` exists on this machine (someone else's counts too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's, alive
        return True
    return True


def _child_start(parent: int, queue) -> None:
    """In the child: die with the parent, and send its progress lines back to it."""
    import logging
    import logging.handlers

    from common.progress import LOGGER

    die_with_parent(parent)
    LOGGER.addHandler(logging.handlers.QueueHandler(queue))
    LOGGER.setLevel(logging.INFO)
    LOGGER.propagate = False


def call_in_child(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` in a spawned child process that dies with this one; its result, or its exception.

    For work whose memory should be given back when it ends (training: torch's allocator and the
    data it read stay with the process). The child's progress lines (``lcvae.progress``) reach
    this process's progress logger, so a flow's log shows them as if the work ran here.
    """
    import logging
    import logging.handlers
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from common.progress import LOGGER

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    listener = logging.handlers.QueueListener(queue, *LOGGER.handlers, respect_handler_level=False)
    listener.start()
    try:
        with ProcessPoolExecutor(1, mp_context=ctx, initializer=_child_start, initargs=(os.getpid(), queue)) as pool:
            return pool.submit(fn, *args, **kwargs).result()
    finally:
        listener.stop()
