"""Namespaces in PostgreSQL: a catalog row and a schema each, opened by any replica.

A namespace is its own schema rather than a column of shared tables: its HNSW graph then
holds only its own vectors, so a tenant's search never walks other tenants' rows and
filters them out afterwards (which could return fewer than top_k), every statement names
the one schema it may touch, and deleting a namespace is one `DROP SCHEMA`. Creation runs
under the catalog's advisory lock, so replicas creating one namespace at once make it once.

    >>> catalog = PostgresCatalog(Database("postgresql://localhost/contextd"))  # doctest: +SKIP
    >>> ns = catalog.open("tenant-a", dim=384, model_id="m", create=True)  # doctest: +SKIP
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

from contextd.errors import InvalidRequest
from contextd.store.postgres.database import Database
from contextd.store.postgres.documents import PostgresDocumentStore
from contextd.store.postgres.hnsw import HnswParams, hnsw_indexes
from contextd.store.postgres.migrations import CATALOG_LOCK, migrate_namespace, schema_name
from contextd.store.postgres.sessions import PostgresSessionStore
from contextd.store.postgres.vectors import PgVectorIndex
from contextd.store.records import ChunkRow, WriteResult, keep_token_encoding


@dataclass
class PostgresNamespace:
    """`contextd.store.protocols.NamespaceHandle` of one namespace's schema."""

    name: str
    schema: str
    store: PostgresDocumentStore
    sessions: PostgresSessionStore
    index: PgVectorIndex
    db: Database
    # Orders this process's writes; writers of all replicas serialise in the database.
    write_lock: threading.RLock = field(default_factory=threading.RLock)

    def ensure_current(self) -> None:
        """Nothing to catch up: searches read the committed rows themselves."""

    def chunk_places(self, ids: Collection[int]) -> dict[int, tuple[str, int]]:
        """(document id, chunk number) of each of `ids` that exists, read each time: another
        replica may have deleted and created this namespace again, numbering from 1."""
        return self.store.chunk_places(ids)

    def chunk_rows(self, ids: Sequence[int]) -> dict[int, ChunkRow]:
        """The row of each of `ids` that exists, read each time (as `chunk_places`)."""
        return self.store.chunks(ids)

    def lexical_index(self) -> None:
        """None: bm25 is computed in SQL (`PostgresDocumentStore.lexical_search`)."""
        return None

    def apply(self, result: WriteResult) -> None:
        """Nothing to mirror: the write stored the vectors in its own transaction."""

    def save_snapshot(self) -> None:
        """Nothing to snapshot: the database is durable."""

    def info(self) -> dict[str, Any]:
        return {"name": self.name, **self.store.counts(), "vector_index": self.index.kind,
                "index_recall": None, "index_params": self.index_params()}

    def index_params(self) -> dict[str, int]:
        """What the namespace's HNSW index was built with, and the least ef_search its
        searches use (this process's `hnsw_ef_search`)."""
        with self.db.connection() as conn:
            built = [b for b in hnsw_indexes(conn, self.schema) if b.valid]
        params: dict[str, int] = {}
        if built:  # two only while a rebuild is between its build and its drop
            params = {"m": built[-1].m, "ef_construction": built[-1].ef_construction}
        return {**params, "ef_search": self.index.params.ef_search}

    def close(self) -> None:
        """Nothing to release: the connection pool belongs to the catalog."""

    def destroy(self) -> None:
        """Drop the namespace's schema and catalog row, in one transaction."""
        with self.db.connection() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (CATALOG_LOCK,))
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(self.schema)))
            conn.execute("DELETE FROM contextd.namespaces WHERE name = %s", (self.name,))


class PostgresCatalog:
    """The namespaces of one database."""

    def __init__(self, db: Database, hnsw: HnswParams | None = None) -> None:
        self.db = db
        # New namespaces' HNSW build parameters and every search's least ef_search.
        self.hnsw = hnsw or HnswParams()

    def names(self) -> list[str]:
        with self.db.connection() as conn:
            return [r[0] for r in conn.execute(
                "SELECT name FROM contextd.namespaces WHERE schema_version > 0 ORDER BY name")]

    def exists(self, name: str) -> bool:
        with self.db.connection() as conn:
            return conn.execute("SELECT 1 FROM contextd.namespaces WHERE name = %s "
                                "AND schema_version > 0", (name,)).fetchone() is not None

    def open(self, name: str, dim: int, model_id: str, *, create: bool = True,
             token_encoding: str | None = None) -> PostgresNamespace | None:
        """Namespace `name`, created (schema, migrations, embedding model) when missing and
        `create`; its schema is migrated to the latest step either way. None if absent."""
        with self.db.connection() as conn:
            row = conn.execute("SELECT id FROM contextd.namespaces WHERE name = %s",
                               (name,)).fetchone()
            if row is None:
                if not create:
                    return None
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (CATALOG_LOCK,))
                conn.execute("INSERT INTO contextd.namespaces(name, created_at) "
                             "VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
                             (name, time.time()))
                row = conn.execute("SELECT id FROM contextd.namespaces WHERE name = %s",
                                   (name,)).fetchone()
            migrate_namespace(conn, row[0], dim, self.hnsw)
        schema = schema_name(row[0])
        store = PostgresDocumentStore(self.db, schema)
        stored_model = store.get_meta("embedding_model")
        if stored_model is None:
            store.set_meta("embedding_model", model_id)
            store.set_meta("embedding_dim", str(dim))
        elif stored_model != model_id:
            raise InvalidRequest(
                f"namespace {name!r} was indexed with embedding model {stored_model!r}, not "
                f"{model_id!r}: open it with the same model, or re-ingest into a new namespace")
        keep_token_encoding(store, name, token_encoding)
        store.add_meta("generation", uuid.uuid4().hex)  # only the first opener's stays
        return PostgresNamespace(name, schema, store, PostgresSessionStore(self.db, schema),
                                 PgVectorIndex(self.db, schema, dim, seq_of=store.last_seq,
                                               params=self.hnsw),
                                 self.db)

    def delete(self, name: str) -> bool:
        """Drop namespace `name`; False if there was none."""
        with self.db.connection() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (CATALOG_LOCK,))
            row = conn.execute("DELETE FROM contextd.namespaces WHERE name = %s RETURNING id",
                               (name,)).fetchone()
            if row is None:
                return False
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(schema_name(row[0]))))
        return True

    def close(self) -> None:
        self.db.close()
