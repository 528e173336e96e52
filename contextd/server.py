"""The HTTP API: FastAPI routes, each a thin shell over one `Engine` method.

Engine calls block (model, SQLite, FAISS), so they run on worker threads bounded by a
capacity limiter; the event loop only parses, routes and serialises. Every error is an RFC 9457
problem-details body (application/problem+json), mapped in `contextd.problems`; the pure ASGI
layers live in `contextd.asgi`.

    $ uvicorn contextd.server:create_app --factory     # engine from CONTEXTD_* variables
    >>> app = create_app(Engine("indexes"))  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import logging
import secrets
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from contextd.asgi import BodyLimit, RequestContext
from contextd.engine import Engine
from contextd.errors import Unavailable
from contextd.metrics import CONTENT_TYPE, ServiceMetrics
from contextd.models import (
    ID_PATTERN,
    NAMESPACE_PATTERN,
    SESSION_PATTERN,
    AppendRequest,
    AppendResult,
    AssembleRequest,
    AssembleResponse,
    DeleteResult,
    NamespaceInfo,
    SearchRequest,
    SearchResponse,
    SessionInfo,
    StoredDocument,
    UpsertRequest,
    UpsertResult,
)
from contextd.problems import add_problem_handlers, problem_responses

log = logging.getLogger("contextd.server")
T = TypeVar("T")

# Threads that may run Engine calls at once: enough to keep 2 cores busy while others wait
# on SQLite or share a micro-batch; benchmarks/results/http.md has the measurements.
# How long shutdown waits for running Engine calls (a large upsert on a busy machine) before
# closing the engine anyway.
SHUTDOWN_WAIT_S = 300.0

NamespacePath = Annotated[str, Path(pattern=NAMESPACE_PATTERN, description="Namespace.")]
DocumentPath = Annotated[str, Path(pattern=ID_PATTERN, description="Document id.")]
SessionPath = Annotated[str, Path(pattern=SESSION_PATTERN, description="Session id.")]
NamespaceQuery = Annotated[str, Query(pattern=NAMESPACE_PATTERN,
                                      description="Namespace holding the session.")]


class Status(BaseModel):
    status: str


# --------------------------------------------------------------------------- plumbing


class EngineCalls:
    """Counts Engine calls running on worker threads, so shutdown can wait for them: a
    cancelled request task does not stop its thread, and closing the engine under a
    running upsert would lose it."""

    def __init__(self) -> None:
        self._running = 0
        self._idle = threading.Condition()

    def run(self, call: Callable[[], T]) -> T:
        with self._idle:
            self._running += 1
        try:
            return call()
        finally:
            with self._idle:
                self._running -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """True once no call runs; False if `timeout` seconds pass first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._running == 0, timeout)


async def run_engine(request: Request, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking Engine call on a worker thread of the app's bounded pool."""
    state = request.app.state
    if state.engine_closed:
        raise Unavailable("the server is shutting down; retry on another instance")
    bound = functools.partial(call, *args, **kwargs)
    return await anyio.to_thread.run_sync(state.calls.run, bound, limiter=state.limiter)


def _json(model: BaseModel | list[Any], status: int = 200) -> Response:
    # Serialised directly: FastAPI would otherwise validate the response model a second time.
    if isinstance(model, list):
        body = "[" + ",".join(m.model_dump_json() for m in model) + "]"
    else:
        body = model.model_dump_json()
    return Response(body, status_code=status, media_type="application/json")


def _engine(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


async def check_api_key(request: Request) -> None:
    """401 unless the Authorization header carries the app's API key (when one is set)."""
    expected: str | None = request.app.state.api_key
    if expected is None:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(token.encode(), expected.encode()):
        raise HTTPException(401, "send the API key as 'Authorization: Bearer <key>'",
                            headers={"WWW-Authenticate": "Bearer"})


EngineDep = Annotated[Engine, Depends(_engine)]

# --------------------------------------------------------------------------- routes

v1 = APIRouter(prefix="/v1", dependencies=[Depends(check_api_key)],
               responses=problem_responses(401, 422, 500, 503))


@v1.post("/assemble", response_model=AssembleResponse, tags=["assemble"],
         responses=problem_responses(404, 409))
async def assemble(body: AssembleRequest, request: Request, engine: EngineDep) -> Response:
    """Assemble chat messages for a query within a token budget."""
    response = await run_engine(request, engine.assemble, body)
    request.app.state.metrics.observe_assemble(response, body.query_type)
    return _json(response)


@v1.post("/namespaces/{namespace}/documents", response_model=UpsertResult, tags=["documents"],
         responses=problem_responses(413))
async def upsert_documents(namespace: NamespacePath, body: UpsertRequest, request: Request,
                           engine: EngineDep) -> Response:
    """Add or replace up to 1,000 documents; the namespace is created on first use."""
    result = await run_engine(request, engine.upsert_documents, body.documents,
                              namespace=namespace)
    return _json(result)


@v1.get("/namespaces/{namespace}/documents/{doc_id:path}", response_model=StoredDocument,
        tags=["documents"], responses=problem_responses(404))
async def get_document(namespace: NamespacePath, doc_id: DocumentPath, request: Request,
                       engine: EngineDep) -> Response:
    """A stored document with its metadata and chunk count."""
    return _json(await run_engine(request, engine.get_document, doc_id, namespace=namespace))


@v1.delete("/namespaces/{namespace}/documents/{doc_id:path}", response_model=DeleteResult,
           tags=["documents"], responses=problem_responses(404))
async def delete_document(namespace: NamespacePath, doc_id: DocumentPath, request: Request,
                          engine: EngineDep) -> Response:
    """Remove a document and its chunks from every index."""
    return _json(await run_engine(request, engine.delete_document, doc_id,
                                  namespace=namespace))


@v1.get("/namespaces", response_model=list[NamespaceInfo], tags=["namespaces"])
async def list_namespaces(request: Request, engine: EngineDep) -> Response:
    """Every namespace with its document, chunk and session counts."""
    return _json(await run_engine(request, engine.namespaces))


@v1.delete("/namespaces/{namespace}", status_code=204, response_class=Response,
           tags=["namespaces"], responses=problem_responses(404))
async def delete_namespace(namespace: NamespacePath, request: Request,
                           engine: EngineDep) -> Response:
    """Delete a namespace with all its documents and sessions."""
    await run_engine(request, engine.delete_namespace, namespace)
    return Response(status_code=204)


@v1.post("/namespaces/{namespace}/search", response_model=SearchResponse, tags=["search"],
         responses=problem_responses(404))
async def search(namespace: NamespacePath, body: SearchRequest, request: Request,
                 engine: EngineDep) -> Response:
    """Retrieval and ranking only, with scores."""
    response = await run_engine(request, engine.search, body, namespace=namespace)
    request.app.state.metrics.observe_search(response)
    return _json(response)


@v1.post("/sessions/{session_id}/messages", response_model=AppendResult, tags=["sessions"],
         responses=problem_responses(409, 413))
async def append_messages(session_id: SessionPath, body: AppendRequest, request: Request,
                          engine: EngineDep, namespace: NamespaceQuery = "default") -> Response:
    """Append turns to a session, creating it (and its namespace) on first use."""
    return _json(await run_engine(request, engine.append_messages, session_id, body.messages,
                                  namespace=namespace))


@v1.get("/sessions/{session_id}", response_model=SessionInfo, tags=["sessions"],
        responses=problem_responses(404))
async def get_session(session_id: SessionPath, request: Request, engine: EngineDep,
                      namespace: NamespaceQuery = "default") -> Response:
    """A session's turns, running summary and token counts."""
    return _json(await run_engine(request, engine.get_session, session_id, namespace=namespace))


@v1.delete("/sessions/{session_id}", status_code=204, response_class=Response,
           tags=["sessions"], responses=problem_responses(404))
async def delete_session(session_id: SessionPath, request: Request, engine: EngineDep,
                         namespace: NamespaceQuery = "default") -> Response:
    """Delete a session and its turns."""
    await run_engine(request, engine.delete_session, session_id, namespace=namespace)
    return Response(status_code=204)


ops = APIRouter(tags=["operations"])


@ops.get("/healthz", response_model=Status)
async def healthz() -> Status:
    """The process is up (it may still be warming up)."""
    return Status(status="ok")


@ops.get("/readyz", response_model=Status, responses=problem_responses(503))
async def readyz(request: Request) -> Status:
    """Model, tokenizer and indexes are loaded and warm; 503 until then."""
    state = request.app.state
    if state.warm_error is not None:
        raise Unavailable(f"warm-up failed: {state.warm_error}")
    if not state.warmed.is_set() or state.engine_closed:
        raise Unavailable("warming up: the model, tokenizer and indexes are loading")
    return Status(status="ready")


@ops.get("/metrics", response_class=Response,
         responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}},
                          "description": "Prometheus text exposition format."}})
async def metrics(request: Request) -> Response:
    """Prometheus metrics of this process."""
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE)


# --------------------------------------------------------------------------- the app


def create_app(engine: Engine | None = None, *, max_body_bytes: int | None = None,
               worker_threads: int | None = None, api_key: str | None = None,
               on_ready: Callable[[Engine], None] | None = None) -> FastAPI:
    """The contextd HTTP app over `engine` (default: `Engine()` from CONTEXTD_* variables).

    At startup a thread warms the engine up (then runs `on_ready`, e.g. sample ingestion);
    /readyz answers 503 until both are done. At shutdown the app closes the engine, which
    flushes the vector snapshots. With `api_key`, /v1 routes require `Bearer <api_key>`.

        >>> app = create_app(Engine("indexes"), api_key="s3cret")  # doctest: +SKIP
        >>> uvicorn.run(app, port=8000)  # doctest: +SKIP
    """
    engine = engine if engine is not None else Engine()
    # Unset arguments come from the engine's settings (CONTEXTD_* variables).
    max_body_bytes = max_body_bytes or engine.settings.max_body_bytes
    worker_threads = worker_threads or engine.settings.http_threads
    api_key = api_key or engine.settings.api_key

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        warmer = threading.Thread(target=_warm_up, args=(app.state, on_ready),
                                  name="contextd-warm-up", daemon=True)
        warmer.start()
        try:
            yield
        finally:
            app.state.engine_closed = True
            await anyio.to_thread.run_sync(warmer.join)
            if not await anyio.to_thread.run_sync(app.state.calls.wait_idle, SHUTDOWN_WAIT_S):
                log.error("engine calls still running after %s s; closing anyway",
                          SHUTDOWN_WAIT_S)
            await anyio.to_thread.run_sync(engine.close)

    app = FastAPI(title="contextd", version="0.1.0", lifespan=lifespan,
                  description="Decides what goes into an LLM prompt: retrieval, ranking, "
                  "conversation memory and exact token-budget packing.")
    app.state.engine = engine
    app.state.engine_closed = False
    app.state.api_key = api_key
    app.state.metrics = ServiceMetrics()
    if engine.batcher is not None:
        app.state.metrics.watch_batcher(engine.batcher)
    app.state.limiter = anyio.CapacityLimiter(worker_threads)
    app.state.calls = EngineCalls()
    app.state.warmed = threading.Event()
    app.state.warm_error = None
    app.include_router(v1)
    app.include_router(ops)
    add_problem_handlers(app)
    # Added last, so outermost: every response, 413s included, gets an id and a latency.
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(RequestContext, metrics=app.state.metrics)
    return app


def _warm_up(state: Any, on_ready: Callable[[Engine], None] | None) -> None:
    try:
        state.engine.warm_up()
        if on_ready is not None:
            on_ready(state.engine)
    except Exception as exc:  # noqa: BLE001 - reported by /readyz instead of killing the app
        log.exception("warm-up failed")
        state.warm_error = f"{type(exc).__name__}: {exc}"
        return
    state.warmed.set()
    state.metrics.ready.set(1)
    log.info("ready")
