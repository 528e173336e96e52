"""Problem-details answers read back as the typed `contextd.errors` exceptions.

The server answers every error with an RFC 9457 body; a client turns it back into the
exception the `Engine` would have raised in-process, so calling code catches the same
`SessionNotFound` over HTTP as it does locally. 401 and 403 are `Unauthorized` and
`Forbidden`; a 503 (once the client's retries are spent) is `ServiceUnavailable`. Statuses
with no typed error (500, a proxy's 502) become `ProblemError`.

    >>> try:  # doctest: +SKIP
    ...     client.get_session("gone")
    ... except SessionNotFound:
    ...     pass
"""

from __future__ import annotations

from typing import Any

import httpx

from contextd import errors
from contextd.errors import ContextdError


class ProblemError(ContextdError):
    """A problem-details answer with no matching typed error (e.g. 500 or a proxy's 502)."""

    def __init__(self, status: int, type_: str, title: str, detail: str, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.status = status  # type: ignore[misc]
        self.title = title  # type: ignore[misc]
        self.type_slug = type_.rsplit("/", 1)[-1]  # type: ignore[misc]


def _error_classes(base: type[ContextdError] = ContextdError) -> dict[str, type[ContextdError]]:
    found: dict[str, type[ContextdError]] = {}
    for cls in base.__subclasses__():
        if cls.__module__ == errors.__name__:
            found[cls.type_slug] = cls
        found.update(_error_classes(cls))
    return found


_BY_SLUG = _error_classes()
# The server's "unavailable" (shutting down, not warm) reaches a client as the
# client-side type, which also covers a refused connection.
_BY_SLUG[errors.Unavailable.type_slug] = errors.ServiceUnavailable
_BY_STATUS: dict[int, type[ContextdError]] = {
    401: errors.Unauthorized, 403: errors.Forbidden, 404: errors.NotFound,
    409: errors.Conflict, 422: errors.InvalidRequest, 503: errors.ServiceUnavailable}


def error_from_problem(body: dict[str, Any]) -> ContextdError:
    """The typed exception for a problem-details object, e.g. one item of a batch's results.

        >>> error_from_problem({"type": "x/budget-too-small", "title": "t", "status": 422,
        ...                     "detail": "raise max_tokens"}).__class__.__name__
        'BudgetTooSmall'
    """
    status = body.get("status")
    return _typed(body, status if isinstance(status, int) else 500, "error")


def error_from_response(response: httpx.Response) -> ContextdError:
    """The typed exception for an error answer: by problem `type` slug, then by status.

        >>> error_from_response(httpx.Response(404, json={"type": "x/session-not-found",
        ...     "title": "t", "status": 404, "detail": "d"})).__class__.__name__
        'SessionNotFound'
        >>> error_from_response(httpx.Response(401, text="no key")).__class__.__name__
        'Unauthorized'
    """
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"detail": response.text[:500] or response.reason_phrase}
    return _typed(body, response.status_code, response.reason_phrase)


def _typed(body: dict[str, Any], status: int, reason: str) -> ContextdError:
    detail = str(body.get("detail") or reason)
    extra = {k: v for k, v in body.items() if k not in ("type", "title", "status", "detail")}
    type_ = str(body.get("type") or "about:blank")
    cls = _BY_SLUG.get(type_.rsplit("/", 1)[-1])
    if cls is None or cls.status != status:
        cls = _BY_STATUS.get(status)
    if cls is not None:
        return cls(detail, **extra)
    return ProblemError(status, type_, str(body.get("title") or ""), detail, **extra)


def unreachable(base_url: str, exc: httpx.TransportError) -> errors.ServiceUnavailable:
    """The error for a server that could not be reached at all (refused, connect timeout).

        >>> unreachable("http://127.0.0.1:9", httpx.ConnectError("refused")).detail[:48]
        'cannot connect to http://127.0.0.1:9 (ConnectErr'
    """
    return errors.ServiceUnavailable(
        f"cannot connect to {base_url} ({type(exc).__name__}: {exc}): start the server "
        "(contextd serve) or set CONTEXTD_URL to where it runs")
