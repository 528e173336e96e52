"""Idempotency keys: a repeated write answers with its first response instead of writing again.

A caller that retries an append or an upsert (after a timeout, a 503, a dropped connection)
cannot know whether the first attempt was stored. With an idempotency key, the first request
stores its response in the namespace's SQLite in the same transaction as its write, so no crash
can keep one without the other; a repeat with the same key and the same request answers with
that stored response and writes nothing, and a repeat with the same key but a different request
is refused. The check runs inside the write transaction (`BEGIN IMMEDIATE`), so two processes
on one data directory cannot both perform the write. Keys live `TTL_S` seconds and are pruned
lazily, by the writes that record new ones.

    >>> key = IdempotencyKey("3f2a9c1e-retry-safe", scope="key:ab12")
    >>> key.bind("append", {"session_id": "s1", "messages": [{"role": "user", "content": "Hi"}]})
    >>> len(key.fingerprint)
    64
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from contextd.errors import InvalidRequest

# How long a stored response answers repeats of its key.
TTL_S = 24 * 3600.0
KEY_PATTERN = r"[\x21-\x7e]{1,255}"
HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"

SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency (
    scope       TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    response    TEXT NOT NULL,
    created_at  REAL NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX IF NOT EXISTS idempotency_by_age ON idempotency(created_at);
"""


class Replayed(Exception):  # noqa: N818 - a signal, not a failure
    """Raised inside a write transaction whose key already has a response: nothing is
    written, and the caller answers with `response`."""

    def __init__(self, response: dict[str, Any]) -> None:
        super().__init__("idempotent replay")
        self.response = response


class IdempotencyKeyReused(InvalidRequest):
    title = "Idempotency key reused"
    type_slug = "idempotency-key-reused"


@dataclass
class IdempotencyKey:
    """One logical write's key; `scope` separates callers (the API key's id), `bind` names the
    request it guards, and after the call `replayed` says whether the stored answer was used.

        >>> IdempotencyKey("k1").bind("upsert", {"documents": []})
    """

    key: str
    scope: str = ""
    fingerprint: str = ""
    replayed: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not re.fullmatch(KEY_PATTERN, self.key):
            raise InvalidRequest(
                f"invalid idempotency key {self.key!r}: use 1-255 printable ASCII characters "
                "without spaces, e.g. a UUID, new for each logical request")

    def bind(self, operation: str, request: Any) -> None:
        """Fingerprint the request this key guards (operation and canonical JSON body)."""
        payload = json.dumps([operation, request], sort_keys=True, ensure_ascii=False,
                             separators=(",", ":"), default=str)
        self.fingerprint = hashlib.sha256(payload.encode("utf-8")).hexdigest()


def as_key(value: str | IdempotencyKey | None) -> IdempotencyKey | None:
    """`value` as an IdempotencyKey (a plain string is a key with no scope)."""
    if value is None or isinstance(value, IdempotencyKey):
        return value
    return IdempotencyKey(value)


def stored_response(conn: sqlite3.Connection, key: IdempotencyKey) -> dict[str, Any] | None:
    """The response stored under `key` (and mark it replayed), or None if there is none
    younger than TTL_S; IdempotencyKeyReused if it was stored for a different request."""
    row = conn.execute(
        "SELECT fingerprint, response FROM idempotency WHERE scope = ? AND key = ? "
        "AND created_at >= ?", (key.scope, key.key, time.time() - TTL_S)).fetchone()
    return replayed_response(key, row)


def replayed_response(key: IdempotencyKey,
                      row: tuple[str, str] | None) -> dict[str, Any] | None:
    """The stored response of a `(fingerprint, response)` row found for `key` (marking the
    key replayed), None for no row; IdempotencyKeyReused if it was another request's."""
    if row is None:
        return None
    if row[0] != key.fingerprint:
        raise IdempotencyKeyReused(
            f"idempotency key {key.key!r} was used for a different request in the last "
            f"{TTL_S / 3600:g} h: send a new key for a new request, and the same body with "
            "the same key only to repeat one")
    key.replayed = True
    return json.loads(row[1])  # type: ignore[no-any-return]


def check_unused(tx: sqlite3.Connection, key: IdempotencyKey | None) -> None:
    """Replayed (so the caller's transaction rolls back, having written nothing) when `key`
    already holds a response; first thing in a write transaction."""
    if key is not None and (stored := stored_response(tx, key)) is not None:
        raise Replayed(stored)


def store_response(tx: sqlite3.Connection, key: IdempotencyKey,
                   response: dict[str, Any]) -> None:
    """Record `response` under `key`, inside the caller's write transaction; expired keys go."""
    now = time.time()
    tx.execute("DELETE FROM idempotency WHERE created_at < ?", (now - TTL_S,))
    tx.execute("INSERT OR REPLACE INTO idempotency(scope, key, fingerprint, response, "
               "created_at) VALUES (?, ?, ?, ?, ?)",
               (key.scope, key.key, key.fingerprint, json.dumps(response), now))
