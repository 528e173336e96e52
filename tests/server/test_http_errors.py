"""Error statuses outside the Engine's own: 413, 500 with a request id, 401, 503 before
warm-up; and the metrics that requests leave behind."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from conftest import SMALL_BODY_LIMIT, started_client
from fastapi import FastAPI
from openapi_check import OpenAPIBook

from contextd import AsyncClient, Engine, Unauthorized, Unavailable
from contextd.server import create_app

pytestmark = pytest.mark.anyio


async def test_oversize_body_with_content_length_is_413(client: AsyncClient) -> None:
    body = b'{"documents": [{"id": "a", "text": "' + b"x" * SMALL_BODY_LIMIT + b'"}]}'
    response = await client.http.post("/v1/namespaces/default/documents", content=body,
                                      headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/request-too-large")
    assert response.headers["x-request-id"]


async def test_oversize_chunked_body_is_413_and_not_read_whole(client: AsyncClient) -> None:
    chunk = b"x" * 4096
    sent = 0

    async def stream() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"documents": [{"id": "a", "text": "'
        for _ in range(200):  # 800 KiB in all, far over the 64 KiB limit
            sent += 1
            yield chunk

    response = await client.http.post("/v1/namespaces/default/documents", content=stream(),
                                      headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json()["status"] == 413
    assert sent <= SMALL_BODY_LIMIT // len(chunk) + 2  # stopped once the limit was passed


async def test_body_under_the_limit_passes(client: AsyncClient) -> None:
    text = "word " * (SMALL_BODY_LIMIT // 10)
    result = await client.upsert_documents([{"id": "big", "text": text}])
    assert result.upserted == 1


async def test_unexpected_failure_is_500_with_logged_request_id(
        client: AsyncClient, server_engine: Engine, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(server_engine, "namespaces", broken)
    with caplog.at_level(logging.ERROR, logger="contextd.server"):
        response = await client.http.get("/v1/namespaces")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    rid = response.headers["x-request-id"]
    assert response.json()["request_id"] == rid
    assert "disk on fire" not in response.text  # internals stay in the log
    logged = [r for r in caplog.records if rid in r.getMessage()]
    assert logged and logged[0].exc_info is not None


async def test_api_key_is_required_when_set(server_engine: Engine) -> None:
    app = create_app(server_engine, api_key="s3cret")
    async with app.router.lifespan_context(app):
        anonymous = await started_client(app, OpenAPIBook())
        with pytest.raises(Unauthorized) as caught:
            await anonymous.namespaces()
        assert "Authorization: Bearer <key>" in caught.value.detail
        assert (await anonymous.http.get("/healthz")).status_code == 200
        wrong = await started_client(app, OpenAPIBook(), api_key="guess")
        with pytest.raises(Unauthorized):
            await wrong.namespaces()
        keyed = await started_client(app, OpenAPIBook(), api_key="s3cret")
        assert await keyed.namespaces() == []
        for c in (anonymous, wrong, keyed):
            await c.aclose()


async def test_readyz_is_503_until_warm(app: FastAPI, book: OpenAPIBook) -> None:
    async with await started_client(app, book) as client:  # no lifespan: never warmed up
        response = await client.http.get("/readyz")
        assert response.status_code == 503
        assert response.json()["type"].endswith("/unavailable")
        assert (await client.http.get("/healthz")).json() == {"status": "ok"}
    async with app.router.lifespan_context(app), await started_client(app, book) as client:
        import anyio

        await anyio.to_thread.run_sync(app.state.warmed.wait, 30)
        assert (await client.http.get("/readyz")).json() == {
            "status": "ready", "embedder_runtime": "hash", "document_runtime": "hash"}
    # After shutdown the engine is closed: requests are refused as retryable, not crashed.
    async with await started_client(app, book) as client:
        with pytest.raises(Unavailable):
            await client.namespaces()


async def test_metrics_after_requests(client: AsyncClient) -> None:
    await client.upsert_documents([{"id": "d1", "text": "Solar panels convert light."},
                                   {"id": "d2", "text": "Wind turbines convert wind."}])
    await client.append_messages("s-9", [{"role": "user", "content": "hello"}])
    await client.assemble(query="how do solar panels work?", max_tokens=60, top_k=2,
                          session_id="s-9", query_type="qa")
    await client.http.get("/v1/sessions/missing-one")

    response = await client.http.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for name in ("contextd_http_request_duration_seconds_bucket",
                 "contextd_stage_duration_seconds_bucket", "contextd_prompt_tokens_total",
                 "contextd_dropped_items_total", "contextd_errors_total",
                 "contextd_assemble_requests_total", "contextd_ready",
                 "contextd_query_embedding_batches_total", "contextd_query_embeddings_total"):
        assert name in text, name
    assert 'contextd_assemble_requests_total{profile="default",query_type="qa"} 1.0' in text
    assert 'stage="retrieval"' in text and 'section="documents"' in text
    assert 'reason="over_budget"' in text  # 60 tokens cannot hold both documents
    # Routes are labelled by template, never by the raw path.
    assert 'route="/v1/sessions/{session_id}"' in text
    assert "missing-one" not in text
    assert 'contextd_errors_total{status="404",type="session-not-found"} 1.0' in text
