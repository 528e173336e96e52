"""A kill in the middle of a namespace delete left it half there (listed again after the
restart, with some of its files gone): the folder is renamed out of the namespace names
first, so a crash leaves the namespace whole or gone, and the next start removes what the
kill left."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from contextd import Engine

# Deletes a namespace, killed by SIGKILL once the removal has taken one of its files.
KILLED_DELETE = """
import os, shutil, signal, sys
from pathlib import Path
from contextd import Engine, Settings
from contextd.embedding import HashEmbedder
engine = Engine(sys.argv[1], Settings(embedder="hash", batch_wait_ms=0), embedder=HashEmbedder())
engine.upsert_documents([{"id": "a", "text": "Alpha beta gamma."}], namespace="gone")
def killed_rmtree(path, *args, **kwargs):
    (Path(path) / "vectors.faiss").unlink()
    os.kill(os.getpid(), signal.SIGKILL)
shutil.rmtree = killed_rmtree
engine.delete_namespace("gone")
"""


def test_kill_during_namespace_delete_leaves_it_gone(make_engine: Callable[..., Engine],
                                                     tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_engine(data).upsert_documents([{"id": "k", "text": "Kept."}], namespace="keep")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.run([sys.executable, "-c", KILLED_DELETE, str(data)], env=env,
                          timeout=120)
    assert proc.returncode == -9
    assert [p.name for p in (data / "namespaces").iterdir() if p.name.startswith(".")]
    engine = make_engine(data)
    assert [n.name for n in engine.namespaces()] == ["keep"]
    assert sorted(p.name for p in (data / "namespaces").iterdir()) == ["keep"]
    assert engine.get_document("k", namespace="keep").text == "Kept."


def test_a_new_namespace_records_its_model_and_dimension_together(
        make_engine: Callable[..., Engine], tmp_path: Path) -> None:
    # A kill between two separate writes left a namespace with a model but no dimension.
    import sqlite3

    from contextd.store.sqlite_store import SqliteStore

    engine = make_engine(tmp_path / "data")
    statements: list[str] = []
    original = SqliteStore.set_meta
    SqliteStore.set_meta = lambda self, k, v: statements.append(k) or original(self, k, v)
    try:
        engine.upsert_documents([{"id": "a", "text": "Alpha."}], namespace="fresh")
    finally:
        SqliteStore.set_meta = original  # type: ignore[method-assign]
    assert statements == []  # not meta by meta: both in the namespace's first transaction
    db = tmp_path / "data" / "namespaces" / "fresh" / "store.sqlite3"
    meta = dict(sqlite3.connect(db).execute("SELECT key, value FROM meta"))
    assert int(meta["embedding_dim"]) > 0
    assert meta["embedding_model"]
