"""The HTTP API: a FastAPI app whose routes are thin shells over one `Engine`.

Routes live in `contextd.server.routes`, one module per resource; engine calls run on bounded
worker threads (`contextd.server.calls`); every error is an RFC 9457 problem-details body
(`contextd.server.problems`); the pure ASGI layers are in `contextd.server.middleware`.

    $ uvicorn contextd.server:create_app --factory     # engine from CONTEXTD_* variables
    >>> app = create_app(Engine("indexes"))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from pydantic import SecretStr

from contextd.auth.keys import KeyRing, KeyStore
from contextd.engine import Engine
from contextd.server.access import ApiKeyAccess, engine_namespace_count
from contextd.server.calls import EngineCalls
from contextd.server.failures import FailureRecorder
from contextd.server.metrics import ServiceMetrics
from contextd.server.middleware import BodyLimit, RequestContext
from contextd.server.problems import add_problem_handlers, problem_responses
from contextd.server.routes import (
    answers,
    assemble,
    documents,
    inspect,
    namespaces,
    ops,
    search,
    sessions,
)
from contextd.version import __version__

log = logging.getLogger("contextd.server")

# How long shutdown waits for running Engine calls (a large upsert on a busy machine) before
# closing the engine anyway.
SHUTDOWN_WAIT_S = 300.0
# Where the bundled swagger-ui and redoc assets are served.
DOCS_ASSETS = "/static/docs"
BEARER_SCHEME = "apiKey"


def _include_v1(app: FastAPI) -> None:
    # Each resource's router carries the /v1 prefix itself (not through a nested router), so
    # the route a request matched knows its full template, which metrics label by.
    for module in (assemble, answers, documents, search, sessions, namespaces):
        app.include_router(module.router,
                           responses=problem_responses(401, 403, 404, 422, 500, 503))


def _document_bearer_auth(app: FastAPI) -> None:
    # The access layer reads the header itself (one code path with or without keys), so the
    # schema is told here: a bearer scheme, required by every /v1 operation, which lets the
    # docs page's "Authorize" send the key. Wraps the problem-details schema of
    # add_problem_handlers.
    problem_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        schema = problem_openapi()
        schema.setdefault("components", {})["securitySchemes"] = {
            BEARER_SCHEME: {"type": "http", "scheme": "bearer",
                            "description": "An API key (contextd keys create, or "
                                           "CONTEXTD_API_KEY)."}}
        for path, operations in schema["paths"].items():
            if path.startswith("/v1/"):
                for operation in operations.values():
                    operation["security"] = [{BEARER_SCHEME: []}]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


# --------------------------------------------------------------------------- the app


def create_app(engine: Engine | None = None, *, max_body_bytes: int | None = None,
               worker_threads: int | None = None, api_key: str | SecretStr | None = None,
               keys: KeyRing | None = None,
               on_ready: Callable[[Engine], None] | None = None) -> FastAPI:
    """The contextd HTTP app over `engine` (default: `Engine()` from CONTEXTD_* variables).

    At startup a thread warms the engine up (then runs `on_ready`, e.g. sample ingestion);
    /readyz answers 503 until both are done. At shutdown the app closes the engine, which
    flushes the vector snapshots. Keys (default: the key store in the data directory, the
    `api_keys` setting and `api_key`, an admin key over every namespace) are checked before
    anything else; with none at all, every route is open.

        >>> app = create_app(Engine("indexes"), api_key="s3cret")  # doctest: +SKIP
        >>> uvicorn.run(app, port=8000)  # doctest: +SKIP
    """
    engine = engine if engine is not None else Engine()
    # Unset arguments come from the engine's settings (CONTEXTD_* variables).
    max_body_bytes = max_body_bytes or engine.settings.max_body_bytes
    worker_threads = worker_threads or engine.settings.http_threads
    api_key = api_key or engine.settings.api_key
    if isinstance(api_key, SecretStr):
        api_key = api_key.get_secret_value()
    if keys is None:
        keys = KeyRing(engine.settings.api_keys, legacy_key=api_key,
                       store=KeyStore(engine.settings.data_dir))

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
            app.state.metrics.close()
            if keys.store is not None:
                keys.store.close()
            if app.state.failures is not None:
                app.state.failures.close()

    # /docs and /redoc load swagger-ui and redoc from the package's bundled copies, so they
    # render with no network (the stock pages load them from a CDN).
    app = FastAPIOffline(title="contextd", version=__version__, lifespan=lifespan,
                         static_url=DOCS_ASSETS,
                         description="Decides what goes into an LLM prompt: retrieval, ranking, "
                         "conversation memory and exact token-budget packing.")
    app.state.engine = engine
    app.state.engine_closed = False
    app.state.keys = keys
    app.state.metrics = ServiceMetrics()
    app.state.failures = FailureRecorder.from_settings(engine.settings)
    if engine.batcher is not None:
        app.state.metrics.watch_batcher(engine.batcher)
    app.state.metrics.watch_cache(engine.cache.core)
    app.state.limiter = anyio.CapacityLimiter(worker_threads)
    app.state.calls = EngineCalls()
    app.state.warmed = threading.Event()
    app.state.warm_error = None
    _include_v1(app)
    app.include_router(ops.router)
    app.include_router(inspect.router)
    add_problem_handlers(app)
    if keys.configured():
        _document_bearer_auth(app)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    # In front of the body limit: a request without a valid key is refused unread.
    app.add_middleware(ApiKeyAccess, keys=keys, metrics_open=engine.settings.metrics_open,
                       docs_open=engine.settings.docs_open,
                       namespace_count=engine_namespace_count(engine))
    # Added last, so outermost: every response, 401s and 413s included, gets an id and a
    # latency.
    app.add_middleware(RequestContext, metrics=app.state.metrics,
                       failures=app.state.failures)
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
