"""Batch assembly: many assemble requests in one call, their query vectors in one forward pass.

Each request is validated and answered on its own, in order, so one bad item is an error in its
place and the others still run. Before the first item runs, the batch's queries go to the
embedder as one list on the engine's embedding thread, and while that forward pass runs the
caller's thread does the batch's bm25 searches. The embedder hands its vectors out batch by
batch (of similar lengths) as they are done; the items whose vectors they are start on the
engine's batch threads, so their searches, fusion, ranking and packing overlap the rest of the
forward pass, and the first of a group's items to search does the FAISS searches of the whole
group in one call. Items
without a session run in the order their vectors come, side by side; items with one run in
request order on the caller's thread, each after the turns the ones before it stored. A query
that turns out different from the one foreseen (an empty query whose last user message an
earlier item of the batch appended) is embedded and searched on its own, as usual; so is a
search whose documents changed since it ran.

    >>> results = assemble_batch(engine, [{"query": "a", "max_tokens": 500}], "default")
    ... # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from contextd.errors import ContextdError, InvalidRequest
from contextd.models import AssembleRequest
from contextd.protocols import Embedder
from contextd.store.protocols import NamespaceHandle
from contextd.store.records import ChunkRow
from contextd.validation import parse

if TYPE_CHECKING:
    from contextd.engine import Engine
    from contextd.models import AssembleResponse
    from contextd.pipeline import AssemblePipeline
    from contextd.profiles import Profile
    from contextd.retrieval.retriever import Retriever

class BatchWorkers:
    """The threads batches run on, owned by the engine and kept for its lifetime: one for the
    forward passes, one per core for the items. Threads made per batch would each open (and
    keep until the namespace closes) their own SQLite reader connections.

        >>> workers = BatchWorkers(threads=2)
        >>> workers.items.submit(sum, [1, 2]).result()
        3
        >>> workers.close()
    """

    def __init__(self, threads: int | None = None) -> None:
        self.embedding = ThreadPoolExecutor(1, thread_name_prefix="contextd-batch-embed")
        self.items = ThreadPoolExecutor(max(1, threads or os.cpu_count() or 1),
                                        thread_name_prefix="contextd-batch")

    def close(self) -> None:
        """Finish the work submitted, then stop the threads. Idempotent."""
        self.embedding.shutdown(wait=True)
        self.items.shutdown(wait=True)


def assemble_batch(engine: Engine, requests: Sequence[AssembleRequest | dict[str, Any]],
                   namespace: str | None) -> list[AssembleResponse | ContextdError]:
    """Each request's response or error, in order (see the module docstring)."""
    limit = engine.settings.batch_limit
    if isinstance(requests, (str, bytes, dict)) or not isinstance(requests, Sequence):
        raise InvalidRequest("requests must be a list of assemble requests")
    if len(requests) > limit:
        raise InvalidRequest(f"{len(requests)} requests in one batch: send at most {limit} "
                             "(batch_limit), or split them into several batches")
    parsed = [_parse_item(item, namespace) for item in requests]
    # Chosen once, before anything runs: the prefetches search as each item's profile does.
    chosen: dict[int, Profile[AssemblePipeline]] = {}
    results: list[AssembleResponse | ContextdError | None] = []
    for i, req in enumerate(parsed):
        if isinstance(req, AssembleRequest):
            try:
                chosen[i] = engine.profiles.choose(req)  # as a single assemble would
            except ContextdError as exc:
                parsed[i] = req = exc
        results.append(req if isinstance(req, ContextdError) else None)
    items = {i: (req, chosen[i].runner) for i, req in enumerate(parsed)
             if isinstance(req, AssembleRequest)}
    workers = engine.batch_workers
    dense = DensePrefetch(list(items.values()))
    vectors = BatchVectors(engine.embedder, [
        text for req, _ in items.values() if (text := foreseen_query(req)) is not None],
        run=workers.embedding.submit, ready=dense.add)
    embed = vectors.embedder(engine.embed_query_async)
    lexical = LexicalPrefetch(engine, list(items.values()))
    chunks = SharedChunkReads()

    def run(i: int) -> AssembleResponse | ContextdError:
        req, runner = items[i]
        try:
            with engine.registry.lease(req.namespace):
                response = runner.run(req, embed_query_async=embed,
                                      lexical_search=lexical.searcher(runner.retriever),
                                      dense_search=dense.searcher(runner.retriever),
                                      chunk_reads=chunks)
            response.profile = chosen[i].name
            engine.telemetry.assembled(req, response)
            return response
        except ContextdError as exc:
            return exc

    # Items without a session read only the documents, which no item changes: each starts on
    # the batch threads once its vector is there. Items with one run here, in order.
    outcomes = {i: _start_when_ready(workers.items, run, i, vectors.future(q) if (
        q := foreseen_query(req)) is not None else None)
        for i, (req, _) in items.items() if req.session_id is None}
    for i in items:
        if i not in outcomes:
            results[i] = run(i)
    for i, outcome in outcomes.items():
        results[i] = outcome.result()
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


def _start_when_ready(pool: ThreadPoolExecutor, run: Callable[[int], Any], i: int,
                      ready: Future[np.ndarray] | None) -> Future[Any]:
    """`run(i)` on `pool` once `ready` is done (at once without it): the outcome's future."""
    outcome: Future[Any] = Future()

    def settle(task: Future[Any]) -> None:
        exc = task.exception()
        if exc is not None:
            outcome.set_exception(exc)
        else:
            outcome.set_result(task.result())

    def start(_: object = None) -> None:
        try:
            pool.submit(run, i).add_done_callback(settle)
        except RuntimeError as exc:  # the engine closed meanwhile
            outcome.set_exception(exc)

    if ready is None:
        start()
    else:
        ready.add_done_callback(start)
    return outcome


def foreseen_query(req: AssembleRequest) -> str | None:
    """The query text `req` will be embedded for, when it can be told from the request alone.

        >>> foreseen_query(AssembleRequest(query=" vitamin D ", max_tokens=500))
        'vitamin D'
        >>> foreseen_query(AssembleRequest(query="q", top_k=0, max_tokens=500)) is None
        True
    """
    if req.top_k == 0 and not (req.recall and req.session_id is not None):
        return None  # no retrieval, no recall: assembling it needs no vector
    if req.query.strip():
        return req.query.strip()
    last = req.messages[-1] if req.messages else None
    if last is not None and last.role == "user" and (last.content or "").strip():
        return (last.content or "").strip()
    return None


class BatchVectors:
    """Vectors for a batch's texts, computed in one `embed` call on a worker thread (`run`
    submits it; a thread of its own without). With an embedder that hands vectors out as it
    goes (`embed_each`), each group's futures are done as soon as it is, after `ready(texts,
    vectors)` has seen them.

        >>> from contextd.embedding import HashEmbedder
        >>> vectors = BatchVectors(HashEmbedder(), ["a", "b", "a"])
        >>> vectors.future("b").result().shape, vectors.passes
        ((384,), 1)
    """

    def __init__(self, embedder: Embedder, texts: Sequence[str],
                 run: Callable[..., object] | None = None,
                 ready: Callable[[list[str], np.ndarray], None] | None = None) -> None:
        unique = list(dict.fromkeys(texts))
        self._futures: dict[str, Future[np.ndarray]] = {t: Future() for t in unique}
        self._ready = ready
        self.passes = 0
        if unique:
            self.passes = 1
            if run is not None:
                run(self._embed, embedder, unique)
            else:
                threading.Thread(target=self._embed, args=(embedder, unique),
                                 name="contextd-batch-embed", daemon=True).start()

    def _embed(self, embedder: Embedder, texts: list[str]) -> None:
        try:
            each = getattr(embedder, "embed_each", None)
            if each is not None:
                each(texts, lambda rows, matrix: self._deliver([texts[r] for r in rows], matrix))
            else:
                self._deliver(texts, embedder.embed(texts))
        except Exception as exc:  # delivered to every item that still waits for a vector
            for future in self._futures.values():
                if not future.done():
                    future.set_exception(exc)

    def _deliver(self, texts: list[str], matrix: np.ndarray) -> None:
        if self._ready is not None:
            self._ready(texts, matrix)
        for text, row in zip(texts, matrix, strict=True):
            self._futures[text].set_result(row)

    def future(self, text: str) -> Future[np.ndarray] | None:
        return self._futures.get(text)

    def embedder(self, fallback: Callable[[str], Future[np.ndarray]],
                 ) -> Callable[[str], Future[np.ndarray]]:
        """`embed_query_async` for the pipeline: the batch's vector, else `fallback`."""

        def embed(text: str) -> Future[np.ndarray]:
            found = self.future(text)
            return found if found is not None else fallback(text)

        return embed


# A prefetched search: which namespace, retriever (each profile has its own), k and filters.
_Key = tuple[str, int, int, str]
Item = tuple[AssembleRequest, "AssemblePipeline"]


class LexicalPrefetch:
    """The batch's bm25 searches, run ahead (while its queries embed) and handed out once each.

    A result is handed out only if the namespace's change-log sequence is the one it was
    searched at, so an item never mixes bm25 hits from before a write with dense hits after it.
    Each item's search is its profile's (its retriever and ranker).
    """

    def __init__(self, engine: Engine, items: Sequence[Item]) -> None:
        self._found: dict[tuple[_Key, str], tuple[int, list[tuple[int, float]]]] = {}
        for req, runner in items:
            query = foreseen_query(req)
            if req.top_k == 0 or query is None:
                continue
            k = runner.ranker.pool_size(req.top_k)
            try:
                with engine.registry.lease(req.namespace):
                    ns = engine.registry.get(req.namespace)
                    seq = ns.store.last_seq()
                    hits = runner.retriever.lexical(ns, query, k,  # type: ignore[arg-type]
                                                    req.filters)
                    if ns.store.last_seq() == seq:
                        key = _key(req.namespace, runner.retriever, k, req.filters)
                        self._found[key, query] = (seq, hits)
            except ContextdError:
                continue  # the item meets the error itself when it runs

    def searcher(self, retriever: Retriever) -> Callable[..., list[tuple[int, float]]]:
        """`retriever.lexical`, from the prefetched result when it is still current."""

        def search(ns: NamespaceHandle, query: str, k: int,
                   filters: dict[str, Any] | None = None) -> list[tuple[int, float]]:
            found = self._found.pop((_key(ns.name, retriever, k, filters), query), None)
            if found is not None and found[0] == ns.store.last_seq():
                return found[1]
            return retriever.lexical(ns, query, k, filters)

        return search


class DensePrefetch:
    """The batch's FAISS searches: each group of query vectors that arrives together (`add`)
    is searched in one `search_many` call per namespace, retriever, k and filters, by the
    first of its items to need a result (inside that item's namespace lease: the embedding
    thread takes none, so it never waits for a namespace being deleted while an item holding
    the namespace waits for a vector).

    As with bm25, a result is used only at the change-log sequence it was searched at (the
    index caught up to it first, as a single search does), and only for the very vector it
    was searched for; anything else is searched on its own by the retriever.
    """

    def __init__(self, items: Sequence[Item]) -> None:
        self._wanted: dict[str, list[tuple[_Key, AssembleRequest, Retriever, int]]] = (
            defaultdict(list))
        for req, runner in items:
            query = foreseen_query(req)
            if req.top_k > 0 and query is not None:
                k = runner.ranker.pool_size(req.top_k)
                key = _key(req.namespace, runner.retriever, k, req.filters)
                self._wanted[query].append((key, req, runner.retriever, k))
        self._groups: dict[tuple[_Key, bytes], _DenseGroup] = {}
        self._lock = threading.Lock()
        self.calls = 0  # search_many calls made

    def add(self, texts: list[str], vectors: np.ndarray) -> None:
        """`texts`' vectors (rows in the same order) have arrived: group their searches."""
        groups: dict[_Key, _DenseGroup] = {}
        for text, vector in zip(texts, vectors, strict=True):
            for key, req, retriever, k in self._wanted.get(text, ()):
                group = groups.setdefault(key, _DenseGroup(req.filters, retriever, k))
                group.vectors.setdefault(vector.tobytes(), vector)
        with self._lock:
            for key, group in groups.items():
                for raw in group.vectors:
                    self._groups[key, raw] = group

    def searcher(self, retriever: Retriever) -> Callable[..., list[tuple[int, float]] | None]:
        """The prefetched `retriever.dense` result while it is current; None otherwise (the
        retriever then searches, or finds nothing to search, as for a single assemble). The
        caller holds `ns`'s lease."""

        def search(ns: NamespaceHandle, vector: np.ndarray, k: int,
                   filters: dict[str, Any] | None = None) -> list[tuple[int, float]] | None:
            raw = np.asarray(vector, np.float32).tobytes()
            with self._lock:
                group = self._groups.get((_key(ns.name, retriever, k, filters), raw))
            if group is None:
                return None
            with group.lock:
                if group.seq is None:
                    group.seq = self._search(ns, group)
            found = group.found.get(raw)
            if found is None or group.seq != ns.store.last_seq():
                return None
            return found

        return search

    def _search(self, ns: NamespaceHandle, group: _DenseGroup) -> int:
        """Fill `group.found`; the sequence searched at (-1 when nothing was)."""
        search_many = getattr(ns.index, "search_many", None)
        if search_many is None:
            return -1  # a store without one-call searches: each item searches on its own
        seq = ns.store.last_seq()
        ns.ensure_current()
        allowed = ns.store.filtered_chunk_ids(group.filters) if group.filters else None
        if ns.index.seq != seq or (allowed is not None and len(allowed) == 0):
            return -1
        vectors = list(group.vectors.values())
        found = search_many(np.vstack(vectors), group.retriever.chunk_depth(group.k), allowed)
        with self._lock:
            self.calls += 1
        for raw, (scores, ids) in zip(group.vectors, found, strict=True):
            group.found[raw] = [(int(i), float(s)) for i, s in zip(ids, scores, strict=True)]
        return seq if ns.store.last_seq() == seq else -1


class _DenseGroup:
    """Query vectors that arrived together for one namespace, retriever, k and filters."""

    def __init__(self, filters: dict[str, Any] | None, retriever: Retriever, k: int) -> None:
        self.filters, self.retriever, self.k = filters, retriever, k
        self.vectors: dict[bytes, np.ndarray] = {}
        self.found: dict[bytes, list[tuple[int, float]]] = {}
        self.seq: int | None = None
        self.lock = threading.Lock()


class SharedChunkReads:
    """`ChunkReads` for a batch: each chunk's place and row read from the store once for all
    the batch's items, the first time one needs it.

    What was read is kept per namespace under the change-log sequence it was read at, and
    used only while the sequence is unchanged, so every item reads what a read of the store
    would return then (a chunk found missing stays missing until the sequence moves).

        >>> reads = SharedChunkReads()
        >>> reads.places(ns, {1, 2}); reads.places(ns, {2, 3})  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, _ChunksAt] = {}

    def places(self, ns: NamespaceHandle, ids: set[int]) -> dict[int, tuple[str, int]]:
        return self._read(ns, ids, "places", ns.chunk_places)

    def rows(self, ns: NamespaceHandle, ids: list[int]) -> dict[int, ChunkRow]:
        return self._read(ns, ids, "rows", ns.chunk_rows)

    def _read(self, ns: NamespaceHandle, ids: set[int] | list[int], kind: str,
              read: Callable[[list[int]], dict[int, Any]]) -> dict[int, Any]:
        seq = ns.store.last_seq()
        with self._lock:
            held = self._held.get(ns.name)
            if held is None or held.seq != seq:
                held = self._held[ns.name] = _ChunksAt(seq)
            known: dict[int, Any] = getattr(held, kind)
            missing = [i for i in dict.fromkeys(ids) if i not in known]
        fresh = read(missing) if missing else {}
        if ns.store.last_seq() != seq:  # a write meanwhile: answer from the store alone
            return read(list(ids))
        with self._lock:
            for i in missing:
                known[i] = fresh.get(i, _ABSENT)
            return {i: found for i in ids if (found := known[i]) is not _ABSENT}


_ABSENT = object()


class _ChunksAt:
    """Places and rows of one namespace read at change-log sequence `seq`."""

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.places: dict[int, Any] = {}
        self.rows: dict[int, Any] = {}


def _key(namespace: str, retriever: Retriever, k: int, filters: dict[str, Any] | None) -> _Key:
    return namespace, id(retriever), k, json.dumps(filters, sort_keys=True, default=str)


def _parse_item(item: AssembleRequest | dict[str, Any],
                namespace: str | None) -> AssembleRequest | ContextdError:
    try:
        req = parse(AssembleRequest, item)
    except ContextdError as exc:
        return exc
    if namespace is None:
        return req
    if "namespace" in req.model_fields_set and req.namespace != namespace:
        return InvalidRequest(f"the request names namespace {req.namespace!r} but the batch is "
                              f"for {namespace!r}: leave namespace out of the request")
    return req.model_copy(update={"namespace": namespace})
