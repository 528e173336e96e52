"""The semantic cache over HTTP: cache blocks, answers, metrics, batch assembly."""

from __future__ import annotations

import re

import anyio
import pytest
from conftest import SMALL_BODY_LIMIT, started_client
from openapi_check import OpenAPIBook

from contextd import (
    AnswerNotFound,
    AsyncClient,
    BudgetTooSmall,
    Client,
    Engine,
    Forbidden,
    InvalidRequest,
)
from contextd.auth import KeyStore
from contextd.server import create_app

pytestmark = pytest.mark.anyio

DOCS = [{"id": "refunds", "text": "Refunds are issued within 14 days of a return."},
        {"id": "shipping", "text": "Shipping takes 3 to 5 working days."}]


def metric(text: str, outcome: str, reason: str) -> float:
    found = re.search(rf'^contextd_cache_lookups_total\{{outcome="{outcome}",'
                      rf'reason="{reason}"\}} (\S+)$', text, flags=re.M)
    assert found, (outcome, reason)
    return float(found.group(1))


async def test_a_stored_answer_comes_back_with_a_later_hit(client: AsyncClient) -> None:
    await client.upsert_documents(DOCS)
    first = await client.assemble(query="How long do refunds take?", max_tokens=500)
    assert not first.cache.hit and first.assembly_id
    stored = await client.put_answer(first.assembly_id, "Within 14 days.")
    assert stored.assembly_id == first.assembly_id and stored.namespace == "default"
    hit = await client.assemble(query="how long do refunds take", max_tokens=500)
    assert hit.cache.hit and hit.cache.similarity == 1.0
    assert hit.cache.answer == "Within 14 days." and hit.assembly_id == first.assembly_id
    with pytest.raises(AnswerNotFound, match="assemble again"):
        await client.put_answer("f" * 32, "Within 14 days.")
    raw = await client.http.put("/v1/namespaces/default/answers/" + first.assembly_id,
                                json={"answer": ""})
    assert raw.status_code == 422


async def test_cache_lookups_are_counted_by_outcome_and_reason(client: AsyncClient) -> None:
    await client.upsert_documents(DOCS)
    before = (await client.http.get("/metrics")).text
    assert metric(before, "miss", "no_entry") == 0
    await client.assemble(query="shipping time", max_tokens=500)
    await client.assemble(query="Shipping time?", max_tokens=500)
    await client.assemble(query="shipping time", max_tokens=500, cache=False)
    await client.assemble_batch([{"query": "shipping time", "max_tokens": 500}])
    text = (await client.http.get("/metrics")).text
    assert metric(text, "miss", "no_entry") == 1
    assert metric(text, "hit", "exact") == 2
    assert metric(text, "miss", "disabled") == 1
    assert metric(text, "hit", "similar") == 0 and metric(text, "miss", "guard") == 0
    assert re.search(r"^contextd_cache_entries 1\.0$", text, flags=re.M)


async def test_batch_results_in_order_with_errors_in_place(client: AsyncClient) -> None:
    await client.upsert_documents(DOCS)
    results = await client.assemble_batch([
        {"query": "refunds", "max_tokens": 500},
        {"query": "refunds", "max_tokens": 2},
        {"query": "shipping", "max_tokens": 500, "top_k": "many"},
        {"query": "shipping", "max_tokens": 500},
    ])
    assert [type(r).__name__ for r in results] == [
        "AssembleResponse", "BudgetTooSmall", "InvalidRequest", "AssembleResponse"]
    assert isinstance(results[1], BudgetTooSmall)
    assert results[0].messages[-1].content == "refunds"
    assert results[3].messages[-1].content == "shipping"
    raw = await client.http.post("/v1/namespaces/default/assemble/batch", json={
        "requests": [{"query": "refunds", "max_tokens": 2}]})
    item = raw.json()["results"][0]
    assert raw.status_code == 200 and item["status"] == 422
    assert item["type"].endswith("/budget-too-small") and "max_tokens" in item["detail"]


async def test_more_than_batch_limit_is_a_422_saying_the_limit(client: AsyncClient) -> None:
    with pytest.raises(InvalidRequest, match=r"at most 32 \(batch_limit\)"):
        await client.assemble_batch([{"query": "q", "max_tokens": 500}] * 33)
    raw = await client.http.post("/v1/namespaces/default/assemble/batch", json={"requests": []})
    assert raw.status_code == 422


async def test_a_read_key_cannot_store_turns_or_answers(server_engine: Engine) -> None:
    server_engine.upsert_documents(DOCS, namespace="acme")
    store = KeyStore(server_engine.settings.data_dir)
    reader = store.create("read", ["acme"]).secret
    store.close()
    app = create_app(server_engine, max_body_bytes=SMALL_BODY_LIMIT)
    async with app.router.lifespan_context(app):
        await anyio.to_thread.run_sync(app.state.warmed.wait, 30)
        async with await started_client(app, OpenAPIBook(), api_key=reader) as client:
            results = await client.assemble_batch([
                {"query": "refunds", "max_tokens": 500},
                {"query": "refunds", "max_tokens": 500, "session_id": "s1",
                 "messages": [{"role": "user", "content": "hello"}]},
            ], namespace="acme")
            assert results[0].namespace == "acme" and isinstance(results[1], Forbidden)
            with pytest.raises(Forbidden):
                await client.put_answer(results[0].assembly_id, "42", namespace="acme")
    assert server_engine.list_sessions("acme") == []


def test_the_sync_client_has_the_same_calls(server_engine: Engine) -> None:
    server_engine.upsert_documents(DOCS)
    with Client.for_app(create_app(server_engine), retries=0) as client:
        first, second = client.assemble_batch([{"query": "refunds", "max_tokens": 500},
                                               {"query": "shipping", "max_tokens": 500}])
        client.put_answer(second.assembly_id, "3 to 5 days.")
        assert client.assemble(query="shipping", max_tokens=500).cache.answer == "3 to 5 days."
        with pytest.raises(AnswerNotFound):
            client.put_answer("0" * 32, "x")
