"""One namespace on disk: its SQLite source of truth and its derived FAISS snapshot.

The snapshot is loaded at open and caught up from the change log, or rebuilt from SQLite when
it is missing or does not match. Writes go to SQLite first (durable on return), then to the
index under the namespace's write lock, so the index applies changes in commit order.

Several processes may share a data directory (a server and a CLI ingest, or several
servers): every search first checks the change log's latest sequence number (one cheap
query) and catches the index up to it, so each process sees every committed write; a
process writes a snapshot only when it is newer than the one on disk, so snapshots never go
backwards.

    >>> ns = NamespaceData.open(Path("indexes/default"), dim=384, model_id="m")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from contextd.errors import InvalidRequest
from contextd.store.files import file_lock, private_dir
from contextd.store.lexical_index import DEFAULT_MAX_POSTINGS, Bm25Index
from contextd.store.places import ROWS_LIMIT, ChunkMemo, Place
from contextd.store.records import ChunkRow, keep_token_encoding
from contextd.store.sessions import SqliteSessionStore
from contextd.store.sqlite_store import SqliteStore, WriteResult
from contextd.store.vector_index import FaissVectorIndex, SnapshotError, snapshot_seq

log = logging.getLogger("contextd.store")

DB_FILE = "store.sqlite3"
SNAPSHOT_FILE = "vectors.faiss"
SNAPSHOT_LOCK = "vectors.lock"
# What FaissVectorIndex.save names its temp files: .vectors.faiss.<pid>.<thread>.tmp
SNAPSHOT_TEMP_GLOB = f".{SNAPSHOT_FILE}.*.tmp"
# A namespace folder being removed; never a namespace name (those start with a letter or digit).
TRASH_PREFIX = ".deleted-"


@dataclass
class IndexSettings:
    approximate_above: int = 200_000
    snapshot_every: int = 5_000  # unsaved chunk changes that trigger a snapshot write
    approximate_recall: float = 0.98  # recall@10 each approximate build must measure
    lexical_index: bool = True  # bm25 from an in-memory index (False: from FTS5)
    lexical_max_postings: int = DEFAULT_MAX_POSTINGS


def _row_weight(row: ChunkRow) -> int:
    """About what a remembered row holds in memory, in bytes: its text, its vector and ~300
    bytes of Python objects (the row, its strings, its metadata)."""
    return len(row.text) + len(row.title or "") + row.embedding.nbytes + 300


@dataclass
class NamespaceData:
    name: str
    path: Path
    store: SqliteStore
    sessions: SqliteSessionStore
    index: FaissVectorIndex
    settings: IndexSettings
    write_lock: threading.RLock = field(default_factory=threading.RLock)
    unsaved: int = 0
    lexical: Bm25Index | None = None
    lexical_lock: threading.Lock = field(default_factory=threading.Lock)
    _places: ChunkMemo[Place] = field(init=False, repr=False)
    # Kept as current as the vector index: every chunk it drops or re-reads is forgotten.
    _rows: ChunkMemo[ChunkRow] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._places = ChunkMemo(self.store.chunk_places)
        self._rows = ChunkMemo(self.store.chunks, ROWS_LIMIT, weigh=_row_weight)

    def chunk_places(self, ids: Collection[int]) -> dict[int, tuple[str, int]]:
        """(document id, chunk number) of each of `ids` that exists (or did: see
        `ChunkMemo`), from memory for ids read before."""
        return self._places(ids)

    def chunk_rows(self, ids: Sequence[int]) -> dict[int, ChunkRow]:
        """The row of each of `ids` that exists, from memory once read. The vector index is
        caught up first (`ensure_current`: one query when nothing changed), and catching up
        forgets every chunk written or deleted since, by any process, so a deleted chunk is
        never shown."""
        self.ensure_current()
        return self._rows(ids)

    @classmethod
    def open(cls, name: str, path: Path, dim: int, model_id: str,
             settings: IndexSettings | None = None,
             token_encoding: str | None = None) -> NamespaceData:
        settings = settings or IndexSettings()
        private_dir(path)
        _remove_stale_snapshot_temps(path)
        store = SqliteStore(str(path / DB_FILE))
        stored_model = store.get_meta("embedding_model")
        if stored_model is None:
            # One transaction: a kill between two would leave a model without its dimension.
            with store.transaction() as tx:
                tx.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                               [("embedding_model", model_id), ("embedding_dim", str(dim))])
        elif stored_model != model_id:
            store.close()
            raise InvalidRequest(
                f"namespace {name!r} was indexed with embedding model {stored_model!r}, not "
                f"{model_id!r}: open it with the same model, or re-ingest into a new namespace"
            )
        try:
            keep_token_encoding(store, name, token_encoding)
        except InvalidRequest:
            store.close()
            raise
        index, rebuilt = _load_or_rebuild(store, path / SNAPSHOT_FILE, dim, settings)
        ns = cls(name, path, store, SqliteSessionStore(store), index, settings)
        if settings.lexical_index:
            # Built from SQLite by the first lexical search (seq -1: holds nothing yet).
            ns.lexical = Bm25Index(seq=-1, max_postings=settings.lexical_max_postings)
        if rebuilt:
            ns.save_snapshot()
        return ns

    # ----------------------------------------------------------------- freshness

    def ensure_current(self) -> None:
        """Catch the vector index up to every write committed by any process.

        One query when nothing changed; otherwise the changed chunks are read back from
        SQLite (or the newer snapshot another process saved is loaded) under the write lock.
        """
        if self.store.last_seq() == self.index.seq:
            return
        with self.write_lock:
            self._catch_up()

    def _catch_up(self) -> None:
        """Bring the index to the log's latest sequence (caller holds write_lock)."""
        for _ in range(3):
            changes = self.store.changes_since(self.index.seq)
            if changes is not None:
                touched, last_seq = changes
                if touched or last_seq != self.index.seq:
                    _catch_up(self.store, self.index, touched, last_seq)
                    self._rows.forget(touched)
                return
            # The log was compacted past our index: another process saved a newer snapshot.
            self.index, _ = _load_or_rebuild(self.store, self.path / SNAPSHOT_FILE,
                                             self.index.dim, self.settings)
            self._rows.forget()
        self.index = _rebuild(self.store, self.index.dim, self.settings)

    def lexical_index(self) -> Bm25Index | None:
        """The in-memory bm25 index caught up to every write committed by any process, or
        None when the namespace answers with FTS5 (switched off, or grown past its limit).

        One query when nothing changed; otherwise the chunks the change log names are read
        back from SQLite and tokenized (all of them the first time, or when the log was
        compacted past the index)."""
        index = self.lexical
        if index is None or not index.usable:
            return None
        if self.store.last_seq() != index.seq:
            with self.lexical_lock:
                _catch_up_lexical(self.store, index)
        return index if index.usable else None

    # ----------------------------------------------------------------- writes

    def apply(self, result: WriteResult) -> None:
        """Mirror a committed SQLite write into the vector index (caller holds write_lock).

        When another process wrote since the index last caught up, the write is applied by
        catching up from the log instead, so the index never skips a change."""
        if self.index.seq != result.seq_before:
            self._catch_up()
        else:
            if result.removed_chunk_ids:
                self.index.remove(np.asarray(result.removed_chunk_ids, dtype=np.int64),
                                  result.seq)
                self._rows.forget(result.removed_chunk_ids)
            if result.added_chunk_ids:
                self.index.add(np.asarray(result.added_chunk_ids, dtype=np.int64),
                               result.added_vectors, result.seq)
            if not (result.removed_chunk_ids or result.added_chunk_ids):
                self._catch_up()
        self.unsaved += len(result.removed_chunk_ids) + len(result.added_chunk_ids)
        if self.unsaved >= self.settings.snapshot_every:
            self.save_snapshot()

    def save_snapshot(self) -> None:
        """Write the index as the namespace's snapshot unless the one on disk is as new.

        A file lock serialises snapshot writes of all processes on this directory."""
        with self.write_lock, snapshot_lock(self.path):
            path = self.path / SNAPSHOT_FILE
            on_disk = snapshot_seq(path)
            if on_disk is None or on_disk < self.index.seq:
                self.index.save(path)
                self.store.compact_changes(self.index.seq)
            self.unsaved = 0

    def close(self) -> None:
        with self.write_lock:
            if self.unsaved:
                self.save_snapshot()
            self.store.close()

    def destroy(self) -> None:
        """Close and delete the namespace's files (all of them, even across a crash)."""
        with self.write_lock:
            self.store.close()
            remove_folder(self.path)

    def info(self) -> dict[str, Any]:
        counts = self.store.counts()
        return {"name": self.name, **counts, "vector_index": self.index.kind,
                "index_recall": self.index.measured_recall}


def remove_folder(path: Path) -> None:
    """Delete a namespace folder so that a crash leaves it whole or gone, never half there:
    it is first renamed out of the namespace names (atomic, made durable), then removed.
    What a crash leaves of a renamed folder goes with `remove_leftovers`."""
    trash = path.with_name(f"{TRASH_PREFIX}{path.name}.{uuid.uuid4().hex[:8]}")
    try:
        os.rename(path, trash)
    except FileNotFoundError:
        return
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    shutil.rmtree(trash, ignore_errors=True)


def remove_leftovers(root: Path) -> None:
    """Finish the removals a crash interrupted (folders renamed by `remove_folder`)."""
    for trash in root.glob(f"{TRASH_PREFIX}*"):
        shutil.rmtree(trash, ignore_errors=True)


@contextmanager
def snapshot_lock(path: Path) -> Iterator[None]:
    """The file lock every process holds while it writes `path`'s snapshot."""
    with file_lock(path / SNAPSHOT_LOCK):
        yield


def _remove_stale_snapshot_temps(path: Path) -> None:
    """Delete temp files left by a snapshot save that was killed before its rename.

    Saves write their temp file only while holding the snapshot lock and remove it before
    letting go, so under the lock every temp file present is one no process is writing."""
    if not any(path.glob(SNAPSHOT_TEMP_GLOB)):
        return
    with snapshot_lock(path):
        for stale in path.glob(SNAPSHOT_TEMP_GLOB):
            log.warning("removing %s, left by an interrupted snapshot save", stale)
            stale.unlink(missing_ok=True)


def _load_or_rebuild(
    store: SqliteStore, snapshot: Path, dim: int, settings: IndexSettings
) -> tuple[FaissVectorIndex, bool]:
    try:
        index = FaissVectorIndex.load(snapshot, dim, approximate_above=settings.approximate_above,
                                      target_recall=settings.approximate_recall)
        changes = store.changes_since(index.seq)
        if changes is None:
            raise SnapshotError(f"snapshot holds seq {index.seq}, older than the change log")
        touched, last_seq = changes
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


def _catch_up_lexical(store: SqliteStore, index: Bm25Index, batch: int = 2_000) -> None:
    """Bring the bm25 index to the change log's latest sequence.

    The sequence is read before the chunks, so what is read may be newer than it: replaying
    the log from there later is harmless (a chunk already held is not added again, a chunk
    gone is removed). Chunk ids only grow, so every chunk to add has an id above the index's
    largest."""
    changes = store.changes_since(index.seq) if index.seq >= 0 else None
    if changes is not None:
        touched, seq = changes
        ids = np.fromiter(sorted(touched), dtype=np.int64, count=len(touched))
        rows = store.chunk_texts(ids.tolist())
        present = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        index.remove_chunks(np.setdiff1d(ids, present), seq)
        fresh = [r for r in rows if r[0] > index.max_chunk_id]
        if len(fresh) + int(index.holds(present).sum()) != len(rows):
            log.warning("lexical index of %s missed chunks; rebuilding it", store.path)
            index.reset(seq=-1)
            _catch_up_lexical(store, index, batch)
            return
    else:  # first build, or the log no longer reaches back to the index: compare the ids
        seq = store.last_seq()
        ids = store.chunk_ids()
        index.remove_chunks(np.setdiff1d(index.chunk_ids(), ids), seq)
        new = ids[ids > index.max_chunk_id].tolist()
        fresh = []
        for start in range(0, len(new), batch):
            index.add_chunks(store.chunk_texts(new[start : start + batch]), seq)
    for start in range(0, len(fresh), batch):
        index.add_chunks(fresh[start : start + batch], seq)
    index.mark(seq)


def _rebuild(store: SqliteStore, dim: int, settings: IndexSettings) -> FaissVectorIndex:
    last_seq = store.last_seq()
    index = FaissVectorIndex(dim, approximate_above=settings.approximate_above, seq=last_seq,
                             target_recall=settings.approximate_recall)
    for ids, vectors in store.all_vectors():
        index.add(ids, vectors, last_seq)
    return index
