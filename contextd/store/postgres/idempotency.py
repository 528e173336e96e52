"""Idempotency keys in PostgreSQL: the stored response of a keyed write, read and written
inside that write's transaction (`contextd.store.idempotency` for the SQLite side).

Replicas may receive the same key at once, so the check first takes a transaction-scoped
advisory lock on (schema, scope, key): the second request waits for the first to commit and
then finds its response, instead of writing again.

    >>> key = IdempotencyKey("k1")  # doctest: +SKIP
    >>> with db.connection() as tx:  # doctest: +SKIP
    ...     check_unused(tx, "ns_1", key)
    ...     store_response(tx, "ns_1", key, {"ok": True})
"""

from __future__ import annotations

import json
import time
from typing import Any

from psycopg import sql

from contextd.store.idempotency import TTL_S, IdempotencyKey, Replayed, replayed_response


def _q(schema: str, text: str) -> sql.Composed:
    return sql.SQL(text).format(s=sql.Identifier(schema))


def stored_response(tx: Any, schema: str, key: IdempotencyKey, *,
                    lock: bool = True) -> dict[str, Any] | None:
    """The response stored under `key` (and mark it replayed), or None if there is none
    younger than TTL_S; IdempotencyKeyReused if it was stored for a different request.
    With `lock`, holds the key's advisory lock until the transaction ends."""
    if lock:
        tx.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                   (json.dumps([schema, key.scope, key.key]),))
    row = tx.execute(_q(schema,
        "SELECT fingerprint, response FROM {s}.idempotency WHERE scope = %s AND key = %s "
        "AND created_at >= %s"), (key.scope, key.key, time.time() - TTL_S)).fetchone()
    return replayed_response(key, row)


def check_unused(tx: Any, schema: str, key: IdempotencyKey | None) -> None:
    """Replayed (so the caller's transaction rolls back, having written nothing) when `key`
    already holds a response; first thing in a write transaction."""
    if key is not None and (stored := stored_response(tx, schema, key)) is not None:
        raise Replayed(stored)


def store_response(tx: Any, schema: str, key: IdempotencyKey,
                   response: dict[str, Any]) -> None:
    """Record `response` under `key`, inside the caller's write transaction; expired keys go."""
    now = time.time()
    tx.execute(_q(schema, "DELETE FROM {s}.idempotency WHERE created_at < %s"), (now - TTL_S,))
    tx.execute(_q(schema,
        "INSERT INTO {s}.idempotency(scope, key, fingerprint, response, created_at) "
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (scope, key) DO UPDATE SET "
        "fingerprint = excluded.fingerprint, response = excluded.response, "
        "created_at = excluded.created_at"),
        (key.scope, key.key, key.fingerprint, json.dumps(response), now))
