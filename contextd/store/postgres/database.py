"""One PostgreSQL database shared by every replica: a connection pool with pgvector types,
and the catalog-wide migrations applied once at start.

    >>> db = Database("postgresql://localhost/contextd")  # doctest: +SKIP
    >>> with db.connection() as conn:  # doctest: +SKIP
    ...     conn.execute("SELECT 1").fetchone()
    (1,)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from contextd.errors import InvalidRequest, Unavailable

URL_PREFIXES = ("postgresql://", "postgres://")


def is_postgres_url(url: str | None) -> bool:
    """Whether `url` names a PostgreSQL database.

        >>> is_postgres_url("postgresql://db/contextd"), is_postgres_url(None)
        (True, False)
    """
    return bool(url) and str(url).startswith(URL_PREFIXES)


def redacted(url: str) -> str:
    """`url` without its password, for messages and logs.

        >>> redacted("postgresql://app:s3cret@db:5432/contextd")
        'postgresql://app:***@db:5432/contextd'
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _configure(conn: Any) -> None:
    from pgvector.psycopg import register_vector

    register_vector(conn)
    conn.commit()


class Database:
    """A pool of `min_size` to `max_size` connections to `url` (setting `store_pool_size`
    is `max_size`); migrations run under an advisory lock, so replicas that start together
    apply each one once."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10) -> None:
        if not is_postgres_url(url):
            raise InvalidRequest(f"store {url!r} is not a PostgreSQL URL: use "
                                 "postgresql://user:password@host:port/database")
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise InvalidRequest("the PostgreSQL store needs its extra: pip install "
                                 "'contextd[postgres]'") from exc
        from contextd.store.postgres.migrations import migrate_catalog

        self.url = url
        min_size = min(min_size, max_size)
        # The extension must exist before a connection can register its types.
        try:
            self._bootstrap()
        except psycopg.OperationalError as exc:
            raise Unavailable(f"cannot reach the store at {redacted(url)}: "
                              f"{str(exc).strip()}; check the URL, the server and the "
                              "credentials") from None
        self.pool = ConnectionPool(url, min_size=min_size, max_size=max_size,
                                   configure=_configure, open=True,
                                   kwargs={"autocommit": False})
        with self.connection() as conn:
            migrate_catalog(conn)

    def _bootstrap(self) -> None:
        import psycopg

        from contextd.store.postgres.migrations import ensure_extension

        with psycopg.connect(self.url, autocommit=True) as conn:
            ensure_extension(conn)

    @contextmanager
    def connection(self) -> Iterator[Any]:
        """A pooled connection in a transaction: committed when the block ends, rolled back
        when it raises."""
        with self.pool.connection() as conn:
            yield conn

    def close(self) -> None:
        self.pool.close()
