"""Every route through `AsyncClient` over the ASGI transport: results as from the Engine."""

from __future__ import annotations

import pytest

from contextd import (
    AsyncClient,
    DocumentNotFound,
    InvalidRequest,
    NamespaceNotFound,
    SessionNotFound,
)
from contextd.errors import Conflict

pytestmark = pytest.mark.anyio

DOCS = [
    {"id": "rrf", "title": "Fusion", "text": "Reciprocal rank fusion adds 1/(k+rank) scores.",
     "metadata": {"topic": "retrieval"}},
    {"id": "guides/mmr", "text": "Maximal marginal relevance trades relevance for diversity.",
     "metadata": {"topic": "ranking"}},
    {"id": "budget", "text": "Tokens are counted exactly with tiktoken encodings."},
]


async def test_documents_round_trip(client: AsyncClient) -> None:
    result = await client.upsert_documents(DOCS, namespace="docs")
    assert (result.namespace, result.upserted, result.unchanged) == ("docs", 3, 0)
    again = await client.upsert_documents(DOCS, namespace="docs")
    assert (again.upserted, again.unchanged) == (0, 3)

    stored = await client.get_document("guides/mmr", namespace="docs")
    assert stored.id == "guides/mmr"  # a '/' in an id survives the URL
    assert stored.metadata == {"topic": "ranking"} and stored.chunks == 1

    hits = (await client.search("reciprocal rank fusion", namespace="docs", top_k=2)).hits
    assert hits[0].id == "rrf"
    filtered = await client.search("relevance", namespace="docs",
                                   filters={"topic": "ranking"}, mode="lexical")
    assert [h.id for h in filtered.hits] == ["guides/mmr"]

    deleted = await client.delete_document("rrf", namespace="docs")
    assert deleted.deleted and deleted.chunks == 1
    with pytest.raises(DocumentNotFound):
        await client.get_document("rrf", namespace="docs")
    with pytest.raises(DocumentNotFound):
        await client.delete_document("rrf", namespace="docs")


async def test_namespaces_list_counts_and_delete(client: AsyncClient) -> None:
    await client.upsert_documents(DOCS, namespace="tenant-a")
    await client.append_messages("s1", [{"role": "user", "content": "hello"}],
                                 namespace="tenant-a")
    listed = {info.name: info for info in await client.namespaces()}
    assert (listed["tenant-a"].documents, listed["tenant-a"].chunks,
            listed["tenant-a"].sessions) == (3, 3, 1)

    assert await client.delete_namespace("tenant-a") is True
    assert "tenant-a" not in {info.name for info in await client.namespaces()}
    with pytest.raises(NamespaceNotFound):
        await client.delete_namespace("tenant-a")
    with pytest.raises(NamespaceNotFound):
        await client.search("fusion", namespace="tenant-a")


async def test_sessions_append_get_assemble_delete(client: AsyncClient) -> None:
    await client.upsert_documents(DOCS)
    appended = await client.append_messages("chat-1", [
        {"role": "user", "content": "How are scores fused?"},
        {"role": "assistant", "content": "With reciprocal rank fusion."}])
    assert (appended.appended, appended.turns) == (2, 2)

    session = await client.get_session("chat-1")
    assert [t.role for t in session.turns] == ["user", "assistant"]

    response = await client.assemble(query="what about diversity?", session_id="chat-1",
                                     max_tokens=600, system="Be brief.",
                                     messages=[{"role": "user", "content": "Thanks!"}])
    assert response.messages[0].content == "Be brief."
    assert response.messages[-1].content == "what about diversity?"
    assert response.usage.total <= 600
    assert len(response.history_turn_ids) == 3  # two appended before, one with the request
    assert {d.id for d in response.documents} <= {d["id"] for d in DOCS}

    assert await client.delete_session("chat-1") is True
    with pytest.raises(SessionNotFound):
        await client.get_session("chat-1")
    with pytest.raises(SessionNotFound):
        await client.delete_session("chat-1")


async def test_list_sessions(client: AsyncClient) -> None:
    assert [s.session_id for s in await client.list_sessions()] == []
    for session_id in ("older", "newer"):
        await client.append_messages(session_id, [{"role": "user", "content": session_id}])
    assert [s.session_id for s in await client.list_sessions()] == ["newer", "older"]
    await client.append_messages("other", [{"role": "user", "content": "x"}], namespace="b")
    assert [s.session_id for s in await client.list_sessions("b")] == ["other"]
    await client.delete_session("older")
    assert [s.session_id for s in await client.list_sessions()] == ["newer"]
    with pytest.raises(NamespaceNotFound):
        await client.list_sessions("nowhere")


async def test_sessions_of_a_user_over_http(client: AsyncClient) -> None:
    await client.append_messages("ana-1", [{"role": "user", "content": "My dog is called "
                                            "Biscuit."}], user_id="ana")
    await client.append_messages("ana-2", [{"role": "user", "content": "Hello again."}],
                                 user_id="ana")
    assert (await client.get_session("ana-1")).user_id == "ana"
    assert {s.session_id: s.user_id for s in await client.list_sessions()} == {
        "ana-1": "ana", "ana-2": "ana"}
    with pytest.raises(Conflict, match="belongs to user_id 'ana'"):
        await client.append_messages("ana-1", [{"role": "user", "content": "x"}],
                                     user_id="bob")
    response = await client.assemble(query="What is my dog called?", session_id="ana-2",
                                     max_tokens=500, top_k=0, recall_scope="user")
    assert [(t.session_id, t.turn_id) for t in response.recalled_other_turns] == [
        ("ana-1", "turn-1")]
    assert any("Biscuit" in (m.content or "") for m in response.messages)
    await client.append_messages("loose", [{"role": "user", "content": "x"}])
    with pytest.raises(InvalidRequest, match="set user_id"):
        await client.assemble(query="q", session_id="loose", max_tokens=500,
                              recall_scope="user")


async def test_assembled_documents_carry_their_retrieval_ranks(client: AsyncClient) -> None:
    await client.upsert_documents(DOCS)
    query = "how are scores fused?"
    hits = {(h.id, h.chunk): h for h in (await client.search(query, top_k=10)).hits}
    documents = (await client.assemble(query=query, max_tokens=2000)).documents
    assert documents
    for document in documents:
        hit = hits[(document.id, document.chunk)]
        assert (document.dense_rank, document.lexical_rank) == (hit.dense_rank, hit.lexical_rank)
    assert any(d.dense_rank is not None for d in documents)
    assert any(d.lexical_rank is not None for d in documents)


async def test_unknown_session_namespace_is_404(client: AsyncClient) -> None:
    with pytest.raises(NamespaceNotFound):
        await client.get_session("chat-1", namespace="nowhere")


async def test_duplicate_turn_id_is_409(client: AsyncClient) -> None:
    turn = {"role": "user", "content": "hi", "id": "t1"}
    await client.append_messages("chat-2", [turn])
    with pytest.raises(Conflict) as caught:
        await client.append_messages("chat-2", [turn])
    assert caught.value.status == 409


async def test_invalid_bodies_are_422_with_each_error(client: AsyncClient) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await client.assemble(query="no budget")
    assert "max_tokens" in caught.value.detail
    with pytest.raises(InvalidRequest) as caught:
        await client.upsert_documents([{"id": "bad id!", "text": ""}])
    locs = [tuple(e["loc"]) for e in caught.value.extra["errors"]]
    assert ("body", "documents", "0", "id") in locs
    assert ("body", "documents", "0", "text") in locs


async def test_raw_bad_requests_are_problem_details(client: AsyncClient) -> None:
    http = client.http
    cases = [
        (await http.post("/v1/assemble", content=b"{not json",
                         headers={"content-type": "application/json"}), 422, "invalid-request"),
        (await http.post("/v1/namespaces/Bad_NS/search", json={"query": "x"}), 422,
         "invalid-request"),
        (await http.get("/v1/sessions/s1", params={"namespace": "UPPER"}), 422,
         "invalid-request"),
        (await http.get("/v1/no-such-route"), 404, "not-found"),
        (await http.put("/v1/assemble", json={}), 405, "method-not-allowed"),
    ]
    for response, status, slug in cases:
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert {"type", "title", "status", "detail"} <= set(body)
        assert body["status"] == status and body["type"].endswith("/" + slug)
        assert response.headers["x-request-id"]


async def test_request_ids(client: AsyncClient) -> None:
    first = await client.http.get("/healthz")
    second = await client.http.get("/healthz")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    echoed = await client.http.get("/healthz", headers={"X-Request-ID": "trace-42"})
    assert echoed.headers["x-request-id"] == "trace-42"
    unsafe = await client.http.get("/healthz", headers={"X-Request-ID": "a b\tc"})
    assert unsafe.headers["x-request-id"] != "a b\tc"
