"""A semantic cache of assemble responses that cannot serve a stale or a wrong one.

`CacheKey` holds the documents and session state, so a write makes old entries unreachable;
`same_meaning` is the guard that a near-duplicate query must pass; `SemanticCache` holds the
responses, bounded per namespace.

    >>> from contextd.cache import SemanticCache, same_meaning
    >>> same_meaning("hotels in Rome", "hotels in Milan").same
    False
"""

from contextd.cache.guard import Verdict, normalise, same_meaning
from contextd.cache.key import CacheKey, request_digest
from contextd.cache.store import OUTCOMES, CacheHit, SemanticCache

__all__ = [
    "OUTCOMES",
    "CacheHit",
    "CacheKey",
    "SemanticCache",
    "Verdict",
    "normalise",
    "request_digest",
    "same_meaning",
]
