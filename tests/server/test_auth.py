"""API keys per tenant: 401 without a valid key, 404 outside the key's namespaces, 403 for a
role too low; the key checked before the body is read; two tenants isolated on every route."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from conftest import SMALL_BODY_LIMIT, started_client
from fastapi import FastAPI
from openapi_check import OpenAPIBook

from contextd import AsyncClient, Engine, NamespaceNotFound
from contextd.auth import KeyRing, KeySpec, KeyStore, hash_secret
from contextd.server import create_app

pytestmark = pytest.mark.anyio

RANK = {"read": 0, "write": 1, "admin": 2}
TEXT = "Solar panels convert sunlight into electricity with photovoltaic cells."
# (method, path, json body, role needed, status when allowed); {ns} is the namespace.
ROUTES: list[tuple[str, str, dict[str, Any] | None, str, int]] = [
    ("POST", "/v1/namespaces/{ns}/search", {"query": "solar"}, "read", 200),
    ("POST", "/v1/namespaces/{ns}/assemble", {"query": "solar", "max_tokens": 500}, "read", 200),
    ("POST", "/v1/namespaces/{ns}/assemble", {"query": "solar", "max_tokens": 500,
     "session_id": "s1", "messages": [{"role": "user", "content": "more"}]}, "write", 200),
    ("POST", "/v1/assemble", {"namespace": "{ns}", "query": "solar", "max_tokens": 500},
     "read", 200),
    ("POST", "/v1/namespaces/{ns}/assemble/batch",
     {"requests": [{"query": "solar", "max_tokens": 500}]}, "read", 200),
    # An id never assembled: a key that may write gets to the cache, which has no such entry.
    ("PUT", "/v1/namespaces/{ns}/answers/" + "0" * 32, {"answer": "42"}, "write", 404),
    ("POST", "/v1/namespaces/{ns}/documents", {"documents": [{"id": "d2", "text": TEXT}]},
     "write", 200),
    ("GET", "/v1/namespaces/{ns}/documents/d1", None, "read", 200),
    ("DELETE", "/v1/namespaces/{ns}/documents/d1", None, "write", 200),
    ("POST", "/v1/namespaces/{ns}/sessions/s1/messages",
     {"messages": [{"role": "user", "content": "hi"}]}, "write", 200),
    ("GET", "/v1/namespaces/{ns}/sessions/s1", None, "read", 200),
    ("DELETE", "/v1/namespaces/{ns}/sessions/s1", None, "write", 204),
    ("POST", "/v1/sessions/s1/messages?namespace={ns}",
     {"messages": [{"role": "user", "content": "hi"}]}, "write", 200),
    ("GET", "/v1/sessions/s1?namespace={ns}", None, "read", 200),
    ("DELETE", "/v1/sessions/s1?namespace={ns}", None, "write", 204),
    ("DELETE", "/v1/namespaces/{ns}", None, "admin", 204),
]


def _fill(value: Any, ns: str) -> Any:
    if isinstance(value, str):
        return value.replace("{ns}", ns)
    if isinstance(value, dict):
        return {k: _fill(v, ns) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ns) for v in value]
    return value


def _seed(engine: Engine, namespace: str) -> None:
    engine.upsert_documents([{"id": "d1", "text": TEXT}], namespace=namespace)
    engine.append_messages("s1", [{"role": "user", "content": "What about solar?"}],
                           namespace=namespace)


@pytest.fixture
def secrets_by_role(server_engine: Engine) -> dict[str, str]:
    store = KeyStore(server_engine.settings.data_dir)
    made = {role: store.create(role, ["acme-*"]).secret for role in RANK}
    made["beta"] = store.create("admin", ["beta"]).secret
    store.close()
    return made


@pytest.fixture
async def keyed_app(server_engine: Engine, secrets_by_role: dict[str, str]
                    ) -> AsyncIterator[FastAPI]:
    app = create_app(server_engine, max_body_bytes=SMALL_BODY_LIMIT)
    async with app.router.lifespan_context(app):
        await anyio.to_thread.run_sync(app.state.warmed.wait, 30)
        yield app


async def _client(app: FastAPI, book: OpenAPIBook, key: str | None) -> AsyncClient:
    return await started_client(app, book, api_key=key)


async def test_role_matrix_over_every_route(keyed_app: FastAPI, server_engine: Engine,
                                            secrets_by_role: dict[str, str]) -> None:
    book = OpenAPIBook()
    for role in RANK:
        async with await _client(keyed_app, book, secrets_by_role[role]) as client:
            for method, path, body, needed, ok in ROUTES:
                _seed(server_engine, "acme-1")
                response = await client.http.request(method, _fill(path, "acme-1"),
                                                      json=_fill(body, "acme-1"),
                                                      headers=client.headers)
                expected = ok if RANK[role] >= RANK[needed] else 403
                assert response.status_code == expected, (role, method, path, response.text)
                if expected == 403:
                    assert response.json()["type"].endswith("/forbidden")
    schema = keyed_app.openapi()
    assert book.check(schema) > 0


async def test_no_key_or_wrong_key_is_401_everywhere_but_health(
        keyed_app: FastAPI, server_engine: Engine) -> None:
    _seed(server_engine, "acme-1")
    book = OpenAPIBook()
    for key in (None, "guess", "ctxd_000000000000_guess"):
        async with await _client(keyed_app, book, key) as client:
            for method, path, body, _, _ in ROUTES:
                response = await client.http.request(method, _fill(path, "acme-1"),
                                                      json=_fill(body, "acme-1"),
                                                      headers=client.headers)
                assert response.status_code == 401, (key, method, path)
                assert response.headers["www-authenticate"] == "Bearer"
            for path in ("/v1/namespaces", "/metrics", "/docs", "/redoc", "/openapi.json",
                         "/", "/v1/nowhere"):
                response = await client.http.get(path, headers=client.headers)
                assert response.status_code == 401, path
            assert (await client.http.get("/healthz")).status_code == 200
            assert (await client.http.get("/readyz")).status_code == 200
    assert server_engine.get_document("d1", namespace="acme-1").id == "d1"


async def test_outside_the_keys_namespaces_is_404_for_every_role(
        keyed_app: FastAPI, server_engine: Engine, secrets_by_role: dict[str, str]) -> None:
    book = OpenAPIBook()
    _seed(server_engine, "beta")
    for role in RANK:
        async with await _client(keyed_app, book, secrets_by_role[role]) as client:
            for method, path, body, _, _ in ROUTES:
                response = await client.http.request(method, _fill(path, "beta"),
                                                      json=_fill(body, "beta"),
                                                      headers=client.headers)
                assert response.status_code == 404, (role, method, path)
                assert response.json()["type"].endswith("/namespace-not-found")
    # Nothing was touched: beta still has its document and its one turn.
    assert server_engine.get_document("d1", namespace="beta").id == "d1"
    assert len(server_engine.get_session("s1", namespace="beta").turns) == 1
    assert book.check(keyed_app.openapi()) > 0


async def test_namespace_list_shows_only_the_keys_namespaces(
        keyed_app: FastAPI, server_engine: Engine, secrets_by_role: dict[str, str]) -> None:
    for name in ("acme-1", "acme-2", "beta", "acmex"):
        _seed(server_engine, name)
    async with await _client(keyed_app, OpenAPIBook(), secrets_by_role["read"]) as client:
        assert sorted(n.name for n in await client.namespaces()) == ["acme-1", "acme-2"]
    async with await _client(keyed_app, OpenAPIBook(), secrets_by_role["beta"]) as client:
        assert [n.name for n in await client.namespaces()] == ["beta"]


async def test_metrics_and_docs_need_an_admin_key(
        keyed_app: FastAPI, secrets_by_role: dict[str, str]) -> None:
    transport = httpx.ASGITransport(app=keyed_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://contextd") as http:
        for path in ("/metrics", "/docs", "/redoc", "/openapi.json"):
            for role, status in (("read", 403), ("write", 403), ("admin", 200)):
                response = await http.get(path, headers={
                    "Authorization": f"Bearer {secrets_by_role[role]}"})
                assert response.status_code == status, (path, role)


async def test_metrics_and_docs_can_be_configured_open(
        make_engine: Any, tmp_path: Any) -> None:
    engine = make_engine(tmp_path / "open", metrics_open=True, docs_open=True,
                         api_keys=[KeySpec(id="k", hash=hash_secret("s3cret"), role="read",
                                           namespaces=["*"])])
    app = create_app(engine)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://contextd") as http:
        for path in ("/metrics", "/openapi.json", "/docs"):
            assert (await http.get(path)).status_code == 200, path
        assert (await http.get("/v1/namespaces")).status_code == 401
        ok = await http.get("/v1/namespaces", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200


async def test_without_keys_everything_stays_open(client: AsyncClient) -> None:
    assert (await client.http.get("/metrics")).status_code == 200
    assert (await client.http.get("/openapi.json")).status_code == 200
    assert await client.namespaces() == []


async def test_wrong_key_gets_401_before_the_body_is_read(keyed_app: FastAPI) -> None:
    sent = 0

    async def stream() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(200):  # 800 KiB, far over the 64 KiB limit
            sent += 1
            yield b"x" * 4096

    transport = httpx.ASGITransport(app=keyed_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://contextd") as http:
        chunked = await http.post("/v1/namespaces/acme-1/documents", content=stream(),
                                  headers={"Authorization": "Bearer guess",
                                           "content-type": "application/json"})
        declared = await http.post("/v1/namespaces/acme-1/documents", content=b"{}",
                                   headers={"Authorization": "Bearer guess",
                                            "content-length": str(SMALL_BODY_LIMIT * 100),
                                            "content-type": "application/json"})
    assert chunked.status_code == 401 and chunked.json()["type"].endswith("/unauthorized")
    assert sent <= 1  # the first chunk at most, pulled by the transport itself
    assert declared.status_code == 401


async def test_legacy_single_key_is_admin_over_every_namespace(server_engine: Engine) -> None:
    _seed(server_engine, "anything")
    app = create_app(server_engine, keys=KeyRing(legacy_key="s3cret"))
    async with await _client(app, OpenAPIBook(), "s3cret") as client:
        assert [n.name for n in await client.namespaces()] == ["anything"]
        assert await client.delete_namespace("anything") is True
        assert (await client.http.get("/metrics", headers=client.headers)).status_code == 200


async def test_revoked_key_is_401(keyed_app: FastAPI, server_engine: Engine) -> None:
    store = KeyStore(server_engine.settings.data_dir)
    made = store.create("read", ["acme-*"])
    async with await _client(keyed_app, OpenAPIBook(), made.secret) as client:
        listed = await client.http.get("/v1/namespaces", headers=client.headers)
        assert listed.status_code == 200
        assert store.revoke(made.key.id)
        refused = await client.http.get("/v1/namespaces", headers=client.headers)
        assert refused.status_code == 401
    store.close()


async def test_max_namespaces_limits_what_a_key_creates(server_engine: Engine) -> None:
    spec = KeySpec(id="k", hash=hash_secret("s3cret"), role="write", namespaces=["acme-*"],
                   max_namespaces=2)
    app = create_app(server_engine, keys=KeyRing([spec]))
    docs = [{"id": "a", "text": TEXT}]
    async with await _client(app, OpenAPIBook(), "s3cret") as client:
        await client.upsert_documents(docs, namespace="acme-1")
        await client.upsert_documents(docs, namespace="acme-2")
        await client.upsert_documents(docs, namespace="acme-2")  # existing: still fine
        response = await client.http.post("/v1/namespaces/acme-3/documents",
                                          json={"documents": docs}, headers=client.headers)
        assert response.status_code == 403
        assert "delete one first" in response.json()["detail"]
    assert not server_engine.registry.exists("acme-3")


async def test_two_tenants_with_identical_data_are_isolated(
        keyed_app: FastAPI, server_engine: Engine, secrets_by_role: dict[str, str]) -> None:
    docs = [{"id": "d1", "text": TEXT}, {"id": "d2", "text": "Wind turbines spin."}]
    turn = [{"role": "user", "content": "Tell me about solar panels."}]
    async with await _client(keyed_app, OpenAPIBook(), secrets_by_role["admin"]) as a, \
            await _client(keyed_app, OpenAPIBook(), secrets_by_role["beta"]) as b:
        first = await a.upsert_documents(docs, namespace="acme-1")
        second = await b.upsert_documents(docs, namespace="beta")
        # No cache signal across tenants: beta's identical texts count as embedded.
        assert (first.embedded, first.cached) == (second.embedded, second.cached) == (2, 0)
        await a.append_messages("s1", turn, namespace="acme-1")
        await b.append_messages("s1", turn, namespace="beta")
        await b.append_messages("s1", turn, namespace="beta")

        assert len((await a.get_session("s1", namespace="acme-1")).turns) == 1
        assert len((await b.get_session("s1", namespace="beta")).turns) == 2
        for call in (a.get_document("d1", namespace="beta"),
                     a.get_session("s1", namespace="beta"),
                     a.search("solar", namespace="beta"),
                     a.delete_namespace("beta"),
                     a.assemble({"namespace": "beta", "query": "solar", "max_tokens": 400})):
            with pytest.raises(NamespaceNotFound):
                await call
        with pytest.raises(NamespaceNotFound):
            await b.get_document("d1", namespace="acme-1")

        await a.delete_document("d1", namespace="acme-1")
        hits = (await b.search("solar", namespace="beta")).hits
        assert {h.id for h in hits} >= {"d1"}
        answer = await b.assemble({"namespace": "beta", "query": "solar", "max_tokens": 400,
                                   "session_id": "s1"})
        assert answer.usage.history > 0
        assert await a.delete_namespace("acme-1") is True
        assert (await b.get_document("d1", namespace="beta")).id == "d1"
        assert [n.name for n in await b.namespaces()] == ["beta"]
