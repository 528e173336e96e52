"""Files are created 0644 in 0755 folders (defect): every file contextd writes under a data
directory is 0600 and every folder it makes 0700, whatever the umask, from the moment it
exists (the SQLite -wal and -shm files, snapshots, locks, the key store, the cache)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from contextd import Engine
from contextd.auth import KeyStore


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask, so nothing is private by accident."""
    old = os.umask(0)
    yield
    os.umask(old)


def modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode)
            for p in [root, *root.rglob("*")]}


def test_files_are_created_0600_in_0700_folders(open_umask: None,
                                                make_engine: Callable[..., Engine],
                                                tmp_path: Path) -> None:
    data = tmp_path / "fresh" / "data"
    engine = make_engine(data, snapshot_every=1)
    engine.upsert_documents([{"id": "a", "text": "Alpha beta gamma."}], namespace="acme")
    engine.append_messages("s1", [{"role": "user", "content": "Hello"}], namespace="acme")
    KeyStore(data).create("read", ["acme"])
    seen = modes(data)
    # While the engine is open the WAL files exist: they are private too.
    assert {"namespaces/acme/store.sqlite3-wal", "namespaces/acme/store.sqlite3-shm",
            "namespaces/acme/vectors.faiss", "namespaces/acme/vectors.lock",
            "embedding_cache.sqlite3", "keys.sqlite3"} <= set(seen)
    engine.close()
    seen.update(modes(data))
    wrong = {name: oct(mode) for name, mode in seen.items()
             if mode != (0o700 if (data / name).is_dir() else 0o600)}
    assert wrong == {}
    assert stat.S_IMODE((tmp_path / "fresh").stat().st_mode) == 0o700  # made by contextd


def test_an_existing_parent_folder_keeps_its_mode(open_umask: None,
                                                  make_engine: Callable[..., Engine],
                                                  tmp_path: Path) -> None:
    tmp_path.chmod(0o755)  # a folder the user chose is theirs to set
    make_engine(tmp_path / "data").upsert_documents([{"id": "a", "text": "Alpha."}])
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700



# Another process opening and closing the database: if it finds no other connection's lock,
# it takes itself for the last one and removes the -wal and -shm files.
PROBE = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
conn.execute("SELECT count(*) FROM t").fetchone()
conn.close()
"""


def test_opening_another_connection_keeps_sqlite_locks(tmp_path: Path) -> None:
    # Making the file private must not open an existing database: closing that descriptor
    # drops the POSIX locks all of this process's connections hold on it, and another
    # process then deletes the WAL under them ("disk I/O error" on every later query).
    import subprocess
    import sys

    from contextd.store.schema import connect

    path = tmp_path / "store.sqlite3"
    holder = connect(str(path))
    holder.execute("CREATE TABLE t (x)")
    holder.execute("INSERT INTO t VALUES (1)")
    connect(str(path))  # a reader of another thread opening meanwhile
    subprocess.run([sys.executable, "-c", PROBE, str(path)], check=True, timeout=60)
    assert (tmp_path / "store.sqlite3-wal").exists()
    holder.execute("INSERT INTO t VALUES (2)")
    assert holder.execute("SELECT count(*) FROM t").fetchone()[0] == 2
