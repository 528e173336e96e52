"""How routes call the engine: on bounded worker threads, counted so shutdown can wait.

Engine calls block (model, SQLite, FAISS), so they run off the event loop, at most
`http_threads` at once; the answer is serialised once, straight from the response model.

    >>> response = await run_engine(request, engine.search, body)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import Depends, Request, Response
from pydantic import BaseModel

from contextd.engine import Engine
from contextd.errors import Unavailable

T = TypeVar("T")


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


def json_response(model: BaseModel | list[Any], status: int = 200) -> Response:
    """`model` as a JSON response, serialised once (FastAPI would validate it again)."""
    if isinstance(model, list):
        body = "[" + ",".join(m.model_dump_json() for m in model) + "]"
    else:
        body = model.model_dump_json()
    return Response(body, status_code=status, media_type="application/json")


def _engine(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


EngineDep = Annotated[Engine, Depends(_engine)]
