"""POST /v1/namespaces/{namespace}/search: retrieval and ranking only."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from contextd.models import SearchRequest, SearchResponse
from contextd.server.calls import EngineDep, json_response, run_engine
from contextd.server.problems import problem_responses
from contextd.server.routes.params import NamespacePath

router = APIRouter(prefix="/v1", tags=["search"])


@router.post("/namespaces/{namespace}/search", response_model=SearchResponse,
             responses=problem_responses(404))
async def search(namespace: NamespacePath, body: SearchRequest, request: Request,
                 engine: EngineDep) -> Response:
    """Retrieval and ranking only, with scores."""
    response = await run_engine(request, engine.search, body, namespace=namespace)
    request.app.state.metrics.observe_search(response)
    return json_response(response)
