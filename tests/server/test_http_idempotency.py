"""The Idempotency-Key header over HTTP: a repeat is answered from the stored response with
`Idempotent-Replayed: true`, another body is a 422, keys are per API key, the schema declares
the header, and the client's retry after a lost answer stores the turns once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import httpx
import pytest
from conftest import started_client
from fastapi import FastAPI
from openapi_check import OpenAPIBook

from contextd import AsyncClient, Engine
from contextd.auth import KeyStore
from contextd.server import create_app

pytestmark = pytest.mark.anyio

HI = {"messages": [{"role": "user", "content": "Where is my parcel?"}]}
APPEND = "/v1/namespaces/shop/sessions/s1/messages"


async def test_repeated_append_replays_the_stored_response(client: AsyncClient) -> None:
    headers = {**client.headers, "Idempotency-Key": "9b2e6c1a"}
    first = await client.http.post(APPEND, json=HI, headers=headers)
    again = await client.http.post(APPEND, json=HI, headers=headers)
    assert first.status_code == again.status_code == 200
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true" and again.json() == first.json()
    assert len((await client.get_session("s1", namespace="shop")).turns) == 1


async def test_same_key_with_another_body_is_a_422(client: AsyncClient) -> None:
    headers = {**client.headers, "Idempotency-Key": "9b2e6c1a"}
    await client.http.post(APPEND, json=HI, headers=headers)
    other = {"messages": [{"role": "user", "content": "Cancel it."}]}
    response = await client.http.post(APPEND, json=other, headers=headers)
    assert response.status_code == 422
    assert response.json()["type"].endswith("/idempotency-key-reused")
    assert "new key" in response.json()["detail"]
    docs = {"documents": [{"id": "a", "text": "Parcels ship daily."}]}
    upsert = await client.http.post("/v1/namespaces/shop/documents", json=docs,
                                    headers={**headers, "Idempotency-Key": "u-1"})
    replay = await client.http.post("/v1/namespaces/shop/documents", json=docs,
                                    headers={**headers, "Idempotency-Key": "u-1"})
    assert replay.headers["idempotent-replayed"] == "true" and replay.json() == upsert.json()
    assert len((await client.get_session("s1", namespace="shop")).turns) == 1


async def test_malformed_idempotency_key_header_is_a_422(client: AsyncClient) -> None:
    for bad in ("has space", "x" * 256):
        response = await client.http.post(APPEND, json=HI,
                                          headers={**client.headers, "Idempotency-Key": bad})
        assert response.status_code == 422, bad
    assert "shop" not in [n.name for n in await client.namespaces()]  # nothing created


async def test_the_schema_declares_the_header_on_every_write(client: AsyncClient) -> None:
    schema = (await client.http.get("/openapi.json")).json()
    for path in ("/v1/namespaces/{namespace}/sessions/{session_id}/messages",
                 "/v1/namespaces/{namespace}/documents", "/v1/namespaces/{namespace}/assemble",
                 "/v1/sessions/{session_id}/messages", "/v1/assemble"):
        operation = schema["paths"][path]["post"]
        names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "header"]
        assert names == ["Idempotency-Key"], path
        assert "Idempotent-Replayed" in operation["responses"]["200"]["headers"], path
    assert (await client.append_messages("s1", HI["messages"], namespace="shop")).turns == 1


class LosesFirstAnswer(httpx.AsyncBaseTransport):
    """Delivers every request to the app but answers the first with 503, as a proxy would
    whose upstream stored the write and then dropped the connection."""

    def __init__(self, app: FastAPI) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = await self.inner.handle_async_request(request)
        if len(self.requests) == 1:
            await response.aread()
            return httpx.Response(503, headers={"content-type": "application/problem+json"},
                                  json={"type": "x/unavailable", "title": "Unavailable",
                                        "status": 503, "detail": "upstream went away"})
        return response


async def test_client_retry_after_a_lost_answer_stores_turns_once(
        app: FastAPI, client: AsyncClient) -> None:
    transport = LosesFirstAnswer(app)
    http = httpx.AsyncClient(transport=transport, base_url="http://contextd")
    async with AsyncClient("http://contextd", http=http, backoff=0.0) as retrying:
        result = await retrying.append_messages("s1", HI["messages"], namespace="shop")
        assembled = await retrying.assemble(query="parcel?", max_tokens=400, namespace="shop",
                                            session_id="s2", messages=HI["messages"])
    assert result.turns == 1 and assembled.usage.total > 0
    assert len(transport.requests) == 3  # the append twice (once lost), the assemble once
    assert len((await client.get_session("s1", namespace="shop")).turns) == 1
    assert len((await client.get_session("s2", namespace="shop")).turns) == 1


@pytest.fixture
async def two_tenants(server_engine: Engine) -> AsyncIterator[tuple[FastAPI, list[str]]]:
    store = KeyStore(server_engine.settings.data_dir)
    secrets = [store.create("write", ["shop"]).secret for _ in range(2)]
    store.close()
    app = create_app(server_engine)
    async with app.router.lifespan_context(app):
        await anyio.to_thread.run_sync(app.state.warmed.wait, 30)
        yield app, secrets


async def test_idempotency_keys_are_scoped_per_api_key(
        two_tenants: tuple[FastAPI, list[str]], server_engine: Engine) -> None:
    app, secrets = two_tenants
    book = OpenAPIBook()
    answers = []
    for secret in secrets:
        async with await started_client(app, book, api_key=secret) as c:
            response = await c.http.post(APPEND, json=HI,
                                         headers={**c.headers, "Idempotency-Key": "same"})
            answers.append(response)
    # The second caller's key is its own: a new write, not the other caller's stored answer.
    assert [a.status_code for a in answers] == [200, 200]
    assert "idempotent-replayed" not in answers[1].headers
    assert [a.json()["turns"] for a in answers] == [1, 2]
    assert len(server_engine.get_session("s1", namespace="shop").turns) == 2
    assert book.check(app.openapi()) > 0
