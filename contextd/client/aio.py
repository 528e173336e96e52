"""The asynchronous client."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx

from contextd.client.base import _NAMESPACES, DEFAULT_TIMEOUT, BaseClient, Call, path_segment
from contextd.errors import ContextdError
from contextd.models import (
    AnswerResult,
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
    SessionSummary,
    StoredDocument,
    UpsertResult,
)


class AsyncClient(BaseClient):
    """Asynchronous client; the same methods as `Client`, awaited.

    `AsyncClient.for_app(app)` talks to an in-process ASGI app through httpx's ASGITransport
    (which does not run the app's startup; run `app.router.lifespan_context(app)` for that).

        >>> async with AsyncClient("http://127.0.0.1:8000") as client:  # doctest: +SKIP
        ...     response = await client.assemble(query="What is RRF?", max_tokens=1500)
    """

    def __init__(self, base_url: str | None = None, api_key: str | None = None,
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

    async def assemble(self, request: AssembleRequest | dict[str, Any] | None = None, *,
                       idempotency_key: str | None = None, **fields: Any) -> AssembleResponse:
        """Assemble chat messages for a query within a token budget (see `Engine.assemble`)."""
        return await self._send(self._assemble(request, fields, idempotency_key))

    async def assemble_batch(self, requests: Sequence[AssembleRequest | dict[str, Any]], *,
                       namespace: str = "default") -> list[AssembleResponse | ContextdError]:
        """Assemble several requests in one call (see `Engine.assemble_batch`): each item its
        response or the typed error it met, in order."""
        return await self._send(self._assemble_batch(requests, namespace))

    async def put_answer(self, assembly_id: str, answer: str, *,
                   namespace: str = "default") -> AnswerResult:
        """Keep the model's answer to an assembled prompt (see `Engine.put_answer`)."""
        return await self._send(self._put_answer(assembly_id, answer, namespace))

    async def upsert_documents(self, documents: Sequence[Document | dict[str, Any]], *,
                               namespace: str = "default",
                               idempotency_key: str | None = None) -> UpsertResult:
        """Add or replace documents; all of the batch is written or none of it."""
        return await self._send(self._upsert(documents, namespace, idempotency_key))

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
                              namespace: str = "default",
                              idempotency_key: str | None = None,
                              user_id: str | None = None) -> AppendResult:
        """Append turns to a session (created on first use); retried safely under one
        Idempotency-Key. `user_id` names the session's user, once (another is a 409)."""
        return await self._send(self._append(session_id, messages, namespace,
                                             idempotency_key, user_id))

    async def get_session(self, session_id: str, *, namespace: str = "default") -> SessionInfo:
        """A session's turns, running summary and token counts."""
        return await self._send(self._session("GET", session_id, namespace, SessionInfo))

    async def delete_session(self, session_id: str, *, namespace: str = "default") -> bool:
        """Delete a session and its turns; SessionNotFound if there is none."""
        return await self._send(self._session("DELETE", session_id, namespace, None))

    async def list_sessions(self, namespace: str = "default") -> list[SessionSummary]:
        """A namespace's sessions with their turn counts, the most recently updated first."""
        return await self._send(self._sessions(namespace))

    async def namespaces(self) -> list[NamespaceInfo]:
        """Every namespace with its document, chunk and session counts."""
        return await self._send(Call("GET", "/v1/namespaces", returns=_NAMESPACES))

    async def delete_namespace(self, namespace: str) -> bool:
        """Delete a namespace and all it holds."""
        return await self._send(Call("DELETE", f"/v1/namespaces/{path_segment(namespace)}"))
