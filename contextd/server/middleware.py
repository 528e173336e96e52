"""Pure ASGI middleware of the HTTP server: request ids, latency, crashes, body size.

Pure ASGI (not Starlette's BaseHTTPMiddleware) so a body is never buffered whole and the
wrappers cost a few function calls per request.

    >>> app = RequestContext(BodyLimit(inner_app, max_bytes=8 << 20), metrics)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contextd.errors import problem_body
from contextd.logs import REQUEST_ID
from contextd.server.failures import FailureRecorder
from contextd.server.metrics import ServiceMetrics

log = logging.getLogger("contextd.server")

PROBLEM_MEDIA_TYPE = "application/problem+json"
REQUEST_ID_HEADER = "X-Request-ID"
# A caller's id is echoed only when it is short and plain, so it is safe in logs and headers.
_CALLER_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


async def send_problem(send: Send, body: dict[str, Any],
                       headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Send `body` as a complete application/problem+json response."""
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": body["status"],
                "headers": [(b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                            (b"content-length", str(len(payload)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": payload})


def request_id(scope: Scope) -> str:
    """The id `RequestContext` gave this request ('' outside it)."""
    return str(scope.get("state", {}).get("request_id", ""))


def note_problem(scope: Scope, type_slug: str) -> None:
    """Record which problem a response carries, for the errors-by-type metric."""
    scope.setdefault("state", {})["problem_type"] = type_slug


class RequestTooLarge(HTTPException):
    """The body passed the size limit; an HTTPException so FastAPI's body reader re-raises it
    as is instead of turning it into a 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes: send fewer "
                              "or smaller documents per request")
        self.limit = limit


class BodyLimit:
    """Rejects bodies over `max_bytes` with 413, before reading them whole.

    A declared Content-Length over the limit is refused before any byte is read; a chunked
    body is counted as it arrives and refused as soon as it passes the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > limit):
                await self._refuse(scope, send)
                return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise RequestTooLarge(limit)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except RequestTooLarge:
            # Raised where nothing caught it (e.g. a route reading the stream itself).
            if started:
                raise
            await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        note_problem(scope, "request-too-large")
        exc = RequestTooLarge(self.max_bytes)
        await send_problem(send, problem_body(413, "request-too-large", "Request too large",
                                              str(exc.detail), limit=self.max_bytes),
                           [(b"connection", b"close")])


class RequestContext:
    """Gives every request an id (the caller's X-Request-ID if plain, else a new one),
    returns it in the X-Request-ID response header and in the log context, times the
    request by route template, and turns an unexpected exception into a 500 problem whose id
    is in the log line."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics,
                 failures: FailureRecorder | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.failures = failures

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = self._incoming_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        # Every log line of this request, uvicorn's access line included, carries the id.
        id_token = REQUEST_ID.set(rid)
        status = 500
        started = False

        async def tagging_send(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        # The first bytes of the body, kept for the failure log should the request fail.
        body = bytearray()
        body_bytes = 0
        keep = self.failures.max_input_bytes if self.failures is not None else 0

        async def keeping_receive() -> Message:
            nonlocal body_bytes
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                body_bytes += len(chunk)
                if len(body) < keep:
                    body.extend(chunk[:keep - len(body)])
            return message

        began = time.perf_counter()
        self.metrics.in_flight.inc()
        crash: Exception | None = None
        try:
            await self.app(scope, keeping_receive if keep else receive, tagging_send)
        except Exception as exc:
            crash = exc
            log.exception("unhandled error in %s %s (request_id=%s)", scope["method"],
                          scope["path"], rid)
            if started:
                raise  # the response is half sent; the server closes the connection
            note_problem(scope, "internal")
            await send_problem(tagging_send, problem_body(
                500, "internal", "Internal error",
                f"the server failed unexpectedly; quote request id {rid} when reporting it",
                request_id=rid))
        finally:
            self.metrics.in_flight.dec()
            route = scope.get("route")
            # Unmatched paths share one label: raw paths would make cardinality unbounded.
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe_request(scope["method"], template, status,
                                         time.perf_counter() - began)
            if status >= 400:
                self.metrics.observe_error(scope["state"].get("problem_type", "unknown"), status)
            if self.failures is not None and self.failures.wants(status):
                self.failures.record(scope, status, bytes(body), body_bytes,
                                     scope["state"].get("problem_type"),
                                     crash or scope["state"].get("error"))
            REQUEST_ID.reset(id_token)

    @staticmethod
    def _incoming_id(scope: Scope) -> str | None:
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                text = value.decode("latin-1")
                return text if _CALLER_ID.match(text) else None
        return None
