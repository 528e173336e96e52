"""/metrics with several worker processes: prometheus_client's multiprocess mode adds up what
every worker counted, the scrape-time counters (micro-batcher, cache) included, and the live
gauges of a worker that has exited are dropped."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

# One worker: counts what it is told, copies its batcher's counters, then exits or lingers.
WORKER = textwrap.dedent("""
    import sys, types
    from contextd.server.metrics import ServiceMetrics
    requests, batches, in_flight = map(int, sys.argv[1:4])
    metrics = ServiceMetrics()
    for _ in range(requests):
        metrics.observe_request("POST", "/v1/namespaces/{namespace}/search", 200, 0.01)
    metrics.watch_batcher(types.SimpleNamespace(batches=batches, texts=2 * batches))
    metrics.in_flight.set(in_flight)
    metrics.ready.set(1)
    metrics.close()
    if len(sys.argv) > 4:
        print(metrics.exposition().decode(), end="")
""")


def run_worker(shared: Path, *args: int, scrape: bool = False) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(shared)}
    argv = [sys.executable, "-c", WORKER, *map(str, args), *(["scrape"] if scrape else [])]
    return subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout


def values(text: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name] = found.get(sample.name, 0.0) + sample.value
    return found


def test_metrics_of_every_worker_add_up_and_exited_workers_leave_no_live_gauge(
        tmp_path: Path) -> None:
    run_worker(tmp_path, 3, 5, 2)  # a worker that exits with 2 requests in flight
    run_worker(tmp_path, 4, 7, 1)
    seen = values(run_worker(tmp_path, 1, 1, 1, scrape=True))  # the one answering the scrape
    assert seen["contextd_http_request_duration_seconds_count"] == 3 + 4 + 1
    assert seen["contextd_query_embedding_batches_total"] == 5 + 7 + 1
    assert seen["contextd_query_embeddings_total"] == 2 * (5 + 7 + 1)
    assert seen["contextd_http_requests_in_flight"] == 1  # the live worker's own, only
    assert seen["contextd_ready"] == 1
    assert "process_resident_memory_bytes" not in seen  # per process: left out
    # The exited workers' live-gauge files are gone; the scraping worker's stay.
    assert len({f.stem.rsplit("_", 1)[1] for f in tmp_path.glob("gauge_live*_*.db")}) == 1
