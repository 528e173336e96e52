"""Namespaces: list them, delete one with all it holds."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from contextd.models import NamespaceInfo
from contextd.server.access import request_key
from contextd.server.calls import EngineDep, json_response, run_engine
from contextd.server.problems import problem_responses
from contextd.server.routes.params import NamespacePath

router = APIRouter(prefix="/v1", tags=["namespaces"])


@router.get("/namespaces", response_model=list[NamespaceInfo])
async def list_namespaces(request: Request, engine: EngineDep) -> Response:
    """The namespaces this API key may use (every one without keys), with their document,
    chunk and session counts."""
    found = await run_engine(request, engine.namespaces)
    key = request_key(request)
    if key is not None:
        found = [info for info in found if key.allows_namespace(info.name)]
    return json_response(found)


@router.delete("/namespaces/{namespace}", status_code=204, response_class=Response,
               responses=problem_responses(404))
async def delete_namespace(namespace: NamespacePath, request: Request,
                           engine: EngineDep) -> Response:
    """Delete a namespace with all its documents and sessions."""
    await run_engine(request, engine.delete_namespace, namespace)
    return Response(status_code=204)
