"""Adapter fixtures: every test runs against an in-process `Engine` and against a `Client` of
the app serving one, both with the hash embedder; no socket may leave the process."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from contextd import Client, Engine
from contextd.server import create_app

DOCUMENTS = [
    {"id": "rrf", "title": "Fusion", "text": "Reciprocal rank fusion merges ranked lists.",
     "metadata": {"topic": "ranking"}},
    {"id": "bm25", "text": "BM25 scores lexical matches of query terms.",
     "metadata": {"topic": "lexical"}},
    {"id": "faiss", "text": "FAISS searches dense vectors by inner product.",
     "metadata": {"topic": "dense"}},
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing may download: a connect to any network address fails the test."""
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        if self.family != socket.AF_UNIX:
            raise AssertionError(f"network connection attempted to {address!r}")
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


@pytest.fixture(params=["engine", "client"])
def source(request: pytest.FixtureRequest,
           make_engine: Callable[..., Engine]) -> Iterator[Engine | Client]:
    """An Engine, or a Client of an app over one, holding DOCUMENTS."""
    engine = make_engine()
    if request.param == "engine":
        engine.upsert_documents(DOCUMENTS)
        yield engine
        return
    with Client.for_app(create_app(engine), retries=0) as client:
        client.upsert_documents(DOCUMENTS)
        yield client
