"""Private files: everything contextd writes under a data directory is 0600, folders 0700.

A data directory holds other people's documents and conversations, so nothing in it is
readable by other local users, from the moment it exists: files are created with the mode
(`os.open`), not chmod-ed afterwards, and SQLite gives its -wal and -shm files the mode of
the database file, which is created here before SQLite opens it.

    >>> private_dir(Path("/tmp/contextd-doc/namespaces"))  # doctest: +SKIP
    >>> fd = private_open(Path("/tmp/contextd-doc/x.tmp"), os.O_WRONLY)  # doctest: +SKIP
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> None:
    """Create `path` and any missing parents as 0700 folders; existing ones are left as they
    are (a data directory inside a folder the user chose keeps that folder's mode).

        >>> private_dir(Path("/tmp/contextd-doc/a/b"))
    """
    path = Path(path)
    missing = []
    while not path.exists():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, DIR_MODE)
        except FileExistsError:
            continue  # another process made it first
        os.chmod(folder, DIR_MODE)  # a umask can only narrow the mode, but be exact


def private_open(path: Path, flags: int) -> int:
    """`os.open` that creates `path` 0600 (never wider, whatever the umask).

        >>> os.close(private_open(Path("/tmp/contextd-doc/f"), os.O_RDWR))
    """
    return os.open(path, flags | os.O_CREAT, FILE_MODE)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created 0600), across processes, waiting for it.

        >>> with file_lock(Path("/tmp/contextd-doc/x.lock")):
        ...     pass
    """
    with os.fdopen(private_open(path, os.O_RDWR), "r+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def private_file(path: Path) -> None:
    """Create `path` as an empty 0600 file unless it exists, before another library (SQLite)
    opens it; a file that exists is left alone.

    Never opens an existing file: closing any descriptor of a file drops every POSIX lock this
    process holds on it, SQLite's included, so touching a database another connection of
    this process has open would break that connection's locking.

        >>> private_file(Path("/tmp/contextd-doc/store.sqlite3"))
    """
    try:
        fd = os.open(Path(path), os.O_RDWR | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)
