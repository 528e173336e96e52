"""In-process server fixtures: an app over a hash-embedder engine, driven by `AsyncClient`
through httpx's ASGITransport; every answer is checked against /openapi.json at teardown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from openapi_check import OpenAPIBook

from contextd import AsyncClient, Engine
from contextd.server import create_app

SMALL_BODY_LIMIT = 64 * 1024


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server_engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine(batch_wait_ms=1)


@pytest.fixture
def app(server_engine: Engine) -> FastAPI:
    return create_app(server_engine, max_body_bytes=SMALL_BODY_LIMIT)


@pytest.fixture
def book() -> OpenAPIBook:
    return OpenAPIBook()


async def started_client(app: FastAPI, book: OpenAPIBook, **kwargs: Any) -> AsyncClient:
    """An AsyncClient over the app that records every answer in `book`."""

    async def record(response: httpx.Response) -> None:
        await response.aread()
        book.record(response.request.method, response.request.url.path, response.status_code,
                    response.headers.get("content-type", ""), response.content)

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    http = httpx.AsyncClient(transport=transport, base_url="http://contextd",
                             event_hooks={"response": [record]})
    return AsyncClient("http://contextd", http=http, retries=0, **kwargs)


@pytest.fixture
async def client(app: FastAPI, book: OpenAPIBook) -> AsyncIterator[AsyncClient]:
    """A client of the started (warmed-up) app."""
    async with app.router.lifespan_context(app):
        await anyio.to_thread.run_sync(app.state.warmed.wait, 30)
        async with await started_client(app, book) as c:
            yield c
            schema = (await c.http.get("/openapi.json")).json()
    assert book.check(schema) > 0
