"""Sessions of a namespace: list them, append turns, read, delete.

The canonical routes are `/v1/namespaces/{namespace}/sessions/{session_id}...`; the older
`/v1/sessions/{session_id}...?namespace=` stay as deprecated aliases.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from contextd.models import AppendRequest, AppendResult, SessionInfo, SessionSummary
from contextd.server.calls import EngineDep, json_response, run_engine
from contextd.server.idempotency import (
    REPLAYED_RESPONSE,
    IdempotencyHeader,
    idempotency_key,
    mark_replayed,
)
from contextd.server.problems import problem_responses
from contextd.server.routes.params import NamespacePath, NamespaceQuery, SessionPath

router = APIRouter(prefix="/v1", tags=["sessions"])


async def _append(namespace: str, session_id: str, body: AppendRequest, request: Request,
                  engine: EngineDep, idempotency: str | None) -> Response:
    key = idempotency_key(request, idempotency)
    result = await run_engine(request, engine.append_messages, session_id, body.messages,
                              namespace=namespace, idempotency_key=key, user_id=body.user_id)
    return mark_replayed(json_response(result), key)


async def _get(namespace: str, session_id: str, request: Request, engine: EngineDep) -> Response:
    return json_response(await run_engine(request, engine.get_session, session_id,
                                          namespace=namespace))


async def _delete(namespace: str, session_id: str, request: Request,
                  engine: EngineDep) -> Response:
    await run_engine(request, engine.delete_session, session_id, namespace=namespace)
    return Response(status_code=204)


@router.get("/namespaces/{namespace}/sessions", response_model=list[SessionSummary],
            responses=problem_responses(404))
async def list_sessions(namespace: NamespacePath, request: Request,
                        engine: EngineDep) -> Response:
    """The namespace's sessions with their turn counts, the most recently updated first."""
    return json_response(await run_engine(request, engine.list_sessions, namespace))


@router.post("/namespaces/{namespace}/sessions/{session_id}/messages",
             response_model=AppendResult,
             responses={200: REPLAYED_RESPONSE, **problem_responses(409, 413)})
async def append_messages(namespace: NamespacePath, session_id: SessionPath,
                          body: AppendRequest, request: Request, engine: EngineDep,
                          idempotency: IdempotencyHeader = None) -> Response:
    """Append turns to a session, creating it (and its namespace) on first use."""
    return await _append(namespace, session_id, body, request, engine, idempotency)


@router.get("/namespaces/{namespace}/sessions/{session_id}", response_model=SessionInfo,
            responses=problem_responses(404))
async def get_session(namespace: NamespacePath, session_id: SessionPath, request: Request,
                      engine: EngineDep) -> Response:
    """A session's turns, running summary and token counts."""
    return await _get(namespace, session_id, request, engine)


@router.delete("/namespaces/{namespace}/sessions/{session_id}", status_code=204,
               response_class=Response, responses=problem_responses(404))
async def delete_session(namespace: NamespacePath, session_id: SessionPath, request: Request,
                         engine: EngineDep) -> Response:
    """Delete a session and its turns."""
    return await _delete(namespace, session_id, request, engine)


@router.post("/sessions/{session_id}/messages", response_model=AppendResult, deprecated=True,
             responses={200: REPLAYED_RESPONSE, **problem_responses(409, 413)})
async def append_messages_deprecated(session_id: SessionPath, body: AppendRequest,
                                     request: Request, engine: EngineDep,
                                     namespace: NamespaceQuery = "default",
                                     idempotency: IdempotencyHeader = None) -> Response:
    """Deprecated: use POST /v1/namespaces/{namespace}/sessions/{session_id}/messages."""
    return await _append(namespace, session_id, body, request, engine, idempotency)


@router.get("/sessions/{session_id}", response_model=SessionInfo, deprecated=True,
            responses=problem_responses(404))
async def get_session_deprecated(session_id: SessionPath, request: Request, engine: EngineDep,
                                 namespace: NamespaceQuery = "default") -> Response:
    """Deprecated: use GET /v1/namespaces/{namespace}/sessions/{session_id}."""
    return await _get(namespace, session_id, request, engine)


@router.delete("/sessions/{session_id}", status_code=204, response_class=Response,
               deprecated=True, responses=problem_responses(404))
async def delete_session_deprecated(session_id: SessionPath, request: Request,
                                    engine: EngineDep,
                                    namespace: NamespaceQuery = "default") -> Response:
    """Deprecated: use DELETE /v1/namespaces/{namespace}/sessions/{session_id}."""
    return await _delete(namespace, session_id, request, engine)
