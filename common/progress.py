"""Progress of long work: a tqdm bar on a terminal and, whatever the terminal, ETA lines in a log.

Every long loop of the project counts through :func:`bar`. The bar is drawn (tqdm) when the
caller asks for it; in any case a line such as ``poisson variability: 42/186 batches (23 %),
3.1 batch/s, ETA 0:00:46`` goes to the ``lcvae.progress`` logger at most every
:data:`LOG_EVERY_S` seconds, and a bar that ran that long ends with a line of its total. Nothing is printed by that logger unless a
handler listens: the Prefect flows attach one that forwards the lines to the flow run's log
(:func:`forward_to`), so a run watched in the Prefect UI shows the same progress as a terminal.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Iterator

#: The logger every progress line goes to.
LOGGER = logging.getLogger("lcvae.progress")
#: Seconds between two log lines of one bar.
LOG_EVERY_S = 30.0


def eta_text(seconds: float) -> str:
    """``H:MM:SS`` for a number of seconds (``?`` when unknown)."""
    if not seconds == seconds or seconds in (float("inf"), float("-inf")) or seconds < 0:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Bar:
    """Counts work done; draws a tqdm bar when ``show`` and logs ETA lines (module docstring).

    Use like tqdm: ``update(n)``, ``close()``, or as a context manager, or iterate
    :func:`bar` over an iterable.
    """

    def __init__(self, total: int | None, desc: str, unit: str = "it", show: bool = False,
                 log_every: float | None = None, **tqdm_kwargs):
        self.total = total
        self.desc = desc
        self.unit = unit
        self.n = 0
        self.started = time.monotonic()
        self._logged_at = self.started
        self._log_every = LOG_EVERY_S if log_every is None else log_every
        self._closed = False
        self._postfix = ""
        self._lock = threading.Lock()
        self._tqdm = None
        if show:
            from tqdm import tqdm

            self._tqdm = tqdm(total=total, desc=desc, unit=unit, mininterval=0.5, **tqdm_kwargs)

    def update(self, n: int = 1) -> None:
        with self._lock:
            self.n += n
            now = time.monotonic()
            due = now - self._logged_at >= self._log_every
            if due:
                self._logged_at = now
        if self._tqdm is not None:
            self._tqdm.update(n)
        if due:
            self.log()

    def set_postfix(self, **values) -> None:
        """Figures shown after the bar and in the log lines (``loss=0.31``)."""
        self._postfix = ", ".join(f"{k} {v}" for k, v in values.items())
        if self._tqdm is not None:
            self._tqdm.set_postfix(values)

    def line(self) -> str:
        """What the bar says now: done/total, percentage, rate and the time left."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.n / elapsed
        extra = f" ({self._postfix})" if self._postfix else ""
        if self.total:
            left = (self.total - self.n) / rate if rate > 0 else float("nan")
            return (f"{self.desc}: {self.n:,}/{self.total:,} {self.unit} ({100.0 * self.n / self.total:.0f} %), "
                    f"{rate:,.2f} {self.unit}/s, ETA {eta_text(left)}{extra}")
        return f"{self.desc}: {self.n:,} {self.unit}, {rate:,.2f} {self.unit}/s, elapsed {eta_text(elapsed)}{extra}"

    def log(self) -> None:
        if LOGGER.isEnabledFor(logging.INFO):
            LOGGER.info(self.line())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._tqdm is not None:
            self._tqdm.close()
        if self._logged_at != self.started and LOGGER.isEnabledFor(logging.INFO):  # a long bar: its summary
            LOGGER.info(f"{self.desc}: {self.n:,} {self.unit} in {eta_text(time.monotonic() - self.started)}")

    def __enter__(self) -> "Bar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def bar(total: int | None = None, desc: str = "", unit: str = "it", show: bool = False, **kwargs) -> Bar:
    """A :class:`Bar` (``show``: draw it on the terminal too)."""
    return Bar(total, desc, unit, show, **kwargs)


def track(items: Iterable, total: int | None = None, desc: str = "", unit: str = "it", show: bool = False,
          **kwargs) -> Iterator:
    """Iterate ``items`` counting each one on a :class:`Bar`."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    with Bar(total, desc, unit, show, **kwargs) as b:
        for item in items:
            yield item
            b.update(1)


class _Forward(logging.Handler):
    """Sends progress lines to another logger (a Prefect run logger is a LoggerAdapter)."""

    def __init__(self, target):
        super().__init__(logging.INFO)
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.target.info(record.getMessage())
        except Exception:  # noqa: BLE001 - a log line must never stop the work it reports on
            pass


@contextlib.contextmanager
def forward_to(target) -> Iterator[None]:
    """While inside, progress lines also go to ``target.info`` (e.g. Prefect's run logger)."""
    handler = _Forward(target)
    previous, propagate = LOGGER.level, LOGGER.propagate
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO)
    LOGGER.propagate = False  # once: the target prints (and ships) it, the root's handlers need not
    try:
        yield
    finally:
        LOGGER.removeHandler(handler)
        LOGGER.setLevel(previous)
        LOGGER.propagate = propagate
