"""Ingestion-embedding speed and dense-only quality of each embedding backend on BEIR SciFact.

For every option it embeds the corpus (title + "\\n" + text, as ingestion would), reports docs/s,
the one-time export cost, and dense-only nDCG@10 (brute-force cosine) against the test qrels.
It also counts the model's floating-point work for those texts and measures this machine's
fp32 matrix-multiply throughput, so each option's speed reads as a share of what the CPU can do.

    .venv/bin/python benchmarks/bench_embedding.py                       # all options
    .venv/bin/python benchmarks/bench_embedding.py --options onnx-int8 --limit 500

The PyTorch fp32 run is the reference and costs ~4 minutes; `--reference-cache DIR` keeps its
vectors (outside the repo) so later runs reuse them. Writes benchmarks/out/embedding.json.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from contextd.embedding import SentenceTransformerEmbedder, bundled_model_path  # noqa: E402

DATA = Path("../shared/data/beir-scifact")
# option name -> constructor arguments
OPTIONS: dict[str, dict] = {
    "torch-fp32": {"backend": "torch-fp32"},
    "onnx-fp32": {"backend": "onnx-fp32"},
    "onnx-int8": {"backend": "onnx-int8"},
    "torch-bf16": {"backend": "torch-bf16"},
}


def load_scifact(limit: int | None) -> tuple[list[str], list[str], list[str], list[str], dict]:
    """Corpus ids/texts, query ids/texts and test qrels {query_id: {doc_id: grade}}."""
    docs = [json.loads(line) for line in (DATA / "corpus.jsonl").open()]
    if limit:
        docs = docs[:limit]
    qrels: dict[str, dict[str, int]] = {}
    with (DATA / "qrels" / "test.tsv").open() as fh:
        next(fh)
        for line in fh:
            qid, did, grade = line.split("\t")
            qrels.setdefault(qid, {})[did] = int(grade)
    queries = [json.loads(line) for line in (DATA / "queries.jsonl").open()]
    queries = [q for q in queries if q["_id"] in qrels]
    return (
        [d["_id"] for d in docs],
        [f"{d['title']}\n{d['text']}" for d in docs],
        [q["_id"] for q in queries],
        [q["text"] for q in queries],
        qrels,
    )


def ndcg_at_10(doc_vecs, doc_ids, query_vecs, query_ids, qrels) -> float:
    """Mean nDCG@10 over the queries, ranking documents by cosine (rows are unit vectors)."""
    scores = query_vecs @ doc_vecs.T
    total = 0.0
    for row, qid in enumerate(query_ids):
        top = np.argsort(-scores[row], kind="stable")[:10]
        rel = qrels[qid]
        dcg = sum(rel.get(doc_ids[j], 0) / math.log2(i + 2) for i, j in enumerate(top))
        ideal = sorted(rel.values(), reverse=True)[:10]
        idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
        total += dcg / idcg if idcg else 0.0
    return total / len(query_ids)


def model_gflop(texts: list[str], max_len: int = 256) -> float:
    """Forward-pass GFLOP of all-MiniLM-L6-v2 on `texts` (6 layers, width 384, FFN 1536),
    each truncated to `max_len` word pieces; padding not counted."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(bundled_model_path()))
    lengths = [min(len(ids), max_len) for ids in tokenizer(texts)["input_ids"]]
    per_token = 2 * 6 * (4 * 384 * 384 + 2 * 384 * 1536)  # Q, K, V, output; FFN in and out
    attention = sum(2 * 6 * 2 * n * n * 384 for n in lengths)  # QK^T and attention x V
    return (per_token * sum(lengths) + attention) / 1e9


def gemm_gflops(threads: int | None) -> float:
    """Best fp32 GFLOPS of a 2048 x 2048 matrix product on this machine (PyTorch/oneDNN)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    best = math.inf
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(5):
            a @ b
        best = min(best, time.perf_counter() - start)
    return 5 * 2 * 2048**3 / best / 1e9


def run_option(name: str, docs: list[str], queries: list[str], args, cache_dir: Path) -> dict:
    emb = SentenceTransformerEmbedder(
        batch_size=args.batch_size, threads=args.threads, cache_dir=cache_dir, **OPTIONS[name]
    )
    start = time.perf_counter()
    emb.warm_up()
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    doc_vecs = emb.embed(docs)
    embed_s = time.perf_counter() - start
    return {
        "option": name,
        "model_id": emb.model_id,
        "load_s": load_s,
        "embed_s": embed_s,
        "doc_vecs": doc_vecs,
        "query_vecs": emb.embed(queries),
    }


def reference(docs, queries, args, cache_dir: Path) -> dict:
    """The `--reference` run (fp32), reused from `--reference-cache` when it matches."""
    store = Path(args.reference_cache) if args.reference_cache else None
    tag = f"{args.reference}-n{len(docs)}-b{args.batch_size}-t{args.threads}"
    if store and (store / f"{tag}.json").exists():
        meta = json.loads((store / f"{tag}.json").read_text())
        meta["doc_vecs"] = np.load(store / f"{tag}-docs.npy")
        meta["query_vecs"] = np.load(store / f"{tag}-queries.npy")
        return meta
    result = run_option(args.reference, docs, queries, args, cache_dir)
    if store:
        store.mkdir(parents=True, exist_ok=True)
        np.save(store / f"{tag}-docs.npy", result["doc_vecs"])
        np.save(store / f"{tag}-queries.npy", result["query_vecs"])
        meta = {k: v for k, v in result.items() if not k.endswith("_vecs")}
        (store / f"{tag}.json").write_text(json.dumps(meta))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--options", nargs="+", default=list(OPTIONS), choices=list(OPTIONS))
    parser.add_argument("--limit", type=int, default=None, help="embed only the first N docs")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--reference-cache", default="/tmp/contextd-bench-embedding")
    parser.add_argument("--reference", choices=["torch-fp32", "onnx-fp32"], default="torch-fp32",
                        help="the fp32 run others are compared with (same function, either "
                        "runtime: onnx-fp32 is the quicker)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "embedding.json"))
    args = parser.parse_args()

    doc_ids, docs, query_ids, queries, qrels = load_scifact(args.limit)
    gflop = model_gflop(docs)
    peak = gemm_gflops(args.threads)
    print(f"model work: {gflop:.0f} GFLOP for {len(docs)} documents; "
          f"fp32 matrix product on this machine: {peak:.1f} GFLOPS")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ref = reference(docs, queries, args, Path(tmp))
        for name in args.options:
            # A fresh cache dir per option, so load_s includes the one-time export.
            result = (
                ref
                if name == args.reference
                else run_option(name, docs, queries, args, Path(tmp) / name)
            )
            cos = np.sum(result["doc_vecs"] * ref["doc_vecs"], axis=1)
            rows.append(
                {
                    "option": name,
                    "model_id": result["model_id"],
                    "first_load_s": round(result["load_s"], 1),
                    "embed_s": round(result["embed_s"], 1),
                    "docs_per_s": round(len(docs) / result["embed_s"], 1),
                    "speedup": round(ref["embed_s"] / result["embed_s"], 2),
                    "gflops": round(gflop / result["embed_s"], 1),
                    "share_of_fp32_gemm": round(gflop / result["embed_s"] / peak, 2),
                    "ndcg@10": round(
                        ndcg_at_10(
                            result["doc_vecs"], doc_ids, result["query_vecs"], query_ids, qrels
                        ),
                        4,
                    ),
                    "min_cos_vs_fp32": round(float(cos.min()), 4),
                    "mean_cos_vs_fp32": round(float(cos.mean()), 5),
                }
            )

    header = list(rows[0])
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(row[h]) for h in header) + " |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "docs": len(docs),
                "queries": len(queries),
                "batch_size": args.batch_size,
                "threads": args.threads,
                "machine": platform.machine(),
                "model_gflop": round(gflop, 1),
                "fp32_gemm_gflops": round(peak, 1),
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
