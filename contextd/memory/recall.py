"""Recall of evicted turns relevant to the current query: hybrid search over a session.

Turn embeddings are computed when turns are appended, never here; the session's vectors are
kept in a small in-memory cache that grows with appends, so a query costs one matrix-vector
product and one FTS5 lookup. The cache is keyed by the session's creation time as well as its
id, and a session only grows until it is deleted, so what another process appended or
deleted can never be served stale: new turns are read on use, a recreated session is a new key.

    >>> recaller = TurnRecaller()
    >>> hits = recaller.recall("default", sessions, "s1", "when?", vector, max_seq=240)
    ... # doctest: +SKIP
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from contextd.retrieval.fusion import fuse_rrf
from contextd.retrieval.lexical import fts_query
from contextd.store.protocols import SessionStore


@dataclass
class _SessionVectors:
    seqs: np.ndarray
    vectors: np.ndarray


@dataclass
class TurnVectorCache:
    """LRU of per-session turn vectors, extended with turns appended since last use."""

    capacity: int = 256
    _entries: OrderedDict[tuple[str, str, float], _SessionVectors] = field(
        default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: tuple[str, str, float], sessions: SessionStore) -> _SessionVectors:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
        last = int(entry.seqs[-1]) if entry is not None and len(entry.seqs) else 0
        seqs, vectors = sessions.turn_vectors(key[1], after_seq=last)
        if entry is None:
            entry = _SessionVectors(seqs, vectors)
        elif len(seqs):
            stacked = vectors if not len(entry.seqs) else np.vstack([entry.vectors, vectors])
            entry = _SessionVectors(np.concatenate([entry.seqs, seqs]), stacked)
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return entry

    def forget(self, namespace: str, session_id: str) -> None:
        """Drop a deleted session's vectors (memory only: keys already tell sessions apart)."""
        with self._lock:
            for key in [k for k in self._entries if k[:2] == (namespace, session_id)]:
                del self._entries[key]

    def forget_namespace(self, namespace: str) -> None:
        with self._lock:
            for key in [k for k in self._entries if k[0] == namespace]:
                del self._entries[key]


@dataclass
class TurnRecaller:
    """Ranks a session's turns up to `max_seq` for a query by cosine and by bm25."""

    depth: int | None = None  # None: every turn, as far as each search finds it
    rrf_k: float = 60.0
    min_similarity: float = 0.2
    cache: TurnVectorCache = field(default_factory=TurnVectorCache)

    def rankings(
        self, namespace: str, sessions: SessionStore, session_id: str, query: str,
        query_vector: np.ndarray | None, max_seq: int, generation: float = 0.0,
    ) -> tuple[list[int], list[int]]:
        """(dense, lexical): turn seqs <= max_seq, best first (at most `depth` each).

        A turn enters the dense ranking only from `min_similarity` on: a turn unrelated to
        the query is not worth its tokens however it ranks."""
        if max_seq <= 0:
            return [], []
        dense: list[int] = []
        if query_vector is not None:
            entry = self.cache.get((namespace, session_id, generation), sessions)
            if len(entry.seqs):
                upto = int(np.searchsorted(entry.seqs, max_seq, side="right"))
                if upto:
                    sims = entry.vectors[:upto] @ query_vector.reshape(-1)
                    keep = np.flatnonzero(sims >= self.min_similarity)
                    top = keep[np.argsort(-sims[keep], kind="stable")][: self.depth]
                    dense = entry.seqs[top].tolist()
        lexical = [seq for seq, _ in sessions.lexical_turns(
            session_id, fts_query(query), self.depth or max_seq, max_seq)]
        return dense, lexical

    def recall(
        self, namespace: str, sessions: SessionStore, session_id: str, query: str,
        query_vector: np.ndarray | None, max_seq: int, generation: float = 0.0,
    ) -> list[tuple[int, float]]:
        """(turn seq, fused score) of relevant turns with seq <= max_seq, best first: RRF of
        the two `rankings`."""
        rankings = [r for r in self.rankings(namespace, sessions, session_id, query,
                                             query_vector, max_seq, generation) if r]
        return fuse_rrf(rankings, k=self.rrf_k) if rankings else []
