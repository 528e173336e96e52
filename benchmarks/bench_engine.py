"""Engine benchmark on SciFact: ingestion speed, unchanged re-ingestion, and assemble latency.

    python benchmarks/bench_engine.py --data ../shared/data/beir-scifact

Phases:
1. Ingest the corpus into a fresh data directory (cold embedding cache): documents/s.
2. Re-ingest it unchanged into the same namespace (content hashes match: nothing re-embedded)
   and into a new namespace (every vector comes from the embedding cache).
3. A 100-turn session, then `Engine.assemble` for each of the 300 queries with that session
   (budget 4,000 tokens, top_k 8): p50/p95 and the mean of each stage.

Prints a table and writes JSON to benchmarks/out/bench_engine.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

from contextd import Engine, Settings
from contextd.eval.beir import beir_document_batches, load_beir
from contextd.eval.metrics import percentile

OUT = Path(__file__).parent / "out"

TOPICS = [
    "I am reading about how vitamin D affects bone density in older adults.",
    "Can you remind me what the trial said about statins and muscle pain?",
    "My supervisor wants a summary of the evidence on sleep and memory consolidation.",
    "We decided to focus the review on randomised controlled trials published after 2010.",
    "The meeting with Dr. Okafor is on 14 March; she leads the cohort study in Lagos.",
    "Please keep the answers short, bullet points are fine.",
    "What did the meta-analysis conclude about aspirin for primary prevention?",
    "I changed my mind: include observational studies too, but flag them.",
]


def session_turns(n: int) -> list[dict]:
    turns = []
    for i in range(n):
        role = "user" if i % 2 == 0 else "assistant"
        text = TOPICS[i % len(TOPICS)] if role == "user" else (
            f"Noted (point {i}). The studies I found so far are mixed; some report effects "
            "in subgroups only, and sample sizes vary widely.")
        turns.append({"role": role, "content": text})
    return turns


def ingest(engine: Engine, dataset, namespace: str) -> dict:
    started = time.perf_counter()
    totals = {"documents": 0, "embedded": 0, "cached": 0, "unchanged": 0, "chunks": 0}
    for batch in beir_document_batches(dataset, size=512):
        result = engine.upsert_documents(batch, namespace=namespace)
        totals["documents"] += len(batch)
        totals["embedded"] += result.embedded
        totals["cached"] += result.cached
        totals["unchanged"] += result.unchanged
        totals["chunks"] += result.chunks
    seconds = time.perf_counter() - started
    return {**totals, "seconds": round(seconds, 2),
            "documents_per_s": round(totals["documents"] / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data/beir-scifact")
    parser.add_argument("--data-dir", default=str(OUT / "bench-engine"))
    parser.add_argument("--keep", action="store_true",
                        help="reuse the data dir (skips the cold ingestion measurement)")
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--max-tokens", type=int, default=4000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--batch-wait-ms", type=float, default=0.0,
                        help="micro-batching wait (0: off; the service default is 2): with it "
                        "on, bm25 runs while the batcher's thread embeds the query")
    args = parser.parse_args()

    data_dir = Path(args.data_dir)
    if data_dir.exists() and not args.keep:
        shutil.rmtree(data_dir)
    dataset = load_beir(args.data)
    report: dict = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}"}
    settings = Settings(data_dir=data_dir, batch_wait_ms=args.batch_wait_ms)
    with Engine(data_dir, settings) as engine:
        engine.warm_up()
        report["embedder"] = engine.embedder.model_id
        report["runtime"] = getattr(engine.embedder, "backend", None)
        report["ingest_cold"] = ingest(engine, dataset, "scifact")
        report["reingest_same_namespace"] = ingest(engine, dataset, "scifact")
        report["reingest_new_namespace"] = ingest(engine, dataset, "scifact-copy")
        engine.append_messages("bench", session_turns(args.turns), namespace="scifact")

        latencies, stages = [], {}
        queries = list(dataset.queries.values())[: args.queries]
        for query in queries[:10]:  # warm caches, not measured
            engine.assemble(namespace="scifact", query=query, session_id="bench",
                            max_tokens=args.max_tokens)
        for query in queries:
            started = time.perf_counter()
            response = engine.assemble(namespace="scifact", query=query, session_id="bench",
                                       max_tokens=args.max_tokens)
            latencies.append((time.perf_counter() - started) * 1000)
            for stage, ms in response.timings_ms.items():
                stages.setdefault(stage, []).append(ms)
        report["assemble"] = {
            "queries": len(queries), "turns": args.turns, "max_tokens": args.max_tokens,
            "p50_ms": round(percentile(latencies, 50), 2),
            "p95_ms": round(percentile(latencies, 95), 2),
            "stage_mean_ms": {k: round(statistics.fmean(v), 3) for k, v in stages.items()},
        }

    cold = report["ingest_cold"]["seconds"]
    print(f"embedder: {report['embedder']}")
    print("| phase | documents/s | seconds | embedded | cached | unchanged |")
    print("| --- | --- | --- | --- | --- | --- |")
    for phase in ("ingest_cold", "reingest_same_namespace", "reingest_new_namespace"):
        r = report[phase]
        print(f"| {phase} | {r['documents_per_s']} | {r['seconds']} | {r['embedded']} | "
              f"{r['cached']} | {r['unchanged']} |")
    for phase in ("reingest_same_namespace", "reingest_new_namespace"):
        report[phase]["speedup"] = round(cold / max(report[phase]["seconds"], 1e-9), 1)
        print(f"{phase}: {report[phase]['speedup']}x faster than cold")
    a = report["assemble"]
    print(f"assemble ({a['turns']}-turn session, {a['max_tokens']} tokens, {a['queries']} "
          f"queries): p50 {a['p50_ms']} ms, p95 {a['p95_ms']} ms; stages {a['stage_mean_ms']}")
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_engine.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
