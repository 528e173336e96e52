"""The synchronous client."""

from __future__ import annotations

import time
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


class Client(BaseClient):
    """Synchronous client; the method names and models are those of `Engine`.

    With no `base_url` it uses CONTEXTD_URL (default http://127.0.0.1:8000), with no
    `api_key` CONTEXTD_API_KEY (pass "" to send none).

    `transport` replaces the network, e.g. `httpx.MockTransport`; `Client.for_app(app)`
    serves an in-process ASGI app through Starlette's TestClient (startup runs too).

        >>> client = Client()  # CONTEXTD_URL, CONTEXTD_API_KEY  # doctest: +SKIP
        >>> client = Client("http://127.0.0.1:8000", api_key="s3cret")  # doctest: +SKIP
        >>> client.search("vitamin d", namespace="scifact", top_k=3).hits[0].id  # doctest: +SKIP
    """

    def __init__(self, base_url: str | None = None, api_key: str | None = None,
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

    def assemble(self, request: AssembleRequest | dict[str, Any] | None = None, *,
                 idempotency_key: str | None = None, **fields: Any) -> AssembleResponse:
        """Assemble chat messages for a query within a token budget (see `Engine.assemble`)."""
        return self._send(self._assemble(request, fields, idempotency_key))

    def assemble_batch(self, requests: Sequence[AssembleRequest | dict[str, Any]], *,
                       namespace: str = "default") -> list[AssembleResponse | ContextdError]:
        """Assemble several requests in one call (see `Engine.assemble_batch`): each item its
        response or the typed error it met, in order."""
        return self._send(self._assemble_batch(requests, namespace))

    def put_answer(self, assembly_id: str, answer: str, *,
                   namespace: str = "default") -> AnswerResult:
        """Keep the model's answer to an assembled prompt (see `Engine.put_answer`)."""
        return self._send(self._put_answer(assembly_id, answer, namespace))

    def upsert_documents(self, documents: Sequence[Document | dict[str, Any]], *,
                         namespace: str = "default",
                         idempotency_key: str | None = None) -> UpsertResult:
        """Add or replace documents; all of the batch is written or none of it."""
        return self._send(self._upsert(documents, namespace, idempotency_key))

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
                        *, namespace: str = "default",
                        idempotency_key: str | None = None,
                        user_id: str | None = None) -> AppendResult:
        """Append turns to a session (created on first use); retried safely under one
        Idempotency-Key. `user_id` names the session's user, once (another is a 409)."""
        return self._send(self._append(session_id, messages, namespace, idempotency_key,
                                       user_id))

    def get_session(self, session_id: str, *, namespace: str = "default") -> SessionInfo:
        """A session's turns, running summary and token counts."""
        return self._send(self._session("GET", session_id, namespace, SessionInfo))

    def delete_session(self, session_id: str, *, namespace: str = "default") -> bool:
        """Delete a session and its turns; SessionNotFound if there is none."""
        return self._send(self._session("DELETE", session_id, namespace, None))

    def list_sessions(self, namespace: str = "default") -> list[SessionSummary]:
        """A namespace's sessions with their turn counts, the most recently updated first."""
        return self._send(self._sessions(namespace))

    def namespaces(self) -> list[NamespaceInfo]:
        """Every namespace with its document, chunk and session counts."""
        return self._send(Call("GET", "/v1/namespaces", returns=_NAMESPACES))

    def delete_namespace(self, namespace: str) -> bool:
        """Delete a namespace and all it holds."""
        return self._send(Call("DELETE", f"/v1/namespaces/{path_segment(namespace)}"))
