"""Problem details for the HTTP API: errors to RFC 9457 bodies, and how OpenAPI documents them.

Every error the app raises (a `ContextdError` from the engine, a request that fails
validation, a Starlette `HTTPException` such as 401 or 404) leaves as an
application/problem+json body; the pure ASGI layers that answer before routing (413, 500)
build theirs with the same `contextd.errors.problem_body`.

    >>> app = FastAPI()  # doctest: +SKIP
    >>> add_problem_handlers(app)  # doctest: +SKIP
    >>> app.get("/x", responses=problem_responses(404))(handler)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException

from contextd.errors import ContextdError, problem_body
from contextd.server.middleware import PROBLEM_MEDIA_TYPE, note_problem, request_id

# The server's logger, so operators filter one name for everything the HTTP layer reports.
log = logging.getLogger("contextd.server")


class Problem(BaseModel):
    """RFC 9457 problem details; `errors` lists each invalid field on a 422."""

    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None
    request_id: str | None = None


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for a route's error statuses, each a `Problem` with a description.

        >>> problem_responses(404)[404]["description"]
        'No such namespace, document or session.'
    """
    text = {401: "Missing or wrong API key.", 403: "The API key's role does not allow this.",
            404: "No such namespace, document or session.",
            409: "A turn with this id is already in the session.",
            413: "Request body over the size limit.", 422: "Invalid request; `errors` says "
            "which fields.", 500: "Unexpected failure; quote `request_id`.",
            503: "Not ready or shutting down; retry."}
    return {s: {"model": Problem, "description": text[s]} for s in statuses}


def add_problem_handlers(app: FastAPI) -> None:
    """Answer every error of `app` with problem details, and document them as such in OpenAPI.

        >>> app = FastAPI()
        >>> add_problem_handlers(app)
        >>> ContextdError in app.exception_handlers
        True
    """
    app.add_exception_handler(ContextdError, _on_contextd_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_error)
    app.openapi = _problem_openapi(app)  # type: ignore[method-assign]


def _problem_response(request: Request, body: dict[str, Any],
                      headers: dict[str, str] | None = None) -> JSONResponse:
    note_problem(request.scope, body["type"].rsplit("/", 1)[-1])
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM_MEDIA_TYPE,
                        headers=headers)


async def _on_contextd_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ContextdError)
    body = exc.problem()
    request.scope.setdefault("state", {})["error"] = exc  # its type goes to the failure log
    if exc.status >= 500 and exc.status != 503:
        rid = request_id(request.scope)
        log.error("engine error in %s %s (request_id=%s)", request.method, request.url.path,
                  rid, exc_info=exc)
        body["request_id"] = rid
    headers = {"Retry-After": "1"} if exc.status == 503 else None
    return _problem_response(request, body, headers)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")),
               "type": str(e.get("type", ""))} for e in exc.errors()]
    detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors) or "invalid request"
    return _problem_response(request, problem_body(422, "invalid-request", "Invalid request",
                                                   detail, errors=errors))


_HTTP_PROBLEMS = {401: ("unauthorized", "Unauthorized"), 404: ("not-found", "Not found"),
                  405: ("method-not-allowed", "Method not allowed"),
                  413: ("request-too-large", "Request too large")}


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400:
        # FastAPI's answer to a body it cannot decode (not UTF-8, say): invalid input like
        # any other, so the documented 422 with what to change.
        return _problem_response(request, problem_body(
            422, "invalid-request", "Invalid request",
            f"the request body could not be read ({exc.detail}): send UTF-8 encoded JSON"))
    slug, title = _HTTP_PROBLEMS.get(exc.status_code, ("http-error", "HTTP error"))
    detail = exc.detail if exc.status_code != 404 else (
        f"no route for {request.method} {request.url.path}; see /docs")
    return _problem_response(request, problem_body(exc.status_code, slug, title, str(detail)),
                             dict(exc.headers or {}))


def _problem_openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            # Error bodies are problem details, so say so in their media type.
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    for status, response in operation.get("responses", {}).items():
                        content = response.get("content", {})
                        if status[0] in "45" and "application/json" in content:
                            content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi
