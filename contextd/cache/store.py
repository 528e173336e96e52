"""A per-namespace cache of assemble responses: exact and guarded near-duplicate hits.

A lookup first narrows to the entries with an equal `CacheKey` (same documents and session
state, budget, profile and other request fields), then:

1. the same query after `normalise` is an ``exact`` hit;
2. otherwise the entry whose query embedding is most similar, at a cosine of at least
   ``similarity``, among those the guard (`same_meaning`) accepts, is a ``similar`` hit;
3. otherwise a miss, counted by reason: ``guard`` (candidates above the threshold, all refused
   by the guard), ``expired`` (the only match had outlived its TTL), ``below_threshold``
   (entries under the key, none close enough, or no query vector to compare), ``no_entry``
   (nothing under the key), ``disabled`` (the cache, or the request, turned it off).

Memory is bounded per namespace by entries and by bytes (the serialised response, the query,
its vector and any stored answer), least recently used first out; entries also expire after
``ttl_s`` from when they were stored. A hit returns a fresh copy of the response, so a caller
may change it freely. On a semantic hit the response is the one assembled for the cached query:
its messages carry that query's wording. All methods are thread-safe.

    >>> import numpy as np
    >>> from contextd.models import Usage
    >>> cache = SemanticCache(similarity=0.9)
    >>> key = CacheKey("ns", 4, None, None, 1000, "cl100k_base", "default", "d")
    >>> v = np.ones(4, dtype=np.float32) / 2
    >>> cache.store(key, "How do I reset my password?", v, Usage(total=7), "a1")
    True
    >>> hit = cache.lookup(key, "how can I reset my password", v)
    >>> hit.response.total, hit.exact, cache.put_answer("ns", "a1", "Use the link.")
    (7, False, True)
    >>> cache.lookup(key, "How do I reset my password", None).answer
    'Use the link.'
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel

from contextd.cache.guard import Verdict, normalise, same_meaning
from contextd.cache.key import CacheKey

Outcome = Literal["exact", "similar", "guard", "below_threshold", "no_entry", "expired",
                  "disabled"]
OUTCOMES: tuple[Outcome, ...] = ("exact", "similar", "guard", "below_threshold", "no_entry",
                                 "expired", "disabled")
# The outcomes that served a response; every other one is a miss.
HITS: frozenset[Outcome] = frozenset({"exact", "similar"})
# Dict and object headers per entry, so that many tiny responses still count for something.
_ENTRY_OVERHEAD = 512


@dataclass(frozen=True)
class CacheHit:
    """A response served from the cache.

    ``similarity`` is 1.0 for an exact hit, else the cosine of the two query embeddings;
    ``age_s`` is the time since the response was stored; ``answer`` is the caller's answer for
    it (`SemanticCache.put_answer`), if any; ``assembly_id`` is the id it was stored under.
    """

    response: BaseModel
    similarity: float
    age_s: float
    answer: str | None
    assembly_id: str
    exact: bool


@dataclass
class _Entry:
    key: CacheKey
    query: str
    normalised: str
    vector: np.ndarray | None
    payload: bytes
    response_type: type[BaseModel]
    assembly_id: str
    stored_at: float
    answer: str | None = None
    nbytes: int = 0

    def size(self) -> int:
        vector = 0 if self.vector is None else self.vector.nbytes
        answer = 0 if self.answer is None else len(self.answer.encode("utf-8"))
        return (_ENTRY_OVERHEAD + len(self.payload) + 2 * len(self.query.encode("utf-8"))
                + vector + answer)


class _Group:
    """The entries of one key: by normalised query, and their vectors as one matrix.

    Rows are kept packed (a removal moves the last row into the gap), so the near-duplicate
    scan is one matrix-vector product however many entries share the key.
    """

    def __init__(self) -> None:
        self.by_query: dict[str, str] = {}
        self.ids: list[str] = []
        self.rows: dict[str, int] = {}
        self.matrix: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.by_query)

    def add(self, entry: _Entry) -> None:
        self.by_query[entry.normalised] = entry.assembly_id
        vector = entry.vector
        if vector is None:
            return
        if self.matrix is None or self.matrix.shape[1] != vector.shape[0]:
            if self.ids:  # a different dimension: keep the newest only, never mix them
                self.ids, self.rows = [], {}
            self.matrix = np.empty((8, vector.shape[0]), dtype=np.float32)
        if len(self.ids) == self.matrix.shape[0]:
            grown = np.empty((2 * len(self.ids), self.matrix.shape[1]), dtype=np.float32)
            grown[: len(self.ids)] = self.matrix
            self.matrix = grown
        self.rows[entry.assembly_id] = len(self.ids)
        self.matrix[len(self.ids)] = vector
        self.ids.append(entry.assembly_id)

    def discard(self, entry: _Entry) -> None:
        if self.by_query.get(entry.normalised) == entry.assembly_id:
            del self.by_query[entry.normalised]
        row = self.rows.pop(entry.assembly_id, None)
        if row is None or self.matrix is None:
            return
        last = self.ids.pop()
        if last != entry.assembly_id:
            self.matrix[row] = self.matrix[len(self.ids)]
            self.ids[row] = last
            self.rows[last] = row

    def similar(self, vector: np.ndarray, threshold: float) -> list[tuple[float, str]]:
        """(cosine, assembly id) of the entries at `threshold` or above, most similar first."""
        if self.matrix is None or not self.ids or self.matrix.shape[1] != vector.shape[0]:
            return []
        cosines = self.matrix[: len(self.ids)] @ vector
        found = np.flatnonzero(cosines >= threshold)
        order = found[np.argsort(-cosines[found], kind="stable")]
        return [(float(cosines[i]), self.ids[i]) for i in order]


@dataclass
class _Shelf:
    """One namespace: entries in least-recently-used order and in storing order, by key."""

    entries: OrderedDict[str, _Entry] = field(default_factory=OrderedDict)
    by_age: OrderedDict[str, None] = field(default_factory=OrderedDict)
    by_key: dict[CacheKey, _Group] = field(default_factory=dict)
    nbytes: int = 0


class SemanticCache:
    """Assemble responses by namespace, served again for the same or a guarded near query.

    ``similarity`` is the least cosine between query embeddings for a near-duplicate hit (above
    1 turns near-duplicates off, leaving exact hits); ``max_entries`` and ``max_bytes`` bound
    each namespace; ``ttl_s`` is how long an entry lives; ``enabled=False`` or
    ``max_entries=0`` turns the cache off. ``guard`` decides whether two queries mean the same.

        >>> cache = SemanticCache(similarity=0.9, max_entries=500, max_bytes=1 << 24)
        >>> cache.counts()["exact"]
        0
    """

    def __init__(self, similarity: float = 0.90, max_entries: int = 1000,
                 max_bytes: int = 32 << 20, ttl_s: float = 3600.0, enabled: bool = True,
                 guard: Callable[[str, str], Verdict] = same_meaning,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 0 or max_bytes < 0 or ttl_s <= 0:
            raise ValueError("max_entries and max_bytes must be >= 0 and ttl_s > 0")
        self.similarity = similarity
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.enabled = enabled and max_entries > 0 and max_bytes > 0
        self._guard = guard
        self._clock = clock
        self._lock = threading.Lock()
        self._shelves: dict[str, _Shelf] = {}
        self._counts: Counter[str] = Counter({o: 0 for o in OUTCOMES})
        self._evicted = 0

    @classmethod
    def from_settings(cls, settings: object) -> SemanticCache:
        """A cache configured by `Settings` (``cache_*`` fields).

            >>> from contextd.settings import Settings
            >>> SemanticCache.from_settings(Settings(cache_max_entries=10)).max_entries
            10
        """
        return cls(similarity=settings.cache_similarity,  # type: ignore[attr-defined]
                   max_entries=settings.cache_max_entries,  # type: ignore[attr-defined]
                   max_bytes=settings.cache_max_bytes,  # type: ignore[attr-defined]
                   ttl_s=settings.cache_ttl_s,  # type: ignore[attr-defined]
                   enabled=settings.cache_enabled)  # type: ignore[attr-defined]

    # ----------------------------------------------------------------------------- lookups

    def lookup(self, key: CacheKey, query: str, query_vector: np.ndarray | None) -> CacheHit | None:
        """The cached response for `query` under `key`, or None (the miss counted by reason).

        Without `query_vector` only an exact hit is possible.

            >>> SemanticCache().lookup(CacheKey("ns", 0, None, None, 9, "e", "p", "d"), "q", None)
        """
        if not self.enabled:
            self._count("disabled")
            return None
        wanted = normalise(query)
        vector = _unit(query_vector)
        now = self._clock()
        with self._lock:
            shelf = self._shelves.get(key.namespace)
            group = shelf.by_key.get(key) if shelf else None
            if shelf is None or not group:
                self._counts["no_entry"] += 1
                return None
            expired_match = False
            exact = group.by_query.get(wanted)
            if exact is not None:
                entry = shelf.entries[exact]
                if now - entry.stored_at < self.ttl_s:
                    return self._hit(shelf, entry, 1.0, now, "exact")
                expired_match = True
                self._remove(shelf, entry)
            best: tuple[float, _Entry] | None = None
            rejected = False
            candidates = [] if vector is None else group.similar(vector, self.similarity)
            for cosine, assembly_id in candidates:
                entry = shelf.entries[assembly_id]
                if now - entry.stored_at >= self.ttl_s:
                    expired_match = True
                    self._remove(shelf, entry)
                elif self._guard(query, entry.query).same:
                    best = (cosine, entry)
                    break
                else:
                    rejected = True
            if best is not None:
                return self._hit(shelf, best[1], best[0], now, "similar")
            reason = "expired" if expired_match else "below_threshold"
            self._counts["guard" if rejected else reason] += 1
            return None

    def lookup_exact(self, key: CacheKey, query: str) -> CacheHit | None:
        """An exact hit for `query` under `key`, or None; only a hit is counted.

        For a caller that looks for an exact hit before it has the query vector, then calls
        `lookup` with the vector, which counts the outcome (once per request).

            >>> SemanticCache().lookup_exact(CacheKey("ns", 0, None, None, 9, "e", "p", "d"), "q")
        """
        if not self.enabled:
            return None
        wanted = normalise(query)
        now = self._clock()
        with self._lock:
            shelf = self._shelves.get(key.namespace)
            group = shelf.by_key.get(key) if shelf else None
            exact = group.by_query.get(wanted) if shelf is not None and group else None
            if shelf is None or exact is None:
                return None
            entry = shelf.entries[exact]
            if now - entry.stored_at >= self.ttl_s:
                return None  # left for `lookup` to remove and count as expired
            return self._hit(shelf, entry, 1.0, now, "exact")

    def skip(self) -> None:
        """Count a request that bypassed the cache (turned off by its profile or the request).

            >>> cache = SemanticCache(); cache.skip(); cache.counts()["disabled"]
            1
        """
        self._count("disabled")

    # ----------------------------------------------------------------------------- writes

    def store(self, key: CacheKey, query: str, query_vector: np.ndarray | None,
              response: BaseModel, assembly_id: str) -> bool:
        """Keep `response` for later lookups under `key`; False when off or larger than a shelf.

        A response for the same key and normalised query replaces the older one.

            >>> from contextd.models import Usage
            >>> SemanticCache(enabled=False).store(
            ...     CacheKey("ns", 0, None, None, 9, "e", "p", "d"), "q", None, Usage(), "a")
            False
        """
        if not self.enabled:
            return False
        payload = response.model_dump_json().encode("utf-8")
        entry = _Entry(key=key, query=query, normalised=normalise(query),
                       vector=_unit(query_vector), payload=payload,
                       response_type=type(response), assembly_id=assembly_id,
                       stored_at=self._clock())
        entry.nbytes = entry.size()
        if entry.nbytes > self.max_bytes:
            return False
        with self._lock:
            shelf = self._shelves.setdefault(key.namespace, _Shelf())
            old = shelf.entries.get(assembly_id)
            if old is not None:
                self._remove(shelf, old)
            group = shelf.by_key.setdefault(key, _Group())
            same_query = group.by_query.get(entry.normalised)
            if same_query is not None:
                self._remove(shelf, shelf.entries[same_query])
                group = shelf.by_key.setdefault(key, _Group())
            group.add(entry)
            shelf.entries[assembly_id] = entry
            shelf.by_age[assembly_id] = None
            shelf.nbytes += entry.nbytes
            self._sweep(shelf, entry.stored_at)
            self._shrink(shelf, keep=assembly_id)
        return True

    def put_answer(self, namespace: str, assembly_id: str, answer: str) -> bool:
        """Attach the caller's answer to a stored response; False when that entry is gone.

        The answer lives in the entry, so it is only ever returned with that response: under
        the same documents and session state, for the same or a guarded near query.

            >>> SemanticCache().put_answer("ns", "unknown", "42")
            False
        """
        now = self._clock()
        with self._lock:
            shelf = self._shelves.get(namespace)
            entry = shelf.entries.get(assembly_id) if shelf else None
            if shelf is None or entry is None:
                return False
            if now - entry.stored_at >= self.ttl_s:
                self._remove(shelf, entry)
                return False
            previous = entry.answer
            entry.answer = answer
            size = entry.size()
            if size > self.max_bytes:
                entry.answer = previous
                return False
            shelf.nbytes += size - entry.nbytes
            entry.nbytes = size
            shelf.entries.move_to_end(assembly_id)
            self._shrink(shelf, keep=assembly_id)
            return True

    def drop_namespace(self, namespace: str) -> None:
        """Forget a namespace's entries, e.g. when it is deleted and its sequence starts over."""
        with self._lock:
            self._shelves.pop(namespace, None)

    def drop_session(self, namespace: str, session_id: str) -> None:
        """Forget a session's entries, e.g. when it is deleted and its sequence starts over."""
        with self._lock:
            shelf = self._shelves.get(namespace)
            if shelf is None:
                return
            for entry in [e for e in shelf.entries.values() if e.key.session_id == session_id]:
                self._remove(shelf, entry)

    # ----------------------------------------------------------------------------- figures

    def counts(self) -> dict[str, int]:
        """Lookups by outcome since start: hits ``exact`` and ``similar``, misses by reason."""
        with self._lock:
            return {o: self._counts[o] for o in OUTCOMES}

    def usage(self, namespace: str) -> tuple[int, int]:
        """Entries and estimated bytes held for `namespace`.

            >>> SemanticCache().usage("ns")
            (0, 0)
        """
        with self._lock:
            shelf = self._shelves.get(namespace)
            return (0, 0) if shelf is None else (len(shelf.entries), shelf.nbytes)

    def totals(self) -> tuple[int, int]:
        """Entries and estimated bytes held over every namespace.

            >>> SemanticCache().totals()
            (0, 0)
        """
        with self._lock:
            return (sum(len(s.entries) for s in self._shelves.values()),
                    sum(s.nbytes for s in self._shelves.values()))

    @property
    def evicted(self) -> int:
        """Entries pushed out by the size bounds since start (expired ones not counted)."""
        return self._evicted

    # ----------------------------------------------------------------------------- internals

    def _count(self, outcome: Outcome) -> None:
        with self._lock:
            self._counts[outcome] += 1

    def _hit(self, shelf: _Shelf, entry: _Entry, similarity: float, now: float,
             outcome: Outcome) -> CacheHit:
        shelf.entries.move_to_end(entry.assembly_id)
        self._counts[outcome] += 1
        return CacheHit(response=entry.response_type.model_validate_json(entry.payload),
                        similarity=similarity, age_s=max(0.0, now - entry.stored_at),
                        answer=entry.answer, assembly_id=entry.assembly_id,
                        exact=outcome == "exact")

    def _remove(self, shelf: _Shelf, entry: _Entry) -> None:
        if shelf.entries.pop(entry.assembly_id, None) is None:
            return
        shelf.nbytes -= entry.nbytes
        del shelf.by_age[entry.assembly_id]
        group = shelf.by_key.get(entry.key)
        if group is not None:
            group.discard(entry)
            if not group:
                del shelf.by_key[entry.key]

    def _sweep(self, shelf: _Shelf, now: float) -> None:
        # Storing order is age order: entries are never re-stored, only replaced.
        while shelf.by_age:
            entry = shelf.entries[next(iter(shelf.by_age))]
            if now - entry.stored_at < self.ttl_s:
                break
            self._remove(shelf, entry)

    def _shrink(self, shelf: _Shelf, keep: str) -> None:
        while len(shelf.entries) > self.max_entries or shelf.nbytes > self.max_bytes:
            oldest = next(iter(shelf.entries.values()))
            if oldest.assembly_id == keep:
                if len(shelf.entries) == 1:
                    break
                shelf.entries.move_to_end(keep)
                continue
            self._remove(shelf, oldest)
            self._evicted += 1


def _unit(vector: np.ndarray | None) -> np.ndarray | None:
    if vector is None:
        return None
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(v))
    return None if norm == 0 or not np.isfinite(norm) else v / norm
