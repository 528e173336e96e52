"""Chunk places remembered per namespace: each id read from the store once, the memory
bounded, and a replaced document shown from its new chunks even when a search still names
the old ones."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from contextd import Engine
from contextd.store.places import ChunkMemo


class CountingStore:
    def __init__(self, existing: set[int]) -> None:
        self.existing = existing
        self.asked: list[list[int]] = []
        self.lock = threading.Lock()

    def chunk_places(self, ids: list[int]) -> dict[int, tuple[str, int]]:
        with self.lock:
            self.asked.append(sorted(ids))
        return {i: (f"d{i // 10}", i % 10) for i in ids if i in self.existing}


def test_each_existing_id_is_read_once() -> None:
    store = CountingStore(set(range(100)))
    places = ChunkMemo(store.chunk_places)
    assert places([1, 2, 500]) == {1: ("d0", 1), 2: ("d0", 2)}
    assert places([2, 13, 500]) == {2: ("d0", 2), 13: ("d1", 3)}
    assert places([1, 13]) == {1: ("d0", 1), 13: ("d1", 3)}
    assert store.asked == [[1, 2, 500], [13, 500]]  # an unknown id is asked about again
    assert len(places) == 3


def test_memory_is_bounded_and_keeps_the_latest_reads() -> None:
    store = CountingStore(set(range(1_000)))
    places = ChunkMemo(store.chunk_places, limit=100)
    for start in range(0, 1_000, 30):
        places(range(start, min(start + 30, 1_000)))
        assert len(places) <= 100
    store.asked.clear()
    assert places([999, 990]) == {999: ("d99", 9), 990: ("d99", 0)}
    assert store.asked == []  # the newest ids stayed
    places([0])
    assert store.asked == [[0]]  # the oldest were forgotten and are read again
    with pytest.raises(ValueError, match="at least 1"):
        ChunkMemo(store.chunk_places, limit=0)


def test_concurrent_readers_get_the_same_places() -> None:
    store = CountingStore(set(range(5_000)))
    places = ChunkMemo(store.chunk_places, limit=1_000)
    expected = store.chunk_places(list(range(5_000)))

    def read(offset: int) -> bool:
        return all(places(range(s, s + 50)) == {i: expected[i] for i in range(s, s + 50)}
                   for s in range(offset, 4_950, 170))

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(read, range(0, 40, 10)))
    assert len(places) <= 1_000


def test_a_replaced_document_shows_its_new_chunks(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()
    old_text = "Tidal power stations turn the tides into electricity. " * 40
    engine.upsert_documents([{"id": "tide", "text": old_text},
                             {"id": "wind", "text": "Wind farms turn wind into electricity."}])
    ns = engine.registry.get("default")
    old_ids = sorted(cid for cid, doc in
                     ns.store.chunk_documents(ns.store.chunk_ids().tolist()).items()
                     if doc == "tide")
    assert len(old_ids) > 1
    assert set(ns.chunk_places(old_ids)) == set(old_ids)  # remembered
    new_text = "Tidal lagoons store the tide behind a wall and release it. " * 40
    engine.upsert_documents([{"id": "tide", "text": new_text}])
    new_ids = sorted(cid for cid, doc in
                     ns.store.chunk_documents(ns.store.chunk_ids().tolist()).items()
                     if doc == "tide")
    assert min(new_ids) > max(old_ids)
    # A search that still names the old chunks (an index a write behind) next to the new.
    stale = [(cid, 5.0) for cid in old_ids] + [(cid, 4.0) for cid in new_ids]
    found = engine.retriever.retrieve(ns, None, "tidal", k=5, mode="lexical", lexical=stale)
    assert [c.chunk.doc_id for c in found] == ["tide"]
    assert all(p.id in new_ids for p in found[0].shown)
    assert "lagoons" in found[0].text and "stations" not in found[0].text
    # Only the old chunks named: their rows are gone, so nothing stale is shown.
    assert engine.retriever.retrieve(ns, None, "tidal", k=5, mode="lexical",
                                     lexical=stale[:len(old_ids)]) == []


def test_memory_bounded_by_weight() -> None:
    memo = ChunkMemo(lambda ids: {i: "x" * i for i in ids}, limit=100, weigh=len)
    memo([10, 20, 30])
    assert memo.weight == 60 and len(memo) == 3
    memo([40, 50])  # 150 > 100: the oldest go until at most half the limit is held
    assert memo.weight <= 100
    assert memo([50]) == {50: "x" * 50}
    assert memo([500]) == {500: "x" * 500}  # heavier than the limit: answered, not held
    assert memo.weight <= 100 and 500 not in memo._known


def test_rows_are_read_once_and_a_deleted_chunk_is_never_shown(
        make_engine: Callable[..., Engine], tmp_path) -> None:
    engine = make_engine(tmp_path / "shared")
    engine.upsert_documents([{"id": "tide", "text": "Tidal power turns tides into power."},
                             {"id": "wind", "text": "Wind farms turn wind into power."},
                             {"id": "sun", "text": "Solar panels turn light into power."}])
    ns = engine.registry.get("default")
    ids = ns.store.chunk_ids().tolist()
    statements: list[str] = []
    ns.store.reader().set_trace_callback(statements.append)  # this thread's reader

    def row_reads() -> int:
        return sum("c.embedding" in s for s in statements)

    first = ns.chunk_rows(ids)
    assert {row.doc_id for row in first.values()} == {"tide", "wind", "sun"}
    assert ns.chunk_rows(ids) == first
    assert row_reads() == 1  # the second call came from memory
    engine.delete_document("tide")
    left = ns.chunk_rows(ids)
    assert {row.doc_id for row in left.values()} == {"wind", "sun"}  # remembered, not shown
    assert row_reads() == 2  # only the forgotten chunk is asked for again (and is gone)
    # Another process (its own engine on the same directory) deletes one: the change log says.
    other = make_engine(tmp_path / "shared")
    other.delete_document("wind")
    assert {row.doc_id for row in ns.chunk_rows(ids).values()} == {"sun"}
    ns.store.reader().set_trace_callback(None)
    found = engine.search("tidal wind power", top_k=5).hits
    assert [h.id for h in found] == ["sun"]


def test_a_read_begun_before_a_forget_keeps_nothing() -> None:
    started, gate = threading.Event(), threading.Event()

    def read(ids: list[int]) -> dict[int, str]:
        started.set()
        gate.wait(5)
        return {i: f"old {i}" for i in ids}

    memo: ChunkMemo[str] = ChunkMemo(read)
    with ThreadPoolExecutor(1) as pool:
        reading = pool.submit(memo, [1])
        assert started.wait(5)
        memo.forget([1])  # the chunk changed while the read was on its way
        gate.set()
        assert reading.result() == {1: "old 1"}  # answered...
    assert len(memo) == 0  # ...but not kept
    memo.forget()
    assert memo.weight == 0
