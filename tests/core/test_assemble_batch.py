"""Batch assembly: in order, an error in its own place, one forward pass for the queries."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from contextd import (
    AssembleRequest,
    BudgetTooSmall,
    Engine,
    InvalidRequest,
    SessionNotFound,
    Settings,
)
from contextd.batch import DensePrefetch, LexicalPrefetch, SharedChunkReads
from contextd.embedding import HashEmbedder
from contextd.store.vector_index import FaissVectorIndex

DOCS = [
    {"id": "refunds", "text": "Refunds are issued within 14 days of a return to the store."},
    {"id": "shipping", "text": "Shipping takes 3 to 5 working days; express takes one day."},
    {"id": "vitamin", "text": "Vitamin D supports bone density in older adults."},
]


class CountingEmbedder(HashEmbedder):
    """The hash embedder, recording every call's texts."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return super().embed(texts)


@pytest.fixture
def counted(tmp_path: Path) -> tuple[Engine, CountingEmbedder]:
    embedder = CountingEmbedder()
    engine = Engine(tmp_path / "d", Settings(embedder="hash", batch_wait_ms=0),
                    embedder=embedder)
    engine.upsert_documents(DOCS)
    embedder.calls.clear()
    yield engine, embedder
    engine.close()


def content(response) -> dict:
    return response.model_dump(exclude={"assembly_id", "cache", "timings_ms"})


def test_results_come_in_order_and_equal_single_assemblies(
        counted: tuple[Engine, CountingEmbedder]) -> None:
    engine, _ = counted
    queries = ["refund window", "shipping time", "vitamin d and bones", "express delivery"]
    results = engine.assemble_batch([{"query": q, "max_tokens": 500} for q in queries])
    assert [r.messages[-1].content for r in results] == queries
    for query, result in zip(queries, results, strict=True):
        single = engine.assemble(query=query, max_tokens=500, cache=False)
        assert content(result) == content(single)


def test_the_batch_queries_are_embedded_in_one_forward_pass(
        counted: tuple[Engine, CountingEmbedder]) -> None:
    engine, embedder = counted
    queries = [f"question {i} about refunds and shipping" for i in range(8)]
    engine.assemble_batch([{"query": q, "max_tokens": 500} for q in [*queries, queries[0]]])
    assert embedder.calls == [queries]  # one call, each text once
    embedder.calls.clear()
    for query in queries[:3]:
        engine.assemble(query=query + "!", max_tokens=500, cache=False)
    assert len(embedder.calls) == 3  # the single path: one pass a query


def test_one_bad_item_does_not_fail_the_others(counted: tuple[Engine, CountingEmbedder]) -> None:
    engine, _ = counted
    results = engine.assemble_batch([
        {"query": "refund window", "max_tokens": 500},
        {"query": "refund window", "max_tokens": 2},          # too small a budget
        {"query": "shipping", "max_tokens": 500, "top_k": -1},  # invalid field
        {"query": "shipping", "session_id": "nobody", "max_tokens": 500},
        "not a request",
        {"query": "vitamin d", "max_tokens": 500},
    ])
    assert [type(r).__name__ for r in results] == [
        "AssembleResponse", "BudgetTooSmall", "InvalidRequest", "SessionNotFound",
        "InvalidRequest", "AssembleResponse"]
    assert isinstance(results[1], BudgetTooSmall) and "at least" in results[1].detail
    assert isinstance(results[3], SessionNotFound)
    assert "top_k" in results[2].detail


def test_an_item_sees_the_turns_an_earlier_item_stored(
        counted: tuple[Engine, CountingEmbedder]) -> None:
    engine, embedder = counted
    results = engine.assemble_batch([
        {"session_id": "s1", "max_tokens": 500,
         "messages": [{"role": "user", "content": "When is my refund due?"}]},
        {"session_id": "s1", "max_tokens": 500},  # its query is the turn stored just before
    ])
    assert results[0].messages[-1].content == "When is my refund due?"
    assert results[1].messages[-1].content == "When is my refund due?"
    assert content(results[1]) == content(results[0])
    # The first query was foreseen from the request; the second's came from the session.
    assert embedder.calls[0] == ["When is my refund due?"]


def test_the_batch_limit_is_a_422_that_says_the_limit(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine(batch_limit=3)
    with pytest.raises(InvalidRequest, match=r"at most 3 \(batch_limit\)"):
        engine.assemble_batch([{"query": "q", "max_tokens": 500}] * 4)
    assert len(engine.assemble_batch([{"query": "q", "max_tokens": 500}] * 3)) == 3


def test_items_are_in_the_batch_namespace(counted: tuple[Engine, CountingEmbedder]) -> None:
    engine, _ = counted
    results = engine.assemble_batch([{"query": "refund", "max_tokens": 500},
                                     {"query": "refund", "max_tokens": 500, "namespace": "x"}],
                                    namespace="default")
    assert results[0].namespace == "default"
    assert isinstance(results[1], InvalidRequest) and "leave namespace out" in results[1].detail


def test_a_batch_shares_the_cache_with_single_calls(
        counted: tuple[Engine, CountingEmbedder]) -> None:
    engine, _ = counted
    single = engine.assemble(query="refund window", max_tokens=500)
    results = engine.assemble_batch([{"query": "refund window", "max_tokens": 500},
                                     {"query": "refund window", "max_tokens": 500}])
    assert all(r.cache.hit and r.assembly_id == single.assembly_id for r in results)


def test_bm25_runs_ahead_for_the_batch_and_is_used_once(
        counted: tuple[Engine, CountingEmbedder], monkeypatch: pytest.MonkeyPatch) -> None:
    engine, _ = counted
    searched: list[str] = []
    search = engine.retriever.lexical

    def lexical(ns, query, k, filters=None):
        searched.append(query)
        return search(ns, query, k, filters)

    monkeypatch.setattr(engine.retriever, "lexical", lexical)
    queries = ["refund window", "shipping time", "vitamin d"]
    results = engine.assemble_batch([{"query": q, "max_tokens": 500} for q in queries])
    assert searched == queries  # ahead of the items, and not again by them
    for query, result in zip(queries, results, strict=True):
        assert content(result) == content(engine.assemble(query=query, max_tokens=500,
                                                          cache=False))


def test_a_prefetched_bm25_result_is_not_used_after_a_write(
        counted: tuple[Engine, CountingEmbedder]) -> None:
    engine, _ = counted
    req = AssembleRequest(query="parcel tracking", max_tokens=500)
    prefetch = LexicalPrefetch(engine, [(req, engine.pipeline)])
    engine.upsert_documents([{"id": "tracking", "text": "Parcel tracking links arrive by mail."}])
    ns = engine.registry.get("default")
    k = engine.ranker.pool_size(req.top_k)
    hits = prefetch.searcher(engine.retriever)(ns, "parcel tracking", k)
    assert hits == engine.retriever.lexical(ns, "parcel tracking", k)
    tracking = ns.store.chunk_documents([chunk for chunk, _ in hits])
    assert "tracking" in tracking.values()


MORE_DOCS = [{"id": f"note-{i}", "text": f"Note {i} on refunds, parcels and shipping times.",
              "metadata": {"team": "support" if i % 2 else "sales"}} for i in range(12)]


class SearchCounter:
    """Records FaissVectorIndex.search and search_many calls (their number of queries)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.single = 0
        self.many: list[int] = []
        search, search_many = FaissVectorIndex.search, FaissVectorIndex.search_many

        def counted_search(index, query, k, allowed=None):
            self.single += 1
            return search(index, query, k, allowed)

        def counted_many(index, queries, k, allowed=None):
            self.many.append(len(queries))
            return search_many(index, queries, k, allowed)

        monkeypatch.setattr(FaissVectorIndex, "search", counted_search)
        monkeypatch.setattr(FaissVectorIndex, "search_many", counted_many)


def test_the_batch_searches_faiss_once_and_its_items_equal_single_assemblies(
        counted: tuple[Engine, CountingEmbedder], monkeypatch: pytest.MonkeyPatch) -> None:
    engine, _ = counted
    engine.upsert_documents(MORE_DOCS)
    requests = [{"query": q, "max_tokens": 600} for q in
                ("refund window", "shipping time", "vitamin d", "parcels")]
    requests += [{"query": "refunds", "max_tokens": 600, "filters": {"team": "support"}},
                 {"query": "shipping", "max_tokens": 600, "filters": {"team": "support"}},
                 {"query": "parcels", "max_tokens": 600, "filters": {"team": "nobody"}}]
    searches = SearchCounter(monkeypatch)
    results = engine.assemble_batch(requests)
    # One call for the unfiltered queries, one for the filtered; none for an empty filter.
    assert sorted(searches.many) == [2, 4] and searches.single == 0
    assert {d.id for d in results[4].documents} <= {d["id"] for d in MORE_DOCS[1::2]}
    assert results[6].documents == []
    for request, result in zip(requests, results, strict=True):
        assert content(result) == content(engine.assemble(**request, cache=False))


def test_a_prefetched_faiss_result_is_not_used_after_a_write(
        counted: tuple[Engine, CountingEmbedder]) -> None:
    engine, _ = counted
    req = AssembleRequest(query="parcel tracking", max_tokens=500)
    prefetch = DensePrefetch([(req, engine.pipeline)])
    vector = engine.embedder.embed([req.query])[0]
    prefetch.add([req.query], vector[None, :])
    ns = engine.registry.get("default")
    k = engine.ranker.pool_size(req.top_k)
    search = prefetch.searcher(engine.retriever)
    assert prefetch.calls == 0  # searched by the first item that needs it
    assert search(ns, vector, k) == engine.retriever.dense(ns, vector, k)
    assert prefetch.calls == 1
    assert search(ns, vector + 0.5, k) is None  # another vector: the retriever searches
    engine.upsert_documents([{"id": "tracking", "text": "Parcel tracking links arrive by mail."}])
    assert search(ns, vector, k) is None
    hits = engine.retriever.dense(ns, vector, k)
    assert "tracking" in ns.store.chunk_documents([chunk for chunk, _ in hits]).values()


def test_shared_chunk_reads_read_each_chunk_once_and_see_writes(
        counted: tuple[Engine, CountingEmbedder], monkeypatch: pytest.MonkeyPatch) -> None:
    engine, _ = counted
    ns = engine.registry.get("default")
    read: list[list[int]] = []
    places = ns.chunk_places

    def counted_places(ids):
        read.append(sorted(ids))
        return places(ids)

    monkeypatch.setattr(ns, "chunk_places", counted_places)
    ids = sorted(ns.store.chunk_documents(ns.store.chunk_ids().tolist()))
    reads = SharedChunkReads()
    assert reads.places(ns, set(ids[:2])) == ns.store.chunk_places(ids[:2])
    assert reads.places(ns, {ids[1], ids[2], 999_999}) == ns.store.chunk_places(ids[1:3])
    assert read == [ids[:2], [ids[2], 999_999]]  # each id once, a missing one too
    row = reads.rows(ns, ids[:1])[ids[0]]
    assert row.text == ns.store.chunks(ids[:1])[ids[0]].text
    assert reads.rows(ns, ids[:1])[ids[0]] is row  # read once
    engine.delete_document(places([ids[0]])[ids[0]][0])
    reads.places(ns, {ids[0]})
    assert read[-1] == [ids[0]]  # the write moved the sequence: asked again
    assert reads.rows(ns, ids[:1]) == {}  # and the row, which decides what is shown, is gone


def test_an_item_of_another_profile_equals_its_single_assembly(
        make_engine: Callable[..., Engine]) -> None:
    engine = make_engine(profiles={"narrow": {"weight": 0, "retrieval_depth": 3,
                                              "title_weight": 0.0, "mmr_lambda": 0.3}})
    engine.upsert_documents(DOCS + MORE_DOCS)
    requests = [{"query": "refunds and parcels", "max_tokens": 800, "profile": profile}
                for profile in ("default", "narrow")]
    results = engine.assemble_batch(requests)
    assert [r.profile for r in results] == ["default", "narrow"]
    assert content(results[0]) != content(results[1])
    for request, result in zip(requests, results, strict=True):
        assert content(result) == content(engine.assemble(**request, cache=False))


class OneByOneEmbedder(HashEmbedder):
    """Hands its vectors out one at a time, last text first, through `embed_each`."""

    def __init__(self) -> None:
        super().__init__()
        self.delivered: list[str] = []

    def embed_each(self, texts: Sequence[str], deliver) -> None:
        matrix = self.embed(texts)
        for row in reversed(range(len(texts))):
            self.delivered.append(texts[row])
            deliver(np.array([row]), matrix[row:row + 1])


def test_items_start_as_their_vectors_arrive_and_equal_single_assemblies(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    embedder = OneByOneEmbedder()
    engine = Engine(tmp_path / "d", Settings(embedder="hash", batch_wait_ms=0),
                    embedder=embedder)
    try:
        engine.upsert_documents(DOCS + MORE_DOCS)
        searches = SearchCounter(monkeypatch)
        queries = ["refund window", "shipping time", "vitamin d"]
        results = engine.assemble_batch([{"query": q, "max_tokens": 500} for q in queries])
        assert embedder.delivered == queries[::-1]
        assert searches.many == [1, 1, 1] and searches.single == 0  # a search per arrival
        for query, result in zip(queries, results, strict=True):
            assert content(result) == content(engine.assemble(query=query, max_tokens=500,
                                                              cache=False))
    finally:
        engine.close()


def test_many_batches_reuse_the_engine_threads_and_connections(
        counted: tuple[Engine, CountingEmbedder]) -> None:
    engine, _ = counted
    ns = engine.registry.get("default")
    batch = [{"query": f"refund {i}", "max_tokens": 500} for i in range(4)]

    def state() -> tuple[int, int]:
        return threading.active_count(), len(ns.store._readers)

    engine.assemble_batch(batch)
    after_one = state()
    for _ in range(20):
        engine.assemble_batch(batch)
    assert state() == after_one
    names = {t.name for t in threading.enumerate()}
    engine.close()
    assert any(n.startswith("contextd-batch") for n in names)
    assert not any(t.name.startswith("contextd-batch") for t in threading.enumerate())
