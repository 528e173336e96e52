"""Hybrid retriever: dense (FAISS) and lexical (FTS5 bm25) candidates fused by document.

Metadata filters restrict both searches before their top-k cut, so a filter never yields
fewer results than exist.

    >>> retriever = HybridRetriever()
    >>> candidates = retriever.retrieve(ns, query_vector, "vitamin d", k=50)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from contextd.retrieval.fusion import fuse_rrf, fuse_scores
from contextd.retrieval.lexical import fts_query, query_terms
from contextd.store.protocols import NamespaceHandle
from contextd.store.records import ChunkRow


@dataclass
class Candidate:
    chunk: ChunkRow
    score: float
    dense_rank: int | None = None
    lexical_rank: int | None = None


class Retriever(Protocol):
    def lexical(
        self, ns: NamespaceHandle, query: str, k: int, filters: dict[str, Any] | None = None,
    ) -> list[tuple[int, float]]: ...

    def retrieve(
        self, ns: NamespaceHandle, query_vector: np.ndarray | None, query: str, k: int,
        filters: dict[str, Any] | None = None, mode: str = "hybrid",
        lexical: list[tuple[int, float]] | None = None,
    ) -> list[Candidate]: ...


Fusion = Literal["convex", "rrf"]


def fuse_by_document(
    rankings: list[list[tuple[int, float]]], weights: list[float], document_of: dict[int, str],
    fusion: Fusion = "convex", k: float = 60.0,
) -> list[tuple[int, float]]:
    """Fuse (chunk id, score) rankings by document, then order chunks within each document.

    A document's evidence in a list is its best chunk there: its score (convex fusion, see
    `fuse_scores`) or its place among distinct documents (RRF, constant `k`), so a document
    matching with several chunks does not push other documents down a list. Chunks are ordered
    by their document's fused score, then by their own chunk-level fused score; a chunk's score
    is its document's with a millionth part from its own, so it stays in [0, 1] for convex.

        >>> fused = fuse_by_document([[(1, 0.9), (2, 0.8), (3, 0.1)]], [1.0],
        ...                          {1: "a", 2: "a", 3: "b"})
        >>> [(cid, round(score, 4)) for cid, score in fused]
        [(1, 1.0), (2, 1.0), (3, 0.1111)]
    """
    if fusion == "rrf":
        ids = [[c for c, _ in ranking] for ranking in rankings]
        documents = [list(dict.fromkeys(document_of[c] for c in r if c in document_of))
                     for r in ids]
        document_score = dict(fuse_rrf(documents, k=k, weights=weights))
        chunk_score = dict(fuse_rrf(ids, k=k, weights=weights))
    elif fusion == "convex":
        best: list[dict[str, float]] = []
        for ranking in rankings:
            per_document: dict[str, float] = {}
            for cid, score in ranking:
                doc = document_of.get(cid)
                if doc is not None and score > per_document.get(doc, -math.inf):
                    per_document[doc] = score
            best.append(per_document)
        document_score = dict(fuse_scores(best, weights))
        chunk_score = dict(fuse_scores([dict(r) for r in rankings], weights))
    else:
        raise ValueError(f"fusion must be 'convex' or 'rrf', got {fusion!r}")
    ordered = sorted(
        (cid for cid in chunk_score if cid in document_of),
        key=lambda cid: (-document_score[document_of[cid]], -chunk_score[cid], cid))
    # Mostly the document's score, a millionth the chunk's own: still in [0, 1] for convex.
    return [(cid, (1 - 1e-6) * document_score[document_of[cid]] + 1e-6 * chunk_score[cid])
            for cid in ordered]


@dataclass
class HybridRetriever:
    """Fuses dense and lexical rankings of `depth` candidates each by document (weighted convex
    combination of scores, or RRF; see `fuse_by_document`) and returns the best `k` fused
    candidates."""

    depth: int = 100
    fusion: Fusion = "convex"
    rrf_k: float = 60.0
    dense_weight: float = 1.0
    lexical_weight: float = 1.0
    title_weight: float = 1.0
    common_term_share: float = 0.2
    common_term_min_chunks: int = 2_000

    def lexical(
        self, ns: NamespaceHandle, query: str, k: int, filters: dict[str, Any] | None = None,
    ) -> list[tuple[int, float]]:
        """The bm25 half of `retrieve`: (chunk id, score) best first. It needs no query vector,
        so it can run while the query is being embedded."""
        return ns.store.lexical_search(
            fts_query(query, self._distinctive_terms(ns, query)), max(self.depth, k), filters,
            title_weight=self.title_weight)

    def retrieve(
        self, ns: NamespaceHandle, query_vector: np.ndarray | None, query: str, k: int,
        filters: dict[str, Any] | None = None, mode: str = "hybrid",
        lexical: list[tuple[int, float]] | None = None,
    ) -> list[Candidate]:
        """The best `k` fused candidates; `lexical` is a `lexical()` result already computed
        for the same query, k and filters."""
        depth = max(self.depth, k)
        allowed = ns.store.filtered_chunk_ids(filters) if filters else None
        if allowed is not None and len(allowed) == 0:
            return []
        dense: list[tuple[int, float]] = []
        if mode in ("hybrid", "dense") and query_vector is not None:
            ns.ensure_current()  # another process may have written since this one last looked
            scores, ids = ns.index.search(query_vector, depth, allowed=allowed)
            dense = [(int(i), float(s)) for i, s in zip(ids, scores, strict=True)]
        if mode not in ("hybrid", "lexical"):
            lexical = []
        elif lexical is None:
            lexical = self.lexical(ns, query, k, filters)
        rankings = [r for r in (dense, lexical) if r]
        weights = [w for r, w in ((dense, self.dense_weight), (lexical, self.lexical_weight)) if r]
        document_of = ns.store.chunk_documents({cid for r in rankings for cid, _ in r})
        fused = fuse_by_document(rankings, weights, document_of, self.fusion, self.rrf_k)[:k]
        # Only the best `k` fused candidates are read back: rows carry text and vectors.
        rows = ns.store.chunks([cid for cid, _ in fused])
        dense_rank = {cid: r for r, (cid, _) in enumerate(dense, start=1)}
        lexical_rank = {cid: r for r, (cid, _) in enumerate(lexical, start=1)}
        return [
            Candidate(rows[cid], score, dense_rank.get(cid), lexical_rank.get(cid))
            for cid, score in fused
            if cid in rows  # a chunk deleted between the searches and this read
        ]

    def _distinctive_terms(self, ns: NamespaceHandle, query: str) -> list[str]:
        """Query terms without those found in more than `common_term_share` of the chunks.

        Such terms have little bm25 weight but long posting lists: scoring every chunk that
        matches them is most of a lexical search's time on a large namespace.
        """
        terms = query_terms(query)
        if self.common_term_share >= 1.0:
            return terms
        total = ns.store.chunk_count()
        if total < self.common_term_min_chunks:
            return terms
        limit = self.common_term_share * total
        kept = [t for t in terms if ns.store.term_documents(t) <= limit]
        return kept or terms
