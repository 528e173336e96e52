"""Logging of the service: one format for contextd and uvicorn, the request id on every line.

`RequestContext` (contextd.server.middleware) puts each request's id in `REQUEST_ID`, a
context variable; it follows the request into the worker threads of engine calls (anyio
copies the context) and into uvicorn's access log call, which runs while the response
starts. `RequestIdFilter` copies it onto every record, so text and JSON lines both carry it.

    >>> configure_logging("info", "json")  # doctest: +SKIP
    >>> logging.getLogger("contextd").info("ready")  # doctest: +SKIP
    {"time": "2026-12-01T23:59:00.123Z", "level": "INFO", "logger": "contextd", ...}
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar
from typing import IO, Any

REQUEST_ID: ContextVar[str] = ContextVar("contextd_request_id", default="")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
# Libraries whose INFO lines read as alarms or chatter to an operator: faiss reports at INFO
# that it could not load its AVX-512 build (it falls back to AVX2, as intended); httpx logs
# every request of the summariser; sentence-transformers and transformers announce loads.
QUIET_LOGGERS = ("faiss", "httpx", "httpcore", "sentence_transformers", "transformers")
# Where uvicorn logs; with no handlers of their own they propagate to the root handler.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


class RequestIdFilter(logging.Filter):
    """Sets `record.request_id` to the id of the request being served ('-' outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, request_id, and the
    traceback as `exception` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time of each record, so a handler set up
    once keeps working when stderr is swapped (test capture, daemonisers)."""

    @property  # type: ignore[override]
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass


def _install(handler: logging.Handler, level: int | str) -> None:
    # Replaces only a handler installed here before, so embedding code (or a test runner) that
    # set up its own handlers keeps them.
    handler._contextd = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_contextd", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def configure_logging(level: str = "info", log_format: str = "text",
                      stream: IO[str] | None = None) -> logging.Handler:
    """Route every log record, uvicorn's included, through one stderr handler in `log_format`
    ('text' or 'json'); quiet the noisy libraries to WARNING. Returns the handler.

        >>> configure_logging("debug", "text")  # doctest: +SKIP
    """
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else
                         logging.Formatter(TEXT_FORMAT))
    _install(handler, level.upper())
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    return handler


def configure_status_lines(stream: IO[str] | None = None) -> None:
    """For one-shot commands: warnings, and contextd's INFO status lines (such as the one-time
    model export), as plain messages on stderr, so stdout stays the command's output."""
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    _install(handler, logging.WARNING)
    logging.getLogger("contextd").setLevel(logging.INFO)
