"""Hybrid retriever: dense (FAISS) and lexical (FTS5 bm25) candidates fused by document.

Results are documents (see `contextd.retrieval.documents`): each candidate is one document,
with its best chunk and the neighbouring chunks that are relevant too. Metadata filters
restrict both searches before their top-k cut, so a filter never yields fewer results than
exist. How many chunks each search returns does not depend on `k` up to `depth` documents, so
the first results are the same whatever `k` was asked for.

    >>> retriever = HybridRetriever()
    >>> candidates = retriever.retrieve(ns, query_vector, "vitamin d", k=50)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from contextd.retrieval.documents import collapse, join_parts
from contextd.retrieval.fusion import convex_scores, fuse_rrf
from contextd.retrieval.lexical import fts_query, query_terms
from contextd.store.protocols import LexicalIndex, NamespaceHandle
from contextd.store.records import ChunkRow


@dataclass
class Candidate:
    """One document found: its best `chunk` and the `parts` shown (document order; the best
    chunk alone when empty). Ranks are the best chunk's."""

    chunk: ChunkRow
    score: float
    dense_rank: int | None = None
    lexical_rank: int | None = None
    parts: tuple[ChunkRow, ...] = ()

    @property
    def shown(self) -> tuple[ChunkRow, ...]:
        """The chunks shown for this document, in document order."""
        return self.parts or (self.chunk,)

    @property
    def text(self) -> str:
        """The shown chunks' text, shared sentences once."""
        return join_parts(self.shown) if self.parts else self.chunk.text

    @property
    def chunk_ords(self) -> list[int]:
        return [p.ord for p in self.shown]


class ChunkReads(Protocol):
    """Where `retrieve` reads chunks from: the namespace's store, or one shared by a batch."""

    def places(self, ns: NamespaceHandle, ids: set[int]) -> dict[int, tuple[str, int]]: ...

    def rows(self, ns: NamespaceHandle, ids: list[int]) -> dict[int, ChunkRow]: ...


class StoreReads:
    """`ChunkReads` straight from the namespace's store."""

    def places(self, ns: NamespaceHandle, ids: set[int]) -> dict[int, tuple[str, int]]:
        return ns.chunk_places(ids)

    def rows(self, ns: NamespaceHandle, ids: list[int]) -> dict[int, ChunkRow]:
        return ns.chunk_rows(ids)


STORE_READS = StoreReads()


class Retriever(Protocol):
    def chunk_depth(self, k: int) -> int: ...

    def lexical(
        self, ns: NamespaceHandle, query: str, k: int, filters: dict[str, Any] | None = None,
    ) -> list[tuple[int, float]]: ...

    def dense(
        self, ns: NamespaceHandle, query_vector: np.ndarray, k: int,
        filters: dict[str, Any] | None = None,
    ) -> list[tuple[int, float]]: ...

    def retrieve(
        self, ns: NamespaceHandle, query_vector: np.ndarray | None, query: str, k: int,
        filters: dict[str, Any] | None = None, mode: str = "hybrid",
        lexical: list[tuple[int, float]] | None = None,
        dense: list[tuple[int, float]] | None = None, reads: ChunkReads = ...,
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
    document_score, chunk_score = fused_scores(rankings, weights, document_of, fusion, k)
    ordered = ordered_chunks(document_score, chunk_score, document_of)
    # Mostly the document's score, a millionth the chunk's own: still in [0, 1] for convex.
    return [(cid, (1 - 1e-6) * document_score[document_of[cid]] + 1e-6 * chunk_score[cid])
            for cid in ordered]


def fused_scores(
    rankings: list[list[tuple[int, float]]], weights: list[float], document_of: dict[int, str],
    fusion: Fusion = "convex", k: float = 60.0,
) -> tuple[dict[str, float], dict[int, float]]:
    """(document id -> fused score, chunk id -> fused score) of `rankings`; see
    `fuse_by_document`.

        >>> fused_scores([[(1, 0.9), (2, 0.45)]], [1.0], {1: "a", 2: "a"})
        ({'a': 1.0}, {1: 1.0, 2: 0.5})
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
        # Unordered: `ordered_chunks` puts them in a total order of its own.
        document_score = convex_scores(best, weights)[0]
        chunk_score = convex_scores([dict(r) for r in rankings], weights)[0]
    else:
        raise ValueError(f"fusion must be 'convex' or 'rrf', got {fusion!r}")
    return document_score, chunk_score


def ordered_chunks(document_score: dict[str, float], chunk_score: dict[int, float],
                   document_of: dict[int, str]) -> list[int]:
    """Chunk ids by their document's score, then their own, then id (a total order); a
    document's chunks stay together even when another document has the same score."""
    ids = [cid for cid in chunk_score if cid in document_of]
    # A document's place among equals: its best chunk's (score, then id), unique per document.
    lead: dict[str, tuple[float, int]] = {}
    for cid in ids:
        key = (-chunk_score[cid], cid)
        doc = document_of[cid]
        if doc not in lead or key < lead[doc]:
            lead[doc] = key
    return sorted(ids, key=lambda cid: (-document_score[document_of[cid]],
                                        lead[document_of[cid]], -chunk_score[cid], cid))


def newest_places(places: dict[int, tuple[str, int]]) -> dict[int, tuple[str, int]]:
    """`places` with one chunk id per place, the newest (highest): two ids share a place only
    when a document was replaced and the older chunk is deleted or about to be.

        >>> newest_places({4: ("a", 0), 9: ("a", 0), 5: ("a", 1)})
        {9: ('a', 0), 5: ('a', 1)}
    """
    if len(set(places.values())) == len(places):
        return places
    owner = {place: cid for cid, place in sorted(places.items())}  # the highest id set last
    return {cid: place for place, cid in owner.items()}


@dataclass
class HybridRetriever:
    """Fuses dense and lexical rankings of chunks by document (weighted convex combination of
    scores, or RRF; see `fuse_by_document`) and returns the best `k` documents, each with its
    best chunk and its relevant neighbours (`neighbours` on each side at most).

    Each search returns `depth` chunks, or `k` when more documents are asked for, so up to
    `depth` documents the results do not depend on `k`: the first ten of a top 100 are the
    top 10."""

    depth: int = 200
    fusion: Fusion = "convex"
    rrf_k: float = 60.0
    dense_weight: float = 1.0
    lexical_weight: float = 1.0
    title_weight: float = 1.0
    common_term_share: float = 0.2
    common_term_min_chunks: int = 2_000
    neighbours: int = 1

    def chunk_depth(self, k: int) -> int:
        """Chunks each search returns for `k` documents: `depth`, or `k` when more.

            >>> HybridRetriever(depth=200).chunk_depth(10), HybridRetriever().chunk_depth(300)
            (200, 300)
        """
        return max(self.depth, k)

    def lexical(
        self, ns: NamespaceHandle, query: str, k: int, filters: dict[str, Any] | None = None,
    ) -> list[tuple[int, float]]:
        """The bm25 half of `retrieve` for `k` documents: (chunk id, score) best first. It
        needs no query vector, so it can run while the query is being embedded.

        The namespace's in-memory bm25 index answers when it has one (the same scores as
        FTS5, a fraction of the time); the store's own search otherwise."""
        index = ns.lexical_index()
        words = self._distinctive_terms(ns, query, index)
        terms = index.query_terms(words) if index is not None else None
        if index is not None and terms is not None:
            allowed = ns.store.filtered_chunk_ids(filters) if filters else None
            return index.search(terms, self.chunk_depth(k), allowed, self.title_weight)
        return ns.store.lexical_search(fts_query(query, words), self.chunk_depth(k), filters,
                                       title_weight=self.title_weight)

    def dense(
        self, ns: NamespaceHandle, query_vector: np.ndarray, k: int,
        filters: dict[str, Any] | None = None, allowed: np.ndarray | None = None,
    ) -> list[tuple[int, float]]:
        """The FAISS half of `retrieve` for `k` documents: (chunk id, score) best first.
        `allowed` is `filters`' chunk ids when the caller has them already."""
        if filters and allowed is None:
            allowed = ns.store.filtered_chunk_ids(filters)
        ns.ensure_current()  # another process may have written since this one last looked
        scores, ids = ns.index.search(query_vector, self.chunk_depth(k), allowed=allowed)
        return [(int(i), float(s)) for i, s in zip(ids, scores, strict=True)]

    def retrieve(
        self, ns: NamespaceHandle, query_vector: np.ndarray | None, query: str, k: int,
        filters: dict[str, Any] | None = None, mode: str = "hybrid",
        lexical: list[tuple[int, float]] | None = None,
        dense: list[tuple[int, float]] | None = None, reads: ChunkReads = STORE_READS,
    ) -> list[Candidate]:
        """The best `k` documents; `lexical` and `dense` are `lexical()` and `dense()`
        results already computed for the same query (and vector), k and filters; `reads`
        reads the chunks (a batch shares one among its items)."""
        allowed = ns.store.filtered_chunk_ids(filters) if filters else None
        if allowed is not None and len(allowed) == 0:
            return []
        if mode not in ("hybrid", "dense") or query_vector is None:
            dense = []
        elif dense is None:
            dense = self.dense(ns, query_vector, k, filters, allowed)
        if mode not in ("hybrid", "lexical"):
            lexical = []
        elif lexical is None:
            lexical = self.lexical(ns, query, k, filters)
        rankings = [r for r in (dense, lexical) if r]
        weights = [w for r, w in ((dense, self.dense_weight), (lexical, self.lexical_weight)) if r]
        places = newest_places(reads.places(ns, {cid for r in rankings for cid, _ in r}))
        document_of = {cid: place[0] for cid, place in places.items()}
        document_score, chunk_score = fused_scores(rankings, weights, document_of, self.fusion,
                                                   self.rrf_k)
        ordered = ordered_chunks(document_score, chunk_score, document_of)
        # `ordered` keeps each document's chunks together: only the first k documents are read.
        documents = collapse(((places[c][0], places[c][1], document_score[places[c][0]],
                               chunk_score[c]) for c in ordered), self.neighbours, limit=k)
        chunk_id = {places[c]: c for c in ordered}
        # Only the shown chunks are read back: rows carry text and vectors.
        rows = reads.rows(ns, [chunk_id[(doc, o)] for doc, _, ords in documents for o in ords])
        dense_rank = {cid: r for r, (cid, _) in enumerate(dense, start=1)}
        lexical_rank = {cid: r for r, (cid, _) in enumerate(lexical, start=1)}
        out: list[Candidate] = []
        for doc, best_ord, ords in documents:
            best = chunk_id[(doc, best_ord)]
            shown = tuple(rows[cid] for o in ords if (cid := chunk_id[(doc, o)]) in rows)
            if best not in rows:  # a chunk deleted between the searches and this read
                continue
            # Mostly the document's score, a millionth its best chunk's: in [0, 1] for convex.
            score = (1 - 1e-6) * document_score[doc] + 1e-6 * chunk_score[best]
            out.append(Candidate(rows[best], score, dense_rank.get(best), lexical_rank.get(best),
                                 parts=shown if len(shown) > 1 else ()))
        return out

    def _distinctive_terms(self, ns: NamespaceHandle, query: str,
                           index: LexicalIndex | None = None) -> list[str]:
        """Query terms without those found in more than `common_term_share` of the chunks.

        Such terms have little bm25 weight but long posting lists: scoring every chunk that
        matches them is most of a lexical search's time on a large namespace.
        """
        terms = query_terms(query)
        if self.common_term_share >= 1.0:
            return terms
        total = len(index) if index is not None else ns.store.chunk_count()
        if total < self.common_term_min_chunks:
            return terms
        limit = self.common_term_share * total

        def documents(term: str) -> int:
            found = index.term_documents(term) if index is not None else None
            return ns.store.term_documents(term) if found is None else found

        kept = [t for t in terms if documents(t) <= limit]
        return kept or terms
