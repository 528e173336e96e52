"""HTTP benchmark: /v1/assemble latency and throughput over loopback at 1, 8 and 32 clients.

    python benchmarks/bench_http.py --data /work/shared/data/beir-scifact
    python benchmarks/bench_http.py --workers 2          # two server processes on one port

Starts `contextd serve` (real model) in a subprocess on a persistent data directory
(benchmarks/out/http-data), ingests SciFact over HTTP on the first run (the embedding cache
makes later runs fast), gives every client a session of `--turns` turns, then for each
concurrency level runs closed-loop clients for `--duration` seconds: each client posts an
assemble request (a SciFact query, its session, max_tokens 3000, top_k 8) as soon as the
previous one returns (semantic cache off unless `--cache`). Latency is measured at the
client, end to end. Load comes from raw
httpx requests in one asyncio loop, so the load generator costs as little CPU as possible
on the shared cores. Server-side stage means and the mean micro-batch size come from
/metrics deltas.

Prints a table and writes JSON to benchmarks/out/bench_http.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from contextd import Client, SessionNotFound
from contextd.eval.beir import beir_document_batches, load_beir
from contextd.eval.metrics import percentile

OUT = Path(__file__).parent / "out"
TURNS = [
    "I am reviewing evidence on vitamin D and bone density in older adults.",
    "Noted. The trials I found report mixed effects; some only in subgroups.",
    "Please focus on randomised controlled trials published after 2010.",
    "Understood: RCTs after 2010 first, observational studies flagged separately.",
    "What did the meta-analyses conclude about aspirin for primary prevention?",
    "They found a small reduction in events offset by more major bleeding.",
    "Keep the answers short; bullet points are fine.",
    "Will do. I will cite the study for each point.",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_memory_mb(pid: int) -> dict[str, float]:
    """Resident and peak resident MB of the server and its worker processes, added up."""
    pids = [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
    totals = {"VmRSS": 0.0, "VmHWM": 0.0}
    for each in pids:
        with suppress(OSError):
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in totals:
                    totals[key] += int(value.split()[0]) / 1024
    return {"rss_mb": round(totals["VmRSS"]), "peak_rss_mb": round(totals["VmHWM"]),
            "processes": len(pids)}


@contextmanager
def running_server(args: argparse.Namespace) -> Iterator[tuple[str, int]]:
    """A server process for `args`; yields its URL and process id once every worker is ready."""
    port = free_port()
    env = {**os.environ, "CONTEXTD_BATCH_WAIT_MS": str(args.batch_wait_ms),
           "CONTEXTD_HTTP_THREADS": str(args.threads),
           "CONTEXTD_HTTP_WORKERS": str(args.workers)}
    log = open(OUT / "bench_http.server.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "contextd.cli", "serve", "--port", str(port), "--data-dir",
         str(args.data_dir), "--log-level", "warning"], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    try:
        while True:
            if process.poll() is not None:
                raise SystemExit(f"server exited; see {log.name}")
            try:
                # contextd_ready is 1 once every worker process is (it is their minimum).
                if (httpx.get(url + "/readyz", timeout=2).status_code == 200
                        and re.search(r"^contextd_ready(\{[^}]*\})? 1", httpx.get(
                            url + "/metrics", timeout=2).text, re.M)):
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        print(f"server ready in {time.perf_counter() - started:.1f} s at {url}")
        yield url, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        log.close()


def ensure_corpus(client: Client, dataset: Any, namespace: str,
                  max_docs: int | None) -> dict[str, Any]:
    wanted = len(dataset.corpus) - len(dataset.empty_documents)
    wanted = min(wanted, max_docs) if max_docs else wanted
    have = {i.name: i.documents for i in client.namespaces()}.get(namespace, 0)
    if have >= wanted:
        return {"ingested": False, "documents": have}
    started = time.perf_counter()
    totals: dict[str, int] = defaultdict(int)
    # Small batches: each one commits, so an interrupted first ingestion resumes cheaply.
    for n, batch in enumerate(beir_document_batches(dataset, size=64)):
        if n * 64 >= wanted:
            break
        result = client.upsert_documents(batch, namespace=namespace)
        for key in ("upserted", "unchanged", "embedded", "cached", "chunks"):
            totals[key] += getattr(result, key)
        print(f"\r  ingested {totals['upserted'] + totals['unchanged']} documents", end="",
              flush=True)
    print()
    return {"ingested": True, "seconds": round(time.perf_counter() - started, 1), **totals}


def prepare_sessions(client: Client, namespace: str, count: int, turns: int) -> None:
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": TURNS[i % len(TURNS)]}
                for i in range(turns)]
    for c in range(count):
        with suppress(SessionNotFound):
            client.delete_session(f"bench-{c}", namespace=namespace)
        client.append_messages(f"bench-{c}", messages, namespace=namespace)


_SAMPLE = re.compile(r'^(contextd_\w+)(?:\{([^}]*)\})? ([0-9.eE+-]+)$')


def scrape(url: str) -> dict[tuple[str, str], float]:
    values: dict[tuple[str, str], float] = {}
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            values[(match.group(1), match.group(2) or "")] = float(match.group(3))
    return values


def server_side(before: dict[tuple[str, str], float],
                after: dict[tuple[str, str], float]) -> dict[str, Any]:
    def delta(name: str, labels: str = "") -> float:
        return after.get((name, labels), 0.0) - before.get((name, labels), 0.0)

    stages = {}
    for name, labels in after:
        if name == "contextd_stage_duration_seconds_sum" and 'operation="assemble"' in labels:
            stage = re.search(r'stage="(\w+)"', labels).group(1)  # type: ignore[union-attr]
            count = delta("contextd_stage_duration_seconds_count", labels)
            if count:
                stages[stage] = round(delta(name, labels) / count * 1000, 2)
    batches = delta("contextd_query_embedding_batches_total")
    texts = delta("contextd_query_embeddings_total")
    return {"stage_mean_ms": stages,
            "mean_batch_size": round(texts / batches, 2) if batches else None}


async def run_level(url: str, namespace: str, clients: int, queries: list[str],
                    duration: float, warmup: float, max_tokens: int,
                    cache: bool = False) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=clients + 2, max_keepalive_connections=clients + 2)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:
        measuring_from = time.perf_counter() + warmup
        stop_at = measuring_from + duration

        async def one_client(c: int) -> None:
            nonlocal errors
            i = c * 997
            while (now := time.perf_counter()) < stop_at:
                body = {"namespace": namespace, "query": queries[i % len(queries)],
                        "session_id": f"bench-{c}", "max_tokens": max_tokens, "top_k": 8,
                        "system": "Answer from the sources; cite them.",
                        "query_type": "scifact", "cache": cache}
                i += 1
                response = await http.post("/v1/assemble", json=body)
                if now >= measuring_from:
                    if response.status_code == 200:
                        latencies.append((time.perf_counter() - now) * 1000)
                    else:
                        errors += 1

        await asyncio.sleep(0)
        await asyncio.gather(*(one_client(c) for c in range(clients)))
    return {"clients": clients, "requests": len(latencies), "errors": errors,
            "rps": round(len(latencies) / duration, 1),
            "p50_ms": round(percentile(latencies, 50), 1),
            "p95_ms": round(percentile(latencies, 95), 1),
            "p99_ms": round(percentile(latencies, 99), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data/beir-scifact")
    parser.add_argument("--data-dir", type=Path, default=OUT / "http-data")
    parser.add_argument("--namespace", default="scifact")
    parser.add_argument("--max-docs", type=int, default=None,
                        help="ingest only the first N corpus documents (default: all)")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per level")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds")
    parser.add_argument("--turns", type=int, default=8, help="turns in each client's session")
    parser.add_argument("--max-tokens", type=int, default=3000)
    parser.add_argument("--batch-wait-ms", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=8, help="server Engine threads")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--cache", action="store_true",
                        help="let the semantic cache answer repeats (off by default: a "
                             "client cycling through the queries would measure cache hits "
                             "at one client and assembling at eight)")
    parser.add_argument("--out", type=Path, default=OUT / "bench_http.json")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    levels = [int(n) for n in args.clients.split(",")]

    dataset = load_beir(args.data)
    queries = list(dataset.queries.values())
    load_before = os.getloadavg()
    rows = []
    with running_server(args) as (url, server_pid):
        with Client(url, timeout=600) as client:
            ingest = ensure_corpus(client, dataset, args.namespace, args.max_docs)
            prepare_sessions(client, args.namespace, max(levels), args.turns)
        for clients in levels:
            before = scrape(url)
            row = asyncio.run(run_level(url, args.namespace, clients, queries, args.duration,
                                        args.warmup, args.max_tokens, args.cache))
            row.update(server_side(before, scrape(url)))
            row["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
            row["server_memory"] = server_memory_mb(server_pid)
            rows.append(row)
            print(f"  {clients:>3} clients: {row['rps']} req/s, p50 {row['p50_ms']} ms")

    print(f"\n{'clients':>7} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
          f"{'batch':>6} {'errors':>6}")
    for r in rows:
        print(f"{r['clients']:>7} {r['rps']:>7} {r['p50_ms']:>7} {r['p95_ms']:>7} "
              f"{r['p99_ms']:>7} {r['mean_batch_size'] or '-':>6} {r['errors']:>6}  "
              f"server RSS {r['server_memory']['rss_mb']} MB "
              f"(peak {r['server_memory']['peak_rss_mb']}, {r['server_memory']['processes']} "
              "processes)")
    base = rows[0]["rps"] or 1
    for r in rows[1:]:
        print(f"  {r['clients']} clients: {r['rps'] / base:.2f}x the requests/s of "
              f"{rows[0]['clients']}")
    report = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "loadavg_before": [round(x, 2) for x in load_before]},
              "settings": {k: str(v) for k, v in vars(args).items()},
              "ingest": ingest, "levels": rows}
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
