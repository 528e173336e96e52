"""PUT /v1/namespaces/{namespace}/answers/{assembly_id}: the model's answer to an assembled
prompt, kept with it in the semantic cache so that a later hit can return it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from contextd.models import AnswerRequest, AnswerResult
from contextd.server.calls import EngineDep, json_response, run_engine
from contextd.server.problems import problem_responses
from contextd.server.routes.params import NamespacePath

router = APIRouter(prefix="/v1", tags=["assemble"])

AssemblyPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,128}$",
                                   description="The assembly_id of an assemble response.")]


@router.put("/namespaces/{namespace}/answers/{assembly_id}", response_model=AnswerResult,
            responses=problem_responses(403, 404))
async def put_answer(namespace: NamespacePath, assembly_id: AssemblyPath, body: AnswerRequest,
                     request: Request, engine: EngineDep) -> Response:
    """Store the model's answer for an assembled prompt; a later cache hit on it returns the
    answer as `cache.answer`. 404 `answer-not-found` once that response left the cache (TTL,
    eviction) or was never cached."""
    return json_response(await run_engine(request, engine.put_answer, assembly_id, body.answer,
                                          namespace=namespace))
