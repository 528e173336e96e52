"""Recall of evicted turns relevant to the current query: hybrid search over a session, and
on request over the other sessions of the same user.

Turn embeddings are computed when turns are appended, never here; the session's vectors are
kept in a small in-memory cache that grows with appends, so a query costs one matrix-vector
product and one FTS5 lookup. The cache is keyed by the session's creation time as well as its
id, and a session only grows until it is deleted, so what another process appended or
deleted can never be served stale: new turns are read on use, a recreated session is a new key.

With a `UserScope` (recall_scope "user"), the user's other sessions of the namespace are
searched too: the same dense and lexical searches over their turns, each a session as listed
when the request read its state (its turn count bounds what is searched, so the result is a
function of that state, which the semantic cache keys). Every query that returns another
session's turns checks the user in the store (`SessionStore.user_lexical_turns`,
`user_turns`), so no turn of another user can come back even if a session id is reused
meanwhile; namespaces are separate stores. The hits join the session's own rankings by score
(cosine and bm25 are on one scale across the sessions of a namespace) under stand-in keys
(`OtherSessionHits`), so the priority order weighs them with the session's own turns.

    >>> recaller = TurnRecaller()
    >>> hits = recaller.recall("default", sessions, "s1", "when?", vector, max_seq=240)
    ... # doctest: +SKIP
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from contextd.retrieval.fusion import fuse_rrf
from contextd.retrieval.lexical import fts_query
from contextd.store.protocols import SessionStore
from contextd.store.records import SessionRow, TurnOrigin, TurnRow, TurnVectors

# Bounds of recall across a user's sessions: the sessions searched (the most recently
# updated) and the hits each of the two searches keeps from all of them together.
OTHER_SESSIONS = 100
OTHER_HITS = 50
# A later turn may restate what a relevant turn said (a change of mind, an update): later turns
# at least this similar to one of the `SUPERSEDE_SEEDS` best hits, the most similar first, are
# offered as candidates. 0.5 is "about the same subject" for sentence embeddings, well above
# what unrelated turns of one conversation reach.
SUPERSEDE_SIMILARITY = 0.5
SUPERSEDE_SEEDS = 5
SUPERSEDE_CANDIDATES = 8  # per seed, before the speaker check
# The first stand-in key of another session's turn: below the summary's place (-1) in the
# priority order of contextd.memory.conversation, and below every turn seq.
FIRST_OTHER_KEY = -2


@dataclass
class SessionTurns:
    turns: TurnVectors
    through: int = 0  # every turn up to this seq has been read

    @property
    def seqs(self) -> np.ndarray:
        return self.turns.seqs

    @property
    def vectors(self) -> np.ndarray:
        return self.turns.vectors

    @cached_property
    def _positions(self) -> dict[int, int]:
        return {int(seq): at for at, seq in enumerate(self.turns.seqs.tolist())}

    def position(self, seq: int) -> int | None:
        """Where turn `seq` is in the arrays; None when it has no vector (or is not there)."""
        return self._positions.get(seq)

    def extended(self, more: TurnVectors, through: int) -> SessionTurns:
        if not len(more.seqs):
            return SessionTurns(self.turns, max(self.through, through))
        if not len(self.turns.seqs):
            return SessionTurns(more, through)
        old = self.turns
        return SessionTurns(TurnVectors(
            np.concatenate([old.seqs, more.seqs]), np.vstack([old.vectors, more.vectors]),
            np.concatenate([old.tokens, more.tokens]), old.speakers + more.speakers), through)


@dataclass(frozen=True)
class UserScope:
    """The other sessions of the session's user that recall may search, as listed when the
    request read its state (newest first, at most `OTHER_SESSIONS`)."""

    user_id: str
    session_id: str  # the request's own session, searched as usual and not listed here
    sessions: tuple[SessionRow, ...]

    @classmethod
    def read(cls, sessions: SessionStore, user_id: str, session_id: str) -> UserScope:
        """The user's sessions other than `session_id`, as they stand now.

            >>> UserScope.read(sessions, "ana", "trip-2").sessions[0].id  # doctest: +SKIP
            'trip-1'
        """
        listed = sessions.user_sessions(user_id, OTHER_SESSIONS + 1)
        return cls(user_id, session_id,
                   tuple(r for r in listed if r.id != session_id)[:OTHER_SESSIONS])


@dataclass
class OtherSessionHits:
    """Turns of the user's other sessions relevant to a query, each under a stand-in key:
    negative integers from `FIRST_OTHER_KEY` down, newest turn first. The priority order counts
    recency back from the session's last turn, so these rank as older than every turn of the
    session, newest first, and sorted by key they read oldest first, before the session's own.
    A row's `origin` says where it was said."""

    dense: list[tuple[int, float]] = field(default_factory=list)  # (key, cosine), best first
    lexical: list[tuple[int, float]] = field(default_factory=list)  # (key, score), best first
    rows: dict[int, TurnRow] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.rows)


@dataclass
class TurnVectorCache:
    """LRU of per-session turn vectors, extended with turns appended since last use."""

    capacity: int = 256
    _entries: OrderedDict[tuple[str, str, float], SessionTurns] = field(
        default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: tuple[str, str, float], sessions: SessionStore,
            known: int | None = None) -> SessionTurns:
        """The session's turn vectors; with `known` (a turn count the caller read), no read
        at all when the entry already holds that many turns."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
        if entry is not None and known is not None and entry.through >= known:
            return entry
        last = int(entry.seqs[-1]) if entry is not None and len(entry.seqs) else 0
        more = sessions.turn_vectors(key[1], after_seq=last)
        through = max(known or 0, int(more.seqs[-1]) if len(more.seqs) else last)
        entry = (SessionTurns(more, through) if entry is None
                 else entry.extended(more, through))
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return entry

    def appended(self, key: tuple[str, str, float], rows: Sequence[TurnRow],
                 vectors: Sequence[np.ndarray | None]) -> None:
        """Turns this process just appended (rows as stored, and their vectors): added to the
        session's entry when they are the very next turns it lacks (or the session's first),
        so the first assemble after an append reads nothing. Otherwise nothing is done, and
        the next read catches up from the store as usual."""
        if not rows:
            return
        embedded = TurnVectors.of([
            (row.seq, np.asarray(vector, dtype=np.float32), row.tokens, row.role, row.name)
            for row, vector in zip(rows, vectors, strict=True) if vector is not None])
        with self._lock:
            entry = self._entries.get(key)
            if entry is None and rows[0].seq == 1:
                entry = SessionTurns(TurnVectors.of([]), 0)
            if entry is None or entry.through != rows[0].seq - 1:
                return
            self._entries[key] = entry.extended(embedded, rows[-1].seq)
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

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
        others: OtherSessionHits | None = None, known: SessionTurns | None = None,
    ) -> tuple[list[int], list[int]]:
        """(dense, lexical): turn seqs <= max_seq, best first (at most `depth` each), with the
        stand-in keys of `others` merged in by score; `known` is the session's cached turns
        when the caller has read them already (`known_turns`).

        A turn enters the dense ranking only from `min_similarity` on: a turn unrelated to
        the query is not worth its tokens however it ranks."""
        dense: list[tuple[int, float]] = []
        lexical: list[tuple[int, float]] = []
        if max_seq > 0:
            if query_vector is not None:
                entry = known or self.cache.get((namespace, session_id, generation), sessions)
                dense = _similar(entry, max_seq, query_vector, self.min_similarity)
            lexical = sessions.lexical_turns(session_id, fts_query(query),
                                             self.depth or max_seq, max_seq)
        if others:
            dense, lexical = _merged(dense, others.dense), _merged(lexical, others.lexical)
        return ([seq for seq, _ in dense[: self.depth]],
                [seq for seq, _ in lexical[: self.depth]])

    def known_turns(self, namespace: str, sessions: SessionStore, session_id: str,
                    generation: float = 0.0) -> SessionTurns:
        """The session's cached embedded turns (seqs, vectors, costs, speakers), read up to
        date: what prices and tells apart ranked turns without reading their rows."""
        return self.cache.get((namespace, session_id, generation), sessions)

    @staticmethod
    def later_turns(entry: SessionTurns, seeds: list[int], max_seq: int) -> dict[int, list[int]]:
        """For each seed turn, the later turns up to `max_seq` about the same subject (cosine
        to the seed's vector from `SUPERSEDE_SIMILARITY` on), most similar first, at most
        `SUPERSEDE_CANDIDATES`: where a change of mind or an update to what the seed said
        would be. Seeds without a vector (or of another session) get none.

        The question asks about the old statement's subject ("what class is Pavel taking?"
        finds "I'm taking a pottery class"), while the turn that answers it now may share
        little with the question ("I quit pottery and switched to salsa"); it shares the
        subject with the old statement, so a second search seeded by the hit finds it."""
        upto = int(np.searchsorted(entry.seqs, max_seq, side="right"))
        found: dict[int, list[int]] = {}
        for seed in seeds:
            at = int(np.searchsorted(entry.seqs[:upto], seed))
            if seed <= 0 or at >= upto or int(entry.seqs[at]) != seed:
                continue
            sims = entry.vectors[at + 1:upto] @ entry.vectors[at]
            keep = np.flatnonzero(sims >= SUPERSEDE_SIMILARITY)
            best = keep[np.argsort(-sims[keep], kind="stable")][:SUPERSEDE_CANDIDATES]
            found[seed] = [int(entry.seqs[at + 1 + i]) for i in best]
        return found

    def other_sessions(self, namespace: str, sessions: SessionStore, scope: UserScope,
                       query: str, query_vector: np.ndarray | None) -> OtherSessionHits:
        """The turns of the user's other sessions that the two searches find for `query`
        (at most `OTHER_HITS` each), each session up to the turn count it was listed with."""
        listed = {row.id: row for row in scope.sessions}
        dense: list[tuple[str, int, float]] = []
        if query_vector is not None:
            for row in scope.sessions:
                entry = self.cache.get((namespace, row.id, row.created_at), sessions,
                                       known=row.turns)
                dense.extend((row.id, seq, score) for seq, score in
                             _similar(entry, row.turns, query_vector, self.min_similarity))
            dense.sort(key=lambda hit: -hit[2])
            dense = dense[:OTHER_HITS]
        lexical = [(sid, seq, score) for sid, seq, score in sessions.user_lexical_turns(
            scope.user_id, fts_query(query), OTHER_HITS, exclude=scope.session_id)
            if sid in listed and seq <= listed[sid].turns]
        found = sessions.user_turns(scope.user_id, sorted(
            {(sid, seq) for sid, seq, _ in dense + lexical}))
        # Newest first: the later session, then the later turn.
        order = sorted(found, key=lambda k: (listed[k[0]].created_at, k[0], k[1]), reverse=True)
        keys = {place: FIRST_OTHER_KEY - n for n, place in enumerate(order)}
        rows = {keys[(sid, seq)]: TurnRow(**{
            **row.__dict__, "seq": keys[(sid, seq)],
            "origin": TurnOrigin(sid, seq, listed[sid].created_at)})
            for (sid, seq), row in found.items()}
        return OtherSessionHits(
            dense=[(keys[(sid, seq)], score) for sid, seq, score in dense if (sid, seq) in keys],
            lexical=[(keys[(sid, seq)], score) for sid, seq, score in lexical
                     if (sid, seq) in keys],
            rows=rows)

    def recall(
        self, namespace: str, sessions: SessionStore, session_id: str, query: str,
        query_vector: np.ndarray | None, max_seq: int, generation: float = 0.0,
    ) -> list[tuple[int, float]]:
        """(turn seq, fused score) of relevant turns with seq <= max_seq, best first: RRF of
        the two `rankings`."""
        rankings = [r for r in self.rankings(namespace, sessions, session_id, query,
                                             query_vector, max_seq, generation) if r]
        return fuse_rrf(rankings, k=self.rrf_k) if rankings else []


def _similar(entry: SessionTurns, max_seq: int, query_vector: np.ndarray,
             min_similarity: float) -> list[tuple[int, float]]:
    """(seq, cosine) of the entry's turns up to `max_seq` from `min_similarity` on, best
    first (ties: older first)."""
    if not len(entry.seqs):
        return []
    upto = int(np.searchsorted(entry.seqs, max_seq, side="right"))
    if not upto:
        return []
    sims = entry.vectors[:upto] @ query_vector.reshape(-1)
    keep = np.flatnonzero(sims >= min_similarity)
    top = keep[np.argsort(-sims[keep], kind="stable")]
    return [(int(entry.seqs[i]), float(sims[i])) for i in top]


def _merged(own: list[tuple[int, float]],
            others: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """Two score-sorted rankings as one, best first; on a tie the session's own turn first.

        >>> _merged([(7, 0.9), (3, 0.5)], [(-2, 0.7)])
        [(7, 0.9), (-2, 0.7), (3, 0.5)]
    """
    return sorted(own + others, key=lambda hit: (-hit[1], hit[0] < 0))
