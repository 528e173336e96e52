"""API keys: a role, the namespaces a key may use, and the stores that hold them as hashes.

A key's secret reads `ctxd_<id>_<random>`; only its SHA-256 is kept. Keys come from three
places, checked in this order: the key store (`<data_dir>/keys.sqlite3`, managed by
`contextd keys`), the `api_keys` setting (hashes only), and the single `api_key` setting,
which stays an admin key over every namespace.

    >>> ring = KeyRing([KeySpec(id="ci", hash=hash_secret("s3cret"), role="read",
    ...                         namespaces=["acme-*"])])
    >>> ring.authenticate("s3cret").allows_namespace("acme-docs")
    True
    >>> ring.authenticate("guess") is None
    True
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from contextd.errors import InvalidRequest
from contextd.store.files import private_dir

Role = Literal["read", "write", "admin"]
ROLE_RANK: dict[str, int] = {"read": 0, "write": 1, "admin": 2}
KEYS_FILE = "keys.sqlite3"
SECRET_PREFIX = "ctxd_"
_KEY_ID = re.compile(r"^[a-z0-9]{1,32}$")
# An exact namespace name, or a prefix ending in `*` (`*` alone: every namespace).
_NAMESPACE_RULE = re.compile(r"^[A-Za-z0-9._-]{0,128}\*?$")


def hash_secret(secret: str) -> str:
    """The stored form of a key's secret: hex SHA-256.

    A plain fast hash is enough here, unlike for passwords: generated secrets carry 256 random
    bits, so there is nothing to guess from a leaked hash and no point in a slow KDF, which
    would only cost time on every request.

        >>> len(hash_secret("ctxd_ab12_x"))
        64
    """
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class KeySpec(BaseModel):
    """One API key as configured: its id, the hash of its secret, role and namespaces.

        >>> KeySpec(id="ci", hash="0" * 64, role="read", namespaces=["acme-*"]).role
        'read'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=_KEY_ID.pattern, description="Key id (lower-case letters, digits).")
    hash: str = Field(pattern=r"^[0-9a-f]{64}$", description="Hex SHA-256 of the secret.")
    role: Role = Field(description="read: search, assemble, get; write: also upsert, delete "
                       "documents, append and delete sessions; admin: also delete "
                       "namespaces, metrics and the API docs.")
    namespaces: list[str] = Field(min_length=1, description="Namespaces the key may use: "
                                  "exact names, or prefixes ending in '*' ('*' for all).")
    max_namespaces: int | None = Field(None, ge=1, description="Most namespaces the key may "
                                       "create; unset for no limit.")

    @field_validator("namespaces")
    @classmethod
    def _rules(cls, value: list[str]) -> list[str]:
        for rule in value:
            if not rule or not _NAMESPACE_RULE.match(rule) or rule.endswith("\n"):
                raise ValueError(f"namespace rule {rule!r} is neither a namespace name nor a "
                                 "prefix ending in '*' (e.g. 'acme-*')")
        return value


class ApiKey(KeySpec):
    """An authenticated key: what a request may do.

        >>> key = ApiKey(id="a", hash="0" * 64, role="write", namespaces=["acme-*", "shared"])
        >>> key.allows_namespace("acme-1"), key.allows_namespace("other")
        (True, False)
        >>> key.has_role("read"), key.has_role("admin")
        (True, False)
    """

    def allows_namespace(self, namespace: str) -> bool:
        for rule in self.namespaces:
            if rule.endswith("*"):
                if namespace.startswith(rule[:-1]):
                    return True
            elif namespace == rule:
                return True
        return False

    def has_role(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


class CreatedKey(BaseModel):
    """A key just created: the only time its secret exists outside the caller's hands."""

    key: ApiKey
    secret: str


class KeyStore:
    """Keys kept in SQLite at `<data_dir>/keys.sqlite3` (mode 0600), hashes only.

    The file is opened on first use and only created by `create`, so a server whose data
    directory holds no key store runs without keys.

        >>> store = KeyStore(Path("indexes"))  # doctest: +SKIP
        >>> made = store.create("read", ["acme-*"]); print(made.secret)  # doctest: +SKIP
        >>> store.authenticate(made.secret).role  # doctest: +SKIP
        'read'
    """

    def __init__(self, data_dir: Path | str) -> None:
        self.path = Path(data_dir) / KEYS_FILE
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connect(self, create: bool) -> sqlite3.Connection | None:
        if self._conn is not None:
            return self._conn
        if not create and not self.path.exists():
            return None
        private_dir(self.path.parent)
        # Created 0600 from the start, not chmod-ed afterwards, so no reader slips in between.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        os.chmod(self.path, 0o600)
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("CREATE TABLE IF NOT EXISTS keys (id TEXT PRIMARY KEY, hash TEXT NOT NULL, "
                     "role TEXT NOT NULL, namespaces TEXT NOT NULL, max_namespaces INTEGER, "
                     "created REAL NOT NULL, revoked REAL)")
        self._conn = conn
        return conn

    def create(self, role: str, namespaces: Sequence[str],
               max_namespaces: int | None = None) -> CreatedKey:
        """A new key; its secret is in the result and nowhere else."""
        key_id = secrets.token_hex(6)
        secret = f"{SECRET_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        try:
            key = ApiKey(id=key_id, hash=hash_secret(secret), role=role,  # type: ignore[arg-type]
                         namespaces=list(namespaces), max_namespaces=max_namespaces)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from exc
        with self._lock:
            conn = self._connect(create=True)
            assert conn is not None
            conn.execute("INSERT INTO keys VALUES (?, ?, ?, ?, ?, ?, NULL)",
                         (key.id, key.hash, key.role, json.dumps(key.namespaces),
                          key.max_namespaces, time.time()))
        return CreatedKey(key=key, secret=secret)

    def list(self) -> list[dict[str, object]]:
        """Every key with its role, namespaces, creation and revocation times (no hashes)."""
        with self._lock:
            conn = self._connect(create=False)
            rows = [] if conn is None else conn.execute(
                "SELECT id, role, namespaces, max_namespaces, created, revoked FROM keys "
                "ORDER BY created").fetchall()
        return [{"id": r[0], "role": r[1], "namespaces": json.loads(r[2]),
                 "max_namespaces": r[3], "created": r[4], "revoked": r[5]} for r in rows]

    def revoke(self, key_id: str) -> bool:
        """Revoke a key at once; False if there is no such live key."""
        with self._lock:
            conn = self._connect(create=False)
            if conn is None:
                return False
            cursor = conn.execute("UPDATE keys SET revoked = ? WHERE id = ? AND revoked IS NULL",
                                  (time.time(), key_id))
            return cursor.rowcount > 0

    def has_keys(self) -> bool:
        """Whether the store ever held a key. Revoked keys count: revoking the last key must
        lock the server, not open it."""
        with self._lock:
            conn = self._connect(create=False)
            return conn is not None and conn.execute(
                "SELECT 1 FROM keys LIMIT 1").fetchone() is not None

    def authenticate(self, secret: str) -> ApiKey | None:
        """The live key whose secret this is, or None."""
        if not secret.startswith(SECRET_PREFIX):
            return None
        key_id, _, rest = secret[len(SECRET_PREFIX):].partition("_")
        if not rest or not _KEY_ID.match(key_id):
            return None
        with self._lock:
            conn = self._connect(create=False)
            row = None if conn is None else conn.execute(
                "SELECT id, hash, role, namespaces, max_namespaces FROM keys "
                "WHERE id = ? AND revoked IS NULL", (key_id,)).fetchone()
        if row is None or not hmac.compare_digest(row[1], hash_secret(secret)):
            return None
        return ApiKey(id=row[0], hash=row[1], role=row[2], namespaces=json.loads(row[3]),
                      max_namespaces=row[4])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class KeyRing:
    """Every key a server accepts: configured specs, the legacy single key, and a store.

        >>> ring = KeyRing([], legacy_key="s3cret")
        >>> ring.authenticate("s3cret").role
        'admin'
    """

    def __init__(self, specs: Iterable[KeySpec] = (), *, legacy_key: str | None = None,
                 store: KeyStore | None = None) -> None:
        self.specs = [ApiKey(**spec.model_dump()) for spec in specs]
        self.legacy_key = legacy_key
        self.store = store

    def configured(self) -> bool:
        """Whether any key exists (or existed, in the store); without one the server stays
        open."""
        return bool(self.specs or self.legacy_key
                    or (self.store is not None and self.store.has_keys()))

    def authenticate(self, secret: str) -> ApiKey | None:
        """The key this secret belongs to, or None."""
        if self.store is not None:
            found = self.store.authenticate(secret)
            if found is not None:
                return found
        digest = hash_secret(secret)
        match = None
        # Every spec is compared, so the time taken does not tell which one matched.
        for spec in self.specs:
            if hmac.compare_digest(spec.hash, digest):
                match = spec
        if match is not None:
            return match
        if self.legacy_key is not None and hmac.compare_digest(
                secret.encode(), self.legacy_key.encode()):
            return ApiKey(id="apikey", hash=hash_secret(self.legacy_key), role="admin",
                          namespaces=["*"])
        return None
