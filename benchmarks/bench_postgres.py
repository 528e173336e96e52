"""PostgreSQL + pgvector against SQLite + FAISS: dense search latency and recall, and SciFact
retrieval quality on both backends with the same defaults.

Vectors: synthetic clustered 384-d vectors (as bench_vector_index.py), loaded into a
namespace's `vectors` table with COPY and indexed by HNSW (pgvector defaults m=16,
ef_construction=64), searched through `PgVectorIndex` (ef_search = max(40, 2k)) against
`FaissVectorIndex` exact (flat); recall@10 is against exact search. SciFact: `contextd eval
beir` on each backend, in one data directory so the second run reuses the embedding cache.
Without --store a throwaway server is started with pgserver.

    python benchmarks/bench_postgres.py --sizes 10000,100000
    python benchmarks/bench_postgres.py --sizes 0 --scifact ../shared/data/beir-scifact
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_vector_index import embeddings_like, recall_at_10, timed_searches  # noqa: E402

from contextd.store.vector_index import FaissVectorIndex  # noqa: E402

OUT = Path(__file__).parent / "out" / "postgres.json"


def load_vectors(catalog, name: str, data: np.ndarray) -> tuple[object, float]:
    """A namespace holding `data` (ids 1..n) with its HNSW index built after the load."""
    from psycopg import sql

    from contextd.store.postgres.vectors import PgVectorIndex

    ns = catalog.open(name, dim=data.shape[1], model_id="bench")
    s = sql.Identifier(ns.schema)
    with catalog.db.connection() as conn:
        index_name = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = 'vectors' "
            "AND indexdef LIKE '%%hnsw%%'", (ns.schema,)).fetchone()[0]
        conn.execute(sql.SQL("DROP INDEX {}.{}").format(s, sql.Identifier(index_name)))
        with conn.cursor() as cur, cur.copy(sql.SQL(
                "COPY {}.vectors (id, embedding) FROM STDIN WITH (FORMAT BINARY)").format(s)
                ) as copy:
            copy.set_types(["int8", "vector"])
            for i, v in enumerate(data, start=1):
                copy.write_row((i, v))
    started = time.perf_counter()
    with catalog.db.connection() as conn:
        conn.execute("SET maintenance_work_mem = '2GB'")
        conn.execute(sql.SQL("CREATE INDEX ON {}.vectors USING hnsw (embedding "
                             "vector_ip_ops)").format(s))
    return PgVectorIndex(catalog.db, ns.schema, data.shape[1]), time.perf_counter() - started


def bench_vectors(catalog, n: int, queries: int, dim: int = 384) -> list[dict]:
    data = embeddings_like(n, dim, 0)
    qs = embeddings_like(queries, dim, 0)
    truth = np.argsort(-(qs @ data.T), axis=1)[:, :10] + 1  # ids start at 1
    rows = []
    flat = FaissVectorIndex(dim, approximate_above=10 * n)
    flat.add(np.arange(1, n + 1, dtype=np.int64), data, seq=1)
    for k in (10, 100):
        found, times = timed_searches(lambda q, k=k: flat.search(q, k)[1][:10], qs)
        rows.append({"n": n, "backend": "faiss-flat", "k": k, **times,
                     "recall@10": recall_at_10(found, truth), "build_s": 0.0})
    pg, build_s = load_vectors(catalog, f"bench-{n}", data)
    for k in (10, 100):
        pg.search(qs[0], k)  # a first query loads the graph into shared buffers
        found, times = timed_searches(lambda q, k=k: pg.search(q, k)[1][:10], qs)
        rows.append({"n": n, "backend": "pgvector-hnsw", "k": k, **times,
                     "recall@10": recall_at_10(found, truth), "build_s": build_s})
    return rows


def bench_scifact(store: str, dataset: Path, data_dir: Path) -> list[dict]:
    from contextd import Engine, Settings
    from contextd.eval.beir_runner import run_beir

    rows = []
    for backend, url in (("sqlite+faiss", None), ("postgresql+pgvector", store)):
        with Engine(settings=Settings(data_dir=data_dir, store=url)) as engine:
            report = run_beir(engine, dataset, mode="hybrid")
        rows.append({"backend": backend, **report["metrics"], "query_ms": report["query_ms"],
                     "ingest_s": report["ingest"]["seconds"],
                     "embedded": report["ingest"]["embedded"]})
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="postgresql:// URL (default: start pgserver)")
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--scifact", type=Path, help="a BEIR folder to score on both backends")
    parser.add_argument("--data-dir", type=Path, help="for --scifact (default: a temp dir)")
    args = parser.parse_args()

    server = root = None
    store = args.store
    if store is None:
        import pgserver

        root = tempfile.mkdtemp(prefix="ctxpg")
        server = pgserver.get_server(root, cleanup_mode="stop")
        store = server.get_uri()
    from contextd.store.postgres.database import Database
    from contextd.store.postgres.namespace import PostgresCatalog

    out: dict = {"vectors": [], "scifact": []}
    try:
        catalog = PostgresCatalog(Database(store))
        for n in [int(s) for s in args.sizes.split(",") if int(s) > 0]:
            out["vectors"] += bench_vectors(catalog, n, args.queries)
            catalog.delete(f"bench-{n}")
        catalog.close()
        print(f"{'n':>8} {'backend':<14}{'k':>4}{'p50 ms':>8}{'p95 ms':>8}{'recall@10':>10}"
              f"{'build s':>9}")
        for r in out["vectors"]:
            print(f"{r['n']:>8} {r['backend']:<14}{r['k']:>4}{r['p50_ms']:>8.2f}"
                  f"{r['p95_ms']:>8.2f}{r['recall@10']:>10.3f}{r['build_s']:>9.1f}")
        if args.scifact:
            data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="ctx-scifact"))
            out["scifact"] = bench_scifact(store, args.scifact, data_dir)
    finally:
        if server is not None:
            server.cleanup()
            shutil.rmtree(root, ignore_errors=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
