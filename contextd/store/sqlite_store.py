"""The SQLite source of truth of one namespace: documents, chunks, sessions, turns.

One writer connection (serialised by a lock) and one reader connection per thread; WAL lets
reads run while a write commits.

    >>> store = SqliteStore(":memory:")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from contextd.store.filters import compile_sqlite
from contextd.store.idempotency import (
    IdempotencyKey,
    check_unused,
    store_response,
    stored_response,
)
from contextd.store.records import ChunkRow, DocumentWrite, NewChunk, WriteResult
from contextd.store.schema import connect, create_schema

__all__ = ["ChunkRow", "DocumentWrite", "NewChunk", "SqliteStore", "WriteResult", "blob_vector",
           "vector_blob"]


def vector_blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()


def blob_vector(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float32)


class SqliteStore:
    def __init__(self, path: str) -> None:
        self.path = path
        self._write_lock = threading.RLock()
        self._writer = connect(path)
        with self._write_lock:
            create_schema(self._writer)
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        # Keyed by the change-log sequence they were read at, so a write by any process
        # (which moves the sequence) makes them miss instead of needing invalidation.
        self._term_counts: tuple[int, dict[str, int]] = (-1, {})
        self._chunk_count: tuple[int, int] = (-1, 0)

    # ----------------------------------------------------------------- connections

    def reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: all of it commits, or none of it does."""
        with self._write_lock:
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
            except BaseException:
                self._writer.execute("ROLLBACK")
                raise
            self._writer.execute("COMMIT")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        with self._write_lock:
            self._writer.close()

    # ----------------------------------------------------------------- meta

    def get_meta(self, key: str) -> str | None:
        row = self.reader().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as tx:
            tx.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def add_meta(self, key: str, value: str) -> None:
        """Set `key` unless it is set already (the first of several writers wins)."""
        with self.transaction() as tx:
            tx.execute("INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # ----------------------------------------------------------------- documents

    def content_hashes(self, ids: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        conn = self.reader()
        for start in range(0, len(ids), 500):
            part = list(ids[start : start + 500])
            marks = ",".join("?" * len(part))
            for doc_id, digest in conn.execute(
                f"SELECT id, content_hash FROM documents WHERE id IN ({marks})", part
            ):
                out[doc_id] = digest
        return out

    def write_documents(self, docs: Sequence[DocumentWrite],
                        idempotency: IdempotencyKey | None = None,
                        response: dict[str, Any] | None = None) -> WriteResult:
        """Replace the given documents and their chunks in one transaction; with an
        idempotency key, `response` is stored in it too (`Replayed` if the key has one)."""
        now = time.time()
        removed: list[int] = []
        added: list[int] = []
        vectors: list[np.ndarray] = []
        with self.transaction() as tx:
            check_unused(tx, idempotency)
            seq_before = self._last_seq(tx)
            for doc in docs:
                removed.extend(
                    r[0] for r in tx.execute("SELECT id FROM chunks WHERE doc_id = ?", (doc.id,))
                )
                tx.execute("DELETE FROM chunks WHERE doc_id = ?", (doc.id,))
                tx.execute(
                    "INSERT INTO documents(id, title, text, metadata, content_hash, tokens, "
                    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET title=excluded.title, text=excluded.text, "
                    "metadata=excluded.metadata, content_hash=excluded.content_hash, "
                    "tokens=excluded.tokens, updated_at=excluded.updated_at",
                    (doc.id, doc.title, doc.text, json.dumps(doc.metadata), doc.content_hash,
                     doc.tokens, now, now),
                )
                for chunk in doc.chunks:
                    cur = tx.execute(
                        "INSERT INTO chunks(doc_id, ord, title, text, tokens, embedding) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (doc.id, chunk.ord, chunk.title, chunk.text, chunk.tokens,
                         vector_blob(chunk.embedding)),
                    )
                    added.append(int(cur.lastrowid or 0))
                    vectors.append(chunk.embedding)
            if idempotency is not None:
                store_response(tx, idempotency, response or {})
            seq = self._last_seq(tx)
        matrix = np.vstack(vectors).astype(np.float32) if vectors else np.zeros((0, 0), np.float32)
        return WriteResult(removed, added, matrix, seq, seq_before)

    def stored_response(self, idempotency: IdempotencyKey) -> dict[str, Any] | None:
        """The response already stored under `idempotency`, or None."""
        return stored_response(self.reader(), idempotency)

    def remember(self, idempotency: IdempotencyKey, response: dict[str, Any]) -> None:
        """Store the response of a request that wrote nothing (`Replayed` if the key has one),
        so its repeats answer the same."""
        with self.transaction() as tx:
            check_unused(tx, idempotency)
            store_response(tx, idempotency, response)

    def delete_document(self, doc_id: str) -> WriteResult | None:
        """Remove a document and its chunks, or None if absent."""
        with self.transaction() as tx:
            if tx.execute("SELECT 1 FROM documents WHERE id = ?", (doc_id,)).fetchone() is None:
                return None
            seq_before = self._last_seq(tx)
            removed = [r[0] for r in tx.execute("SELECT id FROM chunks WHERE doc_id = ?",
                                                (doc_id,))]
            tx.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
            tx.execute("DELETE FROM documents WHERE id = ?", (doc_id,))
            return WriteResult(removed, [], np.zeros((0, 0), np.float32), self._last_seq(tx),
                               seq_before)

    def get_document(self, doc_id: str) -> dict[str, Any] | None:
        row = self.reader().execute(
            "SELECT d.id, d.title, d.text, d.metadata, d.tokens, d.updated_at, "
            "(SELECT count(*) FROM chunks c WHERE c.doc_id = d.id) "
            "FROM documents d WHERE d.id = ?",
            (doc_id,),
        ).fetchone()
        if row is None:
            return None
        keys = ("id", "title", "text", "metadata", "tokens", "updated_at", "chunks")
        out = dict(zip(keys, row, strict=True))
        out["metadata"] = json.loads(out["metadata"])
        return out

    def counts(self) -> dict[str, int]:
        conn = self.reader()
        return {
            "documents": conn.execute("SELECT count(*) FROM documents").fetchone()[0],
            "chunks": conn.execute("SELECT count(*) FROM chunks").fetchone()[0],
            "sessions": conn.execute("SELECT count(*) FROM sessions").fetchone()[0],
        }

    # ----------------------------------------------------------------- chunks

    def chunks(self, ids: Sequence[int]) -> dict[int, ChunkRow]:
        out: dict[int, ChunkRow] = {}
        conn = self.reader()
        for start in range(0, len(ids), 500):
            part = [int(i) for i in ids[start : start + 500]]
            marks = ",".join("?" * len(part))
            for row in conn.execute(
                "SELECT c.id, c.doc_id, c.ord, c.title, c.text, c.tokens, d.metadata, c.embedding "
                f"FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE c.id IN ({marks})",
                part,
            ):
                out[row[0]] = ChunkRow(row[0], row[1], row[2], row[3], row[4], row[5],
                                       json.loads(row[6]), blob_vector(row[7]))
        return out

    def chunk_documents(self, ids: set[int] | Sequence[int]) -> dict[int, str]:
        """Document id of each chunk id that still exists."""
        out: dict[int, str] = {}
        ids = list(ids)
        conn = self.reader()
        for start in range(0, len(ids), 500):
            part = [int(i) for i in ids[start : start + 500]]
            marks = ",".join("?" * len(part))
            out.update(conn.execute(
                f"SELECT id, doc_id FROM chunks WHERE id IN ({marks})", part).fetchall())
        return out

    def chunk_places(self, ids: set[int] | Sequence[int]) -> dict[int, tuple[str, int]]:
        """(document id, chunk number) of each chunk id that still exists."""
        out: dict[int, tuple[str, int]] = {}
        ids = list(ids)
        conn = self.reader()
        for start in range(0, len(ids), 500):
            part = [int(i) for i in ids[start : start + 500]]
            marks = ",".join("?" * len(part))
            out.update((r[0], (r[1], r[2])) for r in conn.execute(
                f"SELECT id, doc_id, ord FROM chunks WHERE id IN ({marks})", part))
        return out

    def chunk_texts(self, ids: Sequence[int]) -> list[tuple[int, str | None, str]]:
        """(chunk id, title, text) of each of `ids` that still exists, for the lexical index."""
        out: list[tuple[int, str | None, str]] = []
        conn = self.reader()
        for start in range(0, len(ids), 500):
            part = [int(i) for i in ids[start : start + 500]]
            marks = ",".join("?" * len(part))
            out.extend(conn.execute(
                f"SELECT id, title, text FROM chunks WHERE id IN ({marks})", part))
        return out

    def chunk_ids(self) -> np.ndarray:
        """Every chunk id, ascending."""
        rows = self.reader().execute("SELECT id FROM chunks ORDER BY id").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def filtered_chunk_ids(self, filters: dict[str, Any]) -> np.ndarray:
        sql, params = compile_sqlite(filters)
        rows = self.reader().execute(
            f"SELECT c.id FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE {sql}", params
        ).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def term_documents(self, term: str) -> int:
        """How many chunks contain `term` (after stemming); cached per change-log sequence."""
        seq = self.last_seq()
        cached_seq, counts = self._term_counts
        if cached_seq != seq or len(counts) > 100_000:
            counts = {}
            self._term_counts = (seq, counts)
        count = counts.get(term)
        if count is None:
            count = self.reader().execute(
                "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?", (f'"{term}"',)
            ).fetchone()[0]
            counts[term] = count
        return int(count)

    def chunk_count(self) -> int:
        """Chunks in the namespace; cached per change-log sequence."""
        seq = self.last_seq()
        cached_seq, count = self._chunk_count
        if cached_seq != seq:
            count = int(self.reader().execute("SELECT count(*) FROM chunks").fetchone()[0])
            self._chunk_count = (seq, count)
        return count

    def last_seq(self) -> int:
        """The change log's latest sequence number, as committed by any process."""
        return self._last_seq(self.reader())

    def generation(self) -> str:
        """The id this namespace was created with (see `DocumentStore.generation`). Read from
        the file each time: a thread's reader opens the path, which may hold a newer one."""
        row = self.reader().execute(
            "SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return str(row[0]) if row else ""

    def lexical_search(
        self, match: str, k: int, filters: dict[str, Any] | None = None,
        title_weight: float = 1.0,
    ) -> list[tuple[int, float]]:
        """(chunk id, bm25 score; higher is better) for an FTS5 MATCH expression."""
        if not match:
            return []
        sql, params = compile_sqlite(filters)
        restrict = "" if sql == "1" else (
            "AND f.rowid IN (SELECT c.id FROM chunks c JOIN documents d ON d.id = c.doc_id "
            f"WHERE {sql})"
        )
        rows = self.reader().execute(
            f"SELECT f.rowid, bm25(chunks_fts, ?, 1.0) AS s FROM chunks_fts f "
            f"WHERE chunks_fts MATCH ? {restrict} ORDER BY s LIMIT ?",
            [title_weight, match, *params, k],
        ).fetchall()
        # FTS5's bm25() is negated so that ascending order is best first.
        return [(int(r[0]), -float(r[1])) for r in rows]

    def all_vectors(self, batch: int = 50_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) of every chunk, in batches, for rebuilding the vector index."""
        conn = self.reader()
        last = -1
        while True:
            rows = conn.execute(
                "SELECT id, embedding FROM chunks WHERE id > ? ORDER BY id LIMIT ?", (last, batch)
            ).fetchall()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            yield ids, np.vstack([blob_vector(r[1]) for r in rows])
            last = int(ids[-1])

    def changes_since(self, seq: int) -> tuple[set[int], int] | None:
        """Chunk ids touched after `seq` and the last seq, read in one snapshot of the store;
        None when the log no longer holds every change after `seq` (another process saved a
        newer snapshot and compacted the log: load that snapshot instead)."""
        conn = self.reader()
        conn.execute("BEGIN")
        try:
            row = conn.execute(
                "SELECT value FROM meta WHERE key = 'changes_compacted_through'").fetchone()
            if row is not None and int(row[0]) > seq:
                return None
            touched = {r[0] for r in conn.execute(
                "SELECT DISTINCT chunk_id FROM changes WHERE seq > ?", (seq,))}
            return touched, self._last_seq(conn)
        finally:
            conn.execute("COMMIT")

    def existing_chunk_vectors(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        rows = {i: r.embedding for i, r in self.chunks(list(ids)).items()}
        keys = np.fromiter(rows.keys(), dtype=np.int64, count=len(rows))
        vectors = np.vstack(list(rows.values())) if rows else np.zeros((0, 0), np.float32)
        return keys, vectors

    def compact_changes(self, upto: int) -> None:
        """Forget change-log rows a saved snapshot already holds, and record how far the log
        was compacted, so a process whose index is older reloads the snapshot instead."""
        with self.transaction() as tx:
            row = tx.execute(
                "SELECT value FROM meta WHERE key = 'changes_compacted_through'").fetchone()
            if row is not None and int(row[0]) >= upto:
                return
            tx.execute("DELETE FROM changes WHERE seq <= ?", (upto,))
            tx.execute("INSERT OR REPLACE INTO meta(key, value) VALUES "
                       "('changes_compacted_through', ?)", (str(upto),))

    @staticmethod
    def _last_seq(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'changes'").fetchone()
        return int(row[0]) if row else 0
