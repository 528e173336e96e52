"""Replicas on one PostgreSQL: requests/s and latency with 1, 2 and 4 `contextd serve`
processes behind a round-robin, and where the CPU goes (database, replicas, load generator).

Starts one PostgreSQL 16 + pgvector (pgserver, temporary directory), starts the first replica
against it (`CONTEXTD_STORE`), loads the first `--docs` SciFact abstracts through it (each with
a metadata field `bucket` = its position mod 4) and gives every client a session of `--turns`
turns. Then for 1, 2 and 4 replicas (each with its own data directory, as stateless replicas
have) `--clients` closed-loop clients send, each request to the next replica in turn (the
round-robin a load balancer does, without a proxy's own cost), a fixed interleaved mix
(`--mix`, default weights 3,2,1,3,1 in this order):

- assemble, no session (query only), max_tokens 3000, top_k 8
- assemble with the client's session
- assemble appending a user turn to the client's session (a write; compaction as it comes)
- search, top_k 10
- search, top_k 10, filtered to one `bucket`: counted when it returns fewer than 10 hits or
  a hit of another bucket

The semantic cache is off (`CONTEXTD_CACHE_ENABLED=0`) so every assemble does its work; the
queries are SciFact's 300 claims. CPU: user + system seconds from /proc (psutil) of the
postmaster and its backends, of each replica, and of this process, over each measured window,
against the machine's busy time from /proc/stat (what the rest is: other work on the machine).
Stage means come from each replica's /metrics; the database's client connections (open, and
running a statement) are sampled twice a second.

    python benchmarks/bench_replicas.py --data ../shared/data/beir-scifact --docs 300
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).parent))
from server_process import ServerProcess  # noqa: E402

from contextd import Client  # noqa: E402
from contextd.eval.beir import beir_documents, load_beir  # noqa: E402
from contextd.eval.metrics import percentile  # noqa: E402

OUT = Path(__file__).parent / "out"
NAMESPACE = "scifact"
KINDS = ("assemble", "assemble_session", "assemble_append", "search", "search_filtered")
TURNS = [
    "I am reviewing evidence on vitamin D and bone density in older adults.",
    "Noted. The trials I found report mixed effects; some only in subgroups.",
    "Please focus on randomised controlled trials published after 2010.",
    "Understood: RCTs after 2010 first, observational studies flagged separately.",
]


def cpu_seconds(pid: int, with_children: bool) -> float:
    """User + system seconds of `pid` (all its threads), plus its live children's and the
    reaped children's it waited for when `with_children` (the postmaster's backends)."""
    try:
        proc = psutil.Process(pid)
        times = proc.cpu_times()
        total = times.user + times.system
        if with_children:
            total += times.children_user + times.children_system
            for child in proc.children(recursive=True):
                try:
                    t = child.cpu_times()
                    total += t.user + t.system
                except psutil.NoSuchProcess:
                    pass
        return total
    except psutil.NoSuchProcess:
        return 0.0


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / tick, sum(fields) / tick


_SAMPLE = re.compile(r'^(contextd_stage_duration_seconds_(?:sum|count))\{([^}]*)\} ([0-9.eE+-]+)$')


def stage_totals(urls: list[str]) -> dict[tuple[str, str], float]:
    """Stage-duration sums and counts summed over the replicas' /metrics."""
    values: dict[tuple[str, str], float] = defaultdict(float)
    for url in urls:
        for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
            match = _SAMPLE.match(line)
            if match:
                values[(match.group(1), match.group(2))] += float(match.group(3))
    return values


def stage_means(before: dict, after: dict) -> dict[str, dict[str, float]]:
    """Mean ms per stage and operation over the window."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for (name, labels), total in after.items():
        if not name.endswith("_sum"):
            continue
        count_key = ("contextd_stage_duration_seconds_count", labels)
        count = after.get(count_key, 0.0) - before.get(count_key, 0.0)
        if count <= 0:
            continue
        op = re.search(r'operation="(\w+)"', labels)
        stage = re.search(r'stage="(\w+)"', labels)
        if op and stage:
            out[op.group(1)][stage.group(1)] = round(
                (total - before.get((name, labels), 0.0)) / count * 1000, 2)
    return dict(out)


def database_settings(url: str) -> dict[str, str]:
    """The database's version and the settings that bound it."""
    import psycopg

    with psycopg.connect(url) as conn:
        return {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in (
            "server_version", "shared_buffers", "max_connections")}


def load_corpus(url: str, dataset: Any, docs: int) -> dict[str, Any]:
    started = time.perf_counter()
    batch: list[dict[str, Any]] = []
    totals: dict[str, int] = defaultdict(int)
    with Client(url, timeout=900) as client:
        for i, doc in enumerate(beir_documents(dataset)):
            if i >= docs:
                break
            batch.append({**doc.model_dump(exclude_none=True), "metadata": {"bucket": i % 4}})
            if len(batch) == 32:
                result = client.upsert_documents(batch, namespace=NAMESPACE)
                totals["chunks"] += result.chunks
                batch = []
        if batch:
            totals["chunks"] += client.upsert_documents(batch, namespace=NAMESPACE).chunks
    return {"documents": min(docs, len(dataset.corpus)), **totals,
            "seconds": round(time.perf_counter() - started, 1)}


def prepare_sessions(url: str, clients: int, turns: int) -> None:
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": TURNS[i % len(TURNS)]}
                for i in range(turns)]
    with Client(url, timeout=120) as client:
        for c in range(clients):
            client.append_messages(f"bench-{c}", messages, namespace=NAMESPACE)


def request_of(kind: str, client: int, query: str, i: int) -> tuple[str, dict[str, Any]]:
    base = f"/v1/namespaces/{NAMESPACE}"
    if kind.startswith("search"):
        body: dict[str, Any] = {"query": query, "top_k": 10}
        if kind == "search_filtered":
            body["filters"] = {"bucket": i % 4}
        return base + "/search", body
    body = {"query": query, "max_tokens": 3000, "top_k": 8,
            "system": "Answer from the sources; cite them."}
    if kind != "assemble":
        body["session_id"] = f"bench-{client}"
    if kind == "assemble_append":
        body["messages"] = [{"role": "user", "content": query}]
    return base + "/assemble", body


async def run_level(urls: list[str], clients: int, queries: list[str], schedule: list[str],
                    duration: float, warmup: float, on_measure_start: Any) -> dict[str, Any]:
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    short = 0
    limits = httpx.Limits(max_connections=clients * len(urls) + 4,
                          max_keepalive_connections=clients * len(urls) + 4)
    async with httpx.AsyncClient(limits=limits, timeout=120) as http:
        measuring_from = time.perf_counter() + warmup
        stop_at = measuring_from + duration
        marked = False

        async def one_client(c: int) -> None:
            nonlocal short, marked
            i = c * 997
            while (now := time.perf_counter()) < stop_at:
                if now >= measuring_from and not marked:
                    marked = True
                    on_measure_start()
                kind = schedule[i % len(schedule)]
                path, body = request_of(kind, c, queries[i % len(queries)], i)
                url = urls[i % len(urls)]  # round-robin over the replicas
                i += 1
                response = await http.post(url + path, json=body)
                if now < measuring_from:
                    continue
                if response.status_code != 200:
                    errors[kind] += 1
                    continue
                latencies[kind].append((time.perf_counter() - now) * 1000)
                if kind == "search_filtered":
                    hits = response.json()["hits"]
                    short += len(hits) < 10 or any(
                        h["metadata"].get("bucket") != body["filters"]["bucket"] for h in hits)

        await asyncio.gather(*(one_client(c) for c in range(clients)))
    every = [ms for values in latencies.values() for ms in values]
    return {
        "replicas": len(urls), "clients": clients, "requests": len(every),
        "errors": sum(errors.values()), "rps": round(len(every) / duration, 1),
        "p50_ms": round(percentile(every, 50), 1), "p95_ms": round(percentile(every, 95), 1),
        "filtered_short_or_wrong": short,
        "by_kind": {k: {"n": len(v), "p50_ms": round(percentile(v, 50), 1),
                        "p95_ms": round(percentile(v, 95), 1), "errors": errors[k]}
                    for k, v in sorted(latencies.items())},
    }


class ConnectionSampler:
    """Client connections to the database and how many run a statement, sampled twice a
    second from a connection of its own (not counted): how much of the pools is in use."""

    def __init__(self, url: str) -> None:
        import threading

        self.url = url
        self.samples: list[tuple[int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.wait(0.5):
                self.samples.append(conn.execute(
                    "SELECT count(*), count(*) FILTER (WHERE state = 'active') FROM "
                    "pg_stat_activity WHERE backend_type = 'client backend' AND "
                    "pid <> pg_backend_pid()").fetchone())

    def summary(self) -> dict[str, float]:
        if not self.samples:
            return {}
        opened = [s[0] for s in self.samples]
        active = [s[1] for s in self.samples]
        return {"open_max": max(opened), "active_mean": round(sum(active) / len(active), 2),
                "active_max": max(active)}


def measure(urls: list[str], replicas: list[ServerProcess], pg_pid: int,
            args: argparse.Namespace, queries: list[str], schedule: list[str],
            store: str) -> dict[str, Any]:
    marks: dict[str, Any] = {}

    def snapshot() -> dict[str, Any]:
        return {"t": time.perf_counter(), "pg": cpu_seconds(pg_pid, True),
                "replicas": sum(cpu_seconds(r.pid, True) for r in replicas),
                "self": sum(os.times()[:2]), "machine": machine_busy_seconds()}

    def start() -> None:
        marks["before"] = snapshot()
        marks["stages"] = stage_totals(urls)

    with ConnectionSampler(store) as connections:
        row = asyncio.run(run_level(urls, args.clients, queries, schedule, args.duration,
                                    args.warmup, start))
    after, before = snapshot(), marks["before"]
    wall = after["t"] - before["t"]
    cores = psutil.cpu_count() or 1
    cpu = {k: round(after[k] - before[k], 1) for k in ("pg", "replicas", "self")}
    busy = after["machine"][0] - before["machine"][0]
    cpu["machine_busy"] = round(busy, 1)
    cpu["other"] = round(busy - cpu["pg"] - cpu["replicas"] - cpu["self"], 1)
    cpu["capacity"] = round(wall * cores, 1)
    used = max(busy, 1e-9)
    row["cpu_s"] = cpu
    row["cpu_share_of_busy"] = {k: round(cpu[k] / used, 3)
                                for k in ("pg", "replicas", "self", "other")}
    row["db_share_of_service"] = round(cpu["pg"] / max(cpu["pg"] + cpu["replicas"], 1e-9), 3)
    row["cpu_ms_per_request"] = {k: round(cpu[k] * 1000 / max(row["requests"], 1), 1)
                                 for k in ("pg", "replicas", "self")}
    row["stage_mean_ms"] = stage_means(marks["stages"], stage_totals(urls))
    row["db_connections"] = connections.summary()
    row["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/beir-scifact"))
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--replicas", default="1,2,4")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=30.0, help="measured s per level")
    parser.add_argument("--warmup", type=float, default=5.0, help="unmeasured s per level")
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--mix", default="3,2,1,3,1",
                        help="weights of " + ", ".join(KINDS))
    parser.add_argument("--threads", type=int, default=8, help="http_threads of a replica")
    parser.add_argument("--pool-size", type=int, default=10, help="store_pool_size")
    parser.add_argument("--out", type=Path, default=OUT / "bench_replicas.json")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    levels = [int(n) for n in args.replicas.split(",")]
    weights = [int(w) for w in args.mix.split(",")]
    # Interleaved, so every window of a few requests holds the whole mix.
    schedule = [k for rnd in range(max(weights)) for k, w in zip(KINDS, weights, strict=True)
                if rnd < w]

    import pgserver

    dataset = load_beir(args.data)
    queries = list(dataset.queries.values())
    root = Path(tempfile.mkdtemp(prefix="ctxrep"))
    server = pgserver.get_server(root / "pg", cleanup_mode="stop")
    store = server.get_uri()
    pg_pid = server.get_pid()
    assert pg_pid is not None
    env = {"CONTEXTD_STORE": store, "CONTEXTD_CACHE_ENABLED": "0",
           "CONTEXTD_HTTP_THREADS": str(args.threads),
           "CONTEXTD_STORE_POOL_SIZE": str(args.pool_size),
           "TRANSFORMERS_OFFLINE": "1"}
    replicas: list[ServerProcess] = []
    rows: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    try:
        pg_settings = database_settings(store)
        for count in levels:
            while len(replicas) < count:
                replica = ServerProcess(root / f"replica-{len(replicas)}", env,
                                        log_path=root / f"replica-{len(replicas)}.log")
                ready_s = replica.start()
                replicas.append(replica)
                print(f"replica {len(replicas)} ready in {ready_s:.1f} s at {replica.url}",
                      flush=True)
                if len(replicas) == 1:
                    corpus = load_corpus(replica.url, dataset, args.docs)
                    prepare_sessions(replica.url, args.clients, args.turns)
                    print(f"loaded {corpus}", flush=True)
            urls = [r.url for r in replicas]
            row = measure(urls, replicas, pg_pid, args, queries, schedule, store)
            rows.append(row)
            print(f"{count} replicas: {row['rps']} req/s, p50 {row['p50_ms']} ms, p95 "
                  f"{row['p95_ms']} ms, cpu {row['cpu_s']}", flush=True)
    finally:
        for replica in replicas:
            replica.stop()
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)

    print(f"\n{'replicas':>8} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'db CPU':>7} "
          f"{'replicas':>9} {'other':>6} {'errors':>6}")
    for r in rows:
        share = r["cpu_share_of_busy"]
        print(f"{r['replicas']:>8} {r['rps']:>7} {r['p50_ms']:>7} {r['p95_ms']:>7} "
              f"{share['pg']:>7.0%} {share['replicas']:>9.0%} {share['other']:>6.0%} "
              f"{r['errors']:>6}")
    report = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "loadavg_before": [round(x, 2) for x in load_before]},
              "postgres": pg_settings, "settings": {k: str(v) for k, v in vars(args).items()},
              "schedule": schedule, "corpus": corpus, "levels": rows}
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
