"""`contextd eval beir`: retrieval quality and speed on any BEIR-layout dataset.

The corpus is ingested into a fresh namespace (title + text), then every judged query runs
through `Engine.search`, the same retriever and ranker `/v1/assemble` uses. The headline
metrics (nDCG@10, recall@10, MRR@10, latency) are at the operating point, the `top_k` a caller
passes (default 10); recall@100 comes from a second run at depth 100.

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
from contextd.eval.beir import BeirDataset, beir_document_batches, beir_id, load_beir
from contextd.eval.metrics import evaluate, percentile

DEPTH = 100  # documents asked for in the run that scores recall@100
TOP_K = 10  # the operating point: what a caller of search or assemble asks for


def namespace_for(dataset_dir: Path) -> str:
    slug = re.sub(r"[^a-z0-9_-]+", "-", dataset_dir.resolve().name.lower()).strip("-_")
    return f"beir-{slug or 'dataset'}"[:63]


def run_beir(
    engine: Engine, dataset_dir: str | Path, mode: str = "hybrid", namespace: str | None = None,
    progress: bool = False, top_k: int = TOP_K,
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

    report = score_beir(engine, dataset, namespace, mode, top_k, progress)
    return {
        "dataset": str(dataset_dir),
        "namespace": namespace,
        "mode": mode,
        **report,
        "ingest": {**totals, "seconds": round(ingest_s, 2),
                   "documents_per_s": round(totals["documents"] / ingest_s, 1)
                   if ingest_s else None},
        "embedder": engine.embedder.model_id,
        # Which runtime computed it (ONNX Runtime or PyTorch): same vectors, different speed.
        "runtime": getattr(engine.embedder, "backend", None),
        "document_embedder": engine.document_embedder.model_id,
        "document_runtime": getattr(engine.document_embedder, "backend", None),
    }


def score_beir(
    engine: Engine, dataset: BeirDataset, namespace: str, mode: str = "hybrid",
    top_k: int = TOP_K, progress: bool = False,
) -> dict[str, Any]:
    """Scores of `dataset`'s queries on an ingested `namespace`: at `top_k` documents (the
    headline) and at depth 100 (recall@100).

        >>> score_beir(engine, load_beir("tests/data/tiny-beir"), "beir-tiny")["top_k"]
        ... # doctest: +SKIP
        10
    """
    at_k, latencies = _run(engine, dataset, namespace, mode, top_k, progress)
    at_depth, _ = _run(engine, dataset, namespace, mode, DEPTH, progress)
    scores = evaluate(at_k, dataset.qrels, ks=(10, 100))
    deep = evaluate(at_depth, dataset.qrels, ks=(10, 100))
    return {
        "queries": len(dataset.queries),
        "top_k": top_k,
        "metrics": {**{k: round(scores[k], 4) for k in ("ndcg@10", "recall@10", "mrr@10")},
                    "recall@100": round(deep["recall@100"], 4)},
        "at_depth_100": {k: round(deep[k], 4) for k in ("ndcg@10", "recall@10", "recall@100",
                                                        "mrr@10")},
        "query_ms": {"p50": round(percentile(latencies, 50), 2),
                     "p95": round(percentile(latencies, 95), 2)},
    }


def _run(engine: Engine, dataset: BeirDataset, namespace: str, mode: str, top_k: int,
         progress: bool) -> tuple[dict[str, list[str]], list[float]]:
    """Each query's ranked BEIR ids at `top_k` documents, and each query's latency in ms."""
    run: dict[str, list[str]] = {}
    latencies: list[float] = []
    bar = _progress(len(dataset.queries), f"query top {top_k}", progress)
    for qid, text in dataset.queries.items():
        began = time.perf_counter()
        hits = engine.search(text, namespace=namespace, top_k=top_k, mode=mode).hits
        latencies.append((time.perf_counter() - began) * 1000)
        run[qid] = [beir_id(h.id) for h in hits]
        bar.update(1)
    bar.close()
    return run, latencies


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
