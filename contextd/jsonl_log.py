"""Append-only JSONL files, private to their owner and rotated by size.

The usage log and the failure log are both one JSON object per line. Each file is created
0600 (it says which tenants call and how much; the failure log may hold input), appended with
O_APPEND so lines from several processes on one data directory never interleave within a
line, and rotated like `logging.handlers.RotatingFileHandler` (`file` -> `file.1` -> ... ->
`file.<backups>`, the oldest deleted) once it passes `max_bytes`. A writer that finds its file
rotated by another process (a new inode at the path) reopens the path before writing, so every
process writes to the current file.

    >>> log = JsonlLog(Path("indexes/usage.jsonl"), max_bytes=10 << 20, backups=5)  # doctest: +SKIP
    >>> log.write({"time": "2026-12-02T07:00:00Z", "tokens": {"total": 812}})  # doctest: +SKIP
    >>> list(read_records(Path("indexes/usage.jsonl")))  # doctest: +SKIP
    [{'time': '2026-12-02T07:00:00Z', 'tokens': {'total': 812}}]
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FILE_MODE = 0o600


class JsonlLog:
    """A thread-safe appender of JSON lines to `path`, rotated at `max_bytes`.

        >>> log = JsonlLog(Path("failures.jsonl"), max_bytes=1 << 20, backups=3)  # doctest: +SKIP
    """

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._inode: tuple[int, int] | None = None

    def write(self, record: dict[str, Any]) -> None:
        """Append `record` as one line (OSError if the file cannot be written)."""
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)
                + "\n").encode()
        with self._lock:
            fd, size = self._current()
            if size > 0 and size + len(line) > self.max_bytes:
                self._rotate()
                fd, size = self._current()
            os.write(fd, line)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _current(self) -> tuple[int, int]:
        """The descriptor of the file now at the path, and that file's size."""
        if self._fd is not None:
            try:
                at_path = os.stat(self.path)
                if (at_path.st_ino, at_path.st_dev) == self._inode:
                    return self._fd, at_path.st_size
            except FileNotFoundError:
                pass
            os.close(self._fd)  # rotated (or removed) by someone else: follow the path
            self._fd = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        # The mode of os.open applies only to a new file (and through the umask): make sure.
        os.fchmod(fd, FILE_MODE)
        opened = os.fstat(fd)
        self._fd, self._inode = fd, (opened.st_ino, opened.st_dev)
        return fd, opened.st_size

    def _rotate(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        for n in range(self.backups - 1, 0, -1):
            older = rotated(self.path, n)
            if older.exists():
                os.replace(older, rotated(self.path, n + 1))
        if self.backups == 0:
            self.path.unlink(missing_ok=True)  # no backups: start over
        elif self.path.exists():
            os.replace(self.path, rotated(self.path, 1))


def rotated(path: Path, n: int) -> Path:
    """The `n`th rotated file of `path` (`usage.jsonl.2`)."""
    return path.with_name(f"{path.name}.{n}")


def log_files(path: Path) -> list[Path]:
    """`path` and its rotated files that exist, oldest first.

        >>> log_files(Path("indexes/usage.jsonl"))  # doctest: +SKIP
        [PosixPath('indexes/usage.jsonl.1'), PosixPath('indexes/usage.jsonl')]
    """
    numbered = []
    for candidate in path.parent.glob(f"{path.name}.*"):
        suffix = candidate.name[len(path.name) + 1:]
        if suffix.isdigit():
            numbered.append((int(suffix), candidate))
    files = [p for _, p in sorted(numbered, reverse=True)]
    return files + ([path] if path.exists() else [])


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Every record of `path` and its rotated files, oldest file first; a line that is not
    a JSON object (a write cut short by a crash) is skipped."""
    for file in log_files(path):
        with open(file, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict):
                    yield record
