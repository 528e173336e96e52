"""Prometheus metrics of one server app, on a registry of its own.

A registry per app (not the process-global default) lets tests build many apps in one
process and lets two apps in one process report separately. Label values all come from
bounded sets: route templates (never raw paths), stage names from the code, problem type
slugs, drop reasons, and `query_type`, whose pattern caps it at 32 characters of a-z0-9_.

    >>> metrics = ServiceMetrics()
    >>> metrics.observe_request("POST", "/v1/assemble", 200, 0.012)
    >>> b"contextd_http_request_duration_seconds" in metrics.exposition()
    True
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from contextd.batching import MicroBatcher
from contextd.cache.store import HITS, OUTCOMES, SemanticCache
from contextd.models import AssembleResponse, SearchResponse

__all__ = ["CONTENT_TYPE", "ServiceMetrics"]

# Requests here take milliseconds to a few seconds (a large batch upsert).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25,
                   0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                 0.5, 1.0, 2.5)
UNTAGGED = "none"


class ServiceMetrics:
    """The metrics one app exports at /metrics.

        >>> metrics = ServiceMetrics()
        >>> metrics.observe_error("namespace-not-found", 404)
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        # The standard process (CPU, memory, file descriptors), Python platform and GC
        # metrics, as the default registry has them.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.request_seconds = Histogram(
            "contextd_http_request_duration_seconds",
            "HTTP request latency by route template, method and status.",
            ["method", "route", "status"], buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge(
            "contextd_http_requests_in_flight", "HTTP requests being served.", registry=r)
        self.stage_seconds = Histogram(
            "contextd_stage_duration_seconds",
            "Time spent in each stage of an operation, from the response's timings_ms.",
            ["operation", "stage", "query_type"], buckets=STAGE_BUCKETS, registry=r)
        self.assembles = Counter(
            "contextd_assemble_requests", "Assembled prompts by caller-given query_type.",
            ["query_type"], registry=r)
        self.prompt_tokens = Counter(
            "contextd_prompt_tokens", "Tokens of assembled prompts by section (from usage).",
            ["section", "query_type"], registry=r)
        self.budget_tokens = Counter(
            "contextd_budget_tokens", "Token budgets of assembled prompts.",
            ["query_type"], registry=r)
        self.dropped = Counter(
            "contextd_dropped_items", "Items left out of assembled prompts, by kind and reason.",
            ["kind", "reason", "query_type"], registry=r)
        self.errors = Counter(
            "contextd_errors", "Error responses by problem type and status.",
            ["type", "status"], registry=r)
        self.ready = Gauge(
            "contextd_ready", "1 once the model, tokenizer and indexes are warm.", registry=r)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One finished HTTP request; `route` is the template, e.g. /v1/sessions/{session_id}."""
        self.request_seconds.labels(method, route, str(status)).observe(seconds)

    def observe_error(self, type_slug: str, status: int) -> None:
        """One problem-details response."""
        self.errors.labels(type_slug, str(status)).inc()

    def observe_assemble(self, response: AssembleResponse, query_type: str | None) -> None:
        """Stage timings, tokens by section and dropped items of one assembled prompt."""
        tag = query_type or UNTAGGED
        self.assembles.labels(tag).inc()
        self._observe_stages("assemble", response.timings_ms, tag)
        usage = response.usage
        for section in ("system", "summary", "history", "recalled", "documents", "query",
                        "overhead"):
            self.prompt_tokens.labels(section, tag).inc(getattr(usage, section))
        self.budget_tokens.labels(tag).inc(usage.budget)
        for item in response.dropped:
            self.dropped.labels(item.kind, item.reason, tag).inc()

    def observe_search(self, response: SearchResponse) -> None:
        """Stage timings of one search."""
        self._observe_stages("search", response.timings_ms, UNTAGGED)

    def _observe_stages(self, operation: str, timings_ms: dict[str, float], tag: str) -> None:
        for stage, ms in timings_ms.items():
            self.stage_seconds.labels(operation, stage, tag).observe(ms / 1000.0)

    def watch_batcher(self, batcher: MicroBatcher) -> None:
        """Export the micro-batcher's forward passes and texts (their ratio: mean batch size)."""
        self.registry.register(_BatcherCollector(batcher))

    def watch_cache(self, cache: SemanticCache) -> None:
        """Export the semantic cache's lookups by outcome and reason, and what it holds."""
        self.registry.register(_CacheCollector(cache))

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)


class _BatcherCollector(Collector):
    """Reads the batcher's own counters at scrape time, so the hot path pays nothing."""

    def __init__(self, batcher: MicroBatcher) -> None:
        self.batcher = batcher

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily("contextd_query_embedding_batches",
                                  "Forward passes of the query micro-batcher.",
                                  value=self.batcher.batches)
        yield CounterMetricFamily("contextd_query_embeddings",
                                  "Query texts embedded by the micro-batcher.",
                                  value=self.batcher.texts)


class _CacheCollector(Collector):
    """The semantic cache's own counters, read at scrape time like the batcher's."""

    def __init__(self, cache: SemanticCache) -> None:
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        lookups = CounterMetricFamily(
            "contextd_cache_lookups",
            "Assemble requests by semantic cache outcome: hit (reason exact or similar) or miss "
            "(no_entry, below_threshold, guard, expired, disabled).",
            labels=["outcome", "reason"])
        counts = self.cache.counts()
        for reason in OUTCOMES:
            lookups.add_metric(["hit" if reason in HITS else "miss", reason], counts[reason])
        yield lookups
        entries, nbytes = self.cache.totals()
        yield GaugeMetricFamily("contextd_cache_entries",
                                "Responses held by the semantic cache, all namespaces.",
                                value=entries)
        yield GaugeMetricFamily("contextd_cache_bytes",
                                "Estimated bytes held by the semantic cache, all namespaces.",
                                value=nbytes)
        yield CounterMetricFamily("contextd_cache_evictions",
                                  "Cached responses pushed out by the size bounds.",
                                  value=self.cache.evicted)
