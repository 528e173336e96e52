"""`contextd eval beir`: retrieval quality and speed on any BEIR-layout dataset.

The corpus is ingested into a fresh namespace (title + text), then every judged query runs
through `Engine.search`, the same retriever and ranker `/v1/assemble` uses.

    >>> report = run_beir(engine, "tests/data/tiny-beir", mode="hybrid")  # doctest: +SKIP
    >>> report["metrics"]["ndcg@10"]  # doctest: +SKIP
    0.91
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from contextd.engine import Engine
from contextd.eval.beir import beir_document_batches, beir_id, load_beir
from contextd.eval.metrics import evaluate, percentile

DEPTH = 100  # documents scored per query (recall@100)
CHUNKS_PER_DOCUMENT = 3  # chunks fetched per wanted document, as hits are chunk-level


def namespace_for(dataset_dir: Path) -> str:
    slug = re.sub(r"[^a-z0-9_-]+", "-", dataset_dir.resolve().name.lower()).strip("-_")
    return f"beir-{slug or 'dataset'}"[:63]


def run_beir(
    engine: Engine, dataset_dir: str | Path, mode: str = "hybrid", namespace: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Ingest, query and score; returns metrics, latencies and ingestion speed."""
    dataset_dir = Path(dataset_dir)
    dataset = load_beir(dataset_dir)
    namespace = namespace or namespace_for(dataset_dir)
    if engine.registry.exists(namespace):
        engine.delete_namespace(namespace)

    totals = {"documents": 0, "chunks": 0, "embedded": 0, "cached": 0}
    bar = _progress(len(dataset.corpus), "ingest", progress)
    started = time.perf_counter()
    for batch in beir_document_batches(dataset):
        result = engine.upsert_documents(batch, namespace=namespace)
        totals["documents"] += result.upserted + result.unchanged
        for key in ("chunks", "embedded", "cached"):
            totals[key] += getattr(result, key)
        bar.update(len(batch))
    ingest_s = time.perf_counter() - started
    bar.close()

    run: dict[str, list[str]] = {}
    latencies: list[float] = []
    bar = _progress(len(dataset.queries), "query", progress)
    for qid, text in dataset.queries.items():
        began = time.perf_counter()
        hits = engine.search(text, namespace=namespace, top_k=DEPTH * CHUNKS_PER_DOCUMENT,
                             mode=mode).hits
        latencies.append((time.perf_counter() - began) * 1000)
        ranked = list(dict.fromkeys(beir_id(h.id) for h in hits))
        run[qid] = ranked[:DEPTH]
        bar.update(1)
    bar.close()

    scores = evaluate(run, dataset.qrels, ks=(10, 100))
    return {
        "dataset": str(dataset_dir),
        "namespace": namespace,
        "mode": mode,
        "queries": len(dataset.queries),
        "metrics": {k: round(scores[k], 4) for k in ("ndcg@10", "recall@10", "recall@100",
                                                   "mrr@10")},
        "query_ms": {"p50": round(percentile(latencies, 50), 2),
                     "p95": round(percentile(latencies, 95), 2)},
        "ingest": {**totals, "seconds": round(ingest_s, 2),
                   "documents_per_s": round(totals["documents"] / ingest_s, 1)
                   if ingest_s else None},
        "embedder": engine.embedder.model_id,
        # Which runtime computed it (ONNX Runtime or PyTorch): same vectors, different speed.
        "runtime": getattr(engine.embedder, "backend", None),
    }


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, label: str, enabled: bool) -> Any:
    if not enabled:
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="item")
