"""POST /v1/namespaces/{namespace}/assemble, its batch form .../assemble/batch, and the
deprecated POST /v1/assemble."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, Request, Response

from contextd.errors import ContextdError, InvalidRequest
from contextd.models import (
    AssembleRequest,
    AssembleResponse,
    BatchAssembleRequest,
    BatchAssembleResponse,
)
from contextd.server.access import check_namespace
from contextd.server.calls import EngineDep, json_response, run_engine
from contextd.server.idempotency import (
    REPLAYED_RESPONSE,
    IdempotencyHeader,
    idempotency_key,
    mark_replayed,
)
from contextd.server.problems import problem_responses
from contextd.server.routes.params import NamespacePath

router = APIRouter(prefix="/v1", tags=["assemble"])
log = logging.getLogger("contextd.server")


async def _assemble(body: AssembleRequest, request: Request, engine: EngineDep,
                    idempotency: str | None) -> Response:
    # Messages sent with a session id are stored in it: that is a write.
    stores = body.session_id is not None and bool(body.messages)
    check_namespace(request, body.namespace, "write" if stores else "read")
    # Chosen here too (the same stable choice the engine makes), so a failure is logged with
    # the profile in force; an unknown profile is a 422 before any work.
    request.scope.setdefault("state", {})["profile"] = engine.profiles.choose(body)
    key = idempotency_key(request, idempotency)
    response = await run_engine(request, engine.assemble, body, idempotency_key=key)
    label = engine.telemetry.label(body.query_type)  # bounded: unknown types count as 'other'
    request.app.state.metrics.observe_assemble(response, label)
    return mark_replayed(json_response(response), key)


@router.post("/namespaces/{namespace}/assemble", response_model=AssembleResponse,
             responses={200: REPLAYED_RESPONSE, **problem_responses(403, 404, 409)})
async def assemble(namespace: NamespacePath, body: AssembleRequest, request: Request,
                   engine: EngineDep, idempotency: IdempotencyHeader = None) -> Response:
    """Assemble chat messages for a query within a token budget, from the namespace's
    documents and sessions."""
    if "namespace" in body.model_fields_set and body.namespace != namespace:
        raise InvalidRequest(f"the body names namespace {body.namespace!r} but the path "
                             f"{namespace!r}: leave namespace out of the body")
    return await _assemble(body.model_copy(update={"namespace": namespace}), request, engine,
                           idempotency)


@router.post("/assemble", response_model=AssembleResponse, deprecated=True,
             responses={200: REPLAYED_RESPONSE, **problem_responses(403, 404, 409)})
async def assemble_deprecated(body: AssembleRequest, request: Request, engine: EngineDep,
                              idempotency: IdempotencyHeader = None) -> Response:
    """Deprecated: use POST /v1/namespaces/{namespace}/assemble. The namespace comes from
    the body here (default `default`)."""
    return await _assemble(body, request, engine, idempotency)


@router.post("/namespaces/{namespace}/assemble/batch", response_model=BatchAssembleResponse,
             responses=problem_responses(403, 404))
async def assemble_batch(namespace: NamespacePath, body: BatchAssembleRequest, request: Request,
                         engine: EngineDep) -> Response:
    """Assemble up to `batch_limit` requests in order, their query embeddings in one forward
    pass. Each result is its response or a problem-details object: one failed request does
    not fail the others."""
    limit = engine.settings.batch_limit
    if len(body.requests) > limit:
        raise InvalidRequest(f"{len(body.requests)} requests in one batch: send at most {limit} "
                             "(batch_limit), or split them into several batches")
    check_namespace(request, namespace, "read")
    refused: dict[int, ContextdError] = {}
    for i, item in enumerate(body.requests):
        # An item that stores turns is a write, refused on its own for a read-only key.
        if item.get("session_id") is not None and item.get("messages"):
            try:
                check_namespace(request, namespace, "write")
            except ContextdError as exc:
                refused[i] = exc
    allowed = [item for i, item in enumerate(body.requests) if i not in refused]
    answered = iter(await run_engine(request, engine.assemble_batch, allowed,
                                     namespace=namespace))
    parts = []
    for i, item in enumerate(body.requests):
        result = refused.get(i) or next(answered)
        if isinstance(result, AssembleResponse):
            request.app.state.metrics.observe_assemble(
                result, engine.telemetry.label(item.get("query_type")))
            parts.append(result.model_dump_json())
        else:
            parts.append(json.dumps(_item_problem(result, i), ensure_ascii=False))
    return Response('{"results":[' + ",".join(parts) + "]}", media_type="application/json")


def _item_problem(error: ContextdError, index: int) -> dict[str, Any]:
    if error.status >= 500:
        log.error("batch item %d failed", index, exc_info=error)
    return error.problem()
