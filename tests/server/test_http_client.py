"""The clients' own behaviour: retries and idempotency, error mapping, headers, and the
sync client over an in-process app."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from contextd import (
    AsyncClient,
    Client,
    DocumentNotFound,
    Engine,
    Forbidden,
    InvalidRequest,
    NamespaceInfo,
    NotFound,
    ServiceUnavailable,
    SessionNotFound,
    Unauthorized,
    Unavailable,
)
from contextd.client import ProblemError, error_from_response
from contextd.server import create_app

NS = [{"name": "default", "documents": 1, "chunks": 2, "sessions": 0, "vector_index": "flat"}]


def scripted(*steps: object) -> tuple[Callable[..., Client], list[httpx.Request]]:
    """A client whose transport plays `steps` in order: a Response, or an exception to raise."""
    seen: list[httpx.Request] = []
    queue = list(steps)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        step = queue.pop(0)
        if isinstance(step, Exception):
            raise step
        assert isinstance(step, httpx.Response)
        return step

    def make(**kwargs: object) -> Client:
        kwargs.setdefault("backoff", 0.0)
        kwargs.setdefault("base_url", "http://svc")
        return Client(transport=httpx.MockTransport(handle), **kwargs)  # type: ignore

    return make, seen


def problem(status: int, slug: str) -> httpx.Response:
    return httpx.Response(status, json={"type": f"https://contextd.dev/problems/{slug}",
                                        "title": slug, "status": status, "detail": slug},
                          headers={"content-type": "application/problem+json"})


def test_connect_errors_are_retried_for_any_call() -> None:
    make, seen = scripted(httpx.ConnectError("refused"), httpx.ConnectError("refused"),
                          httpx.Response(200, json={"namespace": "default", "session_id": "s",
                                                    "appended": 1, "turn_ids": ["t"],
                                                    "turns": 1}))
    result = make().append_messages("s", [{"role": "user", "content": "hi"}])
    assert result.turn_ids == ["t"] and len(seen) == 3


APPENDED = {"namespace": "default", "session_id": "s", "appended": 1, "turn_ids": ["t"],
            "turns": 1}
UPSERTED = {"namespace": "default", "upserted": 1, "unchanged": 0, "chunks": 1, "embedded": 1,
            "cached": 0}


def keys_sent(seen: list[httpx.Request]) -> list[str | None]:
    return [r.headers.get("idempotency-key") for r in seen]


def test_client_retries_writes_under_one_idempotency_key() -> None:
    # A 503 may come after part of the work (an assemble that stored its turns, then met a
    # shutdown): the repeat carries the first attempt's key, so the server stores it once.
    make, seen = scripted(problem(503, "unavailable"), httpx.Response(200, json=APPENDED))
    assert make().append_messages("s", [{"role": "user", "content": "hi"}]).turn_ids == ["t"]
    assert len(seen) == 2 and keys_sent(seen)[0] == keys_sent(seen)[1] is not None
    make, seen = scripted(httpx.ReadTimeout("slow"), httpx.Response(200, json=UPSERTED))
    assert make().upsert_documents([{"id": "a", "text": "Alpha."}]).upserted == 1
    assert len(seen) == 2 and keys_sent(seen)[0] == keys_sent(seen)[1] is not None


def test_each_logical_write_gets_its_own_idempotency_key() -> None:
    make, seen = scripted(httpx.Response(200, json=APPENDED), httpx.Response(200, json=APPENDED))
    client = make()
    client.append_messages("s", [{"role": "user", "content": "hi"}])
    client.append_messages("s", [{"role": "user", "content": "hi"}])
    first, second = keys_sent(seen)
    assert first and second and first != second


def test_caller_chosen_idempotency_key_is_sent() -> None:
    make, seen = scripted(httpx.Response(200, json=APPENDED))
    make().append_messages("s", [{"role": "user", "content": "hi"}], idempotency_key="order-7")
    assert keys_sent(seen) == ["order-7"]


def test_assemble_with_messages_is_retried_with_a_key_and_without_needs_none() -> None:
    make, seen = scripted(httpx.RemoteProtocolError("reset"), problem(503, "unavailable"))
    with pytest.raises(Unavailable):
        make(retries=1).assemble(query="q", max_tokens=100, session_id="s",
                                 messages=[{"role": "user", "content": "hi"}])
    assert len(seen) == 2 and keys_sent(seen)[0] == keys_sent(seen)[1] is not None
    make, seen = scripted(problem(503, "unavailable"))
    with pytest.raises(Unavailable):
        make(retries=0).assemble(query="q", max_tokens=100)
    assert keys_sent(seen) == [None]  # a pure read: nothing to guard
    make, seen = scripted(httpx.RemoteProtocolError("reset"), httpx.ReadTimeout("slow"),
                          httpx.Response(200, json=NS))
    assert make().namespaces()[0].chunks == 2 and len(seen) == 3


def test_gateway_errors_are_retried() -> None:
    make, seen = scripted(httpx.Response(502), httpx.Response(200, json=NS))
    assert make().namespaces()[0].name == "default" and len(seen) == 2
    make, seen = scripted(httpx.Response(504), httpx.Response(200, json=APPENDED))
    assert make().append_messages("s", [{"role": "user", "content": "hi"}]).appended == 1
    assert len(seen) == 2


def test_retries_are_bounded() -> None:
    make, seen = scripted(*[problem(503, "unavailable")] * 3)
    with pytest.raises(ServiceUnavailable) as caught:
        make(retries=2).namespaces()
    assert len(seen) == 3
    assert isinstance(caught.value, Unavailable) and caught.value.detail == "unavailable"


def test_connection_refused_after_retries_is_service_unavailable() -> None:
    make, seen = scripted(*[httpx.ConnectError("[Errno 111] Connection refused")] * 2)
    with pytest.raises(ServiceUnavailable) as caught:
        make(retries=1).namespaces()
    assert len(seen) == 2
    assert "cannot connect to http://svc" in caught.value.detail
    assert "Connection refused" in caught.value.detail
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


def test_a_down_server_is_service_unavailable() -> None:
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with Client(f"http://127.0.0.1:{port}", retries=1, backoff=0.0) as client, \
            pytest.raises(ServiceUnavailable):
        client.namespaces()


@pytest.mark.anyio
async def test_async_client_raises_service_unavailable_too() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    async with AsyncClient("http://svc", transport=httpx.MockTransport(refuse),
                           retries=0) as client:
        with pytest.raises(ServiceUnavailable):
            await client.namespaces()


def test_url_and_key_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTEXTD_URL", "http://ctx.internal:9000/")
    monkeypatch.setenv("CONTEXTD_API_KEY", "from-env")
    make, seen = scripted(httpx.Response(200, json=NS))
    make(base_url=None).namespaces()
    assert str(seen[0].url) == "http://ctx.internal:9000/v1/namespaces"
    assert seen[0].headers["authorization"] == "Bearer from-env"
    # Arguments win over the environment; "" sends no key at all.
    explicit = Client("http://other", api_key="")
    assert explicit.base_url == "http://other" and "Authorization" not in explicit.headers
    assert Client(api_key="arg").headers["Authorization"] == "Bearer arg"


def test_default_url_without_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONTEXTD_URL", raising=False)
    monkeypatch.delenv("CONTEXTD_API_KEY", raising=False)
    client = Client()
    assert client.base_url == "http://127.0.0.1:8000" and "Authorization" not in client.headers


def test_client_errors_are_not_retried() -> None:
    make, seen = scripted(problem(404, "document-not-found"))
    with pytest.raises(DocumentNotFound):
        make().get_document("x")
    assert len(seen) == 1


def test_problem_types_map_to_typed_errors() -> None:
    assert isinstance(error_from_response(problem(404, "session-not-found")), SessionNotFound)
    assert isinstance(error_from_response(problem(404, "something-new")), NotFound)
    error = error_from_response(problem(422, "invalid-request"))
    assert isinstance(error, InvalidRequest) and error.detail == "invalid-request"
    unauthorized = error_from_response(problem(401, "unauthorized"))
    assert isinstance(unauthorized, Unauthorized) and unauthorized.detail == "unauthorized"
    assert isinstance(error_from_response(httpx.Response(401)), Unauthorized)
    assert isinstance(error_from_response(problem(403, "forbidden")), Forbidden)
    assert isinstance(error_from_response(problem(503, "unavailable")), ServiceUnavailable)
    internal = error_from_response(problem(500, "internal"))
    assert type(internal) is ProblemError and internal.status == 500
    bare = error_from_response(httpx.Response(502, text="bad gateway"))
    assert isinstance(bare, ProblemError) and bare.detail == "bad gateway"


def test_request_shape_and_headers() -> None:
    make, seen = scripted(httpx.Response(204))
    assert make(api_key="k1").delete_session("chat/1", namespace="team-a") is True
    request = seen[0]
    assert request.method == "DELETE"
    # Every tenant-scoped call addresses its namespace in the path.
    assert request.url.raw_path == b"/v1/namespaces/team-a/sessions/chat%2F1"
    assert request.headers["authorization"] == "Bearer k1"


def test_sync_client_over_an_in_process_app(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine(batch_wait_ms=1)
    app = create_app(engine)
    with Client.for_app(app) as client:
        assert app.state.warmed.wait(30)  # startup ran
        client.upsert_documents([{"id": "a", "text": "Alpha particles are helium nuclei."}])
        assert client.search("helium nuclei").hits[0].id == "a"
        listed = client.namespaces()
        assert listed == engine.namespaces()  # the same models as in-process
        assert isinstance(listed[0], NamespaceInfo) and listed[0].documents == 1
    assert app.state.engine_closed  # shutdown ran and closed the engine
