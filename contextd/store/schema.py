"""SQLite schema of a namespace: the source of truth.

Documents, chunks (with their embeddings), an FTS5 lexical index over chunks, a change log
that the FAISS snapshot is caught up from, and sessions with their turns and summaries.

`SCHEMA` is version 1, as first released; `MIGRATIONS` (append-only, never edited once
released, like the PostgreSQL steps) bring a namespace from there to `SCHEMA_VERSION` when it
is opened, so a namespace written by an older release opens and gains what it lacks.

    >>> [version for version, _ in MIGRATIONS]
    [2, 3]
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

from contextd.store.files import private_file
from contextd.store.idempotency import SCHEMA as IDEMPOTENCY_SCHEMA

SCHEMA_VERSION = 3

# FTS5 with the porter stemmer over unicode61, so "running" matches "run"; diacritics folded.
FTS5_TOKENIZE = "porter unicode61 remove_diacritics 2"

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS documents (
    id           TEXT PRIMARY KEY,
    title        TEXT,
    text         TEXT NOT NULL,
    metadata     TEXT NOT NULL DEFAULT '{{}}',
    content_hash TEXT NOT NULL,
    tokens       INTEGER NOT NULL,
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS chunks (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id    TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ord       INTEGER NOT NULL,
    title     TEXT,
    text      TEXT NOT NULL,
    tokens    INTEGER NOT NULL,
    embedding BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks(doc_id, ord);

CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    title, text, content='chunks', content_rowid='id', tokenize='{FTS5_TOKENIZE}'
);

-- Every chunk insert and delete is logged; the FAISS snapshot records the last seq it holds.
CREATE TABLE IF NOT EXISTS changes (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    op       TEXT NOT NULL CHECK (op IN ('add', 'del')),
    chunk_id INTEGER NOT NULL
);

CREATE TRIGGER IF NOT EXISTS chunks_after_insert AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts(rowid, title, text) VALUES (new.id, new.title, new.text);
    INSERT INTO changes(op, chunk_id) VALUES ('add', new.id);
END;
CREATE TRIGGER IF NOT EXISTS chunks_after_delete AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, title, text) VALUES ('delete', old.id, old.title,
        old.text);
    INSERT INTO changes(op, chunk_id) VALUES ('del', old.id);
END;

CREATE TABLE IF NOT EXISTS sessions (
    id              TEXT PRIMARY KEY,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    summary         TEXT,
    summary_through INTEGER NOT NULL DEFAULT 0,
    summary_tokens  INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS turns (
    rid          INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id   TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL,
    id           TEXT NOT NULL,
    role         TEXT NOT NULL,
    name         TEXT,
    content      TEXT,
    tool_calls   TEXT,
    tool_call_id TEXT,
    ts           REAL,
    tokens       INTEGER NOT NULL,
    embedding    BLOB,
    UNIQUE (session_id, seq),
    UNIQUE (session_id, id)
);

-- The speaker's name is searchable too: questions name people ("Ana's dog") while turns
-- speak in the first person.
CREATE VIRTUAL TABLE IF NOT EXISTS turns_fts USING fts5(
    name, content, content='turns', content_rowid='rid', tokenize='{FTS5_TOKENIZE}'
);
CREATE TRIGGER IF NOT EXISTS turns_after_insert AFTER INSERT ON turns BEGIN
    INSERT INTO turns_fts(rowid, name, content) VALUES (new.rid, coalesce(new.name, ''),
        coalesce(new.content, ''));
END;
CREATE TRIGGER IF NOT EXISTS turns_after_delete AFTER DELETE ON turns BEGIN
    INSERT INTO turns_fts(turns_fts, rowid, name, content) VALUES ('delete', old.rid,
        coalesce(old.name, ''), coalesce(old.content, ''));
END;
"""


def connect(path: str, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection tuned for a durable, concurrent store.

    WAL lets readers run while a writer commits; synchronous=FULL makes a commit durable when
    it returns, so an acknowledged write survives a crash or power loss.
    """
    if not readonly and path != ":memory:":
        # Created 0600 here, so SQLite's -wal and -shm files (which take the database file's
        # mode) are private too.
        private_file(Path(path))
    uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None,
                           timeout=30.0)
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    if not readonly:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    return conn


# Each step: (the version it brings a namespace to, its statements).
MIGRATIONS: list[tuple[int, tuple[str, ...]]] = [
    # Whose session it is (set once, by the append that names it), for recall across the
    # sessions of one user.
    (2, ("ALTER TABLE sessions ADD COLUMN user_id TEXT",
         "CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions(user_id, updated_at)")),
    # A session's turn count and token sum (read by every assemble) from an index alone,
    # instead of reading every turn's row: 4.4 ms -> 0.3 ms at 2,155 turns.
    (3, ("CREATE INDEX IF NOT EXISTS turns_costs ON turns(session_id, tokens)",)),
]
assert MIGRATIONS[-1][0] == SCHEMA_VERSION


def create_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)
    conn.executescript(IDEMPOTENCY_SCHEMA)
    conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', '1')")
    # Fixed when the file is made (or first opened by a version that keys by it) and never
    # replaced: a namespace deleted and made again starts its sequences over, not this.
    conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('generation', ?)",
                 (uuid.uuid4().hex,))
    migrate(conn)


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the steps of `MIGRATIONS` the namespace lacks, in one write transaction that
    re-reads the version first, so processes opening one file at once apply each step once;
    the version now in force."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        current = int(row[0])
        for version, statements in MIGRATIONS:
            if version > current:
                for statement in statements:
                    conn.execute(statement)
                current = version
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(current),))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return current
