"""MicroBatcher: concurrent query embeddings share forward passes, and each caller gets its
own row, or the batch's error."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from contextd import Engine, Unavailable
from contextd.batching import MicroBatcher

# Long enough that a batch only closes when it is full (or at close()): no timing in tests.
NEVER_MS = 60_000


class CountingEmbedder:
    """Row i of a batch is [int(text_i), batch size]; records every call."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail
        self.lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        with self.lock:
            self.calls.append(list(texts))
        if self.fail:
            raise ValueError("model exploded")
        return np.array([[float(t), float(len(texts))] for t in texts], dtype=np.float32)


def in_threads(n: int, work: Callable[[int], object]) -> list[object]:
    barrier = threading.Barrier(n)

    def run(i: int) -> object:
        barrier.wait()
        try:
            return work(i)
        except Exception as exc:  # noqa: BLE001 - returned for the assertions
            return exc

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def test_concurrent_submits_share_one_forward_pass() -> None:
    embedder = CountingEmbedder()
    batcher = MicroBatcher(embedder.embed, wait_ms=NEVER_MS, max_batch=8)
    results = in_threads(8, lambda i: batcher.submit(str(i)))
    batcher.close()
    assert len(embedder.calls) == 1 and sorted(embedder.calls[0], key=int) == \
        [str(i) for i in range(8)]
    for i, row in enumerate(results):
        assert isinstance(row, np.ndarray)
        assert row.tolist() == [float(i), 8.0]  # the caller's own row of the one batch
    assert (batcher.batches, batcher.texts) == (1, 8)


def test_batches_are_capped_at_max_batch() -> None:
    embedder = CountingEmbedder()
    batcher = MicroBatcher(embedder.embed, wait_ms=NEVER_MS, max_batch=4)
    futures = [batcher.submit_async(str(i)) for i in range(10)]
    batcher.close()  # the last, partial batch is flushed by close()
    assert [len(c) for c in embedder.calls] == [4, 4, 2]
    assert [f.result()[0] for f in futures] == [float(i) for i in range(10)]


def test_an_error_reaches_every_caller_of_the_batch() -> None:
    embedder = CountingEmbedder(fail=True)
    batcher = MicroBatcher(embedder.embed, wait_ms=NEVER_MS, max_batch=5)
    results = in_threads(5, lambda i: batcher.submit(str(i)))
    assert len(embedder.calls) == 1
    assert all(isinstance(r, ValueError) and "exploded" in str(r) for r in results)
    # The worker survives a failed batch.
    embedder.fail = False
    batcher._wait_s = 0.0
    assert batcher.submit("7").tolist() == [7.0, 1.0]
    batcher.close()


def test_close_is_clean_and_final() -> None:
    embedder = CountingEmbedder()
    batcher = MicroBatcher(embedder.embed, wait_ms=NEVER_MS, max_batch=64)
    pending = batcher.submit_async("3")
    batcher.close()
    assert pending.result(timeout=0).tolist() == [3.0, 1.0]  # drained, not dropped
    assert batcher._worker is not None and not batcher._worker.is_alive()
    with pytest.raises(Unavailable):
        batcher.submit("4")
    batcher.close()  # idempotent


def test_close_without_use_starts_no_thread() -> None:
    batcher = MicroBatcher(CountingEmbedder().embed)
    batcher.close()
    assert batcher._worker is None


def test_engine_batches_concurrent_searches(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine(batch_wait_ms=5, batch_max=6)
    assert engine.batcher is not None
    assert (engine.batcher._wait_s, engine.batcher._max_batch) == (0.005, 6)
    engine.batcher.close()
    # The same wiring with an unbounded wait, so the batch closes only when all six are in.
    engine.batcher = MicroBatcher(engine.embedder.embed, wait_ms=NEVER_MS, max_batch=6)
    engine.upsert_documents([{"id": f"d{i}", "text": f"topic {i} text"} for i in range(6)])
    results = in_threads(6, lambda i: engine.search(f"topic {i}", top_k=1, mode="dense"))
    assert engine.batcher.batches == 1 and engine.batcher.texts == 6
    assert [r.hits[0].id for r in results] == [f"d{i}" for i in range(6)]  # type: ignore


def test_engine_without_wait_does_not_batch(make_engine: Callable[..., Engine]) -> None:
    assert make_engine(batch_wait_ms=0).batcher is None


# ---------------------------------------------------------------- announced arrivals


def test_announced_lone_text_is_embedded_without_waiting() -> None:
    embedder = CountingEmbedder()
    batcher = MicroBatcher(embedder.embed, wait_ms=NEVER_MS, max_batch=8, announced=True)
    with batcher.expecting():
        # Nobody else is on the way: the batch closes at once, not after NEVER_MS.
        assert batcher.submit_async("1").result(timeout=30).tolist() == [1.0, 1.0]
    assert batcher._coming == 0
    batcher.close()


def test_batch_waits_for_an_announced_caller_then_shares_its_pass() -> None:
    embedder = CountingEmbedder()
    batcher = MicroBatcher(embedder.embed, wait_ms=NEVER_MS, max_batch=8, announced=True)
    arrived, go = threading.Event(), threading.Event()

    def late_caller() -> np.ndarray:
        with batcher.expecting():
            arrived.set()
            go.wait()
            return batcher.submit("2")

    with ThreadPoolExecutor(1) as pool:
        late = pool.submit(late_caller)
        arrived.wait()
        with batcher.expecting():
            early = batcher.submit_async("1")
            # The late caller is announced and has not submitted: the batch stays open.
            assert not early.done() and not embedder.calls
            go.set()
            assert early.result(timeout=30).tolist() == [1.0, 2.0]
        assert late.result(timeout=30).tolist() == [2.0, 2.0]
    assert embedder.calls == [["1", "2"]]
    batcher.close()


def test_an_announced_caller_leaving_without_a_text_ends_the_wait() -> None:
    embedder = CountingEmbedder()
    batcher = MicroBatcher(embedder.embed, wait_ms=NEVER_MS, max_batch=8, announced=True)
    arrived, leave = threading.Event(), threading.Event()

    def caller_without_query() -> None:  # a cache hit, or a lexical-only request
        with batcher.expecting(), batcher.expecting():  # nested: counted once
            arrived.set()
            leave.wait()

    with ThreadPoolExecutor(1) as pool:
        gone = pool.submit(caller_without_query)
        arrived.wait()
        early = batcher.submit_async("1")
        assert not early.done()
        leave.set()
        gone.result(timeout=30)
        assert early.result(timeout=30).tolist() == [1.0, 1.0]
    assert batcher._coming == 0 and embedder.calls == [["1"]]
    batcher.close()


def test_engine_embeds_a_lone_query_at_once(make_engine: Callable[..., Engine]) -> None:
    # The longest wait allowed: a search that waited for it would miss the timeout below.
    engine = make_engine(batch_wait_ms=1000)
    engine.upsert_documents([{"id": "d1", "text": "topic one text"}])
    with ThreadPoolExecutor(1) as pool:
        hits = pool.submit(engine.search, "topic one", top_k=1, mode="dense").result(timeout=0.9)
    assert hits.hits[0].id == "d1"
    assert engine.batcher is not None and engine.batcher._coming == 0
