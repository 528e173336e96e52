"""bm25 stage of assemble, in-memory index against FTS5, side by side on one namespace.

    python benchmarks/bench_lexical.py --data-dir /tmp/dd --namespace beir-beir-scifact

Opens an ingested namespace (e.g. the one `contextd eval beir` leaves), builds its in-memory
bm25 index (time and resident memory), then runs every query of the BEIR folder through
`HybridRetriever.lexical` both ways, alternating per query, and checks they return the same
chunks; then `Engine.assemble` p50 both ways on the first `--assemble` queries. Prints a table
and writes JSON to benchmarks/out/bench_lexical.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

from contextd import Engine, Settings
from contextd.eval.beir import load_beir
from contextd.eval.metrics import percentile

OUT = Path(__file__).parent / "out"


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data/beir-scifact")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--namespace", default="beir-beir-scifact")
    parser.add_argument("--assemble", type=int, default=100)
    args = parser.parse_args()

    dataset = load_beir(args.data)
    queries = list(dataset.queries.values())
    engine = Engine(args.data_dir, Settings(batch_wait_ms=0, cache_enabled=False))
    ns = engine.registry.get(args.namespace)
    retriever = engine.retriever
    before = rss_mb()
    started = time.perf_counter()
    index = ns.lexical_index()
    assert index is not None
    build_s = time.perf_counter() - started
    after = rss_mb()
    k = 10
    timings: dict[str, list[float]] = {"index": [], "fts5": []}
    same = 0
    for i, query in enumerate(queries):
        results = {}
        for way in (("index", "fts5") if i % 2 else ("fts5", "index")):
            ns.lexical = index if way == "index" else None
            t = time.perf_counter()
            results[way] = retriever.lexical(ns, query, k)
            timings[way].append((time.perf_counter() - t) * 1000)
        same += [c for c, _ in results["index"]] == [c for c, _ in results["fts5"]]
    assemble: dict[str, list[float]] = {"index": [], "fts5": []}
    for i, query in enumerate(queries[: args.assemble]):
        for way in (("index", "fts5") if i % 2 else ("fts5", "index")):
            ns.lexical = index if way == "index" else None
            t = time.perf_counter()
            engine.assemble({"query": query, "namespace": args.namespace, "max_tokens": 4000,
                             "top_k": 8})
            assemble[way].append((time.perf_counter() - t) * 1000)
    ns.lexical = index
    report = {
        "chunks": len(index), "postings": index.postings, "build_s": round(build_s, 2),
        "index_rss_mb": round(after - before, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "queries": len(queries), "same_top_chunks": same,
        "lexical_ms": {w: {"p50": round(percentile(v, 50), 3), "p95": round(percentile(v, 95), 3),
                           "mean": round(statistics.fmean(v), 3)} for w, v in timings.items()},
        "assemble_ms": {w: {"p50": round(percentile(v, 50), 2),
                            "mean": round(statistics.fmean(v), 2)} for w, v in assemble.items()},
    }
    engine.close()
    print(f"{report['chunks']} chunks, {report['postings']} postings, built in "
          f"{report['build_s']} s, +{report['index_rss_mb']} MB RSS "
          f"(peak {report['peak_rss_mb']} MB); same top {k}: {same}/{len(queries)}")
    print("| bm25 stage | p50 ms | p95 ms | mean ms | assemble p50 ms |")
    print("| --- | --- | --- | --- | --- |")
    for way in ("fts5", "index"):
        lx, asm = report["lexical_ms"][way], report["assemble_ms"][way]
        print(f"| {way} | {lx['p50']} | {lx['p95']} | {lx['mean']} | {asm['p50']} |")
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_lexical.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
