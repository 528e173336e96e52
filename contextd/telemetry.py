"""Token telemetry of assembled prompts: bounded labels and the local usage log.

Every assemble, in process or over HTTP, leaves one line in the usage log (`usage_log`,
default `<data_dir>/usage.jsonl`): when, which request, namespace, profile, query type,
tokens by section, budget, what the whole history and every retrieved chunk would have cost,
drops by reason, stage timings and the cache outcome. No text, unless `usage_log_text`.
`contextd report` reads it back. The server's /metrics carries the same figures, labelled by
`query_type_label`, which folds every query type outside `query_types` into `other`, so a
caller cannot grow the label set.

    >>> query_type_label("qa", frozenset({"qa", "chat"})), query_type_label("x", frozenset())
    ('qa', 'other')
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

from contextd.jsonl_log import JsonlLog
from contextd.logs import REQUEST_ID
from contextd.models import AssembleRequest, AssembleResponse
from contextd.settings import Settings

log = logging.getLogger("contextd")

OTHER = "other"
DEFAULT_PROFILE = "default"
SECTIONS = ("system", "summary", "history", "recalled", "documents", "query", "overhead")


def query_type_label(query_type: str | None, known: frozenset[str]) -> str:
    """`query_type` when it is one of `known`, else 'other' (unset included)."""
    return query_type if query_type in known else OTHER


def response_profile(response: object) -> str:
    """The profile that assembled `response` ('default' while there is one configuration)."""
    return str(getattr(response, "profile", None) or DEFAULT_PROFILE)


def cache_info(response: object) -> dict[str, Any] | None:
    """The response's cache outcome as a plain dict (`hit`, `similarity`, `age_s`), or None
    when the response says nothing about a cache.

        >>> cache_info(object()) is None
        True
    """
    cache = getattr(response, "cache", None)
    if cache is None:
        return None
    if hasattr(cache, "model_dump"):
        cache = cache.model_dump(mode="json")
    if not isinstance(cache, dict) or "hit" not in cache:
        return None
    # The answer a caller stored is text: never in telemetry.
    return {k: v for k, v in cache.items() if k in ("hit", "similarity", "age_s")}


def cache_outcome(response: object) -> str | None:
    """'hit', 'miss', or None when the response carries no cache outcome."""
    info = cache_info(response)
    return None if info is None else ("hit" if info["hit"] else "miss")


def utc_now() -> str:
    """Now in UTC, ISO 8601 with milliseconds, as every log line writes its time."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def usage_record(req: AssembleRequest, response: AssembleResponse, *, request_id: str | None,
                 with_text: bool = False) -> dict[str, Any]:
    """The usage log line of one assembled prompt.

        >>> usage_record(req, response, request_id="3f2a")["tokens"]["total"]  # doctest: +SKIP
        812
    """
    usage = response.usage
    record: dict[str, Any] = {
        "time": utc_now(),
        "request_id": request_id or None,
        "namespace": response.namespace,
        "profile": response_profile(response),
        "query_type": req.query_type,
        "session": response.session_id is not None,
        "tokens": {**{s: getattr(usage, s) for s in SECTIONS}, "total": usage.total},
        "budget": usage.budget,
        "history_available_tokens": usage.history_available,
        "documents_available_tokens": usage.documents_available,
        "documents": len(response.documents),
        "dropped": dict(Counter(d.reason for d in response.dropped)),
        "timings_ms": response.timings_ms,
        "cache": cache_info(response),
    }
    if with_text:
        record["query"] = response.messages[-1].content if response.messages else req.query
    return record


def log_path(settings: Settings, path: Path | None) -> Path | None:
    """A log setting's file: relative paths are inside the data directory."""
    if path is None:
        return None
    return path if path.is_absolute() else Path(settings.data_dir) / path


class Telemetry:
    """What an `Engine` records about each assembled prompt: the usage log line.

    A log that cannot be written (full disk, read-only directory) never fails the request:
    it is reported once as a warning, and again only after it worked in between.

        >>> telemetry = Telemetry(Settings(usage_log=None))
        >>> telemetry.label("qa"), telemetry.label("billing_dispute")
        ('qa', 'other')
    """

    def __init__(self, settings: Settings) -> None:
        self.known_query_types = frozenset(settings.query_types)
        path = log_path(settings, settings.usage_log)
        self.usage = (JsonlLog(path, settings.usage_log_max_bytes, settings.usage_log_backups)
                      if path is not None else None)
        self.with_text = settings.usage_log_text
        self._failing = False

    def label(self, query_type: str | None) -> str:
        """The metrics label of `query_type`: itself if configured, else 'other'."""
        return query_type_label(query_type, self.known_query_types)

    def assembled(self, req: AssembleRequest, response: AssembleResponse) -> None:
        """Write the usage line of one assembled prompt (the request id is the one the HTTP
        layer set for this call, if any)."""
        if self.usage is None:
            return
        record = usage_record(req, response, request_id=REQUEST_ID.get() or None,
                              with_text=self.with_text)
        try:
            self.usage.write(record)
        except OSError as exc:
            if not self._failing:
                log.warning("usage log %s cannot be written (%s); assemble goes on without it",
                            self.usage.path, exc)
            self._failing = True
        else:
            self._failing = False

    def close(self) -> None:
        if self.usage is not None:
            self.usage.close()
