"""Prometheus metrics of one server app, on a registry of its own.

A registry per app (not the process-global default) lets tests build many apps in one
process and lets two apps in one process report separately. Label values all come from
bounded sets: route templates (never raw paths), stage names from the code, problem type
slugs, drop reasons, profile names from the configuration, and `query_type`, folded into
`other` unless it is one of the `query_types` setting.

    >>> metrics = ServiceMetrics()
    >>> metrics.observe_request("POST", "/v1/assemble", 200, 0.012)
    >>> b"contextd_http_request_duration_seconds" in metrics.exposition()
    True

With several worker processes (`http_workers`), prometheus_client's multiprocess mode is on
(`PROMETHEUS_MULTIPROC_DIR`, set by `contextd serve`): every worker writes its series to files
there and /metrics, whichever worker answers, reports the sum over all of them (gauges: over
the live ones; `contextd_ready` is 1 only when every live worker is). The batcher's and the
cache's own counters are copied into those files every `MIRROR_INTERVAL_S` and before each
scrape. Process, platform and GC metrics are per process and are left out there.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from contextd.batching import MicroBatcher
from contextd.cache.store import HITS, OUTCOMES, SemanticCache
from contextd.models import AssembleResponse, SearchResponse
from contextd.telemetry import (
    DEFAULT_PROFILE,
    OTHER,
    SECTIONS,
    cache_outcome,
    response_profile,
)

__all__ = ["CONTENT_TYPE", "ServiceMetrics"]

# Requests here take milliseconds to a few seconds (a large batch upsert).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25,
                   0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                 0.5, 1.0, 2.5)
# Prompt sizes run from a few tokens to a million-token window.
TOKEN_BUCKETS = (0, 16, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536,
                 131072, 262144, 1048576)
UTILISATION_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
# prometheus_client's switch for multiprocess mode, read when it is imported.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Seconds between copies of scrape-time counters into a worker's shared files.
MIRROR_INTERVAL_S = 1.0
LOOKUPS_HELP = ("Assemble requests by semantic cache outcome: hit (reason exact or similar) "
                "or miss (no_entry, below_threshold, guard, expired, disabled).")
ENTRIES_HELP = "Responses held by the semantic cache, all namespaces."
BYTES_HELP = "Estimated bytes held by the semantic cache, all namespaces."
EVICTIONS_HELP = "Cached responses pushed out by the size bounds."
_LIVE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


def multiprocess_dir() -> Path | None:
    """The directory of multiprocess mode's files, when it is on.

        >>> multiprocess_dir() is None or multiprocess_dir().is_dir()
        True
    """
    path = os.environ.get(MULTIPROC_ENV)
    return Path(path) if path else None


@dataclass
class _AssembleSeries:
    """The labelled children one (query_type, profile) updates on every assemble."""

    assembles: Any
    sections: dict[str, tuple[Any, Any]]
    total: Any
    budget: Any
    utilisation: Any
    saved_history: Any
    saved_documents: Any


class ServiceMetrics:
    """The metrics one app exports at /metrics.

        >>> metrics = ServiceMetrics()
        >>> metrics.observe_error("namespace-not-found", 404)
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.shared = multiprocess_dir()
        self._mirrors: list[Callable[[], None]] = []
        self._mirror_lock = threading.Lock()
        self._mirror_stop = threading.Event()
        if self.shared is None:  # per-process figures; in multiprocess mode they would mix
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
            "contextd_http_requests_in_flight", "HTTP requests being served.", registry=r,
            multiprocess_mode="livesum")
        self.stage_seconds = Histogram(
            "contextd_stage_duration_seconds",
            "Time spent in each stage of an operation, from the response's timings_ms.",
            ["operation", "stage", "query_type", "profile"], buckets=STAGE_BUCKETS, registry=r)
        self.assembles = Counter(
            "contextd_assemble_requests", "Assembled prompts by query_type and profile.",
            ["query_type", "profile"], registry=r)
        self.prompt_tokens = Counter(
            "contextd_prompt_tokens", "Tokens of assembled prompts by section (from usage).",
            ["section", "query_type", "profile"], registry=r)
        self.section_tokens = Histogram(
            "contextd_assemble_section_tokens",
            "Tokens of each section of one assembled prompt, and its total.",
            ["section", "query_type", "profile"], buckets=TOKEN_BUCKETS, registry=r)
        self.budget_tokens = Counter(
            "contextd_budget_tokens", "Token budgets of assembled prompts.",
            ["query_type", "profile"], registry=r)
        self.budget_utilisation = Histogram(
            "contextd_assemble_budget_utilisation",
            "Share of the budget an assembled prompt uses (usage.total / usage.budget).",
            ["query_type", "profile"], buckets=UTILISATION_BUCKETS, registry=r)
        self.tokens_saved = Counter(
            "contextd_tokens_saved",
            "Tokens assembled prompts left out against the whole history (versus=history) and "
            "against every retrieved chunk (versus=documents).",
            ["versus", "query_type", "profile"], registry=r)
        self.dropped = Counter(
            "contextd_dropped_items", "Items left out of assembled prompts, by kind and reason.",
            ["kind", "reason", "query_type", "profile"], registry=r)
        self.cache = Counter(
            "contextd_assemble_cache", "Assembled prompts by cache outcome (hit or miss), "
            "for responses that carry one.", ["outcome", "query_type", "profile"], registry=r)
        self.errors = Counter(
            "contextd_errors", "Error responses by problem type and status.",
            ["type", "status"], registry=r)
        self._series: dict[tuple[str, str], _AssembleSeries] = {}
        self._stages: dict[tuple[str, str, str, str], Any] = {}
        self.ready = Gauge(
            "contextd_ready", "1 once the model, tokenizer and indexes are warm.", registry=r,
            multiprocess_mode="livemin")

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One finished HTTP request; `route` is the template, e.g. /v1/sessions/{session_id}."""
        self.request_seconds.labels(method, route, str(status)).observe(seconds)

    def observe_error(self, type_slug: str, status: int) -> None:
        """One problem-details response."""
        self.errors.labels(type_slug, str(status)).inc()

    def observe_assemble(self, response: AssembleResponse, query_type: str) -> None:
        """Stage timings, tokens by section, budget use, savings, drops and the cache outcome
        of one assembled prompt; `query_type` is already a bounded label
        (`contextd.telemetry.query_type_label`)."""
        labels = (query_type, response_profile(response))
        series = self._series.get(labels) or self._bind(labels)
        series.assembles.inc()
        self._observe_stages("assemble", response.timings_ms, *labels)
        usage = response.usage
        for section, (counter, histogram) in series.sections.items():
            tokens = getattr(usage, section)
            counter.inc(tokens)
            histogram.observe(tokens)
        series.total.observe(usage.total)
        series.budget.inc(usage.budget)
        if usage.budget > 0:
            series.utilisation.observe(usage.total / usage.budget)
        sent_history = usage.summary + usage.history + usage.recalled
        series.saved_history.inc(max(0, usage.history_available - sent_history))
        series.saved_documents.inc(max(0, usage.documents_available - usage.documents))
        for item in response.dropped:
            self.dropped.labels(item.kind, item.reason, *labels).inc()
        outcome = cache_outcome(response)
        if outcome is not None:
            self.cache.labels(outcome, *labels).inc()

    def _bind(self, labels: tuple[str, str]) -> _AssembleSeries:
        # Looking a labelled child up costs about as much as updating it; the label sets are
        # bounded, so each is looked up once.
        series = _AssembleSeries(
            assembles=self.assembles.labels(*labels),
            sections={s: (self.prompt_tokens.labels(s, *labels),
                          self.section_tokens.labels(s, *labels)) for s in SECTIONS},
            total=self.section_tokens.labels("total", *labels),
            budget=self.budget_tokens.labels(*labels),
            utilisation=self.budget_utilisation.labels(*labels),
            saved_history=self.tokens_saved.labels("history", *labels),
            saved_documents=self.tokens_saved.labels("documents", *labels))
        self._series[labels] = series
        return series

    def observe_search(self, response: SearchResponse) -> None:
        """Stage timings of one search."""
        self._observe_stages("search", response.timings_ms, OTHER, DEFAULT_PROFILE)

    def _observe_stages(self, operation: str, timings_ms: dict[str, float], query_type: str,
                        profile: str) -> None:
        for stage, ms in timings_ms.items():
            key = (operation, stage, query_type, profile)
            child = self._stages.get(key)
            if child is None:
                child = self._stages[key] = self.stage_seconds.labels(*key)
            child.observe(ms / 1000.0)

    def watch_batcher(self, batcher: MicroBatcher) -> None:
        """Export the micro-batcher's forward passes and texts (their ratio: mean batch size)."""
        if self.shared is None:
            self.registry.register(_BatcherCollector(batcher))
            return
        batches = Counter("contextd_query_embedding_batches",
                          "Forward passes of the query micro-batcher.", registry=None)
        texts = Counter("contextd_query_embeddings",
                        "Query texts embedded by the micro-batcher.", registry=None)
        self._mirror(_counting(lambda: batcher.batches, batches.inc),
                     _counting(lambda: batcher.texts, texts.inc))

    def watch_cache(self, cache: SemanticCache) -> None:
        """Export the semantic cache's lookups by outcome and reason, and what it holds."""
        if self.shared is None:
            self.registry.register(_CacheCollector(cache))
            return
        lookups = Counter("contextd_cache_lookups", LOOKUPS_HELP, ["outcome", "reason"],
                          registry=None)
        entries = Gauge("contextd_cache_entries", ENTRIES_HELP, registry=None,
                        multiprocess_mode="livesum")
        nbytes = Gauge("contextd_cache_bytes", BYTES_HELP, registry=None,
                       multiprocess_mode="livesum")
        evictions = Counter("contextd_cache_evictions", EVICTIONS_HELP, registry=None)

        def totals() -> None:
            held, size = cache.totals()
            entries.set(held)
            nbytes.set(size)

        def lookups_of(reason: str) -> Callable[[], None]:
            return _counting(lambda: cache.counts()[reason], lookups.labels(
                "hit" if reason in HITS else "miss", reason).inc)

        self._mirror(*map(lookups_of, OUTCOMES), _counting(lambda: cache.evicted,
                                                           evictions.inc), totals)

    def _mirror(self, *copies: Callable[[], None]) -> None:
        """Run `copies` now, every MIRROR_INTERVAL_S on a daemon thread, and before a scrape."""
        with self._mirror_lock:
            if not self._mirrors:
                threading.Thread(target=self._mirror_loop, name="contextd-metrics-mirror",
                                 daemon=True).start()
            self._mirrors.extend(copies)
        self._copy()

    def _mirror_loop(self) -> None:
        while not self._mirror_stop.wait(MIRROR_INTERVAL_S):
            self._copy()

    def _copy(self) -> None:
        with self._mirror_lock:
            for copy in self._mirrors:
                copy()

    def close(self) -> None:
        """Stop copying into the shared files (multiprocess mode); a last copy first."""
        self._copy()
        self._mirror_stop.set()

    def exposition(self) -> bytes:
        """The registry in Prometheus text format; in multiprocess mode, every worker's."""
        if self.shared is None:
            return generate_latest(self.registry)
        self._copy()
        forget_dead_workers(self.shared)
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=str(self.shared))
        return generate_latest(merged)


def _counting(read: Callable[[], int], inc: Callable[[float], None]) -> Callable[[], None]:
    """A copy of the running total `read()` into a shared counter, by what it grew since."""
    last = 0

    def copy() -> None:
        nonlocal last
        now = read()
        if now > last:
            inc(now - last)
            last = now

    return copy


def forget_dead_workers(path: Path) -> None:
    """Drop the live-gauge files of worker processes that have exited (their counters stay:
    the totals they counted happened), so in-flight requests and readiness are the live
    workers'."""
    for file in path.glob("gauge_live*_*.db"):
        found = _LIVE_FILE.match(file.name)
        if found is None:
            continue
        pid = int(found.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, str(path))
        except PermissionError:
            pass  # alive, under another user


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
        lookups = CounterMetricFamily("contextd_cache_lookups", LOOKUPS_HELP,
                                      labels=["outcome", "reason"])
        counts = self.cache.counts()
        for reason in OUTCOMES:
            lookups.add_metric(["hit" if reason in HITS else "miss", reason], counts[reason])
        yield lookups
        entries, nbytes = self.cache.totals()
        yield GaugeMetricFamily("contextd_cache_entries", ENTRIES_HELP, value=entries)
        yield GaugeMetricFamily("contextd_cache_bytes", BYTES_HELP, value=nbytes)
        yield CounterMetricFamily("contextd_cache_evictions", EVICTIONS_HELP,
                                  value=self.cache.evicted)
