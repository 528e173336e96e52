"""The façade: one `Engine` owns every stage; the server, CLI and client mirror its methods.

    >>> from contextd import Engine
    >>> with Engine("indexes") as engine:  # doctest: +SKIP
    ...     engine.upsert_documents([{"id": "faq", "text": "contextd packs prompts."}])
    ...     response = engine.assemble(query="What does contextd do?", max_tokens=1000)
    ...     response.messages[-1].content
    'What does contextd do?'
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from contextd.batch import BatchWorkers, assemble_batch
from contextd.batching import MicroBatcher
from contextd.cache.assembly import AssemblyCache
from contextd.cache.store import SemanticCache
from contextd.errors import AnswerNotFound, ContextdError, InvalidRequest, NamespaceNotFound
from contextd.ingest import DocumentIngestor
from contextd.memory.conversation import ConversationMemory
from contextd.memory.llm_summariser import LLMSummariser, SummaryRefiner
from contextd.memory.recall import TurnRecaller
from contextd.memory.summariser import ExtractiveSummariser
from contextd.models import (
    MAX_ANSWER_CHARS,
    AnswerResult,
    AppendResult,
    AssembleRequest,
    AssembleResponse,
    ChatMessage,
    DeleteResult,
    Document,
    NamespaceInfo,
    SearchHit,
    SearchRequest,
    SearchResponse,
    SessionInfo,
    SessionSummary,
    StoredDocument,
    UpsertResult,
)
from contextd.namespaces import NamespaceRegistry, check_interchangeable
from contextd.native_threads import limit_native_threads
from contextd.pipeline import AssemblePipeline
from contextd.profiles import DEFAULT, ProfileRouter, profile_digest
from contextd.protocols import Embedder, Summariser
from contextd.retrieval.ranker import MMRRanker
from contextd.retrieval.retriever import HybridRetriever
from contextd.runtime import document_runtimes, runtime_of
from contextd.sessions import SessionService
from contextd.settings import Settings
from contextd.store.idempotency import IdempotencyKey, as_key
from contextd.telemetry import Telemetry
from contextd.timings import timed
from contextd.validation import parse

log = logging.getLogger("contextd")


def default_embedder(settings: Settings) -> Embedder:
    """The embedder `settings.embedder` names (the bundled model unless 'hash')."""
    from contextd.embedding import HashEmbedder, SentenceTransformerEmbedder

    if settings.embedder == "hash":
        return HashEmbedder()
    # The ONNX export depends only on the bundled weights: once per machine, in the user
    # cache directory, shared by every data directory.
    return SentenceTransformerEmbedder(backend=settings.embedder)


def default_document_embedder(settings: Settings, embedder: Embedder) -> Embedder:
    """The embedder documents are ingested with (`settings.document_embedder`): `embedder`
    itself, unless another runtime of its model is to embed them (see
    `contextd.runtime.document_runtimes`)."""
    from contextd.embedding import SentenceTransformerEmbedder

    wanted = settings.document_embedder
    if (wanted == "same" or settings.embedder == "hash"
            or not isinstance(embedder, SentenceTransformerEmbedder)):
        return embedder
    rival = None
    if wanted == "auto":
        if not embedder.chosen_by_cpu:  # a runtime was named for queries: documents too
            return embedder
        runtime, *others = document_runtimes(None, embedder.requested)
        rival = others[0] if others else None
    else:
        runtime = wanted
    if runtime == embedder.requested and rival is None:
        return embedder
    if rival is not None:
        log.info("documents embedded on %s or %s, whichever is faster at first use; queries "
                 "on %s", runtime, rival, embedder.requested)
    else:
        log.info("documents embedded on %s, queries on %s", runtime, embedder.requested)
    return embedder.with_runtime(runtime, rival)  # type: ignore[arg-type]


def _summary_refiner(settings: Settings) -> SummaryRefiner | None:
    """LLM summaries in the background when an endpoint is configured."""
    if not settings.summariser_url:
        return None
    return SummaryRefiner(LLMSummariser(
        settings.summariser_url, settings.summariser_model,
        key.get_secret_value() if (key := settings.summariser_api_key) else None,
        settings.summariser_timeout_s, settings.summariser_retries))


class Engine:
    """Assembles prompts from documents and conversation history within a token budget.

    `data_dir` holds one folder per namespace and the embedding cache; it is created if
    missing. Pass `embedder` to replace the bundled model (tests use `HashEmbedder`), and
    `document_embedder` to embed documents with another runtime of the same model (by default
    `default_document_embedder` chooses).
    """

    def __init__(
        self,
        data_dir: str | Path | None = None,
        settings: Settings | None = None,
        *,
        embedder: Embedder | None = None,
        document_embedder: Embedder | None = None,
        summariser: Summariser | None = None,
    ) -> None:
        limit_native_threads()
        settings = settings or Settings.from_env()
        if data_dir is not None:
            settings = settings.model_copy(update={"data_dir": Path(data_dir)})
        self.settings = settings
        self.embedder = embedder or default_embedder(settings)
        if document_embedder is not None:  # the default is a runtime of the same model
            check_interchangeable(self.embedder, document_embedder)
        self.document_embedder = document_embedder or default_document_embedder(
            settings, self.embedder)
        self.registry = NamespaceRegistry(settings, self.embedder)
        self.retriever = HybridRetriever(
            depth=settings.retrieval_depth, fusion=settings.fusion, rrf_k=settings.rrf_k,
            dense_weight=settings.dense_weight, lexical_weight=settings.lexical_weight,
            title_weight=settings.title_weight,
            common_term_share=settings.common_term_share)
        self.ranker = MMRRanker(lambda_=settings.mmr_lambda,
                                duplicate_threshold=settings.duplicate_threshold,
                                redundancy_floor=settings.redundancy_floor)
        self.memory = ConversationMemory(
            summariser or ExtractiveSummariser(), TurnRecaller(),
            keep_fraction=settings.window_keep_fraction,
            floor_tokens=settings.history_floor_tokens)
        self.ingestor = DocumentIngestor(settings, self.document_embedder, self.registry)
        self.sessions = SessionService(settings, self.embedder, self.registry, self.memory)
        # Per process: its keys hold sequences read from the shared store, so every process
        # sees a write by any other as a new key.
        self.cache = AssemblyCache(SemanticCache.from_settings(settings), DEFAULT,
                                   profile_digest(settings))
        self.pipeline = AssemblePipeline(settings, self.registry, self.retriever, self.ranker,
                                         self.memory, self.sessions,
                                         self.embed_query_async, self.cache)
        # Concurrent queries (server worker threads, or any multi-threaded caller) share
        # forward passes; 0 ms turns this off and embeds each query on its caller's thread.
        # A batch waits only for requests that have arrived (`_arriving`) and not yet
        # submitted their query, so a lone request is embedded at once.
        self.batcher = (MicroBatcher(self.embedder.embed, settings.batch_wait_ms,
                                     settings.batch_max, announced=True)
                        if settings.batch_wait_ms > 0 else None)
        # Named configurations side by side; 'default' without overrides is self.pipeline.
        self.profiles = ProfileRouter(settings, self._profile_pipeline,
                                      default_runner=self.pipeline)
        # One usage log line per assemble, in process or over HTTP (contextd report).
        self.telemetry = Telemetry(settings)
        # Batches run on these (threads made per batch would each keep SQLite connections).
        self.batch_workers = BatchWorkers()
        self.refiner = _summary_refiner(settings)
        if self.refiner is not None:
            self.memory.on_evict = self.refiner.submit
        self._closed = False
        self._close_lock = threading.Lock()

    def _profile_pipeline(self, name: str, settings: Settings) -> AssemblePipeline:
        """An assemble pipeline with a profile's settings over the engine's data: its own
        retriever, ranker and memory shares; the same namespaces, sessions and embedder, and
        the same cache memory, under keys of its own (unless the profile turns it off)."""
        retriever = HybridRetriever(
            depth=settings.retrieval_depth, fusion=settings.fusion, rrf_k=settings.rrf_k,
            dense_weight=settings.dense_weight, lexical_weight=settings.lexical_weight,
            title_weight=settings.title_weight, common_term_share=settings.common_term_share)
        ranker = MMRRanker(lambda_=settings.mmr_lambda,
                           duplicate_threshold=settings.duplicate_threshold,
                           redundancy_floor=settings.redundancy_floor)
        memory = ConversationMemory(
            self.memory.summariser, self.memory.recaller,
            keep_fraction=settings.window_keep_fraction,
            floor_tokens=settings.history_floor_tokens)
        cache = AssemblyCache(self.cache.core, name, profile_digest(settings),
                              enabled=settings.cache_enabled)
        return AssemblePipeline(settings, self.registry, retriever, ranker, memory,
                                self.sessions, self.embed_query_async, cache)

    def reload_profiles(self, settings: Settings) -> None:
        """Assemble with the profiles (names, weights, values) of `settings` from now on,
        without a restart; other settings keep their values until one.

            >>> engine.reload_profiles(Settings.from_env(config_file="contextd.toml"))
            ... # doctest: +SKIP
        """
        self.profiles.reload(self.settings.model_copy(update={"profiles": settings.profiles}))

    # ------------------------------------------------------------------ lifecycle

    def warm_up(self) -> None:
        """Load the embedding model and tokenizer now, not on the first request."""
        from contextd.tokens import get_counter

        get_counter(self.settings.encoding)
        self.embedder.warm_up()
        self.embed_query("warm up")
        for name in self.registry.names():  # opens each namespace: loads its vector snapshot
            try:
                with self.registry.lease(name):
                    self.registry.get(name)
            except (ContextdError, OSError, sqlite3.Error) as exc:
                # Reported, and answered with its own error when used; never blocks readiness.
                log.warning("warm-up skipped namespace %s: %s", name, exc)

    def close(self) -> None:
        """Flush vector snapshots and close every namespace. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        if self.batcher is not None:
            self.batcher.close()
        self.batch_workers.close()
        if self.refiner is not None:
            self.refiner.close()
        self.registry.close()
        self.telemetry.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ embedding

    def embed_query(self, text: str) -> np.ndarray:
        """One query vector (dim,), micro-batched with concurrent callers when enabled."""
        return self.embed_query_async(text).result()

    def embed_query_async(self, text: str) -> Future[np.ndarray]:
        """A future for one query vector. With micro-batching the batcher's thread computes it
        while the caller goes on (assemble runs lexical search meanwhile); without, it is
        computed before this returns."""
        if self.batcher is not None:
            return self.batcher.submit_async(text)
        future: Future[np.ndarray] = Future()
        try:
            future.set_result(self.embedder.embed([text])[0])
        except Exception as exc:  # delivered to whoever waits on the future
            future.set_exception(exc)
        return future

    # ------------------------------------------------------------------ assemble

    def assemble(self, request: AssembleRequest | dict[str, Any] | None = None, *,
                 idempotency_key: str | IdempotencyKey | None = None,
                 **fields: Any) -> AssembleResponse:
        """Assemble chat messages for a query within a token budget. With `session_id` and
        `messages` the messages are appended to the session; under an `idempotency_key` a
        repeat of the same request appends nothing (see `append_messages`).

            >>> engine.assemble(query="What is RRF?", max_tokens=1500, session_id="s1")
            ... # doctest: +SKIP
        """
        req = parse(AssembleRequest, request if request is not None else fields)
        profile = self.profiles.choose(req)
        with self._arriving(), self.registry.lease(req.namespace):
            response = profile.runner.run(req, as_key(idempotency_key))
        response.profile = profile.name
        self.telemetry.assembled(req, response)
        return response

    def assemble_batch(self, requests: Sequence[AssembleRequest | dict[str, Any]], *,
                       namespace: str | None = None) -> list[AssembleResponse | ContextdError]:
        """Assemble several requests, in order, with their query vectors in one forward pass.

        Each item is its response, or the error it alone met (the others still run). More than
        `batch_limit` requests is an InvalidRequest. With `namespace`, every item is in it.

            >>> results = engine.assemble_batch([{"query": "a", "max_tokens": 500},
            ...                                  {"query": "b", "max_tokens": 500}])
            ... # doctest: +SKIP
        """
        return assemble_batch(self, requests, namespace)

    def put_answer(self, assembly_id: str, answer: str, *,
                   namespace: str = "default") -> AnswerResult:
        """Keep the model's answer to an assembled prompt: a later cache hit returns it as
        `cache.answer`. AnswerNotFound unless that assembly is still cached.

            >>> r = engine.assemble(query="What is RRF?", max_tokens=500)  # doctest: +SKIP
            >>> engine.put_answer(r.assembly_id, "Reciprocal rank fusion.")  # doctest: +SKIP
        """
        if not isinstance(answer, str) or not answer:
            raise InvalidRequest("answer must be a non-empty string")
        if len(answer) > MAX_ANSWER_CHARS:
            raise InvalidRequest(f"answer has {len(answer)} characters; at most "
                                 f"{MAX_ANSWER_CHARS} are allowed")
        with self.registry.lease(namespace):
            self.registry.get(namespace)
            if not self.cache.put_answer(namespace, assembly_id, answer):
                raise AnswerNotFound(
                    f"no cached assembly {assembly_id!r} in namespace {namespace!r}: it expired "
                    "or was evicted, the documents or session changed, or the cache is off; "
                    "assemble again and store the answer under the new assembly_id")
        return AnswerResult(namespace=namespace, assembly_id=assembly_id, stored=True)

    # ------------------------------------------------------------------ documents

    def upsert_documents(self, documents: Sequence[Document | dict[str, Any]], *,
                         namespace: str = "default",
                         idempotency_key: str | IdempotencyKey | None = None) -> UpsertResult:
        """Add or replace documents; all of the batch is written or none of it. Under an
        `idempotency_key` (new for each logical request, the same for its retries) a repeat
        of the same batch writes nothing and returns the first result (24 h).

            >>> engine.upsert_documents([{"id": "a", "text": "Alpha."}])  # doctest: +SKIP
        """
        with self.registry.lease(namespace):
            return self.ingestor.upsert(namespace, documents, as_key(idempotency_key))

    def get_document(self, doc_id: str, *, namespace: str = "default") -> StoredDocument:
        """A stored document with its metadata and chunk count."""
        with self.registry.lease(namespace):
            return self.ingestor.get(namespace, doc_id)

    def delete_document(self, doc_id: str, *, namespace: str = "default") -> DeleteResult:
        """Remove a document and its chunks from every index."""
        with self.registry.lease(namespace):
            return self.ingestor.delete(namespace, doc_id)

    def search(self, query: str | SearchRequest, *, namespace: str = "default",
               top_k: int = 10, filters: dict[str, Any] | None = None,
               mode: str = "hybrid") -> SearchResponse:
        """Retrieval and ranking only, with scores.

            >>> engine.search("vitamin d", top_k=5).hits[0].id  # doctest: +SKIP
        """
        if isinstance(query, SearchRequest):
            req = query
        else:
            req = parse(SearchRequest, {"query": query, "top_k": top_k, "filters": filters,
                                        "mode": mode})
        with self._arriving(), self.registry.lease(namespace):
            return self._search(req, namespace)

    def _arriving(self) -> AbstractContextManager[None]:
        """Tell the micro-batcher a query may come from this thread soon (see MicroBatcher)."""
        return self.batcher.expecting() if self.batcher is not None else nullcontext()

    def _search(self, req: SearchRequest, namespace: str) -> SearchResponse:
        ns = self.registry.get(namespace)
        timings: dict[str, float] = {}
        pool = self.ranker.pool_size(req.top_k)
        # The same retrieval stage as assemble: bm25 runs while the query embeds.
        pending = None
        if req.mode != "lexical":
            with timed(timings, "embed"):
                pending = self.embed_query_async(req.query)
        lexical = None
        if req.mode != "dense":
            with timed(timings, "lexical"):
                lexical = self.retriever.lexical(ns, req.query, pool, req.filters)
        vector = None
        if pending is not None:
            with timed(timings, "embed"):
                vector = pending.result()
        with timed(timings, "retrieval"):
            candidates = self.retriever.retrieve(ns, vector, req.query, pool, req.filters,
                                                 req.mode, lexical=lexical)
        with timed(timings, "ranking"):
            ranked, _ = self.ranker.rank(candidates, req.top_k)
        # One hit per document: its best chunk, and the relevant neighbours in document order.
        hits = [SearchHit(id=c.chunk.doc_id, chunk=c.chunk.ord, chunks=c.chunk_ords,
                          text=c.text, title=c.chunk.title, score=c.score, dense_rank=c.dense_rank,
                          lexical_rank=c.lexical_rank, metadata=c.chunk.metadata)
                for c in ranked]
        timings["total"] = sum(timings.values())
        return SearchResponse(namespace=namespace, query=req.query, hits=hits,
                              timings_ms=timings)

    # ------------------------------------------------------------------ sessions

    def append_messages(self, session_id: str, messages: Sequence[ChatMessage | dict[str, Any]],
                        *, namespace: str = "default",
                        idempotency_key: str | IdempotencyKey | None = None,
                        user_id: str | None = None) -> AppendResult:
        """Append turns to a session (created on first use); embeddings computed now. Under
        an `idempotency_key` (new for each logical request, the same for its retries) a
        repeat of the same messages stores nothing and returns the first result; the same
        key with other messages is a 422 (keys live 24 h). `user_id` names the session's
        user, once: a session of another user is a 409 (`Conflict`).

            >>> engine.append_messages("s1", [{"role": "user", "content": "Hi"}],
            ...                        idempotency_key="b7e1c0de", user_id="ana")  # doctest: +SKIP
        """
        with self.registry.lease(namespace):
            return self.sessions.append(namespace, session_id, messages,
                                        as_key(idempotency_key), user_id=user_id)

    def get_session(self, session_id: str, *, namespace: str = "default") -> SessionInfo:
        """A session's turns, running summary and token counts."""
        with self.registry.lease(namespace):
            return self.sessions.get(namespace, session_id)

    def delete_session(self, session_id: str, *, namespace: str = "default") -> bool:
        """Delete a session and its turns; SessionNotFound if there is none."""
        with self.registry.lease(namespace):
            deleted = self.sessions.delete(namespace, session_id)
        self.cache.drop_session(namespace, session_id)  # unreachable already; frees the memory
        return deleted

    def list_sessions(self, namespace: str = "default") -> list[SessionSummary]:
        """A namespace's sessions with their turn counts, the most recently updated first.

            >>> engine.list_sessions("default")[0].session_id  # doctest: +SKIP
            'user-42'
        """
        with self.registry.lease(namespace):
            rows = self.registry.get(namespace).sessions.listing()
        return [SessionSummary(session_id=r["session_id"], turns=r["turns"],
                               updated_at=datetime.fromtimestamp(r["updated_at"], tz=UTC),
                               user_id=r["user_id"])
                for r in rows]

    # ------------------------------------------------------------------ namespaces

    def namespaces(self) -> list[NamespaceInfo]:
        """Every namespace with its document, chunk and session counts."""
        infos = []
        for name in self.registry.names():
            try:
                with self.registry.lease(name):
                    infos.append(NamespaceInfo(
                        **self.registry.get(name).info(),
                        embedder_runtime=runtime_of(self.embedder),
                        document_runtime=runtime_of(self.document_embedder)))
            except (ContextdError, OSError, sqlite3.Error) as exc:
                # One namespace that cannot be opened is its own problem, not every caller's.
                log.warning("namespace %s is unavailable: %s", name, exc)
        return infos

    def delete_namespace(self, namespace: str) -> bool:
        """Delete a namespace and all it holds."""
        if not self.registry.exists(namespace):
            raise NamespaceNotFound(f"namespace {namespace!r} does not exist")
        self.memory.recaller.cache.forget_namespace(namespace)
        # A namespace made again starts its sequences over: its old entries must not match it.
        # Dropped before (no hit while the files go) and after (nothing stored meanwhile).
        self.cache.drop_namespace(namespace)
        deleted = self.registry.delete(namespace)
        self.cache.drop_namespace(namespace)
        # Vectors only this namespace contributed go with it (see EmbeddingCache).
        self.registry.cache.forget_namespace(namespace)
        return deleted


__all__ = ["ContextdError", "Engine"]
