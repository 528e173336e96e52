"""Retrieval ablations on a BEIR dataset already ingested by `contextd eval beir`.

Reuses the ingested namespace (no re-embedding) and varies one retrieval or ranking knob at a
time, so each idea's effect is measured against the same index:

    python benchmarks/ablate_retrieval.py --data-dir benchmarks/out/scifact-eval \
        --dataset ../shared/data/beir-scifact

Prints a table (nDCG@10, recall@100, p50 ms) and writes benchmarks/out/ablate_retrieval.json.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from contextd import Engine, Settings
from contextd.eval.beir import beir_id, load_beir
from contextd.eval.beir_runner import CHUNKS_PER_DOCUMENT, DEPTH, namespace_for
from contextd.eval.metrics import evaluate, percentile

OUT = Path(__file__).parent / "out"

VARIANTS: dict[str, dict] = {
    "shipped defaults": {},
    "dense only": {"mode": "dense"},
    "lexical only": {"mode": "lexical"},
    "RRF k 60 (fusion by rank)": {"retriever": {"fusion": "rrf"}},
    "RRF k 20": {"retriever": {"fusion": "rrf", "rrf_k": 20.0}},
    "RRF k 100": {"retriever": {"fusion": "rrf", "rrf_k": 100.0}},
    "no MMR (lambda 1)": {"ranker": {"lambda_": 1.0}},
    "MMR lambda 0.7": {"ranker": {"lambda_": 0.7}},
    "MMR on raw cosine (floor 0)": {"ranker": {"redundancy_floor": 0.0}},
    "dense weight 1.5": {"retriever": {"dense_weight": 1.5}},
    "lexical weight 1.5": {"retriever": {"lexical_weight": 1.5}},
    "title weight 2 (bm25)": {"retriever": {"title_weight": 2.0}},
    "depth 200": {"retriever": {"depth": 200}},
    "keep every term (share 1)": {"retriever": {"common_term_share": 1.0}},
    "drop terms in > 10% of chunks": {"retriever": {"common_term_share": 0.1}},
}


def run(engine: Engine, dataset, namespace: str, mode: str) -> tuple[dict, float]:
    runs, latencies = {}, []
    for qid, text in dataset.queries.items():
        started = time.perf_counter()
        hits = engine.search(text, namespace=namespace, top_k=DEPTH * CHUNKS_PER_DOCUMENT,
                             mode=mode).hits
        latencies.append((time.perf_counter() - started) * 1000)
        runs[qid] = list(dict.fromkeys(beir_id(h.id) for h in hits))[:DEPTH]
    return evaluate(runs, dataset.qrels, ks=(10, 100)), percentile(latencies, 50)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--only", nargs="*", help="variant names to run")
    args = parser.parse_args()
    dataset = load_beir(args.dataset)
    namespace = namespace_for(Path(args.dataset))
    results = {}
    with Engine(args.data_dir, Settings(data_dir=Path(args.data_dir), batch_wait_ms=0)) as engine:
        base_retriever, base_ranker = engine.retriever, engine.ranker
        print("| variant | nDCG@10 | recall@10 | recall@100 | MRR@10 | p50 ms |")
        print("| --- | --- | --- | --- | --- | --- |")
        for name, change in VARIANTS.items():
            if args.only and name not in args.only:
                continue
            engine.retriever = replace(base_retriever, **change.get("retriever", {}))
            engine.ranker = replace(base_ranker, **change.get("ranker", {}))
            scores, p50 = run(engine, dataset, namespace, change.get("mode", "hybrid"))
            results[name] = {**{k: round(v, 4) for k, v in scores.items()}, "p50_ms": p50}
            print(f"| {name} | {scores['ndcg@10']:.4f} | {scores['recall@10']:.4f} | "
                  f"{scores['recall@100']:.4f} | {scores['mrr@10']:.4f} | {p50:.1f} |",
                  flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "ablate_retrieval.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
