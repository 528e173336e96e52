"""HTTP clients with the `Engine`'s method names, signatures and return models.

`Client` (sync) and `AsyncClient` share `BaseClient`, which builds every call and decodes
every answer; the two subclasses only send (model: httpx `_client.py`). Swapping
`Engine(...)` for `Client(url)` keeps the calling code as it is:

    >>> from contextd import Client
    >>> with Client("http://127.0.0.1:8000") as client:  # doctest: +SKIP
    ...     client.upsert_documents([{"id": "faq", "text": "contextd packs prompts."}])
    ...     client.assemble(query="What does contextd do?", max_tokens=1000).usage.total

With no URL the client uses `CONTEXTD_URL` (default http://127.0.0.1:8000), with no key
`CONTEXTD_API_KEY`. Problem-details answers raise the matching `contextd.errors` exception
(read back by `contextd.client.errors`): `Unauthorized` for a missing or wrong key,
`ServiceUnavailable` for a server that refuses connections or still answers 503 after the
retries. Connection failures, 503s, gateway errors and lost answers are retried with capped,
jittered exponential backoff. Every call is safe to repeat: reads and deletes by nature, and
the calls that write (upsert, append, assemble with messages) send an `Idempotency-Key` (a new
UUID per call, the same on its retries, or the caller's `idempotency_key=`), so the server
stores a retried write once.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter

from contextd.client.errors import error_from_problem, error_from_response, unreachable
from contextd.errors import ContextdError
from contextd.models import (
    AnswerResult,
    AppendResult,
    AssembleResponse,
    ChatMessage,
    Document,
    NamespaceInfo,
    SearchRequest,
    SearchResponse,
    SessionSummary,
    UpsertResult,
)
from contextd.version import __version__

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
# Where `contextd serve` listens by default.
DEFAULT_URL = "http://127.0.0.1:8000"
URL_VARIABLE = "CONTEXTD_URL"
API_KEY_VARIABLE = "CONTEXTD_API_KEY"
# Failures where the request never reached a server: the server is down or unreachable.
_UNREACHABLE = (httpx.ConnectError, httpx.ConnectTimeout)
_NAMESPACES = TypeAdapter(list[NamespaceInfo])
_SESSIONS = TypeAdapter(list[SessionSummary])
_RESULTS = TypeAdapter(dict[str, list[dict[str, Any]]])


@dataclass(frozen=True)
class Call:
    """One API call: what to send and how to read the answer."""

    method: str
    path: str
    json: Any = None
    params: dict[str, str] = field(default_factory=dict)
    # A model class, a TypeAdapter, a function of the body, or None for "no body: True".
    returns: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    # False for a write the server cannot recognise as a repeat (no Idempotency-Key): then
    # only a call that never reached the server is sent again.
    idempotent: bool = True


def idempotency_headers(key: str | None) -> dict[str, str]:
    """The header that makes a write safe to repeat: one key per logical call (made here
    unless the caller gives one), sent again with each of its retries."""
    return {"Idempotency-Key": key or str(uuid.uuid4())}


def _dump(item: BaseModel | dict[str, Any]) -> Any:
    if isinstance(item, BaseModel):
        return item.model_dump(mode="json", exclude_unset=True)
    return item


def path_segment(value: str) -> str:
    return quote(value, safe="")


def _session_path(namespace: str, session_id: str) -> str:
    return f"/v1/namespaces/{path_segment(namespace)}/sessions/{path_segment(session_id)}"


class BaseClient:
    """What `Client` and `AsyncClient` share: the calls, the retry policy, the decoding."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None,
                 timeout: float | httpx.Timeout = DEFAULT_TIMEOUT, *, retries: int = 3,
                 backoff: float = 0.1, max_backoff: float = 2.0) -> None:
        if base_url is None:
            base_url = os.environ.get(URL_VARIABLE) or DEFAULT_URL
        if api_key is None:  # "" means: send no key, whatever the environment says
            api_key = os.environ.get(API_KEY_VARIABLE)
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.headers = {"Accept": "application/json, application/problem+json",
                        "User-Agent": f"contextd-client/{__version__}"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)

    # ------------------------------------------------------------------ calls

    def _assemble(self, request: Any, fields: dict[str, Any],
                  idempotency_key: str | None = None) -> Call:
        body = _dump(request) if request is not None else dict(fields)
        # With new messages the server appends turns: the key makes a repeat append nothing.
        writes = isinstance(body, dict) and bool(body.get("messages"))
        namespace = "default"
        if isinstance(body, dict):
            body = dict(body)
            namespace = str(body.pop("namespace", None) or "default")
        return Call("POST", f"/v1/namespaces/{path_segment(namespace)}/assemble", json=body,
                    returns=AssembleResponse,
                    headers=idempotency_headers(idempotency_key) if writes else {})

    def _assemble_batch(self, requests: Sequence[Any], namespace: str) -> Call:
        items = [dict(d) if isinstance(d := _dump(r), dict) else d for r in requests]
        for item in items:
            if isinstance(item, dict) and item.get("namespace") == namespace:
                del item["namespace"]  # the path names it
        # Like assemble: a batch that stores turns must not be sent twice.
        repeatable = not any(isinstance(i, dict) and i.get("messages") for i in items)
        return Call("POST", f"/v1/namespaces/{path_segment(namespace)}/assemble/batch",
                    json={"requests": items}, idempotent=repeatable, returns=_batch_results)

    def _put_answer(self, assembly_id: str, answer: str, namespace: str) -> Call:
        # Storing the same answer again leaves the same state: safe to repeat.
        return Call("PUT", f"/v1/namespaces/{path_segment(namespace)}/answers/"
                    f"{path_segment(assembly_id)}", json={"answer": answer},
                    returns=AnswerResult)

    def _upsert(self, documents: Sequence[Document | dict[str, Any]], namespace: str,
                idempotency_key: str | None = None) -> Call:
        return Call("POST", f"/v1/namespaces/{path_segment(namespace)}/documents",
                    json={"documents": [_dump(d) for d in documents]}, returns=UpsertResult,
                    headers=idempotency_headers(idempotency_key))

    def _document(self, method: str, doc_id: str, namespace: str, returns: Any) -> Call:
        documents = f"/v1/namespaces/{path_segment(namespace)}/documents"
        return Call(method, f"{documents}/{path_segment(doc_id)}", returns=returns)

    def _search(self, query: str | SearchRequest, namespace: str, top_k: int,
                filters: dict[str, Any] | None, mode: str) -> Call:
        body = (_dump(query) if isinstance(query, SearchRequest) else
                {"query": query, "top_k": top_k, "filters": filters, "mode": mode})
        return Call("POST", f"/v1/namespaces/{path_segment(namespace)}/search", json=body,
                    returns=SearchResponse)

    def _append(self, session_id: str, messages: Sequence[ChatMessage | dict[str, Any]],
                namespace: str, idempotency_key: str | None = None,
                user_id: str | None = None) -> Call:
        body: dict[str, Any] = {"messages": [_dump(m) for m in messages]}
        if user_id is not None:
            body["user_id"] = user_id
        return Call("POST", f"{_session_path(namespace, session_id)}/messages",
                    json=body, returns=AppendResult,
                    headers=idempotency_headers(idempotency_key))

    def _sessions(self, namespace: str) -> Call:
        return Call("GET", f"/v1/namespaces/{path_segment(namespace)}/sessions",
                    returns=_SESSIONS)

    def _session(self, method: str, session_id: str, namespace: str, returns: Any) -> Call:
        return Call(method, _session_path(namespace, session_id), returns=returns)

    # ------------------------------------------------------------------ sending

    def _request(self, http: Any, call: Call) -> httpx.Request:
        # Built by the pool that sends it: Starlette's TestClient is a look-alike of
        # httpx.Client (on httpx2) with its own request and timeout classes, so the timeout
        # goes as the (connect, read, write, pool) tuple both accept.
        t = self.timeout
        return http.build_request(
            call.method, self.base_url + call.path, params=call.params or None,
            json=call.json, headers={**self.headers, **call.headers},
            timeout=(t.connect, t.read, t.write, t.pool))

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
        if not call.idempotent:
            return False  # it may have been carried out: sending it again could repeat it
        if response is not None and response.status_code == 503:
            return True
        if isinstance(exc, httpx.TransportError):
            return True
        return response is not None and response.status_code in (502, 504)

    def _decode(self, call: Call, response: httpx.Response | None,
                error: Exception | None) -> Any:
        if isinstance(error, _UNREACHABLE):
            raise unreachable(self.base_url, error) from error
        if error is not None:
            raise error
        assert response is not None
        if response.status_code >= 400:
            raise error_from_response(response)
        if call.returns is None:
            return True
        if isinstance(call.returns, TypeAdapter):
            return call.returns.validate_json(response.content)
        if isinstance(call.returns, type) and issubclass(call.returns, BaseModel):
            return call.returns.model_validate_json(response.content)
        return call.returns(response.content)  # a decoding function


def _batch_results(content: bytes) -> list[AssembleResponse | ContextdError]:
    """A batch's results: each its AssembleResponse, or the typed error of a failed item."""
    items = _RESULTS.validate_json(content)["results"]
    return [error_from_problem(item) if "status" in item and "type" in item
            else AssembleResponse.model_validate(item) for item in items]
