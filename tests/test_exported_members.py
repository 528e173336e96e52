"""The public API: what `import contextd` exports, pinned, sorted, and each name real."""

from __future__ import annotations

import contextd

EXPORTED = [
    "AnswerNotFound",
    "AnswerResult",
    "AppendResult",
    "AssembleRequest",
    "AssembleResponse",
    "AsyncClient",
    "BudgetTooSmall",
    "CacheInfo",
    "ChatMessage",
    "Client",
    "Conflict",
    "ContextdError",
    "DeleteResult",
    "Document",
    "DocumentNotFound",
    "DocumentTooLarge",
    "Dropped",
    "EncodingUnavailable",
    "Engine",
    "Forbidden",
    "InvalidNamespace",
    "InvalidRequest",
    "NamespaceInfo",
    "NamespaceNotFound",
    "NotFound",
    "OutputMessage",
    "SearchHit",
    "SearchRequest",
    "SearchResponse",
    "ServiceUnavailable",
    "SessionInfo",
    "SessionNotFound",
    "SessionSummary",
    "Settings",
    "StoredDocument",
    "Turn",
    "Unauthorized",
    "Unavailable",
    "UnknownModel",
    "UpsertResult",
    "Usage",
    "UsedDocument",
    "__version__",
]


def test_all_is_pinned_and_sorted() -> None:
    assert contextd.__all__ == EXPORTED
    assert contextd.__all__ == sorted(contextd.__all__)


def test_exported_members_exist_and_say_where_they_live() -> None:
    # Model: httpx tests/test_exported_members.py. Each public member is importable from
    # `contextd` and, but for the version string, defined inside the package.
    for name in contextd.__all__:
        member = getattr(contextd, name)
        if name != "__version__":
            assert member.__module__.startswith("contextd."), name


def test_public_errors_are_contextd_errors() -> None:
    for name in ("Unauthorized", "Forbidden", "ServiceUnavailable", "Unavailable"):
        assert issubclass(getattr(contextd, name), contextd.ContextdError), name
    assert issubclass(contextd.ServiceUnavailable, contextd.Unavailable)
    assert (contextd.Unauthorized.status, contextd.Forbidden.status) == (401, 403)
