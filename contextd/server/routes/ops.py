"""Operations: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from contextd.errors import Unavailable
from contextd.runtime import runtime_of
from contextd.server.metrics import CONTENT_TYPE
from contextd.server.problems import problem_responses

router = APIRouter(tags=["operations"])


class Status(BaseModel):
    status: str


class Readiness(Status):
    embedder_runtime: str | None = Field(None, description="Runtime embedding queries and "
                                         "turns, chosen from the CPU unless set.")
    document_runtime: str | None = Field(None, description="Runtime embedding documents: the "
                                         "query runtime, or torch-bf16 where the CPU has "
                                         "AMX; chosen unless set.")


@router.get("/healthz", response_model=Status)
async def healthz() -> Status:
    """The process is up (it may still be warming up)."""
    return Status(status="ok")


@router.get("/readyz", response_model=Readiness, responses=problem_responses(503))
async def readyz(request: Request) -> Readiness:
    """Model, tokenizer and indexes are loaded and warm; 503 until then."""
    state = request.app.state
    if state.warm_error is not None:
        raise Unavailable(f"warm-up failed: {state.warm_error}")
    if not state.warmed.is_set() or state.engine_closed:
        raise Unavailable("warming up: the model, tokenizer and indexes are loading")
    engine = state.engine
    return Readiness(status="ready", embedder_runtime=runtime_of(engine.embedder),
                     document_runtime=runtime_of(engine.document_embedder))


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}},
                             "description": "Prometheus text exposition format."},
                       **problem_responses(401, 403)})
async def metrics(request: Request) -> Response:
    """Prometheus metrics of this process (an admin key, unless `metrics_open`)."""
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE)
