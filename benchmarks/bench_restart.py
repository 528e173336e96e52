"""Warm restart: seconds until a `contextd serve` on an existing data directory is ready, and
until its first search and first assemble answer.

    HF_HUB_OFFLINE=1 python benchmarks/bench_restart.py --data-dir /tmp/peers-ours \\
        --namespace scifact --restarts 3

The data directory must hold an ingested namespace (the peer harness's `run_ours.py` leaves
one). Each restart starts a server process (shipped settings; the embedding model is exported
already, so this is the warm case), waits for `/readyz`, then times one search and one
assemble in that namespace (the first search loads the namespace: its vector snapshot and the
in-memory bm25 index), then a second search, and stops the process with SIGTERM. Prints a
table and writes JSON to benchmarks/out/bench_restart.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from server_process import ServerProcess

OUT = Path(__file__).parent / "out"
QUERY = "Vitamin D deficiency is associated with a higher risk of tuberculosis."


def timed_post(http: httpx.Client, url: str, body: dict) -> float:
    began = time.perf_counter()
    response = http.post(url, json=body)
    response.raise_for_status()
    return (time.perf_counter() - began) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--namespace", default="scifact")
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUT / "bench_restart.json")
    args = parser.parse_args()

    runs = []
    for _ in range(args.restarts):
        server = ServerProcess(args.data_dir)
        ready_s = server.start()
        base = f"{server.url}/v1/namespaces/{args.namespace}"
        try:
            with httpx.Client(timeout=120.0) as http:
                first_search = timed_post(http, f"{base}/search", {"query": QUERY, "top_k": 10})
                first_assemble = timed_post(http, f"{base}/assemble",
                                            {"query": QUERY, "max_tokens": 2000, "cache": False})
                second_search = timed_post(http, f"{base}/search", {"query": QUERY, "top_k": 10})
        finally:
            server.stop()
        runs.append({"ready_s": round(ready_s, 2), "first_search_ms": round(first_search, 1),
                     "first_assemble_ms": round(first_assemble, 1),
                     "second_search_ms": round(second_search, 1)})
    report = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": platform.processor() or platform.machine(),
              "data_dir": str(args.data_dir), "namespace": args.namespace, "runs": runs,
              "median": {key: statistics.median(r[key] for r in runs) for key in runs[0]}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print("| restart | ready s | first search ms | first assemble ms | second search ms |")
    print("| --- | --- | --- | --- | --- |")
    for n, r in enumerate(runs, start=1):
        print(f"| {n} | {r['ready_s']} | {r['first_search_ms']} | {r['first_assemble_ms']} | "
              f"{r['second_search_ms']} |")


if __name__ == "__main__":
    main()
