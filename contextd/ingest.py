"""Document ingestion: validate, chunk, embed (through the cache), write, index.

A batch is validated whole before anything is written, embedded before the write
transaction opens, then committed in one transaction: a failed batch leaves the store as it
was. Documents whose text, title and metadata are unchanged are skipped.

    >>> ingestor.upsert("default", [{"id": "a", "text": "Alpha."}]).upserted  # doctest: +SKIP
    1
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from contextd.chunking import SentenceChunker
from contextd.errors import DocumentNotFound, DocumentTooLarge, InvalidRequest
from contextd.models import (
    MAX_BATCH_DOCUMENTS,
    DeleteResult,
    Document,
    StoredDocument,
    UpsertResult,
)
from contextd.namespaces import NamespaceRegistry, check_namespace
from contextd.protocols import Embedder
from contextd.settings import Settings
from contextd.store.idempotency import IdempotencyKey, Replayed
from contextd.store.records import DocumentWrite, NewChunk
from contextd.tokens import get_counter
from contextd.validation import parse


def document_hash(doc: Document) -> str:
    payload = json.dumps([doc.title, doc.text, doc.metadata], sort_keys=True, ensure_ascii=False)
    return hashlib.blake2b(payload.encode("utf-8"), digest_size=20).hexdigest()


def embedding_text(title: str | None, text: str) -> str:
    """What the embedder sees for a chunk: the title gives every chunk its document's topic."""
    return f"{title}\n{text}" if title else text


class DocumentIngestor:
    def __init__(self, settings: Settings, embedder: Embedder,
                 registry: NamespaceRegistry) -> None:
        self.settings = settings
        self.embedder = embedder
        self.registry = registry
        self.counter = get_counter(settings.encoding)
        self.chunker = SentenceChunker(self.counter, settings.chunk_tokens,
                                       settings.chunk_overlap_tokens)

    def validate(self, documents: Sequence[Document | dict[str, Any]]) -> list[Document]:
        if not isinstance(documents, Sequence) or isinstance(documents, (str, bytes)):
            raise InvalidRequest("documents must be a list of {id, text, title?, metadata?}")
        if not documents:
            raise InvalidRequest("documents is empty: send at least one document")
        if len(documents) > MAX_BATCH_DOCUMENTS:
            raise InvalidRequest(f"{len(documents)} documents in one batch: send at most "
                                 f"{MAX_BATCH_DOCUMENTS} per request")
        docs: list[Document] = []
        seen: set[str] = set()
        for i, raw in enumerate(documents):
            try:
                doc = parse(Document, raw)
            except InvalidRequest as exc:
                raise InvalidRequest(f"documents[{i}]: {exc.detail}") from None
            if doc.id in seen:
                raise InvalidRequest(f"document id {doc.id!r} appears twice in the batch: "
                                     "send each id once")
            seen.add(doc.id)
            size = len(doc.text.encode("utf-8"))
            if size > self.settings.max_document_bytes:
                raise DocumentTooLarge(
                    f"document {doc.id!r} has {size} bytes of text, over the limit of "
                    f"{self.settings.max_document_bytes}: split it into smaller documents")
            docs.append(doc)
        return docs

    def upsert(self, namespace: str, documents: Sequence[Document | dict[str, Any]],
               idempotency: IdempotencyKey | None = None) -> UpsertResult:
        check_namespace(namespace)
        docs = self.validate(documents)
        exists = self.registry.exists(namespace)
        if idempotency is not None:
            idempotency.bind("upsert", [d.model_dump(mode="json") for d in docs])
            # A repeat answers before any chunking or embedding; the write transaction
            # checks again, for a repeat that races the first attempt.
            if exists and (stored := self.registry.get(namespace).store.stored_response(
                    idempotency)) is not None:
                return UpsertResult.model_validate(stored)
        existing = (self.registry.get(namespace).store.content_hashes([d.id for d in docs])
                    if exists else {})
        changed = [(d, document_hash(d)) for d in docs]
        changed = [(d, h) for d, h in changed if existing.get(d.id) != h]

        plans = [(d, h, self.chunker.split(d.text)) for d, h in changed]
        texts = [embedding_text(d.title, c.text) for d, _, chunks in plans for c in chunks]
        vectors, embedded, cached = self.registry.cache.embed(
            self.embedder, texts, batch_size=self.settings.embed_batch_size,
            namespace=namespace)

        writes: list[DocumentWrite] = []
        row = 0
        for doc, digest, chunks in plans:
            new_chunks = []
            for chunk in chunks:
                new_chunks.append(NewChunk(chunk.index, doc.title, chunk.text, chunk.tokens,
                                           vectors[row]))
                row += 1
            writes.append(DocumentWrite(doc.id, doc.title, doc.text, dict(doc.metadata), digest,
                                        self.counter.count(doc.text), new_chunks))
        result = UpsertResult(namespace=namespace, upserted=len(writes),
                              unchanged=len(docs) - len(writes), chunks=len(texts),
                              embedded=embedded, cached=cached)
        response = result.model_dump(mode="json")
        try:
            if writes:
                ns = self.registry.get_or_create(namespace)
                with ns.write_lock:
                    ns.apply(ns.store.write_documents(writes, idempotency, response))
            elif idempotency is not None:
                self.registry.get_or_create(namespace).store.remember(idempotency, response)
        except Replayed as replay:
            return UpsertResult.model_validate(replay.response)
        return result

    def get(self, namespace: str, doc_id: str) -> StoredDocument:
        row = self.registry.get(namespace).store.get_document(doc_id)
        if row is None:
            raise DocumentNotFound(f"document {doc_id!r} does not exist in namespace "
                                   f"{namespace!r}")
        updated = datetime.fromtimestamp(row.pop("updated_at"), tz=UTC)
        return StoredDocument(namespace=namespace, updated_at=updated, **row)

    def delete(self, namespace: str, doc_id: str) -> DeleteResult:
        ns = self.registry.get(namespace)
        with ns.write_lock:
            result = ns.store.delete_document(doc_id)
            if result is None:
                raise DocumentNotFound(f"document {doc_id!r} does not exist in namespace "
                                       f"{namespace!r}")
            ns.apply(result)
        return DeleteResult(namespace=namespace, id=doc_id, deleted=True,
                            chunks=len(result.removed_chunk_ids))
