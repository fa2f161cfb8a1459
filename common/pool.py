"""Bounded, ordered parallel work: submit with at most N pending, take the results in order."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator


def in_order(submit: Callable, items: Iterable, in_flight: int) -> Iterator:
    """Submit ``items`` with at most ``in_flight`` pending; yield their results in order.

    ``submit(item)`` returns a future (``concurrent.futures`` or Prefect's: anything with
    ``.result()``). Bounding what is in flight bounds memory whatever the number of items.
    """
    todo = iter(items)
    window: deque = deque(submit(item) for item in itertools.islice(todo, max(in_flight, 1)))
    while window:
        result = window.popleft().result()
        for item in itertools.islice(todo, 1):
            window.append(submit(item))
        yield result
