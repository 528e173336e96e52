"""One namespace on disk: its SQLite source of truth and its derived FAISS snapshot.

The snapshot is loaded at open and caught up from the change log, or rebuilt from SQLite when
it is missing or does not match. Writes go to SQLite first (durable on return), then to the
index under the namespace's write lock, so the index applies changes in commit order.

    >>> ns = NamespaceData.open(Path("indexes/default"), dim=384, model_id="m")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from contextd.errors import InvalidRequest
from contextd.store.sessions import SessionStore
from contextd.store.sqlite_store import SqliteStore, WriteResult
from contextd.store.vector_index import FaissVectorIndex, SnapshotError

log = logging.getLogger("contextd.store")

DB_FILE = "store.sqlite3"
SNAPSHOT_FILE = "vectors.faiss"


@dataclass
class IndexSettings:
    approximate_above: int = 200_000
    snapshot_every: int = 5_000  # unsaved chunk changes that trigger a snapshot write
    approximate_recall: float = 0.98  # recall@10 each approximate build must measure


@dataclass
class NamespaceData:
    name: str
    path: Path
    store: SqliteStore
    sessions: SessionStore
    index: FaissVectorIndex
    settings: IndexSettings
    write_lock: threading.RLock = field(default_factory=threading.RLock)
    unsaved: int = 0

    @classmethod
    def open(cls, name: str, path: Path, dim: int, model_id: str,
             settings: IndexSettings | None = None) -> NamespaceData:
        settings = settings or IndexSettings()
        path.mkdir(parents=True, exist_ok=True)
        store = SqliteStore(str(path / DB_FILE))
        stored_model = store.get_meta("embedding_model")
        if stored_model is None:
            store.set_meta("embedding_model", model_id)
            store.set_meta("embedding_dim", str(dim))
        elif stored_model != model_id:
            store.close()
            raise InvalidRequest(
                f"namespace {name!r} was indexed with embedding model {stored_model!r}, not "
                f"{model_id!r}: open it with the same model, or re-ingest into a new namespace"
            )
        index, rebuilt = _load_or_rebuild(store, path / SNAPSHOT_FILE, dim, settings)
        ns = cls(name, path, store, SessionStore(store), index, settings)
        if rebuilt:
            ns.save_snapshot()
        return ns

    # ----------------------------------------------------------------- writes

    def apply(self, result: WriteResult) -> None:
        """Mirror a committed SQLite write into the vector index (caller holds write_lock)."""
        if result.removed_chunk_ids:
            self.index.remove(np.asarray(result.removed_chunk_ids, dtype=np.int64), result.seq)
        if result.added_chunk_ids:
            self.index.add(np.asarray(result.added_chunk_ids, dtype=np.int64),
                           result.added_vectors, result.seq)
        self.unsaved += len(result.removed_chunk_ids) + len(result.added_chunk_ids)
        if self.unsaved >= self.settings.snapshot_every:
            self.save_snapshot()

    def remove_chunks(self, chunk_ids: list[int], seq: int) -> None:
        if chunk_ids:
            self.index.remove(np.asarray(chunk_ids, dtype=np.int64), seq)
        self.unsaved += len(chunk_ids)
        if self.unsaved >= self.settings.snapshot_every:
            self.save_snapshot()

    def save_snapshot(self) -> None:
        with self.write_lock:
            self.index.save(self.path / SNAPSHOT_FILE)
            self.store.compact_changes(self.index.seq)
            self.unsaved = 0

    def close(self) -> None:
        with self.write_lock:
            if self.unsaved:
                self.save_snapshot()
            self.store.close()

    def destroy(self) -> None:
        """Close and delete the namespace's files."""
        with self.write_lock:
            self.store.close()
            shutil.rmtree(self.path, ignore_errors=True)

    def info(self) -> dict[str, Any]:
        counts = self.store.counts()
        return {"name": self.name, **counts, "vector_index": self.index.kind,
                "index_recall": self.index.measured_recall}


def _load_or_rebuild(
    store: SqliteStore, snapshot: Path, dim: int, settings: IndexSettings
) -> tuple[FaissVectorIndex, bool]:
    try:
        index = FaissVectorIndex.load(snapshot, dim, approximate_above=settings.approximate_above,
                                      target_recall=settings.approximate_recall)
        touched, last_seq = store.changes_since(index.seq)
        if index.seq > last_seq:
            raise SnapshotError(f"snapshot holds seq {index.seq}, past the store's {last_seq}")
        if touched:
            _catch_up(store, index, touched, last_seq)
        expected = store.counts()["chunks"]
        if len(index) != expected:
            raise SnapshotError(f"snapshot holds {len(index)} vectors, the store {expected}")
        return index, bool(touched)
    except SnapshotError as exc:
        if snapshot.exists():
            log.warning("rebuilding vector index of %s: %s", snapshot.parent.name, exc)
        return _rebuild(store, dim, settings), True


def _catch_up(store: SqliteStore, index: FaissVectorIndex, touched: set[int], seq: int) -> None:
    ids = np.fromiter(touched, dtype=np.int64, count=len(touched))
    present, vectors = store.existing_chunk_vectors(ids.tolist())
    gone = np.setdiff1d(ids, present)
    if len(gone):
        index.remove(gone, seq)
    if len(present):
        index.add(present, vectors, seq)


def _rebuild(store: SqliteStore, dim: int, settings: IndexSettings) -> FaissVectorIndex:
    _, last_seq = store.changes_since(0)
    index = FaissVectorIndex(dim, approximate_above=settings.approximate_above, seq=last_seq,
                             target_recall=settings.approximate_recall)
    for ids, vectors in store.all_vectors():
        index.add(ids, vectors, last_seq)
    return index
