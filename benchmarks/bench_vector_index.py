"""Vector index at one machine's scale: memory, build, latency, recall@10, deletes.

Synthetic clustered 384-d vectors (topics -> subtopics -> points, normalised), so neighbours
sit in clusters as text embeddings do. Every figure is against exact search.

    .venv/bin/python benchmarks/bench_vector_index.py --n 100000
    .venv/bin/python benchmarks/bench_vector_index.py --n 1000000 --kinds flat,ivf,hnsw
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import faiss
import numpy as np

from contextd.store.vector_index import FaissVectorIndex

OUT = Path(__file__).parent / "out" / "vector_index.json"


def embeddings_like(
    n: int, dim: int, seed: int, topics: int = 1000, shared_spread: bool = False
) -> np.ndarray:
    """Topics -> subtopics -> points spread along their topic's own 16-d subspace, plus noise.

    The low-rank spread gives points real nearest neighbours (as text has) rather than the
    equidistant crowd isotropic noise makes. The same seed gives the same topics, so queries
    drawn with it come from the corpus distribution. `shared_spread` makes every topic vary
    along one subspace, so neighbours cross topics: a harder case for any cell-based index.
    """
    topic_rng = np.random.default_rng(seed)
    centres = topic_rng.standard_normal((topics, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    subtopics = centres.repeat(10, axis=0) + (
        0.6 / np.sqrt(dim) * topic_rng.standard_normal((topics * 10, dim)).astype(np.float32)
    )
    spreads = topic_rng.standard_normal((1 if shared_spread else topics, 16, dim)).astype(
        np.float32
    ) / np.sqrt(dim)
    rng = np.random.default_rng(seed + n)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 20_000):
        m = min(20_000, n - start)
        sub = rng.integers(0, len(subtopics), m)
        z = 0.9 / np.sqrt(16) * rng.standard_normal((m, 16), dtype=np.float32)
        x = subtopics[sub] + np.einsum("mk,mkd->md", z, spreads[(sub // 10) % len(spreads)])
        x += 0.3 / np.sqrt(dim) * rng.standard_normal((m, dim), dtype=np.float32)
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))


def recall_at_10(found: list[np.ndarray], truth: np.ndarray) -> float:
    return float(
        np.mean([len(np.intersect1d(f, t[:10])) / 10 for f, t in zip(found, truth, strict=True)])
    )


def timed_searches(search, queries: np.ndarray) -> tuple[list[np.ndarray], dict]:
    found, times = [], []
    for q in queries:
        t0 = time.perf_counter()
        found.append(search(q))
        times.append(time.perf_counter() - t0)
    ms = np.array(times) * 1e3
    return found, {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95))}


def qps(search, queries: np.ndarray, threads: int, seconds: float = 3.0) -> float:
    counts = [0] * threads
    stop = time.perf_counter() + seconds

    def worker(slot: int) -> None:
        i = slot
        while time.perf_counter() < stop:
            search(queries[i % len(queries)])
            counts[slot] += 1
            i += threads

    pool = [threading.Thread(target=worker, args=(s,)) for s in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts) / seconds


def build(index: FaissVectorIndex, data: np.ndarray, batch: int) -> dict:
    rss0, t0 = rss_bytes(), time.perf_counter()
    for start in range(0, len(data), batch):
        ids = np.arange(start, min(start + batch, len(data)), dtype=np.int64)
        index.add(ids, data[start : start + batch], seq=start)
    return {"build_s": time.perf_counter() - t0, "rss_delta_mb": (rss_bytes() - rss0) / 2**20}


def snapshot_cost(index: FaissVectorIndex, dim: int) -> dict:
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        path = Path(tmp) / "ns.faiss"
        t0 = time.perf_counter()
        index.save(path)
        t1 = time.perf_counter()
        FaissVectorIndex.load(path, dim)
        return {
            "file_mb": path.stat().st_size / 2**20,
            "save_s": t1 - t0,
            "load_s": time.perf_counter() - t1,
        }


def bench_contextd(kind, data, queries, truth, args) -> list[dict]:
    above = len(data) + 1 if kind == "flat" else args.approximate_above
    index = FaissVectorIndex(data.shape[1], approximate_above=above)
    row = {"kind": kind, "n": len(data), **build(index, data, args.batch)}
    assert index.kind == kind, index.kind
    rows = []
    # The build chose nprobe itself (recall measured on a sample of the vectors); that setting
    # is the first row and the default every later figure uses. The sweep shows the trade-off.
    calibrated = index.nprobe
    row["build_measured_recall"] = index.measured_recall
    for nprobe in [None] if kind == "flat" else [calibrated, *args.nprobe]:
        if nprobe is not None:
            index.nprobe = nprobe
        found, lat = timed_searches(lambda q: index.search(q, 10)[1], queries)
        label = "-" if nprobe is None else f"nprobe={nprobe}"
        if nprobe is not None and not rows:
            label += " (chosen by the build)"
        rows.append({**row, "param": label, **lat, "recall@10": recall_at_10(found, truth)})
    chosen = rows[0]
    if kind != "flat":
        index.nprobe = calibrated
    chosen["qps_1_thread"] = qps(lambda q: index.search(q, 10), queries, 1)
    chosen["qps_2_threads"] = qps(lambda q: index.search(q, 10), queries, 2)
    rng = np.random.default_rng(args.seed)
    for size in (1_000, 100_000):
        allowed = rng.choice(len(data), min(size, len(data)), replace=False).astype(np.int64)
        found, lat = timed_searches(lambda q, a=allowed: index.search(q, 10, a)[1], queries[:50])
        exact = [np.intersect1d(t, allowed) for t in truth[:50]]
        chosen[f"filter_{size}_p50_ms"] = lat["p50_ms"]
        chosen[f"filter_{size}_contained"] = all(np.isin(f, allowed).all() for f in found)
        chosen[f"filter_{size}_len_ok"] = all(len(f) == 10 for f in found)
        chosen[f"filter_{size}_recall_of_exact_in_top100"] = float(
            np.mean(
                [
                    len(np.intersect1d(f, e)) / max(1, min(10, len(e)))
                    for f, e in zip(found, exact, strict=True)
                ]
                if size >= 100_000
                else [1.0]
            )
        )
    chosen.update(snapshot_cost(index, data.shape[1]))
    if kind != "flat":
        gone = rng.choice(len(data), args.delete, replace=False).astype(np.int64)
        t0 = time.perf_counter()
        index.remove(gone, seq=len(data) + 1)
        chosen["delete_s"] = time.perf_counter() - t0
        found, lat = timed_searches(lambda q: index.search(q, 10)[1], queries)
        truth_after = [t[~np.isin(t, gone)][:10] for t in truth]
        chosen["recall@10_after_delete"] = recall_at_10(found, truth_after)
        chosen["deleted_returned"] = int(sum(np.isin(f, gone).sum() for f in found))
    return rows


def bench_hnsw(data, queries, truth, args) -> list[dict]:
    """Raw faiss HNSW for comparison; deletes can only be tombstones filtered at search."""
    faiss.omp_set_num_threads(args.build_threads)
    rss0, t0 = rss_bytes(), time.perf_counter()
    index = faiss.IndexHNSWFlat(data.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 40
    index.add(data)
    row = {
        "kind": "hnsw(M=32)",
        "n": len(data),
        "build_s": time.perf_counter() - t0,
        "rss_delta_mb": (rss_bytes() - rss0) / 2**20,
    }
    faiss.omp_set_num_threads(1)
    gone = np.random.default_rng(args.seed).choice(len(data), args.delete, replace=False)
    tombstones = faiss.IDSelectorNot(faiss.IDSelectorBatch(gone.astype(np.int64)))
    truth_after = [t[~np.isin(t, gone)][:10] for t in truth]
    rows = []
    for ef in args.ef:
        params = faiss.SearchParametersHNSW(efSearch=ef)
        found, lat = timed_searches(
            lambda q, p=params: index.search(q[None], 10, params=p)[1][0], queries
        )
        params = faiss.SearchParametersHNSW(efSearch=ef, sel=tombstones)
        after, _ = timed_searches(
            lambda q, p=params: index.search(q[None], 10, params=p)[1][0], queries
        )
        rows.append(
            {
                **row,
                "param": f"efSearch={ef}",
                **lat,
                "recall@10": recall_at_10(found, truth),
                "recall@10_after_delete": recall_at_10(after, truth_after),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--kinds", default="flat,ivf")
    parser.add_argument("--approximate-above", type=int, default=200_000)
    parser.add_argument(
        "--nprobe", type=lambda s: [int(x) for x in s.split(",")], default=[16, 32, 64, 128]
    )
    parser.add_argument("--ef", type=lambda s: [int(x) for x in s.split(",")], default=[64, 128])
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--delete", type=int, default=10_000)
    parser.add_argument("--build-threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shared-spread", action="store_true", help="harder, cross-topic data")
    args = parser.parse_args()
    args.approximate_above = min(args.approximate_above, args.n // 2)

    t0 = time.perf_counter()
    data = embeddings_like(args.n, args.dim, args.seed, shared_spread=args.shared_spread)
    queries = embeddings_like(args.queries, args.dim, args.seed, shared_spread=args.shared_spread)
    exact = faiss.IndexFlatIP(args.dim)
    exact.add(data)
    truth = exact.search(queries, 100)[1]
    del exact
    print(f"data + exact top-100 in {time.perf_counter() - t0:.1f}s")

    rows: list[dict] = []
    for kind in args.kinds.split(","):
        new = (
            bench_hnsw(data, queries, truth, args)
            if kind == "hnsw"
            else bench_contextd(kind, data, queries, truth, args)
        )
        rows += new
        for row in new:
            print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()})
    header = f"{'kind':<11}{'param':<36}{'build s':>9}{'RSS MB':>9}{'p50 ms':>8}{'p95 ms':>8}"
    print(header + f"{'recall@10':>10}")
    for r in rows:
        print(
            f"{r['kind']:<11}{r['param']:<36}{r['build_s']:>9.1f}{r['rss_delta_mb']:>9.0f}"
            f"{r['p50_ms']:>8.2f}{r['p95_ms']:>8.2f}{r['recall@10']:>10.3f}"
        )
    out = OUT.with_name(f"vector_index_{args.n}{'_shared' if args.shared_spread else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
