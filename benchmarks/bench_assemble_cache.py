"""Assemble latency through the semantic cache on SciFact: a miss, an exact hit, a near hit.

    HF_HUB_OFFLINE=1 python benchmarks/bench_assemble_cache.py \\
        --data ../shared/data/beir-scifact --docs 1500 --data-dir /tmp/bench-cache

The first `--docs` abstracts of the corpus are indexed (unchanged ones are not embedded again
when the data directory is reused), then each SciFact claim is assembled (budget 4,000 tokens,
top_k 8, no session) four ways, each timed around `Engine.assemble`:

* ``miss, cache off``: `cache=false`, the assembly alone;
* ``miss``: the first time the claim is asked with the cache on (lookups and storing included);
* ``exact hit``: the same claim again, with other spacing and punctuation;
* ``near-duplicate hit``: the claim with a filler in front ("Please tell me: ..."), which is
  not an exact match, so it is embedded and compared, and the guard accepts it.

Prints a table and writes JSON to benchmarks/results/assemble_cache.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from datetime import UTC, datetime
from pathlib import Path

from contextd import Engine, Settings
from contextd.eval.beir import load_beir
from contextd.eval.metrics import percentile
from contextd.loaders import read_documents

HERE = Path(__file__).parent
NAMESPACE = "scifact"


def index_subset(engine: Engine, corpus: Path, docs: int) -> int:
    """Upsert the first `docs` documents of `corpus`; those already stored are unchanged."""
    documents = list(itertools.islice(read_documents(corpus), docs))
    for start in range(0, len(documents), 500):
        engine.upsert_documents(documents[start:start + 500], namespace=NAMESPACE)
    return len(documents)


def timed_assemble(engine: Engine, query: str, **fields: object) -> tuple[float, object]:
    started = time.perf_counter()
    response = engine.assemble(namespace=NAMESPACE, query=query, **fields)
    return (time.perf_counter() - started) * 1000, response


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data/beir-scifact")
    parser.add_argument("--docs", type=int, default=1500, help="first N corpus documents")
    parser.add_argument("--data-dir", default="/tmp/bench-cache")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--max-tokens", type=int, default=4000)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "assemble_cache.json")
    args = parser.parse_args()

    dataset = load_beir(args.data)
    queries = list(dataset.queries.values())[: args.queries]
    fields = {"max_tokens": args.max_tokens, "top_k": 8}
    cases: dict[str, list[float]] = {"miss, cache off": [], "miss": [], "exact hit": [],
                                     "near-duplicate hit": []}
    outcomes: dict[str, dict[str, int]] = {}
    with Engine(args.data_dir, Settings(data_dir=Path(args.data_dir))) as engine:
        engine.warm_up()
        indexed = index_subset(engine, Path(args.data) / "corpus.jsonl", args.docs)
        for query in queries[:10]:  # warm every path once, not measured
            engine.assemble(namespace=NAMESPACE, query=query, cache=False, **fields)
        engine.cache.drop_namespace(NAMESPACE)
        for query in queries:
            ms, _ = timed_assemble(engine, query, cache=False, **fields)
            cases["miss, cache off"].append(ms)
            ms, miss = timed_assemble(engine, query, **fields)
            assert not miss.cache.hit, query
            cases["miss"].append(ms)
            ms, hit = timed_assemble(engine, "  " + query.rstrip(".") + " ?", **fields)
            assert hit.cache.hit and hit.cache.similarity == 1.0, query
            cases["exact hit"].append(ms)
            ms, near = timed_assemble(engine, f"Please tell me: {query}", **fields)
            if near.cache.hit:
                cases["near-duplicate hit"].append(ms)
        outcomes = engine.cache.core.counts()
        entries, nbytes = engine.cache.core.usage(NAMESPACE)

    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "documents": indexed, "queries": len(queries), **fields,
        "cache_entries": entries, "cache_bytes": nbytes, "outcomes": outcomes,
        "cases": {name: {"n": len(v), "p50_ms": round(percentile(v, 50), 3),
                         "p95_ms": round(percentile(v, 95), 3)}
                  for name, v in cases.items() if v},
    }
    print(f"{indexed} documents, {len(queries)} queries, budget {args.max_tokens}, top_k 8")
    print("| case | n | p50 ms | p95 ms |")
    print("| --- | --- | --- | --- |")
    for name, row in report["cases"].items():
        print(f"| {name} | {row['n']} | {row['p50_ms']} | {row['p95_ms']} |")
    print(f"outcomes: {outcomes}; {entries} entries, {nbytes} bytes held")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
