"""`contextd report`: where the tokens went, from the usage log; and the failure log's list.

Per group (all requests, or by query type, profile or namespace): requests, mean and p95
tokens by section, mean budget use, and the tokens saved against sending the whole stored
history (history_available_tokens minus summary, history and recalled) and against sending
every retrieved chunk (documents_available_tokens minus documents), each as a total and a
share of what was available. Both savings are floored at 0 per request.

    >>> report = usage_report([{"time": "2026-12-02T07:00:00.000Z", "tokens": {"total": 10}}])
    >>> report["groups"]["all"]["requests"], report["groups"]["all"]["tokens"]["total"]["mean"]
    (1, 10.0)
"""

from __future__ import annotations

import math
import re
import time
from calendar import timegm
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from contextd.errors import InvalidRequest
from contextd.telemetry import SECTIONS

GROUPINGS = ("query_type", "profile", "namespace")
COLUMNS = ("total", *SECTIONS)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: float | None = None) -> float:
    """The epoch second `--since` names: a span back from now (90s, 30m, 24h, 7d, 2w) or an
    ISO 8601 date or time (UTC unless it has an offset).

        >>> parse_since("2h", now=10_000.0)
        2800.0
    """
    now = time.time() if now is None else now
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"--since {text!r} is neither a span (30m, 24h, 7d) nor an ISO "
                             "date (2026-12-01 or 2026-12-01T08:00:00Z)") from None
    if when.tzinfo is None:
        return float(timegm(when.timetuple())) + when.microsecond / 1e6
    return when.timestamp()


def record_time(record: dict[str, Any]) -> float | None:
    """The epoch second of a log line's `time`, or None if it has none that parses."""
    try:
        return datetime.fromisoformat(str(record["time"]).replace("Z", "+00:00")).timestamp()
    except (KeyError, ValueError):
        return None


def since_filter(records: Iterable[dict[str, Any]],
                 since: float | None) -> Iterable[dict[str, Any]]:
    for record in records:
        when = record_time(record)
        if when is not None and (since is None or when >= since):
            yield record


def p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile (the value at rank ceil(0.95 n))."""
    ordered = sorted(values)
    return float(ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]) if ordered else 0.0


def usage_report(records: Iterable[dict[str, Any]], since: float | None = None,
                 by: str | None = None) -> dict[str, Any]:
    """Aggregate usage log lines from `since` (epoch s), grouped `by` one of GROUPINGS."""
    if by is not None and by not in GROUPINGS:
        raise InvalidRequest(f"--by {by!r}: group by one of {', '.join(GROUPINGS)}")
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in since_filter(records, since):
        key = "all" if by is None else str(record.get(by) or ("none" if by == "query_type"
                                                               else "default"))
        groups[key].append(record)
    return {"since": since, "by": by or "all",
            "requests": sum(len(g) for g in groups.values()),
            "groups": {name: _group(rows) for name, rows in sorted(groups.items())}}


def _group(rows: list[dict[str, Any]]) -> dict[str, Any]:
    tokens = {c: [float(r.get("tokens", {}).get(c, 0)) for r in rows] for c in COLUMNS}
    history_available = history_saved = documents_available = documents_saved = 0
    use = []
    hits = with_cache = 0
    for r in rows:
        t = r.get("tokens", {})
        sent = t.get("summary", 0) + t.get("history", 0) + t.get("recalled", 0)
        available = int(r.get("history_available_tokens") or 0)
        history_available += available
        history_saved += max(0, available - sent)
        available = int(r.get("documents_available_tokens") or 0)
        documents_available += available
        documents_saved += max(0, available - t.get("documents", 0))
        if r.get("budget"):
            use.append(t.get("total", 0) / r["budget"])
        cache = r.get("cache")
        if isinstance(cache, dict) and "hit" in cache:
            with_cache += 1
            hits += bool(cache["hit"])
    return {
        "requests": len(rows),
        "tokens": {c: {"sum": int(sum(v)), "mean": round(sum(v) / len(v), 1),
                       "p95": p95(v)} for c, v in tokens.items()},
        "budget_use_mean": round(sum(use) / len(use), 3) if use else None,
        "saved_vs_history": {"tokens": history_saved, "available": history_available},
        "saved_vs_documents": {"tokens": documents_saved, "available": documents_available},
        "cache": {"hits": hits, "with_outcome": with_cache},
    }


def _saved(saved: dict[str, int]) -> str:
    if not saved["available"]:
        return "0"
    return f"{saved['tokens']:,} ({saved['tokens'] / saved['available']:.0%})"


def format_usage(report: dict[str, Any]) -> str:
    """The report as a Markdown table, one row per group; tokens as mean / p95."""
    head = ["requests", *(f"{c} mean / p95" for c in COLUMNS), "budget use",
            "saved vs full history", "saved vs all retrieved", "cache hits"]
    lines = [f"| {report['by']} | " + " | ".join(head) + " |",
             "| " + " | ".join("---" for _ in range(len(head) + 1)) + " |"]
    for name, g in report["groups"].items():
        cells = [str(g["requests"])]
        cells += [f"{g['tokens'][c]['mean']:g} / {g['tokens'][c]['p95']:g}" for c in COLUMNS]
        cells.append(f"{g['budget_use_mean']:.0%}" if g["budget_use_mean"] is not None else "-")
        cells += [_saved(g["saved_vs_history"]), _saved(g["saved_vs_documents"])]
        cache = g["cache"]
        cells.append(f"{cache['hits']} / {cache['with_outcome']}" if cache["with_outcome"]
                     else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


FAILURE_FIELDS = ("time", "request_id", "status", "type", "exception", "method", "route",
                  "namespace", "profile")


def failure_rows(records: Iterable[dict[str, Any]],
                 since: float | None = None) -> list[dict[str, Any]]:
    """The failure log lines from `since`, newest first."""
    rows = list(since_filter(records, since))
    rows.sort(key=lambda r: record_time(r) or 0.0, reverse=True)
    return rows


def format_failures(rows: list[dict[str, Any]]) -> str:
    """The failures as a Markdown table, newest first."""
    lines = ["| " + " | ".join(FAILURE_FIELDS) + " |",
             "| " + " | ".join("---" for _ in FAILURE_FIELDS) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(f) if row.get(f) is not None else "-")
                                       for f in FAILURE_FIELDS) + " |")
    return "\n".join(lines)
