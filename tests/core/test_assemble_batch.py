"""Batch assembly: in order, an error in its own place, one forward pass for the queries."""

from __future__ import annotations

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
from contextd.batch import LexicalPrefetch
from contextd.embedding import HashEmbedder

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
    prefetch = LexicalPrefetch(engine, [req])
    engine.upsert_documents([{"id": "tracking", "text": "Parcel tracking links arrive by mail."}])
    ns = engine.registry.get("default")
    k = engine.ranker.pool_size(req.top_k)
    hits = prefetch.search(ns, "parcel tracking", k)
    assert hits == engine.retriever.lexical(ns, "parcel tracking", k)
    tracking = ns.store.chunk_documents([chunk for chunk, _ in hits])
    assert "tracking" in tracking.values()
