"""Progress: a tqdm bar on request, ETA lines in the ``lcvae.progress`` log, forwarded to a run's logger."""

from __future__ import annotations

import logging

from common.progress import LOGGER, bar, eta_text, forward_to, track


class Collect:
    def __init__(self):
        self.lines = []

    def info(self, message):
        self.lines.append(message)


def test_eta_text():
    assert eta_text(3725) == "1:02:05" and eta_text(0) == "0:00:00" and eta_text(float("nan")) == "?"


def test_lines_reach_the_forwarded_logger_with_an_eta():
    sink = Collect()
    with forward_to(sink):
        b = bar(200, "poisson variability", "part", log_every=0.0)
        for _ in range(200):
            b.update(1)
        b.close()
    assert len(sink.lines) == 201  # every update (interval 0) and the closing total
    first = sink.lines[0]
    assert first.startswith("poisson variability: 1/200 part (0 %)") and "ETA " in first
    assert sink.lines[-1].startswith("poisson variability: 200 part in 0:00:")
    assert not LOGGER.handlers and LOGGER.propagate  # nothing left attached


def test_a_short_bar_logs_nothing_and_nothing_without_a_listener(caplog):
    sink = Collect()
    with forward_to(sink):
        for _ in track(range(50), desc="short", unit="batch"):  # shorter than the log interval: silent
            pass
    assert sink.lines == []
    with caplog.at_level(logging.DEBUG, logger="lcvae.progress"):
        b = bar(3, "unheard", log_every=0.0)
        b.update(3)
        b.close()
    assert all(r.name == "lcvae.progress" for r in caplog.records)  # a user's own logging config hears it


def test_postfix_joins_the_line():
    sink = Collect()
    with forward_to(sink):
        b = bar(10, "training epochs", "epoch", log_every=0.0)
        b.set_postfix(train="31.2", val="31.4")
        b.update(1)
    assert sink.lines[0].endswith("(train 31.2, val 31.4)")
