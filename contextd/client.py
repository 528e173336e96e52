"""HTTP clients with the `Engine`'s method names, signatures and return models.

`Client` (sync) and `AsyncClient` share `BaseClient`, which builds every call and decodes
every answer; the two subclasses only send (model: httpx `_client.py`). Swapping
`Engine(...)` for `Client(url)` keeps the calling code as it is:

    >>> from contextd import Client
    >>> with Client("http://127.0.0.1:8000") as client:  # doctest: +SKIP
    ...     client.upsert_documents([{"id": "faq", "text": "contextd packs prompts."}])
    ...     client.assemble(query="What does contextd do?", max_tokens=1000).usage.total

Problem-details answers raise the matching `contextd.errors` exception (read back by
`contextd.remote_errors`). Connection failures and 503s are retried with capped, jittered
exponential backoff; other failures after the request may have reached the server are retried
only for idempotent calls.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter

from contextd.models import (
    AppendResult,
    AssembleRequest,
    AssembleResponse,
    ChatMessage,
    DeleteResult,
    Document,
    NamespaceInfo,
    SearchRequest,
    SearchResponse,
    SessionInfo,
    StoredDocument,
    UpsertResult,
)
from contextd.remote_errors import ProblemError as ProblemError  # re-exported: part of the API
from contextd.remote_errors import error_from_response

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
_NAMESPACES = TypeAdapter(list[NamespaceInfo])


@dataclass(frozen=True)
class Call:
    """One API call: what to send, whether it may be repeated, and how to read the answer."""

    method: str
    path: str
    json: Any = None
    params: dict[str, str] = field(default_factory=dict)
    idempotent: bool = True
    returns: Any = None  # a model class, a TypeAdapter, or None for "no body: True"


def _dump(item: BaseModel | dict[str, Any]) -> Any:
    if isinstance(item, BaseModel):
        return item.model_dump(mode="json", exclude_unset=True)
    return item


def _seg(value: str) -> str:
    return quote(value, safe="")


class BaseClient:
    """What `Client` and `AsyncClient` share: the calls, the retry policy, the decoding."""

    def __init__(self, base_url: str, api_key: str | None = None,
                 timeout: float | httpx.Timeout = DEFAULT_TIMEOUT, *, retries: int = 3,
                 backoff: float = 0.1, max_backoff: float = 2.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.headers = {"Accept": "application/json, application/problem+json",
                        "User-Agent": "contextd-client/0.1.0"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)

    # ------------------------------------------------------------------ calls

    def _assemble(self, request: Any, fields: dict[str, Any]) -> Call:
        body = _dump(request) if request is not None else fields
        # With new messages the server appends turns, so a repeat would append them twice.
        repeatable = not (isinstance(body, dict) and body.get("messages"))
        return Call("POST", "/v1/assemble", json=body, idempotent=repeatable,
                    returns=AssembleResponse)

    def _upsert(self, documents: Sequence[Document | dict[str, Any]], namespace: str) -> Call:
        # An upsert of the same batch again leaves the same state: safe to repeat.
        return Call("POST", f"/v1/namespaces/{_seg(namespace)}/documents",
                    json={"documents": [_dump(d) for d in documents]}, returns=UpsertResult)

    def _document(self, method: str, doc_id: str, namespace: str, returns: Any) -> Call:
        return Call(method, f"/v1/namespaces/{_seg(namespace)}/documents/{_seg(doc_id)}",
                    returns=returns)

    def _search(self, query: str | SearchRequest, namespace: str, top_k: int,
                filters: dict[str, Any] | None, mode: str) -> Call:
        body = (_dump(query) if isinstance(query, SearchRequest) else
                {"query": query, "top_k": top_k, "filters": filters, "mode": mode})
        return Call("POST", f"/v1/namespaces/{_seg(namespace)}/search", json=body,
                    returns=SearchResponse)

    def _append(self, session_id: str, messages: Sequence[ChatMessage | dict[str, Any]],
                namespace: str) -> Call:
        return Call("POST", f"/v1/sessions/{_seg(session_id)}/messages",
                    json={"messages": [_dump(m) for m in messages]},
                    params={"namespace": namespace}, idempotent=False, returns=AppendResult)

    def _session(self, method: str, session_id: str, namespace: str, returns: Any) -> Call:
        return Call(method, f"/v1/sessions/{_seg(session_id)}", params={"namespace": namespace},
                    returns=returns)

    # ------------------------------------------------------------------ sending

    def _request(self, http: Any, call: Call) -> httpx.Request:
        # Built by the pool that sends it: Starlette's TestClient is a look-alike of
        # httpx.Client with its own request class.
        return http.build_request(
            call.method, self.base_url + call.path, params=call.params or None,
            json=call.json, headers=self.headers, timeout=self.timeout)

    def _retry_delay(self, call: Call, attempt: int, response: httpx.Response | None,
                     error: Exception | None) -> float | None:
        """Seconds to wait before trying `call` again after `attempt` (from 1); None: done."""
        if attempt > self.retries or not self._retryable(call, response, error):
            return None
        cap = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        delay = random.uniform(0, cap)  # full jitter: spreads retries of many clients
        retry_after = response.headers.get("retry-after") if response is not None else None
        if retry_after and retry_after.isdigit():
            delay = max(delay, min(float(retry_after), self.max_backoff))
        return delay

    @staticmethod
    def _retryable(call: Call, response: httpx.Response | None,
                   exc: Exception | None) -> bool:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
            return True  # nothing reached the server
        if response is not None and response.status_code == 503:
            return True  # the server says it did not do the work
        if not call.idempotent:
            return False
        if isinstance(exc, httpx.TransportError):
            return True
        return response is not None and response.status_code in (502, 504)

    @staticmethod
    def _decode(call: Call, response: httpx.Response | None, error: Exception | None) -> Any:
        if error is not None:
            raise error
        assert response is not None
        if response.status_code >= 400:
            raise error_from_response(response)
        if call.returns is None:
            return True
        if isinstance(call.returns, TypeAdapter):
            return call.returns.validate_json(response.content)
        return call.returns.model_validate_json(response.content)


class Client(BaseClient):
    """Synchronous client; the method names and models are those of `Engine`.

    `transport` replaces the network, e.g. `httpx.MockTransport`; `Client.for_app(app)`
    serves an in-process ASGI app through Starlette's TestClient (startup runs too).

        >>> client = Client("http://127.0.0.1:8000", api_key="s3cret")  # doctest: +SKIP
        >>> client.search("vitamin d", namespace="scifact", top_k=3).hits[0].id  # doctest: +SKIP
    """

    def __init__(self, base_url: str, api_key: str | None = None,
                 timeout: float | httpx.Timeout = DEFAULT_TIMEOUT, *,
                 transport: httpx.BaseTransport | None = None,
                 http: Any = None, **retry: Any) -> None:
        super().__init__(base_url, api_key, timeout, **retry)
        self.http = http or httpx.Client(transport=transport, timeout=self.timeout)
        self._runs_app = False

    @classmethod
    def for_app(cls, app: Any, api_key: str | None = None, **retry: Any) -> Client:
        """A client of an in-process ASGI app (httpx's sync client cannot drive ASGI itself).

            >>> with Client.for_app(create_app(engine)) as client:  # doctest: +SKIP
            ...     client.namespaces()
        """
        from starlette.testclient import TestClient

        http = TestClient(app, base_url="http://contextd", raise_server_exceptions=False)
        http.__enter__()  # runs the app's startup; __exit__ in close() runs its shutdown
        client = cls("http://contextd", api_key, http=http, **retry)
        client._runs_app = True
        return client

    def close(self) -> None:
        """Close the connection pool (and shut down an in-process app)."""
        if self._runs_app:
            self._runs_app = False
            self.http.__exit__(None, None, None)
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, call: Call) -> Any:
        attempt = 0
        while True:
            attempt += 1
            response, error = None, None
            try:
                response = self.http.send(self._request(self.http, call))
            except httpx.TransportError as exc:
                error = exc
            delay = self._retry_delay(call, attempt, response, error)
            if delay is None:
                return self._decode(call, response, error)
            time.sleep(delay)

    # ------------------------------------------------------------------ the Engine's methods

    def assemble(self, request: AssembleRequest | dict[str, Any] | None = None,
                 **fields: Any) -> AssembleResponse:
        """Assemble chat messages for a query within a token budget (see `Engine.assemble`)."""
        return self._send(self._assemble(request, fields))

    def upsert_documents(self, documents: Sequence[Document | dict[str, Any]], *,
                         namespace: str = "default") -> UpsertResult:
        """Add or replace documents; all of the batch is written or none of it."""
        return self._send(self._upsert(documents, namespace))

    def get_document(self, doc_id: str, *, namespace: str = "default") -> StoredDocument:
        """A stored document with its metadata and chunk count."""
        return self._send(self._document("GET", doc_id, namespace, StoredDocument))

    def delete_document(self, doc_id: str, *, namespace: str = "default") -> DeleteResult:
        """Remove a document and its chunks from every index."""
        return self._send(self._document("DELETE", doc_id, namespace, DeleteResult))

    def search(self, query: str | SearchRequest, *, namespace: str = "default",
               top_k: int = 10, filters: dict[str, Any] | None = None,
               mode: str = "hybrid") -> SearchResponse:
        """Retrieval and ranking only, with scores."""
        return self._send(self._search(query, namespace, top_k, filters, mode))

    def append_messages(self, session_id: str, messages: Sequence[ChatMessage | dict[str, Any]],
                        *, namespace: str = "default") -> AppendResult:
        """Append turns to a session (created on first use)."""
        return self._send(self._append(session_id, messages, namespace))

    def get_session(self, session_id: str, *, namespace: str = "default") -> SessionInfo:
        """A session's turns, running summary and token counts."""
        return self._send(self._session("GET", session_id, namespace, SessionInfo))

    def delete_session(self, session_id: str, *, namespace: str = "default") -> bool:
        """Delete a session and its turns; SessionNotFound if there is none."""
        return self._send(self._session("DELETE", session_id, namespace, None))

    def namespaces(self) -> list[NamespaceInfo]:
        """Every namespace with its document, chunk and session counts."""
        return self._send(Call("GET", "/v1/namespaces", returns=_NAMESPACES))

    def delete_namespace(self, namespace: str) -> bool:
        """Delete a namespace and all it holds."""
        return self._send(Call("DELETE", f"/v1/namespaces/{_seg(namespace)}"))


class AsyncClient(BaseClient):
    """Asynchronous client; the same methods as `Client`, awaited.

    `AsyncClient.for_app(app)` talks to an in-process ASGI app through httpx's ASGITransport
    (which does not run the app's startup; run `app.router.lifespan_context(app)` for that).

        >>> async with AsyncClient("http://127.0.0.1:8000") as client:  # doctest: +SKIP
        ...     response = await client.assemble(query="What is RRF?", max_tokens=1500)
    """

    def __init__(self, base_url: str, api_key: str | None = None,
                 timeout: float | httpx.Timeout = DEFAULT_TIMEOUT, *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 http: httpx.AsyncClient | None = None, **retry: Any) -> None:
        super().__init__(base_url, api_key, timeout, **retry)
        self.http = http or httpx.AsyncClient(transport=transport, timeout=self.timeout)

    @classmethod
    def for_app(cls, app: Any, api_key: str | None = None, **retry: Any) -> AsyncClient:
        """A client of an in-process ASGI app, over httpx's ASGITransport."""
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        return cls("http://contextd", api_key, transport=transport, **retry)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send(self, call: Call) -> Any:
        attempt = 0
        while True:
            attempt += 1
            response, error = None, None
            try:
                response = await self.http.send(self._request(self.http, call))
            except httpx.TransportError as exc:
                error = exc
            delay = self._retry_delay(call, attempt, response, error)
            if delay is None:
                return self._decode(call, response, error)
            await asyncio.sleep(delay)

    # ------------------------------------------------------------------ the Engine's methods

    async def assemble(self, request: AssembleRequest | dict[str, Any] | None = None,
                       **fields: Any) -> AssembleResponse:
        """Assemble chat messages for a query within a token budget (see `Engine.assemble`)."""
        return await self._send(self._assemble(request, fields))

    async def upsert_documents(self, documents: Sequence[Document | dict[str, Any]], *,
                               namespace: str = "default") -> UpsertResult:
        """Add or replace documents; all of the batch is written or none of it."""
        return await self._send(self._upsert(documents, namespace))

    async def get_document(self, doc_id: str, *, namespace: str = "default") -> StoredDocument:
        """A stored document with its metadata and chunk count."""
        return await self._send(self._document("GET", doc_id, namespace, StoredDocument))

    async def delete_document(self, doc_id: str, *, namespace: str = "default") -> DeleteResult:
        """Remove a document and its chunks from every index."""
        return await self._send(self._document("DELETE", doc_id, namespace, DeleteResult))

    async def search(self, query: str | SearchRequest, *, namespace: str = "default",
                     top_k: int = 10, filters: dict[str, Any] | None = None,
                     mode: str = "hybrid") -> SearchResponse:
        """Retrieval and ranking only, with scores."""
        return await self._send(self._search(query, namespace, top_k, filters, mode))

    async def append_messages(self, session_id: str,
                              messages: Sequence[ChatMessage | dict[str, Any]], *,
                              namespace: str = "default") -> AppendResult:
        """Append turns to a session (created on first use)."""
        return await self._send(self._append(session_id, messages, namespace))

    async def get_session(self, session_id: str, *, namespace: str = "default") -> SessionInfo:
        """A session's turns, running summary and token counts."""
        return await self._send(self._session("GET", session_id, namespace, SessionInfo))

    async def delete_session(self, session_id: str, *, namespace: str = "default") -> bool:
        """Delete a session and its turns; SessionNotFound if there is none."""
        return await self._send(self._session("DELETE", session_id, namespace, None))

    async def namespaces(self) -> list[NamespaceInfo]:
        """Every namespace with its document, chunk and session counts."""
        return await self._send(Call("GET", "/v1/namespaces", returns=_NAMESPACES))

    async def delete_namespace(self, namespace: str) -> bool:
        """Delete a namespace and all it holds."""
        return await self._send(Call("DELETE", f"/v1/namespaces/{_seg(namespace)}"))
