"""PostgreSQL + pgvector against SQLite + FAISS: dense search latency and recall, and SciFact
retrieval quality on both backends with the same defaults.

Vectors: synthetic clustered 384-d vectors (as bench_vector_index.py), loaded into a
namespace's `vectors` table with binary COPY and indexed afterwards by HNSW (pgvector
defaults m=16, ef_construction=64; parallel build, maintenance_work_mem 6GB), searched through
`PgVectorIndex` (ef_search = max(40, 2k)) and at other ef_search values, against
`FaissVectorIndex` exact (flat); recall@10 is against exact search. Filtered searches restrict
to a random 1% and 10% of the ids, as a metadata filter does, on both backends (exact on
both), checking each returns a full top 10. Inserts into the built graph go through
`PgVectorIndex.add`. A build that exceeds --build-timeout-s is stopped and reported with the
progress it had made. SciFact: `contextd eval beir` on each backend, in one data directory so
the second run reuses the embedding cache. Without --store a throwaway server is started with
pgserver, with --shared-buffers.

    python benchmarks/bench_postgres.py --sizes 10000,100000
    python benchmarks/bench_postgres.py --sizes 1000000 --queries 100 --out out/pg_1m.json
    python benchmarks/bench_postgres.py --sizes 0 --scifact ../shared/data/beir-scifact
    python benchmarks/bench_postgres.py --batch --sizes 10000,100000 --build-pairs 16:64,32:128

--batch: 32 queries answered by one `PgVectorIndex.search_many` against 32 `search` calls
(each its own pooled transaction, as an item-by-item batch searches) and against the 32
statements sent in one psycopg pipeline, at k 10 and k 200 (the default retrieval depth);
ms per query and speedup, medians over --rounds. At the --build-n size, each (m,
ef_construction) of --build-pairs is built through `contextd.store.postgres.hnsw.rebuild`
(CREATE INDEX CONCURRENTLY, the operator's path), with build time and recall@10 against exact
at each --build-ef value.
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


def configure_server(server, shared_buffers: str) -> None:
    """Give the throwaway server the memory a vector workload is deployed with: its default
    128 MB of shared buffers cannot hold a 1M-vector HNSW graph (needs a restart)."""
    server.psql(f"ALTER SYSTEM SET shared_buffers = '{shared_buffers}'")
    server.psql("ALTER SYSTEM SET max_parallel_maintenance_workers = 2")
    server.psql("ALTER SYSTEM SET max_worker_processes = 8")


def load_vectors(catalog, name: str, data: np.ndarray, *, m: int, ef_construction: int,
                 build_timeout_s: float) -> tuple[object, str, dict]:
    """A namespace holding `data` (ids 1..n): COPY (binary) into its `vectors` table with the
    HNSW index dropped, then the index built once over every row (as a bulk load would)."""
    from psycopg import sql

    from contextd.store.postgres.vectors import PgVectorIndex

    ns = catalog.open(name, dim=data.shape[1], model_id="bench")
    s = sql.Identifier(ns.schema)
    timings: dict = {}
    started = time.perf_counter()
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
    timings["copy_s"] = time.perf_counter() - started
    progress = BuildProgress(catalog.db.url)
    progress.start()
    started = time.perf_counter()
    try:
        with catalog.db.connection() as conn:
            conn.execute("SET maintenance_work_mem = '6GB'")
            conn.execute("SET max_parallel_maintenance_workers = 2")
            conn.execute(f"SET statement_timeout = '{int(build_timeout_s)}s'")
            conn.execute(sql.SQL(
                "CREATE INDEX ON {}.vectors USING hnsw (embedding vector_ip_ops) "
                "WITH (m = {}, ef_construction = {})").format(
                    s, sql.Literal(m), sql.Literal(ef_construction)))
        timings["build_s"] = time.perf_counter() - started
    except Exception as exc:  # the statement timeout: report how far the build got
        timings["build_s"] = None
        timings["build_error"] = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
        timings["build_stopped_after_s"] = time.perf_counter() - started
    finally:
        progress.stop()
    timings["build_progress"] = progress.samples
    with catalog.db.connection() as conn:
        timings["index_mb"] = conn.execute(
            "SELECT coalesce(sum(pg_relation_size(indexrelid)), 0) / 1048576.0 FROM "
            "pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON "
            "n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = 'vectors'",
            (ns.schema,)).fetchone()[0]
        timings["index_mb"] = float(timings["index_mb"])
    return PgVectorIndex(catalog.db, ns.schema, data.shape[1]), ns.schema, timings


class BuildProgress:
    """Samples `pg_stat_progress_create_index` every 20 s from its own connection, so a
    build stopped by its timeout still says how many tuples it had placed."""

    def __init__(self, url: str, every_s: float = 20.0) -> None:
        import threading

        self.url = url
        self.every_s = every_s
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._started = time.perf_counter()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.wait(self.every_s):
                row = conn.execute("SELECT phase, tuples_done, tuples_total FROM "
                                   "pg_stat_progress_create_index").fetchone()
                if row:
                    sample = {"t_s": round(time.perf_counter() - self._started, 1),
                              "phase": row[0], "tuples_done": row[1], "tuples_total": row[2]}
                    self.samples.append(sample)
                    print("  build", sample, flush=True)


def ef_search_walk(db, schema: str, k: int, ef: int):
    """A search at a chosen `hnsw.ef_search` (the store picks max(40, 2k) itself)."""
    from psycopg import sql

    q_sql = sql.SQL("SELECT id FROM {}.vectors ORDER BY embedding <#> %s LIMIT %s").format(
        sql.Identifier(schema))

    def search(q: np.ndarray) -> np.ndarray:
        with db.connection() as conn:
            conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(ef),))
            rows = conn.execute(q_sql, (q, k)).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    return search


def exact_top(data: np.ndarray, qs: np.ndarray, k: int) -> np.ndarray:
    import faiss

    exact = faiss.IndexFlatIP(data.shape[1])
    exact.add(data)
    return exact.search(qs, k)[1] + 1  # ids start at 1


def filtered_rows(backend: str, n: int, search, qs: np.ndarray, data: np.ndarray,
                  fractions: list[float], queries: int, k: int = 10) -> list[dict]:
    """Searches restricted to a random `fraction` of the ids (what a metadata filter passes
    down): whether each returns a full top k, all allowed, and its recall against the exact
    top k of the allowed rows."""
    rng = np.random.default_rng(7)
    rows = []
    for fraction in fractions:
        allowed = np.sort(rng.choice(n, max(k, int(n * fraction)), replace=False) + 1)
        sub = data[allowed - 1]
        truth = allowed[exact_top(sub, qs[:queries], k) - 1]
        found, times = timed_searches(lambda q, a=allowed: search(q, k, a)[1], qs[:queries])
        rows.append({"n": n, "backend": backend, "filter_fraction": fraction,
                     "allowed": len(allowed), **times,
                     "full_top_k": all(len(f) == k for f in found),
                     "all_allowed": all(np.isin(f, allowed).all() for f in found),
                     "recall@10": recall_at_10(found, truth)})
        print(rows[-1], flush=True)
    return rows


def bench_flat(n: int, data: np.ndarray, qs: np.ndarray, truth: np.ndarray,
               args) -> tuple[list[dict], list[dict]]:
    """contextd's embedded index, exact (flat), freed before PostgreSQL loads the vectors."""
    rows: list[dict] = []
    started = time.perf_counter()
    flat = FaissVectorIndex(data.shape[1], approximate_above=10 * n)
    flat.add(np.arange(1, n + 1, dtype=np.int64), data, seq=1)
    flat_build_s = time.perf_counter() - started
    for k in (10, 100):
        found, times = timed_searches(lambda q, k=k: flat.search(q, k)[1][:10], qs)
        rows.append({"n": n, "backend": "faiss-flat", "k": k, "ef_search": None, **times,
                     "recall@10": recall_at_10(found, truth), "build_s": flat_build_s})
        print(rows[-1], flush=True)
    filtered = filtered_rows("faiss-flat", n, flat.search, qs, data, args.filter_fractions,
                             args.filtered_queries)
    return rows, filtered


def bench_vectors(catalog, n: int, queries: int, args, dim: int = 384) -> dict:
    data = embeddings_like(n, dim, 0)
    qs = embeddings_like(queries, dim, 0)
    truth = exact_top(data, qs, 10)
    rows, filtered = bench_flat(n, data, qs, truth, args)
    pg, schema, timings = load_vectors(catalog, f"bench-{n}", data, m=args.m,
                               ef_construction=args.ef_construction,
                               build_timeout_s=args.build_timeout_s)
    print({"n": n, **{k: v for k, v in timings.items() if k != "build_progress"}}, flush=True)
    if timings["build_s"] is not None:
        pg.search(qs[0], 10)  # a first query loads the graph into shared buffers
        for k in (10, 100):  # the store's own path: ef_search = max(40, 2k)
            found, times = timed_searches(lambda q, k=k: pg.search(q, k)[1][:10], qs)
            rows.append({"n": n, "backend": "pgvector-hnsw", "k": k,
                         "ef_search": max(40, 2 * k), **times,
                         "recall@10": recall_at_10(found, truth), "build_s": timings["build_s"]})
            print(rows[-1], flush=True)
        for ef in args.ef_sweep:
            found, times = timed_searches(ef_search_walk(catalog.db, schema, 10, ef), qs)
            rows.append({"n": n, "backend": "pgvector-hnsw", "k": 10, "ef_search": ef, **times,
                         "recall@10": recall_at_10(found, truth), "build_s": timings["build_s"]})
            print(rows[-1], flush=True)
        # Inserts into the built graph, as live upserts do (the store's executemany path).
        more = embeddings_like(args.inserts, dim, 1)
        started = time.perf_counter()
        for start in range(0, args.inserts, 100):
            ids = np.arange(n + 1 + start, n + 1 + min(start + 100, args.inserts))
            pg.add(ids, more[start:start + 100], seq=2)
        timings["insert_per_s"] = args.inserts / (time.perf_counter() - started)
        print({"n": n, "insert_per_s": timings["insert_per_s"]}, flush=True)
    # Filtered searches are exact whether or not the graph exists.
    filtered += filtered_rows("pgvector-exact", n, pg.search, qs, data, args.filter_fractions,
                              args.filtered_queries)
    return {"rows": rows, "filtered": filtered, "pg": {"n": n, "m": args.m,
            "ef_construction": args.ef_construction, **timings}}


def pipelined(db, schema: str, k: int, ef: int):
    """The rows' walks as separate statements in one psycopg pipeline (one transaction)."""
    from psycopg import sql

    q_sql = sql.SQL("SELECT id, embedding <#> %s FROM {}.vectors ORDER BY embedding <#> %s "
                    "LIMIT %s").format(sql.Identifier(schema))

    def search(qs: np.ndarray) -> list[list[int]]:
        with db.connection() as conn:
            conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(ef),))
            with conn.pipeline():
                curs = [conn.execute(q_sql, (q, q, k)) for q in qs]
            return [[r[0] for r in c.fetchall()] for c in curs]

    return search


def batch_rows(pg, n: int, qs: np.ndarray, args) -> list[dict]:
    """ms per query of 32 queries: search_many, a loop of search, and a pipeline."""
    rows = []
    groups = [qs[i:i + args.batch_size] for i in range(0, len(qs), args.batch_size)]
    groups = [g for g in groups if len(g) == args.batch_size]
    for k in (10, 200):
        ef = pg.params.ef_search_for(k)
        pipe = pipelined(pg.db, pg.schema, k, ef)
        ways = {"loop of search": lambda g, k=k: [pg.search(q, k)[1] for q in g],
                "search_many": lambda g, k=k: [ids for _, ids in pg.search_many(g, k)],
                "pipeline": pipe}
        for way in ways.values():  # warm: the graph in shared buffers, plans cached
            way(groups[0])
        times: dict[str, list[float]] = {name: [] for name in ways}
        same = True
        for r in range(args.rounds):
            g = groups[r % len(groups)]
            found = {}
            for name in (list(ways) if r % 2 == 0 else list(ways)[::-1]):  # alternate order
                started = time.perf_counter()
                found[name] = ways[name](g)
                times[name].append((time.perf_counter() - started) * 1e3 / len(g))
            same &= all(list(a) == list(b) for a, b in zip(found["loop of search"],
                                                           found["search_many"], strict=True))
        loop = float(np.median(times["loop of search"]))
        for name, ms in times.items():
            med = float(np.median(ms))
            rows.append({"n": n, "k": k, "ef_search": ef, "way": name,
                         "ms_per_query": med, "p95_ms_per_query": float(np.percentile(ms, 95)),
                         "speedup_vs_loop": loop / med, "same_ids_as_loop": same})
            print(rows[-1], flush=True)
    return rows


def bench_batch(catalog, n: int, args, dim: int = 384) -> dict:
    from contextd.store.postgres.hnsw import HnswParams, rebuild
    from contextd.store.postgres.vectors import PgVectorIndex

    data = embeddings_like(n, dim, 0)
    qs = embeddings_like(args.batch_size * 8, dim, 0)  # seed 0: the corpus's topics
    m, efc = args.build_pairs[0]
    _, schema, timings = load_vectors(catalog, f"bench-{n}", data, m=m, ef_construction=efc,
                                      build_timeout_s=args.build_timeout_s)
    pg = PgVectorIndex(catalog.db, schema, dim, params=HnswParams(m, efc))
    print({"n": n, "m": m, "ef_construction": efc,
           **{k: v for k, v in timings.items() if k != "build_progress"}}, flush=True)
    out: dict = {"batch": batch_rows(pg, n, qs, args), "builds": []}
    if n != args.build_n:
        return out
    truth = exact_top(data, qs, 10)
    for i, (m, efc) in enumerate(args.build_pairs):
        if i == 0:
            built = {"build_s": timings["build_s"], "how": "CREATE INDEX after COPY"}
        else:
            report = rebuild(catalog.db.url, f"bench-{n}", HnswParams(m, efc),
                             maintenance_work_mem="6GB")
            built = {"build_s": report["seconds"], "how": "rebuild (CREATE INDEX CONCURRENTLY)"}
        for ef in args.build_ef:
            found, times = timed_searches(ef_search_walk(catalog.db, schema, 10, ef), qs)
            out["builds"].append({"n": n, "m": m, "ef_construction": efc, **built,
                                  "ef_search": ef, **times,
                                  "recall@10": recall_at_10(found, truth)})
            print(out["builds"][-1], flush=True)
    return out


def pairs(text: str) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in (p.split(":") for p in text.split(",") if p)]


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


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="postgresql:// URL (default: start pgserver)")
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--m", type=int, default=16, help="HNSW m (pgvector's default)")
    parser.add_argument("--ef-construction", type=int, default=64)
    parser.add_argument("--ef-sweep", type=lambda t: [int(x) for x in t.split(",") if x],
                        default=[100], help="extra hnsw.ef_search values at k = 10")
    parser.add_argument("--filter-fractions", type=floats, default=[0.01, 0.1])
    parser.add_argument("--filtered-queries", type=int, default=50)
    parser.add_argument("--inserts", type=int, default=1000,
                        help="vectors inserted into the built graph, 100 per statement")
    parser.add_argument("--build-timeout-s", type=float, default=1800)
    parser.add_argument("--shared-buffers", default="4GB",
                        help="for the pgserver started here (restarted once to apply it)")
    parser.add_argument("--batch", action="store_true",
                        help="search_many against a loop of search, and builds per --build-pairs")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--build-pairs", type=pairs, default=[(16, 64), (32, 128)],
                        help="m:ef_construction,... (the first also serves the batch runs)")
    parser.add_argument("--build-n", type=int, default=100_000)
    parser.add_argument("--build-ef", type=lambda t: [int(x) for x in t.split(",") if x],
                        default=[40, 200])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--scifact", type=Path, help="a BEIR folder to score on both backends")
    parser.add_argument("--data-dir", type=Path, help="for --scifact (default: a temp dir)")
    args = parser.parse_args()

    server = root = None
    store = args.store
    if store is None:
        import pgserver

        root = tempfile.mkdtemp(prefix="ctxpg")
        server = pgserver.get_server(root, cleanup_mode="stop")
        configure_server(server, args.shared_buffers)
        server.cleanup()  # stops it; the next handle starts it with the new settings
        server = pgserver.get_server(root, cleanup_mode="stop")
        store = server.get_uri()
    from contextd.store.postgres.database import Database
    from contextd.store.postgres.namespace import PostgresCatalog

    out: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "vectors": [],
                 "filtered": [], "pg": [], "scifact": []}
    try:
        catalog = PostgresCatalog(Database(store))
        with catalog.db.connection() as conn:
            out["server"] = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in (
                "server_version", "shared_buffers", "max_parallel_maintenance_workers")}
            out["server"]["pgvector"] = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]
        print(out["server"], flush=True)
        if args.batch:
            out["batch"], out["builds"] = [], []
        for n in [int(s) for s in args.sizes.split(",") if int(s) > 0]:
            if args.batch:
                result = bench_batch(catalog, n, args)
                out["batch"] += result["batch"]
                out["builds"] += result["builds"]
                catalog.delete(f"bench-{n}")
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(out, indent=2))
                continue
            result = bench_vectors(catalog, n, args.queries, args)
            for key in ("rows", "filtered"):
                out["vectors" if key == "rows" else key] += result[key]
            out["pg"].append(result["pg"])
            catalog.delete(f"bench-{n}")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(out, indent=2))  # kept if a later size fails
        catalog.close()
        for r in out.get("batch", []):
            print(f"{r['n']:>8} k {r['k']:>3} ef {r['ef_search']:>4} {r['way']:<16}"
                  f"{r['ms_per_query']:>8.3f} ms/query  x{r['speedup_vs_loop']:.2f}")
        for r in out.get("builds", []):
            print(f"{r['n']:>8} m {r['m']:>3} efc {r['ef_construction']:>4} build "
                  f"{r['build_s']:>7.1f} s  ef {r['ef_search']:>4} p50 {r['p50_ms']:.2f} ms "
                  f"recall@10 {r['recall@10']:.3f}")
        print(f"{'n':>8} {'backend':<14}{'k':>4}{'ef':>5}{'p50 ms':>8}{'p95 ms':>8}"
              f"{'recall@10':>10}{'build s':>9}")
        for r in out["vectors"]:
            print(f"{r['n']:>8} {r['backend']:<14}{r['k']:>4}{r['ef_search'] or '-':>5}"
                  f"{r['p50_ms']:>8.2f}{r['p95_ms']:>8.2f}{r['recall@10']:>10.3f}"
                  f"{r['build_s']:>9.1f}")
        for r in out["pg"]:
            print({k: v for k, v in r.items() if k != "build_progress"})
        if args.scifact:
            data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="ctx-scifact"))
            out["scifact"] = bench_scifact(store, args.scifact, data_dir)
    finally:
        if server is not None:
            server.cleanup()
            shutil.rmtree(root, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
