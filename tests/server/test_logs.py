"""Logs while serving: one format (JSON or text), the request id on every line of a request,
noisy libraries at WARNING; /metrics with the standard process and GC collectors."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from contextd import AsyncClient, Engine
from contextd.logs import QUIET_LOGGERS, configure_logging


@pytest.fixture
def log_stream() -> Iterator[Any]:
    """Yields a function that routes logging to a fresh buffer in a format; restores after."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    streams: list[io.StringIO] = []

    def configure(log_format: str) -> io.StringIO:
        stream = io.StringIO()
        configure_logging("info", log_format, stream=stream)
        streams.append(stream)
        return stream

    yield configure
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


def logging_search(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make engine.search log a line from its worker thread, as engine code does."""
    original = engine.search

    def search(*args: Any, **kwargs: Any) -> Any:
        logging.getLogger("contextd.engine").info("searching")
        return original(*args, **kwargs)

    monkeypatch.setattr(engine, "search", search)


@pytest.mark.anyio
async def test_json_lines_carry_the_request_id(client: AsyncClient, server_engine: Engine,
                                               log_stream: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    await client.upsert_documents([{"id": "d1", "text": "Solar panels convert light."}])
    logging_search(server_engine, monkeypatch)
    stream = log_stream("json")
    response = await client.http.post("/v1/namespaces/default/search", json={"query": "solar"},
                                      headers={"X-Request-ID": "req-42"})
    assert response.status_code == 200
    logging.getLogger("contextd").info("between requests")
    await client.http.post("/v1/namespaces/default/search", json={"query": "light"})

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    searching = [line for line in lines if line["message"] == "searching"]
    assert len(searching) == 2
    assert searching[0]["request_id"] == "req-42"  # set in the middleware, seen in the thread
    assert len(searching[1]["request_id"]) == 32  # a fresh id when the caller sends none
    between = next(line for line in lines if line["message"] == "between requests")
    assert between["request_id"] == "-"  # reset once the request is done
    assert set(searching[0]) == {"time", "level", "logger", "message", "request_id"}
    assert searching[0]["level"] == "INFO" and searching[0]["logger"] == "contextd.engine"


@pytest.mark.anyio
async def test_text_lines_and_uvicorn_loggers_share_the_format(
        client: AsyncClient, server_engine: Engine, log_stream: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    await client.upsert_documents([{"id": "d1", "text": "Wind turbines convert wind."}])
    logging_search(server_engine, monkeypatch)
    stream = log_stream("text")
    await client.http.post("/v1/namespaces/default/search", json={"query": "wind"},
                           headers={"X-Request-ID": "req-7"})
    # uvicorn's loggers keep no handler of their own: their lines go through the same one.
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "GET",
                                             "/healthz", "1.1", 200)
    text = stream.getvalue().splitlines()
    assert any(line.endswith("INFO contextd.engine [req-7] searching") for line in text), text
    assert any("INFO uvicorn.access [-] 127.0.0.1:1" in line for line in text), text
    assert not logging.getLogger("uvicorn.access").handlers


def test_noisy_libraries_log_warnings_only(log_stream: Any) -> None:
    stream = log_stream("json")
    logging.getLogger("faiss.loader").info("Could not load library with AVX512 support")
    logging.getLogger("httpx").info("HTTP Request: POST http://x")
    logging.getLogger("faiss.loader").warning("a real problem")
    messages = [json.loads(line)["message"] for line in stream.getvalue().splitlines()]
    assert messages == ["a real problem"]
    assert all(logging.getLogger(n).level == logging.WARNING for n in QUIET_LOGGERS)


@pytest.mark.anyio
async def test_metrics_has_process_and_gc_collectors(client: AsyncClient) -> None:
    await client.namespaces()
    text = (await client.http.get("/metrics")).text
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                 "process_open_fds", "python_gc_collections_total", "python_info"):
        assert f"\n{name}" in text, name
