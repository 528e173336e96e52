"""End to end through `Engine` with the hash embedder."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

from contextd import (
    BudgetTooSmall,
    DocumentNotFound,
    DocumentTooLarge,
    InvalidNamespace,
    InvalidRequest,
    NamespaceNotFound,
    SessionNotFound,
)
from contextd.embedding import HashEmbedder
from contextd.store.embedding_cache import EmbeddingCache
from contextd.tokens import count_messages, get_counter

DOCS = [
    {"id": "faiss", "title": "FAISS", "text": "FAISS is a library for efficient similarity "
     "search of dense vectors. It was developed at Meta. It supports flat and IVF indexes.",
     "metadata": {"kind": "library", "year": 2017}},
    {"id": "fts5", "title": "SQLite FTS5", "text": "FTS5 is an SQLite virtual table module "
     "that provides full-text search. Results can be ranked with bm25.",
     "metadata": {"kind": "library", "year": 2015}},
    {"id": "rrf", "title": "Reciprocal rank fusion", "text": "Reciprocal rank fusion combines "
     "ranked lists by summing one over k plus rank. It needs no score calibration.",
     "metadata": {"kind": "method", "year": 2009}},
]


def test_assemble_end_to_end(engine) -> None:
    engine.upsert_documents(DOCS)
    response = engine.assemble(query="How does reciprocal rank fusion combine lists?",
                               system="Answer from the context.", max_tokens=400)
    roles = [m.role for m in response.messages]
    assert roles[0] == "system" and roles[-1] == "user"
    assert response.messages[-1].content == "How does reciprocal rank fusion combine lists?"
    assert response.documents[0].id == "rrf"
    context = response.messages[-2].content
    assert "[1] rrf (chunk 0)" in context
    plain = [m.model_dump(exclude_none=True) for m in response.messages]
    assert response.usage.total == count_messages(plain, get_counter())
    assert response.usage.total <= 400
    assert set(response.timings_ms) >= {"budget", "embed", "retrieval", "ranking", "packing",
                                        "total"}


def test_restart_gives_same_results(make_engine, tmp_path) -> None:
    first = make_engine(tmp_path / "d")
    first.upsert_documents(DOCS)
    before = first.search("vector similarity search").hits
    first.close()
    second = make_engine(tmp_path / "d")
    after = second.search("vector similarity search").hits
    assert [(h.id, h.chunk) for h in after] == [(h.id, h.chunk) for h in before]
    assert second.get_document("faiss").metadata == {"kind": "library", "year": 2017}


def test_deleted_text_is_never_returned(engine) -> None:
    engine.upsert_documents(DOCS)
    engine.delete_document("faiss")
    for mode in ("hybrid", "dense", "lexical"):
        hits = engine.search("FAISS similarity search dense vectors", mode=mode).hits
        assert all(h.id != "faiss" for h in hits)
    response = engine.assemble(query="What is FAISS?", max_tokens=500)
    assert all(d.id != "faiss" for d in response.documents)
    with pytest.raises(DocumentNotFound):
        engine.get_document("faiss")
    with pytest.raises(DocumentNotFound):
        engine.delete_document("faiss")


def test_upsert_replaces_chunks_and_skips_unchanged(engine) -> None:
    assert engine.upsert_documents(DOCS).upserted == 3
    again = engine.upsert_documents(DOCS)
    assert (again.upserted, again.unchanged, again.embedded) == (0, 3, 0)
    changed = {**DOCS[0], "text": "FAISS now talks about quantisation only."}
    engine.upsert_documents([changed])
    hits = engine.search("quantisation", mode="lexical").hits
    assert [h.id for h in hits] == ["faiss"]
    assert engine.search("developed at Meta", mode="lexical").hits == []
    assert engine.namespaces()[0].chunks == 3


def test_embedding_cache_avoids_recomputation_across_namespaces(engine, monkeypatch) -> None:
    engine.upsert_documents(DOCS, namespace="a")
    computed: list[str] = []
    embed = engine.embedder.embed
    monkeypatch.setattr(engine.embedder, "embed", lambda texts: computed.extend(texts) or
                        embed(texts))
    result = engine.upsert_documents(DOCS, namespace="b")
    assert computed == []  # reused from namespace a's vectors...
    assert (result.embedded, result.cached) == (3, 0)  # ...without telling namespace b


def test_deleting_the_snapshot_rebuilds_it(make_engine, tmp_path) -> None:
    first = make_engine(tmp_path / "d")
    first.upsert_documents(DOCS)
    before = [(h.id, round(h.score, 6)) for h in first.search("bm25 ranking").hits]
    first.close()
    snapshot = tmp_path / "d" / "namespaces" / "default" / "vectors.faiss"
    assert snapshot.exists()
    snapshot.unlink()
    second = make_engine(tmp_path / "d")
    assert [(h.id, round(h.score, 6)) for h in second.search("bm25 ranking").hits] == before
    assert snapshot.exists()


def test_snapshot_catches_up_with_writes_after_it(make_engine, tmp_path) -> None:
    first = make_engine(tmp_path / "d")
    first.upsert_documents(DOCS[:2])
    first.registry.get("default").save_snapshot()
    first.upsert_documents(DOCS[2:])
    first.delete_document("faiss")
    # Simulate a crash: the snapshot on disk predates the last writes.
    first.registry._open.clear()
    second = make_engine(tmp_path / "d")
    ids = {h.id for h in second.search("fusion of ranked lists", mode="dense", top_k=10).hits}
    assert ids == {"fts5", "rrf"}


def test_corrupt_snapshot_is_rebuilt(make_engine, tmp_path) -> None:
    first = make_engine(tmp_path / "d")
    first.upsert_documents(DOCS)
    first.close()
    snapshot = tmp_path / "d" / "namespaces" / "default" / "vectors.faiss"
    snapshot.write_bytes(b"not a faiss index")
    second = make_engine(tmp_path / "d")
    assert len(second.search("library", mode="dense").hits) == 3


def test_filters_apply_before_the_cut(engine) -> None:
    docs = [{"id": f"d{i}", "text": f"Common words about search number {i}.",
             "metadata": {"group": "rare" if i == 37 else "common"}} for i in range(60)]
    engine.upsert_documents(docs)
    hits = engine.search("common words about search", top_k=5,
                         filters={"group": "rare"}).hits
    assert [h.id for h in hits] == ["d37"]
    hits = engine.search("search", top_k=100, filters={"group": {"$ne": "rare"}}).hits
    assert len(hits) == 59


def test_namespaces_are_isolated(engine) -> None:
    engine.upsert_documents(DOCS[:1], namespace="tenant-a")
    engine.upsert_documents(DOCS[1:], namespace="tenant-b")
    assert {h.id for h in engine.search("search", namespace="tenant-a").hits} == {"faiss"}
    with pytest.raises(DocumentNotFound):
        engine.get_document("faiss", namespace="tenant-b")
    engine.delete_namespace("tenant-a")
    with pytest.raises(NamespaceNotFound):
        engine.search("search", namespace="tenant-a")
    assert [n.name for n in engine.namespaces()] == ["tenant-b"]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda e: e.assemble(query="", max_tokens=100), InvalidRequest, "send a query"),
        (lambda e: e.assemble(query="x", max_tokens=100, namespace="nope"), NamespaceNotFound,
         "does not exist"),
        (lambda e: e.assemble(query="x", max_tokens=100, namespace="Bad Name!"),
         InvalidRequest, "namespace"),
        (lambda e: e.assemble(query="x"), InvalidRequest, "max_tokens"),
        (lambda e: e.assemble(query="x", max_tokens=5, system="long " * 50), BudgetTooSmall,
         "at least"),
        (lambda e: e.assemble(query="x", max_tokens="many"), InvalidRequest, "max_tokens"),
        (lambda e: e.assemble(query="x", max_tokens=100, session_id="ghost"), SessionNotFound,
         "ghost"),
        (lambda e: e.upsert_documents([{"id": "a", "text": "x" * 1_100_000}]),
         InvalidRequest, "text"),
        (lambda e: e.upsert_documents([{"id": "a", "text": "é" * 600_000}]),
         DocumentTooLarge, "bytes"),
        (lambda e: e.upsert_documents([{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]),
         InvalidRequest, "twice"),
        (lambda e: e.upsert_documents([{"id": "a", "text": 3}]), InvalidRequest, "text"),
        (lambda e: e.upsert_documents([], namespace="x"), InvalidRequest, "empty"),
        (lambda e: e.upsert_documents([{"id": "a", "text": "x"}], namespace="../etc"),
         InvalidNamespace, "namespace"),
        (lambda e: e.search("x", filters={"k": {"$regex": "a"}}), InvalidRequest, "operator"),
    ],
)
def test_bad_input_is_a_typed_error_that_says_what_to_change(engine, call, error, message):
    engine.upsert_documents(DOCS[:1])
    with pytest.raises(error, match=message):
        call(engine)


def test_failed_batch_leaves_store_unchanged(engine) -> None:
    engine.upsert_documents(DOCS[:1])
    with pytest.raises(InvalidRequest):
        engine.upsert_documents([DOCS[1], {"id": "bad id with spaces", "text": "x"}])
    assert [n.documents for n in engine.namespaces()] == [1]

    class Boom(RuntimeError):
        pass

    def explode(texts):
        raise Boom("model crashed")

    engine.embedder.embed = explode
    with pytest.raises(Boom):
        engine.upsert_documents([DOCS[2]])
    assert [n.documents for n in engine.namespaces()] == [1]


def test_budget_error_states_the_minimum(engine) -> None:
    with pytest.raises(BudgetTooSmall) as info:
        engine.assemble(query="a question " * 20, system="be brief", max_tokens=10)
    minimum = info.value.extra["minimum_budget"]
    response = engine.assemble(query="a question " * 20, system="be brief", max_tokens=minimum)
    assert response.usage.total == minimum


def test_shutil_removed_namespace_dir_is_unknown(make_engine, tmp_path) -> None:
    engine = make_engine(tmp_path / "d")
    engine.upsert_documents(DOCS, namespace="gone")
    engine.close()
    shutil.rmtree(tmp_path / "d" / "namespaces" / "gone")
    with pytest.raises(NamespaceNotFound):
        make_engine(tmp_path / "d").search("x", namespace="gone")


class _RecordingEmbedder(HashEmbedder):
    def __init__(self) -> None:
        super().__init__(dim=32)
        self.batches: list[list[str]] = []

    def embed(self, texts):
        self.batches.append(list(texts))
        return super().embed(texts)


def test_embedding_cache_batches_similar_lengths_and_keeps_input_order(tmp_path) -> None:
    cache = EmbeddingCache(tmp_path / "cache.sqlite3")
    texts = [" ".join(["word"] * n) + f" {n}" for n in (3, 40, 7, 25, 1, 33, 12)]
    texts.append(texts[0])  # a repeat is embedded once
    embedder = _RecordingEmbedder()
    vectors, embedded, cached = cache.embed(embedder, texts, batch_size=3, namespace="a")
    assert (embedded, cached) == (7, 1)
    sizes = [len(t) for batch in embedder.batches for t in batch]
    assert sizes == sorted(sizes, reverse=True)  # batches hold neighbours in length
    assert [len(b) for b in embedder.batches] == [3, 3, 1]
    # Row i is the vector of texts[i], whatever order the batches ran in.
    np.testing.assert_allclose(vectors, HashEmbedder(dim=32).embed(texts), rtol=1e-6)
    cache.close()


def test_a_namespace_past_the_threshold_serves_approximate_search_with_measured_recall(
    make_engine, tmp_path
) -> None:
    docs = [{"id": f"d{i}", "text": f"Topic {i % 7} note {i}: " + " ".join(
        f"w{(i * 31 + j) % 97}" for j in range(12))} for i in range(400)]
    first = make_engine(tmp_path / "d", approximate_above=300, approximate_recall=0.99)
    first.upsert_documents(docs)
    info = first.namespaces()[0]
    assert info.vector_index == "ivf"
    assert info.index_recall is not None and info.index_recall >= 0.99
    hits = [h.id for h in first.search("note 123 w57", mode="dense", top_k=5).hits]
    first.close()
    # The measured recall and the nprobe behind it survive a restart with the snapshot.
    second = make_engine(tmp_path / "d", approximate_above=300, approximate_recall=0.99)
    assert second.namespaces()[0].index_recall == info.index_recall
    assert [h.id for h in second.search("note 123 w57", mode="dense", top_k=5).hits] == hits


class _SlowEmbedder(HashEmbedder):
    """Takes 0.2 s per call, and records when each call ran."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[float, float]] = []

    def embed(self, texts):
        began = time.monotonic()
        time.sleep(0.2)
        vectors = super().embed(texts)
        self.calls.append((began, time.monotonic()))
        return vectors


def test_lexical_search_runs_while_the_query_embeds(make_engine, tmp_path) -> None:
    from contextd import Engine, Settings

    slow = _SlowEmbedder()
    engine = Engine(tmp_path / "overlap", Settings(embedder="hash", batch_wait_ms=1),
                    embedder=slow)
    engine.upsert_documents(DOCS)
    started: list[float] = []
    lexical = engine.retriever.lexical

    def spy(*args, **kwargs):
        started.append(time.monotonic())
        return lexical(*args, **kwargs)

    engine.retriever.lexical = spy  # type: ignore[method-assign]
    slow.calls.clear()
    overlapped = engine.assemble(query="How does bm25 rank lexical matches?", max_tokens=800)
    engine.close()
    (query_embedding,) = slow.calls
    assert len(started) == 1 and started[0] < query_embedding[1]  # bm25 did not wait for it
    assert {"lexical", "embed", "retrieval"} <= set(overlapped.timings_ms)

    # The same request with the two halves in sequence picks the same documents.
    sequential = make_engine(tmp_path / "sequential", batch_wait_ms=0)
    sequential.upsert_documents(DOCS)
    again = sequential.assemble(query="How does bm25 rank lexical matches?", max_tokens=800)
    assert [(d.id, d.chunk) for d in again.documents] == \
        [(d.id, d.chunk) for d in overlapped.documents]
    assert overlapped.documents and again.messages == overlapped.messages
