"""Batch assembly vs one call a query on SciFact: requests/s of 32 queries.

    HF_HUB_OFFLINE=1 python benchmarks/bench_batch.py \\
        --data ../shared/data/beir-scifact --docs 1500 --data-dir /tmp/bench-cache

The first `--docs` abstracts are indexed (see bench_assemble_cache.py), then the SciFact claims
are taken 32 at a time; each group is assembled once as 32 sequential `Engine.assemble` calls
and once as one `Engine.assemble_batch` call (the order alternating from group to group), and
with `--http` also over HTTP (an in-process app behind Starlette's TestClient: 32
`Client.assemble` calls against one `Client.assemble_batch`). The cache is off for every
request (`cache=false`), so both sides assemble everything. Settings are the shipped defaults
(micro-batching on, 2 ms). The ``embedding`` row times the query embeddings alone: one
`embed` call per claim against one call for the group. With `--stages`, the groups run once
more each way with a clock on each stage's functions (see stage_clock.py), and the time each
stage takes per request, summed over threads, is printed for both. Prints a table and writes
JSON to benchmarks/results/batch.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

from bench_assemble_cache import NAMESPACE, index_subset
from stage_clock import StageClock

from contextd import Client, Engine, Settings
from contextd.eval.beir import load_beir

HERE = Path(__file__).parent


def rate(seconds: list[float], size: int) -> float:
    return size * len(seconds) / sum(seconds)


def measure(single, batch, groups: list[list[dict]]) -> dict:
    """Seconds per group of `single` called on each request and of `batch` on the group."""
    sequential, batched = [], []
    for n, group in enumerate(groups):
        for side in ((0, 1) if n % 2 == 0 else (1, 0)):
            started = time.perf_counter()
            if side == 0:
                for request in group:
                    single(request)
            else:
                results = batch(group)
                assert all(not isinstance(r, Exception) for r in results)
            (sequential if side == 0 else batched).append(time.perf_counter() - started)
    size = len(groups[0])
    return {"groups": len(groups), "size": size,
            "sequential_rps": round(rate(sequential, size), 1),
            "batch_rps": round(rate(batched, size), 1),
            "speedup": round(rate(batched, size) / rate(sequential, size), 2),
            "sequential_group_ms_median": round(statistics.median(sequential) * 1000, 1),
            "batch_group_ms_median": round(statistics.median(batched) * 1000, 1)}


def stage_times(engine: Engine, clock: StageClock, groups: list[list[dict]]) -> dict:
    """Per request, each stage's wall and CPU ms: every group as 32 calls, then as batches."""
    requests = sum(len(g) for g in groups)
    out: dict = {}
    for side in ("sequential", "batch"):
        clock.reset()
        started = time.perf_counter()
        for group in groups:
            if side == "sequential":
                for request in group:
                    engine.assemble(namespace=NAMESPACE, **request)
            else:
                engine.assemble_batch(group, namespace=NAMESPACE)
        out[side] = {"elapsed_ms_per_request": round(
            (time.perf_counter() - started) * 1000 / requests, 3),
            "stages": clock.per_request(requests)}
    return out


def print_stages(stages: dict) -> None:
    seq, batch = stages["sequential"], stages["batch"]
    names = list(dict.fromkeys([*seq["stages"], *batch["stages"]]))
    print("\n| stage, ms per request | sequential wall | sequential CPU | batch wall (all "
          "threads) | batch CPU |")
    print("| --- | --- | --- | --- | --- |")
    none = {"wall_ms": 0.0, "cpu_ms": 0.0}
    for name in names:
        s, b = seq["stages"].get(name, none), batch["stages"].get(name, none)
        print(f"| {name} | {s['wall_ms']} | {s['cpu_ms']} | {b['wall_ms']} | {b['cpu_ms']} |")
    print(f"| elapsed (wall clock) | {seq['elapsed_ms_per_request']} | | "
          f"{batch['elapsed_ms_per_request']} | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data/beir-scifact")
    parser.add_argument("--docs", type=int, default=1500)
    parser.add_argument("--data-dir", default="/tmp/bench-cache")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=4000)
    parser.add_argument("--http", action="store_true", help="also over HTTP (in process)")
    parser.add_argument("--stages", action="store_true",
                        help="also time each stage per request, sequential and batch")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "batch.json")
    args = parser.parse_args()
    clock = StageClock().install() if args.stages else None  # before the engine binds them

    dataset = load_beir(args.data)
    claims = list(dataset.queries.values())
    requests = [{"query": q, "max_tokens": args.max_tokens, "top_k": 8, "cache": False}
                for q in claims]
    groups = [requests[i:i + args.size]
              for i in range(0, len(requests) - args.size + 1, args.size)]
    report: dict = {"date": datetime.now(UTC).isoformat(timespec="seconds")}
    with Engine(args.data_dir, Settings(data_dir=Path(args.data_dir))) as engine:
        engine.warm_up()
        report["documents"] = index_subset(engine, Path(args.data) / "corpus.jsonl", args.docs)
        engine.assemble_batch(groups[-1], namespace=NAMESPACE)  # warm, not measured
        report["embedding"] = measure(
            lambda r: engine.embedder.embed([r["query"]]),
            lambda g: engine.embedder.embed([r["query"] for r in g]), groups)
        report["engine"] = measure(
            lambda r: engine.assemble(namespace=NAMESPACE, **r),
            lambda g: engine.assemble_batch(g, namespace=NAMESPACE), groups)
        if clock is not None:
            report["stages"] = stage_times(engine, clock, groups)
        if args.http:
            from contextd.server import create_app

            with Client.for_app(create_app(engine), retries=0) as client:
                client.assemble_batch(groups[-1], namespace=NAMESPACE)
                report["http"] = measure(
                    lambda r: client.assemble(namespace=NAMESPACE, **r),
                    lambda g: client.assemble_batch(g, namespace=NAMESPACE), groups)

    print(f"{report['documents']} documents; groups of {args.size} claims, budget "
          f"{args.max_tokens}, top_k 8, cache off")
    print("| path | groups | sequential req/s | batch req/s | speedup | group ms seq / batch |")
    print("| --- | --- | --- | --- | --- | --- |")
    for path in ("embedding", "engine", "http"):
        if path in report:
            r = report[path]
            print(f"| {path} | {r['groups']} | {r['sequential_rps']} | {r['batch_rps']} | "
                  f"{r['speedup']}x | {r['sequential_group_ms_median']} / "
                  f"{r['batch_group_ms_median']} |")
    if "stages" in report:
        print_stages(report["stages"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
