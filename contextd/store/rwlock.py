"""A readers-writer lock: many searches at once, or one mutation.

faiss indexes are safe for concurrent searches but not for a search during add or remove.

    >>> lock = ReadWriteLock()
    >>> with lock.shared():
    ...     pass
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ReadWriteLock:
    """Many searches at once, or one mutation; a waiting writer blocks new readers."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()

    def try_exclusive(self) -> bool:
        """Take the lock exclusively only if nobody holds or waits for it; never blocks.
        Release with `release_exclusive`."""
        with self._cond:
            if self._writer or self._readers or self._writers_waiting:
                return False
            self._writer = True
            return True

    def release_exclusive(self) -> None:
        with self._cond:
            self._writer = False
            self._cond.notify_all()
