"""Replicas on one PostgreSQL database: each `Engine` has its own data directory (its
embedding cache) and shares nothing with the others but the database, as stateless replicas
behind a load balancer would."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from contextd import Engine, Settings
from contextd.embedding import HashEmbedder
from contextd.errors import NamespaceNotFound

DOCS = [{"id": f"d{i}", "text": f"Topic {i}: the {word} grows in the valley.",
         "metadata": {"kind": "even" if i % 2 == 0 else "odd", "n": i}}
        for i, word in enumerate(["olive", "barley", "lavender", "walnut", "saffron"])]


@pytest.fixture
def replica(postgres_url: str, tmp_path: Path) -> Callable[..., Engine]:
    engines: list[Engine] = []

    def make(**settings: object) -> Engine:
        settings.setdefault("batch_wait_ms", 0)
        engine = Engine(tmp_path / f"replica-{len(engines)}",
                        Settings(embedder="hash", store=postgres_url, **settings),
                        embedder=HashEmbedder())
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


def ids(engine: Engine, query: str, mode: str, **kw: object) -> list[str]:
    return [h.id for h in engine.search(query, mode=mode, top_k=10, **kw).hits]


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_a_write_on_one_replica_is_read_by_the_next_request_on_another(
        replica: Callable[..., Engine], mode: str) -> None:
    a, b = replica(), replica()
    a.upsert_documents(DOCS)
    assert "d4" in ids(b, "saffron valley", mode)
    b.upsert_documents([{"id": "new", "text": "Quinoa terraces in the Andes mountains."}])
    assert ids(a, "quinoa terraces andes", mode)[0] == "new"
    a.delete_document("d4")
    assert "d4" not in ids(b, "saffron valley", mode)
    assert b.get_document("new").chunks == 1


def test_filters_apply_inside_the_search_and_top_k_is_full(
        replica: Callable[..., Engine]) -> None:
    a = replica()
    docs = [{"id": f"x{i}", "text": f"Grove note {i} about olives and oil.",
             "metadata": {"shelf": i % 5}} for i in range(60)]
    a.upsert_documents(docs)
    for mode in ("dense", "lexical", "hybrid"):
        hits = a.search("olive oil grove", mode=mode, top_k=10, filters={"shelf": 3}).hits
        assert len(hits) == 10, mode  # 12 documents match; none lost to a post-filter
        assert {h.metadata["shelf"] for h in hits} == {3}
    hits = a.search("olive", mode="dense", top_k=5, filters={"shelf": {"$in": [1, 2]}}).hits
    assert len(hits) == 5 and {h.metadata["shelf"] for h in hits} <= {1, 2}


def test_namespaces_are_shared_and_isolated(replica: Callable[..., Engine]) -> None:
    a, b = replica(), replica()
    a.upsert_documents(DOCS[:2], namespace="tenant-a")
    b.upsert_documents(DOCS[2:], namespace="tenant-b")
    assert {n.name for n in b.namespaces()} >= {"tenant-a", "tenant-b"}
    assert set(ids(b, "valley", "lexical", namespace="tenant-a")) == {"d0", "d1"}
    assert set(ids(a, "valley", "dense", namespace="tenant-b")) == {"d2", "d3", "d4"}
    a.delete_namespace("tenant-b")
    with pytest.raises(NamespaceNotFound):
        b.search("valley", namespace="tenant-b")
    assert set(ids(b, "valley", "hybrid", namespace="tenant-a")) == {"d0", "d1"}


def test_sessions_are_shared(replica: Callable[..., Engine]) -> None:
    a, b = replica(), replica()
    a.append_messages("s1", [{"role": "user", "content": "My dog Rex is brown."}])
    b.append_messages("s1", [{"role": "assistant", "content": "Rex sounds lovely."}])
    assert [t.content for t in a.get_session("s1").turns] == [
        "My dog Rex is brown.", "Rex sounds lovely."]
    assert [s.session_id for s in b.list_sessions()] == ["s1"]
    response = b.assemble(query="What colour is Rex?", session_id="s1", max_tokens=500)
    assert any("Rex is brown" in (m.content or "") for m in response.messages)
    assert a.delete_session("s1")
    assert b.list_sessions() == []


def test_concurrent_appends_from_two_replicas_neither_duplicate_nor_reorder(
        replica: Callable[..., Engine]) -> None:
    engines = [replica(), replica()]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            start.wait()
            for i in range(15):
                engines[n].append_messages("shared", [
                    {"role": "user", "content": f"replica {n} message {i} part a"},
                    {"role": "user", "content": f"replica {n} message {i} part b"}])
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    turns = engines[0].get_session("shared").turns
    contents = [t.content for t in turns]
    assert len(contents) == 60 and len(set(contents)) == 60
    assert len({t.id for t in turns}) == 60
    for n in (0, 1):
        own = [c for c in contents if c.startswith(f"replica {n} ")]
        assert own == [f"replica {n} message {i} part {p}" for i in range(15) for p in "ab"]
    # Each append's two turns stay adjacent: appends are never interleaved.
    for first, second in zip(contents[::2], contents[1::2], strict=True):
        assert first.endswith("part a") and second == first[:-1] + "b"


def test_compaction_runs_once_when_both_replicas_see_the_overflow(
        replica: Callable[..., Engine]) -> None:
    folds: list[tuple[int, int]] = []
    lock = threading.Lock()
    engines = [replica(session_window_tokens=120) for _ in range(2)]
    for engine in engines:
        def record(state, evicted, summary, previous, budget):  # noqa: ANN001
            with lock:
                folds.append((evicted[0].seq, evicted[-1].seq))
        engine.memory.on_evict = record
    start = threading.Barrier(2)

    def writer(n: int) -> None:
        start.wait()
        for i in range(12):
            engines[n].append_messages("long", [
                {"role": "user", "content": f"Replica {n} tells fact {i}: the {i}th olive "
                                            "tree was planted beside the old stone wall."}])

    threads = [threading.Thread(target=writer, args=(n,)) for n in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert folds, "the session outgrew its window, so some append compacted it"
    # Every folded turn was folded by exactly one compaction, in order, with no gap.
    spans = sorted(folds)
    assert spans[0][0] == 1
    for (_, last), (first, _) in zip(spans, spans[1:], strict=False):
        assert first == last + 1
    session = engines[1].get_session("long")
    assert session.summary_through == spans[-1][1]


def test_the_store_setting_is_a_postgresql_url() -> None:
    with pytest.raises(ValueError, match="not a PostgreSQL URL: use postgresql://"):
        Settings(store="mysql://db/contextd")
    assert Settings.from_env({"CONTEXTD_STORE": ""}).store is None
    url = "postgresql://u@db:5432/contextd"
    assert Settings.from_env({"CONTEXTD_STORE": url}).store == url


def test_the_cli_reads_the_database_named_by_store(
        replica: Callable[..., Engine], postgres_url: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from contextd.cli import main

    monkeypatch.setenv("CONTEXTD_EMBEDDER", "hash")  # the embedder the namespace was made with
    replica().upsert_documents(DOCS, namespace="shared")
    assert main(["namespaces", "--store", postgres_url, "--data-dir",
                 str(tmp_path / "cli")]) == 0
    assert "shared  5 documents, 5 chunks, 0 sessions" in capsys.readouterr().out


def test_a_replica_cache_never_serves_what_another_replica_changed(
        replica: Callable[..., Engine]) -> None:
    a, b = replica(), replica()
    a.upsert_documents(DOCS)

    def used(engine: Engine) -> set[str]:
        response = engine.assemble(query="quince orchard", max_tokens=600)
        return {d.id for d in response.documents}

    assert "quince" not in used(b)
    assert "quince" not in used(b)  # now in b's cache
    a.upsert_documents([{"id": "quince", "text": "The quince orchard blooms in April."}])
    assert "quince" in used(b)


def test_an_unreachable_store_is_a_503_naming_it_without_its_password(tmp_path: Path) -> None:
    from contextd.errors import Unavailable

    url = f"postgresql://app:s3cret@/contextd?host={tmp_path}&port=1"
    with pytest.raises(Unavailable, match="cannot reach the store at postgresql://app:\\*\\*\\*@"
                       ) as caught:
        Engine(tmp_path / "d", Settings(embedder="hash", store=url), embedder=HashEmbedder())
    assert "s3cret" not in caught.value.detail


def test_a_process_opens_at_most_store_pool_size_connections(
        replica: Callable[..., Engine], postgres_url: str) -> None:
    import psycopg

    engine = replica(store_pool_size=2)
    engine.upsert_documents(DOCS)
    errors: list[BaseException] = []

    def search() -> None:
        try:
            for _ in range(5):
                assert ids(engine, "olive valley", "hybrid")
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=search) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with psycopg.connect(postgres_url) as conn:
        opened = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                              "current_database() AND pid <> pg_backend_pid()").fetchone()[0]
    assert engine.registry.catalog is not None
    assert engine.registry.catalog.db.pool.max_size == 2
    assert 1 <= opened <= 2
