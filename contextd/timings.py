"""Per-stage timings in milliseconds, reported with every response.

    >>> timings = {}
    >>> with timed(timings, "ranking"):
    ...     pass
    >>> "ranking" in timings
    True
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        elapsed = (time.perf_counter() - start) * 1000
        timings[stage] = round(timings.get(stage, 0.0) + elapsed, 3)
