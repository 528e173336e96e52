"""The cache key: everything besides the query wording that decides an assemble response.

Staleness is impossible by construction rather than by invalidation: the key holds the
namespace's change-log sequence and the session's sequence, which every upsert, delete and
session append moves on, so an entry written before a change can never match a request after it
(with recall_scope "user", `state` also holds the user's other sessions' turn counts and
creation times: see contextd.cache.assembly).
A namespace deleted and made again (by this process or another) starts its sequences over, so
the key also holds the namespace's generation, an id fixed when the namespace is created: the
new namespace's entries can never be the old one's. The profile that assembles is in the key by
name and by a digest of its effective configuration, so two profiles never share an entry, and
neither do two configurations one profile had before and after a reload.
The rest of the request goes in as a digest of every field except the few the key holds by
another name or that do not change the output; a field added to `AssembleRequest` later is in the
digest automatically, so it can only make the key stricter. With a session, the request's
`messages` are left out too: they are appended before the key is taken, so the session state
holds them, and a request that sent them and one that did not then share the same entries.

    >>> from contextd.models import AssembleRequest
    >>> req = AssembleRequest(query="solar panels", max_tokens=2000)
    >>> key = CacheKey.for_request(req, documents_seq=12, session_seq=None, budget=2000,
    ...                            encoding="cl100k_base", profile="default",
    ...                            profile_digest="3f2a", generation="9c41")
    >>> key.documents_seq, key.session_id, key.digest == request_digest(req)
    (12, None, True)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

# Held by the key under another name (namespace, session_id), matched separately (query), or a
# label that does not change the response (query_type).
NOT_IN_DIGEST = frozenset({"namespace", "query", "session_id", "query_type", "cache"})


@dataclass(frozen=True)
class CacheKey:
    """What must be equal for two assemble requests to share a response, apart from the query.

    ``documents_seq`` is the namespace's change-log sequence and ``session_seq`` the session's
    last turn sequence (``None`` without a session). ``budget`` and ``encoding`` are the resolved
    token budget and tokenizer. ``profile`` names the configuration that assembled the response
    and ``profile_digest`` is a digest of that configuration's values (`profile_digest` in
    `contextd.profiles`). ``digest`` covers every other request field (see `request_digest`).
    ``state`` names what else the response was assembled from that the sequences do not move (a
    session's generation and summary, whether the query came from the history), as a digest.
    ``generation`` is the namespace's (`DocumentStore.generation`): its sequences start over
    when it is made again, its generation does not come back.
    """

    namespace: str
    documents_seq: int
    session_id: str | None
    session_seq: int | None
    budget: int
    encoding: str
    profile: str
    digest: str
    state: str = ""
    generation: str = ""
    profile_digest: str = ""

    @classmethod
    def for_request(cls, request: BaseModel, *, documents_seq: int, session_seq: int | None,
                    budget: int, encoding: str, profile: str, profile_digest: str,
                    generation: str, state: str = "") -> CacheKey:
        """The key of an `AssembleRequest` against the given documents and session state.

            >>> from contextd.models import AssembleRequest
            >>> req = AssembleRequest(query="q", session_id="s1", max_tokens=500)
            >>> CacheKey.for_request(req, documents_seq=3, session_seq=7, budget=500,
            ...                      encoding="cl100k_base", profile="default",
            ...                      profile_digest="3f2a", generation="9c41").session_seq
            7
        """
        fields = request.model_dump()
        session_id = fields.get("session_id")
        if session_id is None and session_seq is not None:
            raise ValueError("session_seq given for a request without a session_id")
        return cls(
            namespace=str(fields.get("namespace", "default")),
            documents_seq=documents_seq,
            session_id=session_id,
            session_seq=session_seq if session_id is not None else None,
            budget=budget,
            encoding=encoding,
            profile=profile,
            digest=request_digest(request),
            state=state,
            generation=generation,
            profile_digest=profile_digest,
        )


def request_digest(request: BaseModel | Mapping[str, Any]) -> str:
    """SHA-256 of every request field that is not in `NOT_IN_DIGEST`, in a canonical JSON form.

        >>> request_digest({"query": "a", "top_k": 8}) == request_digest({"query": "b", "top_k": 8})
        True
        >>> request_digest({"top_k": 8}) == request_digest({"top_k": 4})
        False
        >>> turn = [{"role": "user", "content": "hi"}]
        >>> request_digest({"session_id": "s1", "messages": turn}) == request_digest(
        ...     {"session_id": "s1", "messages": None})
        True
    """
    fields = request.model_dump(mode="json") if isinstance(request, BaseModel) else dict(request)
    # With a session the appended messages are in its state; without messages there are none.
    stored = fields.get("session_id") is not None or fields.get("messages") is None
    left_out = NOT_IN_DIGEST | ({"messages"} if stored else set())
    kept = {k: v for k, v in fields.items() if k not in left_out}
    blob = json.dumps(kept, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
