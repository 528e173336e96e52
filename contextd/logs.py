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


def configure_logging(level: str = "info", log_format: str = "text",
                      stream: IO[str] | None = None) -> logging.Handler:
    """Route every log record, uvicorn's included, through one stderr handler in `log_format`
    ('text' or 'json'); quiet the noisy libraries to WARNING. Returns the handler.

        >>> configure_logging("debug", "text")  # doctest: +SKIP
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else
                         logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler


def configure_status_lines(stream: IO[str] | None = None) -> None:
    """For one-shot commands: warnings, and contextd's INFO status lines (such as the one-time
    model export), as plain messages on stderr, so stdout stays the command's output."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("contextd").setLevel(logging.INFO)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
