"""What token telemetry costs per assemble: the usage log line and the /metrics update.

    python benchmarks/bench_telemetry.py

With the hash embedder (no model) over 50 small documents, a 1,500-token budget:
1. building and appending one usage log line (`usage_record` + `JsonlLog.write`), 5,000 times;
2. `ServiceMetrics.observe_assemble` for one response, 5,000 times;
3. `Engine.assemble` with the usage log on and off, 600 calls each, interleaved so both see
   the same machine load: medians.

Prints a table and writes JSON to benchmarks/out/bench_telemetry.json.
"""

from __future__ import annotations

import json
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from contextd import Engine, Settings
from contextd.embedding import HashEmbedder
from contextd.jsonl_log import JsonlLog
from contextd.models import AssembleRequest
from contextd.server.metrics import ServiceMetrics
from contextd.telemetry import usage_record

OUT = Path(__file__).parent / "out"
REQUEST = {"query": "refund fact", "max_tokens": 1500, "query_type": "qa"}
DOCS = [{"id": f"d{i}", "text": f"Refunds fact {i}. " * 30} for i in range(50)]
N = 5000


def engine(data_dir: Path, **settings: object) -> Engine:
    e = Engine(data_dir, Settings(embedder="hash", batch_wait_ms=0, **settings),
               embedder=HashEmbedder())
    e.upsert_documents(DOCS)
    return e


def per_call_us(fn, n: int = N) -> float:
    began = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - began) / n * 1e6


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        on, off = engine(root / "on"), engine(root / "off", usage_log=None)
        response = on.assemble(REQUEST)
        req = AssembleRequest(**REQUEST)
        log = JsonlLog(root / "bench.jsonl", 10 << 20, 5)
        line_us = per_call_us(lambda: log.write(usage_record(req, response, request_id="r")))
        metrics = ServiceMetrics()
        metrics_us = per_call_us(lambda: metrics.observe_assemble(response, "qa"))
        timings: dict[str, list[float]] = {"on": [], "off": []}
        for _ in range(600):
            for name, e in (("on", on), ("off", off)):
                began = time.perf_counter()
                e.assemble(REQUEST)
                timings[name].append((time.perf_counter() - began) * 1000)
        on.close()
        off.close()
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.processor() or platform.machine(),
        "usage_line_us": round(line_us, 1),
        "observe_assemble_us": round(metrics_us, 1),
        "assemble_ms_p50_usage_log_on": round(statistics.median(timings["on"]), 3),
        "assemble_ms_p50_usage_log_off": round(statistics.median(timings["off"]), 3),
    }
    print("| measure | value |")
    print("| --- | --- |")
    for key, value in result.items():
        print(f"| {key} | {value} |")
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_telemetry.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
