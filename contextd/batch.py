"""Batch assembly: many assemble requests in one call, their query vectors in one forward pass.

Each request is validated and answered on its own, in order, so one bad item is an error in its
place and the others still run. Before the first item runs, the batch's queries go to the
embedder as one list on a worker thread; the items then run one after another on the caller's
thread, the first ones' bm25 searches overlapping that forward pass, and each item takes its
vector from it. A query that turns out different from the one foreseen (an empty query whose
last user message an earlier item of the batch appended) is embedded on its own, as usual.

    >>> results = assemble_batch(engine, [{"query": "a", "max_tokens": 500}], "default")
    ... # doctest: +SKIP
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import numpy as np

from contextd.errors import ContextdError, InvalidRequest
from contextd.models import AssembleRequest
from contextd.protocols import Embedder
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
    results: list[AssembleResponse | ContextdError] = []
    for req in parsed:
        if isinstance(req, ContextdError):
            results.append(req)
            continue
        try:
            with engine.registry.lease(req.namespace):
                results.append(engine.pipeline.run(req, embed))
        except ContextdError as exc:
            results.append(exc)
    return results


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
