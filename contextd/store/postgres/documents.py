"""Documents, chunks, their vectors, lexical search and the change log of one namespace in
PostgreSQL: `contextd.store.protocols.DocumentStore`.

Writers of a namespace serialise on its change-log head row (`SELECT ... FOR UPDATE`), so
sequence numbers follow commit order across replicas and a cache keyed by `last_seq()` is
never stale. Lexical search is bm25 computed in SQL from the stored tsvectors (term counts
per column, document length, document frequencies), the formula SQLite's FTS5 uses, so both
backends rank alike.

    >>> store = PostgresDocumentStore(db, "ns_1")  # doctest: +SKIP
    >>> store.lexical_search('"olive"', 10)  # doctest: +SKIP
    [(3, 1.92)]
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from psycopg import sql

from contextd.store.filters import Filter
from contextd.store.idempotency import IdempotencyKey
from contextd.store.postgres.database import Database
from contextd.store.postgres.filters import compile_postgres
from contextd.store.postgres.idempotency import check_unused, store_response, stored_response
from contextd.store.postgres.lexemes import LexemeCache, match_terms, tsquery_text
from contextd.store.records import ChunkRow, DocumentWrite, WriteResult

# FTS5's bm25 constants.
BM25_K1 = 1.2
BM25_B = 0.75


def as_vector(value: Any) -> np.ndarray:
    """A pgvector value (a `Vector`, or an array in older releases) as float32."""
    if hasattr(value, "to_numpy"):
        value = value.to_numpy()
    return np.asarray(value, dtype=np.float32)


class PostgresDocumentStore:
    """`DocumentStore` over schema `schema` of `db`."""

    def __init__(self, db: Database, schema: str) -> None:
        self.db = db
        self.schema = schema
        self._s = sql.Identifier(schema)
        self._lexemes = LexemeCache()
        # Keyed by the change-log sequence they were read at: any replica's write moves it.
        self._stats: tuple[int, int, float] = (-1, 0, 0.0)  # seq, chunks, mean length
        self._df: tuple[int, dict[str, int]] = (-1, {})

    def _q(self, text: str) -> sql.Composed:
        """`text` with `{s}` as this namespace's schema."""
        return sql.SQL(text).format(s=self._s)

    # ----------------------------------------------------------------- meta

    def get_meta(self, key: str) -> str | None:
        with self.db.connection() as conn:
            row = conn.execute(self._q("SELECT value FROM {s}.meta WHERE key = %s"),
                               (key,)).fetchone()
        return row[0] if row else None

    def add_meta(self, key: str, value: str) -> None:
        """Set `key` unless it is set already (the first of several replicas wins)."""
        with self.db.connection() as conn:
            conn.execute(self._q("INSERT INTO {s}.meta(key, value) VALUES (%s, %s) "
                                 "ON CONFLICT (key) DO NOTHING"), (key, value))

    def set_meta(self, key: str, value: str) -> None:
        with self.db.connection() as conn:
            conn.execute(self._q("INSERT INTO {s}.meta(key, value) VALUES (%s, %s) "
                                 "ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
                         (key, value))

    # ----------------------------------------------------------------- documents

    def content_hashes(self, ids: Sequence[str]) -> dict[str, str]:
        with self.db.connection() as conn:
            rows = conn.execute(self._q(
                "SELECT id, content_hash FROM {s}.documents WHERE id = ANY(%s)"),
                (list(ids),)).fetchall()
        return dict(rows)

    def write_documents(self, docs: Sequence[DocumentWrite],
                        idempotency: IdempotencyKey | None = None,
                        response: dict[str, Any] | None = None) -> WriteResult:
        """Replace the given documents and their chunks (and vectors) in one transaction;
        with an idempotency key, `response` is stored in it too (`Replayed` if the key has
        one)."""
        now = time.time()
        removed: list[int] = []
        added: list[int] = []
        vectors: list[np.ndarray] = []
        with self.db.connection() as conn:
            check_unused(conn, self.schema, idempotency)
            seq_before = self._lock_head(conn)
            for doc in docs:
                removed.extend(self._remove_chunks(conn, doc.id))
                conn.execute(self._q(
                    "INSERT INTO {s}.documents(id, title, text, metadata, content_hash, tokens, "
                    "created_at, updated_at) VALUES (%s, %s, %s, %s::jsonb, %s, %s, %s, %s) "
                    "ON CONFLICT (id) DO UPDATE SET title = excluded.title, "
                    "text = excluded.text, metadata = excluded.metadata, "
                    "content_hash = excluded.content_hash, tokens = excluded.tokens, "
                    "updated_at = excluded.updated_at"),
                    (doc.id, doc.title, doc.text, _json(doc.metadata), doc.content_hash,
                     doc.tokens, now, now))
                if not doc.chunks:
                    continue
                ids = [r[0] for r in conn.execute(self._q(
                    "SELECT nextval(pg_get_serial_sequence(%s, 'id')) "
                    "FROM generate_series(1, %s)"),
                    (f'"{self.schema}".chunks', len(doc.chunks))).fetchall()]
                with conn.cursor() as cur:
                    cur.executemany(self._q(
                        "INSERT INTO {s}.chunks(id, doc_id, ord, title, text, tokens) "
                        "VALUES (%s, %s, %s, %s, %s, %s)"),
                        [(cid, doc.id, c.ord, c.title, c.text, c.tokens)
                         for cid, c in zip(ids, doc.chunks, strict=True)])
                    cur.executemany(self._q(
                        "INSERT INTO {s}.vectors(id, embedding) VALUES (%s, %s)"),
                        [(cid, as_vector(c.embedding)) for cid, c in
                         zip(ids, doc.chunks, strict=True)])
                added.extend(ids)
                vectors.extend(c.embedding for c in doc.chunks)
            seq = self._log(conn, seq_before, removed, added)
            if idempotency is not None:
                store_response(conn, self.schema, idempotency, response or {})
        matrix = np.vstack(vectors).astype(np.float32) if vectors else np.zeros((0, 0), np.float32)
        return WriteResult(removed, added, matrix, seq, seq_before)

    def stored_response(self, idempotency: IdempotencyKey) -> dict[str, Any] | None:
        """The response already stored under `idempotency`, or None."""
        with self.db.connection() as conn:
            return stored_response(conn, self.schema, idempotency, lock=False)

    def remember(self, idempotency: IdempotencyKey, response: dict[str, Any]) -> None:
        """Store the response of a request that wrote nothing (`Replayed` if the key has one),
        so its repeats answer the same."""
        with self.db.connection() as conn:
            check_unused(conn, self.schema, idempotency)
            store_response(conn, self.schema, idempotency, response)

    def delete_document(self, doc_id: str) -> WriteResult | None:
        """Remove a document, its chunks and vectors, or None if absent."""
        with self.db.connection() as conn:
            seq_before = self._lock_head(conn)
            if conn.execute(self._q("SELECT 1 FROM {s}.documents WHERE id = %s"),
                            (doc_id,)).fetchone() is None:
                return None
            removed = self._remove_chunks(conn, doc_id)
            conn.execute(self._q("DELETE FROM {s}.documents WHERE id = %s"), (doc_id,))
            seq = self._log(conn, seq_before, removed, [])
        return WriteResult(removed, [], np.zeros((0, 0), np.float32), seq, seq_before)

    def _lock_head(self, conn: Any) -> int:
        """The log's seq, holding the namespace's write lock until the transaction ends."""
        return int(conn.execute(self._q("SELECT seq FROM {s}.head FOR UPDATE")).fetchone()[0])

    def _remove_chunks(self, conn: Any, doc_id: str) -> list[int]:
        ids = [r[0] for r in conn.execute(self._q(
            "DELETE FROM {s}.chunks WHERE doc_id = %s RETURNING id"), (doc_id,)).fetchall()]
        if ids:
            conn.execute(self._q("DELETE FROM {s}.vectors WHERE id = ANY(%s)"), (ids,))
        return ids

    def _log(self, conn: Any, seq: int, removed: list[int], added: list[int]) -> int:
        rows = [("del", cid) for cid in removed] + [("add", cid) for cid in added]
        if not rows:
            return seq
        with conn.cursor() as cur:
            cur.executemany(self._q("INSERT INTO {s}.changes(seq, op, chunk_id) "
                                    "VALUES (%s, %s, %s)"),
                            [(seq + n, op, cid) for n, (op, cid) in enumerate(rows, start=1)])
        seq += len(rows)
        conn.execute(self._q("UPDATE {s}.head SET seq = %s"), (seq,))
        return seq

    def get_document(self, doc_id: str) -> dict[str, Any] | None:
        with self.db.connection() as conn:
            row = conn.execute(self._q(
                "SELECT d.id, d.title, d.text, d.metadata, d.tokens, d.updated_at, "
                "(SELECT count(*) FROM {s}.chunks c WHERE c.doc_id = d.id) "
                "FROM {s}.documents d WHERE d.id = %s"), (doc_id,)).fetchone()
        if row is None:
            return None
        keys = ("id", "title", "text", "metadata", "tokens", "updated_at", "chunks")
        return dict(zip(keys, row, strict=True))

    def counts(self) -> dict[str, int]:
        with self.db.connection() as conn:
            row = conn.execute(self._q(
                "SELECT (SELECT count(*) FROM {s}.documents), (SELECT count(*) FROM {s}.chunks), "
                "(SELECT count(*) FROM {s}.sessions)")).fetchone()
        return {"documents": row[0], "chunks": row[1], "sessions": row[2]}

    # ----------------------------------------------------------------- chunks

    def chunks(self, ids: Sequence[int]) -> dict[int, ChunkRow]:
        with self.db.connection() as conn:
            rows = conn.execute(self._q(
                "SELECT c.id, c.doc_id, c.ord, c.title, c.text, c.tokens, d.metadata, "
                "v.embedding FROM {s}.chunks c JOIN {s}.documents d ON d.id = c.doc_id "
                "JOIN {s}.vectors v ON v.id = c.id WHERE c.id = ANY(%s)"),
                ([int(i) for i in ids],)).fetchall()
        return {r[0]: ChunkRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], as_vector(r[7]))
                for r in rows}

    def chunk_documents(self, ids: set[int] | Sequence[int]) -> dict[int, str]:
        """Document id of each chunk id that still exists."""
        with self.db.connection() as conn:
            return dict(conn.execute(self._q(
                "SELECT id, doc_id FROM {s}.chunks WHERE id = ANY(%s)"),
                ([int(i) for i in ids],)).fetchall())

    def chunk_places(self, ids: set[int] | Sequence[int]) -> dict[int, tuple[str, int]]:
        """(document id, chunk number) of each chunk id that still exists."""
        with self.db.connection() as conn:
            return {r[0]: (r[1], r[2]) for r in conn.execute(self._q(
                "SELECT id, doc_id, ord FROM {s}.chunks WHERE id = ANY(%s)"),
                ([int(i) for i in ids],))}

    def filtered_chunk_ids(self, filters: Filter | dict[str, Any]) -> np.ndarray:
        where, params = compile_postgres(filters)
        with self.db.connection() as conn:
            rows = conn.execute(self._q(
                "SELECT c.id FROM {s}.chunks c JOIN {s}.documents d ON d.id = c.doc_id "
                "WHERE " + where), params).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    # ----------------------------------------------------------------- lexical

    def lexical_search(self, match: str, k: int, filters: Filter | dict[str, Any] | None = None,
                       title_weight: float = 1.0) -> list[tuple[int, float]]:
        """(chunk id, bm25 score; higher is better) for the terms of an FTS5 MATCH expression.

        FTS5's bm25: per query term, idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len /
        mean len)), tf counting title occurrences `title_weight` times."""
        terms = match_terms(match)
        if not terms:
            return []
        with self.db.connection() as conn:
            lexemes = self._lexemes.distinct(conn, terms)
            if not lexemes:
                return []
            total, mean_len = self._chunk_stats(conn)
            df = self._document_frequencies(conn, lexemes)
            idf = [max(1e-6, math.log((total - df[lx] + 0.5) / (df[lx] + 0.5)))
                   for lx in lexemes]
            where, params = compile_postgres(filters)
            rows = conn.execute(self._q(
                "WITH q(lexeme, idf) AS (SELECT * FROM unnest(%s::text[], %s::float8[])), "
                "hits AS (SELECT c.id, c.tsv, c.ntokens FROM {s}.chunks c "
                "JOIN {s}.documents d ON d.id = c.doc_id "
                "WHERE c.tsv @@ %s::tsquery AND " + where + ") "
                "SELECT h.id, sum(q.idf * x.tf * %s / (x.tf + %s * (%s + %s * h.ntokens / %s))) "
                "AS score FROM hits h CROSS JOIN LATERAL ("
                "SELECT u.lexeme, %s * cardinality(array_positions(u.weights, 'A')) "
                "+ cardinality(array_positions(u.weights, 'B')) AS tf "
                "FROM unnest(h.tsv) AS u) x JOIN q ON q.lexeme = x.lexeme "
                "GROUP BY h.id ORDER BY score DESC, h.id LIMIT %s"),
                [lexemes, idf, tsquery_text(lexemes), *params, BM25_K1 + 1, BM25_K1,
                 1 - BM25_B, BM25_B, max(mean_len, 1e-9), float(title_weight), k]).fetchall()
        return [(int(r[0]), float(r[1])) for r in rows]

    def _chunk_stats(self, conn: Any) -> tuple[int, float]:
        seq = self._last_seq(conn)
        cached_seq, total, mean_len = self._stats
        if cached_seq != seq:
            row = conn.execute(self._q(
                "SELECT count(*), coalesce(avg(ntokens), 0) FROM {s}.chunks")).fetchone()
            total, mean_len = int(row[0]), float(row[1])
            self._stats = (seq, total, mean_len)
        return total, mean_len

    def _document_frequencies(self, conn: Any, lexemes: Sequence[str]) -> dict[str, int]:
        seq = self._last_seq(conn)
        cached_seq, known = self._df
        if cached_seq != seq or len(known) > 100_000:
            known = {}
            self._df = (seq, known)
        for lx in lexemes:
            if lx not in known:
                known[lx] = int(conn.execute(self._q(
                    "SELECT count(*) FROM {s}.chunks WHERE tsv @@ %s::tsquery"),
                    (tsquery_text([lx]),)).fetchone()[0])
        return {lx: known[lx] for lx in lexemes}

    def term_documents(self, term: str) -> int:
        """How many chunks contain `term` (after stemming); cached per change-log sequence."""
        with self.db.connection() as conn:
            found = self._lexemes.lexemes(conn, [term])[term]
            if not found:
                return 0
            if len(found) == 1:
                return self._document_frequencies(conn, found)[found[0]]
            return int(conn.execute(self._q(
                "SELECT count(*) FROM {s}.chunks WHERE tsv @@ %s::tsquery"),
                (" & ".join(tsquery_text([lx]) for lx in found),)).fetchone()[0])

    def chunk_count(self) -> int:
        """Chunks in the namespace; cached per change-log sequence."""
        with self.db.connection() as conn:
            return self._chunk_stats(conn)[0]

    # ----------------------------------------------------------------- change log

    def last_seq(self) -> int:
        """The change log's latest sequence number, as committed by any replica."""
        with self.db.connection() as conn:
            return self._last_seq(conn)

    def generation(self) -> str:
        """The id this namespace was created with (see `DocumentStore.generation`)."""
        return self.get_meta("generation") or ""

    def _last_seq(self, conn: Any) -> int:
        return int(conn.execute(self._q("SELECT seq FROM {s}.head")).fetchone()[0])

    def changes_since(self, seq: int) -> tuple[set[int], int] | None:
        """Chunk ids touched after `seq` and the last seq, read in one snapshot; None when the
        log was compacted past `seq`."""
        with self.db.connection() as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            last, compacted = conn.execute(self._q(
                "SELECT seq, compacted_through FROM {s}.head")).fetchone()
            if compacted > seq:
                return None
            touched = {r[0] for r in conn.execute(self._q(
                "SELECT DISTINCT chunk_id FROM {s}.changes WHERE seq > %s"), (seq,))}
        return touched, int(last)

    def existing_chunk_vectors(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        with self.db.connection() as conn:
            rows = conn.execute(self._q(
                "SELECT v.id, v.embedding FROM {s}.vectors v JOIN {s}.chunks c ON c.id = v.id "
                "WHERE v.id = ANY(%s)"), ([int(i) for i in ids],)).fetchall()
        keys = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vectors = (np.vstack([as_vector(r[1]) for r in rows]) if rows
                   else np.zeros((0, 0), np.float32))
        return keys, vectors

    def all_vectors(self, batch: int = 50_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) of every chunk, in batches of `batch`."""
        last = -1
        while True:
            with self.db.connection() as conn:
                rows = conn.execute(self._q(
                    "SELECT v.id, v.embedding FROM {s}.vectors v JOIN {s}.chunks c "
                    "ON c.id = v.id WHERE v.id > %s ORDER BY v.id LIMIT %s"),
                    (last, batch)).fetchall()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            yield ids, np.vstack([as_vector(r[1]) for r in rows])
            last = int(ids[-1])

    def compact_changes(self, upto: int) -> None:
        """Forget change-log rows up to `upto` and record how far the log was compacted."""
        with self.db.connection() as conn:
            compacted = conn.execute(self._q(
                "SELECT compacted_through FROM {s}.head FOR UPDATE")).fetchone()[0]
            if compacted >= upto:
                return
            conn.execute(self._q("DELETE FROM {s}.changes WHERE seq <= %s"), (upto,))
            conn.execute(self._q("UPDATE {s}.head SET compacted_through = %s"), (upto,))

    def close(self) -> None:
        """Nothing to release: connections belong to the shared pool."""


def _json(value: Any) -> str:
    import json

    return json.dumps(value)
