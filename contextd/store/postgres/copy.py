"""`contextd migrate`: copy a data directory's namespaces into PostgreSQL without
re-embedding, then check that every count matches.

Documents come over with their chunks and stored vectors (chunk ids are the target's own),
sessions with their turns (numbers, ids, vectors), summaries, creation times and users, and the
stored responses of idempotency keys (which name documents and turns, never chunk ids), so
the copied namespace answers searches, assembles and repeated keyed writes as the original
did. A namespace that already holds anything in the target is refused rather than merged.

    >>> copy_data_directory(Path("indexes"), "postgresql://db/contextd")  # doctest: +SKIP
    {'default': {'documents': 12, 'chunks': 31, 'sessions': 2, 'turns': 18}}
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from psycopg import sql

from contextd.errors import Conflict, ContextdError, NotFound
from contextd.store.postgres.database import Database
from contextd.store.postgres.hnsw import HnswParams
from contextd.store.postgres.namespace import PostgresCatalog, PostgresNamespace
from contextd.store.records import TOKEN_ENCODING_KEY, DocumentWrite, NewChunk
from contextd.store.sqlite_store import SqliteStore, blob_vector

DOCUMENTS_PER_WRITE = 200


class CopyMismatch(ContextdError):
    """A copied namespace's counts differ from the source's."""

    title = "Copy does not match its source"
    type_slug = "copy-mismatch"
    status = 500


def source_namespaces(data_dir: Path) -> dict[str, Path]:
    """Namespace name -> its SQLite file, for every namespace of `data_dir`."""
    from contextd.namespaces import NAMESPACES_DIR
    from contextd.store.namespace import DB_FILE

    root = data_dir / NAMESPACES_DIR
    if not root.is_dir():
        raise NotFound(f"{data_dir} holds no namespaces ({root} does not exist): pass the "
                       "data directory a server or `contextd ingest` used")
    return {p.name: p / DB_FILE for p in sorted(root.iterdir()) if (p / DB_FILE).exists()}


def copy_data_directory(data_dir: Path, url: str, only: Sequence[str] | None = None,
                        hnsw: HnswParams | None = None) -> dict[str, dict[str, int]]:
    """Copy every namespace of `data_dir` (or those in `only`) into the database at `url`;
    the counts of each, checked equal on both sides. Namespaces created in the database get
    their HNSW index built with `hnsw` (pgvector's defaults when None)."""
    sources = source_namespaces(data_dir)
    if only:
        missing = sorted(set(only) - set(sources))
        if missing:
            raise NotFound(f"no namespace {', '.join(missing)} in {data_dir}: choose from "
                           f"{', '.join(sources) or 'none'}")
        sources = {name: sources[name] for name in only}
    catalog = PostgresCatalog(Database(url), hnsw)
    report: dict[str, dict[str, int]] = {}
    try:
        for name, path in sources.items():
            source = SqliteStore(str(path))
            try:
                report[name] = _copy_namespace(name, source, catalog)
            finally:
                source.close()
    finally:
        catalog.close()
    return report


def _copy_namespace(name: str, source: SqliteStore, catalog: PostgresCatalog
                    ) -> dict[str, int]:
    model = source.get_meta("embedding_model") or "unknown"
    dim = int(source.get_meta("embedding_dim") or 0) or _first_dim(source)
    # The stored token counts are copied as they are, so the encoding that made them goes too.
    encoding = source.get_meta(TOKEN_ENCODING_KEY)
    if catalog.exists(name):
        target = catalog.open(name, dim, model, create=False, token_encoding=encoding)
        assert target is not None
        if any(target.store.counts().values()):
            raise Conflict(f"namespace {name!r} already holds data in the target database: "
                           "delete it there first (contextd namespaces delete "
                           f"{name} --store URL), or copy only other namespaces (--namespace)")
    else:
        target = catalog.open(name, dim, model, token_encoding=encoding)
        assert target is not None
    for batch in _document_batches(source):
        target.store.write_documents([write for write, _ in batch])
        with catalog.db.connection() as conn, conn.cursor() as cur:
            cur.executemany(_q(target, "UPDATE {s}.documents SET created_at = %s, "
                                       "updated_at = %s WHERE id = %s"),
                            [(created, updated, write.id) for write, (created, updated)
                             in batch])
    _copy_sessions(source, target, catalog.db)
    _copy_idempotency(source, target, catalog.db)
    return _verify(name, source, target, catalog.db)


def _first_dim(source: SqliteStore) -> int:
    for _, vectors in source.all_vectors(batch=1):
        return int(vectors.shape[1])
    return 384


def _document_batches(source: SqliteStore
                      ) -> Iterator[list[tuple[DocumentWrite, tuple[float, float]]]]:
    conn = source.reader()
    last = ""
    while True:
        docs = conn.execute(
            "SELECT id, title, text, metadata, content_hash, tokens, created_at, updated_at "
            "FROM documents WHERE id > ? ORDER BY id LIMIT ?",
            (last, DOCUMENTS_PER_WRITE)).fetchall()
        if not docs:
            return
        ids = [d[0] for d in docs]
        chunks: dict[str, list[NewChunk]] = {i: [] for i in ids}
        marks = ",".join("?" * len(ids))
        for doc_id, ord_, title, text, tokens, blob in conn.execute(
                "SELECT doc_id, ord, title, text, tokens, embedding FROM chunks "
                f"WHERE doc_id IN ({marks}) ORDER BY doc_id, ord, id", ids):
            chunks[doc_id].append(NewChunk(ord_, title, text, tokens, blob_vector(blob)))
        yield [(DocumentWrite(d[0], d[1], d[2], json.loads(d[3]), d[4], d[5], chunks[d[0]]),
                (d[6], d[7])) for d in docs]
        last = ids[-1]


def _copy_sessions(source: SqliteStore, target: PostgresNamespace, db: Database) -> None:
    conn = source.reader()
    for sid, created, updated, summary, through, summary_tokens, user_id in conn.execute(
            "SELECT id, created_at, updated_at, summary, summary_through, summary_tokens, "
            "user_id FROM sessions ORDER BY id").fetchall():
        turns = conn.execute(
            "SELECT seq, id, role, name, content, tool_calls, tool_call_id, ts, tokens, "
            "embedding FROM turns WHERE session_id = ? ORDER BY seq", (sid,)).fetchall()
        with db.connection() as pg, pg.cursor() as cur:
            cur.execute(_q(target, "INSERT INTO {s}.sessions(id, created_at, updated_at, "
                                   "summary, summary_through, summary_tokens, user_id) "
                                   "VALUES (%s, %s, %s, %s, %s, %s, %s)"),
                        (sid, created, updated, summary, through, summary_tokens, user_id))
            cur.executemany(_q(target, "INSERT INTO {s}.turns(session_id, seq, id, role, name, "
                                       "content, tool_calls, tool_call_id, ts, tokens, "
                                       "embedding) VALUES (%s, %s, %s, %s, %s, %s, "
                                       "%s::jsonb, %s, %s, %s, %s)"),
                            [(sid, seq, tid, role, name, content, tool_calls, call_id, ts,
                              tokens, blob_vector(blob) if blob is not None else None)
                             for seq, tid, role, name, content, tool_calls, call_id, ts,
                             tokens, blob in turns])


def _copy_idempotency(source: SqliteStore, target: PostgresNamespace, db: Database) -> None:
    """The keys' stored responses, so a client retrying across the switch gets its answer."""
    rows = source.reader().execute(
        "SELECT scope, key, fingerprint, response, created_at FROM idempotency").fetchall()
    if rows:
        with db.connection() as pg, pg.cursor() as cur:
            cur.executemany(_q(target, "INSERT INTO {s}.idempotency(scope, key, fingerprint, "
                                       "response, created_at) VALUES (%s, %s, %s, %s, %s)"),
                            rows)


def _verify(name: str, source: SqliteStore, target: PostgresNamespace,
            db: Database) -> dict[str, int]:
    want = source.counts()
    want["turns"] = source.reader().execute("SELECT count(*) FROM turns").fetchone()[0]
    got = target.store.counts()
    with db.connection() as conn:
        got["turns"] = conn.execute(_q(target, "SELECT count(*) FROM {s}.turns")).fetchone()[0]
        got["vectors"] = conn.execute(_q(target, "SELECT count(*) FROM {s}.vectors")
                                      ).fetchone()[0]
    want["vectors"] = want["chunks"]
    if got != want:
        raise CopyMismatch(f"namespace {name!r}: the source holds {want}, the copy {got}")
    return got


def _q(target: PostgresNamespace, text: str) -> Any:
    return sql.SQL(text).format(s=sql.Identifier(target.schema))
