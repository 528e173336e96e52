"""Documents of a namespace: upsert, get, delete."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from contextd.models import DeleteResult, StoredDocument, UpsertRequest, UpsertResult
from contextd.server.calls import EngineDep, json_response, run_engine
from contextd.server.idempotency import (
    REPLAYED_RESPONSE,
    IdempotencyHeader,
    idempotency_key,
    mark_replayed,
)
from contextd.server.problems import problem_responses
from contextd.server.routes.params import DocumentPath, NamespacePath

router = APIRouter(prefix="/v1", tags=["documents"])


@router.post("/namespaces/{namespace}/documents", response_model=UpsertResult,
             responses={200: REPLAYED_RESPONSE, **problem_responses(413)})
async def upsert_documents(namespace: NamespacePath, body: UpsertRequest, request: Request,
                           engine: EngineDep,
                           idempotency: IdempotencyHeader = None) -> Response:
    """Add or replace up to 1,000 documents; the namespace is created on first use."""
    key = idempotency_key(request, idempotency)
    result = await run_engine(request, engine.upsert_documents, body.documents,
                              namespace=namespace, idempotency_key=key)
    return mark_replayed(json_response(result), key)


@router.get("/namespaces/{namespace}/documents/{doc_id:path}", response_model=StoredDocument,
            responses=problem_responses(404))
async def get_document(namespace: NamespacePath, doc_id: DocumentPath, request: Request,
                       engine: EngineDep) -> Response:
    """A stored document with its metadata and chunk count."""
    return json_response(await run_engine(request, engine.get_document, doc_id,
                                          namespace=namespace))


@router.delete("/namespaces/{namespace}/documents/{doc_id:path}", response_model=DeleteResult,
               responses=problem_responses(404))
async def delete_document(namespace: NamespacePath, doc_id: DocumentPath, request: Request,
                          engine: EngineDep) -> Response:
    """Remove a document and its chunks from every index."""
    return json_response(await run_engine(request, engine.delete_document, doc_id,
                                          namespace=namespace))
