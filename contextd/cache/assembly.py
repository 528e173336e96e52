"""The semantic cache as assemble uses it: a key read from the stored state, one probe a request.

The key is taken after the request's own turns are appended, from the namespace's generation
and change-log sequence and the session's state (turn count, creation time, summary), and it
names the profile assembling (its name and a digest of its configuration), so a response can only
be served against the documents and history it was assembled from: a write moves the state on
and leaves every older entry unreachable. A response is stored only if that state did not move
while it was being assembled, so an entry never mixes two states.

A probe first tries an exact hit (before any embedding), then, once the pipeline has the query
vector it computes anyway, a guarded near-duplicate hit; the cache never adds a model call. A
near-duplicate hit ends with this request's own query (its tokens counted), never the cached
wording, so the query is never dropped.

    >>> probe = cache.probe(request, ns, query, False, budget)  # doctest: +SKIP
    >>> probe.exact() or probe.lookup(vector) or probe.store(response, vector)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

import numpy as np

from contextd.cache.key import CacheKey
from contextd.cache.store import CacheHit, SemanticCache
from contextd.memory.recall import UserScope
from contextd.models import AssembleRequest, AssembleResponse, CacheInfo, OutputMessage
from contextd.store.namespace import NamespaceData
from contextd.tokens import TokenBudget

# The configuration that assembles responses when none is named.
DEFAULT_PROFILE = "default"


@dataclass(frozen=True)
class _State:
    generation: str
    documents_seq: int
    session_seq: int | None
    digest: str


class AssemblyCache:
    """Assemble responses cached per namespace, keyed by the state they were assembled from.

    Every profile has its own `AssemblyCache` over the engine's one `SemanticCache` (`core`):
    `profile` and `profile_digest` go into its keys, so profiles share the memory bounds but
    never an entry; `enabled=False` is a profile that turned the cache off.

        >>> from contextd.settings import Settings
        >>> AssemblyCache(SemanticCache.from_settings(Settings())).enabled
        True
        >>> AssemblyCache(SemanticCache(), "canary", "9f0c", enabled=False).enabled
        False
    """

    def __init__(self, core: SemanticCache, profile: str = DEFAULT_PROFILE,
                 profile_digest: str = "", *, enabled: bool = True) -> None:
        self.core = core
        self.profile = profile
        self.profile_digest = profile_digest
        self._enabled = enabled

    @property
    def enabled(self) -> bool:
        return self._enabled and self.core.enabled

    def probe(self, request: AssembleRequest, ns: NamespaceData, query: str,
              query_from_history: bool, budget: TokenBudget) -> CacheProbe:
        """The cache's view of one request, keyed by the state `ns` holds now.

        Call it after the request's own turns are stored.
        """
        if not (self.enabled and request.cache):
            return CacheProbe(self, None, query, ns, request, query_from_history)
        state = _read_state(ns, request.session_id, query_from_history, request.recall_scope)
        if state is None:  # no such session: the pipeline answers with its own error
            return CacheProbe(self, None, query, ns, request, query_from_history, counted=True)
        key = CacheKey.for_request(
            request, documents_seq=state.documents_seq, session_seq=state.session_seq,
            budget=budget.tokens, encoding=budget.counter.encoding_name, profile=self.profile,
            profile_digest=self.profile_digest, generation=state.generation, state=state.digest)
        return CacheProbe(self, key, query, ns, request, query_from_history, budget=budget)

    def put_answer(self, namespace: str, assembly_id: str, answer: str) -> bool:
        """Keep `answer` with the cached response `assembly_id`; False if there is none."""
        return self.core.put_answer(namespace, assembly_id, answer)

    def drop_namespace(self, namespace: str) -> None:
        self.core.drop_namespace(namespace)

    def drop_session(self, namespace: str, session_id: str) -> None:
        self.core.drop_session(namespace, session_id)


class CacheProbe:
    """One request's lookups and, on a miss, the storing of its response."""

    def __init__(self, cache: AssemblyCache, key: CacheKey | None, query: str,
                 ns: NamespaceData, request: AssembleRequest, query_from_history: bool,
                 counted: bool = False, budget: TokenBudget | None = None) -> None:
        self.cache = cache
        self.key = key
        self.query = query
        self.ns = ns
        self.request = request
        self.query_from_history = query_from_history
        self._counted = counted
        self.budget = budget

    def exact(self) -> AssembleResponse | None:
        """The response cached for the same query (after normalisation), or None."""
        if self.key is None:
            return None
        hit = self.cache.core.lookup_exact(self.key, self.query)
        if hit is not None:
            self._counted = True
        return _served(hit, self.query, self.budget)

    def lookup(self, vector: np.ndarray | None) -> AssembleResponse | None:
        """An exact or guarded near-duplicate hit, or None; the outcome is counted once."""
        if self._counted:
            return None
        self._counted = True
        if self.key is None:
            self.cache.core.skip()
            return None
        return _served(self.cache.core.lookup(self.key, self.query, vector), self.query,
                       self.budget)

    def store(self, response: AssembleResponse, vector: np.ndarray | None) -> AssembleResponse:
        """Name `response`, and keep it unless the state moved while it was assembled."""
        response.assembly_id = uuid.uuid4().hex
        response.cache = CacheInfo()
        if self.key is None:
            return response
        now = _read_state(self.ns, self.request.session_id, self.query_from_history,
                          self.request.recall_scope)
        if now is not None and (now.generation, now.documents_seq, now.session_seq,
                                now.digest) == (self.key.generation, self.key.documents_seq,
                                                self.key.session_seq, self.key.state):
            self.cache.core.store(self.key, self.query, vector, response, response.assembly_id)
        return response


def _served(hit: CacheHit | None, query: str,
            budget: TokenBudget | None) -> AssembleResponse | None:
    if hit is None:
        return None
    response = hit.response
    assert isinstance(response, AssembleResponse)
    # Rare enough to leave the hit counted: a few more tokens than a full budget had room for.
    if budget is not None and not _ask(response, query, budget):
        return None  # this wording does not fit where the cached one did: assemble afresh
    response.assembly_id = hit.assembly_id
    response.cache = CacheInfo(hit=True, similarity=round(hit.similarity, 6),
                               age_s=round(hit.age_s, 3), answer=hit.answer)
    return response


def _ask(response: AssembleResponse, query: str, budget: TokenBudget) -> bool:
    """Put this request's `query` in place of the cached one as the last message, so the query
    is never dropped; False if its extra tokens would break the budget.

    Both are plain user messages, so only their content tokens differ."""
    last = response.messages[-1]
    if last.content == query:
        return True
    delta = (budget.counter.count(query) - budget.counter.count(last.content or ""))
    if response.usage.total + delta > response.usage.budget:
        return False
    response.messages[-1] = OutputMessage(role="user", content=query)
    response.usage.query += delta
    response.usage.total += delta
    return True


def _read_state(ns: NamespaceData, session_id: str | None, query_from_history: bool,
                recall_scope: str = "session") -> _State | None:
    """The documents and session state a response depends on; None for a missing session.

    With recall_scope "user" that includes the user's other sessions as recall lists them
    (the same query): which ones, each one's creation time and turn count. Their turns are
    only ever appended, and removed with their session, so those move with every change that
    could change what recall finds there (an append, a delete, a recreation, a session
    joining the user)."""
    generation = ns.store.generation()
    documents_seq = ns.store.last_seq()
    if session_id is None:
        return _State(generation, documents_seq, None, _digest(query_from_history))
    row = ns.sessions.session(session_id)
    if row is None:
        return None
    others: tuple[tuple[str, float, int], ...] = ()
    if recall_scope == "user" and row.user_id is not None:
        others = tuple((r.id, r.created_at, r.turns) for r in UserScope.read(
            ns.sessions, row.user_id, session_id).sessions)
    # The turn count is the last turn's sequence (turns are only appended); the creation time
    # tells a recreated session from the old one; the summary can be refined in place.
    return _State(generation, documents_seq, row.turns, _digest(
        query_from_history, row.created_at, row.tokens, row.summary_through, row.summary,
        row.user_id, others))


def _digest(*parts: object) -> str:
    return hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=16).hexdigest()
