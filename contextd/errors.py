"""Typed errors. Each maps to an HTTP status and a problem-details body.

Every message says what the caller should change, e.g.::

    raise BudgetTooSmall("the system prompt and the query alone need 412 tokens; "
                         "raise max_tokens to at least 412")
"""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_BASE = "https://contextd.dev/problems/"


def problem_body(status: int, type_slug: str, title: str, detail: str,
                 **extra: Any) -> dict[str, Any]:
    """An RFC 9457 problem-details body: the one builder for every error answer.

        >>> problem_body(413, "request-too-large", "Request too large", "send less")["type"]
        'https://contextd.dev/problems/request-too-large'
    """
    return {"type": PROBLEM_BASE + type_slug, "title": title, "status": status,
            "detail": detail, **extra}


class ContextdError(Exception):
    """Base of all contextd errors; `status` is the HTTP status it maps to."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    type_slug: ClassVar[str] = "internal"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def problem(self) -> dict[str, Any]:
        """The RFC 9457 problem-details body for this error."""
        return problem_body(self.status, self.type_slug, self.title, self.detail, **self.extra)


class InvalidRequest(ContextdError):
    """The request is well-formed JSON but asks for something impossible."""

    status = 422
    title = "Invalid request"
    type_slug = "invalid-request"


class InvalidNamespace(InvalidRequest):
    title = "Invalid namespace name"
    type_slug = "invalid-namespace"


class BudgetTooSmall(InvalidRequest):
    title = "Token budget too small"
    type_slug = "budget-too-small"


class UnknownModel(InvalidRequest):
    title = "Unknown model"
    type_slug = "unknown-model"


class EncodingUnavailable(InvalidRequest):
    title = "Tokenizer encoding unavailable"
    type_slug = "encoding-unavailable"


class DocumentTooLarge(ContextdError):
    status = 413
    title = "Document too large"
    type_slug = "document-too-large"


class Forbidden(ContextdError):
    """The API key is valid but its role does not allow this action."""

    status = 403
    title = "Forbidden"
    type_slug = "forbidden"


class NotFound(ContextdError):
    status = 404
    title = "Not found"
    type_slug = "not-found"


class NamespaceNotFound(NotFound):
    title = "Namespace not found"
    type_slug = "namespace-not-found"


class DocumentNotFound(NotFound):
    title = "Document not found"
    type_slug = "document-not-found"


class SessionNotFound(NotFound):
    title = "Session not found"
    type_slug = "session-not-found"


class AnswerNotFound(NotFound):
    """No cached assembly with this id: never assembled here, expired, or evicted."""

    title = "Answer target not found"
    type_slug = "answer-not-found"


class Conflict(ContextdError):
    status = 409
    title = "Conflict"
    type_slug = "conflict"


class Unavailable(ContextdError):
    """The service cannot answer now (shutting down, overloaded); retry later."""

    status = 503
    title = "Service unavailable"
    type_slug = "unavailable"


class ServiceUnavailable(Unavailable):
    """The service could not be reached (connection refused) or still answered 503 after the
    client's retries; what `Client` and `AsyncClient` raise for a down or overloaded server.

        >>> try:  # doctest: +SKIP
        ...     Client("http://127.0.0.1:9").namespaces()
        ... except ServiceUnavailable as exc:
        ...     print(exc.detail)
    """


class Unauthorized(ContextdError):
    """No API key, or a wrong one: send `Authorization: Bearer <key>` (CONTEXTD_API_KEY)."""

    status = 401
    title = "Unauthorized"
    type_slug = "unauthorized"
