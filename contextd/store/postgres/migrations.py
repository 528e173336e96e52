"""Versioned schema migrations, applied at start by whichever replica gets there first.

Two lists, each append-only: `CATALOG` for the `contextd` schema (the namespace catalog) and
`NAMESPACE` for each namespace's own schema. A migration runs inside a transaction holding a
transaction-scoped advisory lock, and re-reads the applied version under that lock, so
replicas starting at once apply each step exactly once and the others find it done. Never
edit a released step: add the next one.

    >>> [version for version, _ in CATALOG]
    [1]
"""

from __future__ import annotations

from typing import Any

from psycopg import sql

from contextd.store.postgres.hnsw import HnswParams, build_new_namespace_index

# Advisory lock keys: one for the catalog, one per namespace (offset by its catalog id).
CATALOG_LOCK = 0x636F6E74  # "cont"
NAMESPACE_LOCK_BASE = 0x6E730000_00000000  # "ns" << 48; + namespace id


CATALOG: list[tuple[int, str]] = [
    (1, """
CREATE TABLE contextd.namespaces (
    id             BIGSERIAL PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    schema_version INTEGER NOT NULL DEFAULT 0,
    created_at     DOUBLE PRECISION NOT NULL
);
-- The chunk text's lexemes: title weighted A, text B (the lexical scorer reads the weights).
CREATE FUNCTION contextd.chunk_tsv(title TEXT, body TEXT) RETURNS tsvector
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$ SELECT setweight(to_tsvector('english', coalesce(title, '')), 'A')
           || setweight(to_tsvector('english', body), 'B') $$;
-- Indexed tokens of a tsvector: the document length of bm25.
CREATE FUNCTION contextd.tsv_tokens(v tsvector) RETURNS INTEGER
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$ SELECT coalesce(sum(cardinality(positions)), 0)::integer FROM unnest(v) $$;
"""),
]

# Each step is a template: {s} is the namespace's schema, {dim} the vector dimension.
NAMESPACE: list[tuple[int, str]] = [
    (1, """
CREATE TABLE {s}.meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE {s}.documents (
    id           TEXT PRIMARY KEY,
    title        TEXT,
    text         TEXT NOT NULL,
    metadata     JSONB NOT NULL DEFAULT '{{}}',
    content_hash TEXT NOT NULL,
    tokens       INTEGER NOT NULL,
    created_at   DOUBLE PRECISION NOT NULL,
    updated_at   DOUBLE PRECISION NOT NULL
);
CREATE INDEX ON {s}.documents USING gin (metadata jsonb_path_ops);
CREATE TABLE {s}.chunks (
    id       BIGSERIAL PRIMARY KEY,
    doc_id   TEXT NOT NULL REFERENCES {s}.documents(id) ON DELETE CASCADE,
    ord      INTEGER NOT NULL,
    title    TEXT,
    text     TEXT NOT NULL,
    tokens   INTEGER NOT NULL,
    tsv      tsvector GENERATED ALWAYS AS (contextd.chunk_tsv(title, text)) STORED,
    ntokens  INTEGER GENERATED ALWAYS AS
                 (contextd.tsv_tokens(contextd.chunk_tsv(title, text))) STORED
);
CREATE INDEX ON {s}.chunks (doc_id, ord);
CREATE INDEX ON {s}.chunks USING gin (tsv);
-- Vectors by chunk id; the store writes them in the chunk's transaction.
CREATE TABLE {s}.vectors (
    id        BIGINT PRIMARY KEY,
    embedding vector({dim}) NOT NULL
);
CREATE INDEX ON {s}.vectors USING hnsw (embedding vector_ip_ops);
-- One row per chunk added or removed; `head` holds the latest seq, written under the
-- namespace's write lock so sequence numbers are in commit order.
CREATE TABLE {s}.changes (
    seq      BIGINT PRIMARY KEY,
    op       TEXT NOT NULL CHECK (op IN ('add', 'del')),
    chunk_id BIGINT NOT NULL
);
CREATE TABLE {s}.head (
    one                BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
    seq                BIGINT NOT NULL DEFAULT 0,
    compacted_through  BIGINT NOT NULL DEFAULT 0
);
INSERT INTO {s}.head DEFAULT VALUES;
CREATE TABLE {s}.sessions (
    id              TEXT PRIMARY KEY,
    created_at      DOUBLE PRECISION NOT NULL,
    updated_at      DOUBLE PRECISION NOT NULL,
    summary         TEXT,
    summary_through INTEGER NOT NULL DEFAULT 0,
    summary_tokens  INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE {s}.turns (
    session_id   TEXT NOT NULL REFERENCES {s}.sessions(id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL,
    id           TEXT NOT NULL,
    role         TEXT NOT NULL,
    name         TEXT,
    content      TEXT,
    tool_calls   JSONB,
    tool_call_id TEXT,
    ts           DOUBLE PRECISION,
    tokens       INTEGER NOT NULL,
    embedding    vector({dim}),
    tsv          tsvector GENERATED ALWAYS AS (to_tsvector('english',
                     coalesce(name, '') || ' ' || coalesce(content, ''))) STORED,
    PRIMARY KEY (session_id, seq),
    UNIQUE (session_id, id)
);
CREATE INDEX ON {s}.turns USING gin (tsv);
"""),
    # Stored responses of keyed writes (contextd.store.idempotency), written in the write's
    # transaction.
    (2, """
CREATE TABLE {s}.idempotency (
    scope       TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    response    TEXT NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX ON {s}.idempotency (created_at);
"""),
    # Whose session it is (set once, by the append that names it), for recall across the
    # sessions of one user.
    (3, """
ALTER TABLE {s}.sessions ADD COLUMN user_id TEXT;
CREATE INDEX ON {s}.sessions (user_id, updated_at);
"""),
    # A session's turn count and token sum (read by every assemble) by an index-only scan.
    (4, """
CREATE INDEX ON {s}.turns (session_id, tokens);
"""),
]


def ensure_extension(conn: Any) -> None:
    """pgvector and the catalog schema, created once (an autocommit connection)."""
    conn.execute("SELECT pg_advisory_lock(%s)", (CATALOG_LOCK,))
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("CREATE SCHEMA IF NOT EXISTS contextd")
        conn.execute("CREATE TABLE IF NOT EXISTS contextd.migrations (version INTEGER PRIMARY "
                     "KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (CATALOG_LOCK,))


def migrate_catalog(conn: Any) -> int:
    """Apply the catalog steps not yet applied; the version now in force."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (CATALOG_LOCK,))
    done = {r[0] for r in conn.execute("SELECT version FROM contextd.migrations")}
    for version, script in CATALOG:
        if version not in done:
            conn.execute(script)
            conn.execute("INSERT INTO contextd.migrations(version) VALUES (%s)", (version,))
    conn.commit()
    return CATALOG[-1][0]


def schema_name(namespace_id: int) -> str:
    """The schema holding namespace `namespace_id` of the catalog.

        >>> schema_name(7)
        'ns_7'
    """
    return f"ns_{int(namespace_id)}"


def migrate_namespace(conn: Any, namespace_id: int, dim: int,
                      hnsw: HnswParams | None = None) -> int:
    """Bring one namespace's schema to the latest step (inside the caller's transaction,
    under the namespace's advisory lock); the version now in force. A namespace created
    here gets its HNSW index built with `hnsw` (pgvector's defaults when None); an existing
    one keeps the index it has (`contextd.store.postgres.hnsw.rebuild` changes it)."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (NAMESPACE_LOCK_BASE + namespace_id,))
    row = conn.execute("SELECT schema_version FROM contextd.namespaces WHERE id = %s",
                       (namespace_id,)).fetchone()
    current = row[0] if row else 0
    created = current == 0
    schema = sql.Identifier(schema_name(namespace_id)).as_string(conn)
    if current == 0:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
            sql.Identifier(schema_name(namespace_id))))
    for version, script in NAMESPACE:
        if version > current:
            conn.execute(script.format(s=schema, dim=int(dim)))
            current = version
    if created and hnsw is not None:
        build_new_namespace_index(conn, schema_name(namespace_id), hnsw)
    conn.execute("UPDATE contextd.namespaces SET schema_version = %s WHERE id = %s",
                 (current, namespace_id))
    return current
