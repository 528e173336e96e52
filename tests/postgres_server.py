"""A real PostgreSQL 16 with pgvector for the tests: `pgserver` starts it once per test
session from a temporary directory (no root, no network), and each test gets a database of
its own, dropped afterwards."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

_numbers = itertools.count(1)


def database_url(server_url: str, name: str) -> str:
    """`server_url` with its database replaced by `name`."""
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of the session's server (its `postgres` database)."""
    import pgserver

    # A short path: the server's unix socket lives there and socket paths are limited.
    root = tempfile.mkdtemp(prefix="ctxpg")
    server = pgserver.get_server(root, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database for one test."""
    import psycopg

    name = f"test_{next(_numbers)}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    yield database_url(postgres_server, name)
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
