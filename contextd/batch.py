"""Batch assembly: many assemble requests in one call, their query vectors in one forward pass.

Each request is validated and answered on its own, in order, so one bad item is an error in its
place and the others still run (items without a session side by side, on as many threads as
cores; items with one in order). Before the first item runs, the batch's queries go to the
embedder as one list on a worker thread, and while that forward pass runs the caller's thread
does the batch's bm25 searches; the items then run one after another, each taking its vector
and its bm25 hits from there. A query that turns out different from the one foreseen (an empty
query whose last user message an earlier item of the batch appended) is embedded and searched
on its own, as usual; so is a bm25 search whose documents changed since it ran.

    >>> results = assemble_batch(engine, [{"query": "a", "max_tokens": 500}], "default")
    ... # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from contextd.errors import ContextdError, InvalidRequest
from contextd.models import AssembleRequest
from contextd.protocols import Embedder
from contextd.store.protocols import NamespaceHandle
from contextd.validation import parse

if TYPE_CHECKING:
    from contextd.engine import Engine
    from contextd.models import AssembleResponse


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
    vectors = BatchVectors(engine.embedder, [
        text for req in parsed if isinstance(req, AssembleRequest)
        if (text := foreseen_query(req)) is not None])
    embed = vectors.embedder(engine.embed_query_async)
    lexical = LexicalPrefetch(engine, [req for req in parsed if isinstance(req, AssembleRequest)])

    def run(req: AssembleRequest) -> AssembleResponse | ContextdError:
        try:
            profile = engine.profiles.choose(req)  # as a single assemble would
            with engine.registry.lease(req.namespace):
                response = profile.runner.run(req, embed_query_async=embed,
                                              lexical_search=lexical.search)
            response.profile = profile.name
            engine.telemetry.assembled(req, response)
            return response
        except ContextdError as exc:
            return exc

    # Items without a session read only the documents, which no item changes, so they run
    # side by side on the cores; items with one run in order, each after the turns the ones
    # before it stored.
    results: list[AssembleResponse | ContextdError | None] = [
        req if isinstance(req, ContextdError) else None for req in parsed]
    free = {i: req for i, req in enumerate(parsed)
            if isinstance(req, AssembleRequest) and req.session_id is None}
    workers = min(len(free), os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(workers, 1),
                            thread_name_prefix="contextd-batch") as pool:
        running = {i: pool.submit(run, req) for i, req in free.items()} if workers > 1 else {}
        for i, req in enumerate(parsed):
            if isinstance(req, AssembleRequest) and i not in running:
                results[i] = run(req)
        for i, future in running.items():
            results[i] = future.result()
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


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
    """Vectors for a batch's texts, computed in one `embed` call on a worker thread.

        >>> from contextd.embedding import HashEmbedder
        >>> vectors = BatchVectors(HashEmbedder(), ["a", "b", "a"])
        >>> vectors.future("b").result().shape, vectors.passes
        ((384,), 1)
    """

    def __init__(self, embedder: Embedder, texts: Sequence[str]) -> None:
        unique = list(dict.fromkeys(texts))
        self._futures: dict[str, Future[np.ndarray]] = {t: Future() for t in unique}
        self.passes = 0
        if unique:
            self.passes = 1
            threading.Thread(target=self._embed, args=(embedder, unique),
                             name="contextd-batch-embed", daemon=True).start()

    def _embed(self, embedder: Embedder, texts: list[str]) -> None:
        try:
            matrix = embedder.embed(texts)
        except Exception as exc:  # delivered to every item that waits for a vector
            for future in self._futures.values():
                future.set_exception(exc)
            return
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


class LexicalPrefetch:
    """The batch's bm25 searches, run ahead (while its queries embed) and handed out once each.

    A result is handed out only if the namespace's change-log sequence is the one it was
    searched at, so an item never mixes bm25 hits from before a write with dense hits after it.
    """

    def __init__(self, engine: Engine, requests: Sequence[AssembleRequest]) -> None:
        self._search = engine.retriever.lexical
        self._found: dict[tuple[str, str, int, str], tuple[int, list[tuple[int, float]]]] = {}
        for req in requests:
            query = foreseen_query(req)
            if req.top_k == 0 or query is None:
                continue
            k = engine.ranker.pool_size(req.top_k)
            try:
                with engine.registry.lease(req.namespace):
                    ns = engine.registry.get(req.namespace)
                    seq = ns.store.last_seq()
                    hits = self._search(ns, query, k, req.filters)  # type: ignore[arg-type]
                    if ns.store.last_seq() == seq:
                        self._found[_lexical_key(req.namespace, query, k, req.filters)] = (
                            seq, hits)
            except ContextdError:
                continue  # the item meets the error itself when it runs

    def search(self, ns: NamespaceHandle, query: str, k: int,
               filters: dict[str, Any] | None = None) -> list[tuple[int, float]]:
        """`Retriever.lexical`, from the prefetched result when it is still current."""
        found = self._found.pop(_lexical_key(ns.name, query, k, filters), None)
        if found is not None and found[0] == ns.store.last_seq():
            return found[1]
        return self._search(ns, query, k, filters)


def _lexical_key(namespace: str, query: str, k: int,
                 filters: dict[str, Any] | None) -> tuple[str, str, int, str]:
    return namespace, query, k, json.dumps(filters, sort_keys=True, default=str)


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
