"""The PostgreSQL store's HNSW index: batched search equal to single searches, the build
parameters from the settings, their validation, and rebuilding an index while it serves."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from pydantic import ValidationError

from contextd import Engine, Settings
from contextd.cli import main
from contextd.embedding import HashEmbedder
from contextd.errors import Conflict, NamespaceNotFound
from contextd.store.postgres.database import Database
from contextd.store.postgres.hnsw import (
    REBUILD_LOCK_BASE,
    HnswParams,
    check_params,
    hnsw_indexes,
    rebuild,
)
from contextd.store.postgres.namespace import PostgresCatalog, PostgresNamespace

DIM = 16
N = 3000


def clustered(n: int, seed: int) -> np.ndarray:
    """Unit vectors around 20 centres, as embeddings of a few topics are."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).standard_normal((20, DIM))
    v = centres[rng.integers(0, 20, n)] + 0.5 * rng.standard_normal((n, DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def catalog(postgres_url: str) -> Iterator[PostgresCatalog]:
    catalog = PostgresCatalog(Database(postgres_url), HnswParams(m=8, ef_construction=32))
    yield catalog
    catalog.close()


@pytest.fixture
def ns(catalog: PostgresCatalog) -> PostgresNamespace:
    ns = catalog.open("vectors", dim=DIM, model_id="m")
    assert ns is not None
    ns.index.add(np.arange(1, N + 1), clustered(N, 1), seq=1)
    with catalog.db.connection() as conn:
        conn.execute(f"ANALYZE {ns.schema}.vectors")
    return ns


def reloptions(url: str, schema: str) -> list[tuple[str, list[str] | None, bool]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT c.relname, c.reloptions, i.indisvalid FROM pg_index i JOIN pg_class c ON "
            "c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam JOIN pg_class t ON "
            "t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace WHERE "
            "n.nspname = %s AND t.relname = 'vectors' AND a.amname = 'hnsw'",
            (schema,)).fetchall()


def walk_alone(ns: PostgresNamespace, q: np.ndarray, k: int, ef: int) -> list[int]:
    """One HNSW walk in plain SQL, as a single ORDER BY ... LIMIT k query runs it."""
    with ns.db.connection() as conn:
        conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(ef),))
        return [r[0] for r in conn.execute(
            f"SELECT id FROM {ns.schema}.vectors ORDER BY embedding <#> %s LIMIT %s",
            (q, k))]


@pytest.mark.parametrize("k", [1, 10, 60, 1200, N + 5])
def test_search_many_gives_each_row_what_search_gives_it(ns: PostgresNamespace, k: int) -> None:
    queries = clustered(24, 2)
    rng = np.random.default_rng(3)
    for allowed in (None, np.sort(rng.choice(np.arange(1, N + 1), 150, replace=False)),
                    np.array([7, 8, 9])):
        found = ns.index.search_many(queries, k, allowed)
        assert len(found) == len(queries)
        for q, (scores, ids) in zip(queries, found, strict=True):
            alone_scores, alone_ids = ns.index.search(q, k, allowed)
            assert ids.tolist() == alone_ids.tolist()
            assert scores.tolist() == alone_scores.tolist()
            expected = min(k, N if allowed is None else len(allowed))
            assert len(ids) == expected and len(set(ids.tolist())) == expected
            if allowed is not None:
                assert set(ids.tolist()) <= set(allowed.tolist())
            # Scores are the inner products, best first.
            stored = clustered(N, 1)[ids - 1]
            np.testing.assert_allclose(scores, stored @ q, rtol=1e-5, atol=1e-5)
            assert np.all(np.diff(scores) <= 1e-6)


def test_a_batched_walk_is_the_walk_of_each_row_alone(ns: PostgresNamespace) -> None:
    queries = clustered(16, 4)
    for k in (5, 30):
        ef = ns.index.params.ef_search_for(k)
        found = ns.index.search_many(queries, k)
        assert [ids.tolist() for _, ids in found] == [walk_alone(ns, q, k, ef)
                                                       for q in queries]


def test_search_many_edges(ns: PostgresNamespace) -> None:
    assert ns.index.search_many(np.empty((0, DIM), np.float32), 5) == []
    none = ns.index.search_many(clustered(3, 5), 0)
    assert [len(ids) for _, ids in none] == [0, 0, 0]
    empty = ns.index.search_many(clustered(2, 5), 5, np.array([], np.int64))
    assert [len(ids) for _, ids in empty] == [0, 0]
    # The same vector twice in a batch gets the same answer twice.
    q = clustered(1, 6)
    a, b = ns.index.search_many(np.vstack([q, q]), 10)
    assert a[1].tolist() == b[1].tolist()


def test_the_batched_walk_uses_the_hnsw_index(ns: PostgresNamespace) -> None:
    from psycopg import sql

    from contextd.store.postgres.vectors import _WALK

    with ns.db.connection() as conn:
        plan = "\n".join(r[0] for r in conn.execute(
            sql.SQL("EXPLAIN " + _WALK).format(s=sql.Identifier(ns.schema)),
            (list(clustered(4, 7)), 10)))
    assert "Nested Loop" in plan
    index = hnsw_indexes_names(ns)[0]
    assert f"Index Scan using {index}" in plan and "Order By: (embedding <#> q.v)" in plan


def hnsw_indexes_names(ns: PostgresNamespace) -> list[str]:
    with ns.db.connection() as conn:
        return [b.name for b in hnsw_indexes(conn, ns.schema)]


def test_the_settings_build_a_new_namespaces_index(postgres_url: str, tmp_path: Path) -> None:
    settings = Settings(embedder="hash", store=postgres_url, batch_wait_ms=0, hnsw_m=24,
                        hnsw_ef_construction=80, hnsw_ef_search=60)
    with Engine(tmp_path / "a", settings, embedder=HashEmbedder()) as engine:
        engine.upsert_documents([{"id": "d1", "text": "Olive groves in the valley."}])
        info = engine.namespaces()[0]
        assert info.vector_index == "pgvector-hnsw"
        assert info.index_params == {"m": 24, "ef_construction": 80, "ef_search": 60}
        schema = engine.registry.get("default").schema
    [(name, options, valid)] = reloptions(postgres_url, schema)
    assert sorted(options) == ["ef_construction=80", "m=24"] and valid
    # Another replica configured otherwise opens it as it is, and builds new ones its way.
    other = Settings(embedder="hash", store=postgres_url, batch_wait_ms=0)
    with Engine(tmp_path / "b", other, embedder=HashEmbedder()) as engine:
        assert engine.search("olive", top_k=1).hits[0].id == "d1"
        engine.upsert_documents([{"id": "d2", "text": "Barley fields."}], namespace="plain")
        by_name = {i.name: i.index_params for i in engine.namespaces()}
    assert by_name == {"default": {"m": 24, "ef_construction": 80, "ef_search": 40},
                       "plain": {"m": 16, "ef_construction": 64, "ef_search": 40}}
    assert reloptions(postgres_url, schema) == [(name, options, True)]


def test_an_embedded_namespace_reports_no_index_params(tmp_path: Path) -> None:
    with Engine(tmp_path, Settings(embedder="hash", batch_wait_ms=0),
                embedder=HashEmbedder()) as engine:
        engine.upsert_documents([{"id": "d1", "text": "Olive groves."}])
        assert engine.namespaces()[0].index_params is None


@pytest.mark.parametrize(("values", "message"), [
    ({"hnsw_m": 1}, "hnsw_m 1 is out of range: pgvector accepts 2 to 100"),
    ({"hnsw_m": 101, "hnsw_ef_construction": 400}, "hnsw_m 101 is out of range"),
    ({"hnsw_ef_construction": 2000}, "hnsw_ef_construction 2000 is out of range: pgvector "
     "accepts 4 to 1000"),
    ({"hnsw_m": 32, "hnsw_ef_construction": 40}, "hnsw_ef_construction 40 is less than 2 x "
     "hnsw_m (64)"),
    ({"hnsw_ef_search": 0}, "hnsw_ef_search 0 is out of range: pgvector accepts 1 to 1000"),
    ({"hnsw_ef_search": 1001}, "hnsw_ef_search 1001 is out of range"),
])
def test_invalid_hnsw_settings_are_refused_with_the_range(values: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings(**values)
    env = {f"CONTEXTD_{k.upper()}": str(v) for k, v in values.items()}
    with pytest.raises(ValidationError, match="pgvector"):
        Settings.from_env(env)
    with pytest.raises(ValueError, match="pgvector"):
        check_params(values.get("hnsw_m", 16), values.get("hnsw_ef_construction", 64),
                     values.get("hnsw_ef_search", 40))


def test_the_limits_themselves_are_accepted() -> None:
    for m, efc, ef in ((2, 4, 1), (100, 200, 1000), (100, 1000, 40)):
        assert Settings(hnsw_m=m, hnsw_ef_construction=efc, hnsw_ef_search=ef).hnsw_m == m


def test_reindex_refuses_bad_parameters_and_a_store_less_setup(
        postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = ["--data-dir", str(tmp_path)]
    assert main(["namespaces", "reindex", "default", *d]) == 2
    assert "give --store postgresql://" in capsys.readouterr().err
    store = ["--store", postgres_url]
    assert main(["namespaces", "reindex", "default", "--m", "40", "--ef-construction",
                 "64", *d, *store]) == 2
    assert "hnsw_ef_construction 64 is less than 2 x hnsw_m (80)" in capsys.readouterr().err
    assert main(["namespaces", "reindex", "missing", *d, *store]) == 2
    assert "namespace 'missing' does not exist" in capsys.readouterr().err


def recall(ns: PostgresNamespace, queries: np.ndarray, k: int) -> float:
    data = clustered(N, 1)
    hits = 0
    for q, (_, ids) in zip(queries, ns.index.search_many(queries, k), strict=True):
        truth = set((np.argsort(-(data @ q), kind="stable")[:k] + 1).tolist())
        hits += len(truth & set(ids.tolist()))
    return hits / (k * len(queries))


def test_rebuild_changes_the_parameters_while_searches_go_on(
        ns: PostgresNamespace, postgres_url: str) -> None:
    queries = clustered(20, 8)
    before = recall(ns, queries, 10)
    assert before > 0.8
    [(old_name, options, _)] = reloptions(postgres_url, ns.schema)
    assert sorted(options) == ["ef_construction=32", "m=8"]

    failures: list[str] = []
    stop = threading.Event()

    def search_meanwhile() -> None:
        while not stop.is_set():
            for _, ids in ns.index.search_many(queries[:4], 10):
                if len(ids) != 10:
                    failures.append(f"{len(ids)} hits")

    searcher = threading.Thread(target=search_meanwhile)
    searcher.start()
    try:
        report = rebuild(postgres_url, "vectors", HnswParams(m=24, ef_construction=100))
    finally:
        stop.set()
        searcher.join()
    assert not failures
    assert report["built"] and report["index"] == "vectors_hnsw_m24_efc100"
    assert report["dropped"] == [old_name]
    [(name, options, valid)] = reloptions(postgres_url, ns.schema)
    assert name == "vectors_hnsw_m24_efc100" and valid
    assert sorted(options) == ["ef_construction=100", "m=24"]
    assert recall(ns, queries, 10) >= before
    assert ns.info()["index_params"] == {"m": 24, "ef_construction": 100, "ef_search": 40}
    # Writes after the rebuild go into the new graph and are found.
    new = clustered(1, 9)
    ns.index.add(np.array([N + 1]), new, seq=2)
    assert ns.index.search(new[0], 1)[1].tolist() == [N + 1]

    # Idempotent: the same parameters again build nothing; --force rebuilds in place.
    again = rebuild(postgres_url, "vectors", HnswParams(m=24, ef_construction=100))
    assert not again["built"] and again["dropped"] == []
    forced = rebuild(postgres_url, "vectors", HnswParams(m=24, ef_construction=100),
                     force=True)
    assert forced["built"] and forced["index"] == name
    assert reloptions(postgres_url, ns.schema) == [(name, options, True)]
    assert recall(ns, queries, 10) >= before


def test_rebuild_clears_what_an_interrupted_one_left(ns: PostgresNamespace,
                                                     postgres_url: str) -> None:
    [(old_name, _, _)] = reloptions(postgres_url, ns.schema)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        # An index marked invalid, as a failed CREATE INDEX CONCURRENTLY leaves one.
        conn.execute(f"CREATE INDEX leftover ON {ns.schema}.vectors USING hnsw "
                     "(embedding vector_ip_ops)")
        conn.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = %s::regclass",
                     (f"{ns.schema}.leftover",))
    report = rebuild(postgres_url, "vectors", HnswParams(m=8, ef_construction=32))
    assert report["dropped_invalid"] == ["leftover"] and not report["built"]
    assert [r[0] for r in reloptions(postgres_url, ns.schema)] == [old_name]


def test_one_rebuild_at_a_time(ns: PostgresNamespace, catalog: PostgresCatalog,
                               postgres_url: str) -> None:
    with catalog.db.connection() as conn:
        ns_id = conn.execute("SELECT id FROM contextd.namespaces WHERE name = 'vectors'"
                             ).fetchone()[0]
    with psycopg.connect(postgres_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (REBUILD_LOCK_BASE + ns_id,))
        with pytest.raises(Conflict, match="already running"):
            rebuild(postgres_url, "vectors", HnswParams(m=12, ef_construction=48))
    # The namespace itself stays usable, and opening it never waited on that lock.
    assert catalog.open("vectors", dim=DIM, model_id="m") is not None
    with pytest.raises(NamespaceNotFound):
        rebuild(postgres_url, "absent", HnswParams())


def test_reindex_command(ns: PostgresNamespace, postgres_url: str, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    import json

    args = ["namespaces", "reindex", "vectors", "--store", postgres_url, "--data-dir",
            str(tmp_path), "--m", "12", "--ef-construction", "48",
            "--maintenance-work-mem", "64MB"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["built"] and report["index"] == "vectors_hnsw_m12_efc48"
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["built"] is False


def test_a_batch_on_postgresql_searches_each_group_in_one_call(
        postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from contextd.store.postgres.vectors import PgVectorIndex

    docs = [{"id": f"note-{i}", "text": f"Note {i} on refunds, parcels and shipping times.",
             "metadata": {"team": "support" if i % 2 else "sales"}} for i in range(12)]
    settings = Settings(embedder="hash", store=postgres_url, batch_wait_ms=0)
    with Engine(tmp_path, settings, embedder=HashEmbedder()) as engine:
        engine.upsert_documents(docs)
        requests = [{"query": q, "max_tokens": 600} for q in
                    ("refund window", "shipping time", "vitamin d", "parcels")]
        requests += [{"query": "refunds", "max_tokens": 600, "filters": {"team": "support"}},
                     {"query": "shipping", "max_tokens": 600, "filters": {"team": "support"}},
                     {"query": "parcels", "max_tokens": 600, "filters": {"team": "nobody"}}]
        sizes: list[int] = []
        search_many = PgVectorIndex.search_many

        def counted(index, queries, k, allowed=None):
            sizes.append(len(np.reshape(queries, (-1, index.dim))))
            return search_many(index, queries, k, allowed)

        monkeypatch.setattr(PgVectorIndex, "search_many", counted)
        results = engine.assemble_batch(requests)
        # One call for the unfiltered queries, one for the filtered; none for an empty filter.
        assert sorted(sizes) == [2, 4]
        assert {d.id for d in results[4].documents} <= {d["id"] for d in docs[1::2]}
        assert results[6].documents == []
        for request, result in zip(requests, results, strict=True):
            single = engine.assemble(**request, cache=False)
            assert (result.model_dump(exclude={"assembly_id", "cache", "timings_ms"})
                    == single.model_dump(exclude={"assembly_id", "cache", "timings_ms"}))


def test_migrate_builds_the_namespaces_it_creates_with_the_settings(
        postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "source"
    with Engine(source, Settings(embedder="hash", batch_wait_ms=0),
                embedder=HashEmbedder()) as engine:
        engine.upsert_documents([{"id": "d1", "text": "Olive groves in the valley."}])
    monkeypatch.setenv("CONTEXTD_HNSW_M", "20")
    monkeypatch.setenv("CONTEXTD_HNSW_EF_CONSTRUCTION", "70")
    assert main(["migrate", "--from", str(source), "--to", postgres_url]) == 0
    capsys.readouterr()
    with psycopg.connect(postgres_url) as conn:
        ns_id = conn.execute("SELECT id FROM contextd.namespaces WHERE name = 'default'"
                             ).fetchone()[0]
    [(_, options, valid)] = reloptions(postgres_url, f"ns_{ns_id}")
    assert sorted(options) == ["ef_construction=70", "m=20"] and valid
