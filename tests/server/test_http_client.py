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


def test_client_does_not_retry_non_idempotent_calls_on_503() -> None:
    # A 503 may come after part of the work (an assemble that stored its turns, then met a
    # shutdown), so calls that write turns are not repeated; idempotent ones are.
    answer = httpx.Response(200, json={"namespace": "default", "session_id": "s",
                                       "appended": 1, "turn_ids": ["t"], "turns": 1})
    make, seen = scripted(problem(503, "unavailable"), answer)
    with pytest.raises(Unavailable):
        make().append_messages("s", [{"role": "user", "content": "hi"}])
    assert len(seen) == 1
    make, seen = scripted(problem(503, "unavailable"), problem(503, "unavailable"))
    with pytest.raises(Unavailable):
        make(retries=1).assemble(query="q", max_tokens=100, session_id="s",
                                 messages=[{"role": "user", "content": "hi"}])
    assert len(seen) == 1


def test_a_lost_answer_is_not_retried_for_appends() -> None:
    make, seen = scripted(httpx.ReadTimeout("slow"))
    with pytest.raises(httpx.ReadTimeout):
        make().append_messages("s", [{"role": "user", "content": "hi"}])
    assert len(seen) == 1  # the turn may have been stored: repeating could store it twice


def test_assemble_with_messages_is_not_retried_but_without_is() -> None:
    make, seen = scripted(httpx.RemoteProtocolError("reset"))
    with pytest.raises(httpx.RemoteProtocolError):
        make().assemble(query="q", max_tokens=100, session_id="s",
                        messages=[{"role": "user", "content": "hi"}])
    assert len(seen) == 1
    make, seen = scripted(httpx.RemoteProtocolError("reset"), httpx.ReadTimeout("slow"),
                          httpx.Response(200, json=NS))
    assert make().namespaces()[0].chunks == 2 and len(seen) == 3


def test_gateway_errors_are_retried_for_idempotent_calls_only() -> None:
    make, seen = scripted(httpx.Response(502), httpx.Response(200, json=NS))
    assert make().namespaces()[0].name == "default" and len(seen) == 2
    make, seen = scripted(httpx.Response(504))
    with pytest.raises(ProblemError):
        make().append_messages("s", [{"role": "user", "content": "hi"}])
    assert len(seen) == 1


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
